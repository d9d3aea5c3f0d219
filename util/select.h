/* select.h — order statistics without sorting (quickselect). */
#ifndef KV_SELECT_H
#define KV_SELECT_H

/* k-th largest (0-based) of v[0..n); v is scrambled. */
float kth_largest(float *v, int n, int k);

/* Marks in flags[0..n) the k entries of highest value (ties: lowest index);
 * scratch holds n floats. */
void top_k_flags(const float *value, int n, int k, float *scratch, unsigned char *flags);

/* top_k_flags for several k at once, in decreasing order, k[i]'s flags into
 * flags[i]: one quickselect for the largest k, then each smaller k within
 * the prefix the previous one left (the top k are among the top k' > k), so
 * the cost is about n + Σ k rather than n per k.  The same flags as one k at
 * a time. */
void top_k_flags_many(const float *value, int n, const int *k, int n_k, float *scratch, unsigned char *const *flags);

#endif
