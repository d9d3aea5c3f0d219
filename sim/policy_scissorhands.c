/* scissorhands (Liu et al. 2023, "persistence of importance"): a token that
 * drew more than its share of attention recently will draw it again.  Score =
 * the number of the last `window` observed rows in which the token's
 * observed attention r_t'(i) was at least the uniform share G/|C_t'| (G: the
 * unit's query heads, which is the row's total since each head's row sums to
 * one over the held tokens; |C_t'|: tokens held at row t').  The window's own
 * tokens (i > t - window) are protected, as the paper protects the recent
 * history; the lowest count goes first, the oldest on ties.
 *
 * Counts are kept per position and updated incrementally: each row adds one
 * to the tokens at or above the share and the row leaving the window takes
 * its own back (rows kept as token lists in a ring).
 * Cost per step: O(B) update, O(B) scan. */
#include <math.h>
#include <stdlib.h>

#include "policy.h"

enum { SCISSOR_WINDOW };
static const PolicyParam SCISSOR_PARAMS[] = {
    {"window", PARAM_COUNT, "32", 1, 1 << 30, 0, NULL, "rows counted; the window's tokens are protected",
     SHRINK_HALF_BUDGET},
};

typedef struct {
    int *count;      /* [capacity] rows of the window at or above the share, by position */
    int *ring;       /* [rows][capacity+1] the tokens each row of the window counted */
    int *ring_len;   /* [rows] */
    int rows, rows_seen;
} ScissorState;

static int scissorhands_init(Policy *p, KvError *err)
{
    int w = (int)policy_param(p, SCISSOR_WINDOW);
    size_t cap = (size_t)p->capacity + 1;
    ScissorState *s = calloc(1, sizeof *s);
    p->recent = w;
    p->priv = s;
    if (!s) return kv_fail(err, "out of memory for scissorhands' %d-row window", w);
    s->rows = (size_t)w < cap ? w : (int)cap; /* a unit observes at most capacity rows: the ring never wraps */
    s->count = calloc(cap, sizeof *s->count);
    s->ring = malloc((size_t)s->rows * cap * sizeof *s->ring);
    s->ring_len = calloc((size_t)s->rows, sizeof *s->ring_len);
    if (!s->count || !s->ring || !s->ring_len) return kv_fail(err, "out of memory for scissorhands' %d-row window", w);
    return 0;
}

static void scissorhands_destroy(Policy *p)
{
    ScissorState *s = p->priv;
    if (!s) return;
    free(s->count);
    free(s->ring);
    free(s->ring_len);
    free(s);
    p->priv = NULL;
}

static void scissorhands_observe(Policy *p, const float *r, int t)
{
    (void)t;
    ScissorState *s = p->priv;
    int slot = s->rows_seen % s->rows, *row = s->ring + (size_t)slot * (p->capacity + 1);
    if (s->rows_seen >= s->rows) /* the oldest row leaves the window */
        for (int j = 0; j < s->ring_len[slot]; j++) s->count[row[j]]--;
    double total = 0;
    for (int j = 0; j < p->n; j++) total += r[j];
    double share = round(total) / p->n; /* G / |C_t| */
    int n = 0;
    for (int j = 0; j < p->n; j++)
        if (r[j] >= share) {
            row[n++] = p->tokens[j];
            s->count[p->tokens[j]]++;
        }
    s->ring_len[slot] = n;
    s->rows_seen++;
    for (int j = 0; j < p->n; j++) p->score[j] = (float)s->count[p->tokens[j]];
}

const PolicyOps POLICY_SCISSORHANDS = {
    .name = "scissorhands", .params = SCISSOR_PARAMS, .n_params = 1, .cost = "O(B)", .kind = KIND_SCAN,
    .uses_attention = 1, .comparable_scores = 1, .init = scissorhands_init, .destroy = scissorhands_destroy, .observe = scissorhands_observe,
};
