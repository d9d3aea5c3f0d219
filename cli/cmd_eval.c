/* kvtrace eval MODEL --text-file FILE | --prompt-file FILE [...] -o eval.h5 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../eval/eval.h"
#include "../util/dist.h"
#include "cli.h"

static const char EVAL_HELP[] =
    "usage: kvtrace eval MODEL (--text-file FILE | --prompt-file FILE) [--policy P]... [--budget LIST] -o EVAL.h5\n"
    "\n"
    "Runs the model teacher-forced over each text with its KV cache pruned by each policy (the same policy\n"
    "code as simulate) and compares with the full cache: next-token NLL increase, perplexity ratio,\n"
    "KL(p_full || p_pruned), top-1 agreement, and greedy agreement. The full-cache run is recorded as a\n"
    "trace and replayed offline, and the offline retained mass is ranked against the closed-loop NLL.\n"
    "\n"
    "  --text-file FILE       texts to evaluate, one per line\n"
    "  --prompt-file FILE     prompts, one per line: the model writes its own stories after them\n"
    "  --sample N             tokens the model writes after each prompt (default 200)\n"
    "  --temperature X, --seed N   sampling of those stories (default 0.8, 1)\n"
    "  --policy P[:k=v,...]   repeatable; default every real policy (the ideal and optimal oracles cannot run)\n"
    "  --budget LIST          as for simulate, repeatable (default 10%,20%,40%)\n"
    "  --allocation A         as for simulate, repeatable: uniform (default), pyramid[:beta=20], adaptive[:floor=0.2]\n"
    "  --prefill              compress the prompt once at its end, then stream\n"
    "  --granularity G        kv_head (default) or layer\n"
    "  --generate N           greedy tokens after each text, compared with the full cache's (default 0)\n"
    "  --retention L:U        record the held tokens of unit U of layer L for the first text\n"
    "  --threads N            worker threads (default: all cores)\n"
    "  --trace FILE           where the full-cache trace goes (default: EVAL with -trace.h5)\n"
    "  --csv FILE             the CSV (default: EVAL with .csv)\n"
    "  -o, --output FILE      results (HDF5)\n"
    "  --force                replace existing output files (never an input)\n";

typedef struct {
    EvalOptions eval;
    PolicySpec *policies;
    BudgetSpec *budgets;
    AllocSpec *allocations;
    char **texts;
    int n_texts;
    const char *text_file, *prompt_file, *output, *csv, *trace;
    int force;
} EvalArgs;

static int add_policy(EvalArgs *a, const char *text, KvError *err)
{
    return cli_add_policy(&a->policies, &a->eval.n_policies, text, err);
}

static int set_budgets(EvalArgs *a, const char *text, KvError *err)
{
    return cli_add_budgets(&a->budgets, &a->eval.n_budgets, text, err);
}

static int parse_args(int argc, char **argv, EvalArgs *a, KvError *err)
{
    static const struct option longopts[] = {
        {"text-file", 1, 0, 'x'}, {"prompt-file", 1, 0, 'P'}, {"sample", 1, 0, 'n'}, {"temperature", 1, 0, 'T'},
        {"seed", 1, 0, 's'}, {"policy", 1, 0, 'p'}, {"budget", 1, 0, 'b'}, {"allocation", 1, 0, 'a'}, {"prefill", 0, 0, 'f'},
        {"granularity", 1, 0, 'g'}, {"generate", 1, 0, 'G'}, {"retention", 1, 0, 'R'}, {"threads", 1, 0, 't'},
        {"trace", 1, 0, 'r'}, {"csv", 1, 0, 'c'}, {"output", 1, 0, 'o'}, {"force", 0, 0, 'F'}, {"help", 0, 0, 'h'}, {0, 0, 0, 0}};
    EvalOptions *e = &a->eval;
    e->sample_tokens = 200;
    e->temperature = 0.8f;
    e->seed = 1;
    e->threads = (int)sysconf(_SC_NPROCESSORS_ONLN);
    e->retention_layer = e->retention_unit = -1;
    int c;
    long v;
    double x;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "o:h", longopts, NULL)) != -1) {
        switch (c) {
        case 'x': a->text_file = optarg; break;
        case 'P': a->prompt_file = optarg; break;
        case 'n': if (parse_int(optarg, 1, 1 << 20, &v)) return kv_fail(err, "--sample needs a token count >= 1"), 2; e->sample_tokens = (int)v; break;
        case 'T': if (parse_double(optarg, 0, 10, &x)) return kv_fail(err, "--temperature needs 0..10"), 2; e->temperature = (float)x; break;
        case 's': if (parse_int(optarg, 0, 1L << 62, &v)) return kv_fail(err, "--seed needs a number >= 0"), 2; e->seed = (uint64_t)v; break;
        case 'p': if (add_policy(a, optarg, err)) return 2; break;
        case 'b': if (set_budgets(a, optarg, err)) return 2; break;
        case 'a': if (cli_add_allocation(&a->allocations, &e->n_allocations, optarg, err)) return 2; break;
        case 'f': e->prefill = 1; break;
        case 'g':
            if (strcmp(optarg, "layer") && strcmp(optarg, "kv_head")) return kv_fail(err, "--granularity is kv_head or layer"), 2;
            e->layer_granularity = !strcmp(optarg, "layer");
            break;
        case 'G': if (parse_int(optarg, 0, 1 << 20, &v)) return kv_fail(err, "--generate needs a token count >= 0"), 2; e->generate = (int)v; break;
        case 'R':
            if (sscanf(optarg, "%d:%d", &e->retention_layer, &e->retention_unit) != 2 || e->retention_layer < 0)
                return kv_fail(err, "--retention needs LAYER:UNIT"), 2;
            break;
        case 't': if (parse_int(optarg, 1, 64, &v)) return kv_fail(err, "--threads needs 1..64"), 2; e->threads = (int)v; break;
        case 'r': a->trace = optarg; break;
        case 'c': a->csv = optarg; break;
        case 'o': a->output = optarg; break;
        case 'F': a->force = 1; break;
        case 'h': fputs(EVAL_HELP, stdout); return -1;
        default: return kv_fail(err, "unknown option or missing value: %s", argv[optind - 1]), 2;
        }
    }
    if (optind != argc - 1) return kv_fail(err, "expected one MODEL"), 2;
    if (!a->output) return kv_fail(err, "missing -o EVAL.h5"), 2;
    if (!a->text_file == !a->prompt_file) return kv_fail(err, "give one of --text-file or --prompt-file"), 2;
    e->model_path = argv[optind];
    if (e->n_policies == 0)
        for (const PolicyOps *const *o = policy_registry(); *o; o++)
            if ((*o)->kind != KIND_IDEAL && !(*o)->needs_hindsight && add_policy(a, (*o)->name, err)) return 1;
    if (e->n_budgets == 0 && set_budgets(a, "10%,20%,40%", err)) return 1;
    return 0;
}


/* The outputs: EVAL.h5, its CSV and the full-cache trace.  The trace is
 * recorded into a temporary file beside its name and moved into place with
 * the others only when the whole evaluation succeeded. */
typedef struct {
    char *trace, *csv;
    OutputFile trace_out;
} EvalOutputs;

static int run_eval(EvalArgs *a, EvalOutputs *o, OutputInputs *inputs, KvError *err)
{
    EvalOptions *e = &a->eval;
    EvalResults res;
    EvalWrite w = {&res, e};
    OutputJob jobs[3] = {{a->output, eval_output_hdf5, &w}, {o->csv, eval_output_csv, &w}, {o->trace, NULL, NULL}};
    if (output_list_add(inputs, e->model_path) || output_list_add(inputs, a->text_file ? a->text_file : a->prompt_file))
        return kv_fail(err, "out of memory");
    const char *file = a->text_file ? a->text_file : a->prompt_file;
    int rc = dist_rank() == 0 ? output_check_all(jobs, 3, a->force, inputs, err) : 0;
    if (rc == 0 && (read_lines(file, &a->texts, &a->n_texts) || a->n_texts == 0))
        rc = kv_fail(err, "%s: cannot read, or it holds no lines of text", file);
    if (rc == 0 && dist_rank() == 0)
        rc = output_begin(&o->trace_out, o->trace, a->force, NULL, err); /* checked above */
    /* under mpirun (util/dist.h): rank 0 alone writes; the others read the trace it records */
    if (dist_agree(rc, "checking the outputs", err)) return -1;
    char *trace_file = dist_share_text(o->trace_out.tmp);
    if (!trace_file) return kv_fail(err, "out of memory");
    e->texts = (const char *const *)a->texts;
    e->n_texts = a->n_texts;
    if (a->text_file) e->sample_tokens = 0;
    e->policies = a->policies;
    e->budgets = a->budgets;
    e->allocations = a->allocations;
    e->trace_path = o->trace;
    e->trace_file = trace_file;
    rc = eval_run(e, &res, err);
    if (rc) {
        free(trace_file);
        return -1;
    }
    /* the eval file records the trace's sha256, read from trace_file: freed only once written */
    if (dist_rank() == 0) rc = output_write_all(jobs, 2, a->force, err) || output_commit(&o->trace_out, err) ? -1 : 0;
    free(trace_file);
    e->trace_file = NULL;
    rc = dist_share_status(rc);
    if (rc == 0 && dist_rank() == 0) {
        eval_print_table(&res, stdout);
        fflush(stdout);
        fprintf(stderr, "%d configurations x %d texts in %.1f s -> %s, %s (full-cache trace: %s)\n", res.C, res.S,
                res.seconds, a->output, o->csv, o->trace);
    }
    eval_results_free(&res);
    return rc;
}

static int run(EvalArgs *a, KvError *err)
{
    EvalOutputs o = {0};
    OutputInputs inputs = {0};
    o.trace = a->trace ? strdup(a->trace) : output_replace_extension(a->output, "-trace.h5");
    o.csv = a->csv ? strdup(a->csv) : output_replace_extension(a->output, ".csv");
    int rc = o.trace && o.csv ? run_eval(a, &o, &inputs, err) : kv_fail(err, "out of memory");
    output_abort(&o.trace_out); /* a no-op once committed */
    output_list_free(&inputs);
    free(o.trace);
    free(o.csv);
    return rc;
}

int cmd_eval(int argc, char **argv)
{
    char *cmdline = cli_command_line(argc, argv);
    EvalArgs a = {0};
    a.eval.command_line = cmdline;
    KvError err;
    int rc = parse_args(argc, argv, &a, &err);
    if (rc == 0) rc = run(&a, &err) ? 1 : 0;
    free(a.policies);
    free(a.budgets);
    free(a.allocations);
    if (a.texts) free_lines(a.texts, a.n_texts);
    free(cmdline);
    if (rc < 0) return 0;
    if (rc == 2) return cli_usage_error("eval", "%s", err.msg);
    return rc ? cli_error("eval", err.msg) : 0;
}
