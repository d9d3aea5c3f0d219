/* snapkv (Li et al. 2024): score = max-pool (width `kernel`, over neighbouring
 * held tokens) of the attention summed over the last `window` observed rows;
 * the window's own tokens (i > t - window) are protected.
 *
 * The window sum is kept per position and updated incrementally: each step
 * adds the new row and subtracts the row that leaves the window (rows are
 * kept as (token, value) lists in a ring).  Sums are double, so the
 * add/subtract drift stays far below float resolution.
 * Cost per step: O(B) update, O(B * kernel) victim scan. */
#include <math.h>
#include <stdlib.h>

#include "policy.h"

enum { SNAPKV_WINDOW, SNAPKV_KERNEL };
static const PolicyParam SNAPKV_PARAMS[] = {
    {"window", PARAM_COUNT, "32", 1, 1 << 30, 0, NULL, "observation window in rows; its tokens are protected",
     SHRINK_HALF_BUDGET},
    {"kernel", PARAM_COUNT, "5", 0, 1 << 30, 0, NULL, "max-pooling width over neighbouring tokens (odd)",
     SHRINK_NEVER},
};

typedef struct {
    double *window_sum;  /* [capacity] by position */
    int *ring_tokens;    /* [window][capacity+1] */
    float *ring_values;  /* [window][capacity+1] */
    int *ring_len;       /* [window] */
    int rows_seen;
    double *pooled_in;   /* [capacity+1+kernel] scratch: window sums of a slot range, in slot order */
    double *pooled;      /* [capacity+1] scratch: pooled scores */
} SnapState;

static int snapkv_check(const PolicySpec *spec, KvError *err)
{
    int kernel = (int)spec->value[SNAPKV_KERNEL].number;
    if (kernel % 2 == 0) return kv_fail(err, "snapkv: kernel must be odd, got %d", kernel);
    return 0;
}

static int snapkv_init(Policy *p, KvError *err)
{
    int w = (int)policy_param(p, SNAPKV_WINDOW);
    p->recent = w;
    SnapState *s = calloc(1, sizeof *s);
    size_t cap = (size_t)p->capacity + 1;
    /* a unit observes at most capacity rows: a longer window never wraps its ring */
    size_t rows = (size_t)w < cap ? (size_t)w : cap;
    if (s) {
        s->window_sum = calloc(cap, sizeof *s->window_sum);
        s->ring_tokens = malloc(rows * cap * sizeof *s->ring_tokens);
        s->ring_values = malloc(rows * cap * sizeof *s->ring_values);
        s->ring_len = calloc(rows, sizeof *s->ring_len);
        s->pooled_in = malloc((cap + (size_t)policy_param(p, SNAPKV_KERNEL)) * sizeof *s->pooled_in);
        s->pooled = malloc(cap * sizeof *s->pooled);
    }
    p->priv = s;
    if (!s || !s->window_sum || !s->ring_tokens || !s->ring_values || !s->ring_len || !s->pooled_in || !s->pooled)
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
    free(s->pooled_in);
    free(s->pooled);
    free(s);
    p->priv = NULL;
}

static void snapkv_observe(Policy *p, const float *r, int t)
{
    (void)t;
    SnapState *s = p->priv;
    int w = (int)policy_param(p, SNAPKV_WINDOW), slot = s->rows_seen % w;
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

/* The pooled score of slot j is the largest window sum over slots
 * j-half..j+half (clipped to the cache); the victim has the least, the older
 * on ties.  The sums of the slots involved are gathered once in slot order,
 * padded with -inf where the window leaves the cache, and pooled by `kernel`
 * contiguous passes (max is exact: the same numbers as slot by slot). */
static int snapkv_victim(Policy *p, int lo, int hi, int t)
{
    (void)t;
    const SnapState *s = p->priv;
    int half = (int)policy_param(p, SNAPKV_KERNEL) / 2;
    int first = lo - half > 0 ? lo - half : 0, last = hi - 1 + half < p->n - 1 ? hi - 1 + half : p->n - 1;
    double *sum = s->pooled_in + half - first, *pooled = s->pooled; /* sum[k], k in [first - half, last + half] */
    for (int k = first - half; k < first; k++) sum[k] = -INFINITY;
    for (int k = first; k <= last; k++) sum[k] = s->window_sum[p->tokens[k]];
    for (int k = last + 1; k <= last + half; k++) sum[k] = -INFINITY;
    for (int j = lo; j < hi; j++) pooled[j] = sum[j - half];
    for (int o = 1 - half; o <= half; o++)
        for (int j = lo; j < hi; j++) pooled[j] = sum[j + o] > pooled[j] ? sum[j + o] : pooled[j];
    double least = pooled[lo]; /* then the first slot holding it: ties keep the older slot */
    for (int j = lo + 1; j < hi; j++) least = pooled[j] < least ? pooled[j] : least;
    int best = lo;
    while (pooled[best] != least) best++;
    return best;
}

/* The pooled score of a slot, as the last victim scan left it. */
static float snapkv_victim_score(const Policy *p, int slot)
{
    return (float)((const SnapState *)p->priv)->pooled[slot];
}

const PolicyOps POLICY_SNAPKV = {
    .name = "snapkv", .params = SNAPKV_PARAMS, .n_params = 2, .cost = "O(B*kernel)",
    .kind = KIND_SCAN, .uses_attention = 1, .comparable_scores = 1, .check = snapkv_check, .init = snapkv_init, .destroy = snapkv_destroy,
    .observe = snapkv_observe, .victim = snapkv_victim,
    .victim_score = snapkv_victim_score,
};
