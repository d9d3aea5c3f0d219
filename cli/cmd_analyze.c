/* kvtrace analyze TRACE.h5 -o ANALYSIS.h5 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../analysis/analysis.h"
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
    "  --example L:H          layer and head whose per-position curves are stored (default middle layer, head 0)\n"
    "  --allow-incomplete     analyse a trace whose recording was interrupted\n"
    "  -o, --output FILE      analysis file (HDF5)\n";

static int parse_alphas(const char *text, AnalyzeOptions *o)
{
    char buf[256];
    snprintf(buf, sizeof buf, "%s", text);
    o->n_alpha = 0;
    char *save = NULL;
    for (char *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        if (o->n_alpha == ANALYSIS_MAX_ALPHA || parse_double(tok, 0, 0.999999, &o->alphas[o->n_alpha])) return -1;
        o->n_alpha++;
    }
    return o->n_alpha ? 0 : -1;
}

static int parse_args(int argc, char **argv, AnalyzeOptions *o, const char **output, KvError *err)
{
    static const struct option longopts[] = {
        {"alpha", 1, 0, 'a'}, {"budget-fraction", 1, 0, 'b'}, {"drop-fraction", 1, 0, 'd'},
        {"sink-tokens", 1, 0, 's'}, {"sink-attention", 1, 0, 'S'}, {"bootstrap", 1, 0, 'B'}, {"seed", 1, 0, 'r'},
        {"example", 1, 0, 'e'}, {"allow-incomplete", 0, 0, 'i'}, {"output", 1, 0, 'o'}, {"help", 0, 0, 'h'},
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
        case 'i': o->allow_incomplete = 1; break;
        case 'o': *output = optarg; break;
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
    char cmdline[4096], full[4200];
    join_argv(argc, argv, cmdline, sizeof cmdline);
    snprintf(full, sizeof full, "kvtrace %s", cmdline);
    AnalyzeOptions opt;
    analyze_defaults(&opt);
    const char *output = NULL;
    KvError err;
    int rc = parse_args(argc, argv, &opt, &output, &err);
    if (rc < 0) return 0;
    if (rc == 2) return cli_usage_error("analyze", "%s", err.msg);
    opt.command_line = full;
    Analysis a;
    if (analyze_run(&opt, &a, &err)) return cli_error("analyze", err.msg);
    rc = analysis_write_hdf5(&a, output, &err);
    if (rc == 0) {
        analysis_print_report(&a, stdout);
        fflush(stdout);
        fprintf(stderr, "analysis -> %s\n", output);
    }
    analysis_free(&a);
    return rc ? cli_error("analyze", err.msg) : 0;
}
