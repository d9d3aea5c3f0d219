/* Structure-aware fuzzing of the readers of kvtrace's own output files: the
 * input decides a results, analysis or eval file (shapes, attributes, values,
 * missing datasets), written as valid HDF5, then `plot --data-only` prepares
 * every figure from it (the data files, no gnuplot). */
#include <ftw.h>
#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../plots/plot.h"
#include "../trace/h5util.h"
#include "fuzz.h"

static int dim(FuzzReader *r, int plausible)
{
    return fuzz_below(r, 16) == 0 ? (int)fuzz_below(r, 4) : plausible;
}

static void doubles(FuzzReader *r, hid_t g, const char *name, int rank, const hsize_t *dims)
{
    if (fuzz_below(r, 24) == 0) return; /* missing */
    size_t n = 1;
    for (int i = 0; i < rank; i++) n *= dims[i];
    double *v = calloc(n ? n : 1, sizeof *v);
    for (size_t i = 0; v && i < n; i++) v[i] = fuzz_below(r, 8) ? (double)fuzz_below(r, 100) / 50.0 : fuzz_float(r);
    if (v) h5_write_array(g, name, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, rank, dims, v);
    free(v);
}

static void ints(FuzzReader *r, hid_t g, const char *name, hid_t type, int rank, const hsize_t *dims, int big)
{
    if (fuzz_below(r, 24) == 0) return;
    size_t n = 1;
    for (int i = 0; i < rank; i++) n *= dims[i];
    long long *v = calloc(n ? n : 1, sizeof *v);
    for (size_t i = 0; v && i < n; i++)
        v[i] = big && fuzz_below(r, 4) == 0 ? (long long)fuzz_u32(r) << 31 : (long long)fuzz_below(r, 64) - 2;
    if (v) h5_write_array(g, name, type, H5T_NATIVE_LLONG, rank, dims, v);
    free(v);
}

static void strings(FuzzReader *r, hid_t g, const char *name, int n, const char *const *choices, int n_choices)
{
    if (fuzz_below(r, 24) == 0) return;
    const char **v = calloc((size_t)n + 1, sizeof *v);
    for (int i = 0; v && i < n; i++) v[i] = choices[fuzz_below(r, (uint32_t)n_choices)];
    if (v) h5_write_strings(g, name, v, n);
    free(v);
}

static void results_file(FuzzReader *r, hid_t f)
{
    static const char *policies[] = {"h2o", "a2sf", "window", "ideal", "optimal", "full", "knorm", ""};
    static const char *budgets[] = {"10%", "20%", "64", "0.4", "", "x"};
    int C = dim(r, 1 + (int)fuzz_below(r, 6)), S = dim(r, 1 + (int)fuzz_below(r, 3));
    int L = dim(r, 1 + (int)fuzz_below(r, 3)), H = dim(r, 1 + (int)fuzz_below(r, 4));
    int T = dim(r, 2 + (int)fuzz_below(r, 30));
    h5_attr_write_str(f, "format", "kvtrace-results/1");
    h5_attr_write_str(f, "mode", fuzz_bool(r) ? "streaming" : "prefill");
    hid_t g = H5Gcreate2(f, "configs", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    hsize_t c1[1] = {(hsize_t)C}, cs[2] = {(hsize_t)C, (hsize_t)S}, s1[1] = {(hsize_t)S};
    strings(r, g, "policy", C, policies, 8);
    strings(r, g, "params", C, budgets, 2);
    strings(r, g, "budget", C, budgets, 6);
    doubles(r, g, "budget_fraction", 1, c1);
    ints(r, g, "budget_tokens", H5T_STD_I32LE, 2, cs, 0);
    H5Gclose(g);
    g = H5Gcreate2(f, "sequences", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    ints(r, g, "n_tokens", H5T_STD_I32LE, 1, s1, 0);
    ints(r, g, "n_prompt", H5T_STD_I32LE, 1, s1, 0);
    H5Gclose(g);
    g = H5Gcreate2(f, "metrics", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    hsize_t m[4] = {(hsize_t)C, (hsize_t)S, (hsize_t)L, (hsize_t)H};
    for (const char *const *name = (const char *[]){"retained_mass", "attention_kl", "output_error", "ideal_overlap", 0};
         *name; name++)
        doubles(r, g, *name, 4, m);
    H5Gclose(g);
    g = H5Gcreate2(f, "summary", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    for (const char *const *name = (const char *[]){"retained_mass_mean", "retained_mass_std", "output_error_mean",
                                                    "output_error_std", 0};
         *name; name++)
        doubles(r, g, *name, 1, c1);
    H5Gclose(g);
    hsize_t e[2] = {(hsize_t)C, (hsize_t)T}, curve[3] = {(hsize_t)C, (hsize_t)S, (hsize_t)T};
    ints(r, f, "eviction_age", H5T_STD_I64LE, 2, e, 1);
    doubles(r, f, "curve_retained_mass", 3, curve);
    if (fuzz_bool(r)) {
        hsize_t ret[3] = {(hsize_t)C, (hsize_t)T, (hsize_t)T};
        ints(r, f, "retention", H5T_STD_U8LE, 3, ret, 0);
    }
}

static void analysis_file(FuzzReader *r, hid_t f)
{
    static const char *scores[] = {"h2o", "accumulations", "mean_attention", "a2sf_0.2", "ideal", "x"};
    int S = dim(r, 1 + (int)fuzz_below(r, 2)), L = dim(r, 1 + (int)fuzz_below(r, 3));
    int H = dim(r, 1 + (int)fuzz_below(r, 4)), K = dim(r, 4 + (int)fuzz_below(r, 3)), M = dim(r, 3);
    int T = dim(r, 2 + (int)fuzz_below(r, 30));
    h5_attr_write_str(f, "format", "kvtrace-analysis/1");
    h5_attr_write_int(f, "n_sequences", S);
    h5_attr_write_int(f, "n_layers", fuzz_below(r, 16) ? L : (int32_t)fuzz_u32(r));
    h5_attr_write_int(f, "n_heads", fuzz_below(r, 16) ? H : (int32_t)fuzz_u32(r));
    h5_attr_write_int(f, "example_layer", fuzz_below(r, 16) ? (int)fuzz_below(r, (uint32_t)L + 1) : (int32_t)fuzz_u32(r));
    h5_attr_write_int(f, "example_head", fuzz_below(r, 16) ? (int)fuzz_below(r, (uint32_t)H + 1) : (int32_t)fuzz_u32(r));
    h5_attr_write_str(f, "alphas", "0.2");
    h5_attr_write_double(f, "budget_fraction", 0.2);
    hid_t g = H5Gcreate2(f, "age_bias", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    strings(r, g, "scores", K, scores, 6);
    hsize_t k3[2] = {(hsize_t)K, 3}, kt[2] = {(hsize_t)K, (hsize_t)T}, lk3[3] = {(hsize_t)L, (hsize_t)K, 3};
    hsize_t slhk[4] = {(hsize_t)S, (hsize_t)L, (hsize_t)H, (hsize_t)K};
    doubles(r, g, "spearman_pooled", 2, k3);
    doubles(r, g, "spearman_layer", 3, lk3);
    doubles(r, g, "spearman", 4, slhk);
    doubles(r, g, "example_head", 2, kt);
    doubles(r, g, "mean_over_heads", 2, kt);
    H5Gclose(g);
    g = H5Gcreate2(f, "top_b", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    strings(r, g, "methods", M, scores, 6);
    hsize_t share[3] = {(hsize_t)M, 12, 3}, m3[2] = {(hsize_t)M, 3};
    doubles(r, g, "age_share_pooled", 3, share);
    doubles(r, g, "relative_age_pooled", 2, m3);
    H5Gclose(g);
    g = H5Gcreate2(f, "key_norm", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    hsize_t t1[1] = {(hsize_t)T}, three[1] = {3}, slh[3] = {(hsize_t)S, (hsize_t)L, (hsize_t)H};
    doubles(r, g, "example_k_norm", 1, t1);
    doubles(r, g, "example_mean_attention", 1, t1);
    doubles(r, g, "spearman_pooled", 1, three);
    doubles(r, g, "spearman", 3, slh);
    H5Gclose(g);
    g = H5Gcreate2(f, "value_norm", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    hsize_t lt[2] = {(hsize_t)L, (hsize_t)T};
    doubles(r, g, "by_position", 2, lt);
    doubles(r, g, "sink_share", 1, t1);
    doubles(r, g, "example_v_l1", 1, t1);
    doubles(r, g, "sink_value_ratio", 3, slh);
    doubles(r, g, "sink_value_ratio_pooled", 1, three);
    H5Gclose(g);
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st, (void)flag, (void)ftw;
    return remove(path);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_hdf5_once();
    FuzzReader r = {data, size, 0};
    char path[4096], dir[] = "/tmp/kvtrace-fuzz-plot-XXXXXX";
    int fd = fuzz_empty_file(path, sizeof path);
    if (fd < 0 || !mkdtemp(dir)) {
        if (fd >= 0) fuzz_release_file(fd, path);
        return 0;
    }
    hid_t f = fuzz_bool(&r) ? h5_create_file(path) : H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    if (f >= 0) {
        if (fuzz_bool(&r)) results_file(&r, f);
        else analysis_file(&r, f);
        H5Fclose(f);
        PlotOptions opt;
        plot_defaults(&opt);
        opt.out_dir = dir;
        opt.data_only = 1;
        opt.force = 1;
        PlotOutput done;
        KvError err;
        const char *inputs[1] = {path};
        plot_run(inputs, 1, &opt, &done, &err);
    }
    fuzz_release_file(fd, path);
    nftw(dir, remove_entry, 8, FTW_DEPTH | FTW_PHYS);
    return 0;
}
