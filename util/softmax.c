#include "softmax.h"

#include <math.h>

/* Cloned for AVX2 (8-wide expf) with a baseline fallback, chosen at load time
 * by CPU features. */
__attribute__((target_clones("avx2", "default")))
void softmax_inplace(float *x, int n)
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
}
