/* quant.h — ggml tensor element types: their block layouts, conversion to
 * float32 bit for bit as ggml's own dequantization does it, and the
 * quantizers the tests and benchmarks use to write models.
 *
 * kvtrace keeps weights in their file encoding; the forward pass converts
 * them a row or a tile at a time (matmul.h).  The conversions live in
 * qkernels.c, built once per instruction set; this module picks the best the
 * processor runs. */
#ifndef KV_QUANT_H
#define KV_QUANT_H

#include <stddef.h>
#include <stdint.h>

enum {
    GGML_F32 = 0, GGML_F16 = 1, GGML_Q4_0 = 2, GGML_Q4_1 = 3, GGML_Q5_0 = 6,
    GGML_Q5_1 = 7, GGML_Q8_0 = 8, GGML_Q8_1 = 9, GGML_Q2_K = 10, GGML_Q3_K = 11,
    GGML_Q4_K = 12, GGML_Q5_K = 13, GGML_Q6_K = 14, GGML_Q8_K = 15, GGML_BF16 = 30,
    GGML_TYPE_LIMIT = 40, /* ids below this have table entries (some unnamed) */
};

typedef struct {
    const char *name;
    int block_elems;   /* elements per block */
    int block_bytes;   /* bytes per block; 0 = a type kvtrace knows only by name */
    int can_read;      /* kvtrace converts it (the 13 types of the README) */
} GgmlTypeInfo;

/* NULL for a type id kvtrace does not know at all. */
const GgmlTypeInfo *ggml_type_info(uint32_t type);
/* The type with this name ("Q4_K"), or -1. */
int ggml_type_by_name(const char *name);
/* "F32, F16, BF16, Q8_0, ..." — the types kvtrace reads, for messages. */
const char *ggml_readable_types(void);

/* Bytes for n elements; 0 when n is not a whole number of blocks, the type's
 * size is unknown, or the size overflows. */
size_t ggml_row_bytes(uint32_t type, uint64_t n);

float fp16_to_float(uint16_t h);
/* out[i] = fp16_to_float(in[i]) for i < n, on F16C vectors where the CPU has
 * them (the same numbers; a signalling NaN comes out quiet).  in may be the
 * last 2n bytes of out: it is widened in place from the front. */
void fp16_to_float_array(const uint16_t *in, float *out, size_t n);
uint16_t float_to_fp16(float f);
float bf16_to_float(uint16_t b);
uint16_t float_to_bf16(float f);

/* n must be a multiple of the type's block size (any n for F32/F16/BF16).
 * Returns -1 for a type kvtrace cannot read. */
int ggml_dequantize(uint32_t type, const void *src, float *dst, size_t n);
/* Where a block type keeps its float16 scales (offsets in the block);
 * returns how many (0 for F32, F16, BF16). */
int ggml_scale_offsets(uint32_t type, int offsets[2]);
/* 1 when every value the n elements decode to is finite (for block types:
 * every scale is). */
int ggml_all_finite(uint32_t type, const void *src, size_t n);

/* Writes n values as type (every readable type; n a multiple of the block
 * size).  Plain round-to-nearest quantizers: valid blocks, not ggml's search
 * for the best scales.  Returns -1 for a type it cannot write. */
int ggml_quantize(uint32_t type, const float *src, void *dst, size_t n);

#endif
