/* eval.h — `kvtrace eval` as a library call: how well do the offline metrics
 * predict what a pruned model really does?
 *
 * 1. The texts run through the model with the full cache and are recorded as
 *    a trace (texts given, or the model's own stories sampled from prompts
 *    with a fixed seed).
 * 2. That trace is replayed offline (simulate) under every policy and budget.
 * 3. Each text runs again with each policy driving the real KV cache
 *    (closed_loop.h); next-token NLL, KL(p_full ‖ p_pruned), top-1 agreement
 *    and greedy agreement are measured against the full cache.
 * 4. The offline and closed-loop numbers are set side by side, with their
 *    rank correlation across configurations.
 * Results: "kvtrace-eval/1" (FORMAT.md) and a CSV. */
#ifndef KV_EVAL_H
#define KV_EVAL_H

#include <stdint.h>
#include <stdio.h>

#include "../sim/simulate.h"

typedef struct {
    const char *model_path;
    const char *const *texts;
    int n_texts;
    int sample_tokens;       /* > 0: texts are prompts and the model writes this many tokens after each */
    float temperature;       /* sampling, when sample_tokens > 0 */
    uint64_t seed;
    const PolicySpec *policies;
    int n_policies;
    const BudgetSpec *budgets;
    int n_budgets;
    const AllocSpec *allocations; /* none = uniform */
    int n_allocations;
    int prefill, layer_granularity;
    int generate;            /* greedy continuation compared after each text */
    int threads;
    int retention_layer, retention_unit; /* held sets of this unit for text 0 (-1 = none) */
    const char *trace_path;  /* the full-cache trace's name (in the eval file) ... */
    const char *trace_file;  /* ... and the file it is recorded into (a temporary beside it, or trace_path) */
    const char *command_line;
} EvalOptions;

enum { EVAL_NLL, EVAL_NLL_FULL, EVAL_DELTA_NLL, EVAL_PPL_RATIO, EVAL_KL, EVAL_TOP1, EVAL_GREEDY, EVAL_METRICS };

typedef struct {
    SimResults offline;      /* the replay of the full-cache trace: configs, budgets, offline metrics */
    int C, S;
    double *metric[EVAL_METRICS]; /* [C][S] per text: means over reported rows (greedy: tokens) */
    uint8_t *retention;      /* [C][T0][T0] or NULL */
    int retention_T;
    double rank_overall;     /* Spearman across configs of offline retained mass and -ΔNLL */
    double rank_within_budget; /* the same within each budget, averaged over budgets */
    double seconds;
} EvalResults;

extern const char *const EVAL_METRIC_NAMES[EVAL_METRICS];

/* Rank correlation (Spearman) across configurations of offline retained
 * mass with closed-loop -ΔNLL, over three sets of configurations: all; all
 * but `full` (trivially best on both axes, it inflates the agreement); and
 * all but full, knorm and random (the close policies, where choosing is
 * hard).  Each over every configuration, and within each budget averaged
 * over budgets.  NaN where a set has fewer than two configurations. */
enum { EVAL_RANK_ALL, EVAL_RANK_NO_FULL, EVAL_RANK_CLOSE, EVAL_RANK_SETS };
typedef struct {
    double overall[EVAL_RANK_SETS];
    double within_budget[EVAL_RANK_SETS];
} EvalRanks;
/* Attribute-name suffixes of the sets: "", "_without_full", "_without_full_knorm_random". */
extern const char *const EVAL_RANK_SET_SUFFIX[EVAL_RANK_SETS];
/* From per-configuration means (NaN entries are left out). */
void eval_rank_correlations(const double *mass, const double *delta_nll, const char *const *policy,
                            const char *const *budget, int n_configs, EvalRanks *out);
/* The same for a finished evaluation. */
int eval_ranks(const EvalResults *res, EvalRanks *out);

int eval_run(const EvalOptions *opt, EvalResults *res, KvError *err);
void eval_results_free(EvalResults *res);
/* Mean and standard deviation over texts of one metric of one config. */
void eval_overall(const EvalResults *res, int config, int metric, double *mean, double *std);
int eval_write_hdf5(const EvalResults *res, const EvalOptions *opt, const OutputFile *out, KvError *err);
int eval_write_csv(const EvalResults *res, const EvalOptions *opt, const OutputFile *out, KvError *err);
/* The two writers as OutputJob callbacks (util/output.h), ctx an EvalWrite. */
typedef struct {
    const EvalResults *res;
    const EvalOptions *opt;
} EvalWrite;
int eval_output_hdf5(const OutputFile *out, void *ctx, KvError *err);
int eval_output_csv(const OutputFile *out, void *ctx, KvError *err);
void eval_print_table(const EvalResults *res, FILE *out);

#endif
