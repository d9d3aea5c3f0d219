#include "attention.h"

#include <cblas.h>
#include <math.h>

#include "softmax.h"

/* The keys before the block in one sgemm; the block's own triangle in
 * strips of DIAGONAL_ROWS rows, so that little above the diagonal is
 * computed for nothing.  Every logit is the same dot product either way. */
#define DIAGONAL_ROWS 64

void attention_logits(const float *q, const float *k, int d, int t0, int n, float *out, long ld)
{
    float scale = 1.0f / sqrtf((float)d);
    if (t0 > 0)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, t0, d, scale, q + (size_t)t0 * d, d, k, d, 0.0f, out,
                    (int)ld);
    for (int s0 = 0; s0 < n; s0 += DIAGONAL_ROWS) {
        int m = n - s0 < DIAGONAL_ROWS ? n - s0 : DIAGONAL_ROWS;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, s0 + m, d, scale, q + (size_t)(t0 + s0) * d, d,
                    k + (size_t)t0 * d, d, 0.0f, out + (size_t)s0 * ld + t0, (int)ld);
    }
}

int attention_softmax_row(float *row, int t)
{
    float max, sum = softmax_inplace_sum(row, t + 1, &max);
    return isfinite(max) && isfinite(sum) && sum > 0 ? 0 : -1;
}

int attention_block(const float *q, const float *k, int d, int t0, int n, float *out, long ld, int *bad_row)
{
    attention_logits(q, k, d, t0, n, out, ld);
    for (int r = 0; r < n; r++)
        if (attention_softmax_row(out + r * ld, t0 + r)) {
            *bad_row = t0 + r;
            return -1;
        }
    return 0;
}

int attention_block_rows(int T, int heads)
{
    enum { BLOCK_BYTES = 32 << 20, MIN_ROWS = 16, MAX_ROWS = 256 };
    long rows = BLOCK_BYTES / ((long)T * (heads > 0 ? heads : 1) * (long)sizeof(float));
    rows = rows < MIN_ROWS ? MIN_ROWS : rows > MAX_ROWS ? MAX_ROWS : rows;
    return (int)(rows / 16 * 16);
}
