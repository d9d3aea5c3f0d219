/* kvtrace demo — the main job: record example traces from the bundled model
 * (or use the committed ones in traces/) and report what they hold. */
#include <dirent.h>
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
#include "../util/datadir.h"
#include "cli.h"

static const char DEMO_HELP[] =
    "usage: kvtrace demo [--model MODEL.gguf] [-o DIR]\n"
    "\n"
    "Records traces of the prompts in traces/prompts.txt from MODEL (default: $KVTRACE_MODEL,\n"
    "./models/stories260K.gguf, or the source tree's models/ or ../shared/models/), or, when no model is\n"
    "found, uses the example trace traces/stories260K.h5 (kvtrace's data folder: $KVTRACE_DATA, beside\n"
    "the installed binary, or the source tree); replays them under every policy at 10%, 20% and 40%\n"
    "budgets; analyses the age bias and the key/value norms; draws every figure into DIR/figures and\n"
    "prints a summary with the numbers each figure shows. Everything goes into DIR (default demo-out); files the demo would\n"
    "write that exist already are refused unless --force.\n";

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

/* The files the demo writes into its folder: all checked before it starts,
 * each written under the output rule (util/output.h). */
typedef struct {
    const char *dir;
    int force;
    char trace[1100], results[1100], results_csv[1100], analysis[1100], analysis_csv[1100], eval[1100], eval_csv[1100],
        eval_trace[1100], figures[1100];
} DemoFiles;

static void demo_files(DemoFiles *f, const char *dir, int force)
{
    f->dir = dir;
    f->force = force;
    snprintf(f->trace, sizeof f->trace, "%s/trace.h5", dir);
    snprintf(f->results, sizeof f->results, "%s/results.h5", dir);
    snprintf(f->results_csv, sizeof f->results_csv, "%s/results.csv", dir);
    snprintf(f->analysis, sizeof f->analysis, "%s/analysis.h5", dir);
    snprintf(f->analysis_csv, sizeof f->analysis_csv, "%s/analysis.csv", dir);
    snprintf(f->eval, sizeof f->eval, "%s/eval.h5", dir);
    snprintf(f->eval_csv, sizeof f->eval_csv, "%s/eval.csv", dir);
    snprintf(f->eval_trace, sizeof f->eval_trace, "%s/eval-trace.h5", dir);
    snprintf(f->figures, sizeof f->figures, "%s/figures", dir);
}

static int demo_check_outputs(const DemoFiles *f, int record, int eval)
{
    const char *paths[] = {f->results, f->results_csv, f->analysis, f->analysis_csv, record ? f->trace : NULL,
                           eval ? f->eval : NULL, eval ? f->eval_csv : NULL, eval ? f->eval_trace : NULL};
    OutputInputs seen = {0};
    KvError err;
    int rc = 0;
    for (size_t i = 0; i < sizeof paths / sizeof paths[0] && rc == 0; i++) {
        if (!paths[i]) continue;
        rc = output_check(paths[i], f->force, &seen, &err) || output_list_add(&seen, paths[i]);
    }
    output_list_free(&seen);
    if (rc) return cli_error("demo", err.msg);
    /* the figures are plot's outputs (it checks each file); refuse early rather than after the work */
    DIR *figures = f->force ? NULL : opendir(f->figures);
    int old_figures = 0;
    for (struct dirent *e; figures && (e = readdir(figures));) old_figures |= e->d_name[0] != '.';
    if (figures) closedir(figures);
    if (old_figures) {
        fprintf(stderr, "kvtrace demo: %s exists and holds figures; use --force to replace them\n", f->figures);
        return 1;
    }
    return 0;
}

static int demo_simulate(const char *trace, const DemoFiles *f, const PolicySpec *policies, const BudgetSpec *budgets,
                         SimResults *res)
{
    KvError err;
    const char *traces[1] = {trace};
    SimOptions opt = {.traces = traces, .n_traces = 1, .policies = policies, .n_policies = DEMO_N_POLICIES,
                      .budgets = budgets, .n_budgets = DEMO_N_BUDGETS, .error_stride = 1, .threads = 2,
                      .retention_layer = DEMO_LAYER, .retention_unit = 0, .command_line = "kvtrace demo"};
    const char *results = f->results, *csv = f->results_csv;
    if (simulate_run(&opt, res, &err)) return cli_error("demo", err.msg);
    SimWrite w = {.res = res, .opt = &opt};
    OutputJob jobs[2] = {{results, sim_output_hdf5, &w}, {csv, sim_output_csv, &w}};
    int rc = output_write_all(jobs, 2, f->force, &err);
    if (rc) {
        sim_results_free(res);
        return cli_error("demo", err.msg);
    }
    printf("\nsimulated %d configurations over %d sequences in %.1f s -> %s, %s\n\n", res->n_configs,
           res->n_sequences, res->seconds, results, csv);
    sim_print_table(res, stdout);
    return 0;
}

static int demo_analyze(const char *trace, const DemoFiles *f, Analysis *a)
{
    AnalyzeOptions opt;
    analyze_defaults(&opt);
    opt.trace = trace;
    opt.n_boot = 500;
    opt.example_layer = DEMO_LAYER;
    opt.command_line = "kvtrace demo";
    const char *path = f->analysis;
    KvError err;
    if (analyze_run(&opt, a, &err)) return cli_error("demo", err.msg);
    OutputJob jobs[2] = {{path, analysis_output_hdf5, (void *)a}, {f->analysis_csv, analysis_output_csv, (void *)a}};
    if (output_write_all(jobs, 2, f->force, &err)) {
        analysis_free(a);
        return cli_error("demo", err.msg);
    }
    printf("\nanalysed the trace in %.1f s -> %s\n", a->seconds, path);
    analysis_print_report(a, stdout);
    return 0;
}

/* A short closed-loop evaluation on the hand-written stories in texts/. */
static int demo_eval(const char *model_path, const DemoFiles *f, const PolicySpec *policies, const BudgetSpec *budgets,
                     EvalResults *res)
{
    KvError err;
    char **texts;
    const char *path = f->eval, *csv = f->eval_csv;
    int n;
    char texts_path[4200];
    if (kv_find_data("texts/stories.txt", texts_path, sizeof texts_path) || read_lines(texts_path, &texts, &n))
        return cli_error("demo", "texts/stories.txt: not found beside kvtrace, in its data folder or its source tree "
                         "(set KVTRACE_DATA)");
    OutputFile trace_out;
    if (output_begin(&trace_out, f->eval_trace, f->force, NULL, &err)) {
        free_lines(texts, n);
        return cli_error("demo", err.msg);
    }
    EvalOptions opt = {.model_path = model_path, .texts = (const char *const *)texts, .n_texts = n,
                       .policies = policies, .n_policies = DEMO_REAL, .budgets = budgets, .n_budgets = DEMO_N_BUDGETS,
                       .generate = 16, .threads = 2, .retention_layer = -1, .retention_unit = -1,
                       .trace_path = f->eval_trace, .trace_file = trace_out.tmp, .command_line = "kvtrace demo"};
    int rc = eval_run(&opt, res, &err);
    EvalWrite w = {.res = res, .opt = &opt};
    OutputJob jobs[2] = {{path, eval_output_hdf5, &w}, {csv, eval_output_csv, &w}};
    if (rc == 0 && (output_write_all(jobs, 2, f->force, &err) || output_commit(&trace_out, &err))) {
        eval_results_free(res);
        rc = -1;
    }
    output_abort(&trace_out);
    free_lines(texts, n);
    if (rc) return cli_error("demo", err.msg);
    printf("\nclosed loop: %d configurations x %d hand-written stories in %.1f s -> %s, %s\n\n", res->C, res->S,
           res->seconds, path, csv);
    eval_print_table(res, stdout);
    return 0;
}

static int demo_plot(const char *trace, const DemoFiles *f, int with_eval)
{
    const char *figures = f->figures;
    const char *inputs[4] = {f->results, f->analysis, trace, f->eval};
    PlotOptions opt;
    plot_defaults(&opt);
    opt.out_dir = figures;
    opt.layer = DEMO_LAYER;
    opt.force = f->force;
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

/* Median age at eviction of a policy at a budget (the plot's rule: the
 * first age at which half the evictions are done), or -1. */
static int median_eviction_age(const SimResults *res, const char *policy, const char *budget)
{
    for (int c = 0; c < res->n_configs; c++) {
        if (strcmp(res->config_policy[c], policy) || strcmp(res->config_budget[c], budget)) continue;
        const long *h = res->evict_age + (size_t)c * res->max_T;
        double total = 0, below = 0;
        for (int age = 0; age < res->max_T; age++) total += (double)h[age];
        for (int age = 0; age < res->max_T && total > 0; age++)
            if ((below += (double)h[age]) >= 0.5 * total) return age;
    }
    return -1;
}

/* "x/y/z" of one number per A2SF alpha: a score's pooled Spearman, or a method's oldest-third share. */
static void per_alpha(const Analysis *a, int spearman, char *out, size_t cap)
{
    out[0] = 0;
    for (int j = 0; j < a->opt.n_alpha; j++) {
        char name[24];
        snprintf(name, sizeof name, "a2sf_%g", a->opt.alphas[j]);
        double v = spearman ? a->age_pooled[score_index(a, name)][0] : analysis_oldest_third(a, method_index(a, name));
        snprintf(out + strlen(out), cap - strlen(out), spearman ? "%s%+.2f" : "%s%.2f", j ? "/" : "", v);
    }
}

/* The numbers the README's captions quote, one paragraph per figure. */
static void demo_summary(const SimResults *res, const Analysis *a, const EvalResults *e, const char *figures)
{
    int h2o = score_index(a, "h2o"), mean_attention = score_index(a, "mean_attention");
    double best_mass;
    const char *best = best_policy(res, "20%", &best_mass);
    char alphas[64] = "", rho[64], oldest[64];
    for (int j = 0; j < a->opt.n_alpha; j++)
        snprintf(alphas + strlen(alphas), sizeof alphas - strlen(alphas), "%s%g", j ? "/" : "", a->opt.alphas[j]);
    per_alpha(a, 1, rho, sizeof rho);
    per_alpha(a, 0, oldest, sizeof oldest);
    printf("\nSummary (figures in %s/):\n", figures);
    printf("1. Age bias (age_bias.png): of the tokens each score keeps in its top %g%%, H2O takes %.2f from the "
           "oldest third of the sequence so far, the per-row ideal %.2f, A2SF %s (alpha %s). Spearman of score with "
           "token age: H2O %+.2f [%+.2f, %+.2f], A2SF %s, mean attention per row %+.2f.\n",
           100 * a->opt.budget_fraction, analysis_oldest_third(a, 0), analysis_oldest_third(a, a->M - 1), oldest,
           alphas, a->age_pooled[h2o][0], a->age_pooled[h2o][1], a->age_pooled[h2o][2], rho,
           a->age_pooled[mean_attention][0]);
    printf("2. Retained mass at 20%% (mass.png, error.png): the best real policy is %s (%.3f); h2o %.3f, window "
           "%.3f, knorm %.3f, random %.3f; bounds: optimal %.3f, ideal %.3f.\n", best, best_mass,
           mass_at(res, "h2o", "20%"), mass_at(res, "window", "20%"), mass_at(res, "knorm", "20%"),
           mass_at(res, "random", "20%"), mass_at(res, "optimal", "20%"), mass_at(res, "ideal", "20%"));
    printf("3. Eviction ages at 20%% (eviction_age.png, retention.png): median age at eviction h2o %d, a2sf %d, "
           "tova %d, window %d, streaming %d tokens.\n", median_eviction_age(res, "h2o", "20%"),
           median_eviction_age(res, "a2sf", "20%"), median_eviction_age(res, "tova", "20%"),
           median_eviction_age(res, "window", "20%"), median_eviction_age(res, "streaming", "20%"));
    if (e) {
        EvalRanks k;
        if (eval_ranks(e, &k) == 0)
            printf("4. Closed loop (nll.png, offline_vs_closed.png): at 20%% the NLL rises by %.3f (a2sf), %.3f (h2o), "
                   "%.3f (window) nats per token. Spearman(offline mass, -dNLL) over all configurations %+.2f with "
                   "full, %+.2f without; within a budget %+.2f with full, %+.2f without, %+.2f also without knorm "
                   "and random.\n", delta_nll_at(e, "a2sf", "20%"), delta_nll_at(e, "h2o", "20%"),
                   delta_nll_at(e, "window", "20%"), k.overall[EVAL_RANK_ALL], k.overall[EVAL_RANK_NO_FULL],
                   k.within_budget[EVAL_RANK_ALL], k.within_budget[EVAL_RANK_NO_FULL],
                   k.within_budget[EVAL_RANK_CLOSE]);
    } else {
        printf("4. Closed loop: skipped (no model).\n");
    }
    printf("5. Key norms (key_norm.png): Spearman of key L2 norm with attention received %+.2f [%+.2f, %+.2f] (the "
           "K-norm paper expects < 0); dropping half the keys by highest norm loses %.2f of the attention, at random "
           "%.2f (ALR %.1f), so knorm keeps %.3f at 20%%.\n", a->key_pooled[0], a->key_pooled[1], a->key_pooled[2],
           a->loss_norm_pooled, a->loss_random_pooled, a->alr_pooled, mass_at(res, "knorm", "20%"));
    printf("6. Value norms (value_norm.png, heatmap.png): sink tokens' value L1 norm is %.2fx the others' [%.2f, "
           "%.2f] (VATP expects << 1); Spearman of value norm with attention %+.2f.\n", a->sink_ratio_pooled[0],
           a->sink_ratio_pooled[1], a->sink_ratio_pooled[2], a->value_pooled[0]);
}

static const char *find_model(const char *given, char *found, size_t cap)
{
    if (given) return given;
    return kv_find_demo_model(found, cap) == 0 ? found : NULL;
}

/* Records the demo trace into f->trace. */
static int demo_record(const char *model_path, const DemoFiles *f)
{
    Model m;
    KvError err;
    if (model_load(&m, model_path, NULL, &err)) return cli_error("demo", err.msg);
    char **prompts;
    int n;
    char prompts_path[4200];
    if (kv_find_data("traces/prompts.txt", prompts_path, sizeof prompts_path) || read_lines(prompts_path, &prompts, &n)) {
        model_free(&m);
        return cli_error("demo", "traces/prompts.txt: not found beside kvtrace, in its data folder or its source tree "
                         "(set KVTRACE_DATA)");
    }
    RecordOptions opt = {.prompts = (const char *const *)prompts, .n_prompts = n, .generate = 200,
                         .temperature = 0.8f, .top_p = 0.9f, .seed = 1, .stop_at_eos = 0,
                         .command_line = "kvtrace demo", .force = f->force};
    const char *out = f->trace;
    RecordSummary sum;
    int rc = record_traces(&m, &opt, out, &sum, &err);
    free_lines(prompts, n);
    model_free(&m);
    if (rc) return cli_error("demo", err.msg);
    printf("recorded %d sequences (%ld tokens) of %s from %s in %.2f s -> %s\n", sum.n_sequences, sum.n_tokens,
           prompts_path, model_path, sum.seconds, out);
    return 0;
}

int cmd_demo(int argc, char **argv)
{
    static const struct option longopts[] = {{"model", 1, 0, 'm'}, {"output", 1, 0, 'o'}, {"force", 0, 0, 'F'},
                                             {"help", 0, 0, 'h'}, {0, 0, 0, 0}};
    const char *given = NULL, *dir = "demo-out";
    int c, force = 0;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "o:h", longopts, NULL)) != -1) {
        if (c == 'm') given = optarg;
        else if (c == 'o') dir = optarg;
        else if (c == 'F') force = 1;
        else if (c == 'h') { fputs(DEMO_HELP, stdout); return 0; }
        else return cli_usage_error("demo", "unknown option or missing value: %s", argv[optind - 1]);
    }
    KvError err;
    if (strlen(dir) > 1000) return cli_usage_error("demo", "the output folder's name is too long");
    if (output_mkdirs(dir, &err)) return cli_error("demo", err.msg);
    char found[4200];
    const char *model_path = find_model(given, found, sizeof found);
    DemoFiles files;
    demo_files(&files, dir, force);
    int rc = demo_check_outputs(&files, model_path != NULL, model_path != NULL);
    if (rc) return rc;
    char trace[4200];
    if (model_path) {
        if ((rc = demo_record(model_path, &files)) != 0) return rc;
        snprintf(trace, sizeof trace, "%s", files.trace);
    } else {
        if (kv_find_data("traces/stories260K.h5", trace, sizeof trace))
            return cli_error("demo", "no model found (see scripts/get-model) and no example trace "
                             "traces/stories260K.h5 beside kvtrace (set KVTRACE_DATA)");
        printf("no model found (see scripts/get-model); using the example trace %s\n", trace);
    }
    char *info_argv[] = {"info", trace, NULL};
    rc = cmd_info(2, info_argv);
    if (rc != 0) return rc;
    PolicySpec policies[DEMO_N_POLICIES]; /* the results point into these until the end */
    BudgetSpec budgets[DEMO_N_BUDGETS];
    if ((rc = demo_specs(policies, budgets)) != 0) return rc;
    SimResults res;
    Analysis analysis;
    EvalResults eval;
    int with_eval = model_path != NULL;
    if ((rc = demo_simulate(trace, &files, policies, budgets, &res)) != 0) return rc;
    if ((rc = demo_analyze(trace, &files, &analysis)) == 0) {
        if (with_eval) rc = demo_eval(model_path, &files, policies, budgets, &eval);
        else printf("\nno model: the closed-loop evaluation is skipped\n");
        if (rc == 0 && (rc = demo_plot(trace, &files, with_eval)) == 0)
            demo_summary(&res, &analysis, with_eval ? &eval : NULL, files.figures);
        if (with_eval && rc == 0) eval_results_free(&eval);
        analysis_free(&analysis);
    }
    sim_results_free(&res);
    return rc;
}
