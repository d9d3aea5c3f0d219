/* The closed-loop evaluation: record the full-cache run, replay it offline,
 * run every policy in the loop, compare (eval.h). */
#include "eval.h"

#include <cblas.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "../sim/replay.h"
#include "../trace/recorder.h"
#include "../util/dist.h"
#include "../util/progress.h"
#include "closed_loop.h"


const char *const EVAL_METRIC_NAMES[EVAL_METRICS] = {"nll", "nll_full", "delta_nll", "ppl_ratio", "kl",
                                                     "top1_agreement", "greedy_agreement"};

/* Oracles are not caches: they cannot run in a model. */
static int check_policies(const EvalOptions *opt, KvError *err)
{
    for (int p = 0; p < opt->n_policies; p++) {
        const PolicyOps *ops = policy_lookup(opt->policies[p].name);
        if (ops && (ops->kind == KIND_IDEAL || ops->needs_hindsight))
            return kv_fail(err, "policy %s is an offline oracle (it needs the whole future); eval runs real caches",
                           opt->policies[p].name);
    }
    return 0;
}

/* Step 1: the full-cache trace of the texts. */
static int record_texts(const EvalOptions *opt, const Model *m, KvError *err)
{
    RecordOptions rec = {.prompts = opt->texts, .n_prompts = opt->n_texts, .generate = opt->sample_tokens,
                         .temperature = opt->temperature, .top_p = 0.9f, .seed = opt->seed,
                         .command_line = opt->command_line,
                         .max_block = 1, /* one token per step, as the closed loop runs: identical q, k, v */
                         .force = 1}; /* the caller made trace_file for this */
    RecordSummary sum;
    const char *file = opt->trace_file ? opt->trace_file : opt->trace_path;
    if (record_traces(m, &rec, file, &sum, err)) return -1;
    return 0;
}

/* Step 2: the offline replay of that trace. */
static int replay_offline(const EvalOptions *opt, SimResults *offline, KvError *err)
{
    const char *traces[1] = {opt->trace_file ? opt->trace_file : opt->trace_path};
    SimOptions sim = {.traces = traces, .n_traces = 1, .policies = opt->policies, .n_policies = opt->n_policies,
                      .budgets = opt->budgets, .n_budgets = opt->n_budgets,
                      .allocations = opt->allocations, .n_allocations = opt->n_allocations, .prefill = opt->prefill,
                      .layer_granularity = opt->layer_granularity, .error_stride = 1, .threads = opt->threads,
                      .retention_layer = -1, .retention_unit = -1, .command_line = opt->command_line};
    return simulate_run(&sim, offline, err);
}

/* ------------------------------------------------------------ step 3, per text */

typedef struct {
    const EvalOptions *opt;
    const Model *m;
    EvalResults *res;
    int **tokens;            /* [S] */
    int next;                /* next text to take */
    pthread_mutex_t lock;
    Progress *progress;
    long done, total;
    int failed;
    KvError err;
} Pool;

static void metrics_of(const LoopResult *r, double *out)
{
    double rows = (double)r->rows;
    out[EVAL_NLL] = r->rows ? r->nll / rows : NAN;
    out[EVAL_NLL_FULL] = r->rows ? r->nll_full / rows : NAN;
    out[EVAL_DELTA_NLL] = r->rows ? (r->nll - r->nll_full) / rows : NAN;
    out[EVAL_PPL_RATIO] = r->rows ? exp((r->nll - r->nll_full) / rows) : NAN;
    out[EVAL_KL] = r->rows ? r->kl / rows : NAN;
    out[EVAL_TOP1] = r->rows ? r->top1 / rows : NAN;
    out[EVAL_GREEDY] = r->greedy_agree;
}

static void store(EvalResults *res, int c, int s, const double *metrics)
{
    for (int k = 0; k < EVAL_METRICS; k++) res->metric[k][(size_t)c * res->S + s] = metrics[k];
}

/* Text s under configurations c0..c0+n-1: the full-cache run, then one
 * closed loop each; metrics into out[n][EVAL_METRICS], text 0's retention
 * maps into res. */
static int run_configs(Pool *pool, int s, int c0, int n, ForwardState *state, double *out, KvError *err)
{
    const EvalOptions *opt = pool->opt;
    EvalResults *res = pool->res;
    int T = res->offline.seq_length[s], P = res->offline.seq_prompt[s];
    FullRun full;
    if (full_run(pool->m, state, pool->tokens[s], T, opt->generate, &full, err)) return -1;
    int rc = 0;
    for (int c = c0; c < c0 + n && rc == 0; c++) {
        int budget = res->offline.budget_tokens[(size_t)c * res->S + s];
        ReplayOptions ropt = {.n_prompt = opt->prefill ? P : 0};
        LoopOptions lopt = {.n_prompt = ropt.n_prompt, .layer_granularity = opt->layer_granularity,
                            .first_reported = replay_first_reported(&ropt, budget, T),
                            .retention_layer = s == 0 ? opt->retention_layer : -1, .retention_unit = opt->retention_unit,
                            .allocation = &res->offline.config_alloc[c]};
        LoopResult r = {.retention = s == 0 && res->retention ? res->retention + (size_t)c * T * T : NULL};
        rc = closed_loop_run(pool->m, state, pool->tokens[s], &full, &res->offline.config_spec[c], budget,
                             &lopt, &r, err);
        if (rc == 0) metrics_of(&r, out + (size_t)(c - c0) * EVAL_METRICS);
        pthread_mutex_lock(&pool->lock);
        progress_update(pool->progress, ++pool->done, pool->total, "runs");
        pthread_mutex_unlock(&pool->lock);
    }
    full_run_free(&full);
    return rc;
}

static int run_text(Pool *pool, int s, ForwardState *state, KvError *err)
{
    EvalResults *res = pool->res;
    double *metrics = malloc((size_t)res->C * EVAL_METRICS * sizeof(double));
    if (!metrics) return kv_fail(err, "out of memory");
    int rc = run_configs(pool, s, 0, res->C, state, metrics, err);
    for (int c = 0; rc == 0 && c < res->C; c++) store(res, c, s, metrics + (size_t)c * EVAL_METRICS);
    free(metrics);
    return rc;
}

/* Positions a forward state must hold: the longest text and what follows it. */
static int longest_run(const Pool *pool)
{
    int longest = 0;
    for (int s = 0; s < pool->res->S; s++)
        if (pool->res->offline.seq_length[s] > longest) longest = pool->res->offline.seq_length[s];
    return longest + pool->opt->generate;
}

static void *worker(void *arg)
{
    Pool *pool = arg;
    ForwardState state;
    KvError err;
    if (forward_state_init(&state, &pool->m->cfg, longest_run(pool), 1, &err)) {
        pthread_mutex_lock(&pool->lock);
        if (!pool->failed++) pool->err = err;
        pthread_mutex_unlock(&pool->lock);
        return NULL;
    }
    for (;;) {
        pthread_mutex_lock(&pool->lock);
        int s = pool->failed ? pool->res->S : pool->next++;
        pthread_mutex_unlock(&pool->lock);
        if (s >= pool->res->S) break;
        if (run_text(pool, s, &state, &err)) {
            pthread_mutex_lock(&pool->lock);
            if (!pool->failed++) pool->err = err;
            pthread_mutex_unlock(&pool->lock);
        }
    }
    forward_state_free(&state);
    return NULL;
}

static int read_tokens(const EvalOptions *opt, EvalResults *res, int ***tokens, KvError *err)
{
    TraceReader r;
    if (trace_open(&r, opt->trace_file ? opt->trace_file : opt->trace_path, err)) return -1;
    int rc = 0;
    *tokens = calloc((size_t)res->S, sizeof **tokens);
    if (!*tokens) rc = kv_fail(err, "out of memory");
    for (int s = 0; s < res->S && rc == 0; s++) {
        int T = res->offline.seq_length[s];
        (*tokens)[s] = malloc((size_t)T * sizeof(int));
        rc = (*tokens)[s] ? trace_read_tokens(&r, s, (*tokens)[s], T, err) : kv_fail(err, "out of memory");
    }
    trace_close(&r);
    return rc;
}

/* ------------------------------------------------------------ step 3 across ranks */

/* Under mpirun (util/dist.h) a job is one text, or one (text,
 * configuration) when there are fewer texts than ranks; each rank runs one
 * job at a time on one thread.  Every metric is a value of its own (no
 * sums), so any split gives the same numbers. */
typedef struct {
    Pool *pool;
    int configs_per_job, jobs_per_text;
    ForwardState state;
    int state_ready;
} EvalJobs;

static void eval_job_describe(void *ctx, int job, char *out, size_t cap)
{
    const EvalJobs *ej = ctx;
    int s = job / ej->jobs_per_text, c = job % ej->jobs_per_text * ej->configs_per_job;
    const EvalResults *res = ej->pool->res;
    if (ej->jobs_per_text == 1) snprintf(out, cap, "text %d", s);
    else snprintf(out, cap, "text %d, %s %s at %s", s, res->offline.config_policy[c], res->offline.config_params[c],
                  res->offline.config_budget[c]);
}

static int eval_job_run(void *ctx, int job, DistReader *input, DistBuffer *out, KvError *err)
{
    (void)input;
    EvalJobs *ej = ctx;
    const EvalResults *res = ej->pool->res;
    int s = job / ej->jobs_per_text, c0 = job % ej->jobs_per_text * ej->configs_per_job, n = ej->configs_per_job;
    if (!ej->state_ready) {
        if (forward_state_init(&ej->state, &ej->pool->m->cfg, longest_run(ej->pool), 1, err)) return -1;
        ej->state_ready = 1;
    }
    double *metrics = malloc((size_t)n * EVAL_METRICS * sizeof(double));
    if (!metrics) return kv_fail(err, "out of memory");
    int rc = run_configs(ej->pool, s, c0, n, &ej->state, metrics, err);
    if (rc == 0) dist_put(out, metrics, (size_t)n * EVAL_METRICS * sizeof(double));
    size_t T = (size_t)res->retention_T;
    if (rc == 0 && s == 0 && res->retention) dist_put(out, res->retention + c0 * T * T, (size_t)n * T * T);
    free(metrics);
    return rc;
}

static int eval_job_reduce(void *ctx, int job, DistReader *in, KvError *err)
{
    (void)err;
    EvalJobs *ej = ctx;
    EvalResults *res = ej->pool->res;
    int s = job / ej->jobs_per_text, c0 = job % ej->jobs_per_text * ej->configs_per_job;
    for (int c = c0; c < c0 + ej->configs_per_job; c++) {
        double metrics[EVAL_METRICS];
        dist_get(in, metrics, sizeof metrics);
        store(res, c, s, metrics);
    }
    size_t T = (size_t)res->retention_T;
    if (s == 0 && res->retention) dist_get(in, res->retention + c0 * T * T, (size_t)ej->configs_per_job * T * T);
    return 0;
}

static int run_distributed(Pool *pool, KvError *err)
{
    Progress quiet = {0}; /* rank 0 shows the run's progress */
    EvalJobs ej = {.pool = pool, .configs_per_job = pool->res->C, .jobs_per_text = 1};
    if (pool->res->S < dist_size()) ej.configs_per_job = 1, ej.jobs_per_text = pool->res->C;
    pool->progress = &quiet;
    DistJobs jobs = {.n_jobs = pool->res->S * ej.jobs_per_text, .ctx = &ej, .run = eval_job_run,
                     .reduce = eval_job_reduce, .describe = eval_job_describe, .label = "eval"};
    int rc = dist_run(&jobs, err);
    if (ej.state_ready) forward_state_free(&ej.state);
    return rc;
}

static int run_closed_loop(const EvalOptions *opt, const Model *m, EvalResults *res, KvError *err)
{
    Pool pool = {.opt = opt, .m = m, .res = res, .total = (long)res->S * res->C};
    int rc = read_tokens(opt, res, &pool.tokens, err);
    if (dist_active()) { /* every rank reads the tokens; any failure stops them all */
        if ((rc = dist_agree(rc, "reading the recorded texts", err)) == 0) {
            pthread_mutex_init(&pool.lock, NULL);
            openblas_set_num_threads(1);
            pool.failed = run_distributed(&pool, err) != 0;
            pthread_mutex_destroy(&pool.lock);
        }
        goto fail;
    }
    if (rc) goto fail;
    pthread_mutex_init(&pool.lock, NULL);
    Progress progress;
    pool.progress = &progress;
    progress_begin(&progress, "eval");
    int n = opt->threads < res->S ? opt->threads : res->S;
    pthread_t threads[64];
    int started = 0;
    openblas_set_num_threads(1);
    for (; started < n && started < 64; started++)
        if (pthread_create(&threads[started], NULL, worker, &pool)) break;
    if (started == 0) worker(&pool);
    for (int i = 0; i < started; i++) pthread_join(threads[i], NULL);
    progress_end(&progress);
    pthread_mutex_destroy(&pool.lock);
    if (pool.failed) *err = pool.err;
fail:
    for (int s = 0; pool.tokens && s < res->S; s++) free(pool.tokens[s]);
    free(pool.tokens);
    return rc || pool.failed || !pool.tokens ? -1 : 0;
}

/* ------------------------------------------------------------ step 4 */

/* The rank correlations of offline mass with -ΔNLL (eval_results.c). */
static void compare(EvalResults *res)
{
    EvalRanks ranks;
    res->rank_overall = res->rank_within_budget = NAN;
    if (eval_ranks(res, &ranks)) return;
    res->rank_overall = ranks.overall[EVAL_RANK_ALL];
    res->rank_within_budget = ranks.within_budget[EVAL_RANK_ALL];
}

static int alloc_results(const EvalOptions *opt, EvalResults *res, KvError *err)
{
    res->C = res->offline.n_configs;
    res->S = res->offline.n_sequences;
    for (int k = 0; k < EVAL_METRICS; k++) {
        res->metric[k] = malloc((size_t)res->C * res->S * sizeof(double));
        if (!res->metric[k]) return kv_fail(err, "out of memory");
        for (size_t i = 0; i < (size_t)res->C * res->S; i++) res->metric[k][i] = NAN;
    }
    if (opt->retention_layer >= 0) {
        res->retention_T = res->offline.seq_length[0];
        res->retention = calloc((size_t)res->C * res->retention_T * res->retention_T, 1);
        if (!res->retention) return kv_fail(err, "out of memory for retention maps");
    }
    return 0;
}

/* Under mpirun every rank loads the model; rank 0 alone records the texts
 * (beside the output: the other ranks read that file, so it must be on a
 * file system they all see); the offline replay and the closed loops are
 * spread over the ranks as jobs (util/dist.h). */
int eval_run(const EvalOptions *opt, EvalResults *res, KvError *err)
{
    memset(res, 0, sizeof *res);
    double start = kv_now_seconds();
    Model m;
    int rc = check_policies(opt, err), loaded = 0;
    if (rc == 0) loaded = (rc = model_load(&m, opt->model_path, NULL, err)) == 0;
    if (rc == 0 && opt->retention_layer >= 0 &&
        (opt->retention_layer >= m.cfg.n_layers || opt->retention_unit < 0 ||
         opt->retention_unit >= (opt->layer_granularity ? 1 : m.cfg.n_kv_heads)))
        rc = kv_fail(err, "retention unit %d:%d does not exist", opt->retention_layer, opt->retention_unit);
    if (rc == 0 && dist_rank() == 0) rc = record_texts(opt, &m, err);
    rc = dist_agree(rc, "loading the model and recording the texts", err);
    /* simulate_run agrees across ranks by itself; alloc_results must too */
    if (rc == 0 && (rc = replay_offline(opt, &res->offline, err)) == 0)
        rc = dist_agree(alloc_results(opt, res, err), "allocating the results", err) ||
             run_closed_loop(opt, &m, res, err);
    if (rc == 0 && dist_rank() == 0) compare(res);
    if (loaded) model_free(&m);
    res->seconds = kv_now_seconds() - start;
    if (rc) eval_results_free(res);
    return rc ? -1 : 0;
}

void eval_results_free(EvalResults *res)
{
    sim_results_free(&res->offline);
    for (int k = 0; k < EVAL_METRICS; k++) free(res->metric[k]);
    free(res->retention);
    memset(res, 0, sizeof *res);
}

void eval_overall(const EvalResults *res, int config, int metric, double *mean, double *std)
{
    double sum = 0, sum2 = 0;
    int n = 0;
    for (int s = 0; s < res->S; s++) {
        double v = res->metric[metric][(size_t)config * res->S + s];
        if (isnan(v)) continue;
        sum += v;
        sum2 += v * v;
        n++;
    }
    mean_and_std(sum, sum2, n, mean, std);
}
