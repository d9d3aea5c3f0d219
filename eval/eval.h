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
    int prefill, layer_granularity;
    int generate;            /* greedy continuation compared after each text */
    int threads;
    int retention_layer, retention_unit; /* held sets of this unit for text 0 (-1 = none) */
    const char *trace_path;  /* where the full-cache trace is written */
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

int eval_run(const EvalOptions *opt, EvalResults *res, KvError *err);
void eval_results_free(EvalResults *res);
/* Mean and standard deviation over texts of one metric of one config. */
void eval_overall(const EvalResults *res, int config, int metric, double *mean, double *std);
int eval_write_hdf5(const EvalResults *res, const EvalOptions *opt, const char *path, KvError *err);
int eval_write_csv(const EvalResults *res, const char *path, KvError *err);
void eval_print_table(const EvalResults *res, FILE *out);

#endif
