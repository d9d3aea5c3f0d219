/* Structure-aware fuzzing of everything that reads a trace: the input
 * decides a trace's shape, attributes, dtypes and values (any float bit
 * pattern), which is written as a valid HDF5 file and then read back, replayed
 * (simulate_run under several policies) and analysed (analyze_run).  Every
 * outcome must be a result or a clean error; a crash, a sanitizer report or
 * a hang is a finding. */
#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../analysis/analysis.h"
#include "../sim/simulate.h"
#include "../trace/h5util.h"
#include "../trace/trace_file.h"
#include "fuzz.h"

/* A plausible value most of the time, anything now and then. */
static long long shape_value(FuzzReader *r, long long plausible)
{
    return fuzz_below(r, 8) == 0 ? (long long)(int32_t)fuzz_u32(r) : plausible;
}

static void write_floats(FuzzReader *r, hid_t g, const char *name, int rank, const hsize_t *dims, int half)
{
    size_t n = 1;
    for (int i = 0; i < rank; i++) n *= dims[i];
    float *v = calloc(n ? n : 1, sizeof *v);
    if (!v) return;
    int pattern = (int)fuzz_below(r, 4); /* raw bits, small numbers, one constant, zeros */
    float constant = fuzz_float(r);
    for (size_t i = 0; i < n; i++)
        v[i] = pattern == 0 ? fuzz_float(r) : pattern == 1 ? (float)((int)fuzz_below(r, 200) - 100) / 16.0f
             : pattern == 2 ? constant : 0.0f;
    hid_t f16 = half ? h5_float16_type() : -1;
    h5_write_array(g, name, half ? f16 : H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, rank, dims, v);
    if (f16 >= 0) H5Tclose(f16);
    free(v);
}

static void write_sequence(FuzzReader *r, hid_t seqs, int index, int L, int H, int KV, int D, int vocab)
{
    char name[16];
    snprintf(name, sizeof name, "%04d", index);
    hid_t g = H5Gcreate2(seqs, name, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    if (g < 0) return;
    int T = (int)fuzz_below(r, 48);
    h5_attr_write_int(g, "n_prompt", shape_value(r, fuzz_below(r, (uint32_t)T + 2)));
    h5_attr_write_int(g, "complete", fuzz_below(r, 3));
    if (fuzz_bool(r)) h5_attr_write_int(g, "n_rows", shape_value(r, T - (int)fuzz_below(r, 3)));
    h5_attr_write_str(g, "prompt", "fuzz");
    hsize_t t1[1] = {(hsize_t)T};
    int *tokens = calloc((size_t)T + 1, sizeof *tokens);
    const char **pieces = calloc((size_t)T + 1, sizeof *pieces);
    for (int t = 0; tokens && pieces && t < T; t++) {
        tokens[t] = (int)shape_value(r, fuzz_below(r, (uint32_t)vocab));
        pieces[t] = fuzz_bool(r) ? "a" : "";
    }
    if (tokens && fuzz_below(r, 16)) h5_write_array(g, "tokens", H5T_STD_I32LE, H5T_NATIVE_INT, 1, t1, tokens);
    if (pieces && fuzz_below(r, 16)) h5_write_strings(g, "pieces", pieces, T);
    write_floats(r, g, "nll", 1, t1, 0);
    free(tokens);
    free(pieces);
    int half = fuzz_bool(r), values = fuzz_below(r, 4) != 0, attention = fuzz_below(r, 3) == 0;
    for (int l = 0; l < L; l++) {
        char lname[32];
        snprintf(lname, sizeof lname, "layers/%03d", l);
        hid_t lcpl = H5Pcreate(H5P_LINK_CREATE);
        H5Pset_create_intermediate_group(lcpl, 1);
        hid_t lg = H5Gcreate2(g, lname, lcpl, H5P_DEFAULT, H5P_DEFAULT);
        H5Pclose(lcpl);
        if (lg < 0) continue;
        hsize_t q[3] = {(hsize_t)T, (hsize_t)H, (hsize_t)D}, k[3] = {(hsize_t)T, (hsize_t)KV, (hsize_t)D};
        hsize_t norms[2] = {(hsize_t)T, (hsize_t)KV}, att[3] = {(hsize_t)H, (hsize_t)T, (hsize_t)T};
        if (fuzz_below(r, 32) == 0) q[1]++; /* a wrong shape now and then */
        write_floats(r, lg, "q", 3, q, half);
        write_floats(r, lg, "k", 3, k, half);
        write_floats(r, lg, "k_norm", 2, norms, 0);
        if (values) {
            write_floats(r, lg, "v", 3, k, half);
            write_floats(r, lg, "v_norm_l1", 2, norms, 0);
            write_floats(r, lg, "v_norm_l2", 2, norms, 0);
        }
        if (attention) write_floats(r, lg, "attention", 3, att, 0);
        H5Gclose(lg);
    }
    H5Gclose(g);
}

static int build_trace(FuzzReader *r, const char *path)
{
    hid_t f = fuzz_bool(r) ? h5_create_file(path) : H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    if (f < 0) return -1;
    int KV = 1 + (int)fuzz_below(r, 2), H = KV * (1 + (int)fuzz_below(r, 3)), L = 1 + (int)fuzz_below(r, 2);
    int D = 1 + (int)fuzz_below(r, 8), vocab = 1 + (int)fuzz_below(r, 64), S = (int)fuzz_below(r, 4);
    h5_attr_write_str(f, "format", fuzz_below(r, 16) ? TRACE_FORMAT : "kvtrace-trace/9");
    h5_attr_write_int(f, "n_layers", shape_value(r, L));
    h5_attr_write_int(f, "n_heads", shape_value(r, H));
    h5_attr_write_int(f, "n_kv_heads", shape_value(r, KV));
    h5_attr_write_int(f, "head_dim", shape_value(r, D));
    h5_attr_write_int(f, "model_dim", H * D);
    h5_attr_write_int(f, "vocab_size", shape_value(r, vocab));
    h5_attr_write_double(f, "rope_theta", fuzz_float(r));
    h5_attr_write_int(f, "complete", fuzz_below(r, 3));
    h5_attr_write_str(f, "model_sha256", "fuzz");
    h5_attr_write_str(f, "model_file", "fuzz.gguf");
    hid_t seqs = fuzz_below(r, 32) ? H5Gcreate2(f, "sequences", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT) : -1;
    for (int s = 0; s < S && seqs >= 0; s++) write_sequence(r, seqs, s, L, H, KV, D, vocab);
    if (seqs >= 0) H5Gclose(seqs);
    return H5Fclose(f) < 0 ? -1 : 0;
}

static void read_everything(const char *path)
{
    TraceReader r;
    KvError err;
    if (trace_open(&r, path, &err)) return;
    for (int s = 0; s < r.n_sequences; s++) {
        TraceSeqInfo info;
        if (trace_sequence_info(&r, s, &info, &err)) continue;
        int T = info.n_tokens;
        size_t q = (size_t)T * r.meta.n_heads * r.meta.head_dim;
        int *tokens = malloc(((size_t)T + 1) * sizeof *tokens);
        float *buf = malloc((q + 1) * sizeof *buf);
        if (tokens) trace_read_tokens(&r, s, tokens, T, &err);
        if (buf) trace_read_layer(&r, s, 0, "q", buf, q, &err);
        char **pieces = trace_read_pieces(&r, s, T, &err);
        trace_free_pieces(pieces, T);
        free(tokens);
        free(buf);
    }
    trace_close(&r);
}

static void replay(const char *path)
{
    static const char *policies[] = {"h2o", "a2sf", "snapkv:window=2,kernel=3", "tova", "vatp", "knorm",
                                     "streaming:sink=1", "ideal", "optimal"};
    enum { N = sizeof policies / sizeof policies[0] };
    PolicySpec specs[N];
    BudgetSpec budgets[2];
    KvError err;
    int n = 0;
    for (int i = 0; i < N; i++)
        if (policy_parse(policies[i], &specs[n], &err) == 0) n++;
    if (parse_budget("3", &budgets[0], &err) || parse_budget("50%", &budgets[1], &err)) return;
    const char *traces[1] = {path};
    SimOptions opt = {.traces = traces, .n_traces = 1, .policies = specs, .n_policies = n, .budgets = budgets,
                      .n_budgets = 2, .error_stride = 1, .threads = 1, .allow_incomplete = 1,
                      .retention_layer = 0, .retention_unit = 0};
    SimResults res;
    if (simulate_run(&opt, &res, &err) == 0) sim_results_free(&res);
    AnalyzeOptions a;
    analyze_defaults(&a);
    a.trace = path;
    a.n_boot = 3;
    a.allow_incomplete = 1;
    Analysis an;
    if (analyze_run(&a, &an, &err) == 0) analysis_free(&an);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_hdf5_once();
    FuzzReader r = {data, size, 0};
    char path[4096];
    int fd = fuzz_empty_file(path, sizeof path);
    if (fd < 0) return 0;
    if (build_trace(&r, path) == 0) {
        read_everything(path);
        replay(path);
    }
    fuzz_release_file(fd, path);
    return 0;
}
