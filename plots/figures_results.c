/* Figures from a results file (kvtrace simulate): metric vs budget,
 * retention maps, eviction-age histograms. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../trace/h5util.h"
#include "figure.h"

typedef struct {
    int C, S, T;                 /* configs, sequences, longest sequence */
    char **policy, **params, **budget;
    double *fraction;            /* [C] NaN for token budgets */
    int *tokens;                 /* [C][S] */
    int *series;                 /* [C] series (policy + parameters) of each config */
    int n_series;
    char label[64][96];          /* per series */
    char family[64][16];         /* per series: the policy name */
    char mode[16];
} Results;

static void results_free(Results *r)
{
    h5_free_strings(r->policy, r->C);
    h5_free_strings(r->params, r->C);
    h5_free_strings(r->budget, r->C);
    free(r->fraction);
    free(r->tokens);
    free(r->series);
}

/* Configs sharing policy and parameters form one series; the label shows the
 * parameters only when one policy appears with several. */
static void group_series(Results *r)
{
    int first[64] = {0};
    for (int c = 0; c < r->C; c++) {
        int s = 0;
        while (s < r->n_series &&
               (strcmp(r->policy[first[s]], r->policy[c]) || strcmp(r->params[first[s]], r->params[c])))
            s++;
        if (s == r->n_series && r->n_series < 64) {
            first[s] = c;
            snprintf(r->family[s], sizeof r->family[s], "%s", r->policy[c]);
            r->n_series++;
        }
        r->series[c] = s < 64 ? s : 63;
    }
    for (int s = 0; s < r->n_series; s++) {
        int variants = 0;
        for (int t = 0; t < r->n_series; t++) variants += !strcmp(r->family[t], r->family[s]);
        if (variants > 1 && r->params[first[s]][0])
            snprintf(r->label[s], sizeof r->label[s], "%s(%s)", r->family[s], r->params[first[s]]);
        else
            snprintf(r->label[s], sizeof r->label[s], "%s", r->family[s]);
    }
}

static int results_load(const FigureJob *job, Results *r, KvError *err)
{
    memset(r, 0, sizeof *r);
    int rank;
    hsize_t dims[8], ages[8];
    hid_t f = job->file;
    if (h5_dataset_shape(f, "configs/budget_tokens", &rank, dims) || rank != 2)
        return kv_fail(err, "%s: damaged file (configs)", job->input);
    r->C = (int)dims[0];
    r->S = (int)dims[1];
    if (h5_dataset_shape(f, "eviction_age", &rank, ages) == 0 && rank == 2) r->T = (int)ages[1]; /* results only */
    r->policy = h5_read_strings(f, "configs/policy", r->C);
    r->params = h5_read_strings(f, "configs/params", r->C);
    r->budget = h5_read_strings(f, "configs/budget", r->C);
    r->fraction = malloc((size_t)r->C * sizeof(double));
    r->tokens = malloc((size_t)r->C * r->S * sizeof(int));
    r->series = malloc((size_t)r->C * sizeof(int));
    if (!r->policy || !r->params || !r->budget || !r->fraction || !r->tokens || !r->series ||
        h5_read_all(f, "configs/budget_fraction", H5T_NATIVE_DOUBLE, r->fraction, (size_t)r->C) ||
        h5_read_all(f, "configs/budget_tokens", H5T_NATIVE_INT, r->tokens, (size_t)r->C * r->S)) {
        results_free(r);
        return kv_fail(err, "%s: damaged file (configs)", job->input);
    }
    for (int c = 0; c < r->C; c++) r->series[c] = -1;
    if (h5_attr_read_str(f, "mode", r->mode, sizeof r->mode)) snprintf(r->mode, sizeof r->mode, "streaming");
    group_series(r);
    return 0;
}

static int all_fractions(const Results *r)
{
    for (int c = 0; c < r->C; c++)
        if (isnan(r->fraction[c])) return 0;
    return 1;
}

static double budget_x(const Results *r, int c, int fractions)
{
    if (fractions) return 100 * r->fraction[c];
    double sum = 0;
    for (int s = 0; s < r->S; s++) sum += r->tokens[(size_t)c * r->S + s];
    return sum / r->S;
}

static void set_series_vars(FigureJob *job, const Results *r, const int *used)
{
    char series[4096] = "", families[2048] = "";
    for (int s = 0; s < r->n_series; s++) {
        if (!used[s]) continue;
        snprintf(series + strlen(series), sizeof series - strlen(series), "%s%s", series[0] ? " " : "", r->label[s]);
        snprintf(families + strlen(families), sizeof families - strlen(families), "%s%s", families[0] ? " " : "",
                 r->family[s]);
    }
    figure_var(job, "series", "%s", series);
    figure_var(job, "families", "%s", families);
}

/* One block per series: budget, mean, std sorted by budget. */
static int budget_curves(FigureJob *job, const char *metric, const char *ylabel, const char *what, KvError *err)
{
    Results r;
    if (results_load(job, &r, err)) return -1;
    size_t C = (size_t)r.C;
    double *mean = malloc(C * sizeof(double)), *std = malloc(C * sizeof(double));
    int *order = malloc(C * sizeof(int)), used[64] = {0}, rc = -1, fractions = all_fractions(&r), any = 0;
    char name[96], rel[256], file[64];
    snprintf(file, sizeof file, "%s.dat", job->name);
    FILE *out = NULL;
    if (!mean || !std || !order) { kv_fail(err, "out of memory"); goto done; }
    snprintf(name, sizeof name, "summary/%s_mean", metric);
    int ok = h5_read_all(job->file, name, H5T_NATIVE_DOUBLE, mean, C) == 0;
    snprintf(name, sizeof name, "summary/%s_std", metric);
    if (!ok || h5_read_all(job->file, name, H5T_NATIVE_DOUBLE, std, C)) {
        kv_fail(err, "%s: damaged results file (%s)", job->input, name);
        goto done;
    }
    for (size_t c = 0; c < C; c++) any |= !isnan(mean[c]);
    if (!any) { job->skip = 1; rc = 0; goto done; } /* e.g. output error turned off */
    if (!(out = figure_data(job, file, rel, sizeof rel, err))) goto done;
    fprintf(out, "# %s: budget mean std, one block per policy\n", metric);
    for (int s = 0; s < r.n_series; s++) {
        int n = 0;
        for (int c = 0; c < r.C; c++)
            if (r.series[c] == s && !isnan(mean[c])) order[n++] = c;
        for (int i = 1; i < n; i++) /* few budgets: insertion sort by budget */
            for (int j = i; j > 0 && budget_x(&r, order[j], fractions) < budget_x(&r, order[j - 1], fractions); j--) {
                int t = order[j]; order[j] = order[j - 1]; order[j - 1] = t;
            }
        if (!n) continue;
        used[s] = 1;
        fprintf(out, "# %s\n", r.label[s]);
        for (int i = 0; i < n; i++)
            fprintf(out, "%.6g %.9g %.9g\n", budget_x(&r, order[i], fractions), mean[order[i]],
                    isnan(std[order[i]]) ? 0.0 : std[order[i]]);
        fprintf(out, "\n\n");
    }
    if (figure_data_close(out, file, err)) goto done;
    char model[128];
    figure_model(job, model, sizeof model);
    figure_var(job, "data", "%s", rel);
    figure_var(job, "title", "%s%s%s vs cache budget (%s mode; mean over %d sequence%s, bars: 1 s.d.)", model,
               model[0] ? ": " : "", what, r.mode, r.S, r.S == 1 ? "" : "s");
    figure_var(job, "xlabel", fractions ? (!strcmp(r.mode, "prefill") ? "cache budget (%% of the prompt length P)"
                                                                       : "cache budget (%% of the sequence length T)")
                                        : "cache budget (tokens)");
    figure_var(job, "ylabel", "%s", ylabel);
    set_series_vars(job, &r, used);
    rc = 0;
done:
    free(mean); free(std); free(order);
    results_free(&r);
    return rc;
}

int figure_mass(FigureJob *job, KvError *err)
{
    return budget_curves(job, "retained_mass", "retained attention mass m_t (1 = nothing lost)", "retained mass",
                         err);
}

int figure_error(FigureJob *job, KvError *err)
{
    return budget_curves(job, "output_error", "relative output error ||o - o~|| / ||o||", "output error", err);
}

/* The budget the one-budget figures show: as asked, else the middle one. */
static int pick_budget(const FigureJob *job, const Results *r, char *out, size_t cap, KvError *err)
{
    if (job->opt->budget) {
        for (int c = 0; c < r->C; c++)
            if (!strcmp(r->budget[c], job->opt->budget)) {
                snprintf(out, cap, "%s", r->budget[c]);
                return 0;
            }
        return kv_fail(err, "%s: no configuration with budget '%s'", job->input, job->opt->budget);
    }
    int distinct[256], n = 0;
    for (int c = 0; c < r->C && n < 256; c++) {
        int seen = 0;
        for (int j = 0; j < n; j++) seen |= !strcmp(r->budget[distinct[j]], r->budget[c]);
        if (!seen) distinct[n++] = c;
    }
    snprintf(out, cap, "%s", r->budget[distinct[n / 2]]);
    return 0;
}

static int write_retention_matrix(FigureJob *job, const uint8_t *map, int T, const char *file, char *rel, size_t cap,
                                  KvError *err)
{
    FILE *out = figure_data(job, file, rel, cap, err);
    if (!out) return -1;
    for (int t = 0; t < T; t++) {
        for (int i = 0; i < T; i++) fputs(i > t ? "-1 " : map[(size_t)t * T + i] ? "1 " : "0 ", out);
        fputc('\n', out);
    }
    return figure_data_close(out, file, err);
}

int figure_retention(FigureJob *job, KvError *err)
{
    static const char *SHOWN[] = {"h2o", "a2sf", "vatp", "knorm", "window"};
    if (!h5_exists(job->file, "retention")) { job->skip = 1; return 0; }
    Results r;
    if (results_load(job, &r, err)) return -1;
    int rank, rc = -1;
    hsize_t dims[8];
    uint8_t *maps = NULL;
    char budget[32], files[2048] = "", series[512] = "";
    long long layer = 0, unit = 0;
    if (pick_budget(job, &r, budget, sizeof budget, err)) goto done;
    if (h5_dataset_shape(job->file, "retention", &rank, dims) || rank != 3 || (int)dims[0] != r.C) {
        kv_fail(err, "%s: damaged results file (retention)", job->input);
        goto done;
    }
    int T = (int)dims[1];
    maps = malloc((size_t)r.C * T * T);
    hid_t d = H5Dopen2(job->file, "retention", H5P_DEFAULT);
    if (d >= 0) {
        h5_attr_read_int(d, "layer", &layer);
        h5_attr_read_int(d, "unit", &unit);
        H5Dclose(d);
    }
    if (!maps || h5_read_all(job->file, "retention", H5T_NATIVE_UINT8, maps, (size_t)r.C * T * T)) {
        kv_fail(err, "%s: cannot read the retention maps", job->input);
        goto done;
    }
    int tokens = 0, shown = 0;
    for (size_t p = 0; p < sizeof SHOWN / sizeof SHOWN[0]; p++)
        for (int c = 0; c < r.C; c++) {
            if (strcmp(r.policy[c], SHOWN[p]) || strcmp(r.budget[c], budget)) continue;
            char file[64], rel[256];
            snprintf(file, sizeof file, "retention_%s.dat", SHOWN[p]);
            if (write_retention_matrix(job, maps + (size_t)c * T * T, T, file, rel, sizeof rel, err)) goto done;
            snprintf(files + strlen(files), sizeof files - strlen(files), "%s%s", shown ? " " : "", rel);
            snprintf(series + strlen(series), sizeof series - strlen(series), "%s%s", shown ? " " : "", SHOWN[p]);
            tokens = r.tokens[(size_t)c * r.S];
            shown++;
            break;
        }
    if (!shown) { job->skip = 1; rc = 0; goto done; }
    char model[128];
    figure_model(job, model, sizeof model);
    figure_var(job, "files", "%s", files);
    figure_var(job, "series", "%s", series);
    figure_num(job, "width", 360.0 * shown + 100);
    figure_num(job, "height", 520);
    figure_num(job, "T", T);
    figure_var(job, "title", "%s%stokens held at each step (dark), layer %lld kv head %lld, budget %s = %d tokens, "
               "sequence 0", model, model[0] ? ": " : "", layer, unit, budget, tokens);
    rc = 0;
done:
    free(maps);
    results_free(&r);
    return rc;
}

int figure_eviction_age(FigureJob *job, KvError *err)
{
    Results r;
    if (results_load(job, &r, err)) return -1;
    int rc = -1, used[64] = {0};
    long *ages = malloc((size_t)r.C * r.T * sizeof(long));
    char budget[32], rel[256];
    FILE *out = NULL;
    if (!ages || h5_read_all(job->file, "eviction_age", H5T_NATIVE_LONG, ages, (size_t)r.C * r.T)) {
        kv_fail(err, "%s: damaged results file (eviction_age)", job->input);
        goto done;
    }
    if (pick_budget(job, &r, budget, sizeof budget, err)) goto done;
    int bin = r.T > 40 ? (r.T + 39) / 40 : 1, any = 0;
    if (!(out = figure_data(job, "eviction_age.dat", rel, sizeof rel, err))) goto done;
    fprintf(out, "# age_bin_start share_of_evictions, one block per policy, budget %s\n", budget);
    for (int c = 0; c < r.C; c++) {
        const long *h = ages + (size_t)c * r.T;
        long total = 0;
        for (int a = 0; a < r.T; a++) total += h[a];
        if (strcmp(r.budget[c], budget) || total == 0 || used[r.series[c]]) continue;
        used[r.series[c]] = any = 1;
        fprintf(out, "# %s\n", r.label[r.series[c]]);
        for (int a0 = 0; a0 < r.T; a0 += bin) {
            long n = 0;
            for (int a = a0; a < a0 + bin && a < r.T; a++) n += h[a];
            if (n) fprintf(out, "%d %.9g\n", a0, (double)n / total);
            else fprintf(out, "%d NaN\n", a0);
        }
        fprintf(out, "\n\n");
    }
    if (figure_data_close(out, "eviction_age.dat", err)) goto done;
    if (!any) { job->skip = 1; rc = 0; goto done; }
    char model[128];
    figure_model(job, model, sizeof model);
    figure_var(job, "data", "%s", rel);
    figure_num(job, "binwidth", bin);
    figure_var(job, "title", "%s%sage of tokens at eviction, budget %s (all sequences, layers and heads)", model,
               model[0] ? ": " : "", budget);
    set_series_vars(job, &r, used);
    rc = 0;
done:
    free(ages);
    results_free(&r);
    return rc;
}

/* ---------------------------------------------------------------- eval files */

int figure_nll(FigureJob *job, KvError *err)
{
    return budget_curves(job, "delta_nll", "closed-loop next-token NLL increase over the full cache (nats)",
                         "closed-loop NLL increase", err);
}

int figure_offline_vs_closed(FigureJob *job, KvError *err)
{
    Results r;
    if (results_load(job, &r, err)) return -1;
    size_t C = (size_t)r.C;
    double *mass = malloc(C * sizeof(double)), *delta = malloc(C * sizeof(double)), rho = NAN;
    int used[64] = {0}, rc = -1;
    char rel[256];
    FILE *out = NULL;
    if (!mass || !delta || h5_read_all(job->file, "summary/offline_retained_mass_mean", H5T_NATIVE_DOUBLE, mass, C) ||
        h5_read_all(job->file, "summary/delta_nll_mean", H5T_NATIVE_DOUBLE, delta, C)) {
        kv_fail(err, "%s: damaged eval file (summary)", job->input);
        goto done;
    }
    h5_attr_read_double(job->file, "rank_correlation", &rho);
    if (!(out = figure_data(job, "offline_vs_closed.dat", rel, sizeof rel, err))) goto done;
    fprintf(out, "# offline_retained_mass closed_loop_delta_nll budget, one block per policy\n");
    for (int s = 0; s < r.n_series; s++) {
        int any = 0;
        if (!strcmp(r.family[s], "full")) continue; /* the reference itself: mass 1, no increase */
        for (int c = 0; c < r.C; c++)
            if (r.series[c] == s && !isnan(mass[c]) && !isnan(delta[c])) {
                if (!any) fprintf(out, "# %s\n", r.label[s]);
                fprintf(out, "%.9g %.9g %s\n", mass[c], delta[c], r.budget[c]);
                any = used[s] = 1;
            }
        if (any) fprintf(out, "\n\n");
    }
    if (figure_data_close(out, "offline_vs_closed.dat", err)) goto done;
    char model[128];
    figure_model(job, model, sizeof model);
    figure_var(job, "data", "%s", rel);
    figure_var(job, "title", "%s%soffline retained mass vs closed-loop NLL increase (mean over %d texts); "
               "Spearman(mass, -dNLL) = %.2f", model, model[0] ? ": " : "", r.S, rho);
    set_series_vars(job, &r, used);
    rc = 0;
done:
    free(mass);
    free(delta);
    results_free(&r);
    return rc;
}
