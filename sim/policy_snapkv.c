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
 * Cost per step: O(B) update, O(B * kernel) victim scan, both on vectors. */
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
 * new row never overwrites the one leaving while it is still being read. */
typedef struct {
    int rows;            /* ring rows: window + 1 (or capacity: then no row ever leaves) */
    int *ring_tokens;    /* [rows][capacity+1]: the tokens a row was observed on, in slot order */
    float *ring_values;  /* [rows][capacity+1]: their observed attention */
    int *ring_len;       /* [rows] */
    int rows_seen;
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
        s->ring_tokens = malloc(rows * cap * sizeof *s->ring_tokens);
        s->ring_values = malloc(rows * cap * sizeof *s->ring_values);
        s->ring_len = calloc(rows, sizeof *s->ring_len);
    }
    p->priv = s;
    if (!s || !s->ring_tokens || !s->ring_values || !s->ring_len)
        return kv_fail(err, "out of memory for snapkv's %d-row window", w);
    return 0;
}

static void snapkv_destroy(Policy *p)
{
    SnapState *s = p->priv;
    if (!s) return;
    free(s->ring_tokens);
    free(s->ring_values);
    free(s->ring_len);
    free(s);
    p->priv = NULL;
}

/* One step of the window, the update of every held token's sum in one pass:
 * the row that leaves (old_tokens/old_values, m slots, in the slot order of
 * its step) is subtracted, then the new row r[j] = g[j] * factor (a float
 * product) is added, which `new_values` receives.  Since the old row, tokens
 * have only left the cache (they never come back) or entered after its last
 * token, so both lists increase and merge: the leading lanes of sixteen
 * slots whose tokens match are updated together; at the first mismatch a
 * token that left is skipped in the old row, one that entered since only
 * adds.  (sums[j] - old) + r: the order a per-token sum would take. */
typedef struct {
    const int *tokens;
    const float *g;
    float factor;
    int n;
    const int *old_tokens;
    const float *old_values;
    int m;
    float *new_values;
} WindowStep;

static void slide_scalar(double *sums, const WindowStep *w, int i, int j)
{
    for (; j < w->n; j++) {
        while (i < w->m && w->old_tokens[i] < w->tokens[j]) i++; /* left the cache since */
        float r = w->g[j] * w->factor;
        w->new_values[j] = r;
        if (i < w->m && w->old_tokens[i] == w->tokens[j]) sums[j] -= w->old_values[i++];
        sums[j] += r;
    }
}

__attribute__((target("avx512f")))
static void slide_avx512(double *sums, const WindowStep *w)
{
    const __m256 factor = _mm256_set1_ps(w->factor);
    int i = 0, j = 0;
    while (i + 16 <= w->m && j + 16 <= w->n) {
        unsigned same = _mm512_cmpeq_epi32_mask(_mm512_loadu_si512(w->old_tokens + i), _mm512_loadu_si512(w->tokens + j));
        int run = same == 0xffff ? 16 : __builtin_ctz(~same);
        unsigned take = (1u << run) - 1;
        for (int half = 0; half < 16; half += 8) {
            __m256 r8 = _mm256_mul_ps(_mm256_loadu_ps(w->g + j + half), factor);
            _mm256_storeu_ps(w->new_values + j + half, r8); /* lanes past the run are rewritten later */
            __m512d old = _mm512_cvtps_pd(_mm256_loadu_ps(w->old_values + i + half));
            __m512d sum = _mm512_sub_pd(_mm512_loadu_pd(sums + j + half), old);
            _mm512_mask_storeu_pd(sums + j + half, (__mmask8)(take >> half), _mm512_add_pd(sum, _mm512_cvtps_pd(r8)));
        }
        i += run, j += run;
        if (run == 16) continue;
        if (w->old_tokens[i] < w->tokens[j]) {
            i++; /* left the cache since */
        } else { /* entered since: not in the old row */
            float r1 = w->g[j] * w->factor;
            w->new_values[j] = r1;
            sums[j++] += r1;
        }
    }
    slide_scalar(sums, w, i, j);
}

static void snapkv_observe(Policy *p, const float *g, float factor, int t)
{
    (void)t;
    SnapState *s = p->priv;
    int w = (int)policy_param(p, SNAPKV_WINDOW), now = s->rows_seen % s->rows;
    size_t cap = (size_t)p->capacity + 1;
    WindowStep step = {.tokens = p->tokens, .g = g, .factor = factor, .n = p->n,
                       .new_values = s->ring_values + (size_t)now * cap};
    if (s->rows_seen >= w) { /* the oldest row leaves the window */
        int old = (s->rows_seen - w) % s->rows;
        step.old_tokens = s->ring_tokens + (size_t)old * cap;
        step.old_values = s->ring_values + (size_t)old * cap;
        step.m = s->ring_len[old];
    }
    if (__builtin_cpu_supports("avx512f")) slide_avx512(p->sums, &step);
    else slide_scalar(p->sums, &step, 0, 0);
    memcpy(s->ring_tokens + (size_t)now * cap, p->tokens, (size_t)p->n * sizeof *s->ring_tokens);
    s->ring_len[now] = p->n;
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
    int best = lo;
    double least = pooled_at(p->sums, p->n, half, lo);
    for (int j = lo + 1; j < hi; j++) {
        double v = pooled_at(p->sums, p->n, half, j);
        if (v < least) least = v, best = j;
    }
    return best;
}

/* The pooled score the victim was ranked by. */
static float snapkv_victim_score(const Policy *p, int slot)
{
    return (float)pooled_at(p->sums, p->n, (int)policy_param(p, SNAPKV_KERNEL) / 2, slot);
}

const PolicyOps POLICY_SNAPKV = {
    .name = "snapkv", .params = SNAPKV_PARAMS, .n_params = 2, .cost = "O(B*kernel)",
    .kind = KIND_SCAN, .uses_attention = 1, .comparable_scores = 1, .uses_slot_sums = 1, .check = snapkv_check,
    .init = snapkv_init, .destroy = snapkv_destroy, .observe_scaled = snapkv_observe, .victim = snapkv_victim,
    .victim_score = snapkv_victim_score,
};
