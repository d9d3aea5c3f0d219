/* Writing simulation results: HDF5 ("kvtrace-results/1", see FORMAT.md), a
 * tidy CSV, and the short table on the terminal.  Files go into the
 * temporary file of an OutputFile (util/output.h); the caller renames them
 * into place only when everything was written. */
#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../trace/h5util.h"
#include "../trace/trace_file.h"
#include "../util/csv.h"
#include "simulate.h"

static const char *METRICS[4] = {"retained_mass", "attention_kl", "output_error", "ideal_overlap"};

static const double *metric_of(const SimResults *r, int m)
{
    return m == 0 ? r->mass : m == 1 ? r->kl : m == 2 ? r->error : r->overlap;
}

static int write_summary(hid_t f, const SimResults *r)
{
    hid_t g = H5Gcreate2(f, "summary", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    if (g < 0) return -1;
    double *mean = malloc((size_t)r->n_configs * sizeof(double)), *std = malloc((size_t)r->n_configs * sizeof(double));
    int rc = mean && std ? 0 : -1;
    hsize_t dims[1] = {(hsize_t)r->n_configs};
    for (int m = 0; m < 4 && rc == 0; m++) {
        for (int c = 0; c < r->n_configs; c++) sim_overall(r, c, m, &mean[c], &std[c]);
        char a[64], b[64];
        snprintf(a, sizeof a, "%s_mean", METRICS[m]);
        snprintf(b, sizeof b, "%s_std", METRICS[m]);
        rc = h5_write_array(g, a, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, 1, dims, mean) ||
             h5_write_array(g, b, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, 1, dims, std);
    }
    free(mean);
    free(std);
    H5Gclose(g);
    return rc;
}

static int write_body(hid_t f, const SimResults *r, const SimOptions *opt)
{
    int C = r->n_configs, S = r->n_sequences;
    char traces[4096] = "", created[40];
    for (int i = 0; i < opt->n_traces; i++)
        snprintf(traces + strlen(traces), sizeof traces - strlen(traces), "%s%s", i ? "\n" : "", opt->traces[i]);
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(created, sizeof created, "%Y-%m-%dT%H:%M:%SZ", &tm);
    if (h5_attr_write_str(f, "format", "kvtrace-results/1") || h5_attr_write_str(f, "traces", traces) ||
        h5_attr_write_str(f, "model", r->model) || h5_attr_write_str(f, "model_sha256", r->model_sha256) ||
        h5_attr_write_str(f, "trace_sha256", r->trace_sha256) ||
        h5_attr_write_str(f, "mode", opt->prefill ? "prefill" : "streaming") ||
        h5_attr_write_str(f, "granularity", opt->layer_granularity ? "layer" : "kv_head") ||
        h5_attr_write_int(f, "error_stride", r->error_stride) || h5_attr_write_str(f, "created", created) ||
        h5_attr_write_str(f, "command", opt->command_line ? opt->command_line : "") ||
        h5_attr_write_str(f, "kvtrace_version", KVTRACE_VERSION) || h5_attr_write_double(f, "seconds", r->seconds) ||
        h5_attr_write_double(f, "cpu_seconds_attention", r->cpu_attention) ||
        h5_attr_write_double(f, "cpu_seconds_replay", r->cpu_replay) || h5_attr_write_int(f, "entries", r->entries))
        return -1;
    hid_t g = H5Gcreate2(f, "configs", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    hsize_t dc[1] = {(hsize_t)C}, dcs[2] = {(hsize_t)C, (hsize_t)S};
    int rc = g < 0 || h5_write_strings(g, "policy", r->config_policy, C) || h5_write_strings(g, "params", r->config_params, C) ||
             h5_write_strings(g, "allocation", r->config_allocation, C) || h5_write_strings(g, "budget", r->config_budget, C) ||
             h5_write_array(g, "budget_fraction", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, 1, dc, r->config_fraction) ||
             h5_write_array(g, "budget_tokens", H5T_STD_I32LE, H5T_NATIVE_INT, 2, dcs, r->budget_tokens);
    if (g >= 0) H5Gclose(g);
    if (rc) return -1;
    g = H5Gcreate2(f, "sequences", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    hsize_t ds[1] = {(hsize_t)S};
    rc = g < 0 || h5_write_strings(g, "source", (const char *const *)r->seq_source, S) ||
         h5_write_array(g, "n_tokens", H5T_STD_I32LE, H5T_NATIVE_INT, 1, ds, r->seq_length) ||
         h5_write_array(g, "n_prompt", H5T_STD_I32LE, H5T_NATIVE_INT, 1, ds, r->seq_prompt);
    if (g >= 0) H5Gclose(g);
    if (rc) return -1;
    g = H5Gcreate2(f, "metrics", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    hsize_t dm[4] = {(hsize_t)C, (hsize_t)S, (hsize_t)r->n_layers, (hsize_t)r->n_heads};
    for (int m = 0; m < 4 && rc == 0 && g >= 0; m++)
        rc = h5_write_array(g, METRICS[m], H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, 4, dm, metric_of(r, m));
    if (g >= 0) H5Gclose(g);
    hsize_t de[2] = {(hsize_t)C, (hsize_t)r->max_T}, dcv[3] = {(hsize_t)C, (hsize_t)S, (hsize_t)r->max_T};
    if (rc || g < 0 || write_summary(f, r) ||
        h5_write_array(f, "eviction_age", H5T_STD_I64LE, H5T_NATIVE_LONG, 2, de, r->evict_age) ||
        h5_write_array(f, "curve_retained_mass", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 3, dcv, r->curve))
        return -1;
    if (r->retention) {
        hsize_t dr[3] = {(hsize_t)C, (hsize_t)r->retention_T, (hsize_t)r->retention_T};
        hid_t space = H5Screate_simple(3, dr, NULL), dcpl = H5Pcreate(H5P_DATASET_CREATE);
        /* a chunk per block of about 4 MiB of steps: readers take any rows without inflating the whole
         * map, and no chunk reaches HDF5's 4 GiB limit (a 65536-token map is 4 GiB) */
        size_t rows = ((size_t)4 << 20) / (size_t)r->retention_T;
        rows = rows < 1 ? 1 : rows > (size_t)r->retention_T ? (size_t)r->retention_T : rows;
        hsize_t chunk[3] = {1, (hsize_t)rows, (hsize_t)r->retention_T};
        hid_t d = dcpl < 0 || h5_set_chunked(dcpl, 3, chunk, 4, 1) ? -1 : H5Dcreate2(f, "retention", H5T_STD_U8LE, space, H5P_DEFAULT, dcpl, H5P_DEFAULT);
        rc = d < 0 || H5Dwrite(d, H5T_NATIVE_UINT8, H5S_ALL, H5S_ALL, H5P_DEFAULT, r->retention) < 0 ||
             h5_attr_write_int(d, "layer", opt->retention_layer) || h5_attr_write_int(d, "unit", opt->retention_unit) ||
             h5_attr_write_str(d, "sequence", r->seq_source[0]);
        if (d >= 0) H5Dclose(d);
        H5Pclose(dcpl);
        H5Sclose(space);
    }
    return rc ? -1 : 0;
}

static int write_results(hid_t f, void *ctx)
{
    const SimWrite *w = ctx;
    return write_body(f, w->res, w->opt);
}

int sim_write_hdf5(const SimResults *r, const SimOptions *opt, const OutputFile *out, KvError *err)
{
    SimWrite w = {r, opt};
    return h5_write_file(out, "results", write_results, &w, err);
}

/* Mean and standard deviation over sequences of one cell (config, layer, head). */
static void cell_stats(const SimResults *r, const double *a, int c, int l, int h, double *mean, double *std, int *n)
{
    double sum = 0, sum2 = 0;
    *n = 0;
    for (int s = 0; s < r->n_sequences; s++) {
        double v = a[(((size_t)c * r->n_sequences + s) * r->n_layers + l) * r->n_heads + h];
        if (isnan(v)) continue;
        sum += v;
        sum2 += v * v;
        (*n)++;
    }
    mean_and_std(sum, sum2, *n, mean, std);
}

double sim_mean_budget(const SimResults *r, int c)
{
    double sum = 0;
    for (int s = 0; s < r->n_sequences; s++) sum += r->budget_tokens[(size_t)c * r->n_sequences + s];
    return sum / r->n_sequences;
}

/* The columns that say which run a row comes from, so CSVs of several runs concatenate. */
static void csv_run_columns(FILE *fp, const SimResults *r, const SimOptions *opt, const char *traces)
{
    csv_text(fp, traces, 0);
    csv_text(fp, r->model, 0);
    csv_text(fp, opt->prefill ? "prefill" : "streaming", 0);
    csv_text(fp, opt->layer_granularity ? "layer" : "kv_head", 0);
}

static void csv_row(FILE *fp, const SimResults *r, const SimOptions *opt, const char *traces, int c, int l, int h)
{
    double m[4], sd[4];
    int n = r->n_sequences;
    if (l < 0) {
        for (int k = 0; k < 4; k++) sim_overall(r, c, k, &m[k], &sd[k]);
    } else {
        for (int k = 0; k < 4; k++) cell_stats(r, metric_of(r, k), c, l, h, &m[k], &sd[k], &n);
        if (!n) return; /* a layer or head that was not simulated */
    }
    csv_run_columns(fp, r, opt, traces);
    csv_text(fp, r->config_policy[c], 0);
    csv_text(fp, r->config_params[c], 0);
    csv_text(fp, r->config_allocation[c], 0);
    csv_text(fp, r->config_budget[c], 0);
    csv_number(fp, sim_mean_budget(r, c), 0);
    if (l < 0) { /* the overall row: layer and head left empty */
        csv_empty(fp, 0);
        csv_empty(fp, 0);
    } else {
        csv_int(fp, l, 0);
        csv_int(fp, h, 0);
    }
    csv_number(fp, m[0], 0);
    csv_number(fp, sd[0], 0);
    csv_number(fp, m[1], 0);
    csv_number(fp, m[2], 0);
    csv_number(fp, m[3], 0);
    csv_int(fp, n, 1);
}

int sim_write_csv(const SimResults *r, const SimOptions *opt, const OutputFile *out, KvError *err)
{
    FILE *fp = output_open_text(out, "CSV", err);
    if (!fp) return -1;
    size_t len = 1;
    for (int i = 0; i < opt->n_traces; i++) len += strlen(opt->traces[i]) + 1;
    char *traces = calloc(len, 1);
    for (int i = 0; traces && i < opt->n_traces; i++) {
        if (i) strcat(traces, ";");
        strcat(traces, opt->traces[i]);
    }
    fprintf(fp, "trace,model,mode,granularity,policy,params,allocation,budget,budget_tokens,layer,head,retained_mass,"
                "retained_mass_std,attention_kl,output_error,ideal_overlap,n_sequences\n");
    for (int c = 0; c < r->n_configs; c++) {
        for (int l = 0; l < r->n_layers; l++)
            for (int h = 0; h < r->n_heads; h++) csv_row(fp, r, opt, traces ? traces : "", c, l, h);
        csv_row(fp, r, opt, traces ? traces : "", c, -1, -1);
    }
    free(traces);
    return output_close_text(fp, out, "CSV", err);
}

/* "0.7783 ± 0.0123", or the mean alone when one sequence gives no spread. */
static void mean_pm(char *out, size_t cap, double mean, double std)
{
    if (isnan(std)) snprintf(out, cap, "%.4f", mean);
    else snprintf(out, cap, "%.4f ± %.4f", mean, std);
}

/* Width of the widest of n strings, at least `least`. */
static int column_width(const char *const *text, int n, int least)
{
    for (int i = 0; i < n; i++)
        if ((int)strlen(text[i]) > least) least = (int)strlen(text[i]);
    return least;
}

void sim_print_table(const SimResults *r, FILE *out)
{
    int C = r->n_configs, named = 10, width = column_width(r->config_params, C, 6), allocated = 0;
    named = column_width(r->config_policy, C, named); /* columns fit the longest, never cut */
    for (int c = 0; c < C; c++) allocated |= r->config_alloc[c].kind != ALLOC_UNIFORM;
    int alloc_width = allocated ? column_width(r->config_allocation, C, 10) + 1 : 0; /* shown when not all uniform */
    fprintf(out, "%-*s %-*s %-*s%7s %7s  %-17s %9s %9s %8s\n", named, "policy", width, "params", alloc_width,
            allocated ? "allocation" : "", "budget", "tokens", "retained mass", "attn KL", "out err", "overlap");
    for (int c = 0; c < C; c++) {
        double m[4], sd[4];
        for (int k = 0; k < 4; k++) sim_overall(r, c, k, &m[k], &sd[k]);
        char mass[32];
        mean_pm(mass, sizeof mass, m[0], sd[0]);
        fprintf(out, "%-*s %-*s %-*s%7s %7.1f  %-17s %9.4f %9.4f %8.3f\n", named, r->config_policy[c], width,
                r->config_params[c], alloc_width, allocated ? r->config_allocation[c] : "", r->config_budget[c],
                sim_mean_budget(r, c), mass, m[1], m[2], m[3]);
    }
    if (r->n_sequences == 1) fprintf(out, "(one sequence: no spread over sequences)\n");
}

int sim_output_hdf5(const OutputFile *out, void *ctx, KvError *err)
{
    const SimWrite *w = ctx;
    return sim_write_hdf5(w->res, w->opt, out, err);
}

int sim_output_csv(const OutputFile *out, void *ctx, KvError *err)
{
    const SimWrite *w = ctx;
    return sim_write_csv(w->res, w->opt, out, err);
}
