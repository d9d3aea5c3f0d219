/* forward.h — the Llama forward pass over a block of consecutive tokens.
 *
 * One function runs n tokens at positions pos0..pos0+n-1: prompt processing
 * passes whole blocks, generation passes one token (matmul.h chooses how the
 * encoded weights are multiplied).  Per layer: RMSNorm, q/k/v projections
 * (plus biases for qwen2), RoPE (adjacent pairs, or halves for qwen2, with
 * the model's frequency scaling), grouped-query causal attention over the KV
 * cache, output projection, RMSNorm, SwiGLU feed-forward.
 *
 * An observer sees q, k, v after RoPE and the attention probabilities (this
 * is how traces are recorded).  A keep mask prunes the cache per (layer, kv
 * head): a key with keep == 0 is invisible to every query of that kv head
 * (this is how the closed-loop evaluator applies an eviction policy). */
#ifndef KV_FORWARD_H
#define KV_FORWARD_H

#include <stdint.h>

#include "../util/error.h"
#include "model.h"

typedef struct {
    void *ctx;
    /* q [n][n_heads][head_dim], k and v [n][n_kv_heads][head_dim]; NULL = not wanted */
    int (*on_qkv)(void *ctx, int layer, int pos0, int n, const float *q, const float *k, const float *v);
    /* probs: n rows with row stride ld; row r has pos0+r+1 valid columns. NULL = not wanted */
    int (*on_attention)(void *ctx, int layer, int head, int pos0, int n, const float *probs, int ld);
} ForwardObserver;

typedef struct {
    ModelConfig cfg;
    int capacity;        /* most positions the cache holds */
    int max_block;       /* most tokens per forward_block call */
    float *key_cache;    /* [n_layers][n_kv_heads][capacity][head_dim] */
    float *value_cache;  /* same */
    float *x, *xb, *xb2; /* [max_block][dim] residual stream and scratch */
    float *q;            /* [max_block][n_heads*head_dim] */
    float *k, *v;        /* [max_block][n_kv_heads*head_dim] */
    float *hb, *hb2;     /* [max_block][hidden_dim] */
    float *scores;       /* [workers][max_block][capacity] */
    float *rope_cos, *rope_sin; /* [max_block][head_dim/2] */
    MatmulContext mm;    /* threads and matrix scratch */
} ForwardState;

/* One thread; forward_state_threads() adds more. */
int forward_state_init(ForwardState *s, const ModelConfig *cfg, int capacity, int max_block, KvError *err);
/* Runs matrix rows and attention heads on n_threads threads (counting the
 * caller).  Results are identical for every n_threads. */
int forward_state_threads(ForwardState *s, int n_threads, KvError *err);
void forward_state_free(ForwardState *s);

/* Runs the block.  logits: [n][vocab] for every row, or NULL.  keep: NULL
 * for the full cache, else [n_layers][n_kv_heads][capacity] flags.
 * Returns -1 only when the observer fails (err holds its message). */
int forward_block(const Model *m, ForwardState *s, const int *tokens, int n, int pos0, float *logits,
                  const ForwardObserver *obs, const uint8_t *keep, KvError *err);

/* Logits of rows r0..r0+n-1 of the block forward_block just ran (which was
 * given logits = NULL), into logits[n][vocab].  A caller that needs every
 * row's logits but not all at once (the recorder's NLL) takes them a few
 * rows at a time: a block's logits are [block][vocab] floats (16 MB for
 * 128 rows of a 32000-token vocabulary). */
void forward_logits(const Model *m, ForwardState *s, int r0, int n, float *logits);

/* Offset of (layer, kv_head) in the cache arrays and the keep mask, in rows. */
static inline long forward_unit_row(const ForwardState *s, int layer, int kv_head)
{
    return ((long)layer * s->cfg.n_kv_heads + kv_head) * s->capacity;
}

#endif
