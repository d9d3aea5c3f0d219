/* The analysis proper: one pass over every (sequence, layer, head) computing
 * its full attention once, then the pooling.  See analysis.h for the
 * definitions; this file follows them one function per quantity. */
#include "analysis.h"

#include <cblas.h>
#include <gsl/gsl_rng.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "../trace/h5util.h"
#include "../trace/trace_layer.h"
#include "../util/attention.h"
#include "../util/dist.h"
#include "../util/sha256.h"
#include "../util/progress.h"
#include "../util/select.h"
#include "stats.h"

void analyze_defaults(AnalyzeOptions *opt)
{
    memset(opt, 0, sizeof *opt);
    opt->alphas[0] = 0.1;
    opt->alphas[1] = 0.2;
    opt->alphas[2] = 0.5;
    opt->n_alpha = 3;
    opt->budget_fraction = 0.2;
    opt->drop_fraction = 0.5;
    opt->sink_tokens = 4;
    opt->sink_attention = 0.1;
    opt->n_boot = 1000;
    opt->seed = 1;
    opt->example_layer = -1;
    opt->example_head = 0;
    opt->threads = 1;
}

/* Scratch for one head at a time: O(T) vectors and one block of rows. */
typedef struct {
    int T, rb;
    float *rows;        /* [rb][T] a block of the head's attention rows */
    double *score;      /* [K][T] end-of-sequence scores */
    double *age;        /* [T] T - 1 - i */
    float *running;     /* [1 + n_alpha][T] running H2O, A2SF scores */
    float *scratch;     /* [T] */
    uint8_t *flags;     /* [T] */
    double *work;       /* [2T] */
    double *k_norm, *v_l1; /* [T] of the head's kv head */
    double *replicate;  /* [ANALYSIS_MAX_SCORES] */
} HeadWork;

static void head_work_free(HeadWork *w)
{
    free(w->rows); free(w->score); free(w->age); free(w->running); free(w->scratch); free(w->flags);
    free(w->work); free(w->k_norm); free(w->v_l1); free(w->replicate);
    memset(w, 0, sizeof *w);
}

static int head_work_alloc(HeadWork *w, int T, int K, int n_alpha, KvError *err)
{
    size_t n = (size_t)T;
    w->rb = attention_block_rows(T, 1);
    w->rows = malloc((size_t)w->rb * n * sizeof(float));
    w->score = malloc((size_t)K * n * sizeof(double));
    w->age = malloc(n * sizeof(double));
    w->running = malloc((size_t)(1 + n_alpha) * n * sizeof(float));
    w->scratch = malloc(n * sizeof(float));
    w->flags = malloc(n);
    w->work = malloc(2 * n * sizeof(double));
    w->k_norm = malloc(n * sizeof(double));
    w->v_l1 = malloc(n * sizeof(double));
    w->replicate = malloc(ANALYSIS_MAX_SCORES * sizeof(double));
    if (!w->rows || !w->score || !w->age || !w->running || !w->scratch || !w->flags || !w->work || !w->k_norm ||
        !w->v_l1 || !w->replicate) {
        head_work_free(w);
        return kv_fail(err, "out of memory analysing a %d-token sequence", T);
    }
    return 0;
}

/* ------------------------------------------------------------ one head */

/* Sequence 0's per-position contributions of one head, folded in head order
 * after its layer (float sums in a fixed order: any thread count gives the
 * same curves). */
typedef struct {
    float *scores;      /* [K][T0] */
    uint8_t *sink;      /* [T0] */
} HeadCurves;

/* Everything one head contributes; unit = (s * L + l) * H + h. */
typedef struct {
    Analysis *a;
    HeadWork *w;
    const LayerData *layer;
    int s, l, h, g;
    size_t unit;
    gsl_rng *rng_age, *rng_norms; /* the bootstrap draws of this head (snapshots of the run's one stream) */
    HeadCurves *curves;            /* sequence 0 only */
} Head;

/* The top-B set's share in each relative-age bin: token i of row t falls
 * in bin (t - i) * BINS / t (the oldest, i = 0, in the last one).  Summed
 * over the rows of a head, then divided by their number (NaN if none). */
static double *age_share_of(Head *x, int m)
{
    return x->a->age_share + (x->unit * x->a->M + m) * ANALYSIS_AGE_BINS;
}

/* Where the set flagged in row t (t >= 1) lies in age: adds each bin's
 * share of it to method m's age shares and returns its mean relative age
 * (t - i)/t.  A bin is a range of positions (bin b holds the ages a = t - i
 * from ceil(b t / BINS) to ceil((b + 1) t / BINS) - 1, the last one a = t
 * too), so the set is counted range by range and the position sum is an
 * integer: no division per token, and the loops vectorise. */
static double set_ages(Head *x, int m, int t, int budget)
{
    const uint8_t *flags = x->w->flags;
    double *share = age_share_of(x, m);
    long count = 0, positions = 0; /* Σ i over the set */
    for (int b = 0; b < ANALYSIS_AGE_BINS; b++) {
        long age_lo = ((long)b * t + ANALYSIS_AGE_BINS - 1) / ANALYSIS_AGE_BINS;
        long age_hi = b == ANALYSIS_AGE_BINS - 1 ? t : ((long)(b + 1) * t + ANALYSIS_AGE_BINS - 1) / ANALYSIS_AGE_BINS - 1;
        long in_bin = 0;
        for (long i = t - age_hi; i <= t - age_lo; i++) {
            in_bin += flags[i];
            positions += flags[i] * i;
        }
        share[b] += (double)in_bin / budget;
        count += in_bin;
    }
    return ((double)count * t - (double)positions) / t / budget;
}

static void age_share_finish(Head *x, int m, long rows)
{
    double *share = age_share_of(x, m);
    for (int b = 0; b < ANALYSIS_AGE_BINS; b++) share[b] = rows ? share[b] / rows : NAN;
}

/* What the row scan accumulates. */
typedef struct {
    double skew[ANALYSIS_MAX_METHODS], lost_norm, lost_least, lost_random;
    long skew_rows, loss_rows;
} RowSums;

/* One row: the running scores with the top-B skew, and the attention lost
 * by dropping keys by norm or by attention. */
static void scan_row(Head *x, int t, const float *row, RowSums *sum)
{
    Analysis *a = x->a;
    HeadWork *w = x->w;
    int T = w->T, n_alpha = a->opt.n_alpha, B = a->seq_budget[x->s];
    const float *k_norm = x->layer->k_norm + (size_t)x->g * T;
    float *h2o = w->running;
    for (int i = 0; i <= t; i++) h2o[i] += row[i];
    for (int j = 0; j < n_alpha; j++) {
        float alpha = (float)a->opt.alphas[j], *s = w->running + (size_t)(1 + j) * T;
        for (int i = 0; i <= t; i++) s[i] = alpha * s[i] + row[i];
    }
    if (B < T && t >= B) { /* skew: the set each score would keep at this row */
        for (int m = 0; m < a->M; m++) {
            const float *ranked = m < a->M - 1 ? w->running + (size_t)m * T : row;
            top_k_flags(ranked, t + 1, B, w->scratch, w->flags);
            sum->skew[m] += set_ages(x, m, t, B);
        }
        sum->skew_rows++;
    }
    int drop = (int)(a->opt.drop_fraction * (t + 1));
    if (drop >= 1 && drop < t + 1) {
        top_k_flags(k_norm, t + 1, drop, w->scratch, w->flags); /* highest norms go */
        for (int i = 0; i <= t; i++) sum->lost_norm += w->flags[i] ? row[i] : 0.0f;
        top_k_flags(row, t + 1, t + 1 - drop, w->scratch, w->flags); /* least attended go */
        for (int i = 0; i <= t; i++) sum->lost_least += w->flags[i] ? 0.0f : row[i];
        sum->lost_random += (double)drop / (t + 1);
        sum->loss_rows++;
    }
}

/* Streams the head's attention rows block by block (never T x T) through
 * the row scan, then forms the end-of-sequence scores. */
static int scan_rows(Head *x, KvError *err)
{
    Analysis *a = x->a;
    HeadWork *w = x->w;
    const LayerData *ld = x->layer;
    int T = w->T, n_alpha = a->opt.n_alpha;
    RowSums sum = {0};
    memset(w->running, 0, (size_t)(1 + n_alpha) * T * sizeof(float));
    for (int t0 = 0; t0 < T; t0 += w->rb) {
        int n = T - t0 < w->rb ? T - t0 : w->rb, bad_row;
        if (attention_block(ld->q + (size_t)x->h * T * ld->d, ld->k + (size_t)x->g * T * ld->d, ld->d, t0, n, w->rows,
                            T, &bad_row))
            return kv_fail(err, "head %d row %d: the attention logits q·k/√d are not finite (q or k too large for "
                           "float)", x->h, bad_row);
        for (int r = 0; r < n; r++) scan_row(x, t0 + r, w->rows + (size_t)r * T, &sum);
    }
    for (int m = 0; m < a->M; m++) {
        a->relative_age[x->unit * a->M + m] = sum.skew_rows ? sum.skew[m] / sum.skew_rows : NAN;
        age_share_finish(x, m, sum.skew_rows);
    }
    a->loss_norm[x->unit] = sum.loss_rows ? sum.lost_norm / sum.loss_rows : NAN;
    a->loss_least[x->unit] = sum.loss_rows ? sum.lost_least / sum.loss_rows : NAN;
    a->loss_random[x->unit] = sum.loss_rows ? sum.lost_random / sum.loss_rows : NAN;
    double *score = w->score; /* end-of-sequence scores */
    for (int i = 0; i < T; i++) {
        w->age[i] = T - 1 - i;
        score[(size_t)SCORE_H2O * T + i] = w->running[i];
        score[(size_t)SCORE_ACCUMULATIONS * T + i] = T - i;
        score[(size_t)SCORE_MEAN_ATTENTION * T + i] = w->running[i] / (T - i);
        for (int j = 0; j < n_alpha; j++) score[(size_t)(SCORE_A2SF + j) * T + i] = w->running[(size_t)(1 + j) * T + i];
    }
    return 0;
}

static int age_bias(Head *x, KvError *err)
{
    Analysis *a = x->a;
    HeadWork *w = x->w;
    int T = w->T, K = a->K;
    const double *y[ANALYSIS_MAX_SCORES];
    for (int k = 0; k < K; k++) {
        y[k] = w->score + (size_t)k * T;
        a->age_spearman[x->unit * K + k] = spearman(w->age, y[k], (size_t)T, w->work);
    }
    SpearmanBootstrap boot;
    if (spearman_bootstrap_init(&boot, w->age, y, K, (size_t)T, err)) return -1;
    for (int b = 0; b < a->n_boot; b++) {
        spearman_bootstrap_draw(&boot, w->age, y, x->rng_age, w->replicate);
        for (int k = 0; k < K; k++) a->age_rep[(x->unit * K + k) * a->n_boot + b] = (float)w->replicate[k];
    }
    spearman_bootstrap_free(&boot);
    return 0;
}

/* A high mean attention counts as a sink only over enough rows: the last
 * tokens' means are dominated by their attention to themselves. */
#define SINK_MIN_ROWS 16

/* Key and value norms against the age-free score, mean attention per row. */
static int norms(Head *x, int have_values, KvError *err)
{
    Analysis *a = x->a;
    HeadWork *w = x->w;
    int T = w->T;
    const double *mean = w->score + (size_t)SCORE_MEAN_ATTENTION * T;
    for (int i = 0; i < T; i++) {
        w->k_norm[i] = x->layer->k_norm[(size_t)x->g * T + i];
        w->v_l1[i] = have_values ? x->layer->v_l1[(size_t)x->g * T + i] : 0.0;
    }
    a->key_spearman[x->unit] = spearman(w->k_norm, mean, (size_t)T, w->work);
    a->value_spearman[x->unit] = have_values ? spearman(w->v_l1, mean, (size_t)T, w->work) : NAN;
    const double *y[2] = {w->k_norm, w->v_l1};
    SpearmanBootstrap boot;
    if (spearman_bootstrap_init(&boot, mean, y, have_values ? 2 : 1, (size_t)T, err)) return -1;
    for (int b = 0; b < a->n_boot; b++) {
        spearman_bootstrap_draw(&boot, mean, y, x->rng_norms, w->replicate);
        a->key_rep[x->unit * a->n_boot + b] = (float)w->replicate[0];
        a->value_rep[x->unit * a->n_boot + b] = have_values ? (float)w->replicate[1] : NAN;
    }
    spearman_bootstrap_free(&boot);
    /* sinks: the first positions, and tokens of very high attention */
    double sink_sum = 0, other_sum = 0;
    int sinks = 0, others = 0, beyond = 0;
    for (int i = 0; i < T; i++) {
        int by_attention = T - i >= SINK_MIN_ROWS && mean[i] >= a->opt.sink_attention, sink = i < a->opt.sink_tokens || by_attention;
        beyond += by_attention && i >= a->opt.sink_tokens;
        if (sink) { sink_sum += w->v_l1[i]; sinks++; }
        else { other_sum += w->v_l1[i]; others++; }
        if (x->curves) x->curves->sink[i] = (uint8_t)sink;
    }
    a->attention_sinks[x->unit] = beyond;
    a->sink_value_ratio[x->unit] =
        have_values && sinks && others && other_sum > 0 ? (sink_sum / sinks) / (other_sum / others) : NAN;
    return 0;
}

/* Sequence 0's per-position curves, for the figures. */
static void keep_curves(Head *x)
{
    Analysis *a = x->a;
    HeadWork *w = x->w;
    int T = w->T, example = x->l == a->opt.example_layer && x->h == a->opt.example_head;
    for (int k = 0; k < a->K; k++)
        for (int i = 0; i < T; i++) {
            float v = (float)w->score[(size_t)k * T + i];
            x->curves->scores[(size_t)k * T + i] = v;
            if (example) a->example_scores[(size_t)k * T + i] = v;
        }
    if (!example) return;
    for (int i = 0; i < T; i++) {
        a->example_k_norm[i] = (float)w->k_norm[i];
        a->example_v_l1[i] = (float)w->v_l1[i];
        a->example_attention[i] = (float)w->score[(size_t)SCORE_MEAN_ATTENTION * T + i];
    }
}

static int analyze_head(Head *x, int have_values, KvError *err)
{
    if (scan_rows(x, err) || age_bias(x, err) || norms(x, have_values, err)) return -1;
    if (x->curves) keep_curves(x);
    return 0;
}

/* ------------------------------------------------------------ setup */

static int alloc_analysis(Analysis *a, KvError *err)
{
    size_t units = (size_t)a->S * a->L * a->H, T0 = (size_t)a->T0;
    a->age_spearman = malloc(units * a->K * sizeof(double));
    a->age_rep = malloc(units * a->K * a->n_boot * sizeof(float));
    a->relative_age = malloc(units * a->M * sizeof(double));
    a->age_share = calloc(units * a->M * ANALYSIS_AGE_BINS, sizeof(double));
    a->key_spearman = malloc(units * sizeof(double));
    a->value_spearman = malloc(units * sizeof(double));
    a->key_rep = malloc(units * a->n_boot * sizeof(float));
    a->value_rep = malloc(units * a->n_boot * sizeof(float));
    a->loss_norm = malloc(units * sizeof(double));
    a->loss_least = malloc(units * sizeof(double));
    a->loss_random = malloc(units * sizeof(double));
    a->sink_value_ratio = malloc(units * sizeof(double));
    a->attention_sinks = calloc(units, sizeof(int));
    a->example_scores = calloc(a->K * T0, sizeof(float));
    a->mean_scores = calloc(a->K * T0, sizeof(float));
    a->example_k_norm = calloc(T0, sizeof(float));
    a->example_v_l1 = calloc(T0, sizeof(float));
    a->example_attention = calloc(T0, sizeof(float));
    a->value_by_position = calloc((size_t)a->L * T0, sizeof(float));
    a->sink_share = calloc(T0, sizeof(float));
    a->age_layer_head = malloc((size_t)a->L * a->H * a->K * 3 * sizeof(double));
    a->age_layer = malloc((size_t)a->L * a->K * 3 * sizeof(double));
    a->key_layer_head = malloc((size_t)a->L * a->H * 3 * sizeof(double));
    a->alr_layer_head = malloc((size_t)a->L * a->H * sizeof(double));
    if (!a->age_spearman || !a->age_rep || !a->relative_age || !a->age_share || !a->key_spearman || !a->value_spearman ||
        !a->key_rep || !a->value_rep || !a->loss_norm || !a->loss_least || !a->loss_random ||
        !a->sink_value_ratio || !a->attention_sinks || !a->example_scores || !a->mean_scores ||
        !a->example_k_norm || !a->example_v_l1 || !a->example_attention || !a->value_by_position ||
        !a->sink_share || !a->age_layer_head || !a->age_layer || !a->key_layer_head || !a->alr_layer_head)
        return kv_fail(err, "out of memory for the analysis of %zu heads", units);
    return 0;
}

void analysis_free(Analysis *a)
{
    free(a->seq_tokens); free(a->seq_budget); free(a->selected); free(a->age_spearman); free(a->age_rep); free(a->relative_age);
    free(a->age_share);
    free(a->key_spearman); free(a->value_spearman); free(a->key_rep); free(a->value_rep); free(a->loss_norm);
    free(a->loss_least); free(a->loss_random); free(a->sink_value_ratio); free(a->attention_sinks);
    free(a->example_scores); free(a->mean_scores); free(a->example_k_norm); free(a->example_v_l1);
    free(a->example_attention); free(a->value_by_position); free(a->sink_share); free(a->age_layer_head);
    free(a->age_layer); free(a->key_layer_head); free(a->alr_layer_head); free(a->trace_sha256);
    memset(a, 0, sizeof *a);
}

static void name_scores(Analysis *a)
{
    const AnalyzeOptions *o = &a->opt;
    a->K = 3 + o->n_alpha;
    a->M = 2 + o->n_alpha;
    snprintf(a->score_name[SCORE_H2O], 24, "h2o");
    snprintf(a->score_name[SCORE_ACCUMULATIONS], 24, "accumulations");
    snprintf(a->score_name[SCORE_MEAN_ATTENTION], 24, "mean_attention");
    snprintf(a->method_name[0], 24, "h2o");
    for (int j = 0; j < o->n_alpha; j++) {
        snprintf(a->score_name[SCORE_A2SF + j], 24, "a2sf_%g", o->alphas[j]);
        snprintf(a->method_name[1 + j], 24, "a2sf_%g", o->alphas[j]);
    }
    snprintf(a->method_name[a->M - 1], 24, "ideal");
}

static int check_options(const AnalyzeOptions *o, const TraceReader *r, KvError *err)
{
    if (o->n_alpha < 1 || o->n_alpha > ANALYSIS_MAX_ALPHA)
        return kv_fail(err, "give 1 to %d A2SF alphas", ANALYSIS_MAX_ALPHA);
    for (int j = 0; j < o->n_alpha; j++)
        if (!(o->alphas[j] >= 0 && o->alphas[j] < 1)) return kv_fail(err, "alpha %g is outside [0, 1)", o->alphas[j]);
    if (!(o->budget_fraction > 0 && o->budget_fraction < 1))
        return kv_fail(err, "budget fraction %g is outside (0, 1)", o->budget_fraction);
    if (!(o->drop_fraction > 0 && o->drop_fraction < 1))
        return kv_fail(err, "drop fraction %g is outside (0, 1)", o->drop_fraction);
    if (o->n_boot < 0 || o->n_boot > 100000) return kv_fail(err, "bootstrap replicates %d: give 0 to 100000", o->n_boot);
    if (o->example_layer >= r->meta.n_layers || o->example_head < 0 || o->example_head >= r->meta.n_heads)
        return kv_fail(err, "%s: no layer %d head %d (the model has %d layers of %d heads)", r->path,
                       o->example_layer, o->example_head, r->meta.n_layers, r->meta.n_heads);
    return 0;
}

/* Sequence lengths and budgets; every sequence must be complete unless allowed. */
static int read_sequences(Analysis *a, const TraceReader *r, int *have_values, KvError *err)
{
    a->seq_tokens = malloc((size_t)a->S * sizeof(int));
    a->seq_budget = malloc((size_t)a->S * sizeof(int));
    if (!a->seq_tokens || !a->seq_budget) return kv_fail(err, "out of memory");
    *have_values = 1;
    for (int s = 0; s < a->S; s++) {
        TraceSeqInfo info;
        if (trace_sequence_info(r, s, &info, err)) return -1;
        if (!info.complete && !a->opt.allow_incomplete)
            return kv_fail(err, "%s: sequence %d is incomplete (recording interrupted); pass --allow-incomplete",
                           r->path, s);
        if (info.n_tokens < 2) return kv_fail(err, "%s: sequence %d has %d token(s); need 2", r->path, s, info.n_tokens);
        a->seq_tokens[s] = info.n_tokens;
        int B = (int)floor(a->opt.budget_fraction * info.n_tokens + 0.5);
        a->seq_budget[s] = B < 1 ? 1 : B;
        *have_values &= info.has_values;
    }
    a->T0 = a->seq_tokens[0];
    return 0;
}

/* The layer of an analysed head nearest the middle (ties: the lower). */
static int middle_layer(const Analysis *a)
{
    int best = -1;
    for (int l = 0; l < a->L; l++)
        for (int h = 0; h < a->H; h++)
            if (a->selected[(size_t)l * a->H + h] && (best < 0 || abs(l - a->L / 2) < abs(best - a->L / 2))) best = l;
    return best;
}

/* a->selected from --layers and --heads (every head when neither is
 * given), and the example head: the one asked for must be analysed; by
 * default the first analysed head (head 0 when it is) of the middle layer,
 * or of the analysed layer nearest it. */
static int select_heads(Analysis *a, const TraceReader *r, KvError *err)
{
    const AnalyzeOptions *o = &a->opt;
    uint8_t *layer_on = malloc((size_t)a->L), *head_on = malloc((size_t)a->H);
    a->selected = calloc((size_t)a->L * a->H, 1);
    int rc = layer_on && head_on && a->selected ? 0 : kv_fail(err, "out of memory");
    if (rc == 0) {
        memset(layer_on, !o->layers, (size_t)a->L);
        memset(head_on, !o->heads, (size_t)a->H);
    }
    for (int i = 0; rc == 0 && o->layers && i < o->n_layers; i++)
        if (o->layers[i] < 0 || o->layers[i] >= a->L)
            rc = kv_fail(err, "%s: no layer %d (the model has %d layers, 0..%d)", r->path, o->layers[i], a->L, a->L - 1);
        else layer_on[o->layers[i]] = 1;
    for (int i = 0; rc == 0 && o->heads && i < o->n_heads; i++)
        if (o->heads[i] < 0 || o->heads[i] >= a->H)
            rc = kv_fail(err, "%s: no query head %d (the model has %d heads, 0..%d)", r->path, o->heads[i], a->H, a->H - 1);
        else head_on[o->heads[i]] = 1;
    for (int l = 0; rc == 0 && l < a->L; l++)
        for (int h = 0; h < a->H; h++)
            if (layer_on[l] && head_on[h]) {
                a->selected[(size_t)l * a->H + h] = 1;
                a->n_selected++;
                a->last_layer = l;
            }
    free(layer_on);
    free(head_on);
    if (rc) return rc;
    if (a->opt.example_layer >= 0) {
        if (!a->selected[(size_t)a->opt.example_layer * a->H + a->opt.example_head])
            return kv_fail(err, "--example %d:%d is not among the heads analysed (--layers, --heads)",
                           a->opt.example_layer, a->opt.example_head);
        return 0;
    }
    int l = a->opt.example_layer = middle_layer(a);
    if (!a->selected[(size_t)l * a->H + a->opt.example_head])
        for (a->opt.example_head = 0; !a->selected[(size_t)l * a->H + a->opt.example_head];) a->opt.example_head++;
    return 0;
}

/* The cells of heads not analysed: NaN (attention_sinks -1), as are the
 * value norms by position of layers not analysed. */
static void blank_unselected(Analysis *a)
{
    for (int s = 0; s < a->S; s++)
        for (int l = 0; l < a->L; l++)
            for (int h = 0; h < a->H; h++) {
                if (a->selected[(size_t)l * a->H + h]) continue;
                size_t u = ((size_t)s * a->L + l) * a->H + h;
                for (int k = 0; k < a->K; k++) a->age_spearman[u * a->K + k] = NAN;
                for (size_t i = 0; i < (size_t)a->K * a->n_boot; i++) a->age_rep[u * a->K * a->n_boot + i] = NAN;
                for (int m = 0; m < a->M; m++) a->relative_age[u * a->M + m] = NAN;
                for (int i = 0; i < a->M * ANALYSIS_AGE_BINS; i++) a->age_share[u * a->M * ANALYSIS_AGE_BINS + i] = NAN;
                for (int b = 0; b < a->n_boot; b++) a->key_rep[u * a->n_boot + b] = a->value_rep[u * a->n_boot + b] = NAN;
                a->key_spearman[u] = a->value_spearman[u] = a->loss_norm[u] = a->loss_least[u] = a->loss_random[u] =
                    a->sink_value_ratio[u] = NAN;
                a->attention_sinks[u] = -1;
            }
    for (int l = 0; l < a->L; l++) {
        int any = 0;
        for (int h = 0; h < a->H; h++) any |= a->selected[(size_t)l * a->H + h];
        for (int i = 0; !any && i < a->T0; i++) a->value_by_position[(size_t)l * a->T0 + i] = NAN;
    }
}

/* ------------------------------------------------------------ pooling */

/* Flat indices of analysed units (s, l, h) for every s, or every (s, h) of layer l, or all. */
static size_t select_units(const Analysis *a, int layer, int head, int stride, int offset, size_t *out)
{
    size_t n = 0;
    for (int s = 0; s < a->S; s++)
        for (int l = 0; l < a->L; l++)
            for (int h = 0; h < a->H; h++)
                if ((layer < 0 || l == layer) && (head < 0 || h == head) && a->selected[(size_t)l * a->H + h])
                    out[n++] = ((size_t)(s * a->L + l) * a->H + h) * stride + offset;
    return n;
}

static int pool(Analysis *a, gsl_rng *rng, KvError *err)
{
    size_t *units = malloc((size_t)a->S * a->L * a->H * sizeof(size_t)), n;
    if (!units) return kv_fail(err, "out of memory");
    int rc = 0, B = a->n_boot;
    for (int k = 0; k < a->K && rc == 0; k++) {
        for (int l = 0; l < a->L && rc == 0; l++) {
            for (int h = 0; h < a->H && rc == 0; h++) {
                n = select_units(a, l, h, a->K, k, units);
                rc = mean_with_interval(a->age_spearman, a->age_rep, units, n, B, rng,
                                        a->age_layer_head + (((size_t)l * a->H + h) * a->K + k) * 3, err);
            }
            n = select_units(a, l, -1, a->K, k, units);
            rc = rc || mean_with_interval(a->age_spearman, a->age_rep, units, n, B, rng,
                                          a->age_layer + ((size_t)l * a->K + k) * 3, err);
        }
        n = select_units(a, -1, -1, a->K, k, units);
        rc = rc || mean_with_interval(a->age_spearman, a->age_rep, units, n, B, rng, a->age_pooled[k], err);
    }
    for (int m = 0; m < a->M && rc == 0; m++) {
        n = select_units(a, -1, -1, a->M, m, units);
        rc = mean_with_interval(a->relative_age, NULL, units, n, B, rng, a->relative_age_pooled[m], err);
    }
    for (int l = 0; l < a->L && rc == 0; l++)
        for (int h = 0; h < a->H && rc == 0; h++) {
            n = select_units(a, l, h, 1, 0, units);
            rc = mean_with_interval(a->key_spearman, a->key_rep, units, n, B, rng,
                                    a->key_layer_head + ((size_t)l * a->H + h) * 3, err);
            double lost_norm = 0, lost_least = 0;
            for (size_t j = 0; j < n; j++) { lost_norm += a->loss_norm[units[j]]; lost_least += a->loss_least[units[j]]; }
            a->alr_layer_head[(size_t)l * a->H + h] = lost_least > 0 ? lost_norm / lost_least : NAN;
        }
    n = select_units(a, -1, -1, 1, 0, units);
    rc = rc || mean_with_interval(a->key_spearman, a->key_rep, units, n, B, rng, a->key_pooled, err) ||
         mean_with_interval(a->value_spearman, a->value_rep, units, n, B, rng, a->value_pooled, err) ||
         mean_with_interval(a->sink_value_ratio, NULL, units, n, B, rng, a->sink_ratio_pooled, err);
    double sums[3] = {0, 0, 0};
    for (size_t j = 0; j < n; j++) {
        sums[0] += a->loss_norm[units[j]];
        sums[1] += a->loss_least[units[j]];
        sums[2] += a->loss_random[units[j]];
    }
    a->loss_norm_pooled = sums[0] / n;
    a->loss_least_pooled = sums[1] / n;
    a->loss_random_pooled = sums[2] / n;
    a->alr_pooled = sums[1] > 0 ? sums[0] / sums[1] : NAN;
    /* The age-share bins were added last and draw last, so every interval
     * above keeps the bootstrap draws it had before they existed. */
    for (int m = 0; m < a->M && rc == 0; m++)
        for (int b = 0; b < ANALYSIS_AGE_BINS && rc == 0; b++) {
            n = select_units(a, -1, -1, a->M * ANALYSIS_AGE_BINS, m * ANALYSIS_AGE_BINS + b, units);
            rc = mean_with_interval(a->age_share, NULL, units, n, B, rng, a->age_share_pooled[m][b], err);
        }
    free(units);
    return rc;
}

/* ------------------------------------------------------------ driver */

/* The heads of one layer, spread over worker threads.  The bootstrap draws
 * come from the run's one random stream in head order, as with one thread:
 * with more, a sequencer walks the stream ahead (drawing what each head will
 * draw) and leaves a snapshot of it at every head's start, which the head's
 * worker waits for.  So any thread count gives the same numbers. */
typedef struct {
    Analysis *a;
    const LayerData *layer;
    int s, l, have_values;
    gsl_rng *rng;                 /* the run's stream */
    int threads;
    HeadWork *work;               /* [threads] */
    HeadCurves *curves;           /* [H] filled for sequence 0 */
    gsl_rng **snapshot;           /* [2H] age and norms streams of each head (threads > 1) */
    uint8_t *kv_wanted;           /* [KV] kv heads of the analysed heads, loaded; NULL: all */
    int n_kv_wanted;
    int snapshots_made, next_task, failed;
    KvError err;
    pthread_mutex_t lock;
    pthread_cond_t made;
} LayerPool;

/* Draws what one head's bootstrap draws, so the stream moves past it. */
static void skip_draws(gsl_rng *rng, int n_boot, int T)
{
    rng_skip_uniform_int(rng, (long)n_boot * T, (unsigned long)T);
}

static void sequence_streams(LayerPool *p)
{
    int T = p->layer->T, made = 0;
    for (int h = 0; h < p->a->H; h++) {
        gsl_rng *age = gsl_rng_clone(p->rng);
        skip_draws(p->rng, p->a->n_boot, T);
        gsl_rng *norms = gsl_rng_clone(p->rng);
        skip_draws(p->rng, p->a->n_boot, T);
        pthread_mutex_lock(&p->lock);
        p->snapshot[2 * h] = age;
        p->snapshot[2 * h + 1] = norms;
        if (!age || !norms) { p->failed = 1; kv_fail(&p->err, "out of memory"); }
        p->snapshots_made = made = h + 1;
        pthread_cond_broadcast(&p->made);
        pthread_mutex_unlock(&p->lock);
        if (!age || !norms) break;
    }
    if (made < p->a->H) { /* wake every waiter */
        pthread_mutex_lock(&p->lock);
        p->snapshots_made = p->a->H;
        pthread_cond_broadcast(&p->made);
        pthread_mutex_unlock(&p->lock);
    }
}

static void run_head(LayerPool *p, HeadWork *w, int h)
{
    Analysis *a = p->a;
    if (!a->selected[(size_t)p->l * a->H + h]) { /* its draws pass by, as when it is analysed */
        if (p->threads == 1) {
            skip_draws(p->rng, a->n_boot, p->layer->T);
            skip_draws(p->rng, a->n_boot, p->layer->T);
        }
        return;
    }
    Head x = {a, w, p->layer, p->s, p->l, h, h / (a->H / a->KV), ((size_t)p->s * a->L + p->l) * a->H + h, p->rng,
              p->rng, p->s == 0 ? &p->curves[h] : NULL};
    if (p->threads > 1) {
        pthread_mutex_lock(&p->lock);
        while (p->snapshots_made <= h) pthread_cond_wait(&p->made, &p->lock);
        x.rng_age = p->snapshot[2 * h];
        x.rng_norms = p->snapshot[2 * h + 1];
        int give_up = p->failed;
        pthread_mutex_unlock(&p->lock);
        if (give_up) return;
    }
    KvError err;
    if (analyze_head(&x, p->have_values, &err)) {
        pthread_mutex_lock(&p->lock);
        if (!p->failed) { p->failed = 1; p->err = err; }
        pthread_mutex_unlock(&p->lock);
    }
}

typedef struct {
    LayerPool *pool;
    HeadWork *work;
} Worker;

static void *layer_worker(void *arg)
{
    Worker *me = arg;
    LayerPool *p = me->pool;
    int sequencer = p->threads > 1;
    h5_quiet(); /* HDF5's error stack is per thread */
    for (;;) {
        pthread_mutex_lock(&p->lock);
        int task = p->next_task < p->a->H + sequencer ? p->next_task++ : -1;
        pthread_mutex_unlock(&p->lock);
        if (task < 0) break;
        if (sequencer && task == 0) sequence_streams(p);
        else run_head(p, me->work, task - sequencer);
    }
    return NULL;
}

/* Sequence 0's curves of layer l: every analysed head's contribution, in head order. */
static void fold_curves(Analysis *a, int l, const HeadCurves *curves)
{
    float share = (float)a->n_selected;
    for (int h = 0; h < a->H; h++) {
        if (!a->selected[(size_t)l * a->H + h]) continue;
        for (size_t i = 0; i < (size_t)a->K * a->T0; i++) a->mean_scores[i] += curves[h].scores[i] / share;
        for (int i = 0; i < a->T0; i++)
            if (curves[h].sink[i]) a->sink_share[i] += 1.0f / share;
    }
}

static int analyze_layer(LayerPool *p, KvError *err)
{
    pthread_t tid[ANALYSIS_MAX_THREADS];
    Worker workers[ANALYSIS_MAX_THREADS];
    int started = 0;
    p->snapshots_made = p->next_task = p->failed = 0;
    for (int t = 0; t < p->threads; t++) workers[t] = (Worker){p, &p->work[t]};
    for (; started < p->threads - 1; started++)
        if (pthread_create(&tid[started], NULL, layer_worker, &workers[started + 1])) break;
    layer_worker(&workers[0]); /* the calling thread works too */
    for (int t = 0; t < started; t++) pthread_join(tid[t], NULL);
    for (int i = 0; p->snapshot && i < 2 * p->a->H; i++) {
        if (p->snapshot[i]) gsl_rng_free(p->snapshot[i]);
        p->snapshot[i] = NULL;
    }
    if (p->failed) {
        *err = p->err;
        return -1;
    }
    return 0;
}

/* Layer l of sequence s: its heads' statistics land in a's slices, sequence
 * 0's per-head curves in p->curves and its value norms by position in
 * value_row (added to: zeros in, as a single pass gives). */
/* Analyses a loaded layer l of sequence s (ld is freed here). */
static int analyze_layer_of(LayerPool *p, const TraceReader *r, int s, int l, LayerData *ld, float *value_row,
                            KvError *err)
{
    Analysis *a = p->a;
    for (int w = 0; w < p->threads; w++) p->work[w].T = ld->T;
    p->layer = ld;
    p->s = s;
    p->l = l;
    int rc = analyze_layer(p, err);
    if (rc == 0 && s == 0 && p->have_values) /* the mean over the kv heads loaded */
        for (int g = 0; g < a->KV; g++)
            for (int i = 0; (!p->kv_wanted || p->kv_wanted[g]) && i < a->T0; i++)
                value_row[i] += ld->v_l1[(size_t)g * a->T0 + i] / p->n_kv_wanted;
    trace_layer_free(ld);
    return rc ? kv_wrap(err, "%s sequence %d layer %d", r->path, s, l) : 0;
}

/* The first layer from l on with an analysed head (L: none). */
static int next_layer(const Analysis *a, int l)
{
    for (; l < a->L; l++)
        for (int h = 0; h < a->H; h++)
            if (a->selected[(size_t)l * a->H + h]) return l;
    return a->L;
}

/* The bootstrap draws of layers [from, to) of sequence s, none analysed,
 * pass by the run's stream, as far as an analysed head comes after them. */
static void skip_layers(const Analysis *a, gsl_rng *rng, int s, int from, int to, int T)
{
    for (int l = from; l < to && (s < a->S - 1 || l < a->last_layer); l++)
        for (int h = 0; h < a->H; h++) skip_draws(rng, 2 * a->n_boot, T);
}

/* The analysed layers of sequence s in order; with more than one thread
 * the next one loads while the heads of this one are analysed. */
static int analyze_sequence(Analysis *a, const TraceReader *r, int s, LayerPool *p, Progress *progress, long *done,
                            KvError *err)
{
    TraceSeqInfo info;
    if (trace_sequence_info(r, s, &info, err)) return -1;
    int background = p->threads > 1 && trace_layer_background_ok(), rc = 0, T = info.n_tokens;
    long total = 0;
    for (int l = next_layer(a, 0); l < a->L; l = next_layer(a, l + 1)) total += a->S;
    LayerLoad load[2];
    int l = next_layer(a, 0);
    skip_layers(a, p->rng, s, 0, l, T);
    trace_layer_load_start(&load[0], r, s, l, &info, p->have_values, p->kv_wanted, 0);
    for (int i = 0; l < a->L && rc == 0; i++) {
        LayerLoad *cur = &load[i % 2], *next = &load[(i + 1) % 2];
        if (trace_layer_load_finish(cur, err)) {
            trace_layer_free(&cur->ld);
            return kv_wrap(err, "%s sequence %d layer %d", r->path, s, l);
        }
        int after = next_layer(a, l + 1);
        if (after < a->L) trace_layer_load_start(next, r, s, after, &info, p->have_values, p->kv_wanted, background);
        rc = analyze_layer_of(p, r, s, l, &cur->ld, a->value_by_position + (size_t)l * a->T0, err);
        if (rc == 0 && s == 0) fold_curves(a, l, p->curves);
        if (rc == 0) progress_update(progress, ++*done, total, "layers");
        if (rc == 0) skip_layers(a, p->rng, s, l + 1, after, T);
        if (rc && after < a->L) {
            KvError ignored;
            trace_layer_load_finish(next, &ignored);
            trace_layer_free(&next->ld);
        }
        l = after;
    }
    return rc;
}

static void layer_pool_free(LayerPool *p)
{
    for (int w = 0; p->work && w < p->threads; w++) head_work_free(&p->work[w]);
    for (int h = 0; p->curves && h < p->a->H; h++) { free(p->curves[h].scores); free(p->curves[h].sink); }
    free(p->work); free(p->curves); free(p->snapshot); free(p->kv_wanted);
    pthread_mutex_destroy(&p->lock);
    pthread_cond_destroy(&p->made);
}

static int layer_pool_init(LayerPool *p, Analysis *a, gsl_rng *rng, int have_values, KvError *err)
{
    int longest = 0, threads = a->opt.threads < 1 ? 1 : a->opt.threads;
    for (int s = 0; s < a->S; s++) longest = a->seq_tokens[s] > longest ? a->seq_tokens[s] : longest;
    *p = (LayerPool){.a = a, .rng = rng, .have_values = have_values,
                     .threads = threads > ANALYSIS_MAX_THREADS ? ANALYSIS_MAX_THREADS : threads};
    if (p->threads > a->H + 1) p->threads = a->H + 1;
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->made, NULL);
    p->work = calloc((size_t)p->threads, sizeof *p->work);
    p->curves = calloc((size_t)a->H, sizeof *p->curves);
    p->snapshot = p->threads > 1 ? calloc(2 * (size_t)a->H, sizeof *p->snapshot) : NULL;
    if (!p->work || !p->curves || (p->threads > 1 && !p->snapshot)) return kv_fail(err, "out of memory");
    p->n_kv_wanted = a->KV;
    if (a->n_selected < a->L * a->H) { /* load only the kv heads of the heads analysed */
        if (!(p->kv_wanted = calloc((size_t)a->KV, 1))) return kv_fail(err, "out of memory");
        for (int l = 0; l < a->L; l++)
            for (int h = 0; h < a->H; h++)
                if (a->selected[(size_t)l * a->H + h]) p->kv_wanted[h / (a->H / a->KV)] = 1;
        p->n_kv_wanted = 0;
        for (int g = 0; g < a->KV; g++) p->n_kv_wanted += p->kv_wanted[g];
    }
    for (int w = 0; w < p->threads; w++)
        if (head_work_alloc(&p->work[w], longest, a->K, a->opt.n_alpha, err)) return -1;
    for (int h = 0; h < a->H; h++) {
        p->curves[h].scores = calloc((size_t)a->K * a->T0, sizeof(float)); /* heads not analysed send zeros (MPI) */
        p->curves[h].sink = calloc((size_t)a->T0, 1);
        if (!p->curves[h].scores || !p->curves[h].sink) return kv_fail(err, "out of memory");
    }
    return 0;
}

/* ------------------------------------------------------------ across ranks */

/* Under mpirun (util/dist.h) a job is one layer of one sequence.  The
 * bootstrap draws come from the run's one stream in (sequence, layer, head)
 * order: rank 0 walks it ahead as it hands jobs out and sends each job the
 * stream's state at its start, so every rank draws what a single process
 * draws.  A job returns its heads' slices of the per-head arrays (and, for
 * sequence 0, the curves), which rank 0 copies and folds in job order. */
typedef struct {
    Analysis *a;
    const TraceReader *r;
    LayerPool *pool;        /* this rank's workers; pool->rng is the job's stream */
    gsl_rng *stream;        /* rank 0: the run's stream, at the next job's start */
    int n_layers;           /* analysed layers: a job is one of them in one sequence */
    long cursor;            /* rank 0: the stream has passed the layers s * L + l below this */
} AnalyzeJobs;

/* The sequence and layer of a job. */
static void job_place(const AnalyzeJobs *aj, int job, int *s, int *l)
{
    *s = job / aj->n_layers;
    *l = next_layer(aj->a, 0);
    for (int k = job % aj->n_layers; k > 0; k--) *l = next_layer(aj->a, *l + 1);
}

/* The per-head arrays, as (base, bytes per head) pairs; heads of (s, l) are contiguous. */
typedef struct {
    void *base;
    size_t unit_bytes;
} HeadSlice;

static int head_slices(const Analysis *a, HeadSlice *out)
{
    size_t d = sizeof(double), f = sizeof(float);
    HeadSlice all[] = {
        {a->age_spearman, a->K * d}, {a->age_rep, (size_t)a->K * a->n_boot * f}, {a->relative_age, a->M * d},
        {a->age_share, (size_t)a->M * ANALYSIS_AGE_BINS * d}, {a->key_spearman, d}, {a->value_spearman, d},
        {a->key_rep, a->n_boot * f}, {a->value_rep, a->n_boot * f}, {a->loss_norm, d}, {a->loss_least, d},
        {a->loss_random, d}, {a->sink_value_ratio, d}, {a->attention_sinks, sizeof(int)}};
    memcpy(out, all, sizeof all);
    return (int)(sizeof all / sizeof all[0]);
}

/* Sequence 0's arrays a job adds to, and the example head's. */
typedef struct {
    float *value_row;
    int example;
} LayerExtras;

static void analyze_job_describe(void *ctx, int job, char *out, size_t cap)
{
    const AnalyzeJobs *aj = ctx;
    int s, l;
    job_place(aj, job, &s, &l);
    snprintf(out, cap, "%s sequence %d layer %d", aj->r->path, s, l);
}

static void analyze_job_prepare(void *ctx, int job, DistBuffer *input)
{
    AnalyzeJobs *aj = ctx;
    const Analysis *a = aj->a;
    int s, l;
    job_place(aj, job, &s, &l);
    for (; aj->cursor < (long)s * a->L + l; aj->cursor++) { /* layers not analysed, as a single process passes them */
        int cs = (int)(aj->cursor / a->L), cl = (int)(aj->cursor % a->L);
        skip_layers(a, aj->stream, cs, cl, cl + 1, a->seq_tokens[cs]);
    }
    dist_put(input, gsl_rng_state(aj->stream), gsl_rng_size(aj->stream));
    for (int h = 0; h < a->H; h++) skip_draws(aj->stream, 2 * a->n_boot, a->seq_tokens[s]);
    aj->cursor++;
}

static int analyze_job_run(void *ctx, int job, DistReader *input, DistBuffer *out, KvError *err)
{
    AnalyzeJobs *aj = ctx;
    Analysis *a = aj->a;
    int s, l, H = a->H;
    job_place(aj, job, &s, &l);
    TraceSeqInfo info;
    dist_get(input, gsl_rng_state(aj->pool->rng), gsl_rng_size(aj->pool->rng));
    if (input->failed) return kv_fail(err, "the job's random stream did not arrive whole");
    float *value_row = s == 0 ? calloc((size_t)a->T0, sizeof(float)) : NULL;
    if (s == 0 && !value_row) return kv_fail(err, "out of memory");
    LayerData ld = {0};
    int rc = trace_sequence_info(aj->r, s, &info, err);
    if (rc == 0 && trace_load_layer(aj->r, s, l, &info, aj->pool->have_values, aj->pool->kv_wanted, &ld, err)) {
        trace_layer_free(&ld);
        rc = kv_wrap(err, "%s sequence %d layer %d", aj->r->path, s, l);
    }
    if (rc == 0) rc = analyze_layer_of(aj->pool, aj->r, s, l, &ld, value_row, err);
    HeadSlice slices[16];
    size_t first = ((size_t)s * a->L + l) * H;
    for (int i = 0, n = head_slices(a, slices); rc == 0 && i < n; i++)
        dist_put(out, (char *)slices[i].base + first * slices[i].unit_bytes, H * slices[i].unit_bytes);
    for (int h = 0; rc == 0 && s == 0 && h < H; h++) {
        dist_put(out, aj->pool->curves[h].scores, (size_t)a->K * a->T0 * sizeof(float));
        dist_put(out, aj->pool->curves[h].sink, (size_t)a->T0);
    }
    if (rc == 0 && s == 0) dist_put(out, value_row, (size_t)a->T0 * sizeof(float));
    if (rc == 0 && s == 0 && l == a->opt.example_layer) {
        dist_put(out, a->example_scores, (size_t)a->K * a->T0 * sizeof(float));
        dist_put(out, a->example_k_norm, (size_t)a->T0 * sizeof(float));
        dist_put(out, a->example_v_l1, (size_t)a->T0 * sizeof(float));
        dist_put(out, a->example_attention, (size_t)a->T0 * sizeof(float));
    }
    free(value_row);
    return rc ? -1 : 0;
}

static int analyze_job_reduce(void *ctx, int job, DistReader *in, KvError *err)
{
    AnalyzeJobs *aj = ctx;
    Analysis *a = aj->a;
    int s, l, H = a->H;
    job_place(aj, job, &s, &l);
    HeadSlice slices[16];
    size_t first = ((size_t)s * a->L + l) * H;
    for (int i = 0, n = head_slices(a, slices); i < n; i++)
        dist_get(in, (char *)slices[i].base + first * slices[i].unit_bytes, H * slices[i].unit_bytes);
    if (s != 0) return 0;
    HeadCurves *curves = calloc((size_t)H, sizeof *curves);
    int rc = curves ? 0 : kv_fail(err, "out of memory");
    for (int h = 0; rc == 0 && h < H; h++) {
        curves[h].scores = malloc((size_t)a->K * a->T0 * sizeof(float));
        curves[h].sink = malloc((size_t)a->T0);
        if (!curves[h].scores || !curves[h].sink) { rc = kv_fail(err, "out of memory"); break; }
        dist_get(in, curves[h].scores, (size_t)a->K * a->T0 * sizeof(float));
        dist_get(in, curves[h].sink, (size_t)a->T0);
    }
    if (rc == 0) {
        fold_curves(a, l, curves);
        dist_get(in, a->value_by_position + (size_t)l * a->T0, (size_t)a->T0 * sizeof(float));
    }
    if (rc == 0 && l == a->opt.example_layer) {
        dist_get(in, a->example_scores, (size_t)a->K * a->T0 * sizeof(float));
        dist_get(in, a->example_k_norm, (size_t)a->T0 * sizeof(float));
        dist_get(in, a->example_v_l1, (size_t)a->T0 * sizeof(float));
        dist_get(in, a->example_attention, (size_t)a->T0 * sizeof(float));
    }
    for (int h = 0; curves && h < H; h++) { free(curves[h].scores); free(curves[h].sink); }
    free(curves);
    return rc;
}

/* Every layer of every sequence as jobs across the ranks; rng ends where a
 * single process's would, for the pooling. */
static int analyze_distributed(Analysis *a, const TraceReader *r, LayerPool *p, gsl_rng *rng, KvError *err)
{
    gsl_rng *job_stream = gsl_rng_alloc(gsl_rng_mt19937);
    if (!job_stream) return kv_fail(err, "out of memory");
    AnalyzeJobs aj = {a, r, p, rng, 0, 0};
    for (int l = next_layer(a, 0); l < a->L; l = next_layer(a, l + 1)) aj.n_layers++;
    p->rng = job_stream;
    DistJobs jobs = {.n_jobs = a->S * aj.n_layers, .ctx = &aj, .prepare = analyze_job_prepare, .run = analyze_job_run,
                     .reduce = analyze_job_reduce, .describe = analyze_job_describe, .label = "analyze"};
    int rc = dist_run(&jobs, err);
    p->rng = rng;
    gsl_rng_free(job_stream);
    return rc;
}

int analyze_run(const AnalyzeOptions *opt, Analysis *a, KvError *err)
{
    memset(a, 0, sizeof *a);
    a->opt = *opt;
    double start = kv_now_seconds();
    FileDigests digests; /* started once the trace is open (opening forks: no thread may run then) */
    /* the parallelism is across heads; OpenBLAS's own threads would also make
     * the attention sums depend on how many cores the machine (or an MPI
     * rank bound to one core) has */
    openblas_set_num_threads(1);
    TraceReader r;
    if (trace_open(&r, opt->trace, err)) return dist_agree(-1, "planning", err); /* every rank plans */
    if (dist_rank() == 0) file_digests_start(&digests, &opt->trace, 1, opt->threads > 1); /* on a free core */
    a->meta = r.meta;
    a->S = r.n_sequences;
    if (a->S < 1) {
        kv_fail(err, "%s: the trace holds no sequences", opt->trace);
        trace_close(&r);
        if (dist_rank() == 0) file_digests_free(&digests);
        return dist_agree(-1, "planning", err);
    }
    a->L = r.meta.n_layers;
    a->H = r.meta.n_heads;
    a->KV = r.meta.n_kv_heads;
    a->n_boot = opt->n_boot;
    name_scores(a);
    LayerPool pool_of_heads = {0};
    gsl_rng *rng = gsl_rng_alloc(gsl_rng_mt19937);
    int have_values = 0, rc = -1, pool_ready = 0;
    if (!rng) kv_fail(err, "out of memory");
    else gsl_rng_set(rng, opt->seed);
    if (rng && !check_options(&a->opt, &r, err) && !select_heads(a, &r, err) &&
        !read_sequences(a, &r, &have_values, err) && !alloc_analysis(a, err)) {
        blank_unselected(a);
        pool_ready = 1;
        rc = layer_pool_init(&pool_of_heads, a, rng, have_values, err);
    }
    if (dist_active()) {
        if ((rc = dist_agree(rc, "planning", err)) == 0)
            rc = analyze_distributed(a, &r, &pool_of_heads, rng, err) || (dist_rank() == 0 && pool(a, rng, err));
        a->seconds = kv_now_seconds() - start;
        goto done;
    }
    if (rc) goto done;
    rc = -1;
    Progress progress;
    progress_begin(&progress, "analyze");
    long layers_done = 0;
    for (int s = 0; s < a->S; s++)
        if (analyze_sequence(a, &r, s, &pool_of_heads, &progress, &layers_done, err)) goto done;
    progress_end(&progress);
    rc = pool(a, rng, err);
    a->seconds = kv_now_seconds() - start;
done:
    if (dist_rank() == 0) {
        if (rc) file_digests_free(&digests); /* no results: no digests */
        else if (!(a->trace_sha256 = file_digests_take(&digests))) rc = kv_fail(err, "out of memory");
    }
    if (pool_ready) layer_pool_free(&pool_of_heads);
    if (rng) gsl_rng_free(rng);
    trace_close(&r);
    if (rc) analysis_free(a);
    return rc;
}
