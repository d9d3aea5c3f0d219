/* select.h — order statistics without sorting (radix selection on the
 * floats' bit patterns: three counting passes, no data-dependent branches). */
#ifndef KV_SELECT_H
#define KV_SELECT_H

/* Marks in flags[0..n) the k entries of highest value (ties: lowest index);
 * scratch holds n floats. */
void top_k_flags(const float *value, int n, int k, float *scratch, unsigned char *flags);

#endif
