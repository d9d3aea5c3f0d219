/* simulate.h — `kvtrace simulate` as a library call: replay every sequence
 * of one or more traces under policies × budgets, aggregate the metrics and
 * write the results (HDF5 "kvtrace-results/1" and a tidy CSV). */
#ifndef KV_SIMULATE_H
#define KV_SIMULATE_H

#include <stdint.h>
#include <stdio.h>

#include "../util/error.h"
#include "policy.h"

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
    int prefill;              /* prefill mode (else streaming) */
    int layer_granularity;    /* one cache per layer (else per kv head) */
    const int *layers;        /* subset, or NULL for all */
    int n_layers;
    const int *units;         /* kv heads (cache units) subset, or NULL for all */
    int n_units;
    int error_stride;         /* output error every N-th reported row; 0 = off */
    int threads;              /* worker threads (>= 1) */
    int allow_incomplete;
    int recompute;            /* ignore stored attention, recompute from q and k */
    int retention_layer;      /* record retention maps for this unit of the first sequence */
    int retention_unit;       /* (-1 = none) */
    const char *command_line;
} SimOptions;

/* Everything simulate computed, for the writers and the terminal table. */
typedef struct {
    int n_configs, n_sequences, n_layers, n_heads, n_units, max_T;
    const char **config_policy;   /* [C] */
    const char **config_params;   /* [C] canonical parameters */
    const char **config_budget;   /* [C] budget as given */
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

int sim_write_hdf5(const SimResults *res, const SimOptions *opt, const char *path, KvError *err);
int sim_write_csv(const SimResults *res, const char *path, KvError *err);
void sim_print_table(const SimResults *res, FILE *out);

#endif
