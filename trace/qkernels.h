/* qkernels.h — the per-type conversion kernels: a row of a weight matrix to
 * float32, and a row's dot product with a float32 vector, without writing
 * the row out.
 *
 * qkernels.c is compiled once per instruction set (generic x86-64 or any
 * other processor, AVX2+FMA+F16C, AVX-512) into one table each; quant.c
 * picks the best the processor runs.  Every kernel
 * produces exactly ggml's dequantized values, and every float dot product
 * sums in one fixed order (element j into lane j mod 64, lanes reduced in a
 * fixed tree), whatever the type: a row of F32 weights and a quantized row
 * that decodes to the same values give the same bits.  The AVX-512 table
 * adds integer dot products for Q4_K, Q6_K, Q8_0 and Q5_0 (dot_x16). */
#ifndef KV_QKERNELS_H
#define KV_QKERNELS_H

#include <stdint.h>

#include "quant.h"

/* A vector rounded to 16-bit integers for single-token products: x[j] ≈
 * q[j] * scale[j / 32], scale = max |x| of the 32 / 32767, and sum32[i] =
 * the sum of q over elements 32i .. 32i+31 (for the per-block minimums of
 * the K types).  Integer products in place of float ones take 1.5 times less
 * CPU where decoding, not memory, is the limit.  Rounding moves each
 * value by up to 1.5e-5 of the largest |x| of its 32: a whole forward
 * pass stays within tests/test_models.py's 1e-4 of float64, measured 7e-5 (one scale per 256
 * values gave 1.02e-4: activations have outliers). */
typedef struct X16 {
    int16_t *q;
    float *scale;
    int32_t *sum32;
} X16;

/* x[0..n) into out (q[n], scale[n / 32], sum32[n / 32]); n a multiple of 32. */
void x16_quantize(const float *x, int n, X16 *out);

typedef struct {
    /* out[0..n) = the row's values; n a multiple of the block size (any n for F32, F16, BF16) */
    void (*dequant)(const uint8_t *src, float *out, int n);
    /* the sum over j < n of value[j] * x[j], in the fixed order */
    float (*dot)(const uint8_t *src, const float *x, int n);
    /* the same sum against x rounded to 16-bit integers (X16, above), n a
     * multiple of the block size; NULL where the table has none (then `dot` serves) */
    float (*dot_x16)(const uint8_t *src, const struct X16 *x, int n);
} QTypeKernels;

typedef struct {
    const char *isa;
    QTypeKernels type[GGML_TYPE_LIMIT]; /* NULL entries: types it cannot read */
} QKernels;

extern const QKernels qkernels_generic;
#ifdef KV_X86_KERNELS
extern const QKernels qkernels_avx2;
extern const QKernels qkernels_avx512;
#endif

/* The best table for this processor (KVTRACE_ISA=generic|avx2|avx512 caps
 * it, for tests and benchmarks).  Chosen once; safe from any thread. */
const QKernels *qkernels(void);
/* The i-th table this processor can run (generic first), NULL past the last. */
const QKernels *qkernels_supported(int i);

#endif
