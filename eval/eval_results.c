/* Writing an evaluation: HDF5 ("kvtrace-eval/1", FORMAT.md), CSV, table. */
#include <hdf5.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../analysis/stats.h"
#include "../trace/h5util.h"
#include "../trace/trace_file.h"
#include "../util/csv.h"
#include "eval.h"

/* ------------------------------------------------------------ rank correlations */

const char *const EVAL_RANK_SET_SUFFIX[EVAL_RANK_SETS] = {"", "_without_full", "_without_full_knorm_random"};

static int in_rank_set(int set, const char *policy)
{
    if (set >= EVAL_RANK_NO_FULL && !strcmp(policy, "full")) return 0;
    if (set == EVAL_RANK_CLOSE && (!strcmp(policy, "knorm") || !strcmp(policy, "random"))) return 0;
    return 1;
}

/* Spearman of mass with -ΔNLL over the configs of a set (and of one budget, when given). */
static double rank_of(const double *mass, const double *delta, const char *const *policy, const char *const *budget,
                      int n, int set, const char *only_budget, double *work)
{
    double *x = work, *y = work + n, *scratch = work + 2 * n;
    int used = 0;
    for (int c = 0; c < n; c++) {
        if (!in_rank_set(set, policy[c]) || (only_budget && strcmp(budget[c], only_budget)) || isnan(mass[c]) ||
            isnan(delta[c]))
            continue;
        x[used] = mass[c];
        y[used++] = -delta[c];
    }
    return spearman(x, y, (size_t)used, scratch);
}

void eval_rank_correlations(const double *mass, const double *delta_nll, const char *const *policy,
                            const char *const *budget, int n, EvalRanks *out)
{
    double *work = malloc((size_t)(4 * n + 4) * sizeof(double));
    for (int set = 0; set < EVAL_RANK_SETS; set++) {
        out->overall[set] = out->within_budget[set] = NAN;
        if (!work) continue;
        out->overall[set] = rank_of(mass, delta_nll, policy, budget, n, set, NULL, work);
        double sum = 0;
        int budgets = 0;
        for (int c = 0; c < n; c++) {
            int first = 1; /* each budget once, at its first config */
            for (int j = 0; j < c && first; j++) first = strcmp(budget[j], budget[c]) != 0;
            if (!first) continue;
            double rho = rank_of(mass, delta_nll, policy, budget, n, set, budget[c], work);
            if (!isnan(rho)) { sum += rho; budgets++; }
        }
        out->within_budget[set] = budgets ? sum / budgets : NAN;
    }
    free(work);
}

int eval_ranks(const EvalResults *r, EvalRanks *out)
{
    double *mass = malloc((size_t)(r->C ? r->C : 1) * sizeof(double)), *delta = malloc((size_t)(r->C ? r->C : 1) * sizeof(double)), std;
    if (!mass || !delta) {
        free(mass);
        free(delta);
        return -1;
    }
    for (int c = 0; c < r->C; c++) {
        sim_overall(&r->offline, c, 0, &mass[c], &std);
        eval_overall(r, c, EVAL_DELTA_NLL, &delta[c], &std);
    }
    eval_rank_correlations(mass, delta, r->offline.config_policy, r->offline.config_budget, r->C, out);
    free(mass);
    free(delta);
    return 0;
}

static int write_ranks(hid_t f, const EvalResults *r)
{
    EvalRanks ranks;
    if (eval_ranks(r, &ranks)) return -1;
    for (int set = 0; set < EVAL_RANK_SETS; set++) {
        char a[96], b[96];
        snprintf(a, sizeof a, "rank_correlation%s", EVAL_RANK_SET_SUFFIX[set]);
        snprintf(b, sizeof b, "rank_correlation%s_within_budget", EVAL_RANK_SET_SUFFIX[set]);
        if (h5_attr_write_double(f, a, ranks.overall[set]) || h5_attr_write_double(f, b, ranks.within_budget[set]))
            return -1;
    }
    return 0;
}

/* ------------------------------------------------------------ the file */

static int write_configs(hid_t f, const EvalResults *r)
{
    const SimResults *o = &r->offline;
    hsize_t dc[1] = {(hsize_t)r->C}, dcs[2] = {(hsize_t)r->C, (hsize_t)r->S}, ds[1] = {(hsize_t)r->S};
    hid_t g = H5Gcreate2(f, "configs", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    int rc = g < 0 || h5_write_strings(g, "policy", o->config_policy, r->C) ||
             h5_write_strings(g, "params", o->config_params, r->C) ||
             h5_write_strings(g, "allocation", o->config_allocation, r->C) ||
             h5_write_strings(g, "budget", o->config_budget, r->C) ||
             h5_write_array(g, "budget_fraction", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, 1, dc, o->config_fraction) ||
             h5_write_array(g, "budget_tokens", H5T_STD_I32LE, H5T_NATIVE_INT, 2, dcs, o->budget_tokens);
    if (g >= 0) H5Gclose(g);
    if (rc) return -1;
    g = H5Gcreate2(f, "texts", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    rc = g < 0 || h5_write_array(g, "n_tokens", H5T_STD_I32LE, H5T_NATIVE_INT, 1, ds, o->seq_length) ||
         h5_write_array(g, "n_prompt", H5T_STD_I32LE, H5T_NATIVE_INT, 1, ds, o->seq_prompt);
    if (g >= 0) H5Gclose(g);
    return rc;
}

/* metrics/<name> [C][S] and summary/<name>_{mean,std} [C], closed loop and offline. */
static int write_metrics(hid_t f, const EvalResults *r)
{
    hsize_t dcs[2] = {(hsize_t)r->C, (hsize_t)r->S}, dc[1] = {(hsize_t)r->C};
    hid_t g = H5Gcreate2(f, "metrics", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT), s = -1;
    double *mean = malloc((size_t)r->C * sizeof(double)), *std = malloc((size_t)r->C * sizeof(double));
    int rc = g < 0 || !mean || !std;
    for (int k = 0; k < EVAL_METRICS && !rc; k++)
        rc = h5_write_array(g, EVAL_METRIC_NAMES[k], H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, 2, dcs, r->metric[k]);
    if (!rc) s = H5Gcreate2(f, "summary", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    rc = rc || s < 0;
    static const char *OFFLINE[2] = {"offline_retained_mass", "offline_output_error"};
    for (int k = 0; k < EVAL_METRICS + 2 && !rc; k++) {
        for (int c = 0; c < r->C; c++) {
            if (k < EVAL_METRICS) eval_overall(r, c, k, &mean[c], &std[c]);
            else sim_overall(&r->offline, c, k == EVAL_METRICS ? 0 : 2, &mean[c], &std[c]);
        }
        const char *name = k < EVAL_METRICS ? EVAL_METRIC_NAMES[k] : OFFLINE[k - EVAL_METRICS];
        char a[64], b[64];
        snprintf(a, sizeof a, "%s_mean", name);
        snprintf(b, sizeof b, "%s_std", name);
        rc = h5_write_array(s, a, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, 1, dc, mean) ||
             h5_write_array(s, b, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, 1, dc, std);
    }
    if (s >= 0) H5Gclose(s);
    if (g >= 0) H5Gclose(g);
    free(mean);
    free(std);
    return rc ? -1 : 0;
}

static int write_eval(hid_t f, void *ctx)
{
    const EvalWrite *w = ctx;
    const EvalResults *r = w->res;
    const EvalOptions *o = w->opt;
    char created[40];
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(created, sizeof created, "%Y-%m-%dT%H:%M:%SZ", &tm);
    const char *trace_file = o->trace_file ? o->trace_file : o->trace_path;
    if (h5_attr_write_str(f, "format", "kvtrace-eval/1") || h5_attr_write_str(f, "model", r->offline.model) ||
        h5_attr_write_str(f, "model_sha256", r->offline.model_sha256) ||
        h5_attr_write_file_digests(f, "trace_sha256", &trace_file, 1) ||
        h5_attr_write_str(f, "trace", o->trace_path) || h5_attr_write_str(f, "mode", o->prefill ? "prefill" : "streaming") ||
        h5_attr_write_str(f, "granularity", o->layer_granularity ? "layer" : "kv_head") ||
        h5_attr_write_int(f, "generate", o->generate) || h5_attr_write_int(f, "n_texts", r->S) ||
        write_ranks(f, r) ||
        h5_attr_write_str(f, "created", created) || h5_attr_write_str(f, "command", o->command_line ? o->command_line : "") ||
        h5_attr_write_str(f, "kvtrace_version", KVTRACE_VERSION) || h5_attr_write_double(f, "seconds", r->seconds) ||
        write_configs(f, r) || write_metrics(f, r))
        return -1;
    if (!r->retention) return 0;
    hsize_t dr[3] = {(hsize_t)r->C, (hsize_t)r->retention_T, (hsize_t)r->retention_T};
    if (h5_write_array(f, "retention", H5T_STD_U8LE, H5T_NATIVE_UINT8, 3, dr, r->retention)) return -1;
    hid_t d = H5Dopen2(f, "retention", H5P_DEFAULT);
    int rc = d < 0 || h5_attr_write_int(d, "layer", o->retention_layer) || h5_attr_write_int(d, "unit", o->retention_unit);
    if (d >= 0) H5Dclose(d);
    return rc ? -1 : 0;
}

int eval_write_hdf5(const EvalResults *res, const EvalOptions *opt, const OutputFile *out, KvError *err)
{
    EvalWrite w = {res, opt};
    return h5_write_file(out, "eval", write_eval, &w, err);
}

int eval_write_csv(const EvalResults *r, const EvalOptions *o, const OutputFile *out, KvError *err)
{
    FILE *f = output_open_text(out, "CSV", err);
    if (!f) return -1;
    fprintf(f, "trace,model,mode,granularity,policy,params,allocation,budget,budget_tokens,delta_nll,delta_nll_std,ppl_ratio,kl,"
               "top1_agreement,greedy_agreement,offline_retained_mass,offline_output_error,n_texts\n");
    for (int c = 0; c < r->C; c++) {
        double v[EVAL_METRICS], sd[EVAL_METRICS], mass, error, unused;
        for (int k = 0; k < EVAL_METRICS; k++) eval_overall(r, c, k, &v[k], &sd[k]);
        sim_overall(&r->offline, c, 0, &mass, &unused);
        sim_overall(&r->offline, c, 2, &error, &unused);
        csv_text(f, o->trace_path, 0);
        csv_text(f, r->offline.model, 0);
        csv_text(f, o->prefill ? "prefill" : "streaming", 0);
        csv_text(f, o->layer_granularity ? "layer" : "kv_head", 0);
        csv_text(f, r->offline.config_policy[c], 0);
        csv_text(f, r->offline.config_params[c], 0);
        csv_text(f, r->offline.config_allocation[c], 0);
        csv_text(f, r->offline.config_budget[c], 0);
        csv_number(f, sim_mean_budget(&r->offline, c), 0);
        const double row[] = {v[EVAL_DELTA_NLL], sd[EVAL_DELTA_NLL], v[EVAL_PPL_RATIO], v[EVAL_KL], v[EVAL_TOP1],
                              v[EVAL_GREEDY], mass, error};
        for (size_t k = 0; k < sizeof row / sizeof row[0]; k++) csv_number(f, row[k], 0);
        csv_int(f, r->S, 1);
    }
    return output_close_text(f, out, "CSV", err);
}

/* The policy, and its allocation when it is not uniform. */
static void eval_config_name(const EvalResults *r, int c, char *out, size_t size)
{
    if (r->offline.config_alloc[c].kind == ALLOC_UNIFORM) snprintf(out, size, "%s", r->offline.config_policy[c]);
    else snprintf(out, size, "%s %s", r->offline.config_policy[c], r->offline.config_allocation[c]);
}

void eval_print_table(const EvalResults *r, FILE *out)
{
    int named = 12; /* "scissorhands"; with the allocation when it is not uniform: "h2o adaptive:floor=0.2" */
    char name[128];
    for (int c = 0; c < r->C; c++) {
        eval_config_name(r, c, name, sizeof name);
        if ((int)strlen(name) > named) named = (int)strlen(name);
    }
    fprintf(out, "%-*s %-6s %7s  %-18s %9s %8s %7s %7s | %12s %10s\n", named, "policy", "budget", "tokens",
            "dNLL (nats) +- sd", "ppl ratio", "KL", "top-1", "greedy", "offline mass", "off. error");
    for (int c = 0; c < r->C; c++) {
        double v[EVAL_METRICS], sd[EVAL_METRICS], mass, error, unused;
        for (int k = 0; k < EVAL_METRICS; k++) eval_overall(r, c, k, &v[k], &sd[k]);
        sim_overall(&r->offline, c, 0, &mass, &unused);
        sim_overall(&r->offline, c, 2, &error, &unused);
        char spread[16] = ""; /* none from one text */
        if (!isnan(sd[EVAL_DELTA_NLL])) snprintf(spread, sizeof spread, "+- %.4f", sd[EVAL_DELTA_NLL]);
        eval_config_name(r, c, name, sizeof name);
        fprintf(out, "%-*s %-6s %7.1f  %+8.4f %-9s %9.4f %8.4f %7.3f %7.1f | %12.4f %10.4f\n", named,
                name, r->offline.config_budget[c], sim_mean_budget(&r->offline, c), v[EVAL_DELTA_NLL],
                spread, v[EVAL_PPL_RATIO], v[EVAL_KL], v[EVAL_TOP1], v[EVAL_GREEDY], mass, error);
    }
    EvalRanks k;
    if (eval_ranks(r, &k)) return;
    fprintf(out, "rank correlation of offline retained mass with closed-loop -dNLL (Spearman over configurations):\n"
                 "  all configurations %+.3f (within a budget, mean %+.3f); without full %+.3f (%+.3f); "
                 "without full, knorm and random %+.3f (%+.3f)\n",
            k.overall[EVAL_RANK_ALL], k.within_budget[EVAL_RANK_ALL], k.overall[EVAL_RANK_NO_FULL],
            k.within_budget[EVAL_RANK_NO_FULL], k.overall[EVAL_RANK_CLOSE], k.within_budget[EVAL_RANK_CLOSE]);
}

int eval_output_hdf5(const OutputFile *out, void *ctx, KvError *err)
{
    const EvalWrite *w = ctx;
    return eval_write_hdf5(w->res, w->opt, out, err);
}

int eval_output_csv(const OutputFile *out, void *ctx, KvError *err)
{
    const EvalWrite *w = ctx;
    return eval_write_csv(w->res, w->opt, out, err);
}
