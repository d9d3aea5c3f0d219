/* Figures from an analysis file (kvtrace analyze): age bias, key norms,
 * value norms.  Every shape and index is checked against the file's own
 * attributes before it is used: a damaged or hand-made file gives an error,
 * never a read outside an array. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../trace/h5util.h"
#include "figure.h"

#define MAX_LAYERS 4096
#define MAX_HEADS 4096
#define MAX_TOKENS (1 << 22)
#define MAX_SCORES 64

typedef struct {
    int K, T, L, H, layer, head;
    int layers_analysed, heads_analysed; /* analyze --layers, --heads (files before them: all) */
    char **scores;
    char model[128];
} AnalysisInfo;

static int damaged(const FigureJob *job, const char *what, KvError *err)
{
    return kv_fail(err, "%s: damaged analysis file (%s)", job->input, what);
}

/* How many layers or heads the attribute name lists ("all", or "0,5,31"). */
static int selection_count(hid_t file, const char *name, int all)
{
    char text[4096];
    if (h5_attr_read_str(file, name, text, sizeof text) || !strcmp(text, "all")) return all;
    int n = 1;
    for (const char *c = text; *c; c++) n += *c == ',';
    return n;
}

static int analysis_info(const FigureJob *job, AnalysisInfo *a, KvError *err)
{
    memset(a, 0, sizeof *a);
    int rank;
    hsize_t dims[8];
    long long layer, head, L, H;
    if (h5_dataset_shape(job->file, "age_bias/example_head", &rank, dims) || rank != 2 ||
        h5_attr_read_int(job->file, "example_layer", &layer) || h5_attr_read_int(job->file, "example_head", &head) ||
        h5_attr_read_int(job->file, "n_layers", &L) || h5_attr_read_int(job->file, "n_heads", &H))
        return damaged(job, "attributes or age_bias/example_head missing", err);
    if (L < 1 || L > MAX_LAYERS || H < 1 || H > MAX_HEADS) return damaged(job, "n_layers or n_heads out of range", err);
    if (layer < 0 || layer >= L || head < 0 || head >= H)
        return kv_fail(err, "%s: damaged analysis file (example layer %lld head %lld, but %lld layers of %lld heads)",
                       job->input, layer, head, L, H);
    if (dims[0] < 3 || dims[0] > MAX_SCORES || dims[1] < 2 || dims[1] > MAX_TOKENS)
        return damaged(job, "age_bias/example_head has an impossible shape", err);
    a->K = (int)dims[0];
    a->T = (int)dims[1];
    a->layer = (int)layer;
    a->head = (int)head;
    a->L = (int)L;
    a->H = (int)H;
    if (!(a->scores = h5_read_strings(job->file, "age_bias/scores", a->K))) return damaged(job, "age_bias/scores", err);
    if (strcmp(a->scores[0], "h2o") || strcmp(a->scores[1], "accumulations") || strcmp(a->scores[2], "mean_attention")) {
        h5_free_strings(a->scores, a->K);
        a->scores = NULL;
        return damaged(job, "age_bias/scores do not start with h2o, accumulations, mean_attention", err);
    }
    figure_model(job->file, a->model, sizeof a->model);
    a->layers_analysed = selection_count(job->file, "layers", a->L);
    a->heads_analysed = selection_count(job->file, "heads", a->H);
    return 0;
}

/* What the pooled figures pool: "all heads", or "the 12 heads analysed". */
static void heads_pooled(const AnalysisInfo *a, char *out, size_t size)
{
    int n = a->layers_analysed * a->heads_analysed;
    if (n == a->L * a->H) snprintf(out, size, "all heads");
    else snprintf(out, size, "the %d head%s analysed", n, n == 1 ? "" : "s");
}

static void analysis_info_free(AnalysisInfo *a)
{
    h5_free_strings(a->scores, a->K);
    a->scores = NULL;
}

/* Reads n values of a dataset or fails naming it. */
static int read_floats(const FigureJob *job, const char *name, float *out, size_t n, KvError *err)
{
    if (h5_read_all(job->file, name, H5T_NATIVE_FLOAT, out, n)) return damaged(job, name, err);
    return 0;
}

static int read_doubles(const FigureJob *job, const char *name, double *out, size_t n, KvError *err)
{
    if (h5_read_all(job->file, name, H5T_NATIVE_DOUBLE, out, n)) return damaged(job, name, err);
    return 0;
}

/* "A2SF alpha = 0.2" for a2sf_0.2, "H2O" ... */
static void score_title(const char *name, char *out, size_t cap)
{
    if (!strncmp(name, "a2sf_", 5)) snprintf(out, cap, "A2SF alpha = %s", name + 5);
    else if (!strcmp(name, "h2o")) snprintf(out, cap, "H2O");
    else if (!strcmp(name, "accumulations")) snprintf(out, cap, "rows accumulated T - i");
    else if (!strcmp(name, "mean_attention")) snprintf(out, cap, "mean attention per row");
    else snprintf(out, cap, "%s", name);
}

static const char *score_family(const char *name)
{
    return !strncmp(name, "a2sf_", 5) ? "a2sf" : name;
}

/* ------------------------------------------------------------ age bias */

typedef struct {
    int M, bins;
    char **methods;
    double *share;      /* [M][bins][3] */
} AgeShare;

static int read_age_share(const FigureJob *job, AgeShare *s, KvError *err)
{
    memset(s, 0, sizeof *s);
    int rank;
    hsize_t dims[8];
    if (h5_dataset_shape(job->file, "top_b/age_share_pooled", &rank, dims))
        return kv_fail(err, "%s: has no top_b/age_share_pooled (written by an older kvtrace analyze); run analyze again",
                       job->input);
    if (rank != 3 || dims[0] < 2 || dims[0] > MAX_SCORES || dims[1] < 3 || dims[1] > 1000 || dims[1] % 3 || dims[2] != 3)
        return damaged(job, "top_b/age_share_pooled has an impossible shape", err);
    s->M = (int)dims[0];
    s->bins = (int)dims[1];
    s->share = malloc((size_t)s->M * s->bins * 3 * sizeof(double));
    if (!s->share) return kv_fail(err, "out of memory");
    if (!(s->methods = h5_read_strings(job->file, "top_b/methods", s->M))) return damaged(job, "top_b/methods", err);
    return read_doubles(job, "top_b/age_share_pooled", s->share, (size_t)s->M * s->bins * 3, err);
}

static void age_share_free(AgeShare *s)
{
    h5_free_strings(s->methods, s->M);
    free(s->share);
}

static double oldest_third(const AgeShare *s, int m)
{
    double sum = 0;
    for (int b = s->bins * 2 / 3; b < s->bins; b++) sum += s->share[((size_t)m * s->bins + b) * 3];
    return sum;
}

/* The caption: what the figure shows, with its numbers. */
static void age_caption(const AgeShare *s, const AnalysisInfo *a, const double *pooled, double budget_fraction,
                        char *out, size_t cap)
{
    snprintf(out, cap, "Share of the kept top-B set (B = %g%% of the tokens so far) in the oldest third of relative "
             "ages:", 100 * budget_fraction);
    for (int m = 0; m < s->M; m++)
        snprintf(out + strlen(out), cap - strlen(out), " %s %.3f%s", s->methods[m], oldest_third(s, m),
                 m + 1 < s->M ? "," : ".");
    snprintf(out + strlen(out), cap - strlen(out), " Spearman of the score with token age (mean over heads and "
             "sequences, 95%% CI):");
    for (int k = 0; k < a->K; k++)
        snprintf(out + strlen(out), cap - strlen(out), " %s %+.2f [%+.2f, %+.2f]%s", a->scores[k], pooled[k * 3],
                 pooled[k * 3 + 1], pooled[k * 3 + 2], k + 1 < a->K ? "," : ".");
}

static int write_share(FigureJob *job, const AgeShare *s, const char *caption, char *rel, KvError *err)
{
    FILE *out = figure_data(job, "age_bias_share.dat", rel, 256, err);
    if (!out) return -1;
    fprintf(out, "# caption: %s\n", caption);
    fprintf(out, "# relative_age_bin_centre share low high (share of the kept top-B set per bin, 95%% CI over "
                 "heads and sequences); one block per method\n");
    for (int m = 0; m < s->M; m++) {
        fprintf(out, "# %s (oldest third: %.6f)\n", s->methods[m], oldest_third(s, m));
        for (int b = 0; b < s->bins; b++) {
            const double *v = s->share + ((size_t)m * s->bins + b) * 3;
            fprintf(out, "%.6f %.9g %.9g %.9g\n", (b + 0.5) / s->bins, v[0], isnan(v[1]) ? v[0] : v[1],
                    isnan(v[2]) ? v[0] : v[2]);
        }
        fprintf(out, "\n\n");
    }
    return figure_data_close(job, out, "age_bias_share.dat", err);
}

static int write_spearman(FigureJob *job, const AnalysisInfo *a, const double *by_layer, char *rel, KvError *err)
{
    FILE *out = figure_data(job, "age_bias_spearman.dat", rel, 256, err);
    if (!out) return -1;
    fprintf(out, "# layer spearman low high (score vs token age, mean over heads and sequences, 95%% CI); one block "
                 "per score\n");
    for (int k = 0; k < a->K; k++) {
        fprintf(out, "# %s\n", a->scores[k]);
        for (int l = 0; l < a->L; l++) {
            const double *v = by_layer + ((size_t)l * a->K + k) * 3;
            fprintf(out, "%d %.9g %.9g %.9g\n", l, v[0], isnan(v[1]) ? v[0] : v[1], isnan(v[2]) ? v[0] : v[2]);
        }
        fprintf(out, "\n\n");
    }
    return figure_data_close(job, out, "age_bias_spearman.dat", err);
}

static int write_scores(FigureJob *job, const AnalysisInfo *a, const float *mean, char *rel, KvError *err)
{
    FILE *out = figure_data(job, "age_bias_scores.dat", rel, 256, err);
    if (!out) return -1;
    fprintf(out, "# position");
    for (int k = 0; k < a->K; k++) fprintf(out, " %s", a->scores[k]);
    fprintf(out, "  (sequence 0, end-of-sequence scores, mean over %d layers x %d heads)\n", a->L, a->H);
    for (int i = 0; i < a->T; i++) {
        fprintf(out, "%d", i);
        for (int k = 0; k < a->K; k++) fprintf(out, " %.9g", mean[(size_t)k * a->T + i]);
        fputc('\n', out);
    }
    return figure_data_close(job, out, "age_bias_scores.dat", err);
}

/* Styles of the share panel (methods), then of the Spearman panel (scores). */
static void age_styles(FigureJob *job, const AgeShare *s, const AnalysisInfo *a)
{
    const char *labels[MAX_SCORES];
    char titles[MAX_SCORES][64];
    SeriesKey keys[MAX_SCORES];
    for (int m = 0; m < s->M; m++) {
        score_title(s->methods[m], titles[m], sizeof titles[m]);
        if (!strcmp(s->methods[m], "ideal")) snprintf(titles[m], sizeof titles[m], "ideal (row's own top-B)");
        labels[m] = titles[m];
        keys[m] = (SeriesKey){.family = score_family(s->methods[m])};
    }
    figure_styles(job, "", labels, keys, s->M);
    for (int k = 0; k < a->K; k++) {
        score_title(a->scores[k], titles[k], sizeof titles[k]);
        labels[k] = titles[k];
        keys[k] = (SeriesKey){.family = score_family(a->scores[k])};
    }
    figure_styles(job, "score_", labels, keys, a->K);
}

int figure_age_bias(FigureJob *job, KvError *err)
{
    AnalysisInfo a;
    if (analysis_info(job, &a, err)) return -1;
    AgeShare s = {0};
    size_t n = (size_t)a.K * a.T;
    float *mean = malloc(n * sizeof(float));
    double *by_layer = malloc((size_t)a.L * a.K * 3 * sizeof(double)), *pooled = malloc((size_t)a.K * 3 * sizeof(double));
    double budget_fraction = NAN;
    char rel_share[256], rel_rho[256], rel_scores[256], *caption = malloc(8192);
    int rc = -1;
    if (!mean || !by_layer || !pooled || !caption) { kv_fail(err, "out of memory"); goto done; }
    if (read_floats(job, "age_bias/mean_over_heads", mean, n, err) ||
        read_doubles(job, "age_bias/spearman_layer", by_layer, (size_t)a.L * a.K * 3, err) ||
        read_doubles(job, "age_bias/spearman_pooled", pooled, (size_t)a.K * 3, err) || read_age_share(job, &s, err))
        goto done;
    h5_attr_read_double(job->file, "budget_fraction", &budget_fraction);
    age_caption(&s, &a, pooled, budget_fraction, caption, 8192);
    if (write_share(job, &s, caption, rel_share, err) || write_spearman(job, &a, by_layer, rel_rho, err) ||
        write_scores(job, &a, mean, rel_scores, err))
        goto done;
    figure_var(job, "share", "%s", rel_share);
    figure_var(job, "rho", "%s", rel_rho);
    figure_var(job, "raw", "%s", rel_scores);
    figure_num(job, "bins", s.bins);
    figure_num(job, "layers", a.L);
    figure_num(job, "K", a.K);
    figure_var(job, "title", "%s%sage bias: which tokens the scores keep (B = %g%% of the tokens so far)", a.model,
               a.model[0] ? ": " : "", 100 * budget_fraction);
    figure_var(job, "title_share", "kept set by token age: oldest third H2O %.2f, ideal %.2f", oldest_third(&s, 0),
               oldest_third(&s, s.M - 1));
    figure_var(job, "title_raw", "H2O's sum and the rows it sums (mean of %d x %d heads)", a.layers_analysed,
               a.heads_analysed);
    age_styles(job, &s, &a);
    rc = 0;
done:
    free(mean); free(by_layer); free(pooled); free(caption);
    age_share_free(&s);
    analysis_info_free(&a);
    return rc;
}

/* ------------------------------------------------------------ key norm */

int figure_key_norm(FigureJob *job, KvError *err)
{
    AnalysisInfo a;
    if (analysis_info(job, &a, err)) return -1;
    float *k_norm = malloc((size_t)a.T * sizeof(float)), *attention = malloc((size_t)a.T * sizeof(float));
    double pooled[3], *every = NULL;
    int rc = -1, rank;
    hsize_t dims[8];
    char rel[256];
    if (!k_norm || !attention) { kv_fail(err, "out of memory"); goto done; }
    if (read_floats(job, "key_norm/example_k_norm", k_norm, (size_t)a.T, err) ||
        read_floats(job, "key_norm/example_mean_attention", attention, (size_t)a.T, err) ||
        read_doubles(job, "key_norm/spearman_pooled", pooled, 3, err))
        goto done;
    if (h5_dataset_shape(job->file, "key_norm/spearman", &rank, dims) || rank != 3 || dims[0] < 1 ||
        dims[1] != (hsize_t)a.L || dims[2] != (hsize_t)a.H || dims[0] > (hsize_t)1 << 24) {
        damaged(job, "key_norm/spearman does not match n_layers x n_heads", err);
        goto done;
    }
    /* sequence 0's value for the example head: the first L*H entries */
    size_t all = (size_t)dims[0] * dims[1] * dims[2];
    if (!(every = malloc(all * sizeof(double)))) { kv_fail(err, "out of memory"); goto done; }
    if (read_doubles(job, "key_norm/spearman", every, all, err)) goto done;
    double head_rho = every[(size_t)a.layer * a.H + a.head];
    FILE *out = figure_data(job, "key_norm.dat", rel, sizeof rel, err);
    if (!out) goto done;
    fprintf(out, "# key_l2_norm mean_attention_per_row position (layer %d head %d, sequence 0)\n", a.layer, a.head);
    for (int i = 0; i < a.T; i++) fprintf(out, "%.9g %.9g %d\n", k_norm[i], attention[i], i);
    if (figure_data_close(job, out, "key_norm.dat", err)) goto done;
    figure_var(job, "data", "%s", rel);
    figure_var(job, "logformat", "%s", figure_log_format(job));
    char heads[64];
    heads_pooled(&a, heads, sizeof heads);
    figure_var(job, "title", "%s%skey norm vs attention, layer %d head %d, sequence 0: Spearman %+.2f|"
               "%s and sequences: %+.2f [%+.2f, %+.2f] (the K-norm paper expects < 0)", a.model, a.model[0] ? ": " : "",
               a.layer, a.head, head_rho, heads, pooled[0], pooled[1], pooled[2]);
    rc = 0;
done:
    free(k_norm); free(attention); free(every);
    analysis_info_free(&a);
    return rc;
}

/* ------------------------------------------------------------ value norm */

static int cmp_double(const void *x, const void *y)
{
    double a = *(const double *)x, b = *(const double *)y;
    return (a > b) - (a < b);
}

/* Quantiles (5, 25, 50, 75, 95 %) and mean of v[0..n), sorted in place. */
static void quantiles(double *v, int n, double q[6])
{
    static const double P[5] = {0.05, 0.25, 0.5, 0.75, 0.95};
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    double sum = 0;
    for (int i = 0; i < n; i++) sum += v[i];
    for (int j = 0; j < 5; j++) {
        double x = P[j] * (n - 1);
        int lo = (int)floor(x), hi = lo + 1 < n ? lo + 1 : lo;
        q[j] = n ? v[lo] + (x - lo) * (v[hi] - v[lo]) : NAN;
    }
    q[5] = n ? sum / n : NAN;
}

/* Per layer, the value norms of sequence 0's sink tokens and of the others. */
static int write_value_boxes(FigureJob *job, const AnalysisInfo *a, const float *by_position, const float *sink_share,
                             char *rel, KvError *err)
{
    double *v = malloc((size_t)a->T * sizeof(double)), q[6];
    FILE *out = v ? figure_data(job, "value_norm_layers.dat", rel, 256, err) : NULL;
    if (!out) {
        free(v);
        return v ? -1 : kv_fail(err, "out of memory");
    }
    fprintf(out, "# x layer p5 p25 median p75 p95 mean n: value L1 norm of sequence 0's tokens per layer (mean over "
                 "kv heads); block 0 the other tokens, block 1 the sinks (a sink in at least half the heads)\n");
    for (int kind = 0; kind < 2; kind++) {
        fprintf(out, "# %s\n", kind ? "sink tokens" : "other tokens");
        for (int l = 0; l < a->L; l++) {
            int n = 0;
            for (int i = 0; i < a->T; i++)
                if ((sink_share[i] >= 0.5f) == kind) v[n++] = by_position[(size_t)l * a->T + i];
            quantiles(v, n, q);
            if (n) fprintf(out, "%.2f %d %.9g %.9g %.9g %.9g %.9g %.9g %d\n", l + (kind ? 0.2 : -0.2), l, q[0], q[1],
                           q[2], q[3], q[4], q[5], n);
        }
        fprintf(out, "\n\n");
    }
    free(v);
    return figure_data_close(job, out, "value_norm_layers.dat", err);
}

/* Per layer, the sink/other value-norm ratio over every sequence and head:
 * mean with a normal 95 % interval. */
static int write_value_ratio(FigureJob *job, const AnalysisInfo *a, char *rel, KvError *err)
{
    int rank;
    hsize_t dims[8];
    if (h5_dataset_shape(job->file, "value_norm/sink_value_ratio", &rank, dims) || rank != 3 || dims[0] < 1 ||
        dims[1] != (hsize_t)a->L || dims[2] != (hsize_t)a->H || dims[0] > (hsize_t)1 << 24)
        return damaged(job, "value_norm/sink_value_ratio does not match n_layers x n_heads", err);
    size_t S = (size_t)dims[0], all = S * a->L * a->H;
    double *ratio = malloc(all * sizeof(double));
    if (!ratio) return kv_fail(err, "out of memory");
    FILE *out = NULL;
    int rc = read_doubles(job, "value_norm/sink_value_ratio", ratio, all, err);
    if (rc == 0 && !(out = figure_data(job, "value_norm_ratio.dat", rel, 256, err))) rc = -1;
    if (rc == 0) {
        fprintf(out, "# layer ratio low high n: mean value L1 norm of sinks / of the other tokens, mean over "
                     "sequences and heads with a normal 95%% interval\n");
        for (int l = 0; l < a->L; l++) {
            double sum = 0, sum2 = 0;
            int n = 0;
            for (size_t s = 0; s < S; s++)
                for (int h = 0; h < a->H; h++) {
                    double x = ratio[(s * a->L + l) * a->H + h];
                    if (isnan(x)) continue;
                    sum += x;
                    sum2 += x * x;
                    n++;
                }
            double mean = n ? sum / n : NAN, sd = n > 1 ? sqrt(fmax(0, (sum2 - n * mean * mean) / (n - 1))) : 0;
            double half = n > 1 ? 1.96 * sd / sqrt(n) : 0;
            if (n) fprintf(out, "%d %.9g %.9g %.9g %d\n", l, mean, mean - half, mean + half, n);
        }
        rc = figure_data_close(job, out, "value_norm_ratio.dat", err);
    }
    free(ratio);
    return rc;
}

static int write_value_scatter(FigureJob *job, const AnalysisInfo *a, const float *sink_share, char *rel, KvError *err)
{
    float *v = malloc((size_t)a->T * sizeof(float)), *attention = malloc((size_t)a->T * sizeof(float));
    int rc = -1;
    FILE *out = NULL;
    if (!v || !attention) { kv_fail(err, "out of memory"); goto done; }
    if (read_floats(job, "value_norm/example_v_l1", v, (size_t)a->T, err) ||
        read_floats(job, "key_norm/example_mean_attention", attention, (size_t)a->T, err) ||
        !(out = figure_data(job, "value_norm_scatter.dat", rel, 256, err)))
        goto done;
    fprintf(out, "# mean_attention_per_row value_l1_norm sink position (layer %d head %d, sequence 0)\n", a->layer,
            a->head);
    for (int i = 0; i < a->T; i++) fprintf(out, "%.9g %.9g %d %d\n", attention[i], v[i], sink_share[i] >= 0.5f, i);
    rc = figure_data_close(job, out, "value_norm_scatter.dat", err);
done:
    free(v);
    free(attention);
    return rc;
}

int figure_value_norm(FigureJob *job, KvError *err)
{
    AnalysisInfo a;
    if (analysis_info(job, &a, err)) return -1;
    float *by_position = malloc((size_t)a.L * a.T * sizeof(float)), *sink = malloc((size_t)a.T * sizeof(float));
    double ratio[3], value_rho[3];
    int rc = -1;
    char rel_boxes[256], rel_ratio[256], rel_scatter[256];
    if (!by_position || !sink) { kv_fail(err, "out of memory"); goto done; }
    if (read_floats(job, "value_norm/by_position", by_position, (size_t)a.L * a.T, err) ||
        read_floats(job, "value_norm/sink_share", sink, (size_t)a.T, err) ||
        read_doubles(job, "value_norm/sink_value_ratio_pooled", ratio, 3, err) ||
        read_doubles(job, "value_norm/spearman_pooled", value_rho, 3, err))
        goto done;
    int any = 0;
    for (size_t i = 0; i < (size_t)a.L * a.T; i++) any |= by_position[i] != 0;
    if (!any) { job->skip = 1; rc = 0; goto done; } /* the trace had no values */
    if (write_value_boxes(job, &a, by_position, sink, rel_boxes, err) || write_value_ratio(job, &a, rel_ratio, err) ||
        write_value_scatter(job, &a, sink, rel_scatter, err))
        goto done;
    figure_var(job, "boxes", "%s", rel_boxes);
    figure_var(job, "ratio", "%s", rel_ratio);
    figure_var(job, "scatter", "%s", rel_scatter);
    figure_num(job, "layers", a.L);
    figure_var(job, "logformat", "%s", figure_log_format(job));
    char heads[64];
    heads_pooled(&a, heads, sizeof heads);
    figure_var(job, "title", "%s%sVATP's premise: do attention sinks have small value norms?|sinks / others = %.2f "
               "[%.2f, %.2f] over %s (VATP expects << 1); Spearman(value norm, attention) %+.2f", a.model,
               a.model[0] ? ": " : "", ratio[0], ratio[1], ratio[2], heads, value_rho[0]);
    figure_var(job, "title_scatter", "layer %d head %d, sequence 0", a.layer, a.head);
    rc = 0;
done:
    free(by_position); free(sink);
    analysis_info_free(&a);
    return rc;
}
