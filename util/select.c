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
    top_k_flags_many(value, n, &k, 1, scratch, &flags);
}

/* kth_largest leaves v[0..k) >= v[k] >= v[k+1..n): the k largest first. */
void top_k_flags_many(const float *value, int n, const int *k, int n_k, float *scratch, unsigned char *const *flags)
{
    int prefix = n; /* scratch[0..prefix) holds the `prefix` largest values */
    for (int i = 0; i < n_k; i++) {
        if (n <= k[i]) {
            memset(flags[i], 1, (size_t)n);
            continue;
        }
        memset(flags[i], 0, (size_t)n);
        if (k[i] <= 0) continue;
        if (prefix == n) memcpy(scratch, value, (size_t)n * sizeof(float));
        float threshold = kth_largest(scratch, prefix, k[i] - 1);
        prefix = k[i];
        flag_top(value, n, k[i], threshold, flags[i]);
    }
}
