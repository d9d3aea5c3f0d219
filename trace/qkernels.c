/* Conversion kernels for every readable ggml type (qkernels.h), written once
 * with GCC/Clang vector extensions and compiled once per instruction set:
 * QK_ISA names the table (generic, avx2, avx512) and the compiler flags of
 * that build decide the instructions.
 *
 * A type is one function that decodes a block into 16-wide float vectors
 * with exactly ggml's arithmetic (separate multiply and subtract, never a
 * fused one, so every value is bit for bit ggml's), and two generic loops
 * around it: decode to memory, or multiply into the dot product's four
 * accumulators.  Vector v (elements 16v..16v+15) always goes to accumulator
 * v mod 4, so F32 rows and quantized rows sum in the same order. */
#include <stdint.h>
#include <string.h>

#include "qkernels.h"

#if defined(__AVX2__) || defined(__AVX512F__)
#include <immintrin.h>
#endif

#ifndef QK_ISA
#define QK_ISA generic
#endif
#define QK_CAT2(a, b) a##_##b
#define QK_CAT(a, b) QK_CAT2(a, b)
#define QK_STR2(a) #a
#define QK_STR(a) QK_STR2(a)

typedef float v16f __attribute__((vector_size(64)));
typedef int32_t v16i __attribute__((vector_size(64)));
typedef uint32_t v16u __attribute__((vector_size(64)));
typedef uint8_t v16b __attribute__((vector_size(16)));
typedef int8_t v16c __attribute__((vector_size(16)));
typedef uint16_t v16h __attribute__((vector_size(32)));

static inline uint16_t load_u16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }

static inline float half(const uint8_t *p)
{
#ifdef __F16C__
    return _cvtsh_ss(load_u16(p));
#else
    return fp16_to_float(load_u16(p));
#endif
}

/* A broadcast that keeps the sign of zero (0 + -0 would not). */
static inline v16f splat(float f) { return (v16f){f, f, f, f, f, f, f, f, f, f, f, f, f, f, f, f}; }
static inline v16f load_f(const float *p) { v16f v; memcpy(&v, p, sizeof v); return v; }
static inline v16b load_b(const uint8_t *p) { v16b v; memcpy(&v, p, sizeof v); return v; }
static inline v16f from_u8(v16b b) { return __builtin_convertvector(__builtin_convertvector(b, v16i), v16f); }
static inline v16f from_i32(v16i i) { return __builtin_convertvector(i, v16f); }
static inline v16i widen(v16b b) { return __builtin_convertvector(b, v16i); }

/* Sixteen bytes in memory to ints, signed or not (GCC would assemble these
 * from scalars). */
static inline v16i widen_bytes(const uint8_t *p, int is_signed)
{
#if defined(__AVX512F__)
    __m128i b = _mm_loadu_si128((const __m128i *)p);
    return (v16i)(is_signed ? _mm512_cvtepi8_epi32(b) : _mm512_cvtepu8_epi32(b));
#elif defined(__AVX2__)
    union { v16i v; __m256i h[2]; } r;
    for (int i = 0; i < 2; i++) {
        __m128i b = _mm_loadl_epi64((const __m128i *)(p + 8 * i));
        r.h[i] = is_signed ? _mm256_cvtepi8_epi32(b) : _mm256_cvtepu8_epi32(b);
    }
    return r.v;
#else
    v16c c;
    memcpy(&c, p, sizeof c);
    return is_signed ? __builtin_convertvector(c, v16i) : widen(load_b(p));
#endif
}

/* 4-bit types decode through a table of the 16 values a nibble can take
 * (computed with the same multiply and subtract, so the same bits); with
 * AVX-512 one permute looks sixteen up at once. */
#if defined(__AVX512F__)
#define NIBBLE_TABLE 1
static const v16f IOTA = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};
/* Only the low 4 bits of each index count: a low nibble needs no mask. */
static inline v16f lookup(v16f table, v16i index)
{
    return (v16f)_mm512_permutexvar_ps((__m512i)index, (__m512)table);
}
/* 5-bit values: a table of 32 in two vectors; the low 5 bits of each index count. */
static inline v16f lookup32(v16f low, v16f high, v16i index)
{
    return (v16f)_mm512_permutex2var_ps((__m512)low, (__m512i)index, (__m512)high);
}
#endif


static inline v16f fma16(v16f a, v16f b, v16f c)
{
#if defined(__AVX512F__)
    return (v16f)_mm512_fmadd_ps((__m512)a, (__m512)b, (__m512)c);
#elif defined(__FMA__)
    union { v16f v; __m256 h[2]; } ua = {a}, ub = {b}, uc = {c}, r;
    r.h[0] = _mm256_fmadd_ps(ua.h[0], ub.h[0], uc.h[0]);
    r.h[1] = _mm256_fmadd_ps(ua.h[1], ub.h[1], uc.h[1]);
    return r.v;
#else
    return a * b + c;
#endif
}

/* The fixed reduction: (acc0 + acc2) + (acc1 + acc3), then lanes halved:
 * lane i += lane i + w for w = 8, 4, 2, 1.  With AVX-512 the same additions
 * in registers (the array below goes through memory, a fifth of a Q8_0 row's
 * integer dot product). */
static inline float reduce(const v16f *acc)
{
    v16f s = (acc[0] + acc[2]) + (acc[1] + acc[3]);
#if defined(__AVX512F__)
    __m512 z = (__m512)s;
    __m256 h = _mm256_add_ps(_mm512_castps512_ps256(z), _mm512_extractf32x8_ps(z, 1));
    __m128 q = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
    q = _mm_add_ps(q, _mm_movehl_ps(q, q));
    return _mm_cvtss_f32(_mm_add_ss(q, _mm_movehdup_ps(q)));
#else
    float t[16];
    memcpy(t, &s, sizeof t);
    for (int w = 8; w >= 1; w /= 2)
        for (int i = 0; i < w; i++) t[i] += t[i + w];
    return t[0];
#endif
}

/* ------------------------------------------------------------ float types (16-element "blocks") */

static inline v16f block_f32(const uint8_t *p) { v16f v; memcpy(&v, p, sizeof v); return v; }

static inline v16f block_bf16(const uint8_t *p)
{
    v16h h;
    memcpy(&h, p, sizeof h);
    v16u u = __builtin_convertvector(h, v16u) << 16;
    v16f f;
    memcpy(&f, &u, sizeof f);
    return f;
}

static inline v16f block_f16(const uint8_t *p)
{
#if defined(__AVX512F__)
    return (v16f)_mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)p));
#elif defined(__F16C__)
    union { v16f v; __m256 h[2]; } r;
    r.h[0] = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p));
    r.h[1] = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(p + 16)));
    return r.v;
#else
    /* exponent and mantissa moved into float position, then scaled by 2^112
     * (exact, subnormals included); infinities and NaNs keep an all-ones exponent */
    v16h h;
    memcpy(&h, p, sizeof h);
    v16u x = __builtin_convertvector(h, v16u);
    v16u sign = (x & 0x8000) << 16, mag = (x & 0x7fff) << 13;
    v16f f;
    memcpy(&f, &mag, sizeof f);
    f *= splat(0x1p112f);
    v16u bits;
    memcpy(&bits, &f, sizeof bits);
    v16u special = (v16u)((x & 0x7c00) == 0x7c00); /* all ones where exponent is 31 */
    bits = (bits & ~special) | (special & (0x7f800000u | mag));
    bits |= sign;
    memcpy(&f, &bits, sizeof f);
    return f;
#endif
}

#define FLOAT_TYPE(name, elem_bytes)                                                   \
    static void dequant_##name(const uint8_t *src, float *dst, int n)                  \
    {                                                                                  \
        int j = 0;                                                                     \
        for (; j + 16 <= n; j += 16) {                                                 \
            v16f w = block_##name(src + (size_t)j * (elem_bytes));                     \
            memcpy(dst + j, &w, sizeof w);                                             \
        }                                                                              \
        if (j < n) {                                                                   \
            uint8_t pad[16 * (elem_bytes)] = {0};                                      \
            memcpy(pad, src + (size_t)j * (elem_bytes), (size_t)(n - j) * (elem_bytes)); \
            v16f w = block_##name(pad);                                                \
            memcpy(dst + j, &w, (size_t)(n - j) * sizeof(float));                     \
        }                                                                              \
    }                                                                                  \
    static float dot_##name(const uint8_t *src, const float *x, int n)                 \
    {                                                                                  \
        v16f acc[4] = {{0}};                                                           \
        int j = 0;                                                                     \
        for (; j + 64 <= n; j += 64) {                                                 \
            const uint8_t *s = src + (size_t)j * (elem_bytes);                         \
            acc[0] = fma16(block_##name(s), load_f(x + j), acc[0]);                    \
            acc[1] = fma16(block_##name(s + 16 * (elem_bytes)), load_f(x + j + 16), acc[1]); \
            acc[2] = fma16(block_##name(s + 32 * (elem_bytes)), load_f(x + j + 32), acc[2]); \
            acc[3] = fma16(block_##name(s + 48 * (elem_bytes)), load_f(x + j + 48), acc[3]); \
        }                                                                              \
        for (; j + 16 <= n; j += 16)                                                   \
            acc[(j / 16) & 3] = fma16(block_##name(src + (size_t)j * (elem_bytes)), load_f(x + j), acc[(j / 16) & 3]); \
        if (j < n) { /* zero-padded: 0 * 0 adds nothing */                            \
            uint8_t pad[16 * (elem_bytes)] = {0};                                      \
            float xp[16] = {0};                                                        \
            memcpy(pad, src + (size_t)j * (elem_bytes), (size_t)(n - j) * (elem_bytes)); \
            memcpy(xp, x + j, (size_t)(n - j) * sizeof(float));                        \
            acc[(j / 16) & 3] = fma16(block_##name(pad), load_f(xp), acc[(j / 16) & 3]); \
        }                                                                              \
        return reduce(acc);                                                            \
    }

FLOAT_TYPE(f32, 4)
FLOAT_TYPE(f16, 2)
FLOAT_TYPE(bf16, 2)

/* ------------------------------------------------------------ 32-element blocks */

static inline void block_q8_0(const uint8_t *b, v16f *w)
{
    v16f d = splat(half(b));
    w[0] = from_i32(widen_bytes(b + 2, 1)) * d;
    w[1] = from_i32(widen_bytes(b + 18, 1)) * d;
}

static inline void block_q4_0(const uint8_t *b, v16f *w)
{
    v16f d = splat(half(b));
#ifdef NIBBLE_TABLE
    v16f table = (IOTA - 8) * d;
    v16i q = widen_bytes(b + 2, 0);
    w[0] = lookup(table, q);
    w[1] = lookup(table, q >> 4);
#else
    v16b q = load_b(b + 2);
    w[0] = from_i32(widen(q & 0xf) - 8) * d;
    w[1] = from_i32(widen(q >> 4) - 8) * d;
#endif
}

static inline void block_q4_1(const uint8_t *b, v16f *w)
{
    v16f d = splat(half(b)), m = splat(half(b + 2));
#ifdef NIBBLE_TABLE
    v16f table = IOTA * d + m;
    v16i q = widen_bytes(b + 4, 0);
    w[0] = lookup(table, q);
    w[1] = lookup(table, q >> 4);
#else
    v16b q = load_b(b + 4);
    w[0] = from_u8(q & 0xf) * d + m;
    w[1] = from_u8(q >> 4) * d + m;
#endif
}

/* Q5: the fifth bit of element j is bit j of a 32-bit word. */
static inline v16i fifth_bits(const uint8_t *p, int first)
{
    uint32_t qh;
    memcpy(&qh, p, 4);
    static const v16u lane = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};
    v16u bits = ((v16u){0} + qh) >> (lane + (uint32_t)first);
    return (v16i)((bits & 1) << 4);
}

static inline void block_q5_0(const uint8_t *b, v16f *w)
{
    v16f d = splat(half(b));
    v16b q = load_b(b + 6);
    w[0] = from_i32((widen(q & 0xf) | fifth_bits(b + 2, 0)) - 16) * d;
    w[1] = from_i32((widen(q >> 4) | fifth_bits(b + 2, 16)) - 16) * d;
}

static inline void block_q5_1(const uint8_t *b, v16f *w)
{
    v16f d = splat(half(b)), m = splat(half(b + 2));
    v16b q = load_b(b + 8);
    w[0] = from_i32(widen(q & 0xf) | fifth_bits(b + 4, 0)) * d + m;
    w[1] = from_i32(widen(q >> 4) | fifth_bits(b + 4, 16)) * d + m;
}

/* ------------------------------------------------------------ 256-element super-blocks */

/* Q4_K / Q5_K: eight 6-bit (scale, min) pairs packed into 12 bytes.  (One
 * vector for all eight measured slower: GCC turns the broadcasts into
 * shuffles.) */
static inline void scale_min_k4(int j, const uint8_t *s, float d, float dmin, v16f *scale, v16f *min)
{
    int sc, m;
    if (j < 4) {
        sc = s[j] & 63;
        m = s[j + 4] & 63;
    } else {
        sc = (s[j + 4] & 0xf) | ((s[j - 4] >> 6) << 4);
        m = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
    }
    *scale = splat(d * (float)sc);
    *min = splat(dmin * (float)m);
}

static inline void block_q4_K(const uint8_t *b, v16f *w)
{
    float d = half(b), dmin = half(b + 2);
    const uint8_t *q = b + 16;
    for (int c = 0; c < 4; c++, q += 32) {
        v16f d1, m1, d2, m2;
        scale_min_k4(2 * c, b + 4, d, dmin, &d1, &m1);
        scale_min_k4(2 * c + 1, b + 4, d, dmin, &d2, &m2);
#ifdef NIBBLE_TABLE
        v16f t1 = d1 * IOTA - m1, t2 = d2 * IOTA - m2;
        v16i lo = widen_bytes(q, 0), hi = widen_bytes(q + 16, 0);
        w[4 * c + 0] = lookup(t1, lo);
        w[4 * c + 1] = lookup(t1, hi);
        w[4 * c + 2] = lookup(t2, lo >> 4);
        w[4 * c + 3] = lookup(t2, hi >> 4);
#else
        v16b lo = load_b(q), hi = load_b(q + 16);
        w[4 * c + 0] = d1 * from_u8(lo & 0xf) - m1;
        w[4 * c + 1] = d1 * from_u8(hi & 0xf) - m1;
        w[4 * c + 2] = d2 * from_u8(lo >> 4) - m2;
        w[4 * c + 3] = d2 * from_u8(hi >> 4) - m2;
#endif
    }
}

static inline void block_q5_K(const uint8_t *b, v16f *w)
{
    float d = half(b), dmin = half(b + 2);
    const uint8_t *q = b + 48;
#ifdef NIBBLE_TABLE
    v16i h0 = widen_bytes(b + 16, 0), h1 = widen_bytes(b + 32, 0);
    for (int c = 0; c < 4; c++, q += 32) {
        v16f d1, m1, d2, m2;
        scale_min_k4(2 * c, b + 4, d, dmin, &d1, &m1);
        scale_min_k4(2 * c + 1, b + 4, d, dmin, &d2, &m2);
        v16f t1 = d1 * IOTA - m1, u1 = d1 * (IOTA + 16) - m1, t2 = d2 * IOTA - m2, u2 = d2 * (IOTA + 16) - m2;
        v16i lo = widen_bytes(q, 0), hi = widen_bytes(q + 16, 0);
        /* index = nibble | fifth bit << 4 (bits above 4 are ignored) */
        w[4 * c + 0] = lookup32(t1, u1, (lo & 0xf) | ((h0 >> (2 * c)) & 1) << 4);
        w[4 * c + 1] = lookup32(t1, u1, (hi & 0xf) | ((h1 >> (2 * c)) & 1) << 4);
        w[4 * c + 2] = lookup32(t2, u2, (lo >> 4) | ((h0 >> (2 * c + 1)) & 1) << 4);
        w[4 * c + 3] = lookup32(t2, u2, (hi >> 4) | ((h1 >> (2 * c + 1)) & 1) << 4);
    }
#else
    v16b h0 = load_b(b + 16), h1 = load_b(b + 32);
    for (int c = 0; c < 4; c++, q += 32) {
        v16f d1, m1, d2, m2;
        scale_min_k4(2 * c, b + 4, d, dmin, &d1, &m1);
        scale_min_k4(2 * c + 1, b + 4, d, dmin, &d2, &m2);
        v16b lo = load_b(q), hi = load_b(q + 16);
        v16b a0 = ((h0 >> (2 * c)) & 1) << 4, a1 = ((h1 >> (2 * c)) & 1) << 4;
        v16b b0 = ((h0 >> (2 * c + 1)) & 1) << 4, b1 = ((h1 >> (2 * c + 1)) & 1) << 4;
        w[4 * c + 0] = d1 * from_u8((lo & 0xf) + a0) - m1;
        w[4 * c + 1] = d1 * from_u8((hi & 0xf) + a1) - m1;
        w[4 * c + 2] = d2 * from_u8((lo >> 4) + b0) - m2;
        w[4 * c + 3] = d2 * from_u8((hi >> 4) + b1) - m2;
    }
#endif
}

static inline void block_q6_K(const uint8_t *b, v16f *w)
{
    const uint8_t *ql = b, *qh = b + 128;
    const int8_t *sc = (const int8_t *)(b + 192);
    float d = half(b + 208);
    for (int h = 0; h < 2; h++, ql += 64, qh += 32, sc += 8, w += 8)
        for (int s = 0; s < 2; s++) { /* elements l = 16s .. 16s+15 of each quarter */
            v16b l0 = load_b(ql + 16 * s), l1 = load_b(ql + 32 + 16 * s), hb = load_b(qh + 16 * s);
            v16i q1 = widen((l0 & 0xf) | ((hb & 3) << 4)) - 32;
            v16i q2 = widen((l1 & 0xf) | (((hb >> 2) & 3) << 4)) - 32;
            v16i q3 = widen((l0 >> 4) | (((hb >> 4) & 3) << 4)) - 32;
            v16i q4 = widen((l1 >> 4) | (((hb >> 6) & 3) << 4)) - 32;
            w[0 + s] = splat(d * (float)sc[s + 0]) * from_i32(q1);
            w[2 + s] = splat(d * (float)sc[s + 2]) * from_i32(q2);
            w[4 + s] = splat(d * (float)sc[s + 4]) * from_i32(q3);
            w[6 + s] = splat(d * (float)sc[s + 6]) * from_i32(q4);
        }
}

/* Q2_K / Q3_K: vector k (16 elements) reads 2-bit fields of bytes
 * 32*(k/8) + 16*(k%2) .. +15 at shift 2*((k%8)/2). */
static inline v16b two_bits(const uint8_t *qs, int k)
{
    return (load_b(qs + 32 * (k / 8) + 16 * (k % 2)) >> (2 * ((k % 8) / 2))) & 3;
}

static inline void block_q2_K(const uint8_t *b, v16f *w)
{
    float d = half(b + 80), dmin = half(b + 82);
    for (int k = 0; k < 16; k++) {
        int sc = b[k];
        w[k] = splat(d * (float)(sc & 0xf)) * from_u8(two_bits(b + 16, k)) - splat(dmin * (float)(sc >> 4));
    }
}

static inline void block_q3_K(const uint8_t *b, v16f *w)
{
    const uint8_t *hmask = b, *qs = b + 32, *s = b + 96;
    float d = half(b + 108);
    for (int k = 0; k < 16; k++) {
        /* 6-bit scale k: low nibble from byte k%8 (k < 8: low, else high), top 2 bits from byte 8 + k%4 */
        int low = k < 8 ? s[k] & 0xf : s[k - 8] >> 4;
        int scale = (low | ((s[8 + k % 4] >> (2 * (k / 4))) & 3) << 4) - 32;
        v16b high = (load_b(hmask + 16 * (k % 2)) >> (4 * (k / 8) + (k % 8) / 2)) & 1;
        v16i q = widen(two_bits(qs, k) | (high << 2)) - 4;
        w[k] = splat(d * (float)scale) * from_i32(q);
    }
}

/* ------------------------------------------------------------ the loops around a block */

/* Decoding to memory, for any block size. */
#define DEQUANT_BLOCKS(name, elems, bytes)                                              \
    static void dequant_##name(const uint8_t *src, float *dst, int n)                   \
    {                                                                                   \
        v16f w[(elems) / 16];                                                           \
        for (int j = 0; j < n; j += (elems), src += (bytes)) {                          \
            block_##name(src, w);                                                       \
            memcpy(dst + j, w, sizeof w);                                               \
        }                                                                               \
    }

#define BLOCK32_TYPE(name, bytes)                                                       \
    DEQUANT_BLOCKS(name, 32, bytes)                                                     \
    static float dot_##name(const uint8_t *src, const float *x, int n)                  \
    {                                                                                   \
        v16f acc[4] = {{0}}, w[2], u[2];                                                \
        int j = 0;                                                                      \
        for (; j + 64 <= n; j += 64, src += 2 * (bytes)) {                              \
            block_##name(src, w);                                                       \
            block_##name(src + (bytes), u);                                             \
            acc[0] = fma16(w[0], load_f(x + j), acc[0]);                                \
            acc[1] = fma16(w[1], load_f(x + j + 16), acc[1]);                           \
            acc[2] = fma16(u[0], load_f(x + j + 32), acc[2]);                           \
            acc[3] = fma16(u[1], load_f(x + j + 48), acc[3]);                           \
        }                                                                               \
        if (j < n) {                                                                    \
            block_##name(src, w);                                                       \
            acc[0] = fma16(w[0], load_f(x + j), acc[0]);                                \
            acc[1] = fma16(w[1], load_f(x + j + 16), acc[1]);                           \
        }                                                                               \
        return reduce(acc);                                                             \
    }

#define BLOCK256_TYPE(name, bytes)                                                      \
    DEQUANT_BLOCKS(name, 256, bytes)                                                    \
    static float dot_##name(const uint8_t *src, const float *x, int n)                  \
    {                                                                                   \
        v16f acc[4] = {{0}}, w[16];                                                     \
        for (int j = 0; j < n; j += 256, src += (bytes)) {                              \
            block_##name(src, w);                                                       \
            for (int i = 0; i < 16; i += 4) {                                           \
                acc[0] = fma16(w[i], load_f(x + j + 16 * i), acc[0]);                   \
                acc[1] = fma16(w[i + 1], load_f(x + j + 16 * i + 16), acc[1]);          \
                acc[2] = fma16(w[i + 2], load_f(x + j + 16 * i + 32), acc[2]);          \
                acc[3] = fma16(w[i + 3], load_f(x + j + 16 * i + 48), acc[3]);          \
            }                                                                           \
        }                                                                               \
        return reduce(acc);                                                             \
    }

BLOCK32_TYPE(q8_0, 34)
BLOCK32_TYPE(q4_0, 18)
BLOCK32_TYPE(q4_1, 20)
BLOCK32_TYPE(q5_0, 22)
BLOCK32_TYPE(q5_1, 24)
BLOCK256_TYPE(q2_K, 84)
BLOCK256_TYPE(q3_K, 110)
BLOCK256_TYPE(q4_K, 144)
BLOCK256_TYPE(q5_K, 176)
BLOCK256_TYPE(q6_K, 210)

/* ------------------------------------------------------------ products with a 16-bit integer vector */

#if defined(__AVX512BW__)
/* Q4_K against X16: per sub-block of 32, the nibbles' products with x's
 * ints summed pairwise into 32-bit lanes (exact), then scaled in float by
 * d * scale * x's scale; the minimums' term from x's sums over 32.  One fixed
 * order: any thread gives the same bits. */
/* The eight 6-bit scales (bytes 0-7) and minimums (bytes 8-15) of a Q4_K
 * block, unpacked four at a time as llama.cpp does. */
static inline void scales_mins_k4(const uint8_t *s, uint32_t out[4])
{
    uint32_t u[3];
    memcpy(u, s, 12);
    out[0] = u[0] & 0x3f3f3f3f;
    out[1] = (u[2] & 0x0f0f0f0f) | ((u[0] >> 6) & 0x03030303) << 4;
    out[2] = u[1] & 0x3f3f3f3f;
    out[3] = ((u[2] >> 4) & 0x0f0f0f0f) | ((u[1] >> 6) & 0x03030303) << 4;
}

static float dot_x16_q4_K(const uint8_t *src, const X16 *x, int n)
{
    __m512 acc[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps()};
    __m256 mins = _mm256_setzero_ps();
    const __m512i low4 = _mm512_set1_epi16(0xf);
    for (int blk = 0; blk < n / 256; blk++, src += 144) {
        uint32_t sm[4];
        scales_mins_k4(src + 4, sm);
        __m256 dx = _mm256_loadu_ps(x->scale + 8 * blk);
        __m256 sc = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)sm)));
        __m256 m = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(sm + 2))));
        __m256 xsum = _mm256_mul_ps(dx, _mm256_cvtepi32_ps(_mm256_loadu_si256((const __m256i *)(x->sum32 + 8 * blk))));
        /* per sub-block: d * scale * x's scale; minimums: dmin * min * x's sum */
        float scale[8];
        _mm256_storeu_ps(scale, _mm256_mul_ps(_mm256_mul_ps(_mm256_set1_ps(half(src)), sc), dx));
        mins = _mm256_add_ps(mins, _mm256_mul_ps(_mm256_set1_ps(half(src + 2)), _mm256_mul_ps(m, xsum)));
        const uint8_t *q = src + 16;
        const int16_t *xq = x->q + 256 * blk;
#pragma GCC unroll 4
        for (int c = 0; c < 4; c++) { /* accumulator c: no long chain of dependent adds */
            __m512i b = _mm512_cvtepu8_epi16(_mm256_loadu_si256((const __m256i *)(q + 32 * c)));
            __m512i lo = _mm512_madd_epi16(_mm512_and_si512(b, low4), _mm512_loadu_si512(xq + 64 * c));
            __m512i hi = _mm512_madd_epi16(_mm512_srli_epi16(b, 4), _mm512_loadu_si512(xq + 64 * c + 32));
            acc[c] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(lo), _mm512_set1_ps(scale[2 * c]), acc[c]);
            acc[c] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(hi), _mm512_set1_ps(scale[2 * c + 1]), acc[c]);
        }
    }
    float m8[8];
    _mm256_storeu_ps(m8, mins);
    v16f lanes[4] = {(v16f)acc[0], (v16f)acc[1], (v16f)acc[2], (v16f)acc[3]};
    return reduce(lanes) - (((m8[0] + m8[1]) + (m8[2] + m8[3])) + ((m8[4] + m8[5]) + (m8[6] + m8[7])));
}

/* Q6_K against X16: (6-bit value - 32) * 8-bit scale (|.| <= 4096) as 16-bit
 * ints, multiplied pairwise with x's ints, per 32 elements scaled in float. */
static float dot_x16_q6_K(const uint8_t *src, const X16 *x, int n)
{
    __m512 acc[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps()};
    const __m512i low4 = _mm512_set1_epi16(0xf), two = _mm512_set1_epi16(3), bias = _mm512_set1_epi16(32);
    for (int blk = 0; blk < n / 256; blk++, src += 210) {
        const int8_t *sc = (const int8_t *)(src + 192);
        const int16_t *xq = x->q + 256 * blk;
        const float *dx = x->scale + 8 * blk;
        float d = half(src + 208);
#pragma GCC unroll 2
        for (int h = 0; h < 2; h++) {
            const uint8_t *ql = src + 64 * h, *qh = src + 128 + 32 * h;
            __m512i l0 = _mm512_cvtepu8_epi16(_mm256_loadu_si256((const __m256i *)ql));
            __m512i l1 = _mm512_cvtepu8_epi16(_mm256_loadu_si256((const __m256i *)(ql + 32)));
            __m512i hb = _mm512_cvtepu8_epi16(_mm256_loadu_si256((const __m256i *)qh));
            __m512i quarter[4] = {
                _mm512_or_si512(_mm512_and_si512(l0, low4), _mm512_slli_epi16(_mm512_and_si512(hb, two), 4)),
                _mm512_or_si512(_mm512_and_si512(l1, low4), _mm512_slli_epi16(_mm512_and_si512(_mm512_srli_epi16(hb, 2), two), 4)),
                _mm512_or_si512(_mm512_srli_epi16(l0, 4), _mm512_slli_epi16(_mm512_and_si512(_mm512_srli_epi16(hb, 4), two), 4)),
                _mm512_or_si512(_mm512_srli_epi16(l1, 4), _mm512_slli_epi16(_mm512_srli_epi16(hb, 6), 4))};
#pragma GCC unroll 4
            for (int k = 0; k < 4; k++) {
                /* lanes 0-15 take scale 2k, lanes 16-31 scale 2k + 1 */
                __m512i scale = _mm512_mask_blend_epi16(0xffff0000u, _mm512_set1_epi16(sc[8 * h + 2 * k]),
                                                        _mm512_set1_epi16(sc[8 * h + 2 * k + 1]));
                __m512i w = _mm512_mullo_epi16(_mm512_sub_epi16(quarter[k], bias), scale);
                __m512i sum = _mm512_madd_epi16(w, _mm512_loadu_si512(xq + 128 * h + 32 * k));
                acc[k] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sum), _mm512_set1_ps(d * dx[4 * h + k]), acc[k]);
            }
        }
    }
    v16f lanes[4] = {(v16f)acc[0], (v16f)acc[1], (v16f)acc[2], (v16f)acc[3]};
    return reduce(lanes);
}

/* The 32-element types with one scale d (Q8_0, Q5_0) against X16: a block's
 * values as 32 16-bit ints, multiplied pairwise with x's ints (a pair sums to
 * at most 2 * 128 * 32767 < 2^24 in magnitude, so even its float conversion
 * is exact), the 16 lane sums scaled by d * x's scale.  Block b goes to
 * accumulator b mod 4.  In cache, one core, rows of 2048: Q8_0 42 against
 * 32 G values/s of the float dot, Q5_0 29 against 17.  Q4_0 stays with the
 * float dot: its nibble table made that faster (37) than the integer one
 * (35). */
static inline __m512i x16_weights_q8_0(const uint8_t *b)
{
    return _mm512_cvtepi8_epi16(_mm256_loadu_si256((const __m256i *)(b + 2)));
}

/* Sixteen bytes of nibbles: elements 0-15 the low ones, 16-31 the high ones. */
static inline __m512i nibbles16(const uint8_t *p)
{
    __m256i q = _mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)p));
    __m256i lo = _mm256_and_si256(q, _mm256_set1_epi16(0xf)), hi = _mm256_srli_epi16(q, 4);
    return _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1);
}

/* Q5_0: the fifth bit of element j is bit j of the 32-bit word at byte 2. */
static inline __m512i x16_weights_q5_0(const uint8_t *b)
{
    uint32_t qh;
    memcpy(&qh, b + 2, 4);
    __m512i q = nibbles16(b + 6), sixteen = _mm512_set1_epi16(16);
    return _mm512_sub_epi16(_mm512_mask_add_epi16(q, _cvtu32_mask32(qh), q, sixteen), sixteen);
}

/* A block's product into its accumulator, and the loop around it: four blocks at a time. */
#define BLOCK32_X16(name, bytes)                                                                      \
    static inline __m512 x16_block_##name(const uint8_t *b, const int16_t *xq, float dx, __m512 acc) \
    {                                                                                                 \
        __m512i sum = _mm512_madd_epi16(x16_weights_##name(b), _mm512_loadu_si512(xq));              \
        return _mm512_fmadd_ps(_mm512_cvtepi32_ps(sum), _mm512_set1_ps(half(b) * dx), acc);          \
    }                                                                                                 \
    static float dot_x16_##name(const uint8_t *src, const X16 *x, int n)                              \
    {                                                                                                 \
        __m512 acc[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps()}; \
        int blocks = n / 32, b = 0;                                                                   \
        for (; b + 4 <= blocks; b += 4)                                                               \
            _Pragma("GCC unroll 4") for (int c = 0; c < 4; c++)                                       \
                acc[c] = x16_block_##name(src + (size_t)(b + c) * (bytes), x->q + 32 * (b + c), x->scale[b + c], acc[c]); \
        for (; b < blocks; b++)                                                                       \
            acc[b & 3] = x16_block_##name(src + (size_t)b * (bytes), x->q + 32 * b, x->scale[b], acc[b & 3]); \
        v16f lanes[4] = {(v16f)acc[0], (v16f)acc[1], (v16f)acc[2], (v16f)acc[3]};                     \
        return reduce(lanes);                                                                         \
    }

BLOCK32_X16(q8_0, 34)
BLOCK32_X16(q5_0, 22)

#define X16_Q4_K dot_x16_q4_K
#define X16_Q6_K dot_x16_q6_K
#define X16_Q8_0 dot_x16_q8_0
#define X16_Q5_0 dot_x16_q5_0
#else
#define X16_Q4_K NULL
#define X16_Q6_K NULL
#define X16_Q8_0 NULL
#define X16_Q5_0 NULL
#endif

#define ENTRY(id, name) [id] = {dequant_##name, dot_##name, NULL}

const QKernels QK_CAT(qkernels, QK_ISA) = {
    .isa = QK_STR(QK_ISA),
    .type = {ENTRY(GGML_F32, f32), ENTRY(GGML_F16, f16), ENTRY(GGML_BF16, bf16), [GGML_Q8_0] = {dequant_q8_0, dot_q8_0, X16_Q8_0},
             ENTRY(GGML_Q4_0, q4_0), ENTRY(GGML_Q4_1, q4_1),
             [GGML_Q5_0] = {dequant_q5_0, dot_q5_0, X16_Q5_0}, ENTRY(GGML_Q5_1, q5_1),
             ENTRY(GGML_Q2_K, q2_K), ENTRY(GGML_Q3_K, q3_K), [GGML_Q4_K] = {dequant_q4_K, dot_q4_K, X16_Q4_K}, ENTRY(GGML_Q5_K, q5_K),
             [GGML_Q6_K] = {dequant_q6_K, dot_q6_K, X16_Q6_K}},
};
