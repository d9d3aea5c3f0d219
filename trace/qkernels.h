/* qkernels.h — the per-type conversion kernels: a row of a weight matrix to
 * float32, and a row's dot product with a float32 vector, without writing
 * the row out.
 *
 * qkernels.c is compiled once per instruction set (generic x86-64 or any
 * other processor, AVX2+FMA+F16C, AVX-512) into one table each; quant.c picks
 * the best the processor runs.  Every kernel produces exactly ggml's
 * dequantized values, and every dot product sums in one fixed order (element
 * j into lane j mod 64, lanes reduced in a fixed tree), whatever the type:
 * a row of F32 weights and a quantized row that decodes to the same values
 * give the same bits. */
#ifndef KV_QKERNELS_H
#define KV_QKERNELS_H

#include <stdint.h>

#include "quant.h"

typedef struct {
    /* out[0..n) = the row's values; n a multiple of the block size (any n for F32, F16, BF16) */
    void (*dequant)(const uint8_t *src, float *out, int n);
    /* the sum over j < n of value[j] * x[j], in the fixed order */
    float (*dot)(const uint8_t *src, const float *x, int n);
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
