/* kvtrace info TRACE.h5 — describe and validate a trace. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../trace/trace_file.h"
#include "cli.h"

static const char INFO_HELP[] =
    "usage: kvtrace info TRACE.h5 [...]\n"
    "\n"
    "Prints the model, the sequences and what is stored, after checking every dataset against the\n"
    "format (FORMAT.md).  Exit status: 0 valid and complete, 1 not a valid trace, 3 valid but\n"
    "incomplete (the recording was interrupted).\n";

static void print_sequence(const TraceReader *r, int s, const TraceSeqInfo *si)
{
    KvError err;
    char **pieces = trace_read_pieces(r, s, si->n_tokens, &err);
    char preview[80] = "";
    size_t used = 0;
    for (int i = 0; pieces && i < si->n_tokens && used + 1 < sizeof preview - 4; i++) {
        for (const char *p = pieces[i]; *p && used + 1 < sizeof preview - 4; p++)
            preview[used++] = *p == '\n' ? ' ' : *p;
        preview[used] = 0;
    }
    if (pieces && used + 1 >= sizeof preview - 4) strcat(preview, "...");
    printf("  %4d  %6d  %6d  %6d  %-8s  %s\n", s, si->n_tokens, si->n_prompt, si->n_tokens - si->n_prompt,
           si->complete ? "yes" : "NO", preview);
    trace_free_pieces(pieces, si->n_tokens);
}

static int info_one(const char *path)
{
    TraceReader r;
    KvError err;
    if (trace_open(&r, path, &err)) return cli_error("info", err.msg);
    const TraceMeta *m = &r.meta;
    TraceSeqInfo *infos = calloc((size_t)(r.n_sequences ? r.n_sequences : 1), sizeof *infos);
    long total = 0;
    int all_complete = r.complete;
    for (int s = 0; s < r.n_sequences; s++) {
        if (trace_sequence_info(&r, s, &infos[s], &err)) {
            free(infos);
            trace_close(&r);
            return cli_error("info", err.msg);
        }
        total += infos[s].n_tokens;
        all_complete &= infos[s].complete;
    }
    printf("trace:      %s\n", path);
    printf("format:     %s, %s\n", TRACE_FORMAT, all_complete ? "complete" : "INCOMPLETE (recording was interrupted)");
    printf("model:      %s (%s, %s weights) file %s\n", m->model_name, m->model_arch, m->model_weight_type,
           m->model_file);
    printf("sha256:     %s\n", m->model_digest);
    printf("shape:      %d layers, %d heads, %d kv heads, head_dim %d, width %d, vocab %d, rope theta %g\n",
           m->n_layers, m->n_heads, m->n_kv_heads, m->head_dim, m->dim, m->vocab_size, m->rope_theta);
    printf("recorded:   %s by %s\n", m->created, m->recorder_version);
    printf("command:    %s\n", m->command);
    int attention = r.n_sequences > 0 && infos[0].has_attention, half = r.n_sequences > 0 && infos[0].half;
    printf("stored:     tokens, pieces, nll; per layer q/k/v (%s) after RoPE, key L2 and value L1/L2 norms%s\n",
           half ? "float16" : "float32", attention ? ", attention probabilities" : "");
    printf("sequences:  %d, %ld tokens\n", r.n_sequences, total);
    printf("  %4s  %6s  %6s  %6s  %-8s  %s\n", "seq", "tokens", "prompt", "gen", "complete", "text");
    for (int s = 0; s < r.n_sequences; s++) print_sequence(&r, s, &infos[s]);
    free(infos);
    trace_close(&r);
    return all_complete ? 0 : 3;
}

int cmd_info(int argc, char **argv)
{
    if (argc < 2) return cli_usage_error("info", "expected a trace file");
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        fputs(INFO_HELP, stdout);
        return 0;
    }
    int worst = 0;
    for (int i = 1; i < argc; i++) {
        int rc = info_one(argv[i]);
        if (rc == 1 || (rc == 3 && worst == 0)) worst = rc;
    }
    return worst;
}
