/* snapkv (Li et al. 2024): score = max-pool (width `kernel`, over neighbouring
 * held tokens) of the attention summed over the last `window` observed rows;
 * the window's own tokens (i > t - window) are protected.
 *
 * The window sum is kept per position and updated incrementally: each step
 * adds the new row and subtracts the row that leaves the window (rows are
 * kept as (token, value) lists in a ring).  Sums are double, so the
 * add/subtract drift stays far below float resolution.
 * Cost per step: O(B) update, O(B * kernel) victim scan. */
#include <stdlib.h>

#include "policy.h"

typedef struct {
    double *window_sum;  /* [capacity] by position */
    int *ring_tokens;    /* [window][capacity+1] */
    float *ring_values;  /* [window][capacity+1] */
    int *ring_len;       /* [window] */
    int rows_seen;
} SnapState;

static int snapkv_init(Policy *p, KvError *err)
{
    int w = p->spec.window;
    p->recent = w;
    SnapState *s = calloc(1, sizeof *s);
    size_t cap = (size_t)p->capacity + 1;
    if (s) {
        s->window_sum = calloc(cap, sizeof *s->window_sum);
        s->ring_tokens = malloc((size_t)w * cap * sizeof *s->ring_tokens);
        s->ring_values = malloc((size_t)w * cap * sizeof *s->ring_values);
        s->ring_len = calloc((size_t)w, sizeof *s->ring_len);
    }
    p->priv = s;
    if (!s || !s->window_sum || !s->ring_tokens || !s->ring_values || !s->ring_len)
        return kv_fail(err, "out of memory for snapkv's %d-row window", w);
    return 0;
}

static void snapkv_destroy(Policy *p)
{
    SnapState *s = p->priv;
    if (!s) return;
    free(s->window_sum);
    free(s->ring_tokens);
    free(s->ring_values);
    free(s->ring_len);
    free(s);
    p->priv = NULL;
}

static void snapkv_observe(Policy *p, const float *r, int t)
{
    (void)t;
    SnapState *s = p->priv;
    int w = p->spec.window, slot = s->rows_seen % w;
    size_t cap = (size_t)p->capacity + 1;
    int *old_tokens = s->ring_tokens + (size_t)slot * cap;
    float *old_values = s->ring_values + (size_t)slot * cap;
    if (s->rows_seen >= w) /* the oldest row leaves the window */
        for (int j = 0; j < s->ring_len[slot]; j++) s->window_sum[old_tokens[j]] -= old_values[j];
    for (int j = 0; j < p->n; j++) {
        s->window_sum[p->tokens[j]] += r[j];
        old_tokens[j] = p->tokens[j];
        old_values[j] = r[j];
    }
    s->ring_len[slot] = p->n;
    s->rows_seen++;
}

static int snapkv_victim(Policy *p, int lo, int hi, int t)
{
    (void)t;
    const SnapState *s = p->priv;
    int half = p->spec.kernel / 2, best = lo;
    double best_score = 0;
    for (int j = lo; j < hi; j++) {
        int a = j - half > 0 ? j - half : 0, b = j + half < p->n - 1 ? j + half : p->n - 1;
        double pooled = s->window_sum[p->tokens[a]];
        for (int k = a + 1; k <= b; k++)
            if (s->window_sum[p->tokens[k]] > pooled) pooled = s->window_sum[p->tokens[k]];
        if (j == lo || pooled < best_score) { /* strict: ties keep the older slot */
            best_score = pooled;
            best = j;
        }
    }
    return best;
}

const PolicyOps POLICY_SNAPKV = {
    .name = "snapkv", .defaults = "window=32,kernel=5", .keys = "window,kernel", .cost = "O(B*kernel)",
    .kind = KIND_SCAN, .uses_attention = 1, .init = snapkv_init, .destroy = snapkv_destroy,
    .observe = snapkv_observe, .victim = snapkv_victim,
};
