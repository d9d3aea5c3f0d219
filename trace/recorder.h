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
#include "model.h"
#include "trace_file.h"

typedef struct {
    const char *const *prompts; /* texts, one sequence each ... */
    int n_prompts;
    const int *token_ids;       /* ... or one sequence of explicit ids */
    int n_token_ids;
    int generate;               /* tokens to generate after each prompt */
    float temperature;          /* 0 = greedy */
    float top_p;
    uint64_t seed;
    int stop_at_eos;            /* end a sequence when the model emits EOS/BOS */
    TraceOptions trace;
    const char *command_line;
    FILE *echo;                 /* print text as llama2.c does, or NULL */
    volatile sig_atomic_t *interrupted;
    int max_block;              /* prompt tokens per forward call */
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
} RecordSummary;

/* Writes the trace to path (which must not exist, or is overwritten). */
int record_traces(const Model *m, const RecordOptions *opt, const char *path, RecordSummary *sum, KvError *err);

/* Fills the model part of a trace header. */
void trace_meta_from_model(TraceMeta *meta, const Model *m, const char *command_line);

#endif
