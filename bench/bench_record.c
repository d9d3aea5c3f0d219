/* Recording speed and prefill matrix throughput (a benchmark, not a test).
 *
 * usage: bench_record MODEL.gguf WORKDIR [LAYERS]
 *  1. stories260K: tokens/s of plain inference (the same forward pass, no
 *     observer, no file) vs `record` without and with --attention.
 *  2. a random-weight GGUF with Llama-2-7B layer shapes (dim 4096, ffn 11008,
 *     32 heads, head size 128; LAYERS layers, default 2) written here: prefill
 *     GFLOP/s of the forward pass vs OpenBLAS sgemm on the same shapes. */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../trace/forward.h"
#include "../trace/gguf_write.h"
#include "../trace/h5util.h"
#include "../trace/quant.h"
#include "../trace/recorder.h"
#include "../trace/sampler.h"
#include "../util/progress.h"

static void die(const KvError *err)
{
    fprintf(stderr, "bench: %s\n", err->msg);
    exit(1);
}

/* Greedy generation of n tokens from BOS with no recording at all. */
static double plain_inference(const Model *m, int n)
{
    ForwardState s;
    KvError err;
    if (forward_state_init(&s, &m->cfg, n + 1, 1, &err)) die(&err);
    float *logits = malloc((size_t)m->cfg.vocab_size * sizeof(float));
    int token = 1;
    double t0 = kv_now_seconds();
    for (int pos = 0; pos <= n; pos++) {
        if (forward_block(m, &s, &token, 1, pos, logits, NULL, NULL, &err)) die(&err);
        token = argmax(logits, m->cfg.vocab_size);
    }
    double dt = kv_now_seconds() - t0;
    free(logits);
    forward_state_free(&s);
    return (n + 1) / dt;
}

static double recording(const Model *m, int n, int attention, const char *path)
{
    int bos = 1;
    RecordOptions opt = {.token_ids = &bos, .n_token_ids = 1, .generate = n, .trace = {.store_attention = attention}};
    RecordSummary sum;
    KvError err;
    remove(path);
    if (record_traces(m, &opt, path, &sum, &err)) die(&err);
    remove(path);
    return sum.n_tokens / sum.seconds;
}

static void bench_recording(const char *model_path, const char *work)
{
    Model m;
    KvError err;
    if (model_load(&m, model_path, NULL, &err)) die(&err);
    char path[1024];
    snprintf(path, sizeof path, "%s/bench-trace.h5", work);
    int n = 1000;
    double plain = 0, rec = 0, rec_attn = 0;
    for (int rep = 0; rep < 3; rep++) { /* best of three: the machine is shared */
        double a = plain_inference(&m, n), b = recording(&m, n, 0, path), c = recording(&m, n, 1, path);
        if (a > plain) plain = a;
        if (b > rec) rec = b;
        if (c > rec_attn) rec_attn = c;
    }
    printf("stories260K, %d generated tokens (best of 3):\n", n + 1);
    printf("  plain inference        %8.0f tokens/s\n", plain);
    printf("  record                 %8.0f tokens/s  (%.0f%% of plain inference)\n", rec, 100 * rec / plain);
    printf("  record --attention     %8.0f tokens/s  (%.0f%% of plain inference)\n", rec_attn, 100 * rec_attn / plain);
    model_free(&m);
}

static void random_fill(float *x, size_t n, unsigned *seed, float scale)
{
    for (size_t i = 0; i < n; i++) x[i] = scale * ((float)rand_r(seed) / RAND_MAX - 0.5f);
}

/* A Llama-2-7B-shaped GGUF with random F16 weights and a small vocabulary. */
static void write_7b_like(const char *path, int layers)
{
    const uint64_t dim = 4096, hid = 11008, vocab = 4096;
    GgufWriter *w = gguf_writer_new();
    gguf_writer_add_string(w, "general.architecture", "llama");
    gguf_writer_add_string(w, "general.name", "random-7B-shaped");
    gguf_writer_add_u32(w, "llama.embedding_length", (uint32_t)dim);
    gguf_writer_add_u32(w, "llama.feed_forward_length", (uint32_t)hid);
    gguf_writer_add_u32(w, "llama.block_count", (uint32_t)layers);
    gguf_writer_add_u32(w, "llama.attention.head_count", 32);
    gguf_writer_add_u32(w, "llama.attention.head_count_kv", 32);
    gguf_writer_add_u32(w, "llama.context_length", 4096);
    float *buf = malloc(dim * hid * sizeof(float));
    unsigned seed = 1;
    uint64_t d2[2];
#define TENSOR(name, a, b, type, scale)                                      \
    do {                                                                     \
        d2[0] = a; d2[1] = b;                                                \
        random_fill(buf, (a) * (b ? b : 1), &seed, scale);                   \
        gguf_writer_add_tensor(w, name, b ? 2 : 1, d2, type, buf);           \
    } while (0)
    TENSOR("token_embd.weight", dim, vocab, GGML_F16, 1.0f);
    TENSOR("output_norm.weight", dim, 0, GGML_F32, 2.0f);
    for (int l = 0; l < layers; l++) {
        char name[64];
#define LAYER(suffix, a, b, type, scale) snprintf(name, sizeof name, "blk.%d.%s", l, suffix); TENSOR(name, a, b, type, scale)
        LAYER("attn_norm.weight", dim, 0, GGML_F32, 2.0f);
        LAYER("ffn_norm.weight", dim, 0, GGML_F32, 2.0f);
        LAYER("attn_q.weight", dim, dim, GGML_F16, 0.03f);
        LAYER("attn_k.weight", dim, dim, GGML_F16, 0.03f);
        LAYER("attn_v.weight", dim, dim, GGML_F16, 0.03f);
        LAYER("attn_output.weight", dim, dim, GGML_F16, 0.03f);
        LAYER("ffn_gate.weight", dim, hid, GGML_F16, 0.03f);
        LAYER("ffn_up.weight", dim, hid, GGML_F16, 0.03f);
        LAYER("ffn_down.weight", hid, dim, GGML_F16, 0.03f);
    }
    KvError err;
    if (gguf_writer_save(w, path, &err)) die(&err);
    gguf_writer_free(w);
    free(buf);
}

static double sgemm_gflops(int n, int k, int rows)
{
    float *a = calloc((size_t)n * k, 4), *b = calloc((size_t)rows * k, 4), *c = malloc((size_t)n * rows * 4);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, rows, k, 1, a, k, b, k, 0, c, rows); /* warm-up */
    double t0 = kv_now_seconds();
    int reps = 3;
    for (int i = 0; i < reps; i++)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, rows, k, 1, a, k, b, k, 0, c, rows);
    double dt = kv_now_seconds() - t0;
    free(a); free(b); free(c);
    return reps * 2.0 * n * k * rows / dt / 1e9;
}

static void bench_prefill(const char *work, int layers)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/random-7b-shaped.gguf", work);
    write_7b_like(path, layers);
    Model m;
    KvError err;
    if (model_load(&m, path, NULL, &err)) die(&err);
    const ModelConfig *c = &m.cfg;
    int T = 512, block = 256;
    ForwardState s;
    if (forward_state_init(&s, c, T, block, &err)) die(&err);
    int *tokens = malloc((size_t)T * sizeof(int));
    for (int i = 0; i < T; i++) tokens[i] = (i * 7919) % c->vocab_size;
    forward_block(&m, &s, tokens, block, 0, NULL, NULL, NULL, &err); /* warm-up */
    double t0 = kv_now_seconds();
    for (int pos = 0; pos < T; pos += block)
        if (forward_block(&m, &s, tokens + pos, block, pos, NULL, NULL, NULL, &err)) die(&err);
    double dt = kv_now_seconds() - t0;
    double d = c->dim, h = c->hidden_dim;
    double matmul_flops = 2.0 * T * layers * (4 * d * d + 3 * d * h);
    double attn_flops = 2.0 * 2.0 * layers * d * ((double)T * (T + 1) / 2);
    double model_rate = (matmul_flops + attn_flops) / dt / 1e9;
    double ref_ffn = sgemm_gflops(block, (int)d, (int)h), ref_attn = sgemm_gflops(block, (int)d, (int)d);
    double ref = (3 * d * h * ref_ffn + 4 * d * d * ref_attn) / (3 * d * h + 4 * d * d); /* weighted by FLOPs */
    printf("prefill, %d tokens in blocks of %d, %d random layers of Llama-2-7B shape:\n", T, block, layers);
    printf("  forward pass           %8.1f GFLOP/s  (%.2f s, %.0f tokens/s)\n", model_rate, dt, T / dt);
    printf("  OpenBLAS sgemm alone   %8.1f GFLOP/s  (same matrix shapes)\n", ref);
    printf("  ratio                  %8.0f%%\n", 100 * model_rate / ref);
    free(tokens);
    forward_state_free(&s);
    model_free(&m);
    remove(path);
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: bench_record MODEL.gguf WORKDIR [LAYERS]\n");
        return 2;
    }
    h5_quiet();
    bench_recording(argv[1], argv[2]);
    bench_prefill(argv[2], argc > 3 ? atoi(argv[3]) : 2);
    return 0;
}
