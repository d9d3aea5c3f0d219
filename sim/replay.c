#include "replay.h"

#include <cblas.h>
#include <immintrin.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../util/attention.h"
#include "../util/progress.h"
#include "../util/select.h"
#include "allocation.h"

#define MIN_MASS 1e-30

int replay_result_alloc(ReplayResult *r, int n_heads, int T, int retention)
{
    memset(r, 0, sizeof *r);
    r->mass = calloc((size_t)n_heads, sizeof(double));
    r->kl = calloc((size_t)n_heads, sizeof(double));
    r->error = calloc((size_t)n_heads, sizeof(double));
    r->overlap = calloc((size_t)n_heads, sizeof(double));
    r->evict_age = calloc((size_t)T, sizeof(long));
    r->curve = malloc((size_t)T * sizeof(float));
    if (retention) r->retention = calloc((size_t)T * T, 1);
    if (!r->mass || !r->kl || !r->error || !r->overlap || !r->evict_age || !r->curve || (retention && !r->retention)) {
        replay_result_free(r);
        return -1;
    }
    for (int t = 0; t < T; t++) r->curve[t] = NAN;
    return 0;
}

void replay_result_free(ReplayResult *r)
{
    free(r->mass); free(r->kl); free(r->error); free(r->overlap); free(r->evict_age); free(r->curve);
    free(r->retention);
    memset(r, 0, sizeof *r);
}

int replay_first_reported(const ReplayOptions *opt, int budget, int T)
{
    if (opt->n_prompt > 0) return opt->n_prompt;
    return budget < T ? budget : 0;
}

double replay_thread_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Everything one unit's replay works with. */
typedef struct {
    const UnitData *u;
    const ReplayConfig *cfg;
    int n_cfg;
    const ReplayOptions *opt;
    ReplayResult *out;
    Policy *pol;          /* [n_cfg]; unused for ideal */
    int *first_reported;  /* [n_cfg] */
    int rb;               /* rows per block */
    float *block;         /* [n_heads][rb][T] full attention rows */
    float *group_row;     /* [T] Σ_h a_t^h */
    float *select;        /* [T] scratch for top-B selection */
    int *budgets;         /* distinct budgets */
    int *ideal_every_row; /* [n_budgets] an `ideal` config needs this budget's set on every row */
    int n_budgets;
    uint8_t *ideal;       /* [n_budgets][T] membership of the row's top-B set */
    float *observed;      /* [T] r_t over held tokens */
    float *gathered;      /* [T] one head's attention on the held tokens */
    float *scratch;       /* behind observed and gathered */
    float *full_out;      /* [n_heads][d] o_t with the full cache */
    float *held_out;      /* [d] õ_t */
    /* an error row's held sets, whose outputs are summed after the row for
     * every configuration at once (flush_outputs) */
    int n_pending, pending_cap, pending_used;
    int *pending_config;  /* [n_cfg] */
    int *pending_start;   /* [n_cfg] its held list in pending_tokens */
    int *pending_n;       /* [n_cfg] */
    int *pending_cursor;  /* [n_cfg] */
    int *pending_same;    /* [n_cfg] the set whose output it is: itself, or an earlier one alike */
    int pending_whole;    /* the row's first set holding the whole row, or -1 */
    float *pending_inv;   /* [n_cfg][n_heads] 1 / retained mass */
    float *pending_out;   /* [n_cfg][n_heads][d] õ_t */
    int *pending_tokens;  /* [pending_cap], grown as needed */
    int *ideal_tokens;    /* [T] scratch: the ideal (or a selector's) set as a token list */
    const float **q_row; /* [n_heads] q_t of each head, for selectors */
    double attention_seconds; /* thread CPU time computing or reading attention */
    double stretch_cpu, stretch_ticks, softmax_ticks; /* the stretch of rows being timed (stretch_begin) */
    int *positions;       /* [T] 0, 1, 2, ...: the held list of a cache holding everything */
    int *evicted;         /* [EVICTED_MAX][2] (config, age) of evictions not yet counted */
    int n_evicted;
    double *whole_sum;    /* [n_heads] Σ of the whole row ... */
    int *whole_row;       /* [n_heads] ... of this row (-1: none yet) */
} Replay;

/* ---------------------------------------------------------------- attention */

/* Attention rows t0..t0+n-1 of every head of the unit into x->block: read
 * as stored, or their logits (one sgemm per head), which ready_row then
 * normalises one row at a time, just before the row is replayed, while it
 * is in cache. */
static int fill_block(Replay *x, int t0, int n, KvError *err)
{
    const UnitData *u = x->u;
    long ld = u->T;
    double start = replay_thread_seconds();
    int rc = 0;
    for (int h = 0; h < u->n_heads && rc == 0; h++) {
        float *dst = x->block + (size_t)h * x->rb * ld;
        if (u->read_attention) rc = u->read_attention(u->read_ctx, h, t0, n, dst, ld, err);
        else attention_logits(u->q[h], u->k[h], u->d, t0, n, dst, ld);
    }
    x->attention_seconds += replay_thread_seconds() - start;
    return rc;
}

/* A cheap clock for the rows' attention share: the time-stamp counter
 * (a few cycles) where there is one, else the monotonic clock. */
static double ticks(void)
{
#ifdef KV_X86_KERNELS
    return (double)__rdtsc();
#else
    return kv_now_seconds();
#endif
}

/* The rows' normalisation runs between their replays, too briefly to read
 * the thread CPU clock (a system call) around each.  So a stretch of rows
 * reads it once at each end and counts as attention the share of the
 * stretch's CPU time that the normalisation took on the cheap clock:
 * a busy machine's preemptions fall on both parts alike. */
static void stretch_begin(Replay *x)
{
    x->stretch_cpu = replay_thread_seconds();
    x->stretch_ticks = ticks();
    x->softmax_ticks = 0;
}

static void stretch_end(Replay *x)
{
    double cpu = replay_thread_seconds() - x->stretch_cpu, total = ticks() - x->stretch_ticks;
    if (total > 0) x->attention_seconds += cpu * (x->softmax_ticks < total ? x->softmax_ticks / total : 1.0);
}

/* Row r (= step t) of the block, normalised for every head. */
static int ready_row(Replay *x, int t, int r, KvError *err)
{
    const UnitData *u = x->u;
    if (u->read_attention) return 0;
    double start = ticks();
    int rc = 0;
    for (int h = 0; h < u->n_heads && rc == 0; h++)
        if (attention_softmax_row(x->block + ((size_t)h * x->rb + r) * u->T, t))
            rc = kv_fail(err, "kv head %d, query %d of the unit, row %d: the attention logits q·k/√d are not "
                         "finite (q or k too large for float)", u->unit, h, t);
    x->softmax_ticks += ticks() - start;
    return rc;
}

static const float *row_of(const Replay *x, int h, int r) { return x->block + ((size_t)h * x->rb + r) * x->u->T; }

/* ---------------------------------------------------------------- held sums */

/* Σ a[held[j]] over j < n in double, in four chains by j mod 4 (the order
 * every replay since the first has used, so sums are reproducible); g
 * (optional) receives the gathered values.  With AVX2 the four chains are
 * the lanes of one register; sixteen held tokens that are neighbours (a
 * recent window, a run of heavy hitters) load as four vectors, others one
 * by one without a branch: a test per four tokens would be mispredicted
 * wherever short runs and gaps alternate (tova, a2sf).  Without AVX2 a
 * contiguous held list (full, window) is summed without the indirection. */
__attribute__((target("avx2")))
static inline __m128 gather4(const float *a, const int *held)
{
    return _mm_setr_ps(a[held[0]], a[held[1]], a[held[2]], a[held[3]]);
}

__attribute__((target("avx2")))
static double held_sum_avx2(const float *a, const int *held, int n, float *g)
{
    __m256d chains = _mm256_setzero_pd();
    int j = 0;
    for (; j + 16 <= n; j += 16) {
        const float *run = a + held[j];
        int contiguous = held[j + 15] - held[j] == 15;
        for (int k = 0; k < 16; k += 4) {
            __m128 v = contiguous ? _mm_loadu_ps(run + k) : gather4(a, held + j + k);
            if (g) _mm_storeu_ps(g + j + k, v);
            chains = _mm256_add_pd(chains, _mm256_cvtps_pd(v));
        }
    }
    for (; j + 4 <= n; j += 4) {
        __m128 v = gather4(a, held + j);
        if (g) _mm_storeu_ps(g + j, v);
        chains = _mm256_add_pd(chains, _mm256_cvtps_pd(v));
    }
    double part[4];
    _mm256_storeu_pd(part, chains);
    for (; j < n; j++) {
        float v = a[held[j]];
        if (g) g[j] = v;
        part[0] += v;
    }
    return (part[0] + part[1]) + (part[2] + part[3]);
}

static double held_sum(const float *a, const int *held, int n, float *g)
{
    /* a read of the CPU model's flags (set once at startup by libgcc): no state of ours */
    if (__builtin_cpu_supports("avx2")) return held_sum_avx2(a, held, n, g);
    double part[4] = {0, 0, 0, 0};
    int j = 0;
    if (n > 0 && held[n - 1] - held[0] == n - 1) { /* positions increase: one run */
        const float *s = a + held[0];
        if (g) memcpy(g, s, (size_t)n * sizeof *g);
        for (; j + 4 <= n; j += 4)
            for (int k = 0; k < 4; k++) part[k] += s[j + k];
        for (; j < n; j++) part[0] += s[j];
    } else if (g) {
        for (; j + 4 <= n; j += 4)
            for (int k = 0; k < 4; k++) part[k] += g[j + k] = a[held[j + k]];
        for (; j < n; j++) part[0] += g[j] = a[held[j]];
    } else {
        for (; j + 4 <= n; j += 4)
            for (int k = 0; k < 4; k++) part[k] += a[held[j + k]];
        for (; j < n; j++) part[0] += a[held[j]];
    }
    return (part[0] + part[1]) + (part[2] + part[3]);
}

/* Σ a[0..t] of head h's row t, summed once per row for every config that
 * holds all its tokens (the same four chains as held_sum: the same number). */
static double whole_row_sum(Replay *x, int h, int t, const float *a)
{
    if (x->whole_row[h] != t) {
        x->whole_sum[h] = held_sum(a, x->positions, t + 1, NULL);
        x->whole_row[h] = t;
    }
    return x->whole_sum[h];
}

/* ---------------------------------------------------------------- ideal sets */

/* Marks the B tokens of highest group attention in row t (ties: oldest). */
static void ideal_set(Replay *x, int t, int budget, uint8_t *flags)
{
    top_k_flags(x->group_row, t + 1, budget, x->select, flags);
}

static int budget_index(const Replay *x, int budget)
{
    for (int b = 0; b < x->n_budgets; b++)
        if (x->budgets[b] == budget) return b;
    return -1;
}

/* ---------------------------------------------------------------- metrics */

/* out += Σ_j (a[held[j]] * inv) v_{held[j]}, each out[c] summed token by
 * token in order (four tokens per sweep over out: the same arithmetic). */
__attribute__((target_clones("avx512f", "avx2", "default")))
static void held_output_add(const float *a, const int *held, int n, float inv, const float *v, int d,
                            float *restrict out)
{
    int j = 0;
    for (; j + 4 <= n; j += 4) {
        float w0 = a[held[j]] * inv, w1 = a[held[j + 1]] * inv, w2 = a[held[j + 2]] * inv, w3 = a[held[j + 3]] * inv;
        const float *restrict v0 = v + (size_t)held[j] * d, *restrict v1 = v + (size_t)held[j + 1] * d;
        const float *restrict v2 = v + (size_t)held[j + 2] * d, *restrict v3 = v + (size_t)held[j + 3] * d;
        for (int c = 0; c < d; c++) out[c] = (((out[c] + w0 * v0[c]) + w1 * v1[c]) + w2 * v2[c]) + w3 * v3[c];
    }
    for (; j < n; j++) {
        float w = a[held[j]] * inv;
        const float *restrict vi = v + (size_t)held[j] * d;
        for (int c = 0; c < d; c++) out[c] += w * vi[c];
    }
}

/* ‖o_t − õ_t‖ / ‖o_t‖ */
static float relative_error(const float *full, const float *held, int d)
{
    double diff = 0, norm = 0;
    for (int c = 0; c < d; c++) {
        diff += (double)(full[c] - held[c]) * (full[c] - held[c]);
        norm += (double)full[c] * full[c];
    }
    return norm > 0 ? (float)sqrt(diff / norm) : 0.0f;
}

/* The output error of one held set at once (when it cannot wait for the row's end). */
static float output_error(Replay *x, int h, int r, const int *held, int n, float inv_mass)
{
    const UnitData *u = x->u;
    memset(x->held_out, 0, (size_t)u->d * sizeof(float));
    held_output_add(row_of(x, h, r), held, n, inv_mass, u->v[h], u->d, x->held_out);
    return relative_error(x->full_out + (size_t)h * u->d, x->held_out, u->d);
}

/* Keeps configuration c's held set of an error row (its masses' inverses
 * follow in pending_inv) for flush_outputs; returns its index, or -1 when
 * the list cannot grow: then the caller computes the error at once.  A set
 * holding the whole row (full, at every budget) has the same tokens and
 * masses as the row's first such set, so it repeats that set's output. */
static int defer_output(Replay *x, int c, const int *held, int n, int whole)
{
    int k = x->n_pending;
    if (whole && x->pending_whole >= 0) {
        x->pending_same[k] = x->pending_whole;
    } else {
        if (x->pending_used + n > x->pending_cap) {
            int cap = x->pending_cap * 2 > x->pending_used + n ? x->pending_cap * 2 : x->pending_used + n;
            int *grown = realloc(x->pending_tokens, (size_t)cap * sizeof *grown);
            if (!grown) return -1;
            x->pending_tokens = grown;
            x->pending_cap = cap;
        }
        memcpy(x->pending_tokens + x->pending_used, held, (size_t)n * sizeof *held);
        x->pending_start[k] = x->pending_used;
        x->pending_used += n;
        x->pending_same[k] = k;
        if (whole) x->pending_whole = k;
    }
    x->pending_config[k] = c;
    x->pending_n[k] = n;
    x->n_pending++;
    return k;
}

/* The outputs õ_t of every held set kept on error row r, summed a block of
 * positions at a time across the sets: each value row v_i is read from
 * memory once for all configurations, not once per configuration (which
 * made output error the cost of an error row), while each õ_t still adds
 * its tokens in increasing order, so the numbers are those of one set at a
 * time. */
enum { OUTPUT_BLOCK = 64 };

/* The first index in [lo, n) of increasing held whose token is >= limit:
 * at most OUTPUT_BLOCK tokens of a block lie before it, so a binary search
 * of that window. */
static int first_from(const int *held, int lo, int n, int limit)
{
    int hi = n - lo > OUTPUT_BLOCK ? lo + OUTPUT_BLOCK : n;
    while (lo < hi) {
        int mid = (lo + hi) / 2;
        if (held[mid] < limit) lo = mid + 1;
        else hi = mid;
    }
    return lo;
}

static void flush_outputs(Replay *x, int t, int r)
{
    const UnitData *u = x->u;
    int d = u->d, H = u->n_heads;
    if (x->n_pending == 0) return;
    memset(x->pending_out, 0, (size_t)x->n_pending * H * d * sizeof(float));
    memset(x->pending_cursor, 0, (size_t)x->n_pending * sizeof(int));
    for (int p0 = 0; p0 <= t; p0 += OUTPUT_BLOCK)
        for (int k = 0; k < x->n_pending; k++) {
            if (x->pending_same[k] != k) continue;
            const int *held = x->pending_tokens + x->pending_start[k];
            int begin = x->pending_cursor[k], end = first_from(held, begin, x->pending_n[k], p0 + OUTPUT_BLOCK);
            for (int h = 0; h < H && end > begin; h++)
                held_output_add(row_of(x, h, r), held + begin, end - begin, x->pending_inv[(size_t)k * H + h],
                                u->v[h], d, x->pending_out + ((size_t)k * H + h) * d);
            x->pending_cursor[k] = end;
        }
    for (int k = 0; k < x->n_pending; k++)
        for (int h = 0; h < H; h++)
            x->out[x->pending_config[k]].error[h] +=
                relative_error(x->full_out + (size_t)h * d, x->pending_out + ((size_t)x->pending_same[k] * H + h) * d, d);
    x->n_pending = 0;
    x->pending_used = 0;
    x->pending_whole = -1;
}

/* o_t = Σ_i a_t(i) v_i for every head: once per error row, shared by all configs. */
static void full_outputs(Replay *x, int t, int r)
{
    const UnitData *u = x->u;
    for (int h = 0; h < u->n_heads; h++)
        cblas_sgemv(CblasRowMajor, CblasTrans, t + 1, u->d, 1.0f, u->v[h], u->d, row_of(x, h, r), 1, 0.0f,
                    x->full_out + (size_t)h * u->d, 1);
}

/* The observed row r of a policy: r[j] = values[j] * factor (a float
 * product), so that a one-head unit's row is scaled by the policy as it
 * reads it rather than in a pass of its own. */
typedef struct {
    const float *values;
    float factor;
} ObservedRow;

/* Mass, KL, error of the held set for every head; builds the observed row
 * when observed (scratch) is given. */
static ObservedRow attend_held(Replay *x, int c, int t, int r, const int *held, int n, int reported, int error_row,
                               float *observed)
{
    ReplayResult *res = &x->out[c];
    const UnitData *u = x->u;
    ObservedRow row = {observed, 1.0f};
    double mean_mass = 0;
    int whole = n == t + 1; /* every token held (full, or any policy before its budget fills) */
    int pending = error_row && u->v ? defer_output(x, c, held, n, whole) : -1;
    int one_head = u->n_heads == 1;
    for (int h = 0; h < u->n_heads; h++) {
        const float *a = row_of(x, h, r);
        float *g = h == 0 ? observed : x->gathered; /* head 0 is scaled in place */
        double m = whole ? whole_row_sum(x, h, t, a) : held_sum(a, held, n, observed ? g : NULL);
        if (m < MIN_MASS) m = MIN_MASS;
        float inv = (float)(1.0 / m);
        if (observed && one_head) /* the policy scales it */
            row = (ObservedRow){whole ? a : observed, inv};
        else if (observed && whole) { /* contiguous from here on: these loops vectorise */
            if (h == 0)
                for (int j = 0; j < n; j++) observed[j] = a[j] * inv;
            else
                for (int j = 0; j < n; j++) observed[j] += a[j] * inv;
        } else if (observed) {
            if (h == 0)
                for (int j = 0; j < n; j++) observed[j] *= inv;
            else
                for (int j = 0; j < n; j++) observed[j] += g[j] * inv;
        }
        if (!reported) continue;
        res->mass[h] += m;
        res->kl[h] += m < 1.0 ? -log(m) : 0.0; /* a full cache may sum to 1 + rounding */
        mean_mass += m;
        if (pending >= 0) x->pending_inv[(size_t)pending * u->n_heads + h] = inv;
        else if (error_row && u->v) res->error[h] += output_error(x, h, r, held, n, inv);
    }
    if (reported) {
        res->curve[t] = (float)(mean_mass / u->n_heads);
        res->rows++;
        res->sampled_rows += error_row;
    }
    return row;
}

static void record_retention(const Replay *x, int c, int t, const int *held, int n)
{
    uint8_t *row = x->out[c].retention;
    if (!row) return;
    row += (size_t)t * x->u->T;
    for (int j = 0; j < n; j++) row[held[j]] = 1;
}

/* ---------------------------------------------------------------- one step */

/* Evictions are counted by age into T bins, one scattered bin per row,
 * which the attention block pushes out of cache between rows: counted a
 * block of rows at a time their cache misses overlap instead of stalling
 * each row. */
enum { EVICTED_MAX = 1024 };

static void count_evictions(Replay *x)
{
    for (int i = 0; i < x->n_evicted; i++) x->out[x->evicted[2 * i]].evict_age[x->evicted[2 * i + 1]]++;
    x->n_evicted = 0;
}

static void evict_to_budget(Replay *x, int c, int t)
{
    Policy *p = &x->pol[c];
    while (p->n > p->budget) {
        int token = policy_evict(p, t);
        if (token < 0) break; /* all protected: refused up front, so unreachable */
        if (x->n_evicted == EVICTED_MAX) count_evictions(x);
        x->evicted[2 * x->n_evicted] = c;
        x->evicted[2 * x->n_evicted++ + 1] = t - token;
    }
}

/* Overlap of a held set with the row's ideal top-B set, as a share of B. */
static void add_overlap(Replay *x, int c, const int *held, int n)
{
    const uint8_t *flags = x->ideal + (size_t)budget_index(x, x->cfg[c].budget) * x->u->T;
    int overlap = 0;
    for (int j = 0; j < n; j++) overlap += flags[held[j]];
    for (int h = 0; h < x->u->n_heads; h++) x->out[c].overlap[h] += (double)overlap / x->cfg[c].budget;
}

static void insert_token(Replay *x, int c, int t)
{
    const UnitData *u = x->u;
    TokenFeatures f = {u->k_norm ? u->k_norm[t] : 0.0f, u->v_l1 ? u->v_l1[t] : 0.0f};
    policy_insert(&x->pol[c], t, &f);
}

/* After eviction: the queries attend to the held tokens, the policy observes. */
static void attend_policy(Replay *x, int c, int t, int r, int error_row)
{
    Policy *p = &x->pol[c];
    int reported = t >= x->first_reported[c];
    if (reported && error_row) add_overlap(x, c, p->tokens, p->n);
    ObservedRow row = attend_held(x, c, t, r, p->tokens, p->n, reported, error_row && reported,
                                  p->ops->uses_attention ? x->observed : NULL);
    if (p->ops->uses_attention) policy_observe_scaled(p, row.values, row.factor, x->observed, t);
    record_retention(x, c, t, p->tokens, p->n);
}

static void step_policy(Replay *x, int c, int t, int r, int error_row)
{
    int P = x->opt->n_prompt;
    insert_token(x, c, t);
    if (t >= P) evict_to_budget(x, c, t);
    attend_policy(x, c, t, r, error_row);
    if (P > 0 && t == P - 1) evict_to_budget(x, c, t); /* prefill: compress at the end of the prompt */
}

static void step_ideal(Replay *x, int c, int t, int r, int error_row)
{
    const UnitData *u = x->u;
    int budget = x->cfg[c].budget, reported = t >= x->first_reported[c];
    const uint8_t *flags = x->ideal + (size_t)budget_index(x, budget) * u->T;
    int n = 0;
    for (int i = 0; i <= t; i++)
        if (flags[i]) x->ideal_tokens[n++] = i;
    if (reported && error_row)
        for (int h = 0; h < u->n_heads; h++) x->out[c].overlap[h] += 1.0;
    attend_held(x, c, t, r, x->ideal_tokens, n, reported, error_row && reported, NULL);
    record_retention(x, c, t, x->ideal_tokens, n);
}

/* A selector (quest): row t attends to the tokens it picks from q_t; in
 * prefill mode the prompt rows attend to everything, as evicting policies
 * hold everything until the end of the prompt. */
static void step_select(Replay *x, int c, int t, int r, int error_row)
{
    const UnitData *u = x->u;
    Policy *p = &x->pol[c];
    int n = t + 1, reported = t >= x->first_reported[c];
    if (t >= x->opt->n_prompt) {
        for (int h = 0; h < u->n_heads; h++) x->q_row[h] = u->q[h] + (size_t)t * u->d;
        QueryView view = {.n_heads = u->n_heads, .d = u->d, .scale = 1.0f / sqrtf((float)u->d), .q = x->q_row,
                          .k = u->k};
        n = p->ops->select(p, &view, t, x->ideal_tokens);
    } else {
        memcpy(x->ideal_tokens, x->positions, (size_t)n * sizeof(int));
    }
    if (reported && error_row) add_overlap(x, c, x->ideal_tokens, n);
    attend_held(x, c, t, r, x->ideal_tokens, n, reported, error_row && reported, NULL);
    record_retention(x, c, t, x->ideal_tokens, n);
}

/* Σ over the unit's heads of row r of the block, into out[0..t]. */
static void group_sum(const Replay *x, int r, int t, float *out)
{
    memset(out, 0, (size_t)(t + 1) * sizeof(float));
    for (int h = 0; h < x->u->n_heads; h++) {
        const float *a = row_of(x, h, r);
        for (int i = 0; i <= t; i++) out[i] += a[i];
    }
}

/* What every configuration of row t shares: the full outputs and the ideal
 * sets, on the rows that need them.  Returns whether t is an error row. */
static int row_prelude(Replay *x, int t, int r)
{
    const UnitData *u = x->u;
    int stride = x->opt->error_stride, error_row = stride > 0 && t % stride == 0, need_ideal = error_row;
    for (int b = 0; b < x->n_budgets; b++) need_ideal |= x->ideal_every_row[b];
    if (error_row && u->v) full_outputs(x, t, r);
    if (need_ideal) group_sum(x, r, t, x->group_row); /* the ideal sets rank the group sum of the heads' rows */
    for (int b = 0; b < x->n_budgets; b++)
        if (error_row || x->ideal_every_row[b]) ideal_set(x, t, x->budgets[b], x->ideal + (size_t)b * u->T);
    return error_row;
}

static void step_row(Replay *x, int t, int r)
{
    int error_row = row_prelude(x, t, r);
    for (int c = 0; c < x->n_cfg; c++) {
        PolicyKind kind = x->pol[c].ops->kind;
        if (kind == KIND_IDEAL) step_ideal(x, c, t, r, error_row);
        else if (kind == KIND_SELECT) step_select(x, c, t, r, error_row);
        else step_policy(x, c, t, r, error_row);
    }
    flush_outputs(x, t, r);
}

/* ---------------------------------------------------------------- setup */

/* Rows of the unit's group-summed attention for hindsight oracles: computed
 * a block at a time into the replay's block buffer (free before the replay). */
static int hindsight_rows(void *ctx, int t0, int n, float *out, long ld, KvError *err)
{
    Replay *x = ctx;
    for (int done = 0; done < n;) {
        int m = n - done < x->rb ? n - done : x->rb;
        if (fill_block(x, t0 + done, m, err)) return -1;
        stretch_begin(x);
        for (int r = 0; r < m; r++) {
            if (ready_row(x, t0 + done + r, r, err)) return -1;
            group_sum(x, r, t0 + done + r, out + (size_t)(done + r) * ld);
        }
        stretch_end(x);
        done += m;
    }
    return 0;
}

static int prepare_hindsight(Replay *x, KvError *err)
{
    AttentionRows rows = {.T = x->u->T, .block = x->rb, .ctx = x, .read = hindsight_rows};
    for (int c = 0; c < x->n_cfg; c++)
        if (x->pol[c].ops->needs_hindsight && x->pol[c].ops->prepare(&x->pol[c], &rows, x->opt->n_prompt, err))
            return -1;
    return 0;
}

static int setup(Replay *x, KvError *err)
{
    const UnitData *u = x->u;
    size_t T = (size_t)u->T;
    x->rb = x->opt->row_block > 0 ? x->opt->row_block : attention_block_rows(u->T, u->n_heads);
    x->pol = calloc((size_t)x->n_cfg, sizeof *x->pol);
    x->first_reported = malloc((size_t)x->n_cfg * sizeof(int));
    x->block = malloc((size_t)u->n_heads * x->rb * T * sizeof(float));
    x->group_row = malloc(T * sizeof(float));
    x->select = malloc(T * sizeof(float));
    x->budgets = malloc((size_t)x->n_cfg * sizeof(int));
    x->ideal_every_row = calloc((size_t)x->n_cfg, sizeof(int));
    x->ideal = malloc((size_t)x->n_cfg * T);
    x->scratch = aligned_alloc(4096, ((2 * T + 4096) * sizeof(float) + 4095) / 4096 * 4096);
    if (x->scratch) { /* 2 KB apart modulo 4 KB: no false store-to-load dependencies between them */
        x->observed = x->scratch + 512;
        x->gathered = x->observed + (T + 1024) / 1024 * 1024 + 512;
    }
    x->full_out = malloc((size_t)u->n_heads * u->d * sizeof(float));
    x->held_out = malloc((size_t)u->d * sizeof(float));
    size_t n_cfg = (size_t)x->n_cfg;
    x->pending_config = malloc(n_cfg * sizeof(int));
    x->pending_start = malloc(n_cfg * sizeof(int));
    x->pending_n = malloc(n_cfg * sizeof(int));
    x->pending_cursor = malloc(n_cfg * sizeof(int));
    x->pending_same = malloc(n_cfg * sizeof(int));
    x->pending_whole = -1;
    x->pending_inv = malloc(n_cfg * u->n_heads * sizeof(float));
    x->pending_out = malloc(n_cfg * u->n_heads * u->d * sizeof(float));
    x->ideal_tokens = malloc(T * sizeof(int));
    x->q_row = malloc((size_t)u->n_heads * sizeof *x->q_row);
    x->positions = malloc(T * sizeof(int));
    x->whole_sum = malloc((size_t)u->n_heads * sizeof(double));
    x->evicted = malloc(2 * EVICTED_MAX * sizeof(int));
    x->whole_row = malloc((size_t)u->n_heads * sizeof(int));
    if (!x->pol || !x->first_reported || !x->block || !x->group_row || !x->select || !x->budgets ||
        !x->ideal_every_row || !x->ideal || !x->scratch || !x->full_out || !x->held_out || !x->pending_config ||
        !x->pending_start || !x->pending_n || !x->pending_cursor || !x->pending_same || !x->pending_inv || !x->pending_out ||
        !x->ideal_tokens || !x->q_row || !x->positions || !x->whole_sum || !x->whole_row || !x->evicted)
        return kv_fail(err, "out of memory replaying a %zu-token unit", T);
    for (int i = 0; i < u->T; i++) x->positions[i] = i;
    for (int h = 0; h < u->n_heads; h++) x->whole_row[h] = -1;
    for (int c = 0; c < x->n_cfg; c++) {
        if (budget_index(x, x->cfg[c].budget) < 0) x->budgets[x->n_budgets++] = x->cfg[c].budget;
        if (policy_lookup(x->cfg[c].spec.name)->kind == KIND_IDEAL)
            x->ideal_every_row[budget_index(x, x->cfg[c].budget)] = 1;
        int report_budget = x->cfg[c].report_budget > 0 ? x->cfg[c].report_budget : x->cfg[c].budget;
        x->first_reported[c] = replay_first_reported(x->opt, report_budget, u->T);
        if (policy_create(&x->pol[c], &x->cfg[c].spec, x->cfg[c].budget, u->T, u->layer, u->unit, err))
            return -1;
    }
    return prepare_hindsight(x, err);
}

static void teardown(Replay *x)
{
    for (int c = 0; x->pol && c < x->n_cfg; c++)
        if (x->pol[c].ops) policy_destroy(&x->pol[c]);
    free(x->pol); free(x->first_reported); free(x->block); free(x->group_row); free(x->select); free(x->budgets);
    free(x->ideal_every_row); free(x->ideal); free(x->scratch); free(x->full_out);
    free(x->held_out); free(x->ideal_tokens); free(x->q_row); free(x->positions); free(x->whole_sum); free(x->whole_row);
    free(x->evicted);
    free(x->pending_config); free(x->pending_start); free(x->pending_n); free(x->pending_cursor); free(x->pending_same);
    free(x->pending_inv); free(x->pending_out); free(x->pending_tokens);
}

int replay_unit(const UnitData *u, const ReplayConfig *cfg, int n_cfg, const ReplayOptions *opt,
                ReplayResult *out, double *attention_seconds, KvError *err)
{
    Replay x = {.u = u, .cfg = cfg, .n_cfg = n_cfg, .opt = opt, .out = out};
    int rc = setup(&x, err);
    for (int t0 = 0; t0 < u->T && rc == 0; t0 += x.rb) {
        int n = u->T - t0 < x.rb ? u->T - t0 : x.rb;
        rc = fill_block(&x, t0, n, err);
        stretch_begin(&x);
        for (int r = 0; r < n && rc == 0; r++)
            if ((rc = ready_row(&x, t0 + r, r, err)) == 0) step_row(&x, t0 + r, r);
        count_evictions(&x);
        stretch_end(&x);
    }
    teardown(&x);
    if (attention_seconds) *attention_seconds = x.attention_seconds;
    return rc;
}

/* ---------------------------------------------------------------- units together */

typedef struct {
    Replay *x;
    int c, t;
} JointEviction;

static void count_joint_eviction(void *ctx, int unit, int token)
{
    JointEviction *e = ctx;
    e->x[unit].out[e->c].evict_age[e->t - token]++;
}

/* Row t of configuration c in every unit: insert, evict jointly, attend. */
static void step_joint(Replay *x, int n_units, Policy **pol, int *slot, float *score, int c, int t, int r,
                       int error_row)
{
    const ReplayConfig *cfg = &x[0].cfg[c];
    int P = x[0].opt->n_prompt;
    long pool = (long)n_units * cfg->budget;
    JointEviction e = {x, c, t};
    for (int i = 0; i < n_units; i++) {
        insert_token(&x[i], c, t);
        pol[i] = &x[i].pol[c];
    }
    if (t >= P) adaptive_evict(pol, n_units, t, pool, cfg->keep_min, slot, score, count_joint_eviction, &e);
    for (int i = 0; i < n_units; i++) attend_policy(&x[i], c, t, r, error_row);
    if (P > 0 && t == P - 1) adaptive_evict(pol, n_units, t, pool, cfg->keep_min, slot, score, count_joint_eviction, &e);
}

int replay_units_adaptive(const UnitData *u, int n_units, const ReplayConfig *cfg, int n_cfg, const ReplayOptions *opt,
                          ReplayResult *const *out, KvError *err)
{
    Replay *x = calloc((size_t)n_units, sizeof *x);
    Policy **pol = malloc((size_t)n_units * sizeof *pol);
    int *slot = malloc((size_t)n_units * sizeof *slot), rc = 0;
    float *score = malloc((size_t)n_units * sizeof *score);
    if (!x || !pol || !slot || !score) rc = kv_fail(err, "out of memory replaying %d units together", n_units);
    for (int i = 0; i < n_units && rc == 0; i++) {
        x[i] = (Replay){.u = &u[i], .cfg = cfg, .n_cfg = n_cfg, .opt = opt, .out = out[i]};
        rc = setup(&x[i], err);
    }
    int T = u[0].T, rb = rc == 0 ? x[0].rb : 0; /* the units of a layer share T and heads: one block size */
    for (int t0 = 0; t0 < T && rc == 0; t0 += rb) {
        int n = T - t0 < rb ? T - t0 : rb;
        for (int i = 0; i < n_units && rc == 0; i++) rc = fill_block(&x[i], t0, n, err);
        for (int r = 0; r < n && rc == 0; r++) {
            int error_row = 0;
            for (int i = 0; i < n_units && rc == 0; i++)
                if ((rc = ready_row(&x[i], t0 + r, r, err)) == 0) error_row = row_prelude(&x[i], t0 + r, r);
            for (int c = 0; c < n_cfg && rc == 0; c++) step_joint(x, n_units, pol, slot, score, c, t0 + r, r, error_row);
            for (int i = 0; i < n_units && rc == 0; i++) flush_outputs(&x[i], t0 + r, r);
        }
    }
    for (int i = 0; x && i < n_units; i++) teardown(&x[i]);
    free(x); free(pol); free(slot); free(score);
    return rc;
}
