/* closed_loop.h — one text through the real model with an eviction policy
 * driving its KV cache (docs/semantics.md, "The closed loop").
 *
 * The model runs teacher-forced, one token per step.  In each layer, after
 * the new token's q, k, v exist and before anyone attends, the token enters
 * the layer's policies and they evict down to the budget; evicted keys are
 * masked for every later step.  The attention the pruned model then computes
 * (renormalized over the kept tokens: what a real system sees) is summed over
 * each unit's query heads and fed back to its policy.  These are the same
 * Policy objects and the same calls (policy.h) as the offline replay, in the
 * same order: insert, evict, attend, observe; in prefill mode the cache is
 * compressed once after the last prompt row.  A selecting policy (quest)
 * keeps everything and masks, for each row, all but the tokens it selects
 * from that row's q (every row in streaming mode, the rows after the prompt
 * in prefill mode), as the replay does. */
#ifndef KV_CLOSED_LOOP_H
#define KV_CLOSED_LOOP_H

#include <stdint.h>

#include "../sim/allocation.h"
#include "../sim/policy.h"
#include "../trace/forward.h"
#include "../trace/model.h"

/* The full-cache reference of one text: next-token log-probabilities and the
 * greedy continuation. */
typedef struct {
    int T, generate, vocab;
    float *logprobs;   /* [T][vocab] log-softmax of the logits at each step */
    int *greedy;       /* [generate] greedy continuation after the text */
} FullRun;

typedef struct {
    int n_prompt;            /* prefill mode: P >= 1; 0 = streaming */
    int layer_granularity;   /* one cache per layer (else per kv head) */
    int first_reported;      /* metrics over rows first_reported .. T-2 */
    int retention_layer;     /* record the held set of this unit at every step (-1 = none) */
    int retention_unit;
    const AllocSpec *allocation; /* across the units (NULL = uniform) */
    /* called for every eviction (tests build masks from it); may be NULL */
    void (*on_evict)(void *ctx, int t, int layer, int unit, int token);
    void *evict_ctx;
    /* called (with evict_ctx) for every row a selecting policy (quest) attends to a subset: its tokens */
    void (*on_select)(void *ctx, int t, int layer, int unit, const int *tokens, int n);
} LoopOptions;

typedef struct {
    double nll, nll_full, kl; /* sums over reported rows */
    long top1, rows;          /* top-1 agreements, reported rows */
    int greedy_agree;         /* greedy tokens equal to the full cache's before the first difference */
    long evictions;
    uint8_t *retention;       /* [T][T], caller-allocated, or NULL */
} LoopResult;

int full_run(const Model *m, ForwardState *s, const int *tokens, int T, int generate, FullRun *out, KvError *err);
void full_run_free(FullRun *r);

/* Runs the text under one policy and budget; s must hold T + generate positions. */
int closed_loop_run(const Model *m, ForwardState *s, const int *tokens, const FullRun *full, const PolicySpec *spec,
                    int budget, const LoopOptions *opt, LoopResult *out, KvError *err);

#endif
