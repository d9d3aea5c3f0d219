/* recorder.h — running a model over prompts (and generating from them) while
 * writing everything the later stages need into a trace file.
 *
 * The library form of `kvtrace record`.  Prompt tokens go through the model
 * in blocks; generated tokens one at a time.  The recording is flushed to
 * disk every few dozen tokens, and an interruption (the flag set by a signal
 * handler) ends it cleanly with the trace flagged incomplete. */
#ifndef KV_RECORDER_H
#define KV_RECORDER_H

#include <signal.h>
#include <stdint.h>
#include <stdio.h>

#include "../util/error.h"
#include "../util/output.h"
#include "model.h"
#include "trace_file.h"

typedef struct {
    const char *const *prompts; /* texts, one sequence each ... */
    int n_prompts;
    const int *token_ids;       /* ... or one sequence of explicit ids */
    int n_token_ids;
    int n_prompt_ids;           /* ids 0..P-1 are the prompt (blocks); the rest run one at a time, as
                                 * generated tokens do (0 = all ids are the prompt) */
    int generate;               /* tokens to generate after each prompt */
    float temperature;          /* 0 = greedy */
    float top_p;
    uint64_t seed;
    int stop_at_eos;            /* end a sequence when the model emits EOS/BOS */
    TraceOptions trace;
    const char *command_line;
    FILE *echo;                 /* print text as llama2.c does, or NULL */
    volatile sig_atomic_t *interrupted;
    int force;                  /* replace an existing output (atomically, when the recording succeeded) */
    const OutputInputs *inputs; /* files the command reads: never overwritten */
    int max_block;              /* prompt tokens per forward call (0 = 64) */
    int threads;                /* threads of the forward pass (0 = 1); results do not depend on it */
    /* Testing aid: raise this signal once this many tokens are done (0 = off),
     * so tests can interrupt or kill a recording at a known point. */
    int test_signal;
    long test_signal_after;
} RecordOptions;

typedef struct {
    int n_sequences;
    long n_tokens;
    double seconds;
    int interrupted;
    int kept_partial; /* interrupted, and the incomplete trace is at the output path */
    long prompt_tokens, step_tokens;     /* run in blocks / one at a time */
    double prompt_seconds, step_seconds; /* forward passes only */
    double kv_cache_bytes;
} RecordSummary;

/* Writes the trace to path under the output rule (util/output.h): an
 * existing path needs opt->force and is replaced only by a finished
 * recording; a new one holds the recording as it grows (readable with SWMR)
 * and, when interrupted, keeps it flagged incomplete.  Returns 0, or -1 with
 * the reason (sum->interrupted tells an interruption apart). */
int record_traces(const Model *m, const RecordOptions *opt, const char *path, RecordSummary *sum, KvError *err);

/* Fills the model part of a trace header. */
void trace_meta_from_model(TraceMeta *meta, const Model *m, const char *command_line);

#endif
