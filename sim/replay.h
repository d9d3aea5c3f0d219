/* replay.h — replaying one cache unit of a trace under many eviction
 * configurations at once (docs/semantics.md).
 *
 * A cache unit is (layer, kv head), or a whole layer at `layer` granularity;
 * its query heads share one cache.  The replay walks the rows in blocks: the
 * full attention of each block (stored, or recomputed from q and k with one
 * sgemm per head) is computed once and fed to every configuration, so a long
 * trace never needs its whole T×T matrix (hindsight oracles read the rows
 * they need through AttentionRows, policy.h).
 * The replay loop knows nothing about any policy beyond policy.h. */
#ifndef KV_REPLAY_H
#define KV_REPLAY_H

#include <stdint.h>

#include "../util/error.h"
#include "policy.h"

typedef struct {
    int n_heads;              /* query heads sharing the cache */
    int T, d;                 /* rows (tokens) and head size */
    int layer, unit;          /* identity, for seeds and skip lists */
    const float *const *q;    /* [n_heads] -> [T][d] queries */
    const float *const *k;    /* [n_heads] -> [T][d] the keys each head attends to */
    const float *const *v;    /* [n_heads] -> [T][d] values, or NULL (no output error) */
    const float *k_norm;      /* [T] key L2 norm of the unit (mean over its kv heads) */
    const float *v_l1;        /* [T] value L1 norm of the unit, or NULL */
    /* stored attention: rows t0..t0+n-1 of unit head `head` into out (row
     * stride ld, columns 0..t); NULL = recompute from q and k */
    int (*read_attention)(void *ctx, int head, int t0, int n, float *out, long ld, KvError *err);
    void *read_ctx;
} UnitData;

typedef struct {
    PolicySpec spec;
    int budget;         /* tokens (the unit's: a pyramid layer's own) */
    int report_budget;  /* streaming mode reports rows from this budget (0 = budget) */
    int keep_min;       /* replay_units_adaptive: the least a unit keeps */
} ReplayConfig;

typedef struct {
    int n_prompt;       /* prefill mode: P >= 1; 0 = streaming mode */
    int error_stride;   /* output error and ideal overlap on rows t % stride == 0; 0 = none */
    int row_block;      /* rows per attention block (0 = attention_block_rows' choice) */
    int retention;      /* record which tokens are held at each step */
} ReplayOptions;

typedef struct {
    double *mass, *kl;  /* [n_heads] sums over reported rows */
    double *error, *overlap; /* [n_heads] sums over sampled rows (the error stride) */
    long rows, sampled_rows;
    long *evict_age;    /* [T] evictions by age t - i */
    float *curve;       /* [T] mean over heads of the retained mass; NaN where not reported */
    uint8_t *retention; /* [T][T] 1 = token i held at step t, or NULL */
} ReplayResult;

int replay_result_alloc(ReplayResult *r, int n_heads, int T, int retention);
void replay_result_free(ReplayResult *r);

/* First row whose metrics count: B in streaming mode, P in prefill mode.
 * A streaming budget B >= T never evicts: then every row counts (each one
 * equals the full cache), rather than none. */
int replay_first_reported(const ReplayOptions *opt, int budget, int T);

/* attention_seconds (may be NULL) receives the thread CPU time spent
 * computing or reading attention, so throughput can be split into attention
 * and replay. */
int replay_unit(const UnitData *u, const ReplayConfig *cfg, int n_cfg, const ReplayOptions *opt,
                ReplayResult *out, double *attention_seconds, KvError *err);

/* The units of one layer (same T and heads) replayed together under
 * adaptive allocation (allocation.h): at each step every unit inserts its
 * token, then they evict jointly down to n_units * budget tokens, each unit
 * keeping at least keep_min; out[i] are unit i's results, [n_cfg] each. */
int replay_units_adaptive(const UnitData *u, int n_units, const ReplayConfig *cfg, int n_cfg, const ReplayOptions *opt,
                          ReplayResult *const *out, KvError *err);

/* CPU time of the calling thread, in seconds (what the replay's timings use:
 * on a busy machine wall clock would count time spent waiting for a core). */
double replay_thread_seconds(void);

#endif
