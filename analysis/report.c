/* Writing an analysis: the HDF5 file ("kvtrace-analysis/1", FORMAT.md) and
 * the short report on the terminal. */
#include <hdf5.h>
#include <math.h>
#include <string.h>
#include <time.h>

#include "../trace/h5util.h"
#include "../util/csv.h"
#include "analysis.h"

static int put_doubles(hid_t g, const char *name, int rank, const hsize_t *dims, const double *v)
{
    return h5_write_array(g, name, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, rank, dims, v);
}

static int put_floats(hid_t g, const char *name, int rank, const hsize_t *dims, const float *v)
{
    return h5_write_array(g, name, H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, rank, dims, v);
}

static int put_names(hid_t g, const char *name, const char (*names)[24], int n)
{
    const char *list[ANALYSIS_MAX_METHODS + ANALYSIS_MAX_SCORES];
    for (int i = 0; i < n; i++) list[i] = names[i];
    return h5_write_strings(g, name, list, n);
}

/* The layers (heads = 0) or query heads analysed: "all", or "0,5,31". */
static void selection_text(const Analysis *a, int heads, char *out, size_t size)
{
    int n = heads ? a->H : a->L, count = 0;
    size_t used = 0;
    out[0] = 0;
    for (int i = 0; i < n; i++) {
        int on = 0;
        for (int j = 0; j < (heads ? a->L : a->H); j++)
            on |= a->selected[heads ? (size_t)j * a->H + i : (size_t)i * a->H + j];
        if (!on) continue;
        count++;
        if (used < size) used += (size_t)snprintf(out + used, size - used, "%s%d", used ? "," : "", i);
    }
    if (count == n) snprintf(out, size, "all");
}

static int write_root(hid_t f, const Analysis *a)
{
    char layers[4096], heads[4096];
    selection_text(a, 0, layers, sizeof layers);
    selection_text(a, 1, heads, sizeof heads);
    char alphas[128] = "", created[40];
    for (int j = 0; j < a->opt.n_alpha; j++)
        snprintf(alphas + strlen(alphas), sizeof alphas - strlen(alphas), "%s%g", j ? "," : "", a->opt.alphas[j]);
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(created, sizeof created, "%Y-%m-%dT%H:%M:%SZ", &tm);
    char model[128];
    trace_model_label(&a->meta, model, sizeof model);
    hsize_t ds[1] = {(hsize_t)a->S};
    hid_t g = H5Gcreate2(f, "sequences", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    int rc = g < 0 || h5_write_array(g, "n_tokens", H5T_STD_I32LE, H5T_NATIVE_INT, 1, ds, a->seq_tokens) ||
             h5_write_array(g, "budget", H5T_STD_I32LE, H5T_NATIVE_INT, 1, ds, a->seq_budget);
    if (g >= 0) H5Gclose(g);
    return rc || h5_attr_write_str(f, "format", ANALYSIS_FORMAT) || h5_attr_write_str(f, "trace", a->opt.trace) ||
           h5_attr_write_str(f, "model_name", a->meta.model_name) || h5_attr_write_str(f, "model", model) ||
           h5_attr_write_str(f, "model_sha256", a->meta.model_digest) ||
           h5_attr_write_str(f, "trace_sha256", a->trace_sha256) || h5_attr_write_int(f, "n_sequences", a->S) ||
           h5_attr_write_int(f, "n_layers", a->L) || h5_attr_write_int(f, "n_heads", a->H) ||
           h5_attr_write_int(f, "n_kv_heads", a->KV) || h5_attr_write_str(f, "layers", layers) ||
           h5_attr_write_str(f, "heads", heads) || h5_attr_write_str(f, "alphas", alphas) ||
           h5_attr_write_double(f, "budget_fraction", a->opt.budget_fraction) ||
           h5_attr_write_double(f, "drop_fraction", a->opt.drop_fraction) ||
           h5_attr_write_int(f, "sink_tokens", a->opt.sink_tokens) ||
           h5_attr_write_double(f, "sink_attention", a->opt.sink_attention) ||
           h5_attr_write_int(f, "bootstrap", a->n_boot) || h5_attr_write_int(f, "seed", (long long)a->opt.seed) ||
           h5_attr_write_int(f, "example_layer", a->opt.example_layer) ||
           h5_attr_write_int(f, "example_head", a->opt.example_head) ||
           h5_attr_write_str(f, "kvtrace_version", KVTRACE_VERSION) || h5_attr_write_str(f, "created", created) ||
           h5_attr_write_str(f, "command", a->opt.command_line ? a->opt.command_line : "") ||
           h5_attr_write_double(f, "seconds", a->seconds);
}

static int write_age_bias(hid_t f, const Analysis *a)
{
    hid_t g = H5Gcreate2(f, "age_bias", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    if (g < 0) return -1;
    hsize_t unit[4] = {(hsize_t)a->S, (hsize_t)a->L, (hsize_t)a->H, (hsize_t)a->K};
    hsize_t lh[4] = {(hsize_t)a->L, (hsize_t)a->H, (hsize_t)a->K, 3}, lk[3] = {(hsize_t)a->L, (hsize_t)a->K, 3};
    hsize_t pooled[2] = {(hsize_t)a->K, 3}, curve[2] = {(hsize_t)a->K, (hsize_t)a->T0};
    double flat[ANALYSIS_MAX_SCORES * 3];
    memcpy(flat, a->age_pooled, sizeof flat);
    int rc = put_names(g, "scores", a->score_name, a->K) || put_doubles(g, "spearman", 4, unit, a->age_spearman) ||
             put_doubles(g, "spearman_layer_head", 4, lh, a->age_layer_head) ||
             put_doubles(g, "spearman_layer", 3, lk, a->age_layer) || put_doubles(g, "spearman_pooled", 2, pooled, flat) ||
             put_floats(g, "example_head", 2, curve, a->example_scores) ||
             put_floats(g, "mean_over_heads", 2, curve, a->mean_scores);
    H5Gclose(g);
    if (rc) return -1;
    g = H5Gcreate2(f, "top_b", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    if (g < 0) return -1;
    hsize_t um[4] = {(hsize_t)a->S, (hsize_t)a->L, (hsize_t)a->H, (hsize_t)a->M}, pm[2] = {(hsize_t)a->M, 3};
    hsize_t bins[5] = {(hsize_t)a->S, (hsize_t)a->L, (hsize_t)a->H, (hsize_t)a->M, ANALYSIS_AGE_BINS};
    hsize_t pooled_bins[3] = {(hsize_t)a->M, ANALYSIS_AGE_BINS, 3};
    memcpy(flat, a->relative_age_pooled, (size_t)a->M * 3 * sizeof(double));
    rc = put_names(g, "methods", a->method_name, a->M) || put_doubles(g, "relative_age", 4, um, a->relative_age) ||
         put_doubles(g, "relative_age_pooled", 2, pm, flat) || put_doubles(g, "age_share", 5, bins, a->age_share) ||
         put_doubles(g, "age_share_pooled", 3, pooled_bins, &a->age_share_pooled[0][0][0]);
    H5Gclose(g);
    return rc;
}

static int write_norms(hid_t f, const Analysis *a)
{
    hsize_t unit[3] = {(hsize_t)a->S, (hsize_t)a->L, (hsize_t)a->H}, lh3[3] = {(hsize_t)a->L, (hsize_t)a->H, 3};
    hsize_t lh[2] = {(hsize_t)a->L, (hsize_t)a->H}, three[1] = {3}, t0[1] = {(hsize_t)a->T0};
    hsize_t lt[2] = {(hsize_t)a->L, (hsize_t)a->T0};
    hid_t g = H5Gcreate2(f, "key_norm", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    if (g < 0) return -1;
    int rc = put_doubles(g, "spearman", 3, unit, a->key_spearman) ||
             put_doubles(g, "spearman_layer_head", 3, lh3, a->key_layer_head) ||
             put_doubles(g, "spearman_pooled", 1, three, a->key_pooled) ||
             put_doubles(g, "loss_by_norm", 3, unit, a->loss_norm) ||
             put_doubles(g, "loss_least_attended", 3, unit, a->loss_least) ||
             put_doubles(g, "loss_random", 3, unit, a->loss_random) ||
             put_doubles(g, "alr_layer_head", 2, lh, a->alr_layer_head) ||
             h5_attr_write_double(g, "alr", a->alr_pooled) ||
             h5_attr_write_double(g, "loss_by_norm", a->loss_norm_pooled) ||
             h5_attr_write_double(g, "loss_least_attended", a->loss_least_pooled) ||
             h5_attr_write_double(g, "loss_random", a->loss_random_pooled) ||
             put_floats(g, "example_k_norm", 1, t0, a->example_k_norm) ||
             put_floats(g, "example_mean_attention", 1, t0, a->example_attention);
    H5Gclose(g);
    if (rc) return -1;
    int *sinks = a->attention_sinks;
    g = H5Gcreate2(f, "value_norm", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    if (g < 0) return -1;
    rc = put_doubles(g, "spearman", 3, unit, a->value_spearman) ||
         put_doubles(g, "spearman_pooled", 1, three, a->value_pooled) ||
         put_doubles(g, "sink_value_ratio", 3, unit, a->sink_value_ratio) ||
         put_doubles(g, "sink_value_ratio_pooled", 1, three, a->sink_ratio_pooled) ||
         h5_write_array(g, "attention_sinks", H5T_STD_I32LE, H5T_NATIVE_INT, 3, unit, sinks) ||
         put_floats(g, "by_position", 2, lt, a->value_by_position) || put_floats(g, "sink_share", 1, t0, a->sink_share) ||
         put_floats(g, "example_v_l1", 1, t0, a->example_v_l1);
    H5Gclose(g);
    return rc;
}

static int write_analysis(hid_t f, void *ctx)
{
    const Analysis *a = ctx;
    return write_root(f, a) || write_age_bias(f, a) || write_norms(f, a) ? -1 : 0;
}

int analysis_write_hdf5(const Analysis *a, const OutputFile *out, KvError *err)
{
    return h5_write_file(out, "analysis", write_analysis, (void *)a, err);
}

/* ------------------------------------------------------------ CSV */

/* Mean over sequences of a [S][L][H][stride] array's column k, NaN skipped. */
static double mean_over_sequences(const Analysis *a, const double *v, int l, int h, int stride, int k)
{
    double sum = 0;
    int n = 0;
    for (int s = 0; s < a->S; s++) {
        double x = v[(((size_t)s * a->L + l) * a->H + h) * stride + k];
        if (!isnan(x)) { sum += x; n++; }
    }
    return n ? sum / n : NAN;
}

int analysis_write_csv(const Analysis *a, const OutputFile *out, KvError *err)
{
    FILE *fp = output_open_text(out, "CSV", err);
    if (!fp) return -1;
    char model[128];
    trace_model_label(&a->meta, model, sizeof model);
    fprintf(fp, "trace,model,layer,head,n_sequences");
    for (int k = 0; k < a->K; k++) fprintf(fp, ",age_spearman_%s", a->score_name[k]);
    for (int m = 0; m < a->M; m++) fprintf(fp, ",top_b_relative_age_%s", a->method_name[m]);
    fprintf(fp, ",key_norm_spearman,loss_by_norm,loss_least_attended,loss_random,alr,value_norm_spearman,"
                "sink_value_ratio,attention_sinks\n");
    for (int l = 0; l < a->L; l++)
        for (int h = 0; h < a->H; h++) {
            if (!a->selected[(size_t)l * a->H + h]) continue;
            csv_text(fp, a->opt.trace, 0);
            csv_text(fp, model, 0);
            csv_int(fp, l, 0);
            csv_int(fp, h, 0);
            csv_int(fp, a->S, 0);
            for (int k = 0; k < a->K; k++) csv_number(fp, mean_over_sequences(a, a->age_spearman, l, h, a->K, k), 0);
            for (int m = 0; m < a->M; m++) csv_number(fp, mean_over_sequences(a, a->relative_age, l, h, a->M, m), 0);
            const double *per_head[] = {a->key_spearman, a->loss_norm, a->loss_least, a->loss_random};
            for (int i = 0; i < 4; i++) csv_number(fp, mean_over_sequences(a, per_head[i], l, h, 1, 0), 0);
            csv_number(fp, a->alr_layer_head[(size_t)l * a->H + h], 0);
            csv_number(fp, mean_over_sequences(a, a->value_spearman, l, h, 1, 0), 0);
            csv_number(fp, mean_over_sequences(a, a->sink_value_ratio, l, h, 1, 0), 0);
            long sinks = 0;
            for (int s = 0; s < a->S; s++) sinks += a->attention_sinks[((size_t)s * a->L + l) * a->H + h];
            csv_int(fp, sinks, 1);
        }
    return output_close_text(fp, out, "CSV", err);
}

/* ------------------------------------------------------------ report */

double analysis_oldest_third(const Analysis *a, int method)
{
    double sum = 0;
    for (int b = ANALYSIS_AGE_BINS * 2 / 3; b < ANALYSIS_AGE_BINS; b++) sum += a->age_share_pooled[method][b][0];
    return sum;
}

static void print_interval(FILE *out, const double v[3])
{
    if (isnan(v[1])) fprintf(out, "%+.3f", v[0]);
    else fprintf(out, "%+.3f  [%+.3f, %+.3f]", v[0], v[1], v[2]);
}

void analysis_print_report(const Analysis *a, FILE *out)
{
    const char *label[ANALYSIS_MAX_SCORES] = {"H2O score (sum of attention)", "accumulations (T - i)",
                                              "mean attention per row"};
    char a2sf[ANALYSIS_MAX_ALPHA][48];
    for (int j = 0; j < a->opt.n_alpha; j++) {
        snprintf(a2sf[j], sizeof a2sf[j], "A2SF score, alpha = %g", a->opt.alphas[j]);
        label[SCORE_A2SF + j] = a2sf[j];
    }
    char model[128];
    trace_model_label(&a->meta, model, sizeof model);
    fprintf(out, "%s: %d sequence(s), %d layers x %d heads, %.1f s\n", model, a->S, a->L, a->H, a->seconds);
    if (a->n_selected < a->L * a->H) {
        char layers[4096], heads[4096];
        selection_text(a, 0, layers, sizeof layers);
        selection_text(a, 1, heads, sizeof heads);
        fprintf(out, "Analysed: layers %s, heads %s (%d of the %d heads); the figures below pool those\n", layers, heads,
                a->n_selected, a->L * a->H);
    }
    fprintf(out, "Age bias — Spearman with token age, mean over heads and sequences [95%% CI]:\n");
    for (int k = 0; k < a->K; k++) {
        fprintf(out, "  %-30s ", label[k]);
        print_interval(out, a->age_pooled[k]);
        fputc('\n', out);
    }
    fprintf(out, "Top-%g%% set, mean relative age (0 = newest, 1 = oldest):", 100 * a->opt.budget_fraction);
    for (int m = 0; m < a->M; m++) fprintf(out, " %s %.2f%s", a->method_name[m], a->relative_age_pooled[m][0],
                                           m + 1 < a->M ? "," : "\n");
    fprintf(out, "  share of the set in the oldest third (relative age >= 2/3):");
    for (int m = 0; m < a->M; m++)
        fprintf(out, " %s %.3f%s", a->method_name[m], analysis_oldest_third(a, m), m + 1 < a->M ? "," : "\n");
    fprintf(out, "Key L2 norm vs mean attention: Spearman ");
    print_interval(out, a->key_pooled);
    fprintf(out, "\n  dropping %g%% of keys per row loses %.3f of the attention by highest norm, %.3f at random, "
                 "%.3f by least attention (ALR %.2f)\n",
            100 * a->opt.drop_fraction, a->loss_norm_pooled, a->loss_random_pooled, a->loss_least_pooled,
            a->alr_pooled);
    fprintf(out, "Value L1 norm vs mean attention: Spearman ");
    print_interval(out, a->value_pooled);
    fprintf(out, "\n  sink tokens' value L1 norm / the other tokens': ");
    print_interval(out, a->sink_ratio_pooled);
    fputc('\n', out);
}

int analysis_output_hdf5(const OutputFile *out, void *ctx, KvError *err) { return analysis_write_hdf5(ctx, out, err); }
int analysis_output_csv(const OutputFile *out, void *ctx, KvError *err) { return analysis_write_csv(ctx, out, err); }
