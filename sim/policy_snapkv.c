/* snapkv (Li et al. 2024): score = max-pool (width `kernel`, over neighbouring
 * held tokens) of the attention summed over the last `window` observed rows;
 * the window's own tokens (i > t - window) are protected.
 *
 * The window sum of each held token lives in its slot (p->sums, double, so
 * the add/subtract drift stays far below float resolution) and is updated
 * incrementally: each step subtracts the row that leaves the window, then
 * adds the new one, as a per-position sum would (the same operations on the
 * same numbers in the same order, so the same bits).  Rows are kept in a ring
 * in the slot order of their step.
 * Cost per step: O(B) update, O(B * kernel) victim scan, both on vectors,
 * and O(k log B) to place the k tokens removed within the window. */
#include <immintrin.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "policy.h"

enum { SNAPKV_WINDOW, SNAPKV_KERNEL };
static const PolicyParam SNAPKV_PARAMS[] = {
    {"window", PARAM_COUNT, "32", 1, 1 << 30, 0, NULL, "observation window in rows; its tokens are protected",
     SHRINK_HALF_BUDGET},
    {"kernel", PARAM_COUNT, "5", 0, 1 << 30, 0, NULL, "max-pooling width over neighbouring tokens (odd)",
     SHRINK_NEVER},
};

/* Row s of the window lives in ring row s % rows; rows = window + 1, so the
 * new row never overwrites the one leaving while it is still being read.
 * A row keeps only its values, in the slot order of its step.  Which token
 * each belongs to follows from the tokens held now and those removed since
 * (a log of removals, told by policy.c), because since then tokens have
 * only left the cache or entered after every token of the row: the row's
 * tokens are the held ones up to its newest, with the removed ones put back
 * in their places.  So no row's token list is copied or compared. */
typedef struct {
    int rows;            /* ring rows: window + 1 (or capacity: then no row ever leaves) */
    float *ring_values;  /* [rows][capacity+1]: a row's observed attention, in slot order */
    int *ring_len;       /* [rows] its slots */
    int *ring_last;      /* [rows] its newest token (-1: none) */
    int rows_seen;
    int log_size;        /* capacity + 1: a unit removes at most the tokens it inserted */
    int *removed_token;  /* [log_size] ring of removals, oldest first ... */
    int *removed_after;  /* ... and the rows observed before each */
    int log_first, log_n;
    int *gone;           /* [log_size] scratch: the leaving row's tokens removed since, increasing */
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
    size_t rows = (size_t)w + 1 < cap ? (size_t)w + 1 : cap;
    if (s) {
        s->rows = (int)rows;
        s->log_size = (int)cap;
        s->ring_values = malloc(rows * cap * sizeof *s->ring_values);
        s->ring_len = calloc(rows, sizeof *s->ring_len);
        s->ring_last = calloc(rows, sizeof *s->ring_last);
        s->removed_token = malloc(cap * sizeof *s->removed_token);
        s->removed_after = malloc(cap * sizeof *s->removed_after);
        s->gone = malloc(cap * sizeof *s->gone);
    }
    p->priv = s;
    if (!s || !s->ring_values || !s->ring_len || !s->ring_last || !s->removed_token || !s->removed_after || !s->gone)
        return kv_fail(err, "out of memory for snapkv's %d-row window", w);
    return 0;
}

static void snapkv_destroy(Policy *p)
{
    SnapState *s = p->priv;
    if (!s) return;
    free(s->ring_values);
    free(s->ring_len);
    free(s->ring_last);
    free(s->removed_token);
    free(s->removed_after);
    free(s->gone);
    free(s);
    p->priv = NULL;
}

static void snapkv_removed(Policy *p, int slot)
{
    SnapState *s = p->priv;
    int at = (s->log_first + s->log_n++) % s->log_size;
    s->removed_token[at] = p->tokens[slot];
    s->removed_after[at] = s->rows_seen;
}

static int compare_int(const void *a, const void *b)
{
    int x = *(const int *)a, y = *(const int *)b;
    return (x > y) - (x < y);
}

/* The tokens of the row observed as the row_seen-th (0 first), whose newest
 * token is `last`, removed since: into s->gone in increasing order; returns
 * how many.  Removals before that row matter to no later row either: they
 * leave the log. */
static int removed_since(SnapState *s, int row_seen, int last)
{
    while (s->log_n > 0 && s->removed_after[s->log_first] <= row_seen) {
        s->log_first = (s->log_first + 1) % s->log_size;
        s->log_n--;
    }
    int k = 0;
    for (int i = 0, at = s->log_first; i < s->log_n; i++, at = at + 1 < s->log_size ? at + 1 : 0)
        if (s->removed_token[at] <= last) s->gone[k++] = s->removed_token[at]; /* else it entered after the row */
    if (k > 32) { /* a prompt compressed at once */
        qsort(s->gone, (size_t)k, sizeof *s->gone, compare_int);
        return k;
    }
    for (int i = 1; i < k; i++) { /* one removal per step: a few dozen */
        int token = s->gone[i], at = i;
        for (; at > 0 && s->gone[at - 1] > token; at--) s->gone[at] = s->gone[at - 1];
        s->gone[at] = token;
    }
    return k;
}

/* Slots [from, to) of the window's step: the new row r[j] = g[j] * factor
 * (a float product) goes into fresh[j] and is added to sums[j], after
 * old[j] (the leaving row's value of the token) is subtracted:
 * (sums[j] - old) + r, the order a per-token sum would take.  add_run: the
 * tokens that entered after the leaving row, with nothing to subtract. */
__attribute__((target_clones("avx512f", "avx2", "default")))
static void slide_run(double *restrict sums, const float *restrict g, float factor, const float *restrict old,
                      float *restrict fresh, int from, int to)
{
    for (int j = from; j < to; j++) {
        float r = g[j] * factor;
        fresh[j] = r;
        sums[j] = (sums[j] - (double)old[j]) + (double)r;
    }
}

__attribute__((target_clones("avx512f", "avx2", "default")))
static void add_run(double *restrict sums, const float *restrict g, float factor, float *restrict fresh, int from,
                    int to)
{
    for (int j = from; j < to; j++) {
        float r = g[j] * factor;
        fresh[j] = r;
        sums[j] += (double)r;
    }
}

static void snapkv_observe(Policy *p, const float *g, float factor, int t)
{
    (void)t;
    SnapState *s = p->priv;
    int w = (int)policy_param(p, SNAPKV_WINDOW), now = s->rows_seen % s->rows;
    size_t cap = (size_t)p->capacity + 1;
    float *fresh = s->ring_values + (size_t)now * cap;
    int j = 0;
    if (s->rows_seen >= w) { /* the oldest row leaves the window */
        int old = (s->rows_seen - w) % s->rows;
        const float *old_values = s->ring_values + (size_t)old * cap;
        int k = removed_since(s, s->rows_seen - w, s->ring_last[old]);
        /* held slot j of the row's tokens was slot j + (its tokens removed before it) then */
        for (int q = 0; q <= k; q++) {
            int end = q < k ? policy_slots_below(p, s->gone[q]) : s->ring_len[old] - k;
            slide_run(p->sums, g, factor, old_values + q, fresh, j, end);
            j = end;
        }
    }
    add_run(p->sums, g, factor, fresh, j, p->n); /* entered since the row: nothing to subtract */
    s->ring_len[now] = p->n;
    s->ring_last[now] = p->n ? p->tokens[p->n - 1] : -1;
    s->rows_seen++;
}

/* The pooled score of slot j: the largest sum over slots j - half .. j + half
 * clipped to [0, n) (max is exact: any order gives the same number). */
static double pooled_at(const double *sums, int n, int half, int j)
{
    int first = j - half > 0 ? j - half : 0, last = j + half < n - 1 ? j + half : n - 1;
    double best = sums[first];
    for (int k = first + 1; k <= last; k++) best = sums[k] > best ? sums[k] : best;
    return best;
}

/* The victim has the least pooled score, the older slot on ties: a pass for
 * the least, a second for its first slot (stopping there).  Slots whose
 * whole kernel lies inside the cache go eight at a time, the rest (near
 * the cache's ends) one by one.  _mm512_max_pd(a, b) is a > b ? a : b and
 * _mm512_min_pd(a, b) is a < b ? a : b, as in the scalar loops. */
__attribute__((target("avx512f")))
static inline __m512d pooled8(const double *sums, int half, int j)
{
    __m512d best = _mm512_loadu_pd(sums + j - half);
    for (int o = 1 - half; o <= half; o++) best = _mm512_max_pd(_mm512_loadu_pd(sums + j + o), best);
    return best;
}

__attribute__((target("avx512f")))
static int victim_avx512(const double *sums, int n, int half, int lo, int hi)
{
    int inner_lo = lo > half ? lo : half, inner_hi = hi < n - half ? hi : n - half;
    int inner_end = inner_lo + (inner_hi > inner_lo ? (inner_hi - inner_lo) / 8 * 8 : 0);
    double least = INFINITY;
    for (int j = lo; j < hi && j < inner_lo; j++) {
        double v = pooled_at(sums, n, half, j);
        least = v < least ? v : least;
    }
    __m512d low = _mm512_set1_pd(INFINITY);
    for (int j = inner_lo; j < inner_end; j += 8) low = _mm512_min_pd(pooled8(sums, half, j), low);
    double lanes = _mm512_reduce_min_pd(low);
    least = lanes < least ? lanes : least;
    for (int j = inner_end > lo ? inner_end : lo; j < hi; j++) {
        double v = pooled_at(sums, n, half, j);
        least = v < least ? v : least;
    }
    int j = lo;
    for (; j < hi && j < inner_lo; j++)
        if (pooled_at(sums, n, half, j) == least) return j;
    __m512d target = _mm512_set1_pd(least);
    for (; j < inner_end; j += 8) {
        __mmask8 eq = _mm512_cmp_pd_mask(pooled8(sums, half, j), target, _CMP_EQ_OQ);
        if (eq) return j + __builtin_ctz(eq);
    }
    for (; j < hi; j++)
        if (pooled_at(sums, n, half, j) == least) return j;
    return lo; /* only NaN sums (NaN attention rows): the oldest */
}

static int snapkv_victim(Policy *p, int lo, int hi, int t)
{
    (void)t;
    int half = (int)policy_param(p, SNAPKV_KERNEL) / 2;
    if (__builtin_cpu_supports("avx512f")) return victim_avx512(p->sums, p->n, half, lo, hi);
    double least = INFINITY; /* the same two passes on scalars (NaN passed over) */
    for (int j = lo; j < hi; j++) {
        double v = pooled_at(p->sums, p->n, half, j);
        least = v < least ? v : least;
    }
    for (int j = lo; j < hi; j++)
        if (pooled_at(p->sums, p->n, half, j) == least) return j;
    return lo;
}

/* The pooled score the victim was ranked by. */
static float snapkv_victim_score(const Policy *p, int slot)
{
    return (float)pooled_at(p->sums, p->n, (int)policy_param(p, SNAPKV_KERNEL) / 2, slot);
}

const PolicyOps POLICY_SNAPKV = {
    .name = "snapkv", .params = SNAPKV_PARAMS, .n_params = 2, .cost = "O(B*kernel)",
    .kind = KIND_SCAN, .uses_attention = 1, .comparable_scores = 1, .uses_slot_sums = 1, .check = snapkv_check,
    .init = snapkv_init, .destroy = snapkv_destroy, .observe_scaled = snapkv_observe, .removed = snapkv_removed,
    .victim = snapkv_victim,
    .victim_score = snapkv_victim_score,
};
