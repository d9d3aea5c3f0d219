/* select.h — order statistics without sorting (quickselect). */
#ifndef KV_SELECT_H
#define KV_SELECT_H

/* k-th largest (0-based) of v[0..n); v is scrambled. */
float kth_largest(float *v, int n, int k);

/* Marks in flags[0..n) the k entries of highest value (ties: lowest index);
 * scratch holds n floats. */
void top_k_flags(const float *value, int n, int k, float *scratch, unsigned char *flags);

#endif
