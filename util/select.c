#include "select.h"

#include <stdint.h>
#include <string.h>
#ifdef KV_X86_KERNELS
#include <immintrin.h>
#endif

/* A float's bits as an unsigned integer in the floats' order (negatives
 * reversed, then above them the positives).  The two zeros get two keys
 * (-0 first), which only matters to the order, never to a comparison of the
 * floats themselves. */
static inline uint32_t order_key(float f)
{
    uint32_t bits;
    memcpy(&bits, &f, sizeof bits);
    return bits & 0x80000000u ? ~bits : bits | 0x80000000u;
}

static inline float key_float(uint32_t key)
{
    uint32_t bits = key & 0x80000000u ? key & 0x7fffffffu : ~key;
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

/* The k-th largest (0-based) of v[0..n) by radix selection on order keys:
 * the top 11 bits are counted, the bucket holding the k-th largest found
 * from the top, its members copied into scratch, and so on for the next 11
 * and the last 10 bits.  Each pass is a branch-free count and a copy of the
 * survivors, where quickselect's comparisons mispredict half the time. */
/* count[d] = how many of v[0..m) have digit d ((key >> shift) & mask).
 * Neighbours often share a digit (scores of one magnitude), and each
 * increment then waits for the last to be stored: long inputs count
 * alternate elements into two tables, summed at the end (twice as fast on
 * such runs); short ones, where clearing and summing the second table
 * would cost more, into one. */
static void count_digits(const float *v, int m, int shift, uint32_t mask, uint32_t *count)
{
    memset(count, 0, (mask + 1) * sizeof *count);
    if (m < 4096) {
        for (int i = 0; i < m; i++) count[(order_key(v[i]) >> shift) & mask]++;
        return;
    }
    uint32_t other[2048] = {0};
    int i = 0;
    for (; i + 2 <= m; i += 2) {
        count[(order_key(v[i]) >> shift) & mask]++;
        other[(order_key(v[i + 1]) >> shift) & mask]++;
    }
    if (i < m) count[(order_key(v[i]) >> shift) & mask]++;
    for (uint32_t d = 0; d <= mask; d++) count[d] += other[d];
}

/* Copies the v[i] whose digit is `digit` to out, in order, and returns how
 * many; out may be v (the copy never passes what it reads). */
static int keep_digit_scalar(const float *v, int m, int shift, uint32_t mask, uint32_t digit, float *out)
{
    int kept = 0;
    for (int i = 0; i < m; i++)
        if (((order_key(v[i]) >> shift) & mask) == digit) out[kept++] = v[i];
    return kept;
}

#ifdef KV_X86_KERNELS
/* The same sixteen at a time: the keys, digits and matches in vectors, the
 * matches compressed into a register and stored whole (kept <= i, so the
 * store stays inside what has been read, and inside out). */
__attribute__((target("avx512f")))
static int keep_digit_avx512(const float *v, int m, int shift, uint32_t mask, uint32_t digit, float *out)
{
    const __m512i sign = _mm512_set1_epi32((int)0x80000000u), ones = _mm512_set1_epi32(-1);
    const __m512i digit_mask = _mm512_set1_epi32((int)mask), wanted = _mm512_set1_epi32((int)digit);
    const __m128i count = _mm_cvtsi32_si128(shift);
    int kept = 0, i = 0;
    for (; i + 16 <= m; i += 16) {
        __m512i bits = _mm512_loadu_si512(v + i);
        __mmask16 negative = _mm512_test_epi32_mask(bits, sign);
        __m512i key = _mm512_mask_mov_epi32(_mm512_or_si512(bits, sign), negative, _mm512_xor_si512(bits, ones));
        __mmask16 hit = _mm512_cmpeq_epi32_mask(_mm512_and_si512(_mm512_srl_epi32(key, count), digit_mask), wanted);
        _mm512_storeu_si512(out + kept, _mm512_maskz_compress_epi32(hit, bits));
        kept += __builtin_popcount(hit);
    }
    return kept + keep_digit_scalar(v + i, m - i, shift, mask, digit, out + kept);
}
#endif

static int keep_digit(const float *v, int m, int shift, uint32_t mask, uint32_t digit, float *out)
{
#ifdef KV_X86_KERNELS
    /* a read of the CPU model's flags (set once at startup by libgcc): no state of ours */
    if (__builtin_cpu_supports("avx512f")) return keep_digit_avx512(v, m, shift, mask, digit, out);
#endif
    return keep_digit_scalar(v, m, shift, mask, digit, out);
}

static float kth_largest(const float *v, int n, int k, float *scratch)
{
    static const int SHIFT[3] = {21, 10, 0}, WIDTH[3] = {11, 11, 10};
    uint32_t prefix = 0;
    const float *cur = v;
    int m = n;
    for (int pass = 0; pass < 3; pass++) {
        uint32_t count[2048], mask = (1u << WIDTH[pass]) - 1;
        int shift = SHIFT[pass], bucket = (int)mask;
        count_digits(cur, m, shift, mask, count);
        while ((uint32_t)k >= count[bucket]) k -= (int)count[bucket--];
        prefix |= (uint32_t)bucket << shift;
        if (pass == 2) break;
        int kept = keep_digit(cur, m, shift, mask, (uint32_t)bucket, scratch);
        cur = scratch;
        m = kept;
    }
    return key_float(prefix);
}

/* The k entries above threshold, then those equal to it from the lowest index. */
static void flag_top(const float *value, int n, int k, float threshold, unsigned char *flags)
{
    int taken = 0;
    for (int i = 0; i < n; i++) taken += flags[i] = value[i] > threshold;
    for (int i = 0; i < n && taken < k; i++)
        if (value[i] == threshold) { flags[i] = 1; taken++; }
}

void top_k_flags(const float *value, int n, int k, float *scratch, unsigned char *flags)
{
    if (n <= k) {
        memset(flags, 1, (size_t)n);
        return;
    }
    memset(flags, 0, (size_t)n);
    if (k > 0) flag_top(value, n, k, kth_largest(value, n, k - 1, scratch), flags);
}
