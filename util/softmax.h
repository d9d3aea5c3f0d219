/* softmax.h — the one softmax kernel (forward pass and replay share it).
 *
 * Compiled on its own with -O3 -ffast-math so that expf vectorises through
 * glibc's libmvec: inputs must be finite (they are: logits of finite q, k). */
#ifndef KV_SOFTMAX_H
#define KV_SOFTMAX_H

/* x[0..n) <- softmax(x[0..n)), n >= 1. */
void softmax_inplace(float *x, int n);

/* The same, returning the sum of exp(x - max) and the max, so that a caller
 * built without -ffast-math can refuse a row whose logits were not finite
 * (then the sum or the max is NaN or infinite). */
float softmax_inplace_sum(float *x, int n, float *max_out);

#endif
