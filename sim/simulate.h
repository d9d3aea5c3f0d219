/* simulate.h — `kvtrace simulate` as a library call: replay every sequence
 * of one or more traces under policies × budgets, aggregate the metrics and
 * write the results (HDF5 "kvtrace-results/1" and a tidy CSV). */
#ifndef KV_SIMULATE_H
#define KV_SIMULATE_H

#include <stdint.h>
#include <stdio.h>

#include "../util/error.h"
#include "../util/output.h"
#include "allocation.h"
#include "policy.h"

/* Output error and ideal overlap are measured on rows t with t % stride == 0.
 * By default (SIM_ERROR_STRIDE_AUTO) the stride gives about SIM_ERROR_ROWS
 * rows per sequence: ⌈T/128⌉ for the longest sequence T, so every row up to
 * 128 tokens, every 32nd at 4096, every 256th at 32k: about 1.25x the cost of
 * a run without them (every row costs 6-9x: a full output per head, a held
 * output per configuration and head, and a top-B selection per budget). */
#define SIM_ERROR_STRIDE_AUTO (-1)
#define SIM_ERROR_ROWS 128

/* Attention a trace stores is replayed as stored, or recomputed from q and k
 * (an sgemm: 4-5x faster than inflating the stored rows).  AUTO recomputes
 * whenever that reproduces the stored rows: the first 64 stored rows of every
 * head of the layer equal the recomputed ones within 1e-5; else (float16 q
 * and k rounded away from the model's attention, or attention that is not
 * softmax(q kᵀ/√d), e.g. written by hand) it reads the stored rows. */
enum { SIM_ATTENTION_AUTO, SIM_ATTENTION_STORED, SIM_ATTENTION_RECOMPUTE };

typedef struct {
    char text[24];    /* as given: "20%", "0.2" or "64" */
    int tokens;       /* > 0 for a token budget */
    double fraction;  /* > 0 for a fraction of N (T, or P in prefill mode) */
} BudgetSpec;

typedef struct {
    const char *const *traces;
    int n_traces;
    const PolicySpec *policies;
    int n_policies;
    const BudgetSpec *budgets;
    int n_budgets;
    const AllocSpec *allocations; /* how budgets are allocated across units; none = uniform */
    int n_allocations;
    int prefill;              /* prefill mode (else streaming) */
    int layer_granularity;    /* one cache per layer (else per kv head) */
    const int *layers;        /* subset, or NULL for all */
    int n_layers;
    const int *units;         /* kv heads (cache units) subset, or NULL for all */
    int n_units;
    int error_stride;         /* output error every N-th row; 0 = off; SIM_ERROR_STRIDE_AUTO */
    int threads;              /* worker threads (>= 1) */
    int allow_incomplete;
    int attention_source;     /* SIM_ATTENTION_*: where stored attention is replayed from */
    int retention_layer;      /* record retention maps for this unit of the first sequence */
    int retention_unit;       /* (-1 = none) */
    const char *command_line;
} SimOptions;

/* Everything simulate computed, for the writers and the terminal table. */
typedef struct {
    int n_configs, n_sequences, n_layers, n_heads, n_units, max_T;
    int error_stride;             /* the stride used (SIM_ERROR_STRIDE_AUTO resolved) */
    const char **config_policy;   /* [C] */
    const char **config_params;   /* [C] canonical parameters (of config_spec) */
    PolicySpec *config_spec;      /* [C] the parameters each configuration ran with (defaults fitted) */
    const char **config_budget;   /* [C] budget as given */
    AllocSpec *config_alloc;      /* [C] allocation across units */
    const char **config_allocation; /* [C] its canonical text */
    double *config_fraction;      /* [C] NaN for token budgets */
    int *budget_tokens;           /* [C][S] resolved per sequence */
    int *seq_length, *seq_prompt; /* [S] */
    char **seq_source;            /* [S] "file.h5#3" */
    /* per config, sequence, layer, query head: means over reported rows (NaN = not simulated) */
    double *mass, *kl, *error, *overlap; /* [C][S][L][H] */
    long *evict_age;              /* [C][max_T] */
    float *curve;                 /* [C][S][max_T] mean over simulated units */
    uint8_t *retention;           /* [C][T0][T0] or NULL */
    int retention_T;
    char model[128];              /* model label of the (first) trace, for titles */
    char model_sha256[65];        /* the traces' model file digest */
    char *trace_sha256;           /* the input traces' digests, a line each (rank 0 only; else NULL) */
    double seconds;               /* wall clock */
    double cpu_attention;         /* thread-seconds computing or reading attention */
    double cpu_replay;            /* thread-seconds in the replay proper (policies and metrics) */
    long long entries;            /* cache entries scored: held tokens × steps × units × configs */
} SimResults;

int parse_budget(const char *text, BudgetSpec *b, KvError *err);
/* Budget in tokens for a sequence of n tokens (n = T, or P in prefill mode). */
int resolve_budget(const BudgetSpec *b, int n);

int simulate_run(const SimOptions *opt, SimResults *res, KvError *err);
void sim_results_free(SimResults *res);

/* Mean and sample standard deviation from running sums (NaN mean when n = 0). */
void mean_and_std(double sum, double sum2, int n, double *mean, double *std);

/* Per-config overall means over heads and layers, then mean and standard
 * deviation over sequences; metric 0..3 = mass, kl, error, overlap. */
void sim_overall(const SimResults *res, int config, int metric, double *mean, double *std);

/* Budget in tokens of a config, averaged over sequences. */
double sim_mean_budget(const SimResults *res, int config);

int sim_write_hdf5(const SimResults *res, const SimOptions *opt, const OutputFile *out, KvError *err);
int sim_write_csv(const SimResults *res, const SimOptions *opt, const OutputFile *out, KvError *err);
/* The two writers as OutputJob callbacks (util/output.h), ctx a SimWrite. */
typedef struct {
    const SimResults *res;
    const SimOptions *opt;
} SimWrite;
int sim_output_hdf5(const OutputFile *out, void *ctx, KvError *err);
int sim_output_csv(const OutputFile *out, void *ctx, KvError *err);
void sim_print_table(const SimResults *res, FILE *out);

#endif
