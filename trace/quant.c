#include "quant.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "qkernels.h"

#include <immintrin.h>

/* Sizes from ggml's type traits.  Types named but with block_bytes 0 exist in
 * GGUF files kvtrace cannot read; naming them makes the refusal clear. */
static const GgmlTypeInfo TYPES[GGML_TYPE_LIMIT] = {
    [GGML_F32] = {"F32", 1, 4, 1},       [GGML_F16] = {"F16", 1, 2, 1},
    [GGML_Q4_0] = {"Q4_0", 32, 18, 1},   [GGML_Q4_1] = {"Q4_1", 32, 20, 1},
    [GGML_Q5_0] = {"Q5_0", 32, 22, 1},   [GGML_Q5_1] = {"Q5_1", 32, 24, 1},
    [GGML_Q8_0] = {"Q8_0", 32, 34, 1},   [GGML_Q8_1] = {"Q8_1", 32, 36, 0},
    [GGML_Q2_K] = {"Q2_K", 256, 84, 1},  [GGML_Q3_K] = {"Q3_K", 256, 110, 1},
    [GGML_Q4_K] = {"Q4_K", 256, 144, 1}, [GGML_Q5_K] = {"Q5_K", 256, 176, 1},
    [GGML_Q6_K] = {"Q6_K", 256, 210, 1}, [GGML_Q8_K] = {"Q8_K", 256, 292, 0},
    [16] = {"IQ2_XXS", 256, 0, 0},       [17] = {"IQ2_XS", 256, 0, 0},
    [18] = {"IQ3_XXS", 256, 0, 0},       [19] = {"IQ1_S", 256, 0, 0},
    [20] = {"IQ4_NL", 32, 0, 0},         [21] = {"IQ3_S", 256, 0, 0},
    [22] = {"IQ2_S", 256, 0, 0},         [23] = {"IQ4_XS", 256, 0, 0},
    [24] = {"I8", 1, 1, 0},              [25] = {"I16", 1, 2, 0},
    [26] = {"I32", 1, 4, 0},             [27] = {"I64", 1, 8, 0},
    [28] = {"F64", 1, 8, 0},             [29] = {"IQ1_M", 256, 0, 0},
    [GGML_BF16] = {"BF16", 1, 2, 1},     [34] = {"TQ1_0", 256, 0, 0},
    [35] = {"TQ2_0", 256, 0, 0},         [39] = {"MXFP4", 32, 0, 0},
};

const GgmlTypeInfo *ggml_type_info(uint32_t type)
{
    if (type >= GGML_TYPE_LIMIT || !TYPES[type].name) return NULL;
    return &TYPES[type];
}

int ggml_type_by_name(const char *name)
{
    for (int t = 0; t < GGML_TYPE_LIMIT; t++)
        if (TYPES[t].name && strcmp(TYPES[t].name, name) == 0) return t;
    return -1;
}

const char *ggml_readable_types(void)
{
    return "F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K";
}

size_t ggml_row_bytes(uint32_t type, uint64_t n)
{
    const GgmlTypeInfo *t = ggml_type_info(type);
    if (!t || !t->block_bytes || n % (uint64_t)t->block_elems) return 0;
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

/* Sixteen halves are loaded before their floats are stored; with in the
 * last 2n bytes of out, those stores end before the halves not yet read. */
__attribute__((target("avx,f16c")))
static size_t fp16_to_float_f16c(const uint16_t *in, float *out, size_t n)
{
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m128i low = _mm_loadu_si128((const __m128i *)(in + i)), high = _mm_loadu_si128((const __m128i *)(in + i + 8));
        __m256 a = _mm256_cvtph_ps(low), b = _mm256_cvtph_ps(high);
        _mm256_storeu_ps(out + i, a);
        _mm256_storeu_ps(out + i + 8, b);
    }
    return i;
}

void fp16_to_float_array(const uint16_t *in, float *out, size_t n)
{
    size_t i = __builtin_cpu_supports("f16c") && __builtin_cpu_supports("avx") ? fp16_to_float_f16c(in, out, n) : 0;
    for (; i < n; i++) out[i] = fp16_to_float(in[i]);
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
        float scaled = a * 16777216.0f; /* a / 2^-24, exact; then ties to even */
        uint32_t n = (uint32_t)scaled;
        float rest = scaled - (float)n;
        if (rest > 0.5f || (rest == 0.5f && (n & 1))) n++;
        return sign | (uint16_t)n;
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

/* ------------------------------------------------------------ 16-bit integer vectors */

/* Round to nearest, ties to even, as lrintf in the default rounding mode; on
 * x86-64 one instruction, where lrintf is a library call (it may set errno):
 * 2 % of a Q8_0 token's CPU, on the caller's thread before the workers start. */
static inline long round_nearest(float f)
{
#ifdef __SSE__
    return _mm_cvtss_si32(_mm_set_ss(f));
#else
    return lrintf(f);
#endif
}

void x16_quantize(const float *x, int n, X16 *out)
{
    for (int b = 0; b < n / 32; b++) {
        const float *v = x + 32 * b;
        float amax = 0;
        for (int j = 0; j < 32; j++) amax = fabsf(v[j]) > amax ? fabsf(v[j]) : amax;
        float inv = amax > 0 ? 32767.0f / amax : 0;
        int32_t sum = 0;
        for (int j = 0; j < 32; j++) {
            long r = round_nearest(v[j] * inv);
            out->q[32 * b + j] = (int16_t)(r > 32767 ? 32767 : r < -32767 ? -32767 : r);
            sum += out->q[32 * b + j];
        }
        out->scale[b] = amax / 32767.0f;
        out->sum32[b] = sum;
    }
}

/* ------------------------------------------------------------ choosing the kernels */

const QKernels *qkernels_supported(int i)
{
#ifdef KV_X86_KERNELS
    __builtin_cpu_init();
    int avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"); /* F16C comes with both */
    int avx512 = avx2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                 __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
    const QKernels *all[] = {&qkernels_generic, avx2 ? &qkernels_avx2 : NULL, avx512 ? &qkernels_avx512 : NULL};
    return i >= 0 && i < 3 ? all[i] : NULL;
#else
    return i == 0 ? &qkernels_generic : NULL;
#endif
}

static const QKernels *chosen;
static pthread_once_t chosen_once = PTHREAD_ONCE_INIT;

static void choose_kernels(void)
{
    const char *cap = getenv("KVTRACE_ISA");
    chosen = &qkernels_generic;
    for (int i = 1; qkernels_supported(i); i++) {
        if (cap && strcmp(cap, chosen->isa) == 0) break;
        chosen = qkernels_supported(i);
    }
}

const QKernels *qkernels(void)
{
    pthread_once(&chosen_once, choose_kernels);
    return chosen;
}

int ggml_dequantize(uint32_t type, const void *src, float *dst, size_t n)
{
    const GgmlTypeInfo *t = ggml_type_info(type);
    if (!t || !t->can_read || n % (size_t)t->block_elems) return -1;
    const QTypeKernels *k = &qkernels()->type[type];
    /* the kernels take int counts: convert in whole-block pieces */
    const size_t piece = (size_t)1 << 24;
    const uint8_t *s = src;
    for (size_t done = 0; done < n; done += piece) {
        size_t m = n - done < piece ? n - done : piece;
        k->dequant(s + ggml_row_bytes(type, done), dst + done, (int)m);
    }
    return 0;
}

/* ------------------------------------------------------------ block scales and finiteness */

int ggml_scale_offsets(uint32_t type, int offsets[2])
{
    static const struct { uint32_t type; int offsets[2]; int count; } SCALES[] = {
        {GGML_Q4_0, {0}, 1}, {GGML_Q4_1, {0, 2}, 2}, {GGML_Q5_0, {0}, 1}, {GGML_Q5_1, {0, 2}, 2},
        {GGML_Q8_0, {0}, 1}, {GGML_Q2_K, {80, 82}, 2}, {GGML_Q3_K, {108}, 1}, {GGML_Q4_K, {0, 2}, 2},
        {GGML_Q5_K, {0, 2}, 2}, {GGML_Q6_K, {208}, 1},
    };
    for (size_t s = 0; s < sizeof SCALES / sizeof SCALES[0]; s++)
        if (SCALES[s].type == type) {
            memcpy(offsets, SCALES[s].offsets, sizeof SCALES[s].offsets);
            return SCALES[s].count;
        }
    return 0;
}

static int half_finite(const uint8_t *p) { return ((p[1] & 0x7c) != 0x7c); }

int ggml_all_finite(uint32_t type, const void *src, size_t n)
{
    const uint8_t *p = src;
    int ok = 1;
    switch (type) {
    case GGML_F32:
        for (size_t i = 0; i < n; i++) ok &= (p[4 * i + 3] & 0x7f) != 0x7f || (p[4 * i + 2] & 0x80) == 0;
        return ok;
    case GGML_F16:
        for (size_t i = 0; i < n; i++) ok &= half_finite(p + 2 * i);
        return ok;
    case GGML_BF16:
        for (size_t i = 0; i < n; i++) ok &= (p[2 * i + 1] & 0x7f) != 0x7f || (p[2 * i] & 0x80) == 0;
        return ok;
    }
    const GgmlTypeInfo *t = ggml_type_info(type);
    int offsets[2], count = ggml_scale_offsets(type, offsets);
    if (!t || !count) return 0;
    size_t blocks = n / (size_t)t->block_elems;
    for (size_t b = 0; b < blocks; b++)
        for (int i = 0; i < count; i++) ok &= half_finite(p + b * t->block_bytes + offsets[i]);
    return ok;
}
