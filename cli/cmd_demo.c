/* kvtrace demo — the main job: record example traces from the bundled model
 * (or use the committed ones in traces/) and report what they hold. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "../sim/simulate.h"
#include "../trace/recorder.h"
#include "cli.h"

static const char DEMO_HELP[] =
    "usage: kvtrace demo [--model MODEL.gguf] [-o DIR]\n"
    "\n"
    "Records traces of the prompts in traces/prompts.txt from MODEL (default: $KVTRACE_MODEL,\n"
    "models/stories260K.gguf, or ../shared/models/stories260K.gguf), or, when no model is found,\n"
    "uses the committed traces/stories260K.h5; replays them under every policy at 10%, 20% and 40%\n"
    "budgets; writes everything into DIR (default demo-out).\n";

/* Every registered policy (snapkv with a window that fits small budgets). */
static int demo_simulate(const char *trace, const char *dir)
{
    static const char *names[] = {"full", "window", "streaming", "h2o", "a2sf", "vatp", "knorm", "tova",
                                  "snapkv:window=8", "random", "ideal", "optimal"};
    enum { N_POLICIES = sizeof names / sizeof names[0] };
    PolicySpec policies[N_POLICIES];
    BudgetSpec budgets[3];
    KvError err;
    const char *budget_text[3] = {"10%", "20%", "40%"};
    for (int i = 0; i < N_POLICIES; i++)
        if (policy_parse(names[i], &policies[i], &err)) return cli_error("demo", err.msg);
    for (int i = 0; i < 3; i++)
        if (parse_budget(budget_text[i], &budgets[i], &err)) return cli_error("demo", err.msg);
    const char *traces[1] = {trace};
    SimOptions opt = {.traces = traces, .n_traces = 1, .policies = policies, .n_policies = N_POLICIES,
                      .budgets = budgets, .n_budgets = 3, .error_stride = 1, .threads = 2,
                      .retention_layer = -1, .retention_unit = -1, .command_line = "kvtrace demo"};
    char results[1024], csv[1024];
    snprintf(results, sizeof results, "%s/results.h5", dir);
    snprintf(csv, sizeof csv, "%s/results.csv", dir);
    SimResults res;
    if (simulate_run(&opt, &res, &err)) return cli_error("demo", err.msg);
    int rc = sim_write_hdf5(&res, &opt, results, &err) || sim_write_csv(&res, csv, &err);
    if (rc == 0) {
        printf("\nsimulated %d configurations over %d sequences in %.1f s -> %s, %s\n\n", res.n_configs,
               res.n_sequences, res.seconds, results, csv);
        sim_print_table(&res, stdout);
    }
    sim_results_free(&res);
    return rc ? cli_error("demo", err.msg) : 0;
}

static const char *find_model(const char *given)
{
    static const char *candidates[] = {"models/stories260K.gguf", "../shared/models/stories260K.gguf"};
    if (given) return given;
    const char *env = getenv("KVTRACE_MODEL");
    if (env && file_exists(env)) return env;
    for (size_t i = 0; i < sizeof candidates / sizeof candidates[0]; i++)
        if (file_exists(candidates[i])) return candidates[i];
    return NULL;
}

/* Records the demo trace into dir/trace.h5; returns its path in out. */
static int demo_record(const char *model_path, const char *dir, char *out, size_t cap)
{
    Model m;
    KvError err;
    if (model_load(&m, model_path, NULL, &err)) return cli_error("demo", err.msg);
    char **prompts;
    int n;
    if (read_lines("traces/prompts.txt", &prompts, &n)) {
        model_free(&m);
        return cli_error("demo", "traces/prompts.txt: cannot read (run the demo from the repository root)");
    }
    RecordOptions opt = {.prompts = (const char *const *)prompts, .n_prompts = n, .generate = 200,
                         .temperature = 0.8f, .top_p = 0.9f, .seed = 1, .stop_at_eos = 0,
                         .command_line = "kvtrace demo"};
    snprintf(out, cap, "%s/trace.h5", dir);
    remove(out);
    RecordSummary sum;
    int rc = record_traces(&m, &opt, out, &sum, &err);
    free_lines(prompts, n);
    model_free(&m);
    if (rc) return cli_error("demo", err.msg);
    printf("recorded %d sequences (%ld tokens) from %s in %.2f s -> %s\n", sum.n_sequences, sum.n_tokens,
           model_path, sum.seconds, out);
    return 0;
}

int cmd_demo(int argc, char **argv)
{
    static const struct option longopts[] = {{"model", 1, 0, 'm'}, {"output", 1, 0, 'o'}, {"help", 0, 0, 'h'}, {0, 0, 0, 0}};
    const char *given = NULL, *dir = "demo-out";
    int c;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "o:h", longopts, NULL)) != -1) {
        if (c == 'm') given = optarg;
        else if (c == 'o') dir = optarg;
        else if (c == 'h') { fputs(DEMO_HELP, stdout); return 0; }
        else return cli_usage_error("demo", "unknown option or missing value: %s", argv[optind - 1]);
    }
    if (mkdir(dir, 0755) != 0 && !file_exists(dir)) return cli_error("demo", "cannot create the output folder");
    const char *model_path = find_model(given);
    char trace[1024];
    if (model_path) {
        int rc = demo_record(model_path, dir, trace, sizeof trace);
        if (rc) return rc;
    } else {
        snprintf(trace, sizeof trace, "traces/stories260K.h5");
        printf("no model found (see scripts/get-model); using the committed %s\n", trace);
    }
    char *info_argv[] = {"info", trace, NULL};
    int rc = cmd_info(2, info_argv);
    if (rc != 0) return rc;
    return demo_simulate(trace, dir);
}
