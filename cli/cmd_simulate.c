/* kvtrace simulate TRACE.h5 [...] --policy ... --budget ... -o results.h5 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../sim/simulate.h"
#include "../util/dist.h"
#include "cli.h"

static const char SIMULATE_HELP[] =
    "usage: kvtrace simulate TRACE.h5 [TRACE2.h5 ...] [--policy P[:k=v,...]]... [--budget LIST] -o RESULTS.h5\n"
    "\n"
    "Replays every sequence under each policy and budget (docs/semantics.md in the sources) and writes\n"
    "retained mass, attention KL, output error, overlap with ideal and eviction ages (FORMAT.md).\n"
    "\n"
    "  --policy P[:k=v,...]   repeatable; default: every policy with its defaults but optimal (ask for it by\n"
    "                         name: it solves a min-cost flow per cache unit). A default window or sink that\n"
    "                         leaves no room at a small budget shrinks to fit (said on stderr). Policies\n"
    "                         (--list: each parameter's type, bounds and meaning):\n"
    "%s"
    "  --budget LIST          tokens (64), fractions (0.2) or percentages (20%%), comma-separated, repeatable;\n"
    "                         fractions are of T (streaming) or the prompt length P (prefill); default 10%%,20%%,40%%\n"
    "  --allocation A         how the budget B is allocated across cache units, repeatable (default uniform):\n"
    "                         uniform (every unit B), pyramid[:beta=20] (PyramidKV: layer budgets fall\n"
    "                         linearly with depth, mean B), adaptive[:floor=0.2] (Ada-KV: a layer's kv heads\n"
    "                         share kv_heads*B tokens and evict jointly, each keeping floor*B; for h2o, a2sf,\n"
    "                         vatp, tova, snapkv, scissorhands)\n"
    "  --prefill              compress the prompt once at its end, then stream (else streaming from t = 0)\n"
    "  --granularity G        kv_head (default: one cache per kv head) or layer (one per layer)\n"
    "  --layers LIST          only these layers;  --heads LIST  only these kv heads (cache units)\n"
    "  --error-stride N       output error and ideal overlap on every N-th row (default: about 128 rows per\n"
    "                         sequence, every ceil(T/128)-th row of the longest, about 1.25x the cost of no\n"
    "                         error; 1 = every row, exact but 6-9x; 0 = off)\n"
    "  --attention A          attention a trace stores: auto (default: recomputed from q and k when that\n"
    "                         reproduces the stored rows, which is faster), stored, or recompute\n"
    "  --recompute            the same as --attention recompute\n"
    "  --retention L:U        record which tokens each policy holds at each step for unit U of layer L\n"
    "                         of the first sequence (for retention maps)\n"
    "  --threads N            worker threads (default: all cores); results do not depend on N\n"
    "  --allow-incomplete     replay traces whose recording was interrupted\n"
    "  --csv FILE             also write a tidy CSV (default: RESULTS with .csv)\n"
    "  -o, --output FILE      results file (HDF5)\n"
    "  --force                replace existing output files (never an input)\n"
    "  --list                 list every policy and its parameters, then exit\n";

static void print_help(void)
{
    char list[2048] = "";
    for (const PolicyOps *const *o = policy_registry(); *o; o++) {
        char defaults[160];
        policy_defaults_text(*o, defaults, sizeof defaults);
        snprintf(list + strlen(list), sizeof list - strlen(list), "                           %-12s %-38s %s\n",
                 (*o)->name, defaults, (*o)->cost);
    }
    printf(SIMULATE_HELP, list);
}

typedef struct {
    SimOptions sim;
    PolicySpec *policies;
    BudgetSpec *budgets;
    AllocSpec *allocations;
    int *layers, *units;
    const char *output, *csv;
    int force;
} SimArgs;

static int add_policy(SimArgs *a, const char *text, KvError *err)
{
    return cli_add_policy(&a->policies, &a->sim.n_policies, text, err);
}

static int set_budgets(SimArgs *a, const char *text, KvError *err)
{
    return cli_add_budgets(&a->budgets, &a->sim.n_budgets, text, err);
}

static int parse_args(int argc, char **argv, SimArgs *a, KvError *err)
{
    static const struct option longopts[] = {
        {"policy", 1, 0, 'p'}, {"budget", 1, 0, 'b'}, {"allocation", 1, 0, 'a'}, {"prefill", 0, 0, 'P'}, {"granularity", 1, 0, 'g'},
        {"layers", 1, 0, 'l'}, {"heads", 1, 0, 'u'}, {"error-stride", 1, 0, 'e'}, {"recompute", 0, 0, 'r'}, {"attention", 1, 0, 'A'},
        {"retention", 1, 0, 'R'}, {"threads", 1, 0, 't'}, {"allow-incomplete", 0, 0, 'i'}, {"csv", 1, 0, 'c'},
        {"output", 1, 0, 'o'}, {"force", 0, 0, 'F'}, {"help", 0, 0, 'h'}, {"list", 0, 0, 'L'}, {0, 0, 0, 0}};
    SimOptions *s = &a->sim;
    s->error_stride = SIM_ERROR_STRIDE_AUTO;
    s->threads = (int)sysconf(_SC_NPROCESSORS_ONLN);
    s->retention_layer = s->retention_unit = -1;
    int c;
    long v;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "o:h", longopts, NULL)) != -1) {
        switch (c) {
        case 'p': if (add_policy(a, optarg, err)) return 1; break;
        case 'b': if (set_budgets(a, optarg, err)) return 1; break;
        case 'a': if (cli_add_allocation(&a->allocations, &s->n_allocations, optarg, err)) return 1; break;
        case 'P': s->prefill = 1; break;
        case 'g':
            if (strcmp(optarg, "layer") && strcmp(optarg, "kv_head")) return kv_fail(err, "--granularity is kv_head or layer"), 2;
            s->layer_granularity = !strcmp(optarg, "layer");
            break;
        case 'l': if (parse_int_list(optarg, &a->layers, &s->n_layers)) return kv_fail(err, "--layers needs a list of layer numbers"), 2; break;
        case 'u': if (parse_int_list(optarg, &a->units, &s->n_units)) return kv_fail(err, "--heads needs a list of kv head numbers"), 2; break;
        case 'e': if (parse_int(optarg, 0, 1 << 30, &v)) return kv_fail(err, "--error-stride needs a count >= 0"), 2; s->error_stride = (int)v; break;
        case 'r': s->attention_source = SIM_ATTENTION_RECOMPUTE; break;
        case 'A':
            if (!strcmp(optarg, "auto")) s->attention_source = SIM_ATTENTION_AUTO;
            else if (!strcmp(optarg, "stored")) s->attention_source = SIM_ATTENTION_STORED;
            else if (!strcmp(optarg, "recompute")) s->attention_source = SIM_ATTENTION_RECOMPUTE;
            else return kv_fail(err, "--attention is auto, stored or recompute"), 2;
            break;
        case 'R':
            if (sscanf(optarg, "%d:%d", &s->retention_layer, &s->retention_unit) != 2)
                return kv_fail(err, "--retention needs LAYER:UNIT"), 2;
            break;
        case 't': if (parse_int(optarg, 1, 64, &v)) return kv_fail(err, "--threads needs 1..64"), 2; s->threads = (int)v; break;
        case 'i': s->allow_incomplete = 1; break;
        case 'c': a->csv = optarg; break;
        case 'o': a->output = optarg; break;
        case 'F': a->force = 1; break;
        case 'h': print_help(); return -1;
        case 'L': policy_print_list(stdout); return -1;
        default: return kv_fail(err, "unknown option or missing value: %s", argv[optind - 1]), 2;
        }
    }
    if (optind >= argc) return kv_fail(err, "expected at least one TRACE.h5"), 2;
    if (!a->output) return kv_fail(err, "missing -o RESULTS.h5"), 2;
    s->traces = (const char *const *)argv + optind;
    s->n_traces = argc - optind;
    if (s->n_policies == 0) /* every policy but the hindsight oracle, which is asked for by name (it is slow) */
        for (const PolicyOps *const *o = policy_registry(); *o; o++)
            if (!(*o)->needs_hindsight && add_policy(a, (*o)->name, err)) return 1;
    if (s->n_budgets == 0 && set_budgets(a, "10%,20%,40%", err)) return 1;
    s->policies = a->policies;
    s->budgets = a->budgets;
    s->allocations = a->allocations;
    s->layers = a->layers;
    s->units = a->units;
    return 0;
}


/* Checks the outputs, replays, writes: 0, 1 (failed) or 2 (usage). */
static int run_simulate(SimArgs *a, KvError *err)
{
    char *csv = a->csv ? NULL : output_replace_extension(a->output, ".csv");
    const char *csv_path = a->csv ? a->csv : csv;
    OutputInputs inputs = {0};
    SimResults res;
    SimWrite w = {&res, &a->sim};
    OutputJob jobs[2] = {{a->output, sim_output_hdf5, &w}, {csv_path, sim_output_csv, &w}};
    int rc = csv_path ? 0 : kv_fail(err, "out of memory");
    for (int i = 0; i < a->sim.n_traces && rc == 0; i++)
        if (output_list_add(&inputs, a->sim.traces[i])) rc = kv_fail(err, "out of memory");
    if (rc == 0 && dist_rank() == 0) rc = output_check_all(jobs, 2, a->force, &inputs, err);
    if (rc == 0 && dist_rank() == 0 && dist_active()) rc = cli_check_traces(a->sim.traces, a->sim.n_traces, err);
    rc = dist_agree(rc, "checking the inputs and outputs", err); /* under mpirun (util/dist.h): rank 0 writes */
    if (rc == 0 && (rc = simulate_run(&a->sim, &res, err)) == 0) {
        if (dist_rank() == 0) rc = output_write_all(jobs, 2, a->force, err);
        rc = dist_share_status(rc);
        if (rc == 0 && dist_rank() == 0) {
            sim_print_table(&res, stdout);
            fprintf(stderr, "%d configurations x %d sequences in %.2f s -> %s, %s\n", res.n_configs, res.n_sequences,
                    res.seconds, a->output, csv_path);
        }
        sim_results_free(&res);
    }
    output_list_free(&inputs);
    free(csv);
    return rc ? 1 : 0;
}

int cmd_simulate(int argc, char **argv)
{
    char *cmdline = cli_command_line(argc, argv);
    SimArgs a = {0};
    KvError err;
    int rc = parse_args(argc, argv, &a, &err);
    if (rc == 0) {
        a.sim.command_line = cmdline;
        rc = run_simulate(&a, &err);
    }
    free(a.policies); free(a.budgets); free(a.allocations); free(a.layers); free(a.units);
    free(cmdline);
    if (rc < 0) return 0;
    if (rc == 2) return cli_usage_error("simulate", "%s", err.msg);
    return rc ? cli_error("simulate", err.msg) : 0;
}
