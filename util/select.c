#include "select.h"

#include <string.h>

float kth_largest(float *v, int n, int k)
{
    int lo = 0, hi = n - 1;
    while (lo < hi) {
        float pivot = v[(lo + hi) / 2];
        int i = lo, j = hi;
        while (i <= j) {
            while (v[i] > pivot) i++;
            while (v[j] < pivot) j--;
            if (i <= j) { float t = v[i]; v[i] = v[j]; v[j] = t; i++; j--; }
        }
        if (k <= j) hi = j;
        else if (k >= i) lo = i;
        else return v[k];
    }
    return v[k];
}

void top_k_flags(const float *value, int n, int k, float *scratch, unsigned char *flags)
{
    if (n <= k) {
        memset(flags, 1, (size_t)n);
        return;
    }
    memset(flags, 0, (size_t)n);
    if (k <= 0) return;
    memcpy(scratch, value, (size_t)n * sizeof(float));
    float threshold = kth_largest(scratch, n, k - 1);
    int taken = 0;
    for (int i = 0; i < n; i++) taken += flags[i] = value[i] > threshold;
    for (int i = 0; i < n && taken < k; i++)
        if (value[i] == threshold) { flags[i] = 1; taken++; }
}
