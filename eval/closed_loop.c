#include "closed_loop.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../trace/sampler.h"

/* log-softmax of one row of logits into out. */
static void log_softmax(const float *logits, int n, float *out)
{
    float max = logits[argmax(logits, n)];
    double sum = 0;
    for (int i = 0; i < n; i++) sum += exp((double)logits[i] - max);
    float log_sum = (float)log(sum);
    for (int i = 0; i < n; i++) out[i] = logits[i] - max - log_sum;
}

void full_run_free(FullRun *r)
{
    free(r->logprobs);
    free(r->greedy);
    memset(r, 0, sizeof *r);
}

int full_run(const Model *m, ForwardState *s, const int *tokens, int T, int generate, FullRun *out, KvError *err)
{
    int V = m->cfg.vocab_size;
    memset(out, 0, sizeof *out);
    out->T = T;
    out->generate = generate;
    out->vocab = V;
    out->logprobs = malloc((size_t)T * V * sizeof(float));
    out->greedy = malloc((size_t)(generate ? generate : 1) * sizeof(int));
    float *logits = malloc((size_t)V * sizeof(float));
    if (!out->logprobs || !out->greedy || !logits) {
        free(logits);
        full_run_free(out);
        return kv_fail(err, "out of memory for the full-cache run of a %d-token text", T);
    }
    int token = tokens[0];
    for (int t = 0; t + 1 < T + generate; t++) {
        forward_block(m, s, &token, 1, t, logits, NULL, NULL, err);
        if (t < T) log_softmax(logits, V, out->logprobs + (size_t)t * V);
        int next = t + 1 < T ? tokens[t + 1] : argmax(logits, V);
        if (t + 1 >= T && t + 1 - T < generate) out->greedy[t + 1 - T] = next;
        token = next;
    }
    free(logits);
    return 0;
}

/* ------------------------------------------------------------ the pruned cache */

/* The observer that lets the policies drive the forward pass's cache. */
typedef struct {
    const ForwardState *s;
    const LoopOptions *opt;
    int units;           /* cache units per layer */
    int heads_per_unit;
    int kv_per_unit;     /* kv heads sharing one unit's cache */
    Policy *pol;         /* [n_layers][units] */
    uint8_t *keep;       /* [n_layers][n_kv_heads][capacity] */
    float *observed;     /* [capacity] */
    int *selected;       /* [capacity] a selector's tokens */
    const float **q_row, **k_rows; /* [heads_per_unit] a selector's view of one unit */
    int T;               /* text length (retention rows) */
    LoopResult *res;
    /* adaptive allocation: the units of a layer evict jointly */
    int adaptive, keep_min, budget;
    Policy **joint;      /* [units] one layer's policies */
    int *slot;           /* [units] scratch for adaptive_evict */
    float *score;
    int joint_layer, joint_t;
} PrunedCache;

static void set_keep(PrunedCache *c, int layer, int unit, int token, uint8_t value)
{
    for (int j = 0; j < c->kv_per_unit; j++)
        c->keep[forward_unit_row(c->s, layer, unit * c->kv_per_unit + j) + token] = value;
}

static void evict_to_budget(PrunedCache *c, int layer, int unit, int t)
{
    Policy *p = &c->pol[layer * c->units + unit];
    while (p->n > p->budget) {
        int token = policy_evict(p, t);
        if (token < 0) break; /* everything protected: refused when the policy was created */
        set_keep(c, layer, unit, token, 0);
        c->res->evictions++;
        if (c->opt->on_evict) c->opt->on_evict(c->opt->evict_ctx, t, layer, unit, token);
    }
}

static void joint_evicted(void *ctx, int unit, int token)
{
    PrunedCache *c = ctx;
    set_keep(c, c->joint_layer, unit, token, 0);
    c->res->evictions++;
    if (c->opt->on_evict) c->opt->on_evict(c->opt->evict_ctx, c->joint_t, c->joint_layer, unit, token);
}

/* adaptive: the layer's units evict together down to units * B tokens. */
static void evict_jointly(PrunedCache *c, int layer, int t)
{
    for (int u = 0; u < c->units; u++) c->joint[u] = &c->pol[layer * c->units + u];
    c->joint_layer = layer;
    c->joint_t = t;
    adaptive_evict(c->joint, c->units, t, (long)c->units * c->budget, c->keep_min, c->slot, c->score, joint_evicted, c);
}

static void record_held(PrunedCache *c, int layer, int u, int t)
{
    const Policy *p = &c->pol[layer * c->units + u];
    if (c->res->retention && t < c->T && layer == c->opt->retention_layer && u == c->opt->retention_unit)
        for (int j = 0; j < p->n; j++) c->res->retention[(size_t)t * c->T + p->tokens[j]] = 1;
}

/* The token's features for one unit: norms of its kv head, or their mean over the layer. */
static TokenFeatures features(const PrunedCache *c, int unit, const float *k, const float *v)
{
    int d = c->s->cfg.head_dim;
    TokenFeatures f = {0, 0};
    for (int j = 0; j < c->kv_per_unit; j++) {
        const float *kh = k + (size_t)(unit * c->kv_per_unit + j) * d, *vh = v + (size_t)(unit * c->kv_per_unit + j) * d;
        double k2 = 0, v1 = 0;
        for (int i = 0; i < d; i++) { k2 += (double)kh[i] * kh[i]; v1 += fabs(vh[i]); }
        f.k_norm += (float)sqrt(k2) / c->kv_per_unit;
        f.v_l1 += (float)v1 / c->kv_per_unit;
    }
    return f;
}

/* A selector's row: every token of the unit masked but those it selects from q_t. */
static void select_row(PrunedCache *c, int layer, int u, int t, const float *q)
{
    const ModelConfig *cfg = &c->s->cfg;
    int d = cfg->head_dim, group = cfg->n_heads / cfg->n_kv_heads, n = t + 1;
    if (t >= c->opt->n_prompt) {
        for (int i = 0; i < c->heads_per_unit; i++) {
            int h = u * c->heads_per_unit + i;
            c->q_row[i] = q + (size_t)h * d;
            c->k_rows[i] = c->s->key_cache + forward_unit_row(c->s, layer, h / group) * d;
        }
        QueryView view = {.n_heads = c->heads_per_unit, .d = d, .scale = 1.0f / sqrtf((float)d), .q = c->q_row,
                          .k = c->k_rows};
        Policy *p = &c->pol[layer * c->units + u];
        n = p->ops->select(p, &view, t, c->selected);
        if (c->opt->on_select) c->opt->on_select(c->opt->evict_ctx, t, layer, u, c->selected, n);
    } else {
        for (int i = 0; i < n; i++) c->selected[i] = i;
    }
    for (int i = 0; i <= t; i++) set_keep(c, layer, u, i, 0);
    for (int j = 0; j < n; j++) set_keep(c, layer, u, c->selected[j], 1);
    if (c->res->retention && t < c->T && layer == c->opt->retention_layer && u == c->opt->retention_unit)
        for (int j = 0; j < n; j++) c->res->retention[(size_t)t * c->T + c->selected[j]] = 1;
}

static int on_qkv(void *ctx, int layer, int pos0, int n, const float *q, const float *k, const float *v)
{
    (void)n; /* one token per step */
    PrunedCache *c = ctx;
    int t = pos0;
    for (int u = 0; u < c->units; u++) {
        TokenFeatures f = features(c, u, k, v);
        Policy *p = &c->pol[layer * c->units + u];
        if (p->ops->kind == KIND_SELECT) {
            select_row(c, layer, u, t, q);
            continue;
        }
        policy_insert(p, t, &f);
        set_keep(c, layer, u, t, 1);
        if (c->adaptive) continue; /* evicted below, with the layer's other units */
        if (t >= c->opt->n_prompt) evict_to_budget(c, layer, u, t);
        record_held(c, layer, u, t);
    }
    if (c->adaptive && t >= c->opt->n_prompt) evict_jointly(c, layer, t);
    for (int u = 0; c->adaptive && u < c->units; u++) record_held(c, layer, u, t);
    return 0;
}

static int on_attention(void *ctx, int layer, int head, int pos0, int n, const float *probs, int ld)
{
    (void)n;
    (void)ld;
    PrunedCache *c = ctx;
    int u = head / c->heads_per_unit, t = pos0;
    Policy *p = &c->pol[layer * c->units + u];
    if (head % c->heads_per_unit == 0) memset(c->observed, 0, (size_t)p->n * sizeof(float));
    for (int j = 0; j < p->n; j++) c->observed[j] += probs[p->tokens[j]];
    if ((head + 1) % c->heads_per_unit) return 0; /* more heads of this unit to come */
    if (p->ops->uses_attention) policy_observe(p, c->observed, t);
    if (c->opt->n_prompt > 0 && t == c->opt->n_prompt - 1) { /* prefill: compress after the prompt */
        if (!c->adaptive) evict_to_budget(c, layer, u, t);
        else if (u == c->units - 1) evict_jointly(c, layer, t);
    }
    return 0;
}

/* ------------------------------------------------------------ one run */

static void pruned_cache_free(PrunedCache *c, int n_policies)
{
    for (int i = 0; c->pol && i < n_policies; i++)
        if (c->pol[i].ops) policy_destroy(&c->pol[i]);
    free(c->pol);
    free(c->keep);
    free(c->observed);
    free(c->joint);
    free(c->slot);
    free(c->score);
    free(c->selected);
    free(c->q_row);
    free(c->k_rows);
}

static int pruned_cache_init(PrunedCache *c, const ForwardState *s, const PolicySpec *spec, int budget,
                             int capacity, KvError *err)
{
    const ModelConfig *cfg = &s->cfg;
    c->units = c->opt->layer_granularity ? 1 : cfg->n_kv_heads;
    c->heads_per_unit = cfg->n_heads / c->units;
    c->kv_per_unit = cfg->n_kv_heads / c->units;
    c->pol = calloc((size_t)cfg->n_layers * c->units, sizeof *c->pol);
    c->keep = calloc((size_t)cfg->n_layers * cfg->n_kv_heads * s->capacity, 1);
    c->observed = malloc((size_t)capacity * sizeof(float));
    c->selected = malloc((size_t)capacity * sizeof(int));
    c->joint = malloc((size_t)c->units * sizeof *c->joint);
    c->slot = malloc((size_t)c->units * sizeof *c->slot);
    c->score = malloc((size_t)c->units * sizeof *c->score);
    c->q_row = malloc((size_t)c->heads_per_unit * sizeof *c->q_row);
    c->k_rows = malloc((size_t)c->heads_per_unit * sizeof *c->k_rows);
    if (!c->pol || !c->keep || !c->observed || !c->selected || !c->q_row || !c->k_rows || !c->joint || !c->slot ||
        !c->score) return kv_fail(err, "out of memory for a pruned cache");
    const AllocSpec *alloc = c->opt->allocation;
    c->adaptive = alloc && alloc->kind == ALLOC_ADAPTIVE;
    c->keep_min = alloc ? (int)floor(alloc->floor * budget) : 0;
    c->budget = budget;
    Policy probe; /* pyramid's w: the policy's protected recent window at B */
    if (policy_create(&probe, spec, budget, capacity, 0, 0, err)) return -1;
    int window = probe.recent;
    policy_destroy(&probe);
    for (int l = 0; l < cfg->n_layers; l++) {
        int layer_budget = alloc ? allocation_layer_budget(alloc, cfg->n_layers, l, budget, window) : budget;
        for (int u = 0; u < c->units; u++)
            if (policy_create(&c->pol[l * c->units + u], spec, layer_budget, capacity, l, u, err)) return -1;
    }
    return 0;
}

/* Adds one reported row's metrics: the pruned model's next-token
 * distribution against the full cache's. */
static void score_row(LoopResult *out, const float *logprobs, const float *full, int V, int target)
{
    double kl = 0;
    for (int i = 0; i < V; i++) kl += exp((double)full[i]) * ((double)full[i] - logprobs[i]);
    out->nll += -logprobs[target];
    out->nll_full += -full[target];
    out->kl += kl > 0 ? kl : 0;
    out->top1 += argmax(logprobs, V) == argmax(full, V);
    out->rows++;
}

int closed_loop_run(const Model *m, ForwardState *s, const int *tokens, const FullRun *full, const PolicySpec *spec,
                    int budget, const LoopOptions *opt, LoopResult *out, KvError *err)
{
    int T = full->T, G = full->generate, V = full->vocab, capacity = T + G;
    if (capacity > s->capacity) return kv_fail(err, "a %d-token run exceeds the cache of %d", capacity, s->capacity);
    uint8_t *retention = out->retention;
    memset(out, 0, sizeof *out);
    out->retention = retention;
    PrunedCache c = {.s = s, .opt = opt, .T = T, .res = out};
    float *logits = malloc((size_t)V * sizeof(float)), *logprobs = malloc((size_t)V * sizeof(float));
    int rc = -1, n_policies = m->cfg.n_layers * (opt->layer_granularity ? 1 : m->cfg.n_kv_heads);
    if (!logits || !logprobs) {
        kv_fail(err, "out of memory");
        goto done;
    }
    if (pruned_cache_init(&c, s, spec, budget, capacity, err)) goto done;
    ForwardObserver obs = {.ctx = &c, .on_qkv = on_qkv, .on_attention = on_attention};
    int token = tokens[0], agreeing = 1;
    int steps = G > 0 ? T + G - 1 : T; /* the last text row too, so the held sets cover every step */
    for (int t = 0; t < steps; t++) {
        if (forward_block(m, s, &token, 1, t, logits, &obs, c.keep, err)) goto done;
        if (t + 1 < T) { /* teacher-forced: the row predicts tokens[t + 1] */
            if (t >= opt->first_reported) {
                log_softmax(logits, V, logprobs);
                score_row(out, logprobs, full->logprobs + (size_t)t * V, V, tokens[t + 1]);
            }
            token = tokens[t + 1];
        } else if (t + 1 - T < G) { /* greedy continuation, compared with the full cache's */
            token = argmax(logits, V);
            agreeing &= token == full->greedy[t + 1 - T];
            out->greedy_agree += agreeing;
        }
    }
    rc = 0;
done:
    pruned_cache_free(&c, n_policies);
    free(logits);
    free(logprobs);
    return rc;
}
