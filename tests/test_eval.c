/* The closed loop against an independent masked forward pass: the pruned
 * run's NLL equals that of the model run step by step with an explicit keep
 * mask built only from the evictions the policies reported (under uniform,
 * pyramid and adaptive allocations), or, for quest, from the pages each row
 * selected. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../eval/closed_loop.h"
#include "../trace/sampler.h"
#include "check.h"

typedef struct {
    int n, cap;
    int (*event)[4]; /* t, layer, unit, token (quest: a selected token) */
} EvictionLog;

static void log_eviction(void *ctx, int t, int layer, int unit, int token)
{
    EvictionLog *log = ctx;
    if (log->n == log->cap) {
        log->cap = log->cap ? 2 * log->cap : 256;
        log->event = realloc(log->event, (size_t)log->cap * sizeof *log->event);
    }
    int *e = log->event[log->n++];
    e[0] = t; e[1] = layer; e[2] = unit; e[3] = token;
}

/* quest: each row's selection, logged as one event per selected token. */
static void log_selection(void *ctx, int t, int layer, int unit, const int *tokens, int n)
{
    for (int j = 0; j < n; j++) log_eviction(ctx, t, layer, unit, tokens[j]);
}

/* Row t's keep mask from the log.  Evictions: tokens inserted and not yet
 * evicted (evictions at step t apply before step t attends).  Selections
 * (quest): exactly the tokens selected for row t (every token on rows with
 * no selection). */
static int apply_log(const ForwardState *s, uint8_t *keep, const EvictionLog *log, int next, int t, int selections)
{
    const ModelConfig *c = &s->cfg;
    for (int l = 0; l < c->n_layers; l++)
        for (int g = 0; g < c->n_kv_heads; g++) {
            if (selections) memset(keep + forward_unit_row(s, l, g), 1, (size_t)t + 1);
            keep[forward_unit_row(s, l, g) + t] = 1;
        }
    int from = next;
    for (; next < log->n && log->event[next][0] == t; next++) {
        long unit = forward_unit_row(s, log->event[next][1], log->event[next][2]);
        if (selections) memset(keep + unit, 0, (size_t)t + 1); /* rows with a selection: cleared, then marked */
        else keep[unit + log->event[next][3]] = 0;
    }
    for (int e = from; selections && e < next; e++)
        keep[forward_unit_row(s, log->event[e][1], log->event[e][2]) + log->event[e][3]] = 1;
    return next;
}

/* NLL over rows first..T-2 of the model run step by step with the keep masks of the log. */
static double masked_nll(const Model *m, const int *tokens, int T, const EvictionLog *log, int first, int selections,
                         KvError *err)
{
    ForwardState s;
    if (forward_state_init(&s, &m->cfg, T, 1, err)) return NAN;
    const ModelConfig *c = &m->cfg;
    uint8_t *keep = calloc((size_t)c->n_layers * c->n_kv_heads * T, 1);
    float *logits = malloc((size_t)c->vocab_size * sizeof(float));
    double nll = 0;
    int next = 0;
    for (int t = 0; t + 1 < T; t++) {
        next = apply_log(&s, keep, log, next, t, selections);
        forward_block(m, &s, &tokens[t], 1, t, logits, NULL, keep, err);
        if (t >= first) nll += token_nll(logits, c->vocab_size, tokens[t + 1]);
    }
    free(keep);
    free(logits);
    forward_state_free(&s);
    return nll;
}

static void check_policy(const Model *m, const char *policy, const char *allocation, int budget)
{
    enum { T = 150 };
    int tokens[T];
    tokens[0] = 1; /* BOS, then a fixed pseudo-random text */
    for (int t = 1; t < T; t++) tokens[t] = 2 + (int)((t * 2654435761u) % (unsigned)(m->cfg.vocab_size - 2));
    KvError err;
    ForwardState s;
    FullRun full;
    PolicySpec spec;
    AllocSpec alloc;
    CHECK(policy_parse(policy, &spec, &err) == 0, "%s", err.msg);
    CHECK(allocation_parse(allocation, &alloc, &err) == 0, "%s", err.msg);
    int quest = spec.name[0] == 'q';
    CHECK(forward_state_init(&s, &m->cfg, T, 1, &err) == 0, "%s", err.msg);
    CHECK(full_run(m, &s, tokens, T, 0, &full, &err) == 0, "%s", err.msg);
    EvictionLog log = {0};
    LoopOptions opt = {.first_reported = budget, .retention_layer = -1, .on_evict = log_eviction, .evict_ctx = &log,
                       .on_select = log_selection, .allocation = &alloc};
    LoopResult r = {0};
    CHECK(closed_loop_run(m, &s, tokens, &full, &spec, budget, &opt, &r, &err) == 0, "%s", err.msg);
    CHECK((quest ? r.evictions == 0 : r.evictions == log.n) && log.n > 0, "%ld evictions, %d logged", r.evictions,
          log.n);
    double independent = masked_nll(m, tokens, T, &log, budget, quest, &err);
    /* the closed loop scores through a float log-softmax, this test in double: ~1e-9 apart */
    CHECK(fabs(independent - r.nll) <= 1e-7 * fabs(independent), "%s: closed loop NLL %.12g, masked forward %.12g",
          policy, r.nll, independent);
    CHECK(fabs(r.nll - r.nll_full) > 1e-3, "%s: pruning must change the NLL (%.9g vs %.9g)", policy, r.nll, r.nll_full);
    printf("%s %s budget %d: %ld evictions, %d events, NLL sum %.6f (full %.6f), masked forward %.6f\n", policy,
           alloc.text, budget, r.evictions, log.n, r.nll, r.nll_full, independent);
    free(log.event);
    full_run_free(&full);
    forward_state_free(&s);
}

int main(int argc, char **argv)
{
    if (argc != 2) return 2;
    Model m;
    KvError err;
    if (model_load(&m, argv[1], NULL, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    check_policy(&m, "h2o", "uniform", 30);
    check_policy(&m, "a2sf:alpha=0.3", "uniform", 30);
    check_policy(&m, "knorm", "uniform", 40);
    check_policy(&m, "tova", "uniform", 20);
    check_policy(&m, "h2o", "pyramid:beta=4", 30);
    check_policy(&m, "knorm", "pyramid", 40);
    check_policy(&m, "h2o", "adaptive", 30);
    check_policy(&m, "snapkv:window=8", "adaptive:floor=0.5", 30);
    check_policy(&m, "scissorhands:window=8", "uniform", 30);
    check_policy(&m, "quest:page=4", "uniform", 32);
    model_free(&m);
    return check_status();
}
