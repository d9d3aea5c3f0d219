/* The closed loop against an independent masked forward pass: the pruned
 * run's NLL equals that of the model run step by step with an explicit keep
 * mask built only from the evictions the policies reported. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../eval/closed_loop.h"
#include "../trace/sampler.h"
#include "check.h"

typedef struct {
    int n, cap;
    int (*event)[4]; /* t, layer, unit, token */
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

/* NLL over rows first..T-2 of the model run with keep = tokens inserted and
 * not yet evicted (evictions at step t apply before step t attends). */
static double masked_nll(const Model *m, const int *tokens, int T, const EvictionLog *log, int first, KvError *err)
{
    ForwardState s;
    if (forward_state_init(&s, &m->cfg, T, 1, err)) return NAN;
    const ModelConfig *c = &m->cfg;
    uint8_t *keep = calloc((size_t)c->n_layers * c->n_kv_heads * T, 1);
    float *logits = malloc((size_t)c->vocab_size * sizeof(float));
    double nll = 0;
    int next = 0;
    for (int t = 0; t + 1 < T; t++) {
        for (int l = 0; l < c->n_layers; l++)
            for (int g = 0; g < c->n_kv_heads; g++) keep[forward_unit_row(&s, l, g) + t] = 1;
        for (; next < log->n && log->event[next][0] == t; next++)
            keep[forward_unit_row(&s, log->event[next][1], log->event[next][2]) + log->event[next][3]] = 0;
        forward_block(m, &s, &tokens[t], 1, t, logits, NULL, keep, err);
        if (t >= first) nll += token_nll(logits, c->vocab_size, tokens[t + 1]);
    }
    free(keep);
    free(logits);
    forward_state_free(&s);
    return nll;
}

static void check_policy(const Model *m, const char *policy, int budget)
{
    enum { T = 150 };
    int tokens[T];
    tokens[0] = 1; /* BOS, then a fixed pseudo-random text */
    for (int t = 1; t < T; t++) tokens[t] = 2 + (int)((t * 2654435761u) % (unsigned)(m->cfg.vocab_size - 2));
    KvError err;
    ForwardState s;
    FullRun full;
    PolicySpec spec;
    CHECK(policy_parse(policy, &spec, &err) == 0, "%s", err.msg);
    CHECK(forward_state_init(&s, &m->cfg, T, 1, &err) == 0, "%s", err.msg);
    CHECK(full_run(m, &s, tokens, T, 0, &full, &err) == 0, "%s", err.msg);
    EvictionLog log = {0};
    LoopOptions opt = {.first_reported = budget, .retention_layer = -1, .on_evict = log_eviction, .evict_ctx = &log};
    LoopResult r = {0};
    CHECK(closed_loop_run(m, &s, tokens, &full, &spec, budget, &opt, &r, &err) == 0, "%s", err.msg);
    CHECK(r.evictions == log.n && log.n > 0, "%ld evictions, %d logged", r.evictions, log.n);
    double independent = masked_nll(m, tokens, T, &log, budget, &err);
    /* the closed loop scores through a float log-softmax, this test in double: ~1e-9 apart */
    CHECK(fabs(independent - r.nll) <= 1e-7 * fabs(independent), "%s: closed loop NLL %.12g, masked forward %.12g",
          policy, r.nll, independent);
    CHECK(fabs(r.nll - r.nll_full) > 1e-3, "%s: pruning must change the NLL (%.9g vs %.9g)", policy, r.nll, r.nll_full);
    printf("%s budget %d: %ld evictions, NLL sum %.6f (full %.6f), masked forward %.6f\n", policy, budget,
           r.evictions, r.nll, r.nll_full, independent);
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
    check_policy(&m, "h2o", 30);
    check_policy(&m, "a2sf:alpha=0.3", 30);
    check_policy(&m, "knorm", 40);
    check_policy(&m, "tova", 20);
    model_free(&m);
    return check_status();
}
