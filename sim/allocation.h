/* allocation.h — how many tokens each cache unit may hold (scoring, policy.h,
 * decides which).  B is the mean budget per unit.
 *
 *   uniform             every unit holds at most B
 *   pyramid[:beta=20]   (PyramidKV) layer l of L holds at most B_l, decreasing
 *                       linearly with depth, mean B (pyramid_budgets)
 *   adaptive[:floor=0.2] (Ada-KV) the units of a layer share a pool of
 *                       units·B tokens and evict jointly the unprotected token
 *                       of lowest score among them, each keeping at least
 *                       floor(floor·B) (adaptive_evict)
 *
 * The replay (sim/replay.c) and the closed loop (eval/closed_loop.c) both
 * evict through adaptive_evict, so they make the same choices. */
#ifndef KV_ALLOCATION_H
#define KV_ALLOCATION_H

#include "../util/error.h"
#include "policy.h"

typedef enum { ALLOC_UNIFORM, ALLOC_PYRAMID, ALLOC_ADAPTIVE } AllocKind;

typedef struct {
    AllocKind kind;
    double beta;        /* pyramid: the first layer's budget over the last's, about */
    double floor;       /* adaptive: the least share of B a unit keeps */
    char text[48];      /* canonical: "uniform", "pyramid:beta=20", "adaptive:floor=0.2" */
} AllocSpec;

/* Parses "uniform", "pyramid[:beta=X]", "adaptive[:floor=X]". */
int allocation_parse(const char *text, AllocSpec *a, KvError *err);

/* Refuses an allocation the policy cannot take (adaptive needs scores that
 * are comparable across units: attention mass). */
int allocation_check(const AllocSpec *a, const PolicySpec *spec, KvError *err);

/* pyramid: with w the policy's protected recent window in tokens,
 * m = (B - w)/beta, M = 2(B - w) - m, B_l = w + floor(M - l(M - m)/(L - 1) + 0.5)
 * for layer l of L (L = 1: B_0 = B). */
int pyramid_budget(int n_layers, int layer, int budget, int window, double beta);

/* The budget of a layer under an allocation; `window` is the policy's
 * protected recent window at B (pyramid's w). */
int allocation_layer_budget(const AllocSpec *a, int n_layers, int layer, int budget, int window);

/* adaptive: evicts from *units[0..n) at step t until they hold at most `pool`
 * tokens together: each time the unprotected token of lowest score among the
 * units holding more than keep_min (ties: the oldest position, then the
 * lowest unit).  slot and score are scratch of n entries.  Calls
 * on_evict(ctx, unit, token) for each eviction (may be NULL). */
void adaptive_evict(Policy *const *units, int n, int t, long pool, int keep_min, int *slot, float *score,
                    void (*on_evict)(void *ctx, int unit, int token), void *ctx);

#endif
