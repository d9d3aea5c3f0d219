/* trace_layer.h — one layer of one recorded sequence in memory, head-major,
 * and the exact causal attention recomputed from it.  Shared by the replay
 * (simulate), the analysis and the plots, so every consumer sees the same
 * numbers. */
#ifndef KV_TRACE_LAYER_H
#define KV_TRACE_LAYER_H

#include <pthread.h>
#include <stdint.h>

#include "../util/error.h"
#include "trace_file.h"

typedef struct {
    int T, H, KV, d;
    float *q, *k, *v;          /* per head: [H][T][d], [KV][T][d] (v NULL unless asked) */
    float *k_norm, *v_l1;      /* [KV][T] (v_l1 NULL unless asked) */
    float *unit_k_norm, *unit_v_l1; /* [units][T] unit features, filled by the replay's caller */
} LayerData;

/* Reads q, k, k_norm (and v, v_norm_l1 when values) of one layer: of every
 * head, or, when kv_heads is given, of the kv heads x with kv_heads[x] set
 * and their query heads only (the others stay zero and take no memory). */
int trace_load_layer(const TraceReader *r, int seq, int layer, const TraceSeqInfo *info, int values,
                     const uint8_t *kv_heads, LayerData *ld, KvError *err);
void trace_layer_free(LayerData *ld);

/* One layer being loaded, on a thread of its own when asked, so that the
 * next layer reads while this one is worked on (simulate, analyze). */
typedef struct {
    const TraceReader *reader;
    int seq, layer, values;
    const uint8_t *kv_heads;   /* as trace_load_layer's; must outlive the load */
    TraceSeqInfo info;
    LayerData ld;
    int rc;
    KvError err;
    pthread_t thread;
    int in_background;
} LayerLoad;

/* Background loads need a thread-safe HDF5 library (Debian's is). */
int trace_layer_background_ok(void);
/* Starts loading: on a thread when background (else now). */
void trace_layer_load_start(LayerLoad *l, const TraceReader *r, int seq, int layer, const TraceSeqInfo *info,
                            int values, const uint8_t *kv_heads, int background);
/* Waits for the load; l->ld holds the layer when it returns 0. */
int trace_layer_load_finish(LayerLoad *l, KvError *err);

/* Rows t0..t0+n-1 of softmax(q kᵀ / sqrt(d)) under the causal mask, for one
 * head: q, k are [T][d]; out has row stride ld and columns 0..t0+n-1. */
void attention_rows(const float *q, const float *k, int d, int t0, int n, float *out, long ld);

#endif
