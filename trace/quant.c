#include "quant.h"

#include <math.h>
#include <string.h>

static const GgmlTypeInfo TYPES[] = {
    [GGML_F32] = {"F32", 1, 4, 1},       [GGML_F16] = {"F16", 1, 2, 1},
    [GGML_Q4_0] = {"Q4_0", 32, 18, 1},   [GGML_Q4_1] = {"Q4_1", 32, 20, 0},
    [GGML_Q5_0] = {"Q5_0", 32, 22, 0},   [GGML_Q5_1] = {"Q5_1", 32, 24, 0},
    [GGML_Q8_0] = {"Q8_0", 32, 34, 1},   [GGML_Q8_1] = {"Q8_1", 32, 36, 0},
    [GGML_Q2_K] = {"Q2_K", 256, 84, 0},  [GGML_Q3_K] = {"Q3_K", 256, 110, 0},
    [GGML_Q4_K] = {"Q4_K", 256, 144, 1}, [GGML_Q5_K] = {"Q5_K", 256, 176, 0},
    [GGML_Q6_K] = {"Q6_K", 256, 210, 1}, [GGML_Q8_K] = {"Q8_K", 256, 292, 0},
    [GGML_BF16] = {"BF16", 1, 2, 1},
};

const GgmlTypeInfo *ggml_type_info(uint32_t type)
{
    if (type >= sizeof TYPES / sizeof TYPES[0] || !TYPES[type].name) return NULL;
    return &TYPES[type];
}

size_t ggml_row_bytes(uint32_t type, uint64_t n)
{
    const GgmlTypeInfo *t = ggml_type_info(type);
    if (!t || n % (uint64_t)t->block_elems) return 0;
    uint64_t blocks = n / (uint64_t)t->block_elems;
    if (blocks > SIZE_MAX / (uint64_t)t->block_bytes) return 0;
    return (size_t)(blocks * (uint64_t)t->block_bytes);
}

float fp16_to_float(uint16_t h)
{
    uint32_t sign = (uint32_t)(h >> 15) << 31, exp = (h >> 10) & 0x1f, mant = h & 0x3ff;
    uint32_t bits;
    if (exp == 0x1f) {
        bits = sign | 0x7f800000u | (mant << 13);
    } else if (exp != 0) {
        bits = sign | ((exp + 112) << 23) | (mant << 13);
    } else if (mant == 0) {
        bits = sign;
    } else { /* subnormal: value = mant * 2^-24 */
        float v = (float)mant * 5.9604644775390625e-8f;
        return sign ? -v : v;
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

uint16_t float_to_fp16(float f)
{
    uint32_t x;
    memcpy(&x, &f, 4);
    uint16_t sign = (uint16_t)((x >> 16) & 0x8000);
    uint32_t absx = x & 0x7fffffffu;
    if (absx >= 0x7f800000u) /* inf or nan */
        return sign | 0x7c00 | (absx > 0x7f800000u ? 0x200 : 0);
    if (absx >= 0x477ff000u) return sign | 0x7c00; /* rounds to >= 65520: inf */
    if (absx < 0x38800000u) { /* below the smallest normal half: subnormal */
        float a;
        memcpy(&a, &absx, 4);
        return sign | (uint16_t)lrintf(a * 16777216.0f); /* a / 2^-24, ties to even */
    }
    /* normal: round mantissa to 10 bits, ties to even */
    uint32_t rounded = absx + 0xfff + ((absx >> 13) & 1);
    return sign | (uint16_t)((rounded - 0x38000000u) >> 13);
}

float bf16_to_float(uint16_t b)
{
    uint32_t bits = (uint32_t)b << 16;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

uint16_t float_to_bf16(float f)
{
    uint32_t x;
    memcpy(&x, &f, 4);
    if ((x & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((x >> 16) | 0x40);
    return (uint16_t)((x + 0x7fff + ((x >> 16) & 1)) >> 16);
}

static uint16_t load_u16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }

static void dequant_q8_0(const uint8_t *src, float *dst, size_t blocks)
{
    for (size_t b = 0; b < blocks; b++, src += 34, dst += 32) {
        float d = fp16_to_float(load_u16(src));
        const int8_t *q = (const int8_t *)(src + 2);
        for (int j = 0; j < 32; j++) dst[j] = d * (float)q[j];
    }
}

static void dequant_q4_0(const uint8_t *src, float *dst, size_t blocks)
{
    for (size_t b = 0; b < blocks; b++, src += 18, dst += 32) {
        float d = fp16_to_float(load_u16(src));
        const uint8_t *q = src + 2;
        for (int j = 0; j < 16; j++) {
            dst[j] = d * (float)((q[j] & 0xf) - 8);
            dst[j + 16] = d * (float)((q[j] >> 4) - 8);
        }
    }
}

/* Q4_K packs eight 6-bit (scale, min) pairs into 12 bytes. */
static void q4k_scale_min(int j, const uint8_t *s, uint8_t *scale, uint8_t *min)
{
    if (j < 4) {
        *scale = s[j] & 63;
        *min = s[j + 4] & 63;
    } else {
        *scale = (uint8_t)((s[j + 4] & 0xf) | ((s[j - 4] >> 6) << 4));
        *min = (uint8_t)((s[j + 4] >> 4) | ((s[j] >> 6) << 4));
    }
}

static void dequant_q4_k(const uint8_t *src, float *dst, size_t blocks)
{
    for (size_t b = 0; b < blocks; b++, src += 144) {
        float d = fp16_to_float(load_u16(src)), dmin = fp16_to_float(load_u16(src + 2));
        const uint8_t *scales = src + 4, *q = src + 16;
        for (int j = 0; j < 8; j += 2, q += 32) {
            uint8_t sc, m;
            q4k_scale_min(j, scales, &sc, &m);
            float d1 = d * sc, m1 = dmin * m;
            q4k_scale_min(j + 1, scales, &sc, &m);
            float d2 = d * sc, m2 = dmin * m;
            for (int l = 0; l < 32; l++) *dst++ = d1 * (float)(q[l] & 0xf) - m1;
            for (int l = 0; l < 32; l++) *dst++ = d2 * (float)(q[l] >> 4) - m2;
        }
    }
}

static void dequant_q6_k(const uint8_t *src, float *dst, size_t blocks)
{
    for (size_t b = 0; b < blocks; b++, src += 210) {
        const uint8_t *ql = src, *qh = src + 128;
        const int8_t *sc = (const int8_t *)(src + 192);
        float d = fp16_to_float(load_u16(src + 208));
        for (int half = 0; half < 2; half++, dst += 128, ql += 64, qh += 32, sc += 8) {
            for (int l = 0; l < 32; l++) {
                int is = l / 16;
                int q1 = ((ql[l] & 0xf) | (((qh[l] >> 0) & 3) << 4)) - 32;
                int q2 = ((ql[l + 32] & 0xf) | (((qh[l] >> 2) & 3) << 4)) - 32;
                int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
                int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
                dst[l] = d * sc[is] * (float)q1;
                dst[l + 32] = d * sc[is + 2] * (float)q2;
                dst[l + 64] = d * sc[is + 4] * (float)q3;
                dst[l + 96] = d * sc[is + 6] * (float)q4;
            }
        }
    }
}

int ggml_dequantize(uint32_t type, const void *src, float *dst, size_t n)
{
    const uint8_t *s = src;
    switch (type) {
    case GGML_F32: memcpy(dst, src, n * 4); return 0;
    case GGML_F16: for (size_t i = 0; i < n; i++) dst[i] = fp16_to_float(load_u16(s + 2 * i)); return 0;
    case GGML_BF16: for (size_t i = 0; i < n; i++) dst[i] = bf16_to_float(load_u16(s + 2 * i)); return 0;
    case GGML_Q8_0: dequant_q8_0(s, dst, n / 32); return 0;
    case GGML_Q4_0: dequant_q4_0(s, dst, n / 32); return 0;
    case GGML_Q4_K: dequant_q4_k(s, dst, n / 256); return 0;
    case GGML_Q6_K: dequant_q6_k(s, dst, n / 256); return 0;
    default: return -1;
    }
}

static void store_u16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); }

static float block_absmax(const float *x, int n, float *signed_max)
{
    float amax = 0, max = 0;
    for (int j = 0; j < n; j++)
        if (fabsf(x[j]) > amax) { amax = fabsf(x[j]); max = x[j]; }
    if (signed_max) *signed_max = max;
    return amax;
}

static void quant_q8_0(const float *x, uint8_t *dst, size_t blocks)
{
    for (size_t b = 0; b < blocks; b++, x += 32, dst += 34) {
        float d = block_absmax(x, 32, NULL) / 127.0f, id = d ? 1.0f / d : 0.0f;
        store_u16(dst, float_to_fp16(d));
        for (int j = 0; j < 32; j++) ((int8_t *)(dst + 2))[j] = (int8_t)lrintf(x[j] * id);
    }
}

static void quant_q4_0(const float *x, uint8_t *dst, size_t blocks)
{
    for (size_t b = 0; b < blocks; b++, x += 32, dst += 18) {
        float max;
        block_absmax(x, 32, &max);
        float d = max / -8.0f, id = d ? 1.0f / d : 0.0f;
        store_u16(dst, float_to_fp16(d));
        for (int j = 0; j < 16; j++) {
            int lo = (int)(x[j] * id + 8.5f), hi = (int)(x[j + 16] * id + 8.5f);
            lo = lo < 0 ? 0 : lo > 15 ? 15 : lo;
            hi = hi < 0 ? 0 : hi > 15 ? 15 : hi;
            dst[2 + j] = (uint8_t)(lo | hi << 4);
        }
    }
}

int ggml_quantize(uint32_t type, const float *src, void *dst, size_t n)
{
    uint8_t *d = dst;
    switch (type) {
    case GGML_F32: memcpy(dst, src, n * 4); return 0;
    case GGML_F16: for (size_t i = 0; i < n; i++) store_u16(d + 2 * i, float_to_fp16(src[i])); return 0;
    case GGML_BF16: for (size_t i = 0; i < n; i++) store_u16(d + 2 * i, float_to_bf16(src[i])); return 0;
    case GGML_Q8_0: if (n % 32) return -1; quant_q8_0(src, d, n / 32); return 0;
    case GGML_Q4_0: if (n % 32) return -1; quant_q4_0(src, d, n / 32); return 0;
    default: return -1;
    }
}
