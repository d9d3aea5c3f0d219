/* Budget allocation across units (allocation.h). */
#include "allocation.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int allocation_parse(const char *text, AllocSpec *a, KvError *err)
{
    memset(a, 0, sizeof *a);
    const char *colon = strchr(text, ':');
    size_t n = colon ? (size_t)(colon - text) : strlen(text);
    const char *key;
    double *value, min, max;
    if (n == 7 && !strncmp(text, "uniform", n)) {
        if (colon) return kv_fail(err, "allocation uniform takes no parameters, got '%s'", text);
        snprintf(a->text, sizeof a->text, "uniform");
        return 0;
    } else if (n == 7 && !strncmp(text, "pyramid", n)) {
        a->kind = ALLOC_PYRAMID;
        a->beta = 20;
        key = "beta", value = &a->beta, min = 1, max = 1e6;
    } else if (n == 8 && !strncmp(text, "adaptive", n)) {
        a->kind = ALLOC_ADAPTIVE;
        a->floor = 0.2;
        key = "floor", value = &a->floor, min = 0, max = 1;
    } else {
        return kv_fail(err, "unknown allocation '%s' (known: uniform, pyramid[:beta=20], adaptive[:floor=0.2])", text);
    }
    if (colon) {
        size_t k = strlen(key);
        char *end;
        if (strncmp(colon + 1, key, k) || colon[1 + k] != '=')
            return kv_fail(err, "allocation %.*s takes only %s=X, got '%s'", (int)n, text, key, text);
        double v = strtod(colon + 2 + k, &end);
        if (end == colon + 2 + k || *end || !(v >= min && v <= max))
            return kv_fail(err, "allocation %.*s: %s must be a number in [%g, %g], got '%s'", (int)n, text, key, min,
                           max, colon + 2 + k);
        *value = v;
    }
    snprintf(a->text, sizeof a->text, "%.*s:%s=%g", (int)n, text, key, *value);
    return 0;
}

int allocation_check(const AllocSpec *a, const PolicySpec *spec, KvError *err)
{
    const PolicyOps *ops = policy_lookup(spec->name);
    if (a->kind == ALLOC_ADAPTIVE && ops && !ops->comparable_scores)
        return kv_fail(err, "allocation %s needs scores comparable across the units of a layer (attention mass: "
                       "h2o, a2sf, vatp, tova, snapkv, scissorhands); %s's are not", a->text, spec->name);
    return 0;
}

int pyramid_budget(int n_layers, int layer, int budget, int window, double beta)
{
    if (n_layers == 1) return budget;
    double m = (budget - window) / beta, M = 2.0 * (budget - window) - m;
    return window + (int)floor(M - layer * (M - m) / (n_layers - 1) + 0.5);
}

int allocation_layer_budget(const AllocSpec *a, int n_layers, int layer, int budget, int window)
{
    return a->kind == ALLOC_PYRAMID ? pyramid_budget(n_layers, layer, budget, window, a->beta) : budget;
}

void adaptive_evict(Policy *const *units, int n, int t, long pool, int keep_min, int *slot, float *score,
                    void (*on_evict)(void *ctx, int unit, int token), void *ctx)
{
    long held = 0;
    for (int u = 0; u < n; u++) {
        held += units[u]->n;
        slot[u] = units[u]->n > keep_min ? policy_candidate(units[u], t, &score[u]) : -1;
    }
    while (held > pool) {
        int best = -1;
        for (int u = 0; u < n; u++) {
            if (slot[u] < 0) continue;
            int token = units[u]->tokens[slot[u]];
            if (best < 0 || score[u] < score[best] ||
                (score[u] == score[best] && token < units[best]->tokens[slot[best]]))
                best = u;
        }
        if (best < 0) break; /* everything protected or at the floor: refused up front, so unreachable */
        Policy *p = units[best];
        int token = policy_remove(p, slot[best]);
        held--;
        if (on_evict) on_evict(ctx, best, token);
        slot[best] = p->n > keep_min ? policy_candidate(p, t, &score[best]) : -1;
    }
}
