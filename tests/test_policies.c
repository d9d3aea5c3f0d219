/* Every policy on hand-built attention rows, with the evictions and metrics
 * worked out by hand in the comments; `optimal` against brute force and
 * against GLPK.
 *
 * usage: test_policies CASE */
#include <glpk.h>
#include <math.h>
#include <stddef.h>
#include <string.h>

#include "../sim/allocation.h"
#include "../sim/flow.h"
#include "../sim/replay.h"
#include "check.h"

/* ---------------------------------------------------------------- helpers */

/* A one-head unit whose attention rows are given (row t has t+1 entries). */
typedef struct {
    int T;
    const double *rows; /* packed lower triangle */
} HandRows;

static int hand_read(void *ctx, int head, int t0, int n, float *out, long ld, KvError *err)
{
    (void)head; (void)err;
    const HandRows *h = ctx;
    for (int r = 0; r < n; r++) {
        int t = t0 + r;
        const double *row = h->rows + (long)t * (t + 1) / 2;
        for (int i = 0; i <= t; i++) out[(long)r * ld + i] = (float)row[i];
    }
    return 0;
}

typedef struct {
    UnitData unit;
    HandRows rows;
    float *k_norm, *v_l1;
} HandUnit;

static void hand_unit(HandUnit *h, int T, const double *rows, const float *k_norm, const float *v_l1)
{
    memset(h, 0, sizeof *h);
    h->rows = (HandRows){T, rows};
    h->unit = (UnitData){.n_heads = 1, .T = T, .d = 1, .k_norm = k_norm, .v_l1 = v_l1, .read_attention = hand_read,
                         .read_ctx = &h->rows};
}

static ReplayConfig config(const char *policy, int budget)
{
    ReplayConfig c = {0};
    KvError err;
    if (policy_parse(policy, &c.spec, &err)) fprintf(stderr, "%s\n", err.msg);
    c.budget = budget;
    return c;
}

/* Replays one config with retention and returns which tokens are held at the end. */
static void replay_one(HandUnit *h, const char *policy, int budget, ReplayResult *res, int prefill)
{
    ReplayConfig c = config(policy, budget);
    ReplayOptions opt = {.n_prompt = prefill, .retention = 1};
    KvError err;
    replay_result_alloc(res, 1, h->unit.T, 1);
    CHECK(replay_unit(&h->unit, &c, 1, &opt, res, NULL, &err) == 0, "%s: %s", policy, err.msg);
}

static int held(const ReplayResult *r, int T, int t, int token) { return r->retention[(long)t * T + token]; }

/* Which token was evicted at step t (held at t-1, gone at t), -1 if none. */
static int evicted_at(const ReplayResult *r, int T, int t)
{
    for (int i = 0; i < t; i++)
        if (held(r, T, t - 1, i) && !held(r, T, t, i)) return i;
    return -1;
}

/* Rows used by several cases: T = 4. */
static const double ROWS_A[] = {
    1.0,
    0.3, 0.7,
    0.2, 0.5, 0.3,
    0.1, 0.2, 0.3, 0.4,
};

/* ---------------------------------------------------------------- cases */

/* H2O, B = 2, no recent window.
 * step 1: scores s0 = 1 + 0.3 = 1.3, s1 = 0.7.  step 2: evict 1 (0.7 < 1.3).
 * Row 2 over {0, 2}: m = 0.2 + 0.3 = 0.5, r = (0.4, 0.6) -> s0 = 1.7, s2 = 0.6.
 * step 3: evict 2.  Row 3 over {0, 3}: m = 0.5.
 * Reported rows 2, 3: mass 0.5, KL ln 2; eviction ages 1 and 1. */
static void h2o(void)
{
    HandUnit h;
    hand_unit(&h, 4, ROWS_A, NULL, NULL);
    ReplayResult r;
    replay_one(&h, "h2o:recent=0", 2, &r, 0);
    CHECK(evicted_at(&r, 4, 2) == 1 && evicted_at(&r, 4, 3) == 2, "evicted %d then %d", evicted_at(&r, 4, 2), evicted_at(&r, 4, 3));
    CHECK(r.rows == 2 && fabs(r.mass[0] / r.rows - 0.5) < 1e-6, "mass %g over %ld rows", r.mass[0] / r.rows, r.rows);
    CHECK(fabs(r.kl[0] / r.rows - log(2.0)) < 1e-6, "kl %g", r.kl[0] / r.rows);
    CHECK(r.evict_age[1] == 2, "ages: %ld at 1", r.evict_age[1]);
    replay_result_free(&r);
}

/* The age bias: each row gives every visible token the same attention
 * (1/(t+1)), so per row nobody is more important — yet H2O's sums favour
 * the old: at step 2 (B = 2) token 0 has 1 + 1/2, token 1 has 1/2: token 1
 * goes, and at every later step the newest unprotected token goes. */
static void h2o_age_bias(void)
{
    enum { T = 8 };
    double rows[T * (T + 1) / 2];
    for (int t = 0, k = 0; t < T; t++)
        for (int i = 0; i <= t; i++) rows[k++] = 1.0 / (t + 1);
    HandUnit h;
    hand_unit(&h, T, rows, NULL, NULL);
    ReplayResult r;
    replay_one(&h, "h2o:recent=0", 2, &r, 0);
    for (int t = 2; t < T; t++) CHECK(evicted_at(&r, T, t) == t - 1, "step %d evicted %d", t, evicted_at(&r, T, t));
    CHECK(held(&r, T, T - 1, 0), "the oldest token survives");
    replay_result_free(&r);
}

/* A2SF with alpha = 0.2: step 1: s0 = 0.2*1 + 0.3 = 0.5, s1 = 0.7 -> evict 0
 * (the old token's early attention faded).  H2O evicts 1 on the same rows. */
static void a2sf_decay(void)
{
    HandUnit h;
    hand_unit(&h, 4, ROWS_A, NULL, NULL);
    ReplayResult r;
    replay_one(&h, "a2sf:alpha=0.2", 2, &r, 0);
    CHECK(evicted_at(&r, 4, 2) == 0, "a2sf evicted %d at step 2", evicted_at(&r, 4, 2));
    replay_result_free(&r);
    replay_one(&h, "a2sf:alpha=0.5", 2, &r, 0); /* 0.5 + 0.3 = 0.8 > 0.7: now token 1 goes */
    CHECK(evicted_at(&r, 4, 2) == 1, "a2sf(0.5) evicted %d at step 2", evicted_at(&r, 4, 2));
    replay_result_free(&r);
}

/* A2SF's running scale over 300 steps (alpha^300 underflows: the scale is
 * renormalised many times) against a direct double-precision recurrence. */
static void a2sf_long(void)
{
    enum { T = 300, B = 24 };
    static double rows[T * (T + 1) / 2];
    unsigned seed = 7;
    for (int t = 0, k = 0; t < T; t++) {
        double sum = 0;
        int start = k;
        for (int i = 0; i <= t; i++) sum += rows[k++] = 0.05 + (double)rand_r(&seed) / RAND_MAX;
        for (int i = start; i < k; i++) rows[i] /= sum;
    }
    HandUnit h;
    hand_unit(&h, T, rows, NULL, NULL);
    ReplayResult r;
    replay_one(&h, "a2sf:alpha=0.2", B, &r, 0);
    /* reference: the same semantics written plainly */
    static double score[T];
    static int in[T];
    int n = 0, mismatches = 0;
    for (int t = 0; t < T; t++) {
        in[t] = 1;
        score[t] = 0;
        if (++n > B) {
            int victim = -1;
            for (int i = 0; i < t; i++)
                if (in[i] && (victim < 0 || score[i] < score[victim])) victim = i;
            in[victim] = 0;
            n--;
            mismatches += evicted_at(&r, T, t) != victim;
        }
        const double *row = rows + (long)t * (t + 1) / 2;
        double m = 0;
        for (int i = 0; i <= t; i++) m += in[i] ? row[i] : 0;
        for (int i = 0; i <= t; i++)
            if (in[i]) score[i] = 0.2 * score[i] + row[i] / m;
    }
    CHECK(mismatches == 0, "%d of %d evictions differ from the direct recurrence", mismatches, T - B);
    replay_result_free(&r);
}

/* VATP (base h2o, sink = 1, recent = 0), B = 3, uniform rows, value norms
 * v = (0.01, 1, 3, 1).  Step 3: token 0 is a sink, token 3 current; token 1
 * has (1/2 + 1/3) * 1 = 0.83, token 2 has (1/3) * 3 = 1.0 -> evict 1.
 * Plain H2O evicts token 2 (1/3 < 0.83). */
static void vatp(void)
{
    double rows[10];
    for (int t = 0, k = 0; t < 4; t++)
        for (int i = 0; i <= t; i++) rows[k++] = 1.0 / (t + 1);
    float v_l1[4] = {0.01f, 1, 3, 1};
    HandUnit h;
    hand_unit(&h, 4, rows, NULL, v_l1);
    ReplayResult r;
    replay_one(&h, "vatp:sink=1,recent=0", 3, &r, 0);
    CHECK(evicted_at(&r, 4, 3) == 1, "vatp evicted %d", evicted_at(&r, 4, 3));
    CHECK(held(&r, 4, 3, 0), "the sink stays");
    replay_result_free(&r);
    replay_one(&h, "h2o:recent=0", 3, &r, 0);
    CHECK(evicted_at(&r, 4, 3) == 2, "h2o evicted %d", evicted_at(&r, 4, 3));
    replay_result_free(&r);
    /* without the sink, token 0's tiny value norm makes it the victim */
    replay_one(&h, "vatp:sink=0,recent=0", 3, &r, 0);
    CHECK(evicted_at(&r, 4, 3) == 0, "vatp without sink evicted %d", evicted_at(&r, 4, 3));
    replay_result_free(&r);
}

/* K-norm, B = 2, key norms (1, 5, 2, 3): step 2 evicts 1 (highest of {0, 1}),
 * step 3 evicts 2 (norm 2 > 1).  Attention plays no part. */
static void knorm(void)
{
    float k_norm[4] = {1, 5, 2, 3};
    HandUnit h;
    hand_unit(&h, 4, ROWS_A, k_norm, NULL);
    ReplayResult r;
    replay_one(&h, "knorm", 2, &r, 0);
    CHECK(evicted_at(&r, 4, 2) == 1 && evicted_at(&r, 4, 3) == 2, "knorm evicted %d, %d", evicted_at(&r, 4, 2), evicted_at(&r, 4, 3));
    replay_result_free(&r);
    replay_one(&h, "knorm:skip=0", 2, &r, 0); /* layer 0 skipped: keeps everything */
    CHECK(r.rows == 2 && fabs(r.mass[0] / r.rows - 1.0) < 1e-6, "skipped layer mass %g", r.mass[0] / r.rows);
    replay_result_free(&r);
}

/* TOVA, B = 2: row 1 = (0.3, 0.7) -> step 2 evicts 0.  Row 2 over {1, 2}:
 * m = 0.8, r = (0.625, 0.375) -> step 3 evicts 2. */
static void tova(void)
{
    HandUnit h;
    hand_unit(&h, 4, ROWS_A, NULL, NULL);
    ReplayResult r;
    replay_one(&h, "tova", 2, &r, 0);
    CHECK(evicted_at(&r, 4, 2) == 0 && evicted_at(&r, 4, 3) == 2, "tova evicted %d, %d", evicted_at(&r, 4, 2), evicted_at(&r, 4, 3));
    replay_result_free(&r);
}

/* SnapKV, window 1, kernel 3, B = 4, driven directly.  After row 3 the
 * window sums are (0.1, 0.5, 0.05, 0.35); at step 4 token 4 is protected.
 * Pooled over held neighbours: (0.5, 0.5, 0.5, 0.35) -> evict token 3,
 * although token 2 has the lowest raw sum. */
static void snapkv(void)
{
    PolicySpec spec;
    KvError err;
    Policy p;
    CHECK(policy_parse("snapkv:window=1,kernel=3", &spec, &err) == 0, "%s", err.msg);
    CHECK(policy_create(&p, &spec, 4, 10, 0, 0, &err) == 0, "%s", err.msg);
    float r[5] = {0};
    for (int t = 0; t < 4; t++) {
        policy_insert(&p, t, NULL);
        for (int j = 0; j < p.n; j++) r[j] = 1.0f / p.n;
        if (t == 3) { r[0] = 0.1f; r[1] = 0.5f; r[2] = 0.05f; r[3] = 0.35f; }
        policy_observe(&p, r, t);
    }
    policy_insert(&p, 4, NULL);
    CHECK(policy_evict(&p, 4) == 3, "snapkv evicted the wrong token");
    policy_destroy(&p);
    /* a window that covers the budget is refused */
    CHECK(policy_parse("snapkv:window=4", &spec, &err) == 0, "%s", err.msg);
    CHECK(policy_create(&p, &spec, 4, 10, 0, 0, &err) != 0, "window 4 at budget 4 was accepted");
}

/* window: the oldest goes; streaming (sink 1): the oldest non-sink goes. */
static void window_and_streaming(void)
{
    HandUnit h;
    hand_unit(&h, 4, ROWS_A, NULL, NULL);
    ReplayResult r;
    replay_one(&h, "window", 2, &r, 0);
    CHECK(evicted_at(&r, 4, 2) == 0 && evicted_at(&r, 4, 3) == 1, "window evicted %d, %d", evicted_at(&r, 4, 2), evicted_at(&r, 4, 3));
    replay_result_free(&r);
    replay_one(&h, "streaming:sink=1", 2, &r, 0);
    CHECK(evicted_at(&r, 4, 2) == 1 && evicted_at(&r, 4, 3) == 2, "streaming evicted %d, %d", evicted_at(&r, 4, 2), evicted_at(&r, 4, 3));
    CHECK(held(&r, 4, 3, 0) && held(&r, 4, 3, 3), "streaming holds the sink and the newest");
    replay_result_free(&r);
    replay_one(&h, "full", 2, &r, 0);
    CHECK(r.rows == 2 && fabs(r.mass[0] / r.rows - 1) < 1e-6 && fabs(r.kl[0]) < 1e-6, "full mass %g", r.mass[0] / r.rows);
    replay_result_free(&r);
}

/* Ties go to the oldest: rows (1), (0, 1) give tokens 0 and 1 both H2O score 1. */
static void ties(void)
{
    static const double rows[] = {1.0, 0.0, 1.0, 0.25, 0.25, 0.5};
    HandUnit h;
    hand_unit(&h, 3, rows, NULL, NULL);
    ReplayResult r;
    replay_one(&h, "h2o:recent=0", 2, &r, 0);
    CHECK(evicted_at(&r, 3, 2) == 0, "tie went to %d", evicted_at(&r, 3, 2));
    replay_result_free(&r);
}

/* Output error on one row: values v = (1, 0, -1) in one dimension (d = 1),
 * row 2 = (0.2, 0.5, 0.3), held {0, 2}: o = 0.2 - 0.3 = -0.1,
 * õ = (0.2*1 + 0.3*-1)/0.5 = -0.2, error = |-0.1 - -0.2| / 0.1 = 1. */
static void output_error(void)
{
    HandUnit h;
    hand_unit(&h, 3, ROWS_A, NULL, NULL);
    static const float v[3] = {1, 0, -1};
    const float *vp[1] = {v};
    h.unit.v = vp;
    ReplayConfig c = config("h2o:recent=0", 2);
    ReplayOptions opt = {.error_stride = 1};
    ReplayResult r;
    KvError err;
    replay_result_alloc(&r, 1, 3, 0);
    CHECK(replay_unit(&h.unit, &c, 1, &opt, &r, NULL, &err) == 0, "%s", err.msg);
    CHECK(r.sampled_rows == 1 && fabs(r.error[0] - 1.0) < 1e-6, "error %g over %ld rows", r.error[0], r.sampled_rows);
    replay_result_free(&r);
}

/* Prefill (P = 3, B = 2, H2O): prompt rows see everything; at the end of the
 * prompt the scores are the column sums (1.5, 1.2, 0.3) and token 2 is
 * protected as the current token, so token 1 goes.  Step 3: {0, 2, 3} is one
 * over budget; token 2 (0.3) goes.  Row 3 over {0, 3}: mass 0.1 + 0.4. */
static void prefill(void)
{
    HandUnit h;
    hand_unit(&h, 4, ROWS_A, NULL, NULL);
    ReplayResult r;
    replay_one(&h, "h2o:recent=0", 2, &r, 3);
    CHECK(held(&r, 4, 2, 1) && !held(&r, 4, 3, 1), "token 1 compressed away at the end of the prompt");
    CHECK(held(&r, 4, 3, 0) && held(&r, 4, 3, 3) && !held(&r, 4, 3, 2), "held at step 3");
    CHECK(r.rows == 1 && fabs(r.mass[0] - 0.5) < 1e-6, "prefill reports decoding rows only (%ld, mass %g)", r.rows, r.mass[0]);
    replay_result_free(&r);
}

/* Long caches, where the victim scan runs on vectors and eviction moves
 * either side of the gap: h2o and tova against a model kept here (held
 * tokens in order, scores summed or replaced; the victim the lowest score
 * outside the recent window, the oldest on ties).  Scores come from a few
 * levels, so ties are everywhere, also between the vectors' lanes. */
/* A policy for a model test (parsed and created, or the test fails). */
static void model_policy(Policy *p, const char *text, int B, int T)
{
    PolicySpec spec;
    KvError err;
    CHECK(policy_parse(text, &spec, &err) == 0, "%s", err.msg);
    CHECK(policy_create(p, &spec, B, T, 0, 0, &err) == 0, "%s", err.msg);
}

static void scan_matches_model(void)
{
    enum { T = 700, B = 120 };
    const char *specs[] = {"h2o:recent=0.25", "tova", "h2o:recent=0"};
    for (size_t s = 0; s < sizeof specs / sizeof specs[0]; s++) {
        Policy p;
        model_policy(&p, specs[s], B, T);
        int tokens[T + 1], n = 0, is_h2o = !strncmp(specs[s], "h2o", 3), mismatches = 0;
        float score[T + 1], row[T + 1];
        unsigned seed = 12345u + (unsigned)s;
        for (int t = 0; t < T; t++) {
            policy_insert(&p, t, NULL);
            tokens[n] = t;
            score[n++] = 0.0f;
            while (p.n > p.budget) {
                int hi = n - (p.recent > 1 ? p.recent : 1), victim = 0;
                for (int j = 1; j < hi; j++)
                    if (score[j] < score[victim]) victim = j;
                int got = policy_evict(&p, t);
                mismatches += got != tokens[victim];
                memmove(tokens + victim, tokens + victim + 1, (size_t)(n - victim - 1) * sizeof *tokens);
                memmove(score + victim, score + victim + 1, (size_t)(n - victim - 1) * sizeof *score);
                n--;
            }
            for (int j = 0; j < n; j++) {
                seed = seed * 1103515245u + 12345u;
                row[j] = (float)((seed >> 16) % 4) * 0.125f; /* 0, 1/8, 1/4, 3/8 */
                score[j] = is_h2o ? score[j] + row[j] : row[j];
            }
            policy_observe(&p, row, t);
            CHECK(p.n == n, "%s, step %d: %d held, the model %d", specs[s], t, p.n, n);
            for (int j = 0; j < n && j < p.n; j++) mismatches += p.tokens[j] != tokens[j] || p.score[j] != score[j];
        }
        CHECK(mismatches == 0, "%s: %d differences from the model", specs[s], mismatches);
        policy_destroy(&p);
    }
}

/* NaN scores are passed over while a number is left, and the first slot
 * goes when none is: on the scalar pass (a short range) and the vector one
 * (a long range) alike, for the shared scan (h2o) and snapkv's own. */
static void nan_scores_skipped(void)
{
    const char *specs[] = {"h2o:recent=0", "snapkv:window=1,kernel=1"};
    for (int k = 0; k < 2; k++)
        for (int n = 8; n <= 80; n += 72) {
            Policy p;
            model_policy(&p, specs[k], n - 1, n + 1);
            for (int t = 0; t < n; t++) policy_insert(&p, t, NULL);
            double values[3][3] = {{0.5, 0.25, 0.25}, {NAN, NAN, NAN}, {INFINITY, INFINITY, INFINITY}};
            int expect[3] = {5, 0, 1};
            for (int c = 0; c < 3; c++) {
                for (int j = 0; j < n; j++) { /* unprotected: slots 0 .. n-2 */
                    double v = j == 3 ? values[c][0] : j == 5 ? values[c][1] : j == n - 2 ? values[c][2]
                                                                                      : c == 2 && j > 0 ? INFINITY : NAN;
                    p.score[j] = (float)v;
                    if (p.sums) p.sums[j] = v;
                }
                int slot = policy_candidate(&p, n - 1, NULL);
                CHECK(slot == expect[c], "%s, %d tokens, case %d: slot %d, expected %d", specs[k], n, c, slot, expect[c]);
            }
            policy_destroy(&p);
        }
}

/* snapkv's slot-ordered window sums and vector pooling against a model
 * that keeps its sums by position and pools slot by slot, on rows of a few
 * values (ties everywhere) over 700 steps: the same victims, the same
 * victim scores, for kernels narrower and wider than the 16-slot vectors,
 * with steps that remove several tokens. */
static void snapkv_matches_model(void)
{
    enum { T = 700, B = 120 };
    const char *specs[] = {"snapkv:window=8,kernel=5", "snapkv:window=16,kernel=1", "snapkv:window=3,kernel=9"};
    static float rows[T][T];  /* rows[s][i]: what row s gave token i */
    static uint8_t held_at[T][T];
    for (size_t s = 0; s < sizeof specs / sizeof specs[0]; s++) {
        Policy p;
        model_policy(&p, specs[s], B, T);
        int w = (int)policy_param(&p, 0), half = (int)policy_param(&p, 1) / 2;
        int tokens[T + 1], n = 0, mismatches = 0;
        double sum[T] = {0};
        float row[T + 1];
        unsigned seed = 777u + (unsigned)s;
        memset(held_at, 0, sizeof held_at);
        for (int t = 0; t < T; t++) {
            policy_insert(&p, t, NULL);
            tokens[n++] = t;
            /* now and then several tokens go in one step (as in a compressed
             * prompt or an adaptive allocation), once more than 32 */
            int keep = t == 400 ? B / 2 : t % 97 == 0 ? B - 3 : B;
            while (p.n > keep) {
                int victim = 0;
                double least = INFINITY;
                for (int j = 0; j < n - w; j++) { /* the window's tokens are protected */
                    double pooled = -INFINITY;
                    for (int k = j - half; k <= j + half; k++)
                        if (k >= 0 && k < n && sum[tokens[k]] > pooled) pooled = sum[tokens[k]];
                    if (pooled < least) least = pooled, victim = j;
                }
                float score;
                int slot = policy_candidate(&p, t, &score);
                mismatches += slot != victim || score != (float)least;
                CHECK(policy_remove(&p, slot) == tokens[slot], "snapkv removed another slot");
                memmove(tokens + victim, tokens + victim + 1, (size_t)(n - victim - 1) * sizeof *tokens);
                n--;
            }
            if (t >= w)
                for (int i = 0; i < T; i++)
                    if (held_at[t - w][i]) sum[i] -= rows[t - w][i];
            for (int j = 0; j < n; j++) {
                seed = seed * 1103515245u + 12345u;
                row[j] = (float)((seed >> 16) % 4) * 0.125f; /* 0, 1/8, 1/4, 3/8 */
                rows[t][tokens[j]] = row[j];
                held_at[t][tokens[j]] = 1;
                sum[tokens[j]] += row[j];
            }
            policy_observe(&p, row, t);
            CHECK(p.n == n, "%s, step %d: %d held, the model %d", specs[s], t, p.n, n);
            for (int j = 0; j < n && j < p.n; j++) mismatches += p.tokens[j] != tokens[j];
        }
        CHECK(mismatches == 0, "%s: %d differences from the model", specs[s], mismatches);
        policy_destroy(&p);
    }
}

/* ---------------------------------------------------------------- optimal */

/* Best total retained mass by trying every victim sequence (always evicting
 * exactly when over budget; keeping a token longer never costs mass). */
static double brute_force(const double *rows, int T, int B, int t, unsigned long held_mask, double acc)
{
    if (t == T) return acc;
    held_mask |= 1ul << t;
    int n = __builtin_popcountl(held_mask);
    double best = -1;
    for (int victim = -1; victim < t; victim++) {
        if (n > B && (victim < 0 || !(held_mask >> victim & 1))) continue;
        if (n <= B && victim >= 0) break;
        unsigned long m = victim >= 0 ? held_mask & ~(1ul << victim) : held_mask;
        double mass = 0;
        const double *row = rows + (long)t * (t + 1) / 2;
        for (int i = 0; i <= t; i++) mass += m >> i & 1 ? row[i] : 0;
        double v = brute_force(rows, T, B, t + 1, m, acc + mass);
        if (v > best) best = v;
    }
    return best;
}

static void random_rows(double *rows, int T, unsigned seed)
{
    for (int t = 0, k = 0; t < T; t++) {
        double sum = 0;
        int start = k;
        for (int i = 0; i <= t; i++) sum += rows[k++] = (double)(rand_r(&seed) % 1000 + 1);
        for (int i = start; i < k; i++) rows[i] /= sum;
    }
}

static double total_mass(const ReplayResult *r, int T, int B)
{
    double sum = 0;
    for (int t = B; t < T; t++) sum += r->curve[t];
    return sum;
}

static void optimal_brute_force(void)
{
    enum { T = 11 };
    double rows[T * (T + 1) / 2];
    for (unsigned seed = 1; seed <= 6; seed++) {
        random_rows(rows, T, seed);
        int B = 2 + (int)(seed % 3);
        HandUnit h;
        hand_unit(&h, T, rows, NULL, NULL);
        ReplayResult r;
        replay_one(&h, "optimal", B, &r, 0);
        double best = brute_force(rows, T, B, 0, 0, 0), got = 0;
        for (int t = 0; t < T; t++) got += isnan(r.curve[t]) ? 1.0 : r.curve[t]; /* rows < B hold everything */
        CHECK(fabs(got - best) < 1e-5, "seed %u B %d: optimal %.6f, brute force %.6f", seed, B, got, best);
        const char *others[] = {"h2o:recent=0", "a2sf", "tova", "window", "knorm", "random"};
        for (size_t o = 0; o < sizeof others / sizeof *others; o++) {
            ReplayResult q;
            replay_one(&h, others[o], B, &q, 0);
            CHECK(total_mass(&q, T, B) <= total_mass(&r, T, B) + 1e-6, "%s beats optimal", others[o]);
            replay_result_free(&q);
        }
        replay_result_free(&r);
    }
}

/* ---------------------------------------------------------------- the schedule solver */

/* Attention rows given as a packed lower triangle of doubles. */
typedef struct {
    int T;
    const double *rows;
} Packed;

static int packed_read(void *ctx, int t0, int n, float *out, long ld, KvError *err)
{
    (void)err;
    const Packed *p = ctx;
    for (int r = 0; r < n; r++) {
        int t = t0 + r;
        for (int i = 0; i <= t; i++) out[(long)r * ld + i] = (float)p->rows[(long)t * (t + 1) / 2 + i];
    }
    return 0;
}

static AttentionRows packed_source(Packed *p, int block)
{
    return (AttentionRows){.T = p->T, .block = block, .ctx = p, .read = packed_read};
}

/* Σ of w_s(i) over the counted rows s >= max(S, i): all a schedule could keep. */
static double all_weight(const double *rows, int T, int S)
{
    double sum = 0;
    for (int t = S; t < T; t++)
        for (int i = 0; i <= t; i++) sum += (float)rows[(long)t * (t + 1) / 2 + i];
    return sum;
}

/* The network the first `optimal` solved (kvtrace 0.1): B slots flow along
 * the time line; token i enters a chain of nodes, one per step it stays, and
 * leaves to the time line after any step; staying through step s costs
 * -w_s(i); decoding tokens must enter (a bonus M on their entry arcs).
 * Solved by GLPK's out-of-kilter method (integer weights: exact).  Returns
 * the largest retained weight. */
static double glpk_best(const double *rows, int T, int B, int S)
{
    int time_nodes = T - S + 1, n = time_nodes;
    for (int i = 0; i < T; i++) n += T - (i > S ? i : S);
    glp_graph *G = glp_create_graph(sizeof(double), 4 * sizeof(double));
    glp_add_vertices(G, n);
    *(double *)G->v[1]->data = B;
    *(double *)G->v[time_nodes]->data = -B;
    double bonus = 1 + all_weight(rows, T, S);
    int forced = 0;
#define ARC(u, v, cap, cost) do { glp_arc *a_ = glp_add_arc(G, (u) + 1, (v) + 1); double *d_ = a_->data; \
        d_[0] = 0; d_[1] = (cap); d_[2] = (cost); } while (0)
    for (int s = S; s < T; s++) ARC(s - S, s + 1 - S, B, 0.0);
    int base = time_nodes;
    for (int i = 0; i < T; i++) {
        int e = i > S ? i : S;
        forced += i >= S;
        ARC(e - S, base, 1, -rows[(long)e * (e + 1) / 2 + i] - (i >= S ? bonus : 0.0));
        for (int s = e; s < T; s++) {
            int node = base + s - e;
            ARC(node, s + 1 - S, 1, 0.0);
            if (s + 1 < T) ARC(node, node + 1, 1, -rows[(long)(s + 1) * (s + 2) / 2 + i]);
        }
        base += T - e;
    }
#undef ARC
    double cost;
    glp_term_out(GLP_OFF);
    int rc = glp_mincost_okalg(G, 0, 0, sizeof(double), 2 * sizeof(double), &cost, 3 * sizeof(double), -1);
    CHECK(rc == 0, "GLPK: %d", rc);
    glp_delete_graph(G);
    return -cost - bonus * forced;
}

/* The schedule against GLPK on random units (streaming and prefill), with
 * integer weights so that both are exact; the duals prove optimality too. */
static void schedule_vs_glpk(void)
{
    for (unsigned seed = 1; seed <= 24; seed++) {
        unsigned s = seed;
        int T = 6 + (int)(rand_r(&s) % 9), B = 1 + (int)(rand_r(&s) % (unsigned)(T - 1));
        int S = seed % 3 == 0 ? 1 + (int)(rand_r(&s) % (unsigned)(T - 2)) : 0;
        if (S && B > S) B = 1 + (int)(rand_r(&s) % (unsigned)S); /* prefill: B of the prompt */
        double rows[15 * 16 / 2];
        for (int k = 0; k < T * (T + 1) / 2; k++) rows[k] = (double)(rand_r(&s) % 1000 + 1);
        Packed p = {T, rows};
        AttentionRows src = packed_source(&p, 1 + (int)(seed % 4));
        int leave[16];
        ScheduleStats st;
        KvError err;
        CHECK(schedule_optimal(&src, S, B, leave, &st, &err) == 0, "%s", err.msg);
        double mine = all_weight(rows, T, S) - st.lost, theirs = glpk_best(rows, T, B, S);
        CHECK(fabs(mine - theirs) < 1e-6, "seed %u (T %d B %d S %d): schedule keeps %.1f, GLPK %.1f", seed, T, B, S,
              mine, theirs);
        CHECK(fabs(st.lost - st.dual) < 1e-6, "seed %u: primal %.6f dual %.6f", seed, st.lost, st.dual);
    }
    glp_free_env();
}

/* A 1024-token unit with realistic structure (a sink, heavy hitters,
 * recency): the schedule is feasible, and its duals certify it optimal over
 * every one of the T^2/2 arcs, checked here independently. */
static void optimal_long_unit(void)
{
    enum { T = 1024 };
    double *rows = malloc(sizeof(double) * T * (T + 1) / 2);
    unsigned seed = 12;
    float heavy[T];
    for (int i = 0; i < T; i++) heavy[i] = rand_r(&seed) % 50 == 0 ? 20.0f : 1.0f;
    for (int t = 0, k = 0; t < T; t++) {
        double sum = 0;
        int start = k;
        for (int i = 0; i <= t; i++) {
            double recency = 8.0 / (1 + t - i), noise = (rand_r(&seed) % 1000 + 1) / 1000.0;
            sum += rows[k++] = (i == 0 ? 30.0 : 0.0) + heavy[i] * noise + recency;
        }
        for (int i = start; i < k; i++) rows[i] /= sum;
    }
    for (int variant = 0; variant < 2; variant++) {
        int S = variant ? 300 : 0, B = variant ? 90 : 205;
        Packed p = {T, rows};
        AttentionRows src = packed_source(&p, 64);
        int leave[T], evicted_at[T + 1];
        double u[T], v[T];
        ScheduleStats st = {.step_dual = u, .token_dual = v};
        KvError err;
        CHECK(schedule_optimal(&src, S, B, leave, &st, &err) == 0, "%s", err.msg);
        memset(evicted_at, 0, sizeof evicted_at);
        for (int i = 0; i < T; i++) {
            CHECK(leave[i] > i || (i < S && leave[i] == S), "token %d leaves at %d", i, leave[i]);
            evicted_at[leave[i]]++;
        }
        for (int t = S; t < T; t++) { /* the cache holds min(t+1, B) tokens at every counted step */
            int held = 0;
            for (int i = 0; i <= t; i++) held += leave[i] > t;
            CHECK(held == (t + 1 < B ? t + 1 : B), "step %d holds %d", t, held);
        }
        /* lost = Σ over evicted tokens of the weight they miss, from the rows directly */
        double lost = 0;
        for (int t = S; t < T; t++)
            for (int i = 0; i <= t; i++)
                if (leave[i] <= t) lost += (float)rows[(long)t * (t + 1) / 2 + i];
        CHECK(fabs(lost - st.lost) < 1e-6 * (1 + lost), "lost %.9f vs %.9f", lost, st.lost);
        CHECK(fabs(st.lost - st.dual) < 1e-7 * (1 + st.lost), "primal %.9f dual %.9f", st.lost, st.dual);
        /* the certificate, arc by arc: every reduced cost L_i(t) - u_t - v_i >= 0, and v <= 0 */
        double acc[T], worst = 0;
        memset(acc, 0, sizeof acc);
        for (int t = T - 1; t >= S; t--) {
            for (int i = 0; i <= t; i++) acc[i] += (float)rows[(long)t * (t + 1) / 2 + i];
            if (isinf(u[t])) continue;
            for (int i = 0; i < t; i++) {
                double reduced = acc[i] - u[t] - v[i];
                worst = reduced < worst ? reduced : worst;
            }
        }
        for (int i = 0; i < T; i++) worst = -v[i] < worst ? -v[i] : worst;
        CHECK(worst > -1e-6, "a reduced cost of %g: not optimal", worst);
        printf("S %d B %d: lost %.6f, %.1f steps scanned per eviction, worst reduced cost %.2g\n", S, B, st.lost,
               (double)st.scanned / (T - (B > S ? B : S)), worst);
    }
    free(rows);
}

/* ScissorHands, window 2, B = 4, one head (rows sum to 1, share 1/|C|):
 * row 0 (1.0): token 0 counts.  Row 1 (0.7, 0.3; share 1/2): token 0.
 * Row 2 (0.2, 0.5, 0.3; share 1/3): row 0 leaves the window, token 1 counts.
 * Row 3 (0.1, 0.2, 0.4, 0.3; share 1/4): row 1 leaves; tokens 2, 3 count.
 * Counts: 0:0, 1:1, 2:1, 3:1.  Step 4: tokens 3, 4 are the window's
 * (protected); among 0, 1, 2 token 0 (count 0) goes, although it drew the
 * most attention in all: h2o would keep it.
 * Row 4 over (1, 2, 3, 4) = (0.05, 0.6, 0.05, 0.3): row 2 leaves (token 1
 * back to 0), tokens 2 and 4 count -> 1:0, 2:2, 3:1.  Step 5: token 1 goes.
 * Two heads (rows sum to 2, share 2/|C|), window 1, B = 2: row 1 over
 * (0, 1) = (1.1, 0.9): only token 0 reaches 2/2; at step 2 token 1 goes
 * (with a share of 1/|C| both would count and the older, token 0, would go). */
static void scissorhands(void)
{
    PolicySpec spec;
    KvError err;
    Policy p;
    CHECK(policy_parse("scissorhands:window=2", &spec, &err) == 0, "%s", err.msg);
    CHECK(policy_create(&p, &spec, 4, 10, 0, 0, &err) == 0, "%s", err.msg);
    const float rows[4][4] = {{1.0f}, {0.7f, 0.3f}, {0.2f, 0.5f, 0.3f}, {0.1f, 0.2f, 0.4f, 0.3f}};
    for (int t = 0; t < 4; t++) {
        policy_insert(&p, t, NULL);
        policy_observe(&p, rows[t], t);
    }
    policy_insert(&p, 4, NULL);
    int first = policy_evict(&p, 4);
    CHECK(first == 0, "step 4 evicted %d, not 0", first);
    const float row4[4] = {0.05f, 0.6f, 0.05f, 0.3f};
    policy_observe(&p, row4, 4);
    policy_insert(&p, 5, NULL);
    int second = policy_evict(&p, 5);
    CHECK(second == 1, "step 5 evicted %d, not 1", second);
    policy_destroy(&p);

    CHECK(policy_parse("scissorhands:window=1", &spec, &err) == 0, "%s", err.msg);
    CHECK(policy_create(&p, &spec, 2, 10, 0, 0, &err) == 0, "%s", err.msg);
    const float two0[1] = {2.0f}, two1[2] = {1.1f, 0.9f};
    policy_insert(&p, 0, NULL);
    policy_observe(&p, two0, 0);
    policy_insert(&p, 1, NULL);
    policy_observe(&p, two1, 1);
    policy_insert(&p, 2, NULL);
    int victim = policy_evict(&p, 2);
    CHECK(victim == 1, "two heads: evicted %d, not 1", victim);
    policy_destroy(&p);
    /* the window is protected: a window that covers the budget is refused */
    CHECK(policy_parse("scissorhands:window=4", &spec, &err) == 0, "%s", err.msg);
    CHECK(policy_create(&p, &spec, 4, 10, 0, 0, &err) != 0 && strstr(err.msg, "no room"), "window 4 at budget 4");
}

float quest_page_bound(const QueryView *v, int first, int last);

/* Quest, one head, d = 2, page 2, B = 4 (two pages), q = (1, -1), scale 1.
 * Keys k0 = (1, 0), k1 = (0, 1), k2 = (0.5, -1), k3 = (2, 2), k4, k5.
 * Page 0 {0, 1}: kmin = (0, 0), kmax = (1, 1): bound max(0, 1) + max(0, -1) = 1
 * (true max q·k: k0 -> 1).  Page 1 {2, 3}: kmin = (0.5, -1), kmax = (2, 2):
 * bound 2 + 1 = 3 (true max: k2 -> 1.5).  At t = 5 the current page {4, 5}
 * and page 1 are attended: tokens 2..5.  With k0 = (3, 0) page 0's bound is
 * 3 too: the tie goes to the newer page, 1. */
static void quest(void)
{
    float k[6][2] = {{1, 0}, {0, 1}, {0.5f, -1}, {2, 2}, {1, 1}, {-1, 0}}, q[2] = {1, -1};
    const float *qs[1] = {q}, *ks[1] = {&k[0][0]};
    QueryView view = {.n_heads = 1, .d = 2, .scale = 1.0f, .q = qs, .k = ks};
    CHECK(quest_page_bound(&view, 0, 1) == 1.0f && quest_page_bound(&view, 2, 3) == 3.0f, "bounds %g %g",
          quest_page_bound(&view, 0, 1), quest_page_bound(&view, 2, 3));
    PolicySpec spec;
    KvError err;
    Policy p;
    CHECK(policy_parse("quest:page=2", &spec, &err) == 0, "%s", err.msg);
    CHECK(policy_create(&p, &spec, 4, 6, 0, 0, &err) == 0, "%s", err.msg);
    int tokens[6], n = p.ops->select(&p, &view, 5, tokens);
    CHECK(n == 4 && tokens[0] == 2 && tokens[3] == 5, "selected %d tokens from %d", n, tokens[0]);
    k[0][0] = 3;
    n = p.ops->select(&p, &view, 5, tokens);
    CHECK(n == 4 && tokens[0] == 2, "tie: selected %d tokens from %d, not the newer page", n, tokens[0]);
    n = p.ops->select(&p, &view, 2, tokens); /* two pages, both attended */
    CHECK(n == 3 && tokens[0] == 0 && tokens[2] == 2, "t = 2: %d tokens", n);
    policy_destroy(&p);
    CHECK(policy_parse("quest:page=8", &spec, &err) == 0, "%s", err.msg);
    CHECK(policy_create(&p, &spec, 4, 100, 0, 0, &err) != 0 && strstr(err.msg, "B >= page"), "page 8 at budget 4");
}

/* The bound is never below the true maximum of q·k over the page, on random
 * queries and keys (two heads, d = 8, pages of 1 to 7 tokens). */
static void quest_bound(void)
{
    enum { D = 8, N = 40 };
    float k[2][N * D], q[2][D];
    unsigned seed = 7;
    for (int trial = 0; trial < 200; trial++) {
        for (int h = 0; h < 2; h++) {
            for (int i = 0; i < N * D; i++) k[h][i] = (float)rand_r(&seed) / RAND_MAX * 4 - 2;
            for (int c = 0; c < D; c++) q[h][c] = (float)rand_r(&seed) / RAND_MAX * 4 - 2;
        }
        const float *qs[2] = {q[0], q[1]}, *ks[2] = {k[0], k[1]};
        QueryView view = {.n_heads = 2, .d = D, .scale = 0.35f, .q = qs, .k = ks};
        int first = rand_r(&seed) % (N - 8), last = first + rand_r(&seed) % 7;
        double best = -INFINITY;
        for (int i = first; i <= last; i++) {
            double dot = 0;
            for (int h = 0; h < 2; h++)
                for (int c = 0; c < D; c++) dot += (double)(q[h][c] * 0.35f) * k[h][i * D + c];
            best = dot > best ? dot : best;
        }
        float bound = quest_page_bound(&view, first, last);
        CHECK(bound >= best - 1e-5, "trial %d: bound %g below the true maximum %g", trial, bound, best);
    }
}

/* Quest in the replay: with page 1 and B >= t + 1 every row attends to all
 * its tokens (mass 1); with page 2, B = 4 on the keys of `quest` and uniform
 * rows (1/(t+1)), rows 4 and 5 attend to 3 of 5 and 4 of 6 tokens. */
static void quest_replay(void)
{
    enum { T = 6 };
    double rows[T * (T + 1) / 2];
    for (int t = 0, j = 0; t < T; t++)
        for (int i = 0; i <= t; i++) rows[j++] = 1.0 / (t + 1);
    float k[T][2] = {{1, 0}, {0, 1}, {0.5f, -1}, {2, 2}, {1, 1}, {-1, 0}}, q[T][2];
    for (int t = 0; t < T; t++) { q[t][0] = 1; q[t][1] = -1; }
    const float *qs[1] = {&q[0][0]}, *ks[1] = {&k[0][0]};
    HandUnit h;
    hand_unit(&h, T, rows, NULL, NULL);
    h.unit.d = 2;
    h.unit.q = qs;
    h.unit.k = ks;
    ReplayResult r;
    replay_one(&h, "quest:page=1", T, &r, 0);
    for (int t = 0; t < T; t++)
        for (int i = 0; i <= t; i++) CHECK(held(&r, T, t, i), "page 1, B = T: token %d not attended at %d", i, t);
    CHECK(r.rows == T && fabs(r.mass[0] / r.rows - 1) < 1e-6, "page 1: mass %g", r.mass[0] / r.rows);
    replay_result_free(&r);
    replay_one(&h, "quest:page=2", 4, &r, 0);
    double want = (3.0 / 5 + 4.0 / 6) / 2;
    CHECK(r.rows == 2 && fabs(r.mass[0] / r.rows - want) < 1e-6, "page 2: mass %g, want %g", r.mass[0] / r.rows, want);
    CHECK(!held(&r, T, 5, 0) && !held(&r, T, 5, 1) && held(&r, T, 5, 2) && held(&r, T, 4, 4), "page 2: wrong pages");
    replay_result_free(&r);
}

/* pyramid: B_l = w + floor(M - l(M - m)/(L - 1) + 0.5), m = (B - w)/beta,
 * M = 2(B - w) - m, worked out by hand:
 *   L = 4, B = 100, w = 0, beta 20: m = 5, M = 195, steps of 63.33: 195, 132, 68, 5
 *   L = 3, B = 64, w = 16, beta 4: m = 12, M = 84, steps of 36: 16 + (84, 48, 12)
 *   L = 5, B = 50, w = 10, beta 20: m = 2, M = 78, steps of 19: 10 + (78, 59, 40, 21, 2)
 *   L = 2, B = 33, w = 0, beta 20: m = 1.65, M = 64.35: 64, 2
 *   L = 1: B.
 * And on many (L, B, w, beta) the mean is B within rounding (1/2 a token). */
static void pyramid(void)
{
    struct { int L, B, w; double beta; int want[5]; } cases[] = {
        {4, 100, 0, 20, {195, 132, 68, 5}}, {3, 64, 16, 4, {100, 64, 28}}, {5, 50, 10, 20, {88, 69, 50, 31, 12}},
        {2, 33, 0, 20, {64, 2}}, {1, 40, 8, 20, {40}},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        for (int l = 0; l < cases[i].L; l++) {
            int got = pyramid_budget(cases[i].L, l, cases[i].B, cases[i].w, cases[i].beta);
            CHECK(got == cases[i].want[l], "L %d B %d w %d beta %g: layer %d has %d, want %d", cases[i].L, cases[i].B,
                  cases[i].w, cases[i].beta, l, got, cases[i].want[l]);
        }
    for (int L = 1; L <= 40; L += 3)
        for (int B = 8; B <= 2000; B = B * 3 / 2)
            for (double beta = 1; beta <= 64; beta *= 4) {
                int w = B / 5;
                long sum = 0;
                for (int l = 0; l < L; l++) sum += pyramid_budget(L, l, B, w, beta);
                CHECK(fabs((double)sum / L - B) <= 0.5, "L %d B %d beta %g: mean %g", L, B, beta, (double)sum / L);
            }
    AllocSpec a;
    KvError err;
    CHECK(allocation_parse("pyramid", &a, &err) == 0 && a.beta == 20 && !strcmp(a.text, "pyramid:beta=20"), "%s", a.text);
    CHECK(allocation_parse("adaptive:floor=0.5", &a, &err) == 0 && a.floor == 0.5, "%s", err.msg);
    CHECK(allocation_parse("adaptive:beta=2", &a, &err) != 0, "adaptive:beta accepted");
    CHECK(allocation_parse("pyramid:beta=0.5", &a, &err) != 0, "beta 0.5 accepted");
    CHECK(allocation_parse("lifo", &a, &err) != 0 && strstr(err.msg, "unknown allocation"), "%s", err.msg);
    PolicySpec spec;
    CHECK(allocation_parse("adaptive", &a, &err) == 0 && policy_parse("knorm", &spec, &err) == 0, "%s", err.msg);
    CHECK(allocation_check(&a, &spec, &err) != 0 && strstr(err.msg, "comparable"), "adaptive knorm accepted");
}

/* Two units (one head each) sharing a pool of 2 x 3 tokens, h2o:recent=0.
 * Unit A rows: (1), (0.5, 0.5), (0.2, 0.4, 0.4): scores at step 3
 * A0 = 1.7, A1 = 0.9, A2 = 0.4.  Unit B rows: (1), (0.9, 0.1),
 * (0.8, 0.1, 0.1): B0 = 2.7, B1 = 0.2, B2 = 0.1.  Step 3 holds 8 > 6: the
 * lowest of all goes, B2 (0.1), then B1 (0.2 < A2's 0.4): B keeps (0, 3), A
 * keeps all four.  Uniform (and adaptive with floor 1, each unit keeping 3)
 * evicts A2 and B2.  Row 3: A (0.1, 0.2, 0.3, 0.4) all held, mass 1; B
 * (0.25 each) holds two, mass 0.5. */
static const double ADA_A[] = {1.0, 0.5, 0.5, 0.2, 0.4, 0.4, 0.1, 0.2, 0.3, 0.4};
static const double ADA_B[] = {1.0, 0.9, 0.1, 0.8, 0.1, 0.1, 0.25, 0.25, 0.25, 0.25};

static void replay_adaptive(HandUnit *h, int n_units, const char *policy, int budget, double floor_share,
                            ReplayResult *res)
{
    ReplayConfig c = config(policy, budget);
    c.keep_min = (int)floor(floor_share * budget);
    ReplayOptions opt = {.retention = 1};
    UnitData units[4];
    ReplayResult *out[4];
    KvError err;
    for (int i = 0; i < n_units; i++) {
        units[i] = h[i].unit;
        replay_result_alloc(&res[i], 1, h[i].unit.T, 1);
        out[i] = &res[i];
    }
    CHECK(replay_units_adaptive(units, n_units, &c, 1, &opt, out, &err) == 0, "%s: %s", policy, err.msg);
}

static void adaptive(void)
{
    enum { T = 4 };
    HandUnit h[2];
    hand_unit(&h[0], T, ADA_A, NULL, NULL);
    hand_unit(&h[1], T, ADA_B, NULL, NULL);
    ReplayResult r[2];
    replay_adaptive(h, 2, "h2o:recent=0", 3, 0.2, r);
    for (int i = 0; i < T; i++) CHECK(held(&r[0], T, 3, i), "A lost token %d", i);
    CHECK(held(&r[1], T, 3, 0) && !held(&r[1], T, 3, 1) && !held(&r[1], T, 3, 2) && held(&r[1], T, 3, 3),
          "B holds the wrong tokens at step 3");
    CHECK(r[1].evict_age[1] == 1 && r[1].evict_age[2] == 1 && r[0].evict_age[1] == 0, "eviction ages");
    CHECK(r[0].rows == 1 && fabs(r[0].mass[0] - 1.0) < 1e-6 && fabs(r[1].mass[0] - 0.5) < 1e-6, "mass %g %g",
          r[0].mass[0], r[1].mass[0]);
    for (int t = 0; t < T; t++) {
        int total = 0;
        for (int u = 0; u < 2; u++)
            for (int i = 0; i <= t; i++) total += held(&r[u], T, t, i);
        CHECK(total <= 2 * 3, "step %d holds %d > KV*B", t, total);
    }
    for (int u = 0; u < 2; u++) replay_result_free(&r[u]);
    /* floor 1: each unit keeps B, which is uniform's choice */
    replay_adaptive(h, 2, "h2o:recent=0", 3, 1.0, r);
    for (int u = 0; u < 2; u++) {
        ReplayResult alone;
        replay_one(&h[u], "h2o:recent=0", 3, &alone, 0);
        CHECK(!held(&r[u], T, 3, 2) && !memcmp(alone.retention, r[u].retention, T * T), "floor 1: unit %d", u);
        replay_result_free(&alone);
        replay_result_free(&r[u]);
    }
}

/* With one kv head per layer the pool is the unit's own B: adaptive equals
 * uniform, for every scoring rule it accepts, on rows where they evict. */
static void adaptive_one_unit(void)
{
    enum { T = 40 };
    double rows[T * (T + 1) / 2];
    random_rows(rows, T, 11);
    HandUnit h;
    hand_unit(&h, T, rows, NULL, NULL);
    const char *policies[] = {"h2o", "a2sf", "tova", "snapkv:window=3", "scissorhands:window=4"};
    for (size_t i = 0; i < sizeof policies / sizeof policies[0]; i++) {
        ReplayResult joint, alone;
        replay_adaptive(&h, 1, policies[i], 10, 0.2, &joint);
        replay_one(&h, policies[i], 10, &alone, 0);
        CHECK(!memcmp(joint.retention, alone.retention, T * T) && joint.mass[0] == alone.mass[0],
              "%s: adaptive with one unit differs from uniform", policies[i]);
        replay_result_free(&joint);
        replay_result_free(&alone);
    }
}

/* Bad configurations are refused with a clear message. */
static void refusals(void)
{
    PolicySpec spec;
    KvError err;
    CHECK(policy_parse("h2o:alpha=0.1", &spec, &err) != 0 && strstr(err.msg, "no parameter 'alpha'"), "%s", err.msg);
    CHECK(policy_parse("lru", &spec, &err) != 0 && strstr(err.msg, "unknown policy 'lru'"), "%s", err.msg);
    CHECK(policy_parse("a2sf:alpha=1.5", &spec, &err) != 0, "alpha 1.5 accepted");
    CHECK(policy_parse("streaming:sink=8", &spec, &err) == 0, "%s", err.msg);
    Policy p;
    CHECK(policy_create(&p, &spec, 8, 100, 0, 0, &err) != 0 && strstr(err.msg, "no room"), "%s", err.msg);
    CHECK(policy_parse("h2o", &spec, &err) == 0 && !strcmp(spec.canonical, "recent=0.5"), "canonical %s", spec.canonical);
    CHECK(policy_create(&p, &spec, 1, 100, 0, 0, &err) != 0, "h2o at budget 1 (recent 1) accepted");
}

int main(int argc, char **argv)
{
    struct { const char *name; void (*fn)(void); } cases[] = {
        {"h2o", h2o}, {"h2o_age_bias", h2o_age_bias}, {"a2sf_decay", a2sf_decay}, {"a2sf_long", a2sf_long},
        {"vatp", vatp}, {"knorm", knorm}, {"tova", tova}, {"snapkv", snapkv},
        {"window_and_streaming", window_and_streaming}, {"ties", ties}, {"output_error", output_error},
        {"prefill", prefill}, {"optimal_brute_force", optimal_brute_force}, {"schedule_vs_glpk", schedule_vs_glpk},
        {"optimal_long_unit", optimal_long_unit},
        {"refusals", refusals}, {"scissorhands", scissorhands}, {"quest", quest}, {"quest_bound", quest_bound},
        {"quest_replay", quest_replay}, {"pyramid", pyramid}, {"adaptive", adaptive},
        {"adaptive_one_unit", adaptive_one_unit}, {"scan_matches_model", scan_matches_model},
        {"snapkv_matches_model", snapkv_matches_model}, {"nan_scores_skipped", nan_scores_skipped},
    };
    if (argc != 2) return 2;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        if (!strcmp(argv[1], cases[i].name)) {
            cases[i].fn();
            return check_status();
        }
    fprintf(stderr, "unknown case %s\n", argv[1]);
    return 2;
}
