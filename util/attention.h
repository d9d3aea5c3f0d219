/* attention.h — exact causal attention rows for the replay and the analysis,
 * computed block by block so that no T×T matrix is ever needed.
 *
 * Rows t0..t0+n-1 of softmax(q kᵀ/√d) under the causal mask: one sgemm for
 * the block (OpenBLAS; the same arithmetic as trace_layer's attention_rows,
 * so the numbers are identical), then the shared softmax kernel.  A row
 * whose logits are not finite (q·k overflowed float) is refused instead of
 * turning into NaN probabilities. */
#ifndef KV_ATTENTION_H
#define KV_ATTENTION_H

/* q, k are [T][d]; out has row stride ld and gets columns 0..t0+r of row r.
 * Returns 0, or -1 with *bad_row = the first row whose logits are not finite. */
int attention_block(const float *q, const float *k, int d, int t0, int n, float *out, long ld, int *bad_row);

/* The same in two halves, so that a consumer can normalise each row just
 * before it reads it (while the row is in cache): the logits of the block,
 * then row by row the softmax of row t (len t + 1), -1 if not finite. */
void attention_logits(const float *q, const float *k, int d, int t0, int n, float *out, long ld);
int attention_softmax_row(float *row, int t);

/* Rows per block for `heads` heads of T tokens: large enough that the sgemm
 * runs at full speed (K is repacked per block), small enough to stay modest
 * (32 MB; rows are normalised one by one just before use, while in cache). */
int attention_block_rows(int T, int heads);

#endif
