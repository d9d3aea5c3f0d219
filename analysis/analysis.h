/* analysis.h — `kvtrace analyze` as a library call: what the recorded
 * attention says about the scores eviction policies rank tokens by
 * (FORMAT.md, "Analysis files").  Everything is computed per sequence,
 * layer and query head from the exact full-cache attention (recomputed from
 * q and k, streamed a block of rows at a time: memory is O(T·d + block),
 * never T×T), then pooled with bootstrap intervals:
 *
 *  - age bias: at the end of a sequence of T tokens, token i has H2O score
 *    Σ_t a_t(i) summed over T − i rows, mean attention per row, and A2SF score
 *    Σ_t α^{T−1−t} a_t(i); Spearman of each with age T − 1 − i;
 *  - top-B skew: at every row t ≥ B, the mean relative age (t − i)/t of the
 *    B tokens ranked first by the running H2O score, by the running A2SF
 *    score, and by the row's own attention (`ideal`), and the share of that
 *    set in each bin of relative age;
 *  - key norms: Spearman of ‖k_i‖₂ with mean attention per row, and the L2
 *    paper's attention loss: per row, the attention of the keys dropped by
 *    highest norm vs of the least-attended keys (ALR = their ratio);
 *  - value norms: ‖v_i‖₁ by position, the sinks (first positions and tokens
 *    of very high attention) and their value norm against the others, and
 *    Spearman of ‖v_i‖₁ with mean attention per row.
 * A run may take some layers and heads only: each head analysed gets the
 * numbers (and bootstrap draws) a run over every head gives it, and the
 * pooled figures are over the heads analysed.
 * The analysis file is "kvtrace-analysis/1" (FORMAT.md). */
#ifndef KV_ANALYSIS_H
#define KV_ANALYSIS_H

#include <stdint.h>
#include <stdio.h>

#include "../trace/trace_file.h"
#include "../util/error.h"
#include "../util/output.h"

#define ANALYSIS_FORMAT "kvtrace-analysis/1"
#define ANALYSIS_MAX_ALPHA 6
#define ANALYSIS_MAX_SCORES (3 + ANALYSIS_MAX_ALPHA)  /* h2o, accumulations, mean attention, a2sf per alpha */
#define ANALYSIS_MAX_METHODS (2 + ANALYSIS_MAX_ALPHA) /* h2o, a2sf per alpha, ideal */
#define ANALYSIS_AGE_BINS 12 /* relative age (t - i)/t in twelfths: bins 8..11 are the oldest third */
#define ANALYSIS_MAX_THREADS 64

typedef struct {
    const char *trace;
    double alphas[ANALYSIS_MAX_ALPHA]; /* A2SF forgetting factors */
    int n_alpha;
    double budget_fraction;  /* top-B skew: B = fraction of T */
    double drop_fraction;    /* attention loss: fraction of the keys dropped per row */
    int sink_tokens;         /* the first positions count as sinks */
    double sink_attention;   /* and so does a token whose mean attention per row reaches this (over >= 16 rows) */
    int n_boot;              /* bootstrap replicates */
    uint64_t seed;
    int example_layer, example_head; /* the head whose curves go into the file (sequence 0); layer -1:
                                      * the middle layer's first analysed head, or the nearest analysed */
    const int *layers, *heads; /* only these layers and query heads (NULL: all); the others' cells are NaN */
    int n_layers, n_heads;
    int allow_incomplete;
    int threads;             /* worker threads over the heads of a layer; results do not depend on it */
    const char *command_line;
} AnalyzeOptions;

void analyze_defaults(AnalyzeOptions *opt);

enum { SCORE_H2O, SCORE_ACCUMULATIONS, SCORE_MEAN_ATTENTION, SCORE_A2SF };

typedef struct {
    AnalyzeOptions opt;
    TraceMeta meta;
    int S, L, H, KV;
    int K, M, n_boot;        /* scores, top-B methods, replicates */
    char score_name[ANALYSIS_MAX_SCORES][24];
    char method_name[ANALYSIS_MAX_METHODS][24];
    int *seq_tokens, *seq_budget;        /* [S] */
    uint8_t *selected;       /* [L][H] 1: the head is analysed (--layers, --heads) */
    int n_selected;          /* (layer, head) pairs analysed */
    int last_layer;          /* the last layer with an analysed head */
    /* per sequence, layer, head */
    double *age_spearman;    /* [S][L][H][K] */
    float *age_rep;          /* [S][L][H][K][n_boot] */
    double *relative_age;    /* [S][L][H][M] */
    double *age_share;       /* [S][L][H][M][ANALYSIS_AGE_BINS] share of the top-B set per relative-age bin */
    double *key_spearman, *value_spearman; /* [S][L][H] with mean attention per row */
    float *key_rep, *value_rep;            /* [S][L][H][n_boot] */
    double *loss_norm, *loss_least, *loss_random; /* [S][L][H] attention lost per row */
    double *sink_value_ratio;              /* [S][L][H] mean ‖v‖₁ of sinks / of the others */
    int *attention_sinks;                  /* [S][L][H] sinks beyond the first sink_tokens */
    /* sequence 0, for the figures */
    int T0;
    float *example_scores;   /* [K][T0] the example head */
    float *mean_scores;      /* [K][T0] mean over every layer and head */
    float *example_k_norm, *example_v_l1, *example_attention; /* [T0] its kv head's norms; mean attention per row */
    float *value_by_position; /* [L][T0] ‖v‖₁ averaged over kv heads */
    float *sink_share;       /* [T0] share of (layer, head) pairs in which the position is a sink */
    /* pooled: {mean, 2.5 %, 97.5 %} */
    double *age_layer_head;  /* [L][H][K][3] */
    double *age_layer;       /* [L][K][3] */
    double age_pooled[ANALYSIS_MAX_SCORES][3];
    double relative_age_pooled[ANALYSIS_MAX_METHODS][3];
    double age_share_pooled[ANALYSIS_MAX_METHODS][ANALYSIS_AGE_BINS][3];
    double *key_layer_head;  /* [L][H][3] */
    double key_pooled[3], value_pooled[3], sink_ratio_pooled[3];
    double *alr_layer_head;  /* [L][H] Σ loss by norm / Σ loss of the least attended */
    double alr_pooled, loss_norm_pooled, loss_least_pooled, loss_random_pooled;
    double seconds;
    char *trace_sha256;      /* the trace's digest (rank 0 only; else NULL) */
} Analysis;

int analyze_run(const AnalyzeOptions *opt, Analysis *a, KvError *err);
void analysis_free(Analysis *a);
int analysis_write_hdf5(const Analysis *a, const OutputFile *out, KvError *err);
/* One row per (layer, head): each statistic averaged over sequences (FORMAT.md). */
int analysis_write_csv(const Analysis *a, const OutputFile *out, KvError *err);
/* The two writers as OutputJob callbacks (util/output.h), ctx the Analysis. */
int analysis_output_hdf5(const OutputFile *out, void *ctx, KvError *err);
int analysis_output_csv(const OutputFile *out, void *ctx, KvError *err);
void analysis_print_report(const Analysis *a, FILE *out);
/* The mean share of a method's top-B set in the oldest third of relative ages. */
double analysis_oldest_third(const Analysis *a, int method);

#endif
