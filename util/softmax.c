#include "softmax.h"

#include <math.h>

/* Cloned for AVX2 (8-wide expf) with a baseline fallback, chosen at load time
 * by CPU features.  Clang 14 emits the clones without the plain symbol, so
 * clang builds (the sanitizer checks) get the baseline version. */
#if !defined(__clang__) || __clang_major__ >= 15
__attribute__((target_clones("avx2", "default")))
#endif
float softmax_inplace_sum(float *x, int n, float *max_out)
{
    float max = x[0];
    for (int i = 1; i < n; i++) max = x[i] > max ? x[i] : max;
    float sum = 0.0f;
    for (int i = 0; i < n; i++) {
        x[i] = expf(x[i] - max);
        sum += x[i];
    }
    float inv = 1.0f / sum;
    for (int i = 0; i < n; i++) x[i] *= inv;
    *max_out = max;
    return sum;
}

void softmax_inplace(float *x, int n)
{
    float max;
    softmax_inplace_sum(x, n, &max);
}
