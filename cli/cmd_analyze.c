/* kvtrace analyze TRACE.h5 -o ANALYSIS.h5 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../analysis/analysis.h"
#include "../util/dist.h"
#include "cli.h"

static const char ANALYZE_HELP[] =
    "usage: kvtrace analyze TRACE.h5 -o ANALYSIS.h5 [options]\n"
    "\n"
    "Measures, from the exact full-cache attention of every sequence, layer and head: the age bias of\n"
    "accumulated attention (H2O score, accumulations T-i, mean attention per row and A2SF scores vs\n"
    "token age, Spearman with bootstrap 95%% intervals), how old the top-B set of each score is, key L2\n"
    "norm vs attention (with the L2 paper's attention-loss ratio), value L1 norms and attention sinks.\n"
    "Prints a short report and writes every number to ANALYSIS.h5 (FORMAT.md).\n"
    "\n"
    "  --alpha LIST           A2SF forgetting factors (default 0.1,0.2,0.5)\n"
    "  --budget-fraction F    top-B set size as a fraction of T (default 0.2)\n"
    "  --drop-fraction F      keys dropped per row for the attention loss (default 0.5)\n"
    "  --sink-tokens N        first positions counted as sinks (default 4)\n"
    "  --sink-attention X     a token whose mean attention per row reaches X is a sink too (default 0.1)\n"
    "  --bootstrap N          bootstrap replicates (default 1000; 0 = no intervals)\n"
    "  --seed N               bootstrap seed (default 1)\n"
    "  --layers LIST          only these layers (default every layer)\n"
    "  --heads LIST           only these query heads of each layer (default every head); a head analysed gets\n"
    "                         the numbers a run over every head gives it; pooled figures are over those analysed\n"
    "  --example L:H          layer and head whose per-position curves are stored (default middle layer, head 0;\n"
    "                         with --layers/--heads the first analysed head of the analysed layer nearest it)\n"
    "  --threads N            worker threads over the heads of a layer (default: all cores); results do not depend on N\n"
    "  --allow-incomplete     analyse a trace whose recording was interrupted\n"
    "  -o, --output FILE      analysis file (HDF5)\n"
    "  --csv FILE             per-head statistics as a tidy CSV (default: ANALYSIS with .csv)\n"
    "  --force                replace an existing output file (never the trace)\n";

static int parse_alphas(const char *text, AnalyzeOptions *o)
{
    char *copy = strdup(text);
    if (!copy) return -1;
    o->n_alpha = 0;
    int rc = 0;
    char *save = NULL;
    for (char *tok = strtok_r(copy, ",", &save); tok && rc == 0; tok = strtok_r(NULL, ",", &save)) {
        if (o->n_alpha == ANALYSIS_MAX_ALPHA || parse_double(tok, 0, 0.999999, &o->alphas[o->n_alpha])) rc = -1;
        else o->n_alpha++;
    }
    free(copy);
    return rc == 0 && o->n_alpha ? 0 : -1;
}

/* The lists behind AnalyzeOptions' layers and heads. */
typedef struct {
    int *layers, *heads;
} Selection;

/* A list option, given again: its numbers replace the last ones. */
static int take_list(const char *text, int **owned, const int **list, int *n)
{
    free(*owned);
    *owned = NULL;
    if (parse_int_list(text, owned, n)) return -1;
    *list = *owned;
    return 0;
}

static int parse_args(int argc, char **argv, AnalyzeOptions *o, Selection *sel, const char **output, const char **csv,
                      int *force, KvError *err)
{
    static const struct option longopts[] = {
        {"alpha", 1, 0, 'a'}, {"budget-fraction", 1, 0, 'b'}, {"drop-fraction", 1, 0, 'd'},
        {"sink-tokens", 1, 0, 's'}, {"sink-attention", 1, 0, 'S'}, {"bootstrap", 1, 0, 'B'}, {"seed", 1, 0, 'r'},
        {"example", 1, 0, 'e'}, {"threads", 1, 0, 't'}, {"allow-incomplete", 0, 0, 'i'}, {"output", 1, 0, 'o'},
        {"csv", 1, 0, 'c'}, {"force", 0, 0, 'F'}, {"help", 0, 0, 'h'}, {"layers", 1, 0, 'l'}, {"heads", 1, 0, 'u'},
        {0, 0, 0, 0}};
    int c;
    long v;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "o:h", longopts, NULL)) != -1) {
        switch (c) {
        case 'a': if (parse_alphas(optarg, o)) return kv_fail(err, "--alpha needs up to %d values in [0, 1)", ANALYSIS_MAX_ALPHA), 2; break;
        case 'b': if (parse_double(optarg, 1e-9, 0.999999, &o->budget_fraction)) return kv_fail(err, "--budget-fraction needs a value in (0, 1)"), 2; break;
        case 'd': if (parse_double(optarg, 1e-9, 0.999999, &o->drop_fraction)) return kv_fail(err, "--drop-fraction needs a value in (0, 1)"), 2; break;
        case 's': if (parse_int(optarg, 0, 1 << 20, &v)) return kv_fail(err, "--sink-tokens needs a count >= 0"), 2; o->sink_tokens = (int)v; break;
        case 'S': if (parse_double(optarg, 0, 1, &o->sink_attention)) return kv_fail(err, "--sink-attention needs a value in [0, 1]"), 2; break;
        case 'B': if (parse_int(optarg, 0, 100000, &v)) return kv_fail(err, "--bootstrap needs 0..100000"), 2; o->n_boot = (int)v; break;
        case 'r': if (parse_int(optarg, 0, 1L << 62, &v)) return kv_fail(err, "--seed needs a number >= 0"), 2; o->seed = (uint64_t)v; break;
        case 'e':
            if (sscanf(optarg, "%d:%d", &o->example_layer, &o->example_head) != 2 || o->example_layer < 0)
                return kv_fail(err, "--example needs LAYER:HEAD"), 2;
            break;
        case 't': if (parse_int(optarg, 1, ANALYSIS_MAX_THREADS, &v)) return kv_fail(err, "--threads needs 1..%d", ANALYSIS_MAX_THREADS), 2; o->threads = (int)v; break;
        case 'i': o->allow_incomplete = 1; break;
        case 'l': if (take_list(optarg, &sel->layers, &o->layers, &o->n_layers)) return kv_fail(err, "--layers needs a list of layer numbers"), 2; break;
        case 'u': if (take_list(optarg, &sel->heads, &o->heads, &o->n_heads)) return kv_fail(err, "--heads needs a list of query head numbers"), 2; break;
        case 'o': *output = optarg; break;
        case 'F': *force = 1; break;
        case 'c': *csv = optarg; break;
        case 'h': printf(ANALYZE_HELP); return -1;
        default: return kv_fail(err, "unknown option or missing value: %s", argv[optind - 1]), 2;
        }
    }
    if (optind != argc - 1) return kv_fail(err, "expected one TRACE.h5"), 2;
    if (!*output) return kv_fail(err, "missing -o ANALYSIS.h5"), 2;
    o->trace = argv[optind];
    return 0;
}

int cmd_analyze(int argc, char **argv)
{
    AnalyzeOptions opt;
    analyze_defaults(&opt);
    opt.threads = (int)sysconf(_SC_NPROCESSORS_ONLN);
    const char *output = NULL, *csv = NULL;
    int force = 0;
    KvError err;
    Selection sel = {0};
    int rc = parse_args(argc, argv, &opt, &sel, &output, &csv, &force, &err);
    if (rc) {
        free(sel.layers);
        free(sel.heads);
        return rc < 0 ? 0 : cli_usage_error("analyze", "%s", err.msg);
    }
    char *cmdline = cli_command_line(argc, argv);
    opt.command_line = cmdline;
    Analysis a;
    OutputInputs inputs = {0};
    char *default_csv = csv ? NULL : output_replace_extension(output, ".csv");
    OutputJob jobs[2] = {{output, analysis_output_hdf5, &a}, {csv ? csv : default_csv, analysis_output_csv, &a}};
    rc = !jobs[1].path || output_list_add(&inputs, opt.trace) ? kv_fail(&err, "out of memory")
         : dist_rank() == 0                                    ? output_check_all(jobs, 2, force, &inputs, &err)
                                                               : 0;
    if (rc == 0 && dist_rank() == 0 && dist_active()) rc = cli_check_traces(&opt.trace, 1, &err);
    rc = dist_agree(rc, "checking the inputs and outputs", &err); /* under mpirun (util/dist.h): rank 0 writes */
    if (rc == 0 && (rc = analyze_run(&opt, &a, &err)) == 0) {
        if (dist_rank() == 0) rc = output_write_all(jobs, 2, force, &err);
        rc = dist_share_status(rc);
        if (rc == 0 && dist_rank() == 0) {
            analysis_print_report(&a, stdout);
            fflush(stdout);
            fprintf(stderr, "analysis -> %s, %s\n", output, jobs[1].path);
        }
        analysis_free(&a);
    }
    output_list_free(&inputs);
    free(default_csv);
    free(cmdline);
    free(sel.layers);
    free(sel.heads);
    return rc ? cli_error("analyze", err.msg) : 0;
}
