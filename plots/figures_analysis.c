/* Figures from an analysis file (kvtrace analyze): age bias, key norms,
 * value norms. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../trace/h5util.h"
#include "figure.h"

typedef struct {
    int K, T, L, H, layer, head;
    char **scores;
    char model[128];
} AnalysisInfo;

static int analysis_info(const FigureJob *job, AnalysisInfo *a, KvError *err)
{
    memset(a, 0, sizeof *a);
    int rank;
    hsize_t dims[8];
    long long layer, head, L, H;
    if (h5_dataset_shape(job->file, "age_bias/example_head", &rank, dims) || rank != 2 ||
        h5_attr_read_int(job->file, "example_layer", &layer) || h5_attr_read_int(job->file, "example_head", &head) ||
        h5_attr_read_int(job->file, "n_layers", &L) || h5_attr_read_int(job->file, "n_heads", &H))
        return kv_fail(err, "%s: damaged analysis file", job->input);
    a->K = (int)dims[0];
    a->T = (int)dims[1];
    a->layer = (int)layer;
    a->head = (int)head;
    a->L = (int)L;
    a->H = (int)H;
    if (!(a->scores = h5_read_strings(job->file, "age_bias/scores", a->K)))
        return kv_fail(err, "%s: damaged analysis file (scores)", job->input);
    figure_model(job, a->model, sizeof a->model);
    return 0;
}

/* Reads n floats of a dataset or fails naming it. */
static int read_floats(const FigureJob *job, const char *name, float *out, size_t n, KvError *err)
{
    if (h5_read_all(job->file, name, H5T_NATIVE_FLOAT, out, n))
        return kv_fail(err, "%s: damaged analysis file (%s)", job->input, name);
    return 0;
}

/* The A2SF score shown: alpha = 0.2 (the A2SF default) if analysed, else the first. */
static int a2sf_index(const AnalysisInfo *a)
{
    int first = -1;
    for (int k = 0; k < a->K; k++) {
        if (strncmp(a->scores[k], "a2sf_", 5)) continue;
        if (!strcmp(a->scores[k], "a2sf_0.2")) return k;
        if (first < 0) first = k;
    }
    return first;
}

int figure_age_bias(FigureJob *job, KvError *err)
{
    AnalysisInfo a;
    if (analysis_info(job, &a, err)) return -1;
    size_t n = (size_t)a.K * a.T;
    float *one = malloc(n * sizeof(float)), *mean = malloc(n * sizeof(float));
    int rc = -1, k_a2sf = a2sf_index(&a);
    char rel[256];
    if (!one || !mean) { kv_fail(err, "out of memory"); goto done; }
    if (k_a2sf < 0) { kv_fail(err, "%s: the analysis has no A2SF score", job->input); goto done; }
    if (read_floats(job, "age_bias/example_head", one, n, err) || read_floats(job, "age_bias/mean_over_heads", mean, n, err))
        goto done;
    FILE *out = figure_data(job, "age_bias.dat", rel, sizeof rel, err);
    if (!out) goto done;
    const int cols[4] = {0, 1, 2, k_a2sf}; /* h2o, accumulations, mean attention, a2sf */
    fprintf(out, "# position h2o accumulations mean_attention %s (one head), then the same averaged over heads\n",
            a.scores[k_a2sf]);
    for (int i = 0; i < a.T; i++) {
        fprintf(out, "%d", i);
        for (int c = 0; c < 4; c++) fprintf(out, " %.9g", one[(size_t)cols[c] * a.T + i]);
        for (int c = 0; c < 4; c++) fprintf(out, " %.9g", mean[(size_t)cols[c] * a.T + i]);
        fputc('\n', out);
    }
    if (figure_data_close(out, "age_bias.dat", err)) goto done;
    figure_var(job, "data", "%s", rel);
    figure_var(job, "alpha", "%s", a.scores[k_a2sf] + 5);
    figure_var(job, "title", "%s%sage bias of accumulated attention at the end of sequence 0 (T = %d)", a.model,
               a.model[0] ? ": " : "", a.T);
    figure_var(job, "title2", "mean over all %d layers x %d heads", a.L, a.H);
    figure_var(job, "title1", "layer %d, head %d", a.layer, a.head);
    figure_num(job, "width", 1400);
    rc = 0;
done:
    free(one); free(mean);
    h5_free_strings(a.scores, a.K);
    return rc;
}

int figure_key_norm(FigureJob *job, KvError *err)
{
    AnalysisInfo a;
    if (analysis_info(job, &a, err)) return -1;
    float *k_norm = malloc((size_t)a.T * sizeof(float)), *attention = malloc((size_t)a.T * sizeof(float));
    double pooled[3];
    int rc = -1, rank;
    hsize_t dims[8];
    char rel[256];
    if (!k_norm || !attention) { kv_fail(err, "out of memory"); goto done; }
    if (read_floats(job, "key_norm/example_k_norm", k_norm, (size_t)a.T, err) ||
        read_floats(job, "key_norm/example_mean_attention", attention, (size_t)a.T, err))
        goto done;
    if (h5_dataset_shape(job->file, "key_norm/spearman", &rank, dims) || rank != 3 ||
        h5_read_all(job->file, "key_norm/spearman_pooled", H5T_NATIVE_DOUBLE, pooled, 3)) {
        kv_fail(err, "%s: damaged analysis file (key_norm)", job->input);
        goto done;
    }
    /* sequence 0's value for the example head: the first L*H entries */
    size_t all = (size_t)dims[0] * dims[1] * dims[2];
    double *every = malloc(all * sizeof(double));
    if (!every || h5_read_all(job->file, "key_norm/spearman", H5T_NATIVE_DOUBLE, every, all)) {
        free(every);
        kv_fail(err, "%s: damaged analysis file (key_norm/spearman)", job->input);
        goto done;
    }
    double head_rho = every[(size_t)a.layer * a.H + a.head];
    free(every);
    FILE *out = figure_data(job, "key_norm.dat", rel, sizeof rel, err);
    if (!out) goto done;
    fprintf(out, "# key_l2_norm mean_attention_per_row position (layer %d head %d, sequence 0)\n", a.layer, a.head);
    for (int i = 0; i < a.T; i++) fprintf(out, "%.9g %.9g %d\n", k_norm[i], attention[i], i);
    if (figure_data_close(out, "key_norm.dat", err)) goto done;
    figure_var(job, "data", "%s", rel);
    figure_var(job, "title", "%s%skey norm vs attention, layer %d head %d, sequence 0: Spearman %.2f "
               "(all heads: %.2f)", a.model, a.model[0] ? ": " : "", a.layer, a.head, head_rho, pooled[0]);
    rc = 0;
done:
    free(k_norm); free(attention);
    h5_free_strings(a.scores, a.K);
    return rc;
}

int figure_value_norm(FigureJob *job, KvError *err)
{
    AnalysisInfo a;
    if (analysis_info(job, &a, err)) return -1;
    float *by_position = malloc((size_t)a.L * a.T * sizeof(float)), *sink = malloc((size_t)a.T * sizeof(float));
    double ratio[3];
    int rc = -1;
    char rel[256];
    if (!by_position || !sink) { kv_fail(err, "out of memory"); goto done; }
    if (read_floats(job, "value_norm/by_position", by_position, (size_t)a.L * a.T, err) ||
        read_floats(job, "value_norm/sink_share", sink, (size_t)a.T, err))
        goto done;
    if (h5_read_all(job->file, "value_norm/sink_value_ratio_pooled", H5T_NATIVE_DOUBLE, ratio, 3)) {
        kv_fail(err, "%s: damaged analysis file (value_norm)", job->input);
        goto done;
    }
    int any = 0;
    for (size_t i = 0; i < (size_t)a.L * a.T; i++) any |= by_position[i] != 0;
    if (!any) { job->skip = 1; rc = 0; goto done; } /* the trace had no values */
    FILE *out = figure_data(job, "value_norm.dat", rel, sizeof rel, err);
    if (!out) goto done;
    fprintf(out, "# position value_l1_norm sink (a sink in at least half the heads), one block per layer\n");
    for (int l = 0; l < a.L; l++) {
        for (int i = 0; i < a.T; i++)
            fprintf(out, "%d %.9g %d\n", i, by_position[(size_t)l * a.T + i], sink[i] >= 0.5f);
        fprintf(out, "\n\n");
    }
    if (figure_data_close(out, "value_norm.dat", err)) goto done;
    figure_var(job, "data", "%s", rel);
    figure_num(job, "layers", a.L);
    figure_var(job, "title", "%s%svalue L1 norm by position, sequence 0; sink tokens' norm / others' = %.2f "
               "(all heads and sequences)", a.model, a.model[0] ? ": " : "", ratio[0]);
    rc = 0;
done:
    free(by_position); free(sink);
    h5_free_strings(a.scores, a.K);
    return rc;
}
