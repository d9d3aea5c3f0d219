#include "flow.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

enum { COLUMN_BLOCK = 64 }; /* the search keeps the least distance of each block of columns */

typedef struct {
    int T, S, B;
    int R;                /* evictions: the rows of the assignment */
    int *row_t;           /* [R] the step of each eviction, increasing */
    double **cost;         /* [T] step t's costs L_i(t), i < t (NULL where nothing is evicted) */
    double *costs;        /* the staircase behind cost[] */
    double *u, *v;        /* [R], [T] duals */
    double *dist, *done;  /* [T] tentative distances (NaN once settled), settled distances */
    double *block_min;    /* [T/64] least tentative distance of each block of 64 columns */
    int *col4row, *row4col, *path; /* [R], [T], [T] */
    int *sr;              /* [R] rows reached by one search */
} Schedule;

/* Evictions at step t: the cache holds min(t+1, B) tokens from S on. */
static int demand(const Schedule *s, int t)
{
    if (t < s->S) return 0;
    int before = t == s->S ? 0 : (t > s->B ? t - s->B : 0);
    int after = t + 1 > s->B ? t + 1 - s->B : 0;
    return after - before;
}

static void schedule_free(Schedule *s)
{
    free(s->row_t); free(s->cost); free(s->costs); free(s->u); free(s->v); free(s->dist); free(s->done);
    free(s->block_min);
    free(s->col4row); free(s->row4col); free(s->path); free(s->sr);
}

/* The staircase's cells (step t with evictions holds t costs); R = the evictions. */
static size_t staircase_cells(Schedule *s)
{
    size_t cells = 0;
    s->R = 0;
    for (int t = s->S; t < s->T; t++) {
        int d = demand(s, t);
        s->R += d;
        cells += d > 0 ? (size_t)t : 0;
    }
    return cells;
}

size_t schedule_memory_bytes(int T, int first_step, int budget)
{
    Schedule s = {.T = T, .S = first_step, .B = budget};
    size_t cells = staircase_cells(&s), R = (size_t)s.R + 1, n = (size_t)T;
    return (cells + 1 + 2 * R + 5 * n) * sizeof(double) + 3 * R * sizeof(int) + 2 * n * sizeof(int) +
           n * sizeof(double *);
}

static int schedule_alloc(Schedule *s)
{
    size_t T = (size_t)s->T, cells = staircase_cells(s);
    size_t R = (size_t)s->R + 1;
    s->row_t = malloc(R * sizeof(int));
    s->cost = calloc(T, sizeof(double *));
    s->costs = malloc((cells + 1) * sizeof(double));
    s->u = calloc(R, sizeof(double));
    s->v = calloc(T, sizeof(double));
    s->dist = malloc(T * sizeof(double));
    s->done = malloc(T * sizeof(double));
    s->block_min = malloc((T / COLUMN_BLOCK + 1) * sizeof(double));
    s->col4row = malloc(R * sizeof(int));
    s->row4col = malloc(T * sizeof(int));
    s->path = malloc(T * sizeof(int));
    s->sr = malloc(R * sizeof(int));
    if (!s->row_t || !s->cost || !s->costs || !s->u || !s->v || !s->dist || !s->done || !s->block_min || !s->col4row ||
        !s->row4col || !s->path || !s->sr)
        return -1;
    double *next = s->costs;
    for (int t = s->S, r = 0; t < s->T; t++) {
        int d = demand(s, t);
        if (d > 0) { s->cost[t] = next; next += t; }
        for (; d > 0; d--) s->row_t[r++] = t;
    }
    for (int i = 0; i < s->T; i++) s->row4col[i] = -1;
    return 0;
}

/* The costs, streaming the rows backwards: acc = Σ_{s >= t} w_s (double). */
static int read_costs(Schedule *s, const AttentionRows *src, KvError *err)
{
    int blk = src->block > 0 ? src->block : 64;
    long ld = s->T;
    float *rows = malloc((size_t)blk * s->T * sizeof(float));
    double *acc = calloc((size_t)s->T, sizeof(double));
    int rc = !rows || !acc ? kv_fail(err, "out of memory for the optimal schedule of %d tokens", s->T) : 0;
    for (int t1 = s->T; t1 > s->S && rc == 0;) {
        int t0 = t1 - blk > s->S ? t1 - blk : s->S, n = t1 - t0;
        rc = src->read(src->ctx, t0, n, rows, ld, err);
        for (int r = n - 1; r >= 0 && rc == 0; r--) {
            int t = t0 + r;
            const float *w = rows + (size_t)r * ld;
            for (int i = 0; i <= t; i++) acc[i] += w[i];
            if (s->cost[t])
                for (int i = 0; i < t; i++) s->cost[t][i] = acc[i];
        }
        t1 = t0;
    }
    free(rows);
    free(acc);
    return rc;
}

/* Relaxes row `row` (costs of step t) over the columns i < t not yet
 * settled, and refreshes the least distance of every block it touched. */
__attribute__((target_clones("avx2", "default")))
static void relax(double *restrict dist, int *restrict path, double *restrict block_min, const double *restrict cost,
                  const double *restrict v, int t, int n, double base, int row)
{
    for (int b0 = 0; b0 < t; b0 += COLUMN_BLOCK) {
        int b1 = b0 + COLUMN_BLOCK < t ? b0 + COLUMN_BLOCK : t, end = b0 + COLUMN_BLOCK < n ? b0 + COLUMN_BLOCK : n;
        double least = INFINITY;
        for (int i = b0; i < b1; i++) {
            double r = base + (double)cost[i] - v[i];
            int better = r < dist[i]; /* false for settled columns: their dist is NaN */
            dist[i] = better ? r : dist[i];
            path[i] = better ? row : path[i];
            least = dist[i] < least ? dist[i] : least;
        }
        for (int i = b1; i < end; i++) least = dist[i] < least ? dist[i] : least;
        block_min[b0 / COLUMN_BLOCK] = least;
    }
}

static double block_least(const double *dist, int b0, int end)
{
    double least = INFINITY;
    for (int i = b0; i < end; i++) least = dist[i] < least ? dist[i] : least;
    return least;
}

/* The unsettled column of least distance (the first such; a free one, with
 * no row yet, on exact ties), or -1. */
static int closest(const Schedule *s, int n)
{
    int blocks = (n + COLUMN_BLOCK - 1) / COLUMN_BLOCK, first = -1;
    double best = INFINITY;
    for (int b = 0; b < blocks; b++) best = s->block_min[b] < best ? s->block_min[b] : best;
    if (isinf(best)) return -1;
    for (int b = 0; b < blocks; b++) {
        if (s->block_min[b] != best) continue;
        int end = (b + 1) * COLUMN_BLOCK < n ? (b + 1) * COLUMN_BLOCK : n;
        for (int i = b * COLUMN_BLOCK; i < end; i++)
            if (s->dist[i] == best) {
                if (s->row4col[i] < 0) return i;
                if (first < 0) first = i;
            }
    }
    return first;
}

/* One shortest augmenting path from row `cur` over the columns i < its step
 * (Dijkstra on reduced costs, kept >= 0 by the duals), the dual update, the
 * augmentation. */
static int augment(Schedule *s, int cur, long *scanned)
{
    int n = s->row_t[cur], n_sr = 0, sink = -1, row = cur;
    double min_val = 0;
    for (int i = 0; i < n; i++) s->dist[i] = INFINITY;
    for (int b = 0; b * COLUMN_BLOCK < n; b++) s->block_min[b] = INFINITY;
    while (sink < 0) {
        s->sr[n_sr++] = row;
        int t = s->row_t[row];
        relax(s->dist, s->path, s->block_min, s->cost[t], s->v, t, n, min_val - s->u[row], row);
        int col = closest(s, n);
        if (col < 0) return -1; /* nothing reachable: cannot happen, every step has tokens to evict */
        min_val = s->done[col] = s->dist[col];
        s->dist[col] = NAN; /* settled */
        int b0 = col / COLUMN_BLOCK * COLUMN_BLOCK;
        s->block_min[col / COLUMN_BLOCK] = block_least(s->dist, b0, b0 + COLUMN_BLOCK < n ? b0 + COLUMN_BLOCK : n);
        if (s->row4col[col] < 0) sink = col;
        else row = s->row4col[col];
    }
    *scanned += n_sr;
    s->u[cur] += min_val;
    for (int k = 1; k < n_sr; k++) s->u[s->sr[k]] += min_val - s->done[s->col4row[s->sr[k]]];
    for (int i = 0; i < n; i++)
        if (isnan(s->dist[i])) s->v[i] -= min_val - s->done[i];
    for (int col = sink;;) {
        int r = s->path[col], prev = s->col4row[r];
        s->row4col[col] = r;
        s->col4row[r] = col;
        if (r == cur) break;
        col = prev;
    }
    return 0;
}

int schedule_optimal(const AttentionRows *rows, int first_step, int budget, int *leave, ScheduleStats *stats,
                     KvError *err)
{
    Schedule s = {.T = rows->T, .S = first_step, .B = budget};
    ScheduleStats st = {0};
    if (stats) { st.step_dual = stats->step_dual; st.token_dual = stats->token_dual; }
    int rc = schedule_alloc(&s) ? kv_fail(err, "out of memory for the optimal schedule of %d tokens", s.T) : 0;
    if (rc == 0 && s.R > 0) rc = read_costs(&s, rows, err);
    for (int r = 0; r < s.R && rc == 0; r++)
        if (augment(&s, r, &st.scanned))
            rc = kv_fail(err, "the optimal schedule's assignment has no solution (budget %d, %d tokens)", s.B, s.T);
    if (rc == 0) {
        for (int i = 0; i < s.T; i++) leave[i] = s.T;
        for (int r = 0; r < s.R; r++) {
            int t = s.row_t[r], i = s.col4row[r];
            leave[i] = t;
            st.lost += s.cost[t][i];
            st.dual += s.u[r];
        }
        for (int i = 0; i < s.T; i++) st.dual += s.v[i];
        for (int t = 0; st.step_dual && t < s.T; t++) st.step_dual[t] = -INFINITY;
        for (int r = 0; st.step_dual && r < s.R; r++)
            if (s.u[r] > st.step_dual[s.row_t[r]]) st.step_dual[s.row_t[r]] = s.u[r];
        if (st.token_dual) memcpy(st.token_dual, s.v, (size_t)s.T * sizeof(double));
    }
    schedule_free(&s);
    if (stats) *stats = st;
    return rc;
}
