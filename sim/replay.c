#include "replay.h"

#include "../util/progress.h"
#include "../util/select.h"
#include "../trace/trace_layer.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define DEFAULT_ROW_BLOCK 64
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

/* Everything one unit's replay works with. */
typedef struct {
    const UnitData *u;
    const ReplayConfig *cfg;
    int n_cfg;
    const ReplayOptions *opt;
    ReplayResult *out;
    Policy *pol;          /* [n_cfg]; unused for ideal */
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
    float *full_out;      /* [n_heads][d] o_t with the full cache */
    float *held_out;      /* [d] õ_t */
    int *ideal_tokens;    /* [T] scratch: the ideal set as a token list */
} Replay;

/* ---------------------------------------------------------------- attention */

/* Full attention rows t0..t0+n-1 of every head of the unit into x->block. */
static int attention_block(Replay *x, int t0, int n, KvError *err)
{
    const UnitData *u = x->u;
    long ld = u->T;
    for (int h = 0; h < u->n_heads; h++) {
        float *dst = x->block + (size_t)h * x->rb * ld;
        if (u->read_attention) {
            if (u->read_attention(u->read_ctx, h, t0, n, dst, ld, err)) return -1;
            continue;
        }
        attention_rows(u->q[h], u->k[h], u->d, t0, n, dst, ld);
    }
    return 0;
}

static const float *row_of(const Replay *x, int h, int r) { return x->block + ((size_t)h * x->rb + r) * x->u->T; }

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

static float output_error(Replay *x, int h, int r, const int *held, int n, float inv_mass)
{
    const UnitData *u = x->u;
    int d = u->d;
    const float *a = row_of(x, h, r), *v = u->v[h], *full = x->full_out + (size_t)h * d;
    memset(x->held_out, 0, (size_t)d * sizeof(float));
    for (int j = 0; j < n; j++) {
        float w = a[held[j]] * inv_mass;
        const float *vi = v + (size_t)held[j] * d;
        for (int c = 0; c < d; c++) x->held_out[c] += w * vi[c];
    }
    double diff = 0, norm = 0;
    for (int c = 0; c < d; c++) {
        diff += (double)(full[c] - x->held_out[c]) * (full[c] - x->held_out[c]);
        norm += (double)full[c] * full[c];
    }
    return norm > 0 ? (float)sqrt(diff / norm) : 0.0f;
}

/* o_t = Σ_i a_t(i) v_i for every head: once per error row, shared by all configs. */
static void full_outputs(Replay *x, int t, int r)
{
    const UnitData *u = x->u;
    for (int h = 0; h < u->n_heads; h++)
        cblas_sgemv(CblasRowMajor, CblasTrans, t + 1, u->d, 1.0f, u->v[h], u->d, row_of(x, h, r), 1, 0.0f,
                    x->full_out + (size_t)h * u->d, 1);
}

/* Mass, KL, error of the held set for every head; builds the observed row. */
static void attend_held(Replay *x, int c, int t, int r, const int *held, int n, int reported, int error_row,
                        float *observed)
{
    ReplayResult *res = &x->out[c];
    const UnitData *u = x->u;
    double mean_mass = 0;
    for (int h = 0; h < u->n_heads; h++) {
        const float *a = row_of(x, h, r);
        float *g = x->gathered;
        double part[4] = {0, 0, 0, 0}; /* four chains: the gather-add is latency bound */
        int j = 0;
        for (; j + 4 <= n; j += 4)
            for (int k = 0; k < 4; k++) part[k] += g[j + k] = a[held[j + k]];
        for (; j < n; j++) part[0] += g[j] = a[held[j]];
        double m = (part[0] + part[1]) + (part[2] + part[3]);
        if (m < MIN_MASS) m = MIN_MASS;
        float inv = (float)(1.0 / m);
        if (observed) { /* contiguous from here on: these loops vectorise */
            if (h == 0)
                for (j = 0; j < n; j++) observed[j] = g[j] * inv;
            else
                for (j = 0; j < n; j++) observed[j] += g[j] * inv;
        }
        if (!reported) continue;
        res->mass[h] += m;
        res->kl[h] += m < 1.0 ? -log(m) : 0.0; /* a full cache may sum to 1 + rounding */
        mean_mass += m;
        if (error_row && u->v) res->error[h] += output_error(x, h, r, held, n, inv);
    }
    if (reported) {
        res->curve[t] = (float)(mean_mass / u->n_heads);
        res->rows++;
        res->sampled_rows += error_row;
    }
}

static void record_retention(const Replay *x, int c, int t, const int *held, int n)
{
    uint8_t *row = x->out[c].retention;
    if (!row) return;
    row += (size_t)t * x->u->T;
    for (int j = 0; j < n; j++) row[held[j]] = 1;
}

/* ---------------------------------------------------------------- one step */

static void evict_to_budget(Replay *x, int c, int t)
{
    Policy *p = &x->pol[c];
    while (p->n > p->budget) {
        int token = policy_evict(p, t);
        if (token < 0) break; /* all protected: refused up front, so unreachable */
        x->out[c].evict_age[t - token]++;
    }
}

static void step_policy(Replay *x, int c, int t, int r, int error_row)
{
    Policy *p = &x->pol[c];
    const UnitData *u = x->u;
    int P = x->opt->n_prompt;
    TokenFeatures f = {u->k_norm ? u->k_norm[t] : 0.0f, u->v_l1 ? u->v_l1[t] : 0.0f};
    policy_insert(p, t, &f);
    if (t >= P) evict_to_budget(x, c, t);
    int reported = t >= replay_first_reported(x->opt, x->cfg[c].budget, u->T);
    if (reported && error_row) {
        int b = budget_index(x, x->cfg[c].budget);
        const uint8_t *flags = x->ideal + (size_t)b * u->T;
        int overlap = 0;
        for (int j = 0; j < p->n; j++) overlap += flags[p->tokens[j]];
        for (int h = 0; h < u->n_heads; h++) x->out[c].overlap[h] += (double)overlap / x->cfg[c].budget;
    }
    attend_held(x, c, t, r, p->tokens, p->n, reported, error_row && reported,
                p->ops->uses_attention ? x->observed : NULL);
    if (p->ops->uses_attention) policy_observe(p, x->observed, t);
    record_retention(x, c, t, p->tokens, p->n);
    if (P > 0 && t == P - 1) evict_to_budget(x, c, t); /* prefill: compress at the end of the prompt */
}

static void step_ideal(Replay *x, int c, int t, int r, int error_row)
{
    const UnitData *u = x->u;
    int budget = x->cfg[c].budget, reported = t >= replay_first_reported(x->opt, budget, u->T);
    const uint8_t *flags = x->ideal + (size_t)budget_index(x, budget) * u->T;
    int n = 0;
    for (int i = 0; i <= t; i++)
        if (flags[i]) x->ideal_tokens[n++] = i;
    if (reported && error_row)
        for (int h = 0; h < u->n_heads; h++) x->out[c].overlap[h] += 1.0;
    attend_held(x, c, t, r, x->ideal_tokens, n, reported, error_row && reported, NULL);
    record_retention(x, c, t, x->ideal_tokens, n);
}

static void step_row(Replay *x, int t, int r)
{
    const UnitData *u = x->u;
    int stride = x->opt->error_stride, error_row = stride > 0 && t % stride == 0, need_ideal = error_row;
    for (int b = 0; b < x->n_budgets; b++) need_ideal |= x->ideal_every_row[b];
    if (error_row && u->v) full_outputs(x, t, r);
    if (need_ideal) { /* the ideal sets rank the group sum of the heads' rows */
        memset(x->group_row, 0, (size_t)(t + 1) * sizeof(float));
        for (int h = 0; h < u->n_heads; h++) {
            const float *a = row_of(x, h, r);
            for (int i = 0; i <= t; i++) x->group_row[i] += a[i];
        }
    }
    for (int b = 0; b < x->n_budgets; b++)
        if (error_row || x->ideal_every_row[b]) ideal_set(x, t, x->budgets[b], x->ideal + (size_t)b * u->T);
    for (int c = 0; c < x->n_cfg; c++) {
        if (x->pol[c].ops->kind == KIND_IDEAL) step_ideal(x, c, t, r, error_row);
        else step_policy(x, c, t, r, error_row);
    }
}

/* ---------------------------------------------------------------- setup */

/* The hindsight oracle sees the unit's whole group-summed attention first. */
static int prepare_hindsight(Replay *x, KvError *err)
{
    const UnitData *u = x->u;
    int needed = 0;
    for (int c = 0; c < x->n_cfg; c++) needed |= x->pol[c].ops->needs_hindsight;
    if (!needed) return 0;
    size_t T = (size_t)u->T;
    float *all = calloc(T * T, sizeof(float));
    if (!all) return kv_fail(err, "out of memory for the %zu x %zu attention the optimal schedule needs", T, T);
    int rc = 0;
    for (int t0 = 0; t0 < u->T && rc == 0; t0 += x->rb) {
        int n = u->T - t0 < x->rb ? u->T - t0 : x->rb;
        rc = attention_block(x, t0, n, err);
        for (int r = 0; r < n && rc == 0; r++)
            for (int h = 0; h < u->n_heads; h++) {
                const float *a = row_of(x, h, r);
                float *dst = all + (size_t)(t0 + r) * T;
                for (int i = 0; i <= t0 + r; i++) dst[i] += a[i];
            }
    }
    for (int c = 0; c < x->n_cfg && rc == 0; c++)
        if (x->pol[c].ops->needs_hindsight)
            rc = x->pol[c].ops->prepare(&x->pol[c], all, (long)T, u->T, x->opt->n_prompt, err);
    free(all);
    return rc;
}

static int setup(Replay *x, KvError *err)
{
    const UnitData *u = x->u;
    size_t T = (size_t)u->T;
    x->rb = x->opt->row_block > 0 ? x->opt->row_block : DEFAULT_ROW_BLOCK;
    x->pol = calloc((size_t)x->n_cfg, sizeof *x->pol);
    x->block = malloc((size_t)u->n_heads * x->rb * T * sizeof(float));
    x->group_row = malloc(T * sizeof(float));
    x->select = malloc(T * sizeof(float));
    x->budgets = malloc((size_t)x->n_cfg * sizeof(int));
    x->ideal_every_row = calloc((size_t)x->n_cfg, sizeof(int));
    x->ideal = malloc((size_t)x->n_cfg * T);
    x->observed = malloc((T + 1) * sizeof(float));
    x->gathered = malloc((T + 1) * sizeof(float));
    x->full_out = malloc((size_t)u->n_heads * u->d * sizeof(float));
    x->held_out = malloc((size_t)u->d * sizeof(float));
    x->ideal_tokens = malloc(T * sizeof(int));
    if (!x->pol || !x->block || !x->group_row || !x->select || !x->budgets || !x->ideal_every_row || !x->ideal || !x->observed || !x->gathered ||
        !x->full_out || !x->held_out || !x->ideal_tokens)
        return kv_fail(err, "out of memory replaying a %zu-token unit", T);
    for (int c = 0; c < x->n_cfg; c++) {
        if (budget_index(x, x->cfg[c].budget) < 0) x->budgets[x->n_budgets++] = x->cfg[c].budget;
        if (policy_lookup(x->cfg[c].spec.name)->kind == KIND_IDEAL)
            x->ideal_every_row[budget_index(x, x->cfg[c].budget)] = 1;
        if (policy_create(&x->pol[c], &x->cfg[c].spec, x->cfg[c].budget, u->T, u->layer, u->unit, err))
            return -1;
    }
    return prepare_hindsight(x, err);
}

static void teardown(Replay *x)
{
    for (int c = 0; x->pol && c < x->n_cfg; c++)
        if (x->pol[c].ops) policy_destroy(&x->pol[c]);
    free(x->pol); free(x->block); free(x->group_row); free(x->select); free(x->budgets); free(x->ideal_every_row); free(x->ideal);
    free(x->observed); free(x->gathered); free(x->full_out); free(x->held_out); free(x->ideal_tokens);
}

int replay_unit(const UnitData *u, const ReplayConfig *cfg, int n_cfg, const ReplayOptions *opt,
                ReplayResult *out, double *attention_seconds, KvError *err)
{
    Replay x = {.u = u, .cfg = cfg, .n_cfg = n_cfg, .opt = opt, .out = out};
    int rc = setup(&x, err);
    double in_attention = 0;
    for (int t0 = 0; t0 < u->T && rc == 0; t0 += x.rb) {
        int n = u->T - t0 < x.rb ? u->T - t0 : x.rb;
        double start = kv_now_seconds();
        rc = attention_block(&x, t0, n, err);
        in_attention += kv_now_seconds() - start;
        for (int r = 0; r < n && rc == 0; r++) step_row(&x, t0 + r, r);
    }
    teardown(&x);
    if (attention_seconds) *attention_seconds = in_attention;
    return rc;
}
