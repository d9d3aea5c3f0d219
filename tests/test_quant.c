/* The tensor-type kernels against ggml itself, on every instruction set this
 * processor runs, and the quantizers the tests write models with.
 *
 * usage: test_quant ggml TYPE REFDIR   every value of tiny-llama-ggml-TYPE.gguf
 *                                      decodes to exactly the bits of ggml's own
 *                                      dequantization (TYPE.f32), and every row's
 *                                      fused dot product equals the float32 dot
 *                                      product of its decoded values, bit for bit
 *        test_quant quantize TYPE      the quantizer's blocks decode close to the
 *                                      input (a layout error would not)
 *        test_quant halves             every non-NaN half widens to the same float
 *                                      on vectors as one by one, also in place */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "../trace/gguf.h"
#include "../trace/qkernels.h"
#include "check.h"

static float *read_floats(const char *path, size_t *n)
{
    FILE *fp = fopen(path, "rb");
    if (!fp) return NULL;
    fseek(fp, 0, SEEK_END);
    *n = (size_t)ftell(fp) / 4;
    fseek(fp, 0, SEEK_SET);
    float *v = malloc(*n * 4 + 4);
    if (v && fread(v, 4, *n, fp) != *n) { free(v); v = NULL; }
    fclose(fp);
    return v;
}

static unsigned next_random(unsigned *s)
{
    *s ^= *s << 13; *s ^= *s >> 17; *s ^= *s << 5;
    return *s;
}

static float uniform(unsigned *s) { return (float)(next_random(s) >> 8) / 16777216.0f - 0.5f; }

/* The integer kernel (qkernels.h's dot_x16), where the table has one, against
 * the float64 dot product of the row's decoded values with the rounded input
 * q * scale: the integer sums are exact, so only the float32 scaling of each 32
 * block's sum differs (measured 2.2e-7 of the terms' size for Q4_K, 3.7e-8 for
 * Q8_0; bound 1e-6).  Returns
 * that relative error. */
static double check_x16(const QTypeKernels *k, const uint8_t *row, const float *w, const float *x, int cols)
{
    if (!k->dot_x16 || cols % 32) return 0;
    int16_t q[4096];
    float scale[4096 / 32];
    int32_t sum32[4096 / 32];
    X16 xq = {q, scale, sum32};
    x16_quantize(x, cols, &xq);
    double want = 0, size = 0;
    for (int c = 0; c < cols; c++) {
        double term = (double)w[c] * q[c] * scale[c / 32];
        want += term;
        size += fabs(term);
    }
    double diff = fabs(k->dot_x16(row, &xq, cols) - want);
    double e = size > 0 ? diff / size : diff; /* a row of zeros: the difference itself */
    CHECK(e <= 1e-6, "integer dot differs from float64 by %.3g of its terms' size", e);
    return e;
}

/* One tensor on one kernel table: decoded values and row dot products. */
static long check_tensor(const QKernels *k, const GgufTensor *t, const float *ref, float *buf, float *x,
                         double *x16_error)
{
    int cols = (int)t->dims[0], rows = (int)(t->n_elements / t->dims[0]);
    size_t row_bytes = ggml_row_bytes(t->type, (uint64_t)cols);
    const uint8_t *data = t->data;
    long differ = 0;
    for (int r = 0; r < rows; r++) {
        const uint8_t *row = data + (size_t)r * row_bytes;
        k->type[t->type].dequant(row, buf, cols);
        for (int c = 0; c < cols; c++)
            if (memcmp(buf + c, ref + (size_t)r * cols + c, 4) != 0) { /* bits, so -0 differs from 0 */
                if (!differ++)
                    fprintf(stderr, "%s %s row %d column %d: %.9g, ggml %.9g\n", k->isa, t->name, r, c, buf[c],
                            ref[(size_t)r * cols + c]);
                break;
            }
        float fused = k->type[t->type].dot(row, x, cols);
        float plain = k->type[GGML_F32].dot((const uint8_t *)buf, x, cols);
        CHECK(memcmp(&fused, &plain, 4) == 0, "%s %s row %d: fused dot %.9g, float32 dot %.9g", k->isa, t->name, r,
              fused, plain);
        double e = check_x16(&k->type[t->type], row, buf, x, cols);
        *x16_error = e > *x16_error ? e : *x16_error;
    }
    return differ;
}

static void ggml_reference(const char *type, const char *dir)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/tiny-llama-ggml-%s.f32", dir, type);
    size_t n_ref;
    float *ref = read_floats(path, &n_ref);
    CHECK(ref != NULL, "cannot read %s", path);
    snprintf(path, sizeof path, "%s/tiny-llama-ggml-%s.gguf", dir, type);
    GgufFile f;
    KvError err;
    int rc = gguf_open(&f, path, &err);
    CHECK(rc == 0, "%s", err.msg);
    if (!ref || rc) return;
    float *buf = malloc(4096 * 4), *x = malloc(4096 * 4);
    unsigned seed = 7;
    for (int i = 0; i < 4096; i++) x[i] = uniform(&seed);
    int wanted = ggml_type_by_name(type), seen = 0;
    for (int i = 0; qkernels_supported(i); i++) {
        const QKernels *k = qkernels_supported(i);
        size_t at = 0;
        long differ = 0;
        double x16_error = 0;
        for (uint64_t t = 0; t < f.n_tensors; t++) {
            const GgufTensor *ten = &f.tensors[t];
            CHECK(at + ten->n_elements <= n_ref, "reference file too short");
            if (at + ten->n_elements > n_ref) break;
            seen += ten->type == (uint32_t)wanted;
            differ += check_tensor(k, ten, ref + at, buf, x, &x16_error);
            at += ten->n_elements;
        }
        CHECK(at == n_ref, "%s: %zu of %zu reference values compared", k->isa, at, n_ref);
        CHECK(differ == 0, "%s %s: %ld rows differ from ggml's values", k->isa, type, differ);
        printf("%s kernels, %s: %zu values bit-identical to ggml's dequantization, fused dot = float32 dot\n",
               k->isa, type, at);
        if (k->type[wanted].dot_x16)
            printf("%s kernels, %s: integer dot against 16-bit input within %.2g of float64 (bound 1e-6)\n", k->isa,
                   type, x16_error);
    }
    CHECK(seen > 0, "no tensor of type %s in %s", type, path);
    free(buf);
    free(x);
    free(ref);
    gguf_close(&f);
}

/* Relative RMS error of quantize-then-dequantize on random and edge-case data. */
static void quantize_roundtrip(const char *type_name)
{
    int type = ggml_type_by_name(type_name);
    CHECK(type >= 0, "unknown type %s", type_name);
    if (type < 0) return;
    /* round-to-nearest bounds: half a step of the block's range over the spread of uniform data */
    static const struct { const char *name; double bound; } BOUNDS[] = {
        {"F32", 0}, {"F16", 1e-3}, {"BF16", 8e-3}, {"Q8_0", 1e-2}, {"Q6_K", 4e-2}, {"Q5_0", 6e-2},
        {"Q5_1", 6e-2}, {"Q5_K", 6e-2}, {"Q4_0", 0.12}, {"Q4_1", 0.12}, {"Q4_K", 0.12}, {"Q3_K", 0.25},
        {"Q2_K", 0.45}};
    double bound = -1;
    for (size_t i = 0; i < sizeof BOUNDS / sizeof BOUNDS[0]; i++)
        if (!strcmp(BOUNDS[i].name, type_name)) bound = BOUNDS[i].bound;
    const size_t n = 256 * 64;
    float *x = malloc(n * 4), *y = malloc(n * 4);
    uint8_t *q = malloc(ggml_row_bytes((uint32_t)type, n));
    unsigned seed = 11;
    for (size_t i = 0; i < n; i++) x[i] = uniform(&seed) * (1.0f + (float)(i / 256 % 7));
    for (size_t i = 0; i < 256; i++) x[i] = 0;            /* a block of zeros */
    for (size_t i = 256; i < 512; i++) x[i] = 0.25f;      /* a constant block */
    for (size_t i = 512; i < 768; i++) x[i] = -(float)i;  /* one-signed ramp */
    CHECK(ggml_quantize((uint32_t)type, x, q, n) == 0, "quantize %s", type_name);
    CHECK(ggml_dequantize((uint32_t)type, q, y, n) == 0, "dequantize %s", type_name);
    double err2 = 0, ref2 = 0;
    for (size_t i = 768; i < n; i++) {
        err2 += (double)(x[i] - y[i]) * (x[i] - y[i]);
        ref2 += (double)x[i] * x[i];
    }
    double rel = sqrt(err2 / ref2);
    double zero_err = 0;
    for (size_t i = 0; i < 256; i++) zero_err += fabs(y[i]);
    printf("%s: relative RMS error %.3g (bound %.3g), zeros decode to %g\n", type_name, rel, bound, zero_err);
    CHECK(rel <= bound, "%s round trip error %g > %g", type_name, rel, bound);
    CHECK(zero_err == 0, "%s: a block of zeros decodes to non-zero values", type_name);
    CHECK(ggml_all_finite((uint32_t)type, q, n), "%s: finite input reported non-finite", type_name);
    free(x);
    free(y);
    free(q);
}

/* fp16_to_float_array (F16C where the CPU has it) against fp16_to_float on
 * all 65536 halves (NaNs compared as NaNs), from a separate buffer and in
 * place, as h5_read_floats widens them: the halves in the last 2n bytes. */
static void halves(void)
{
    enum { N = 65536 + 7 }; /* a tail past the vectors */
    uint16_t *in = malloc(N * sizeof *in);
    float *out = malloc(N * sizeof *out), *in_place = malloc(N * sizeof *in_place);
    for (size_t i = 0; i < N; i++) in[i] = (uint16_t)(i * 40503u); /* every half, scrambled */
    memcpy((uint16_t *)(in_place + N) - N, in, N * sizeof *in);
    fp16_to_float_array(in, out, N);
    fp16_to_float_array((uint16_t *)(in_place + N) - N, in_place, N);
    int differ = 0;
    for (size_t i = 0; i < N; i++) {
        float want = fp16_to_float(in[i]);
        differ += isnan(want) ? !isnan(out[i]) || !isnan(in_place[i])
                              : memcmp(&want, &out[i], 4) != 0 || memcmp(&want, &in_place[i], 4) != 0;
    }
    CHECK(differ == 0, "%d halves widen differently on vectors", differ);
    free(in);
    free(out);
    free(in_place);
}

int main(int argc, char **argv)
{
    if (argc == 2 && !strcmp(argv[1], "halves")) {
        halves();
        return check_status();
    }
    if (argc >= 4 && !strcmp(argv[1], "ggml"))
        ggml_reference(argv[2], argv[3]);
    else if (argc >= 3 && !strcmp(argv[1], "quantize"))
        quantize_roundtrip(argv[2]);
    else {
        fprintf(stderr, "usage: test_quant ggml TYPE REFDIR | quantize TYPE | halves\n");
        return 2;
    }
    return check_status();
}
