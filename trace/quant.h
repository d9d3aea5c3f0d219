/* quant.h — ggml tensor element types: their sizes, and conversion to and
 * from float32.
 *
 * kvtrace dequantizes every weight to float32 once at load time, so the
 * forward pass is plain sgemm.  Quantizers exist for the types the tests and
 * benchmarks write (F16, BF16, Q8_0, Q4_0). */
#ifndef KV_QUANT_H
#define KV_QUANT_H

#include <stddef.h>
#include <stdint.h>

enum {
    GGML_F32 = 0, GGML_F16 = 1, GGML_Q4_0 = 2, GGML_Q4_1 = 3, GGML_Q5_0 = 6,
    GGML_Q5_1 = 7, GGML_Q8_0 = 8, GGML_Q8_1 = 9, GGML_Q2_K = 10, GGML_Q3_K = 11,
    GGML_Q4_K = 12, GGML_Q5_K = 13, GGML_Q6_K = 14, GGML_Q8_K = 15, GGML_BF16 = 30,
};

typedef struct {
    const char *name;
    int block_elems;   /* elements per block */
    int block_bytes;   /* bytes per block */
    int can_dequantize;
} GgmlTypeInfo;

/* NULL for a type id kvtrace does not know at all. */
const GgmlTypeInfo *ggml_type_info(uint32_t type);

/* Bytes for n elements; 0 when n is not a whole number of blocks or the size
 * overflows. */
size_t ggml_row_bytes(uint32_t type, uint64_t n);

float fp16_to_float(uint16_t h);
uint16_t float_to_fp16(float f);
float bf16_to_float(uint16_t b);
uint16_t float_to_bf16(float f);

/* n must be a multiple of the type's block size.  Returns -1 for a type that
 * cannot be dequantized. */
int ggml_dequantize(uint32_t type, const void *src, float *dst, size_t n);
/* Supports F32, F16, BF16, Q8_0, Q4_0. */
int ggml_quantize(uint32_t type, const float *src, void *dst, size_t n);

#endif
