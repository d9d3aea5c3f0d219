/* select.h — order statistics without sorting (radix selection on the
 * floats' bit patterns: three counting passes, no data-dependent branches). */
#ifndef KV_SELECT_H
#define KV_SELECT_H

/* k-th largest (0-based, 0 <= k < n) of v[0..n); v is scrambled. */
float kth_largest(float *v, int n, int k);

/* Marks in flags[0..n) the k entries of highest value (ties: lowest index);
 * scratch holds n floats. */
void top_k_flags(const float *value, int n, int k, float *scratch, unsigned char *flags);

/* top_k_flags for several k at once, k[i]'s flags into flags[i]. */
void top_k_flags_many(const float *value, int n, const int *k, int n_k, float *scratch, unsigned char *const *flags);

#endif
