/* kvtrace demo — the main job: record example traces from the bundled model
 * (or use the committed ones in traces/) and report what they hold. */
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "../analysis/analysis.h"
#include "../eval/eval.h"
#include "../plots/plot.h"
#include "../sim/simulate.h"
#include "../trace/recorder.h"
#include "cli.h"

static const char DEMO_HELP[] =
    "usage: kvtrace demo [--model MODEL.gguf] [-o DIR]\n"
    "\n"
    "Records traces of the prompts in traces/prompts.txt from MODEL (default: $KVTRACE_MODEL,\n"
    "models/stories260K.gguf, or ../shared/models/stories260K.gguf), or, when no model is found,\n"
    "uses the committed traces/stories260K.h5; replays them under every policy at 10%, 20% and 40%\n"
    "budgets; analyses the age bias and the key/value norms; draws every figure into DIR/figures and\n"
    "prints a five-line summary. Everything goes into DIR (default demo-out).\n";

#define DEMO_LAYER 2 /* the layer whose retention maps and heatmap the figures show */

/* Every registered policy (snapkv with a window that fits small budgets);
 * the oracles come last, so the first DEMO_REAL can also run in the loop. */
static const char *const DEMO_POLICIES[] = {"full", "window", "streaming", "h2o", "a2sf", "vatp", "knorm", "tova",
                                            "snapkv:window=8", "random", "ideal", "optimal"};
enum { DEMO_N_POLICIES = sizeof DEMO_POLICIES / sizeof DEMO_POLICIES[0], DEMO_REAL = DEMO_N_POLICIES - 2 };
static const char *const DEMO_BUDGETS[] = {"10%", "20%", "40%"};
enum { DEMO_N_BUDGETS = sizeof DEMO_BUDGETS / sizeof DEMO_BUDGETS[0] };

static int demo_specs(PolicySpec *policies, BudgetSpec *budgets)
{
    KvError err;
    for (int i = 0; i < DEMO_N_POLICIES; i++)
        if (policy_parse(DEMO_POLICIES[i], &policies[i], &err)) return cli_error("demo", err.msg);
    for (int i = 0; i < DEMO_N_BUDGETS; i++)
        if (parse_budget(DEMO_BUDGETS[i], &budgets[i], &err)) return cli_error("demo", err.msg);
    return 0;
}

static int demo_simulate(const char *trace, const char *dir, const PolicySpec *policies, const BudgetSpec *budgets,
                         SimResults *res)
{
    KvError err;
    const char *traces[1] = {trace};
    SimOptions opt = {.traces = traces, .n_traces = 1, .policies = policies, .n_policies = DEMO_N_POLICIES,
                      .budgets = budgets, .n_budgets = DEMO_N_BUDGETS, .error_stride = 1, .threads = 2,
                      .retention_layer = DEMO_LAYER, .retention_unit = 0, .command_line = "kvtrace demo"};
    char results[1024], csv[1024];
    snprintf(results, sizeof results, "%s/results.h5", dir);
    snprintf(csv, sizeof csv, "%s/results.csv", dir);
    if (simulate_run(&opt, res, &err)) return cli_error("demo", err.msg);
    int rc = sim_write_hdf5(res, &opt, results, &err) || sim_write_csv(res, csv, &err);
    if (rc) {
        sim_results_free(res);
        return cli_error("demo", err.msg);
    }
    printf("\nsimulated %d configurations over %d sequences in %.1f s -> %s, %s\n\n", res->n_configs,
           res->n_sequences, res->seconds, results, csv);
    sim_print_table(res, stdout);
    return 0;
}

static int demo_analyze(const char *trace, const char *dir, Analysis *a)
{
    AnalyzeOptions opt;
    analyze_defaults(&opt);
    opt.trace = trace;
    opt.n_boot = 500;
    opt.example_layer = DEMO_LAYER;
    opt.command_line = "kvtrace demo";
    char path[1024];
    snprintf(path, sizeof path, "%s/analysis.h5", dir);
    KvError err;
    if (analyze_run(&opt, a, &err)) return cli_error("demo", err.msg);
    if (analysis_write_hdf5(a, path, &err)) {
        analysis_free(a);
        return cli_error("demo", err.msg);
    }
    printf("\nanalysed the trace in %.1f s -> %s\n", a->seconds, path);
    analysis_print_report(a, stdout);
    return 0;
}

/* A short closed-loop evaluation on the hand-written stories in texts/. */
static int demo_eval(const char *model_path, const char *dir, const PolicySpec *policies, const BudgetSpec *budgets,
                     EvalResults *res)
{
    KvError err;
    char **texts, trace[1024], path[1024], csv[1024];
    int n;
    if (read_lines("texts/stories.txt", &texts, &n))
        return cli_error("demo", "texts/stories.txt: cannot read (run the demo from the repository root)");
    snprintf(trace, sizeof trace, "%s/eval-trace.h5", dir);
    snprintf(path, sizeof path, "%s/eval.h5", dir);
    snprintf(csv, sizeof csv, "%s/eval.csv", dir);
    EvalOptions opt = {.model_path = model_path, .texts = (const char *const *)texts, .n_texts = n,
                       .policies = policies, .n_policies = DEMO_REAL, .budgets = budgets, .n_budgets = DEMO_N_BUDGETS,
                       .generate = 16, .threads = 2, .retention_layer = -1, .retention_unit = -1,
                       .trace_path = trace, .command_line = "kvtrace demo"};
    int rc = eval_run(&opt, res, &err);
    if (rc == 0 && (eval_write_hdf5(res, &opt, path, &err) || eval_write_csv(res, csv, &err))) {
        eval_results_free(res);
        rc = -1;
    }
    free_lines(texts, n);
    if (rc) return cli_error("demo", err.msg);
    printf("\nclosed loop: %d configurations x %d hand-written stories in %.1f s -> %s, %s\n\n", res->C, res->S,
           res->seconds, path, csv);
    eval_print_table(res, stdout);
    return 0;
}

static int demo_plot(const char *trace, const char *dir, int with_eval, char *figures, size_t cap)
{
    char results[1024], analysis[1024], eval[1024];
    snprintf(results, sizeof results, "%s/results.h5", dir);
    snprintf(analysis, sizeof analysis, "%s/analysis.h5", dir);
    snprintf(eval, sizeof eval, "%s/eval.h5", dir);
    snprintf(figures, cap, "%s/figures", dir);
    const char *inputs[4] = {results, analysis, trace, eval};
    PlotOptions opt;
    plot_defaults(&opt);
    opt.out_dir = figures;
    opt.layer = DEMO_LAYER;
    PlotOutput done;
    KvError err;
    if (plot_run(inputs, with_eval ? 4 : 3, &opt, &done, &err)) return cli_error("demo", err.msg);
    printf("\n%d figures in %s/:", done.n, figures);
    for (int i = 0; i < done.n; i++) printf(" %s.png", done.name[i]);
    printf("\n");
    return 0;
}

/* Mean retained mass of a policy at a budget, or NaN. */
static double mass_at(const SimResults *res, const char *policy, const char *budget)
{
    for (int c = 0; c < res->n_configs; c++)
        if (!strcmp(res->config_policy[c], policy) && !strcmp(res->config_budget[c], budget)) {
            double mean, std;
            sim_overall(res, c, 0, &mean, &std);
            return mean;
        }
    return NAN;
}

/* The best real (non-oracle, evicting) policy at a budget. */
static const char *best_policy(const SimResults *res, const char *budget, double *mass)
{
    const char *best = "none";
    *mass = -1;
    for (int c = 0; c < res->n_configs; c++) {
        const char *p = res->config_policy[c];
        if (!strcmp(p, "full") || !strcmp(p, "ideal") || !strcmp(p, "optimal") || strcmp(res->config_budget[c], budget))
            continue;
        double m = mass_at(res, p, budget);
        if (m > *mass) { *mass = m; best = p; }
    }
    return best;
}

static int score_index(const Analysis *a, const char *name)
{
    for (int k = 0; k < a->K; k++)
        if (!strcmp(a->score_name[k], name)) return k;
    return 0;
}

static int method_index(const Analysis *a, const char *name)
{
    for (int m = 0; m < a->M; m++)
        if (!strcmp(a->method_name[m], name)) return m;
    return 0;
}

/* Mean closed-loop ΔNLL of a policy at a budget, or NaN. */
static double delta_nll_at(const EvalResults *e, const char *policy, const char *budget)
{
    for (int c = 0; e && c < e->C; c++)
        if (!strcmp(e->offline.config_policy[c], policy) && !strcmp(e->offline.config_budget[c], budget)) {
            double mean, std;
            eval_overall(e, c, EVAL_DELTA_NLL, &mean, &std);
            return mean;
        }
    return NAN;
}

static void demo_summary(const SimResults *res, const Analysis *a, const EvalResults *e, const char *figures)
{
    int h2o = score_index(a, "h2o"), a2sf = score_index(a, "a2sf_0.2");
    double best_mass;
    const char *best = best_policy(res, "20%", &best_mass);
    printf("\nSummary (figures in %s/):\n", figures);
    printf("1. Age bias: the H2O score's Spearman correlation with token age is %+.2f [%+.2f, %+.2f]; A2SF's "
           "(alpha 0.2) is %+.2f - forgetting removes the advantage of old tokens (age_bias.png).\n",
           a->age_pooled[h2o][0], a->age_pooled[h2o][1], a->age_pooled[h2o][2], a->age_pooled[a2sf][0]);
    printf("2. Top-20%% sets: H2O keeps tokens of mean relative age %.2f, A2SF %.2f, the per-row ideal %.2f "
           "(0 newest, 1 oldest; retention.png, eviction_age.png).\n",
           a->relative_age_pooled[0][0], a->relative_age_pooled[method_index(a, "a2sf_0.2")][0],
           a->relative_age_pooled[a->M - 1][0]);
    printf("3. Retained mass at 20%%: the best real policy is %s (%.3f); h2o %.3f, window %.3f; bounds: "
           "optimal %.3f, ideal %.3f (mass.png, error.png).\n", best, best_mass, mass_at(res, "h2o", "20%"),
           mass_at(res, "window", "20%"), mass_at(res, "optimal", "20%"), mass_at(res, "ideal", "20%"));
    if (e)
        printf("   In the loop at 20%%, the NLL rises by %.3f (a2sf), %.3f (h2o), %.3f (window) nats per token; offline mass "
               "ranks all configurations like the closed loop with Spearman %+.2f (nll.png, offline_vs_closed.png).\n",
               delta_nll_at(e, "a2sf", "20%"), delta_nll_at(e, "h2o", "20%"), delta_nll_at(e, "window", "20%"),
               e->rank_overall);
    printf("4. Key norms: Spearman of key L2 norm with attention received is %+.2f (the K-norm paper expects < 0); "
           "dropping half the keys by norm loses %.2f of the attention vs %.2f at random (ALR %.1f; "
           "key_norm.png), so knorm keeps %.3f at 20%%.\n", a->key_pooled[0], a->loss_norm_pooled,
           a->loss_random_pooled, a->alr_pooled, mass_at(res, "knorm", "20%"));
    printf("5. Value norms: sink tokens' value L1 norm is %.2fx the others' (VATP expects << 1); Spearman of value "
           "norm with attention %+.2f (value_norm.png, heatmap.png).\n", a->sink_ratio_pooled[0], a->value_pooled[0]);
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
    PolicySpec policies[DEMO_N_POLICIES]; /* the results point into these until the end */
    BudgetSpec budgets[DEMO_N_BUDGETS];
    if ((rc = demo_specs(policies, budgets)) != 0) return rc;
    SimResults res;
    Analysis analysis;
    EvalResults eval;
    int with_eval = model_path != NULL;
    char figures[1100];
    if ((rc = demo_simulate(trace, dir, policies, budgets, &res)) != 0) return rc;
    if ((rc = demo_analyze(trace, dir, &analysis)) == 0) {
        if (with_eval) rc = demo_eval(model_path, dir, policies, budgets, &eval);
        else printf("\nno model: the closed-loop evaluation is skipped\n");
        if (rc == 0 && (rc = demo_plot(trace, dir, with_eval, figures, sizeof figures)) == 0)
            demo_summary(&res, &analysis, with_eval ? &eval : NULL, figures);
        if (with_eval && rc == 0) eval_results_free(&eval);
        analysis_free(&analysis);
    }
    sim_results_free(&res);
    return rc;
}
