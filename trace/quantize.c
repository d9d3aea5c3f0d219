/* Quantizers for every readable type (quant.h): round to nearest with
 * per-block scales from the block's range.  They write valid blocks in
 * ggml's layouts (the same layouts qkernels.c reads); they do not search for
 * the best scales as llama-quantize does. */
#include <math.h>
#include <string.h>

#include "quant.h"

static void store_u16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); }
static void store_half(uint8_t *p, float f) { store_u16(p, float_to_fp16(f)); }
/* The scale as the reader will see it: rounded to float16. */
static float as_half(float f) { return fp16_to_float(float_to_fp16(f)); }

static int clamp(int v, int lo, int hi) { return v < lo ? lo : v > hi ? hi : v; }
static int nearest(float f) { return (int)lrintf(f); }

static void range(const float *x, int n, float *lo, float *hi)
{
    *lo = *hi = x[0];
    for (int j = 1; j < n; j++) {
        if (x[j] < *lo) *lo = x[j];
        if (x[j] > *hi) *hi = x[j];
    }
}

/* The value of largest magnitude, with its sign. */
static float signed_max(const float *x, int n)
{
    float amax = 0, max = 0;
    for (int j = 0; j < n; j++)
        if (fabsf(x[j]) > amax) { amax = fabsf(x[j]); max = x[j]; }
    return max;
}

/* Levels 0..nmax-1 around zero: x ≈ d * (q - nmax/2), d from the signed extreme. */
static float symmetric_levels(const float *x, int n, int nmax, int *q)
{
    float d = as_half(signed_max(x, n) / -(float)(nmax / 2)), id = d ? 1.0f / d : 0.0f;
    for (int j = 0; j < n; j++) q[j] = clamp(nearest(x[j] * id) + nmax / 2, 0, nmax - 1);
    return d;
}

/* Levels 0..nmax-1 from the minimum: x ≈ d * q + m. */
static void affine_levels(const float *x, int n, int nmax, int *q, float *d_out, float *m_out)
{
    float lo, hi;
    range(x, n, &lo, &hi);
    float d = as_half((hi - lo) / (float)(nmax - 1)), m = as_half(lo), id = d ? 1.0f / d : 0.0f;
    for (int j = 0; j < n; j++) q[j] = clamp(nearest((x[j] - m) * id), 0, nmax - 1);
    *d_out = d;
    *m_out = m;
}

static void quant_q8_0(const float *x, uint8_t *b)
{
    float amax = fabsf(signed_max(x, 32)), d = as_half(amax / 127.0f), id = d ? 1.0f / d : 0.0f;
    store_half(b, d);
    for (int j = 0; j < 32; j++) b[2 + j] = (uint8_t)(int8_t)clamp(nearest(x[j] * id), -127, 127);
}

static void pack_nibbles(const int *q, uint8_t *qs)
{
    for (int j = 0; j < 16; j++) qs[j] = (uint8_t)((q[j] & 0xf) | (q[j + 16] & 0xf) << 4);
}

static void pack_fifth_bits(const int *q, uint8_t *qh)
{
    uint32_t h = 0;
    for (int j = 0; j < 32; j++) h |= (uint32_t)((q[j] >> 4) & 1) << j;
    memcpy(qh, &h, 4);
}

/* Q4_0, Q5_0 (symmetric) and Q4_1, Q5_1 (affine): [d][m if affine][fifth bits if 5-bit][nibbles]. */
static void quant_small(const float *x, uint8_t *b, int bits, int affine)
{
    int q[32];
    if (affine) {
        float d, m;
        affine_levels(x, 32, 1 << bits, q, &d, &m);
        store_half(b, d);
        store_half(b + 2, m);
    } else {
        store_half(b, symmetric_levels(x, 32, 1 << bits, q));
    }
    uint8_t *rest = b + (affine ? 4 : 2);
    if (bits == 5) {
        pack_fifth_bits(q, rest);
        rest += 4;
    }
    pack_nibbles(q, rest);
}

static void quant_q4_0(const float *x, uint8_t *b) { quant_small(x, b, 4, 0); }
static void quant_q5_0(const float *x, uint8_t *b) { quant_small(x, b, 5, 0); }
static void quant_q4_1(const float *x, uint8_t *b) { quant_small(x, b, 4, 1); }
static void quant_q5_1(const float *x, uint8_t *b) { quant_small(x, b, 5, 1); }

/* ------------------------------------------------------------ super-blocks of 256 */

/* Sub-block scales and mins as k-bit integers of two float16 super-scales:
 * returns the integer levels (scale_q, min_q) and the super-scales. */
static void super_scales(const float *scale, const float *min, int count, int levels, int *scale_q, int *min_q,
                         float *d, float *dmin)
{
    float smax = 0, mmax = 0;
    for (int i = 0; i < count; i++) {
        if (scale[i] > smax) smax = scale[i];
        if (min[i] > mmax) mmax = min[i];
    }
    *d = as_half(smax / (float)levels);
    *dmin = as_half(mmax / (float)levels);
    for (int i = 0; i < count; i++) {
        scale_q[i] = *d ? clamp(nearest(scale[i] / *d), 0, levels) : 0;
        min_q[i] = *dmin ? clamp(nearest(min[i] / *dmin), 0, levels) : 0;
    }
}

/* Affine sub-blocks: x ≈ (d*scale_q) * q - (dmin*min_q), q in 0..nmax. */
static void affine_subblocks(const float *x, int sub, int nmax, int levels, int *q, int *scale_q, int *min_q,
                             float *d, float *dmin)
{
    float scale[16], min[16];
    int count = 256 / sub;
    for (int i = 0; i < count; i++) {
        float lo, hi;
        range(x + i * sub, sub, &lo, &hi);
        if (lo > 0) lo = 0;
        min[i] = -lo;
        scale[i] = (hi - lo) / (float)nmax;
    }
    super_scales(scale, min, count, levels, scale_q, min_q, d, dmin);
    for (int i = 0; i < count; i++) {
        float step = *d * (float)scale_q[i], offset = *dmin * (float)min_q[i];
        for (int j = 0; j < sub; j++)
            q[i * sub + j] = step ? clamp(nearest((x[i * sub + j] + offset) / step), 0, nmax) : 0;
    }
}

/* Symmetric sub-blocks of 16: x ≈ (d*scale_q) * (q - half), scale_q in 0..levels. */
static void symmetric_subblocks(const float *x, int nmax, int levels, int *q, int *scale_q, float *d)
{
    float scale[16], unused[16] = {0};
    int unused_q[16];
    for (int i = 0; i < 16; i++) scale[i] = fabsf(signed_max(x + 16 * i, 16)) / (float)(nmax / 2);
    float dmin;
    super_scales(scale, unused, 16, levels, scale_q, unused_q, d, &dmin);
    for (int i = 0; i < 16; i++) {
        float step = *d * (float)scale_q[i];
        for (int j = 0; j < 16; j++)
            q[16 * i + j] = step ? clamp(nearest(x[16 * i + j] / step) + nmax / 2, 0, nmax - 1) : nmax / 2;
    }
}

/* Q2_K and Q3_K: element e = 128n + 32s + l sits in byte 32n + l at bit 2s. */
static void pack_two_bits(const int *q, uint8_t *qs)
{
    memset(qs, 0, 64);
    for (int e = 0; e < 256; e++) qs[32 * (e / 128) + e % 32] |= (uint8_t)((q[e] & 3) << (2 * ((e % 128) / 32)));
}

static void quant_q2_K(const float *x, uint8_t *b)
{
    int q[256], sc[16], mn[16];
    float d, dmin;
    affine_subblocks(x, 16, 3, 15, q, sc, mn, &d, &dmin);
    for (int i = 0; i < 16; i++) b[i] = (uint8_t)(sc[i] | mn[i] << 4);
    pack_two_bits(q, b + 16);
    store_half(b + 80, d);
    store_half(b + 82, dmin);
}

static void quant_q3_K(const float *x, uint8_t *b)
{
    int q[256], sc[16];
    float d;
    symmetric_subblocks(x, 8, 31, q, sc, &d);
    uint8_t *hmask = b, *qs = b + 32, *scales = b + 96;
    memset(hmask, 0, 32);
    for (int e = 0; e < 256; e++) hmask[e % 32] |= (uint8_t)((q[e] >> 2) << (e / 32));
    pack_two_bits(q, qs);
    memset(scales, 0, 12);
    for (int i = 0; i < 16; i++) {
        int l = sc[i] + 32; /* stored with an offset of 32 */
        scales[i % 8] |= (uint8_t)((l & 0xf) << (i < 8 ? 0 : 4));
        scales[8 + i % 4] |= (uint8_t)((l >> 4) << (2 * (i / 4)));
    }
    store_half(b + 108, d);
}

/* Eight 6-bit (scale, min) pairs into 12 bytes, as Q4_K and Q5_K read them. */
static void pack_scale_min(const int *sc, const int *mn, uint8_t *s)
{
    memset(s, 0, 12);
    for (int j = 0; j < 8; j++) {
        if (j < 4) {
            s[j] |= (uint8_t)sc[j];
            s[j + 4] |= (uint8_t)mn[j];
        } else {
            s[j + 4] = (uint8_t)((sc[j] & 0xf) | (mn[j] & 0xf) << 4);
            s[j - 4] |= (uint8_t)((sc[j] >> 4) << 6);
            s[j] |= (uint8_t)((mn[j] >> 4) << 6);
        }
    }
}

/* Q4_K and Q5_K: [d][dmin][12 bytes of scales and mins][32 bytes of fifth bits (Q5_K)][nibbles];
 * element 64c + 32h + l sits in nibble h of byte 32c + l, its fifth bit at bit 2c + h of byte l. */
static void quant_k45(const float *x, uint8_t *b, int bits)
{
    int q[256], sc[8], mn[8];
    float d, dmin;
    affine_subblocks(x, 32, (1 << bits) - 1, 63, q, sc, mn, &d, &dmin);
    store_half(b, d);
    store_half(b + 2, dmin);
    pack_scale_min(sc, mn, b + 4);
    uint8_t *qh = b + 16, *qs = bits == 5 ? b + 48 : b + 16;
    if (bits == 5) memset(qh, 0, 32);
    for (int e = 0; e < 256; e++) {
        int c = e / 64, h = (e % 64) / 32, l = e % 32;
        if (!h) qs[32 * c + l] = (uint8_t)((q[e] & 0xf) | (q[e + 32] & 0xf) << 4);
        if (bits == 5) qh[l] |= (uint8_t)(((q[e] >> 4) & 1) << (2 * c + h));
    }
}

static void quant_q4_K(const float *x, uint8_t *b) { quant_k45(x, b, 4); }
static void quant_q5_K(const float *x, uint8_t *b) { quant_k45(x, b, 5); }

static void quant_q6_K(const float *x, uint8_t *b)
{
    int q[256], sc[16];
    float d;
    symmetric_subblocks(x, 64, 127, q, sc, &d);
    uint8_t *ql = b, *qh = b + 128;
    memset(b, 0, 192);
    for (int e = 0; e < 256; e++) { /* element 128h + 32m + l */
        int h = e / 128, m = (e % 128) / 32, l = e % 32;
        ql[64 * h + l + 32 * (m & 1)] |= (uint8_t)((q[e] & 0xf) << (4 * (m >> 1)));
        qh[32 * h + l] |= (uint8_t)((q[e] >> 4) << (2 * m));
    }
    for (int i = 0; i < 16; i++) b[192 + i] = (uint8_t)(int8_t)sc[i];
    store_half(b + 208, d);
}

int ggml_quantize(uint32_t type, const float *src, void *dst, size_t n)
{
    uint8_t *d = dst;
    static const struct { uint32_t type; void (*block)(const float *, uint8_t *); } BLOCKS[] = {
        {GGML_Q8_0, quant_q8_0}, {GGML_Q4_0, quant_q4_0}, {GGML_Q4_1, quant_q4_1}, {GGML_Q5_0, quant_q5_0},
        {GGML_Q5_1, quant_q5_1}, {GGML_Q2_K, quant_q2_K}, {GGML_Q3_K, quant_q3_K}, {GGML_Q4_K, quant_q4_K},
        {GGML_Q5_K, quant_q5_K}, {GGML_Q6_K, quant_q6_K},
    };
    switch (type) {
    case GGML_F32: memcpy(dst, src, n * 4); return 0;
    case GGML_F16: for (size_t i = 0; i < n; i++) store_u16(d + 2 * i, float_to_fp16(src[i])); return 0;
    case GGML_BF16: for (size_t i = 0; i < n; i++) store_u16(d + 2 * i, float_to_bf16(src[i])); return 0;
    }
    const GgmlTypeInfo *t = ggml_type_info(type);
    for (size_t k = 0; k < sizeof BLOCKS / sizeof BLOCKS[0]; k++) {
        if (BLOCKS[k].type != type) continue;
        if (n % (size_t)t->block_elems) return -1;
        for (size_t i = 0; i < n / (size_t)t->block_elems; i++)
            BLOCKS[k].block(src + i * t->block_elems, d + i * t->block_bytes);
        return 0;
    }
    return -1;
}
