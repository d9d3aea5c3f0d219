/* The measurements bench/real_models.sh puts beside `kvtrace record`'s own
 * figures (a benchmark tool, not a test).
 *
 * usage: bench_models write OUT.gguf TYPE [LAYERS]
 *            a random-weight GGUF with TinyLlama-1.1B's shapes (width 2048,
 *            22 layers, 32 heads, 4 kv heads, feed-forward 5632, vocabulary
 *            32000), every matrix quantized to TYPE by kvtrace's quantizer
 *        bench_models bandwidth THREADS
 *            memory read bandwidth, GB/s (THREADS threads summing a 2 GB buffer)
 *        bench_models sgemm THREADS N [LAYERS]
 *            OpenBLAS sgemm GFLOP/s (OpenBLAS's own THREADS threads) on the
 *            matrix shapes of a prefill block of N tokens of that model
 *        bench_models kernels
 *            per-type dot product and decoding throughput of one core */
#include <cblas.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../trace/qkernels.h"
#include "../trace/quant.h"
#include "../trace/synthetic.h"

static const int DIM = 2048, HIDDEN = 5632, HEADS = 32, KV_HEADS = 4, VOCAB = 32000;

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static double cpu_now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static int write_model(const char *path, const char *type_name, int layers)
{
    int type = ggml_type_by_name(type_name);
    if (type < 0) return fprintf(stderr, "unknown type %s\n", type_name), 2;
    SyntheticModel s = {.arch = "llama", .rope_scaling = "none", .dim = DIM, .hidden = HIDDEN, .layers = layers,
                        .heads = HEADS, .kv_heads = KV_HEADS, .vocab = VOCAB, .context = 2048,
                        .type = (uint32_t)type, .rope_theta = 10000.0f, .scale = 0.02f, .seed = 7};
    KvError err;
    if (synthetic_model_write(&s, path, &err)) return fprintf(stderr, "%s\n", err.msg), 1;
    return 0;
}

/* ------------------------------------------------------------ memory bandwidth */

typedef struct {
    const float *data;
    size_t n;
    double sum;
} Slice;

static void *sum_slice(void *arg)
{
    Slice *s = arg;
    float acc[16] = {0};
    for (size_t i = 0; i + 16 <= s->n; i += 16)
        for (int j = 0; j < 16; j++) acc[j] += s->data[i + j];
    for (int j = 0; j < 16; j++) s->sum += acc[j];
    return NULL;
}

static int bandwidth(int threads)
{
    size_t n = (size_t)512 << 20; /* 2 GB of floats */
    float *data = malloc(n * sizeof(float));
    if (!data) return 1;
    for (size_t i = 0; i < n; i++) data[i] = (float)(i & 7);
    double best = 0;
    for (int rep = 0; rep < 5; rep++) {
        pthread_t tid[64];
        Slice s[64];
        double t0 = now();
        for (int t = 0; t < threads; t++) {
            s[t] = (Slice){data + n / threads * t, n / threads, 0};
            pthread_create(&tid[t], NULL, sum_slice, &s[t]);
        }
        for (int t = 0; t < threads; t++) pthread_join(tid[t], NULL);
        double gbs = n * sizeof(float) / (now() - t0) / 1e9;
        if (gbs > best) best = gbs;
    }
    printf("%.2f\n", best);
    free(data);
    return 0;
}

/* ------------------------------------------------------------ sgemm on the prefill shapes */

static double sgemm_seconds(int n, int k, int rows)
{
    float *a = calloc((size_t)n * k, 4), *b = calloc((size_t)rows * k, 4), *c = malloc((size_t)n * rows * 4);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, rows, k, 1, a, k, b, k, 0, c, rows); /* warm-up */
    double best = 1e30;
    for (int rep = 0; rep < 3; rep++) {
        double t0 = now();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, rows, k, 1, a, k, b, k, 0, c, rows);
        double dt = now() - t0;
        if (dt < best) best = dt;
    }
    free(a); free(b); free(c);
    return best;
}

/* The products of one prefill block: per layer q, k, v, o, gate, up, down;
 * then the classifier.  Prints GFLOP/s over all of them. */
static int sgemm_shapes(int threads, int n, int layers)
{
    openblas_set_num_threads(threads);
    int qd = DIM, kvd = DIM / HEADS * KV_HEADS;
    struct { int k, rows, count; } shapes[] = {
        {DIM, qd, 1}, {DIM, kvd, 2}, {qd, DIM, 1}, {DIM, HIDDEN, 2}, {HIDDEN, DIM, 1},
    };
    double flops = 0, seconds = 0;
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        double dt = sgemm_seconds(n, shapes[i].k, shapes[i].rows);
        flops += 2.0 * n * shapes[i].k * shapes[i].rows * shapes[i].count * layers;
        seconds += dt * shapes[i].count * layers;
    }
    flops += 2.0 * n * DIM * VOCAB;
    seconds += sgemm_seconds(n, DIM, VOCAB);
    printf("%.1f\n", flops / seconds / 1e9);
    return 0;
}

/* ------------------------------------------------------------ kernels, one core */

static int kernels(void)
{
    const int rows = 2048, cols = 4096;
    float *f = malloc((size_t)rows * cols * 4), x[4096];
    uint64_t seed = 1;
    for (size_t i = 0; i < (size_t)rows * cols; i++) {
        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        f[i] = (float)(seed >> 40) / 16777216.0f - 0.5f;
    }
    for (int i = 0; i < cols; i++) x[i] = 1e-3f * (float)i;
    const QKernels *k = qkernels();
    printf("%s kernels, one core (CPU time), %d x %d matrices:\n", k->isa, rows, cols);
    printf("  type   dot G values/s  dot GB/s  decode G values/s  int dot G values/s  int dot GB/s\n");
    int16_t xq16[4096];
    float xscale[4096 / 32];
    int32_t xsum[4096 / 32];
    X16 xq = {xq16, xscale, xsum};
    for (int type = 0; type < GGML_TYPE_LIMIT; type++) {
        if (!k->type[type].dot) continue;
        size_t rb = ggml_row_bytes((uint32_t)type, (uint64_t)cols);
        uint8_t *q = malloc(rb * rows);
        ggml_quantize((uint32_t)type, f, q, (size_t)rows * cols);
        float sink = 0;
        double t0 = cpu_now();
        for (int it = 0; it < 10; it++)
            for (int r = 0; r < rows; r++) sink += k->type[type].dot(q + r * rb, x, cols);
        double dot = cpu_now() - t0, dot_x16 = 0;
        if (k->type[type].dot_x16) { /* the single-token integer path (qkernels.h), input rounded once */
            t0 = cpu_now();
            for (int it = 0; it < 10; it++) {
                x16_quantize(x, cols, &xq);
                for (int r = 0; r < rows; r++) sink += k->type[type].dot_x16(q + r * rb, &xq, cols);
            }
            dot_x16 = cpu_now() - t0;
        }
        float *out = malloc((size_t)cols * 4);
        t0 = cpu_now();
        for (int it = 0; it < 10; it++)
            for (int r = 0; r < rows; r++) k->type[type].dequant(q + r * rb, out, cols);
        double dq = cpu_now() - t0;
        double values = 10.0 * rows * cols;
        printf("  %-5s  %14.2f  %8.2f  %17.2f  ", ggml_type_info((uint32_t)type)->name, values / dot / 1e9,
               10.0 * rows * rb / dot / 1e9, values / dq / 1e9);
        if (dot_x16 > 0)
            printf("%18.2f  %12.2f", values / dot_x16 / 1e9, 10.0 * rows * rb / dot_x16 / 1e9);
        printf("%s\n", sink == 12345 ? " " : "");
        free(q);
        free(out);
    }
    free(f);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc >= 4 && !strcmp(argv[1], "write")) return write_model(argv[2], argv[3], argc > 4 ? atoi(argv[4]) : 22);
    if (argc == 3 && !strcmp(argv[1], "bandwidth")) return bandwidth(atoi(argv[2]));
    if (argc >= 4 && !strcmp(argv[1], "sgemm")) return sgemm_shapes(atoi(argv[2]), atoi(argv[3]), argc > 4 ? atoi(argv[4]) : 22);
    if (argc == 2 && !strcmp(argv[1], "kernels")) return kernels();
    fprintf(stderr, "usage: bench_models write OUT TYPE [LAYERS] | bandwidth THREADS | sgemm THREADS N [LAYERS] | kernels\n");
    return 2;
}
