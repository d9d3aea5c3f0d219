/* Figures from results files (kvtrace simulate) and eval files (kvtrace
 * eval): metric vs budget, retention maps, eviction ages, closed-loop NLL.
 * Several files of one kind go on one figure, each configuration a series
 * labelled with its file's label; --policy/--config choose the series. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../eval/eval.h"
#include "../trace/h5util.h"
#include "figure.h"

#define MAX_SERIES 256
#define MAX_CONFIGS 100000
#define MAX_SEQUENCES 10000000
#define MAX_TOKENS (1 << 22)

typedef struct {
    const PlotInput *in;
    int C, S, T;                 /* configs, sequences, longest sequence (eviction ages) */
    char **policy, **params, **budget;
    char **allocation;           /* [C] or NULL (files before allocations: all uniform) */
    double *fraction;            /* [C] NaN for token budgets */
    int *tokens;                 /* [C][S] */
    int *selected;               /* [C] kept by --policy/--config */
    char mode[16], model[128];
} Results;

/* The series of a figure: one per (file, policy, parameters, allocation). */
typedef struct {
    int n;
    int file[MAX_SERIES];
    char label[MAX_SERIES][192];
    char params[MAX_SERIES][160];
    const char *allocation[MAX_SERIES];
    SeriesKey key[MAX_SERIES];
    int *of[64];                 /* [file][C]: series of each config, -1 if not drawn */
} Series;

static void results_free(Results *r)
{
    h5_free_strings(r->policy, r->C);
    h5_free_strings(r->params, r->C);
    if (r->allocation) h5_free_strings(r->allocation, r->C);
    h5_free_strings(r->budget, r->C);
    free(r->fraction);
    free(r->tokens);
    free(r->selected);
    memset(r, 0, sizeof *r);
}

static void results_free_all(Results *r, int n)
{
    for (int i = 0; i < n; i++) results_free(&r[i]);
    free(r);
}

/* ------------------------------------------------------------ filters */

/* "key=value" of a canonical parameter list, or NULL. */
static const char *param_value(const char *params, const char *key, size_t key_len, size_t *len)
{
    for (const char *p = params; *p;) {
        const char *end = strchr(p, ','), *eq = strchr(p, '=');
        if (!end) end = p + strlen(p);
        if (eq && eq < end && (size_t)(eq - p) == key_len && !strncmp(p, key, key_len)) {
            *len = (size_t)(end - eq - 1);
            return eq + 1;
        }
        p = *end ? end + 1 : end;
    }
    return NULL;
}

static int same_value(const char *a, size_t na, const char *b, size_t nb)
{
    char x[64], y[64], *ex, *ey;
    if (na >= sizeof x || nb >= sizeof y) return 0;
    snprintf(x, sizeof x, "%.*s", (int)na, a);
    snprintf(y, sizeof y, "%.*s", (int)nb, b);
    double u = strtod(x, &ex), v = strtod(y, &ey);
    if (ex != x && !*ex && ey != y && !*ey) return u == v;
    return !strcmp(x, y);
}

/* "a2sf:alpha=0.1": the policy, and every parameter given equal to the config's. */
static int config_matches(const char *spec, const char *policy, const char *params)
{
    const char *colon = strchr(spec, ':');
    size_t n = colon ? (size_t)(colon - spec) : strlen(spec);
    if (strlen(policy) != n || strncmp(spec, policy, n)) return 0;
    for (const char *p = colon ? colon + 1 : ""; *p;) {
        const char *end = strchr(p, ','), *eq = strchr(p, '=');
        if (!end) end = p + strlen(p);
        if (!eq || eq > end) return 0;
        size_t len;
        const char *v = param_value(params, p, (size_t)(eq - p), &len);
        if (!v || !same_value(v, len, eq + 1, (size_t)(end - eq - 1))) return 0;
        p = *end ? end + 1 : end;
    }
    return 1;
}

static int policy_listed(const char *list, const char *policy)
{
    size_t n = strlen(policy);
    for (const char *p = list; *p;) {
        const char *end = strchr(p, ',');
        if (!end) end = p + strlen(p);
        if ((size_t)(end - p) == n && !strncmp(p, policy, n)) return 1;
        p = *end ? end + 1 : end;
    }
    return 0;
}

static int selected(const PlotOptions *opt, const char *policy, const char *params)
{
    if (!opt->n_policy && !opt->n_config) return 1;
    for (int i = 0; i < opt->n_policy; i++)
        if (policy_listed(opt->policy[i], policy)) return 1;
    for (int i = 0; i < opt->n_config; i++)
        if (config_matches(opt->config[i], policy, params)) return 1;
    return 0;
}

/* Every --policy name and --config must match a configuration somewhere. */
static int check_filters(const FigureJob *job, const Results *r, int n, KvError *err)
{
    const PlotOptions *opt = job->opt;
    for (int i = 0; i < opt->n_config; i++) {
        int hit = 0;
        for (int f = 0; f < n; f++)
            for (int c = 0; c < r[f].C; c++) hit |= config_matches(opt->config[i], r[f].policy[c], r[f].params[c]);
        if (!hit) return kv_fail(err, "--config %s: no such configuration in %s", opt->config[i], job->input);
    }
    for (int i = 0; i < opt->n_policy; i++) {
        char list[1024], *save = NULL;
        snprintf(list, sizeof list, "%s", opt->policy[i]);
        for (char *p = strtok_r(list, ",", &save); p; p = strtok_r(NULL, ",", &save)) {
            int hit = 0;
            for (int f = 0; f < n; f++)
                for (int c = 0; c < r[f].C; c++) hit |= !strcmp(r[f].policy[c], p);
            if (!hit) return kv_fail(err, "--policy %s: no such policy in %s", p, job->input);
        }
    }
    return 0;
}

/* ------------------------------------------------------------ loading */

static int results_load(const FigureJob *job, const PlotInput *in, Results *r, KvError *err)
{
    memset(r, 0, sizeof *r);
    r->in = in;
    int rank;
    hsize_t dims[8], ages[8];
    hid_t f = in->file;
    if (h5_dataset_shape(f, "configs/budget_tokens", &rank, dims) || rank != 2)
        return kv_fail(err, "%s: damaged file (configs/budget_tokens)", in->path);
    if (dims[0] < 1) return kv_fail(err, "%s: holds no configurations; nothing to plot", in->path);
    if (dims[1] < 1) return kv_fail(err, "%s: holds no sequences; nothing to plot", in->path);
    if (dims[0] > MAX_CONFIGS || dims[1] > MAX_SEQUENCES || dims[0] * dims[1] > (hsize_t)1 << 31)
        return kv_fail(err, "%s: damaged file (%llu configurations x %llu sequences)", in->path,
                       (unsigned long long)dims[0], (unsigned long long)dims[1]);
    r->C = (int)dims[0];
    r->S = (int)dims[1];
    if (h5_dataset_shape(f, "eviction_age", &rank, ages) == 0) { /* results only */
        if (rank != 2 || ages[0] != dims[0] || ages[1] < 1 || ages[1] > MAX_TOKENS)
            return kv_fail(err, "%s: damaged file (eviction_age)", in->path);
        r->T = (int)ages[1];
    }
    r->policy = h5_read_strings(f, "configs/policy", r->C);
    r->params = h5_read_strings(f, "configs/params", r->C);
    r->budget = h5_read_strings(f, "configs/budget", r->C);
    r->allocation = h5_exists(f, "configs/allocation") ? h5_read_strings(f, "configs/allocation", r->C) : NULL;
    r->fraction = malloc((size_t)r->C * sizeof(double));
    r->tokens = malloc((size_t)r->C * r->S * sizeof(int));
    r->selected = malloc((size_t)r->C * sizeof(int));
    if (!r->policy || !r->params || !r->budget || (h5_exists(f, "configs/allocation") && !r->allocation) || !r->fraction || !r->tokens || !r->selected ||
        h5_read_all(f, "configs/budget_fraction", H5T_NATIVE_DOUBLE, r->fraction, (size_t)r->C) ||
        h5_read_all(f, "configs/budget_tokens", H5T_NATIVE_INT, r->tokens, (size_t)r->C * r->S)) {
        results_free(r);
        return kv_fail(err, "%s: damaged file (configs)", in->path);
    }
    for (int c = 0; c < r->C; c++) r->selected[c] = selected(job->opt, r->policy[c], r->params[c]);
    if (h5_attr_read_str(f, "mode", r->mode, sizeof r->mode)) snprintf(r->mode, sizeof r->mode, "streaming");
    figure_model(f, r->model, sizeof r->model);
    return 0;
}

static int all_fractions(const Results *r)
{
    for (int c = 0; c < r->C; c++)
        if (isnan(r->fraction[c])) return 0;
    return 1;
}

/* Every file of the figure's kind, checked against each other and the filters. */
static int load_all(const FigureJob *job, Results **out, KvError *err)
{
    Results *r = calloc((size_t)job->n_in, sizeof *r);
    if (!r) return kv_fail(err, "out of memory");
    int rc = 0;
    for (int i = 0; i < job->n_in && rc == 0; i++) rc = results_load(job, job->in[i], &r[i], err);
    for (int i = 1; i < job->n_in && rc == 0; i++) {
        int tokens0 = !all_fractions(&r[0]), tokens = !all_fractions(&r[i]);
        if (tokens0 != tokens)
            rc = kv_fail(err, "%s gives budgets %s, %s %s: the budget axes differ; plot them separately", r[0].in->path,
                         tokens0 ? "in tokens" : "as fractions", r[i].in->path, tokens ? "in tokens" : "as fractions");
    }
    if (rc == 0) rc = check_filters(job, r, job->n_in, err);
    if (rc) {
        results_free_all(r, job->n_in);
        return -1;
    }
    *out = r;
    return 0;
}

/* ------------------------------------------------------------ series */

static void series_free(Series *s)
{
    for (int f = 0; f < 64; f++) free(s->of[f]);
}

/* Groups the selected configs (those passing keep, when given) into series;
 * labels show parameters when the inputs hold a policy with several, and
 * the file's label when there are several files. */
static int make_series(const Results *r, int n_files, const int *const *keep, Series *s, KvError *err)
{
    memset(s, 0, sizeof *s);
    for (int f = 0; f < n_files && f < 64; f++) {
        if (!(s->of[f] = malloc((size_t)r[f].C * sizeof(int)))) return kv_fail(err, "out of memory");
        for (int c = 0; c < r[f].C; c++) {
            s->of[f][c] = -1;
            if (!r[f].selected[c] || (keep && !keep[f][c])) continue;
            int k = 0;
            const char *alloc = r[f].allocation ? r[f].allocation[c] : "uniform";
            while (k < s->n && (s->file[k] != f || strcmp(s->key[k].family, r[f].policy[c]) ||
                                strcmp(s->params[k], r[f].params[c]) || strcmp(s->allocation[k], alloc)))
                k++;
            if (k == s->n) {
                if (s->n == MAX_SERIES) return kv_fail(err, "more than %d series on one figure; choose some with --policy or --config", MAX_SERIES);
                s->file[k] = f;
                s->key[k] = (SeriesKey){.family = r[f].policy[c], .group = f};
                snprintf(s->params[k], sizeof s->params[k], "%s", r[f].params[c]);
                s->allocation[k] = alloc;
                s->n++;
            }
            s->of[f][c] = k;
        }
    }
    for (int k = 0; k < s->n; k++) {
        int variants = 0; /* other parameters of the policy in the inputs, drawn or not */
        for (int f = 0; f < n_files && !variants; f++)
            for (int c = 0; c < r[f].C && !variants; c++)
                variants = !strcmp(r[f].policy[c], s->key[k].family) && strcmp(r[f].params[c], s->params[k]);
        const char *label = r[s->file[k]].in->label;
        char name[192];
        if (variants && s->params[k][0]) snprintf(name, sizeof name, "%s(%s)", s->key[k].family, s->params[k]);
        else snprintf(name, sizeof name, "%s", s->key[k].family);
        int uniform = !strcmp(s->allocation[k], "uniform"); /* other allocations are named after the policy */
        snprintf(s->label[k], sizeof s->label[k], "%s%s%s%s%s", label, label[0] ? ": " : "", name, uniform ? "" : " ",
                 uniform ? "" : s->allocation[k]);
    }
    return 0;
}

static void series_styles(FigureJob *job, const Series *s, const int *used)
{
    const char *labels[MAX_SERIES];
    SeriesKey keys[MAX_SERIES];
    int n = 0;
    for (int k = 0; k < s->n; k++)
        if (!used || used[k]) {
            labels[n] = s->label[k];
            keys[n++] = s->key[k];
        }
    figure_styles(job, "", labels, keys, n);
}

/* "stories260K" or "stories260K, stories15M"; modes likewise. */
static void describe(const Results *r, int n, char *models, size_t cap_m, char *modes, size_t cap_o, int *sequences)
{
    models[0] = modes[0] = 0;
    *sequences = 0;
    for (int f = 0; f < n; f++) {
        if (r[f].model[0] && !strstr(models, r[f].model))
            snprintf(models + strlen(models), cap_m - strlen(models), "%s%s", models[0] ? ", " : "", r[f].model);
        if (!strstr(modes, r[f].mode))
            snprintf(modes + strlen(modes), cap_o - strlen(modes), "%s%s", modes[0] ? ", " : "", r[f].mode);
        *sequences = r[f].S > *sequences ? r[f].S : *sequences;
    }
}

/* Percent of T (or P) when every budget of the file is a fraction, else tokens. */
static double budget_x(const Results *r, int c)
{
    if (all_fractions(r)) return 100 * r->fraction[c];
    double sum = 0;
    for (int s = 0; s < r->S; s++) sum += r->tokens[(size_t)c * r->S + s];
    return sum / r->S;
}

/* ------------------------------------------------------------ budget curves */

static int read_summary(const Results *r, const char *metric, double *mean, double *std, KvError *err)
{
    char name[96];
    snprintf(name, sizeof name, "summary/%s_mean", metric);
    int ok = h5_read_all(r->in->file, name, H5T_NATIVE_DOUBLE, mean, (size_t)r->C) == 0;
    snprintf(name, sizeof name, "summary/%s_std", metric);
    if (!ok || h5_read_all(r->in->file, name, H5T_NATIVE_DOUBLE, std, (size_t)r->C))
        return kv_fail(err, "%s: damaged file (%s)", r->in->path, name);
    return 0;
}

/* One block per series: budget, mean, std sorted by budget. */
static int write_curves(FigureJob *job, const Results *r, const Series *s, double *const *mean, double *const *std,
                        int *used, char *rel, size_t cap, KvError *err)
{
    char file[64];
    snprintf(file, sizeof file, "%s.dat", job->name);
    FILE *out = figure_data(job, file, rel, cap, err);
    if (!out) return -1;
    fprintf(out, "# budget mean std, one block per series (label in the block's first comment)\n");
    for (int k = 0; k < s->n; k++) {
        const Results *rf = &r[s->file[k]];
        int order[4096], n = 0, f = s->file[k];
        for (int c = 0; c < rf->C && n < 4096; c++)
            if (s->of[f][c] == k && !isnan(mean[f][c])) order[n++] = c;
        for (int i = 1; i < n; i++) /* few budgets: insertion sort by budget */
            for (int j = i; j > 0 && budget_x(rf, order[j]) < budget_x(rf, order[j - 1]); j--) {
                int t = order[j]; order[j] = order[j - 1]; order[j - 1] = t;
            }
        if (!n) continue;
        used[k] = 1;
        fprintf(out, "# %s\n", s->label[k]);
        for (int i = 0; i < n; i++)
            fprintf(out, "%.6g %.9g %.9g\n", budget_x(rf, order[i]), mean[f][order[i]],
                    isnan(std[f][order[i]]) ? 0.0 : std[f][order[i]]);
        fprintf(out, "\n\n");
    }
    return figure_data_close(job, out, file, err);
}

/* ymin, ymax for a symmetric log axis (linear within ±0.01): a little
 * beyond the data, 0 always inside. */
static void symlog_range(FigureJob *job, double lo, double hi)
{
    figure_num(job, "symlog", 1);
    figure_num(job, "ymin", lo < -0.005 ? lo * 1.6 : -0.005);
    figure_num(job, "ymax", hi > 0.005 ? hi * 1.6 : 0.005);
}

static int budget_curves(FigureJob *job, const char *metric, const char *ylabel, const char *what, KvError *err)
{
    Results *r;
    if (load_all(job, &r, err)) return -1;
    int n = job->n_in, rc = -1, any = 0, used[MAX_SERIES] = {0};
    double *mean[64] = {0}, *std[64] = {0};
    Series s;
    char rel[256];
    if (make_series(r, n, NULL, &s, err)) goto done;
    for (int f = 0; f < n; f++) {
        mean[f] = malloc((size_t)r[f].C * sizeof(double));
        std[f] = malloc((size_t)r[f].C * sizeof(double));
        if (!mean[f] || !std[f]) { kv_fail(err, "out of memory"); goto done; }
        if (read_summary(&r[f], metric, mean[f], std[f], err)) goto done;
        for (int c = 0; c < r[f].C; c++) any |= r[f].selected[c] && !isnan(mean[f][c]);
    }
    if (!any) { job->skip = 1; rc = 0; goto done; } /* e.g. output error turned off */
    if (write_curves(job, r, &s, mean, std, used, rel, sizeof rel, err)) goto done;
    char models[256], modes[64];
    int S, fractions = all_fractions(&r[0]);
    describe(r, n, models, sizeof models, modes, sizeof modes, &S);
    figure_var(job, "data", "%s", rel);
    int eval = job->in[0]->kind == INPUT_EVAL;
    figure_var(job, "title", "%s%s%s vs cache budget|%s; mean over %s%d %s%s, bars: 1 s.d.", models,
               models[0] ? ": " : "", what, modes, n > 1 ? "up to " : "", S, eval ? "text" : "sequence",
               S == 1 ? "" : "s");
    figure_var(job, "xlabel", !fractions ? "cache budget (tokens)"
                              : !strcmp(modes, "prefill") ? "cache budget (%% of the prompt length P)"
                              : !strcmp(modes, "streaming") ? "cache budget (%% of the sequence length T)"
                                                            : "cache budget (%% of T streaming, of P prefill)");
    figure_var(job, "ylabel", "%s", ylabel);
    if (!strcmp(metric, "delta_nll")) { /* symmetric log axis: its range from the data */
        double lo = 0, hi = 0;
        for (int f = 0; f < n; f++)
            for (int c = 0; c < r[f].C; c++)
                if (r[f].selected[c] && !isnan(mean[f][c])) {
                    double sd = isnan(std[f][c]) ? 0 : std[f][c];
                    lo = fmin(lo, mean[f][c] - sd);
                    hi = fmax(hi, mean[f][c] + sd);
                }
        symlog_range(job, lo, hi);
    }
    series_styles(job, &s, used);
    rc = 0;
done:
    for (int f = 0; f < n; f++) { free(mean[f]); free(std[f]); }
    series_free(&s);
    results_free_all(r, n);
    return rc;
}

int figure_mass(FigureJob *job, KvError *err)
{
    return budget_curves(job, "retained_mass", "retained attention mass m_t", "retained mass",
                         err);
}

int figure_error(FigureJob *job, KvError *err)
{
    return budget_curves(job, "output_error", "relative output error ||o - o~|| / ||o||", "output error", err);
}

int figure_nll(FigureJob *job, KvError *err)
{
    return budget_curves(job, "delta_nll", "NLL increase over the full cache (nats/token)",
                         "closed-loop NLL increase", err);
}

/* ------------------------------------------------------------ one budget */

/* The budget the one-budget figures show: as asked, else the middle one of the first file. */
static int pick_budget(const FigureJob *job, const Results *r, int n, char *out, size_t cap, KvError *err)
{
    if (job->opt->budget) {
        for (int f = 0; f < n; f++) {
            int found = 0;
            for (int c = 0; c < r[f].C; c++) found |= !strcmp(r[f].budget[c], job->opt->budget);
            if (!found) return kv_fail(err, "%s: no configuration with budget '%s'", r[f].in->path, job->opt->budget);
        }
        snprintf(out, cap, "%s", job->opt->budget);
        return 0;
    }
    int distinct[256], count = 0;
    for (int c = 0; c < r[0].C && count < 256; c++) {
        int seen = 0;
        for (int j = 0; j < count; j++) seen |= !strcmp(r[0].budget[distinct[j]], r[0].budget[c]);
        if (!seen) distinct[count++] = c;
    }
    snprintf(out, cap, "%s", r[0].budget[distinct[count / 2]]); /* count >= 1: C >= 1 */
    return 0;
}

/* keep[f][c]: the config has the budget (and, for retention, is not `full`). */
static int keep_budget(const Results *r, int n, const char *budget, int skip_full, int **keep, KvError *err)
{
    for (int f = 0; f < n; f++) {
        if (!(keep[f] = malloc((size_t)r[f].C * sizeof(int)))) return kv_fail(err, "out of memory");
        for (int c = 0; c < r[f].C; c++)
            keep[f][c] = !strcmp(r[f].budget[c], budget) && !(skip_full && !strcmp(r[f].policy[c], "full"));
    }
    return 0;
}

/* ------------------------------------------------------------ retention */

/* One map as a matrix: 1 held, 0 evicted, -1 not yet produced (i > t). */
static int write_retention_matrix(FigureJob *job, const uint8_t *map, int T, const char *file, char *rel, size_t cap,
                                  KvError *err)
{
    FILE *out = figure_data(job, file, rel, cap, err);
    if (!out) return -1;
    for (int t = 0; t < T; t++) {
        for (int i = 0; i < T; i++) fputs(i > t ? "-1 " : map[(size_t)t * T + i] ? "1 " : "0 ", out);
        fputc('\n', out);
    }
    return figure_data_close(job, out, file, err);
}

/* One map as rectangles: for every token i, each run of steps t in which
 * it is evicted (block 0) or held (block 1) is one rectangle "i t_first
 * t_last".  Vector output stays small (a real policy holds a token over one
 * run) and has no resampling moiré. */
static int write_retention_runs(FigureJob *job, const uint8_t *map, int T, const char *file, char *rel, size_t cap,
                                KvError *err)
{
    FILE *out = figure_data(job, file, rel, cap, err);
    if (!out) return -1;
    fprintf(out, "# position first_step last_step: runs of steps t >= i in which token i is evicted (block 0) or "
                 "held (block 1)\n");
    for (int held = 0; held < 2; held++) {
        fprintf(out, "# %s\n", held ? "held" : "evicted");
        for (int i = 0; i < T; i++)
            for (int t = i; t < T;) {
                int state = map[(size_t)t * T + i] != 0, end = t;
                while (end + 1 < T && (map[(size_t)(end + 1) * T + i] != 0) == state) end++;
                if (state == held) fprintf(out, "%d %d %d\n", i, t, end);
                t = end + 1;
            }
        fprintf(out, "\n\n");
    }
    return figure_data_close(job, out, file, err);
}

/* Rows t0..t0+n-1 of configuration c's map (T bytes each) into out. */
static int read_map_rows(hid_t d, int c, int T, int t0, int n, uint8_t *out)
{
    hsize_t start[3] = {(hsize_t)c, (hsize_t)t0, 0}, count[3] = {1, (hsize_t)n, (hsize_t)T};
    /* the memory space has the selection's shape: HDF5 then copies whole
     * rows, where a flat one made it map the map byte by byte (ten times slower) */
    hid_t fs = H5Dget_space(d), ms = H5Screate_simple(3, count, NULL);
    int rc = fs >= 0 && ms >= 0 && H5Sselect_hyperslab(fs, H5S_SELECT_SET, start, NULL, count, NULL) >= 0 &&
                     H5Dread(d, H5T_NATIVE_UINT8, ms, fs, H5P_DEFAULT, out) >= 0
                 ? 0 : -1;
    if (ms >= 0) H5Sclose(ms);
    if (fs >= 0) H5Sclose(fs);
    return rc;
}

/* Steps read at once for a map drawn in cells of `cell` steps: whole
 * cells, covering whole chunks of the dataset (simulate writes chunks of
 * about 4 MiB of steps; files before that hold each map as one chunk, which
 * is then read whole), so that no chunk is inflated twice. */
static int map_block_rows(hid_t d, int T, int cell)
{
    hsize_t chunk[3] = {0, 0, 0};
    hid_t dcpl = H5Dget_create_plist(d);
    int rows = dcpl >= 0 && H5Pget_layout(dcpl) == H5D_CHUNKED && H5Pget_chunk(dcpl, 3, chunk) == 3 ? (int)chunk[1] : T;
    if (dcpl >= 0) H5Pclose(dcpl);
    rows = (rows + cell - 1) / cell * cell;
    return rows < T ? rows : T;
}

/* One row of cells: steps y0..y0+cell-1 (rows, T bytes each, from step y0). */
static void write_cell_row(FILE *out, const uint8_t *rows, int y0, int T, int cell)
{
    int y1 = y0 + cell < T ? y0 + cell : T;
    for (int x0 = 0; x0 < T; x0 += cell) {
        int x1 = x0 + cell < T ? x0 + cell : T;
        long count = figure_causal_entries(y0, y1, x0, x1), held = 0;
        for (int t = y0; t < y1; t++)
            for (int i = x0; i < x1 && i <= t; i++) held += rows[(size_t)(t - y0) * T + i] != 0;
        if (count == 0) fputs("-1 ", out);
        else fprintf(out, "%.4g ", (double)held / (double)count);
    }
    fputc('\n', out);
}

/* A map longer than FIGURE_CELLS tokens, as a matrix of square cells of
 * `cell` tokens: each the share of its causal entries (i <= t) held, -1
 * above the diagonal (not yet produced).  Read a block of steps at a time
 * (map_block_rows), never the whole map: a gigabyte at 32k tokens. */
static int write_retention_cells(FigureJob *job, const char *path, hid_t d, int c, int T, const char *file, char *rel,
                                 size_t cap, KvError *err)
{
    int cell = figure_cell(T), block = map_block_rows(d, T, cell);
    uint8_t *rows = malloc((size_t)block * T);
    FILE *out = rows ? figure_data(job, file, rel, cap, err) : NULL;
    if (!out) {
        free(rows);
        return rows ? -1 : kv_fail(err, "out of memory drawing a %d-token retention map", T);
    }
    int rc = 0;
    for (int b0 = 0; b0 < T && rc == 0; b0 += block) {
        int b1 = b0 + block < T ? b0 + block : T;
        if (read_map_rows(d, c, T, b0, b1 - b0, rows)) {
            rc = kv_fail(err, "%s: cannot read the retention maps", path);
            break;
        }
        for (int y0 = b0; y0 < b1; y0 += cell) write_cell_row(out, rows + (size_t)(y0 - b0) * T, y0, T, cell);
    }
    free(rows);
    if (rc) {
        fclose(out);
        return rc;
    }
    return figure_data_close(job, out, file, err);
}

/* Long parameter lists go on two lines ("|" breaks the line in the script). */
static void wrap_params(const char *params, char *out, size_t cap)
{
    size_t n = strlen(params);
    const char *best = NULL;
    for (const char *c = strchr(params, ','); c && n > 22; c = strchr(c + 1, ','))
        if (!best || labs((long)(c - params) - (long)n / 2) < labs((long)(best - params) - (long)n / 2)) best = c;
    if (best) snprintf(out, cap, "%.*s|%s", (int)(best - params + 1), params, best + 1);
    else snprintf(out, cap, "%s", params);
}

/* The longest map drawn: one that simulate --retention can write (4 GiB). */
enum { RETENTION_MAX_T = 65536 };

/* Configuration c's map, into the panel's data files: runs of steps as
 * rectangles (and for SVG a matrix), or cells for a long sequence.  The
 * script reads FILE.dat, FILE.matrix beside it, or the cells' FILE.matrix. */
static int retention_panel(FigureJob *job, const char *path, hid_t d, int c, int T, int panel, char *rel, size_t cap,
                           KvError *err)
{
    char file[64];
    if (figure_cell(T) > 1) {
        snprintf(file, sizeof file, "retention_%d.matrix", panel);
        return write_retention_cells(job, path, d, c, T, file, rel, cap, err);
    }
    uint8_t *map = malloc((size_t)T * T); /* at most FIGURE_CELLS^2 bytes */
    if (!map) return kv_fail(err, "out of memory");
    int rc = read_map_rows(d, c, T, 0, T, map) ? kv_fail(err, "%s: cannot read the retention maps", path) : 0;
    snprintf(file, sizeof file, "retention_%d.dat", panel);
    if (rc == 0) rc = write_retention_runs(job, map, T, file, rel, cap, err);
    if (rc == 0 && !strcmp(job->opt->format, "svg")) { /* SVG: one embedded image per map, not rectangles */
        char matrix[64], ignored[256];
        snprintf(matrix, sizeof matrix, "retention_%d.matrix", panel);
        rc = write_retention_matrix(job, map, T, matrix, ignored, sizeof ignored, err);
    }
    free(map);
    return rc;
}

/* One file's maps for the series drawn; appends to files/titles/cells. */
static int retention_of_file(FigureJob *job, const Results *r, const Series *s, int f, const int *keep, char *files,
                             char *titles, char *cells, size_t cap, int *panels, int *max_T, char *unit_text,
                             size_t unit_cap, KvError *err)
{
    int rank, T;
    hsize_t dims[8];
    long long layer = 0, unit = 0;
    if (!h5_exists(r->in->file, "retention")) return 0;
    if (h5_dataset_shape(r->in->file, "retention", &rank, dims) || rank != 3 || (int)dims[0] != r->C ||
        dims[1] != dims[2] || dims[1] < 1)
        return kv_fail(err, "%s: damaged file (retention)", r->in->path);
    if (dims[1] > RETENTION_MAX_T)
        return kv_fail(err, "%s: retention maps of %llu tokens; the figure draws at most %d", r->in->path,
                       (unsigned long long)dims[1], RETENTION_MAX_T);
    T = (int)dims[1];
    *max_T = T > *max_T ? T : *max_T;
    hid_t d = H5Dopen2(r->in->file, "retention", H5P_DEFAULT);
    if (d < 0) return kv_fail(err, "%s: cannot read the retention maps", r->in->path);
    h5_attr_read_int(d, "layer", &layer);
    h5_attr_read_int(d, "unit", &unit);
    snprintf(unit_text + strlen(unit_text), unit_cap - strlen(unit_text), "%s%s%slayer %lld kv head %lld, T = %d",
             unit_text[0] ? "; " : "", r->in->label, r->in->label[0] ? ": " : "", layer, unit, T);
    int rc = 0;
    for (int c = 0; c < r->C && rc == 0; c++) {
        if (!keep[c] || s->of[f][c] < 0) continue;
        char rel[256] = "";
        rc = retention_panel(job, r->in->path, d, c, T, *panels, rel, sizeof rel, err);
        int tokens = r->tokens[(size_t)c * r->S]; /* S >= 1 */
        snprintf(files + strlen(files), cap - strlen(files), "%s%s", *panels ? " " : "", rel);
        snprintf(cells + strlen(cells), cap - strlen(cells), "%s%d", *panels ? " " : "", figure_cell(T));
        char params[200];
        wrap_params(r->params[c], params, sizeof params);
        snprintf(titles + strlen(titles), cap - strlen(titles), "%s\"%s%s%s (B = %d)|%s\"", *panels ? " " : "",
                 r->in->label, r->in->label[0] ? ": " : "", r->policy[c], tokens, params);
        (*panels)++;
    }
    H5Dclose(d);
    return rc;
}

int figure_retention(FigureJob *job, KvError *err)
{
    Results *r;
    if (load_all(job, &r, err)) return -1;
    int n = job->n_in, rc = -1, panels = 0, max_T = 0, *keep[64] = {0};
    char budget[32], *files = malloc(65536), *titles = malloc(65536), *cells = malloc(65536), units[512] = "";
    Series s = {0};
    if (!files || !titles || !cells) { kv_fail(err, "out of memory"); goto done; }
    files[0] = titles[0] = cells[0] = 0;
    if (pick_budget(job, r, n, budget, sizeof budget, err) || keep_budget(r, n, budget, !job->opt->n_policy && !job->opt->n_config, keep, err) ||
        make_series(r, n, (const int *const *)keep, &s, err))
        goto done;
    for (int f = 0; f < n; f++)
        if (retention_of_file(job, &r[f], &s, f, keep[f], files, titles, cells, 65536, &panels, &max_T, units,
                              sizeof units, err))
            goto done;
    if (!panels) { job->skip = 1; rc = 0; goto done; }
    int cols = job->opt->size && !strcmp(job->opt->size, "column") ? 2 : panels < 4 ? panels : 4;
    int rows = (panels + cols - 1) / cols;
    char models[256], modes[64];
    int S;
    describe(r, n, models, sizeof models, modes, sizeof modes, &S);
    figure_var(job, "files", "%s", files);
    figure_var(job, "titles", "%s", titles);
    figure_var(job, "cells", "%s", cells);
    figure_num(job, "cols", cols);
    figure_num(job, "rows", rows);
    figure_num(job, "T", max_T);
    job->aspect = (rows * (6.66 / cols + 0.56) + 0.5) / 7.0;
    figure_var(job, "title", "%s%stokens held (dark) at each step t (rows) by position i (columns), budget %s",
               models, models[0] ? ": " : "", budget);
    figure_var(job, "title2", "%s, sequence 0", units);
    rc = 0;
done:
    for (int f = 0; f < n; f++) free(keep[f]);
    free(files);
    free(titles);
    free(cells);
    series_free(&s);
    results_free_all(r, n);
    return rc;
}

/* ------------------------------------------------------------ eviction ages */

typedef struct {
    double total, mean, p[5]; /* p5, p25, p50, p75, p95 */
} AgeStats;

/* Percentiles of a histogram of ages; counts are summed as doubles (they
 * may be huge), a negative count is damage. */
static int age_stats(const long *h, int T, AgeStats *st)
{
    static const double Q[5] = {0.05, 0.25, 0.5, 0.75, 0.95};
    double total = 0, weighted = 0;
    for (int a = 0; a < T; a++) {
        if (h[a] < 0) return -1;
        total += (double)h[a];
        weighted += (double)h[a] * a;
    }
    st->total = total;
    st->mean = total > 0 ? weighted / total : NAN;
    for (int q = 0; q < 5; q++) {
        double below = 0;
        st->p[q] = NAN;
        for (int a = 0; a < T && total > 0; a++) {
            below += (double)h[a];
            if (below >= Q[q] * total) { st->p[q] = a; break; }
        }
    }
    return 0;
}

/* The cumulative share of evictions by age: a vertical step at every age
 * that occurs, so a single-age policy draws one visible step. */
static void write_age_cdf(FILE *out, const long *h, int T, double total)
{
    double below = 0;
    for (int a = 0; a < T; a++) {
        if (!h[a]) continue;
        fprintf(out, "%d %.9g\n", a, below / total);
        below += (double)h[a];
        fprintf(out, "%d %.9g\n", a, below / total);
    }
}

static int read_ages(const Results *r, long **ages, KvError *err)
{
    *ages = malloc((size_t)r->C * r->T * sizeof(long));
    if (!*ages || h5_read_all(r->in->file, "eviction_age", H5T_NATIVE_LONG, *ages, (size_t)r->C * r->T))
        return kv_fail(err, "%s: damaged file (eviction_age)", r->in->path);
    return 0;
}

static int write_ages(FigureJob *job, const Results *r, const Series *s, long *const *ages, int *used, char *rel,
                      char *rel_box, KvError *err)
{
    FILE *cdf = figure_data(job, "eviction_age.dat", rel, 256, err), *box = NULL;
    if (!cdf || !(box = figure_data(job, "eviction_age_box.dat", rel_box, 256, err))) {
        if (cdf) fclose(cdf);
        return -1;
    }
    fprintf(cdf, "# age cumulative_share_of_evictions: one block per series, a vertical step at each age\n");
    fprintf(box, "# series p5 p25 median p75 p95 mean evictions (ages t - i, one block per series)\n");
    int rc = 0, drawn = 0;
    for (int k = 0; k < s->n && rc == 0; k++) {
        int f = s->file[k];
        for (int c = 0; c < r[f].C; c++) {
            if (s->of[f][c] != k) continue;
            const long *h = ages[f] + (size_t)c * r[f].T;
            AgeStats st;
            if (age_stats(h, r[f].T, &st)) { rc = kv_fail(err, "%s: damaged file (negative eviction count)", r[f].in->path); break; }
            if (st.total <= 0) break; /* never evicted (full, or budget >= T) */
            used[k] = 1;
            fprintf(cdf, "# %s\n", s->label[k]);
            write_age_cdf(cdf, h, r[f].T, st.total);
            fprintf(cdf, "\n\n");
            fprintf(box, "# %s\n%d %g %g %g %g %g %.6g %.17g\n\n\n", s->label[k], ++drawn, st.p[0], st.p[1], st.p[2],
                    st.p[3], st.p[4], st.mean, st.total);
            break;
        }
    }
    int a = figure_data_close(job, cdf, "eviction_age.dat", err), b = figure_data_close(job, box, "eviction_age_box.dat", err);
    return rc || a || b ? -1 : 0;
}

int figure_eviction_age(FigureJob *job, KvError *err)
{
    Results *r;
    if (load_all(job, &r, err)) return -1;
    int n = job->n_in, rc = -1, used[MAX_SERIES] = {0}, *keep[64] = {0};
    long *ages[64] = {0};
    char budget[32], rel[256], rel_box[256];
    Series s = {0};
    for (int f = 0; f < n; f++)
        if (!r[f].T) { kv_fail(err, "%s: has no eviction ages (not a results file?)", r[f].in->path); goto done; }
    if (pick_budget(job, r, n, budget, sizeof budget, err) || keep_budget(r, n, budget, 0, keep, err) ||
        make_series(r, n, (const int *const *)keep, &s, err))
        goto done;
    for (int f = 0; f < n; f++)
        if (read_ages(&r[f], &ages[f], err)) goto done;
    if (write_ages(job, r, &s, ages, used, rel, rel_box, err)) goto done;
    int drawn = 0;
    for (int k = 0; k < s.n; k++) drawn += used[k];
    if (!drawn) { job->skip = 1; rc = 0; goto done; }
    char models[256], modes[64];
    int S;
    describe(r, n, models, sizeof models, modes, sizeof modes, &S);
    figure_var(job, "data", "%s", rel);
    figure_var(job, "boxes", "%s", rel_box);
    job->aspect = 0.62 + 0.012 * drawn;
    figure_var(job, "title", "%s%sage of tokens at eviction, budget %s|all sequences, layers and heads", models,
               models[0] ? ": " : "", budget);
    series_styles(job, &s, used);
    rc = 0;
done:
    for (int f = 0; f < n; f++) { free(keep[f]); free(ages[f]); }
    series_free(&s);
    results_free_all(r, n);
    return rc;
}

/* ------------------------------------------------------------ offline vs closed */

static int ovc_file(const Results *r, const Series *s, int f, FILE *out, int *used, char *corr,
                    size_t cap, double range[2], KvError *err)
{
    size_t C = (size_t)r->C;
    double *mass = malloc(C * sizeof(double)), *delta = malloc(C * sizeof(double));
    int rc = -1;
    if (!mass || !delta || h5_read_all(r->in->file, "summary/offline_retained_mass_mean", H5T_NATIVE_DOUBLE, mass, C) ||
        h5_read_all(r->in->file, "summary/delta_nll_mean", H5T_NATIVE_DOUBLE, delta, C)) {
        kv_fail(err, "%s: damaged eval file (summary)", r->in->path);
        goto done;
    }
    EvalRanks ranks;
    eval_rank_correlations(mass, delta, (const char *const *)r->policy, (const char *const *)r->budget, r->C, &ranks);
    fprintf(out, "# %s%sSpearman(offline mass, -dNLL) over configurations: all %+.3f, without full %+.3f, "
                 "without full/knorm/random %+.3f; within a budget (mean): all %+.3f, without full %+.3f, "
                 "without full/knorm/random %+.3f\n", r->in->label, r->in->label[0] ? ": " : "",
            ranks.overall[EVAL_RANK_ALL], ranks.overall[EVAL_RANK_NO_FULL], ranks.overall[EVAL_RANK_CLOSE],
            ranks.within_budget[EVAL_RANK_ALL], ranks.within_budget[EVAL_RANK_NO_FULL],
            ranks.within_budget[EVAL_RANK_CLOSE]);
    snprintf(corr + strlen(corr), cap - strlen(corr),
             "%s%s%sSpearman(offline mass, -dNLL) over all configurations: %+.2f with full, %+.2f without|"
             "within a budget (mean): %+.2f without full, %+.2f also without knorm and random",
             corr[0] ? "|" : "", r->in->label, r->in->label[0] ? ": " : "", ranks.overall[EVAL_RANK_ALL],
             ranks.overall[EVAL_RANK_NO_FULL], ranks.within_budget[EVAL_RANK_NO_FULL],
             ranks.within_budget[EVAL_RANK_CLOSE]);
    for (int c = 0; c < r->C; c++)
        if (!isnan(delta[c]) && strcmp(r->policy[c], "full")) {
            range[0] = fmin(range[0], delta[c]);
            range[1] = fmax(range[1], delta[c]);
        }
    for (int k = 0; k < s->n; k++) {
        if (s->file[k] != f || !strcmp(s->key[k].family, "full")) continue; /* full: mass 1, no increase */
        int any = 0;
        for (int c = 0; c < r->C; c++)
            if (s->of[f][c] == k && !isnan(mass[c]) && !isnan(delta[c])) {
                if (!any) fprintf(out, "# %s\n", s->label[k]);
                fprintf(out, "%.9g %.9g %s\n", mass[c], delta[c], r->budget[c]);
                any = used[k] = 1;
            }
        if (any) fprintf(out, "\n\n");
    }
    rc = 0;
done:
    free(mass);
    free(delta);
    return rc;
}

int figure_offline_vs_closed(FigureJob *job, KvError *err)
{
    Results *r;
    if (load_all(job, &r, err)) return -1;
    int n = job->n_in, rc = -1, used[MAX_SERIES] = {0};
    char rel[256], corr[2048] = "";
    double range[2] = {0, 0};
    Series s = {0};
    FILE *out = NULL;
    if (make_series(r, n, NULL, &s, err) || !(out = figure_data(job, "offline_vs_closed.dat", rel, sizeof rel, err)))
        goto done;
    fprintf(out, "# offline_retained_mass closed_loop_delta_nll budget, one block per series (full left out)\n");
    for (int f = 0; f < n; f++)
        if (ovc_file(&r[f], &s, f, out, used, corr, sizeof corr, range, err)) goto done;
    rc = figure_data_close(job, out, "offline_vs_closed.dat", err);
    out = NULL;
    if (rc) goto done;
    char models[256], modes[64];
    int S;
    describe(r, n, models, sizeof models, modes, sizeof modes, &S);
    figure_var(job, "data", "%s", rel);
    figure_var(job, "title", "%s%soffline retained mass vs closed-loop NLL increase (mean over %d texts)", models,
               models[0] ? ": " : "", S);
    figure_var(job, "subtitle", "%s", corr);
    symlog_range(job, range[0], range[1]);
    job->aspect = 0.55 + 0.03 * n;
    series_styles(job, &s, used);
done:
    if (out) fclose(out);
    series_free(&s);
    results_free_all(r, n);
    return rc;
}
