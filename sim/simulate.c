/* kvtrace simulate: traces in, metrics out.  The main thread reads one layer
 * of one sequence at a time; worker threads replay its cache units; results
 * land in fixed slots, so any thread count gives identical numbers. */
#include "simulate.h"

#include <cblas.h>
#include <hdf5.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "../trace/trace_file.h"
#include "../trace/h5util.h"
#include "../trace/trace_layer.h"
#include "../util/sha256.h"
#include "../util/attention.h"
#include "../util/dist.h"
#include "../util/memory.h"
#include "../util/progress.h"
#include "replay.h"

int parse_budget(const char *text, BudgetSpec *b, KvError *err)
{
    memset(b, 0, sizeof *b);
    snprintf(b->text, sizeof b->text, "%s", text);
    char *end;
    double v = strtod(text, &end);
    if (end == text || !isfinite(v)) return kv_fail(err, "budget '%s' is not a number, a fraction or a percentage", text);
    if (*end == '%' && end[1] == 0) {
        v /= 100.0;
    } else if (*end != 0) {
        return kv_fail(err, "budget '%s' is not a number, a fraction or a percentage", text);
    } else if (v == floor(v) && !strchr(text, '.')) {
        if (v < 1 || v > 1e9) return kv_fail(err, "budget %s must be at least 1 token", text);
        b->tokens = (int)v;
        return 0;
    }
    if (!(v > 0) || v > 1) return kv_fail(err, "budget fraction '%s' must be in (0, 1]", text);
    b->fraction = v;
    return 0;
}

int resolve_budget(const BudgetSpec *b, int n)
{
    if (b->tokens > 0) return b->tokens;
    int tokens = (int)floor(b->fraction * n + 0.5);
    return tokens < 1 ? 1 : tokens;
}

/* A retention map is a byte per (step, token) per configuration. */
#define RETENTION_MAX_BYTES ((size_t)4 << 30)

/* ---------------------------------------------------------------- inputs */

typedef struct {
    TraceReader *readers;
    int n_readers;
    int *seq_reader, *seq_index; /* [S] where each sequence lives */
    TraceSeqInfo *seq_info;      /* [S] */
    int n_seq;
    int *layers, n_layers;       /* selected layers */
    int *units, n_units;         /* selected units */
    uint8_t *kv_wanted;          /* [kv heads] the layers' heads to load (NULL: all of them) */
    int n_unit_heads;            /* query heads per unit */
    ReplayConfig *configs;       /* [C][S]: budgets resolve per sequence */
    int *pair_policy, *pair_alloc, n_pairs; /* the (policy, allocation) pairs that make sense */
    int n_configs;               /* pairs x budgets, in that order */
    const AllocSpec **alloc;     /* [C] */
    int *layer_budget;           /* [C][S][L] each layer's budget (pyramid; else B) */
    int n_model_layers;
} Plan;

static int open_traces(const SimOptions *opt, Plan *plan, KvError *err)
{
    plan->readers = calloc((size_t)opt->n_traces, sizeof *plan->readers);
    if (!plan->readers) return kv_fail(err, "out of memory");
    for (int i = 0; i < opt->n_traces; i++) {
        if (trace_open(&plan->readers[i], opt->traces[i], err)) return -1;
        plan->n_readers++;
        const TraceMeta *a = &plan->readers[0].meta, *b = &plan->readers[i].meta;
        if (a->n_layers != b->n_layers || a->n_heads != b->n_heads || a->n_kv_heads != b->n_kv_heads ||
            a->head_dim != b->head_dim || strcmp(a->model_digest, b->model_digest))
            return kv_fail(err, "%s: mismatched traces: recorded from a different model than %s (shape or sha256 "
                           "differ)", opt->traces[i], opt->traces[0]);
    }
    return 0;
}

static int collect_sequences(const SimOptions *opt, Plan *plan, int need_values, KvError *err)
{
    int total = 0;
    for (int i = 0; i < plan->n_readers; i++) total += plan->readers[i].n_sequences;
    if (total == 0) return kv_fail(err, "%s: the trace holds no sequences", opt->traces[0]);
    plan->seq_reader = malloc((size_t)total * sizeof(int));
    plan->seq_index = malloc((size_t)total * sizeof(int));
    plan->seq_info = calloc((size_t)total, sizeof(TraceSeqInfo));
    if (!plan->seq_reader || !plan->seq_index || !plan->seq_info) return kv_fail(err, "out of memory");
    for (int i = 0; i < plan->n_readers; i++)
        for (int s = 0; s < plan->readers[i].n_sequences; s++) {
            TraceSeqInfo *info = &plan->seq_info[plan->n_seq];
            const char *path = opt->traces[i];
            if (trace_sequence_info(&plan->readers[i], s, info, err)) return -1;
            if (!info->complete && !opt->allow_incomplete)
                return kv_fail(err, "%s: sequence %d is incomplete (its recording was interrupted); use "
                               "--allow-incomplete to replay what was recorded", path, s);
            if (info->n_tokens < 2) return kv_fail(err, "%s: sequence %d has fewer than 2 tokens", path, s);
            if (opt->prefill && (info->n_prompt < 1 || info->n_prompt >= info->n_tokens))
                return kv_fail(err, "%s: sequence %d has %d prompt and %d generated tokens; prefill mode needs both",
                               path, s, info->n_prompt, info->n_tokens - info->n_prompt);
            if (need_values && !info->has_values)
                return kv_fail(err, "%s: sequence %d stores no values (v); output error and vatp need them "
                               "(use --error-stride 0 and leave out vatp)", path, s);
            plan->seq_reader[plan->n_seq] = i;
            plan->seq_index[plan->n_seq++] = s;
        }
    return 0;
}

static int select_list(const int *given, int n_given, int limit, const char *what, int **out, int *n, KvError *err)
{
    *out = malloc((size_t)(n_given ? n_given : limit) * sizeof(int));
    if (!*out) return kv_fail(err, "out of memory");
    *n = given ? n_given : limit;
    for (int i = 0; i < *n; i++) {
        (*out)[i] = given ? given[i] : i;
        if ((*out)[i] < 0 || (*out)[i] >= limit) return kv_fail(err, "%s %d does not exist (0..%d)", what, (*out)[i], limit - 1);
    }
    return 0;
}

/* One configuration's parameters, fitted to its smallest budget over the
 * sequences (policy_fit_budget), so that the configuration has one set of
 * parameters however long its sequences are; the change is said once. */
static PolicySpec fitted_spec(const SimOptions *opt, const Plan *plan, int p, int b, int say)
{
    PolicySpec spec = opt->policies[p];
    int smallest = -1, budget = 0;
    for (int s = 0; s < plan->n_seq; s++) {
        int n = opt->prefill ? plan->seq_info[s].n_prompt : plan->seq_info[s].n_tokens;
        int here = resolve_budget(&opt->budgets[b], n);
        if (here <= plan->seq_info[s].n_tokens && (smallest < 0 || here < budget)) smallest = s, budget = here;
    }
    char note[512];
    if (smallest >= 0 && policy_fit_budget(&spec, budget, plan->seq_info[smallest].n_tokens, note, sizeof note) && say &&
        dist_rank() == 0) /* every rank plans; one says so */
        fprintf(stderr, "kvtrace: %s\n", note);
    return spec;
}

static const AllocSpec UNIFORM = {.kind = ALLOC_UNIFORM, .text = "uniform"};

static int n_allocations(const SimOptions *opt) { return opt->n_allocations > 0 ? opt->n_allocations : 1; }

static const AllocSpec *allocation_of(const SimOptions *opt, int a)
{
    return opt->n_allocations > 0 ? &opt->allocations[a] : &UNIFORM;
}

/* Each layer's budget of one configuration and sequence; refuses a layer
 * whose budget leaves the policy no room to evict. */
static int plan_layer_budgets(const Plan *plan, const AllocSpec *alloc, const ReplayConfig *rc, int T, int *out,
                              KvError *err)
{
    int L = plan->n_model_layers, window = 0;
    Policy probe;
    if (policy_create(&probe, &rc->spec, rc->budget, T, 0, 0, err)) return -1;
    window = probe.recent;
    policy_destroy(&probe);
    for (int l = 0; l < L; l++) {
        out[l] = allocation_layer_budget(alloc, L, l, rc->budget, window);
        if (out[l] < 1 || (out[l] != rc->budget && policy_create(&probe, &rc->spec, out[l], T, l, 0, err)))
            return out[l] < 1 ? kv_fail(err, "allocation %s gives layer %d a budget of %d tokens", alloc->text, l,
                                        out[l])
                              : kv_wrap(err, "allocation %s, layer %d of budget %d tokens", alloc->text, l, out[l]);
        if (out[l] != rc->budget) policy_destroy(&probe);
    }
    return 0;
}

/* The (policy, allocation) pairs that make sense: an allocation a policy
 * cannot take is left out with a note, or refused when the policy could take
 * none of those given. */
static int plan_pairs(const SimOptions *opt, Plan *plan, KvError *err)
{
    int A = n_allocations(opt);
    plan->pair_policy = malloc((size_t)opt->n_policies * A * sizeof *plan->pair_policy);
    plan->pair_alloc = malloc((size_t)opt->n_policies * A * sizeof *plan->pair_alloc);
    if (!plan->pair_policy || !plan->pair_alloc) return kv_fail(err, "out of memory");
    for (int p = 0; p < opt->n_policies; p++) {
        int taken = 0;
        for (int a = 0; a < A; a++) {
            KvError why;
            if (allocation_check(allocation_of(opt, a), &opt->policies[p], &why)) {
                if (A == 1) return kv_fail(err, "%s", why.msg);
                if (dist_rank() == 0) fprintf(stderr, "kvtrace: leaving out %s with %s: %s\n", opt->policies[p].name,
                        allocation_of(opt, a)->text, why.msg);
                continue;
            }
            plan->pair_policy[plan->n_pairs] = p;
            plan->pair_alloc[plan->n_pairs++] = a;
            taken++;
        }
        if (!taken) return kv_fail(err, "policy %s takes none of the allocations given", opt->policies[p].name);
    }
    return 0;
}

/* pyramid gives the deepest layers less than B: a default that fits B may
 * not fit there.  The configuration's parameters are fitted again to the
 * smallest layer budget of any sequence (one set of parameters per
 * configuration, as fitted_spec), said once; what still cannot fit is
 * refused by plan_layer_budgets. */
static void fit_to_layers(const SimOptions *opt, const Plan *plan, const AllocSpec *alloc, int b, PolicySpec *spec)
{
    int smallest = -1, capacity = 0;
    for (int s = 0; s < plan->n_seq; s++) {
        int T = plan->seq_info[s].n_tokens, window = 0;
        int budget = resolve_budget(&opt->budgets[b], opt->prefill ? plan->seq_info[s].n_prompt : T);
        Policy probe;
        KvError ignored;
        if (budget > T) continue;
        if (policy_create(&probe, spec, budget, T, 0, 0, &ignored) == 0) {
            window = probe.recent;
            policy_destroy(&probe);
        }
        for (int l = 0; l < plan->n_model_layers; l++) {
            int here = allocation_layer_budget(alloc, plan->n_model_layers, l, budget, window);
            if (here >= 1 && (smallest < 0 || here < smallest)) smallest = here, capacity = T;
        }
    }
    char note[512];
    if (smallest > 0 && policy_fit_budget(spec, smallest, capacity, note, sizeof note) && dist_rank() == 0)
        fprintf(stderr, "kvtrace: %s: %s\n", alloc->text, note);
}

/* Resolves every budget per sequence and checks each configuration once. */
static int plan_configs(const SimOptions *opt, Plan *plan, KvError *err)
{
    int L = plan->n_model_layers;
    if (plan_pairs(opt, plan, err)) return -1;
    plan->n_configs = plan->n_pairs * opt->n_budgets;
    plan->configs = calloc((size_t)plan->n_configs * plan->n_seq, sizeof *plan->configs);
    plan->alloc = calloc((size_t)plan->n_configs, sizeof *plan->alloc);
    plan->layer_budget = malloc((size_t)plan->n_configs * plan->n_seq * L * sizeof *plan->layer_budget);
    if (!plan->configs || !plan->alloc || !plan->layer_budget) return kv_fail(err, "out of memory");
    for (int pair = 0; pair < plan->n_pairs; pair++)
        for (int b = 0; b < opt->n_budgets; b++) {
            int p = plan->pair_policy[pair], c = pair * opt->n_budgets + b;
            PolicySpec spec = fitted_spec(opt, plan, p, b, pair == 0 || plan->pair_policy[pair - 1] != p);
            plan->alloc[c] = allocation_of(opt, plan->pair_alloc[pair]);
            if (plan->alloc[c]->kind == ALLOC_PYRAMID) fit_to_layers(opt, plan, plan->alloc[c], b, &spec);
            for (int s = 0; s < plan->n_seq; s++) {
                const TraceSeqInfo *info = &plan->seq_info[s];
                int T = info->n_tokens;
                int budget = resolve_budget(&opt->budgets[b], opt->prefill ? info->n_prompt : T);
                const char *path = opt->traces[plan->seq_reader[s]];
                if (budget > T)
                    return kv_fail(err, "%s: budget %s = %d tokens is larger than sequence %d (%d tokens)", path,
                                   opt->budgets[b].text, budget, plan->seq_index[s], T);
                ReplayConfig *rc = &plan->configs[(size_t)c * plan->n_seq + s];
                rc->spec = spec;
                rc->budget = budget;
                rc->keep_min = (int)floor(plan->alloc[c]->floor * budget);
                /* refuses configurations with no room to evict */
                int *layer_budget = plan->layer_budget + ((size_t)c * plan->n_seq + s) * L;
                if (plan_layer_budgets(plan, plan->alloc[c], rc, T, layer_budget, err))
                    return kv_wrap(err, "%s sequence %d", path, plan->seq_index[s]);
            }
        }
    return 0;
}

/* Policies whose cost grows faster than T·B (optimal: ≈ T³ per unit) are
 * announced with their estimated time before a long run starts, so the user
 * can stop it or drop the policy instead of waiting blind. */
#define ANNOUNCE_SECONDS 10.0

static void announce_costly(const SimOptions *opt, const Plan *plan)
{
    int units = (opt->layer_granularity ? 1 : plan->n_units) * plan->n_layers;
    int threads = opt->threads > 1 ? opt->threads : 1;
    for (int p = 0; p < opt->n_policies; p++) {
        const PolicyOps *ops = policy_lookup(opt->policies[p].name);
        if (!ops || !ops->estimate_seconds) continue;
        double seconds = 0;
        int longest = 0;
        for (int c = 0; c < plan->n_configs; c++) {
            if (plan->pair_policy[c / opt->n_budgets] != p) continue;
            for (int s = 0; s < plan->n_seq; s++) {
                int T = plan->seq_info[s].n_tokens;
                seconds += units * ops->estimate_seconds(T, plan->configs[(size_t)c * plan->n_seq + s].budget);
                if (T > longest) longest = T;
            }
        }
        if (seconds < ANNOUNCE_SECONDS || dist_rank() != 0) continue;
        char cpu[32], wall[32];
        format_seconds(cpu, sizeof cpu, seconds);
        format_seconds(wall, sizeof wall, seconds / threads);
        fprintf(stderr, "kvtrace: %s will take about %s of CPU time (about %s on %d threads) for %d cache units "
                "of up to %d tokens at %d budgets: its cost grows as T^3 per unit\n", ops->name, cpu, wall, threads,
                units * plan->n_seq, longest, opt->n_budgets);
    }
}

/* --heads: only the selected kv heads (and their query heads) are loaded. */
/* Policies whose memory grows faster than T·B (optimal: about 4 T^2 bytes
 * per unit) must fit, on every thread at once, in the memory the machine
 * has available: a run that would not is refused before it starts, rather
 * than killed by the kernel hours in (Linux grants the memory first and
 * finds it missing later). */
static int check_costly_memory(const SimOptions *opt, const Plan *plan, KvError *err)
{
    double available;
    if (memory_available(&available)) return 0; /* no /proc: nothing to check against */
    int units = (opt->layer_granularity ? 1 : plan->n_units) * plan->n_layers;
    int at_once = opt->threads > 1 ? (opt->threads < units ? opt->threads : units) : 1;
    for (int p = 0; p < opt->n_policies; p++) {
        const PolicyOps *ops = policy_lookup(opt->policies[p].name);
        if (!ops || !ops->estimate_bytes) continue;
        size_t most = 0;
        int most_T = 0, most_B = 0;
        for (int c = 0; c < plan->n_configs; c++) {
            if (plan->pair_policy[c / opt->n_budgets] != p) continue;
            for (int s = 0; s < plan->n_seq; s++) {
                int T = plan->seq_info[s].n_tokens, B = plan->configs[(size_t)c * plan->n_seq + s].budget;
                size_t bytes = ops->estimate_bytes(T, B, opt->prefill ? plan->seq_info[s].n_prompt : 0);
                if (bytes > most) most = bytes, most_T = T, most_B = B;
            }
        }
        double need = (double)most * at_once;
        if (need > available)
            return kv_fail(err, "%s needs about %.1f GB at once (%d thread(s) x %.1f GB for a %d-token unit at budget %d), "
                           "more than the %.1f GB this machine has available: give fewer --threads or shorter "
                           "sequences, or leave %s out", ops->name, need / 1e9, at_once, (double)most / 1e9, most_T,
                           most_B, available / 1e9, ops->name);
    }
    return 0;
}

static int plan_kv_wanted(const SimOptions *opt, Plan *plan, int n_kv_heads, KvError *err)
{
    if (opt->layer_granularity || plan->n_units == n_kv_heads) return 0;
    plan->kv_wanted = calloc((size_t)n_kv_heads, 1);
    if (!plan->kv_wanted) return kv_fail(err, "out of memory");
    for (int u = 0; u < plan->n_units; u++) plan->kv_wanted[plan->units[u]] = 1;
    return 0;
}

static void plan_free(Plan *plan)
{
    for (int i = 0; i < plan->n_readers; i++) trace_close(&plan->readers[i]);
    free(plan->readers); free(plan->seq_reader); free(plan->seq_index); free(plan->seq_info);
    free(plan->layers); free(plan->units); free(plan->kv_wanted); free(plan->configs);
    free(plan->alloc); free(plan->layer_budget); free(plan->pair_policy); free(plan->pair_alloc);
}

/* ---------------------------------------------------------------- one layer */

/* ---------------------------------------------------------------- workers */

typedef struct {
    const TraceReader *reader;
    int seq, layer;
    const int *heads;         /* unit head -> query head */
    pthread_mutex_t *hdf5;    /* the HDF5 library is not thread-safe */
} StoredAttention;

static int read_stored(void *ctx, int head, int t0, int n, float *out, long ld, KvError *err)
{
    StoredAttention *s = ctx;
    pthread_mutex_lock(s->hdf5);
    int rc = trace_read_attention_rows(s->reader, s->seq, s->layer, s->heads[head], t0, n, out, ld, err);
    pthread_mutex_unlock(s->hdf5);
    return rc;
}

typedef struct {
    UnitData data;
    const float **q, **k, **v;
    int *heads;
    StoredAttention stored;
    ReplayResult *results;   /* [C] */
    double seconds, attention_seconds;
    int failed;
    KvError err;
} UnitJob;

typedef struct {
    UnitJob *jobs;
    int n_jobs, next;
    pthread_mutex_t lock;
    const ReplayConfig *configs; /* this layer's configs each unit replays alone, [n_configs] */
    const int *config_index;     /* [n_configs] their index among all configs (results) */
    int n_configs;
    ReplayOptions ropt;
    Progress *progress;
    long *done, total;
} Pool;

static void *worker(void *arg)
{
    Pool *pool = arg;
    h5_quiet(); /* HDF5's error stack is per thread: silence it in every thread that reads */
    ReplayResult *res = malloc((size_t)(pool->n_configs ? pool->n_configs : 1) * sizeof *res);
    for (;;) {
        pthread_mutex_lock(&pool->lock);
        int j = pool->next < pool->n_jobs ? pool->next++ : -1;
        pthread_mutex_unlock(&pool->lock);
        if (j < 0) break;
        UnitJob *job = &pool->jobs[j];
        if (!res) { job->failed = 1; kv_fail(&job->err, "out of memory"); continue; }
        for (int c = 0; c < pool->n_configs; c++) res[c] = job->results[pool->config_index[c]];
        double start = replay_thread_seconds();
        job->failed = replay_unit(&job->data, pool->configs, pool->n_configs, &pool->ropt, res,
                                  &job->attention_seconds, &job->err) != 0;
        job->seconds = replay_thread_seconds() - start;
        for (int c = 0; c < pool->n_configs; c++) job->results[pool->config_index[c]] = res[c];
        pthread_mutex_lock(&pool->lock);
        progress_update(pool->progress, ++*pool->done, pool->total, "units");
        pthread_mutex_unlock(&pool->lock);
    }
    free(res);
    return NULL;
}

static int run_pool(Pool *pool, int threads, KvError *err)
{
    pthread_t tid[64];
    int n = threads < 1 ? 1 : threads > 64 ? 64 : threads, started = 0;
    if (n > pool->n_jobs) n = pool->n_jobs;
    pthread_mutex_init(&pool->lock, NULL);
    for (; started < n - 1; started++)
        if (pthread_create(&tid[started], NULL, worker, pool)) break;
    worker(pool); /* the calling thread works too */
    for (int i = 0; i < started; i++) pthread_join(tid[i], NULL);
    pthread_mutex_destroy(&pool->lock);
    for (int j = 0; j < pool->n_jobs; j++)
        if (pool->jobs[j].failed) {
            *err = pool->jobs[j].err;
            return -1;
        }
    return 0;
}

/* ---------------------------------------------------------------- the run */

typedef struct {
    double *curve_sum; /* [C][S][maxT] */
    int *curve_count;
} Accumulators;

/* Whether this layer's attention must be read as stored (SIM_ATTENTION_AUTO:
 * unless recomputing reproduces the first rows of every head, simulate.h). */
static int replay_stored(const SimOptions *opt, const Plan *plan, const LayerData *ld, int s, int layer, int *stored,
                         KvError *err)
{
    const TraceSeqInfo *info = &plan->seq_info[s];
    *stored = info->has_attention && opt->attention_source != SIM_ATTENTION_RECOMPUTE;
    if (!*stored || opt->attention_source == SIM_ATTENTION_STORED) return 0;
    int n = ld->T < 64 ? ld->T : 64, group = ld->H / ld->KV, rc = 0, agree = 1;
    float *read = malloc((size_t)n * n * sizeof(float)), *computed = malloc((size_t)n * n * sizeof(float));
    if (!read || !computed) rc = kv_fail(err, "out of memory");
    for (int h = 0; h < ld->H && rc == 0 && agree; h++) {
        int bad_row;
        const float *q = ld->q + (size_t)h * ld->T * ld->d, *k = ld->k + (size_t)(h / group) * ld->T * ld->d;
        rc = trace_read_attention_rows(&plan->readers[plan->seq_reader[s]], plan->seq_index[s], layer, h, 0, n, read,
                                       n, err);
        if (rc == 0 && attention_block(q, k, ld->d, 0, n, computed, n, &bad_row)) {
            agree = 0; /* q·k overflows: only the stored rows can be replayed */
            break;
        }
        for (int r = 0; r < n && rc == 0 && agree; r++)
            for (int i = 0; i <= r; i++) agree &= fabsf(read[(size_t)r * n + i] - computed[(size_t)r * n + i]) <= 1e-5f;
    }
    free(read);
    free(computed);
    if (rc == 0 && agree) *stored = 0;
    return rc;
}

static int layer_jobs(const SimOptions *opt, const Plan *plan, LayerData *ld, int s, int layer,
                      pthread_mutex_t *hdf5, UnitJob **out, int *n_out, KvError *err)
{
    int stored;
    if (replay_stored(opt, plan, ld, s, layer, &stored, err)) return -1;
    int group = ld->H / ld->KV, n_units = opt->layer_granularity ? 1 : plan->n_units;
    int heads_per = opt->layer_granularity ? ld->H : group;
    size_t T = (size_t)ld->T;
    UnitJob *jobs = calloc((size_t)n_units, sizeof *jobs);
    ld->unit_k_norm = malloc((size_t)n_units * T * sizeof(float));
    ld->unit_v_l1 = ld->v_l1 ? malloc((size_t)n_units * T * sizeof(float)) : NULL;
    if (!jobs || !ld->unit_k_norm || (ld->v_l1 && !ld->unit_v_l1)) { free(jobs); return kv_fail(err, "out of memory"); }
    *out = jobs;
    *n_out = n_units;
    for (int u = 0; u < n_units; u++) {
        UnitJob *job = &jobs[u];
        int g = opt->layer_granularity ? 0 : plan->units[u];
        job->heads = malloc((size_t)heads_per * sizeof(int));
        job->q = malloc((size_t)heads_per * sizeof(float *));
        job->k = malloc((size_t)heads_per * sizeof(float *));
        job->v = malloc((size_t)heads_per * sizeof(float *));
        job->results = calloc((size_t)plan->n_configs, sizeof(ReplayResult));
        if (!job->heads || !job->q || !job->k || !job->v || !job->results) return kv_fail(err, "out of memory");
        for (int i = 0; i < heads_per; i++) {
            int h = opt->layer_granularity ? i : g * group + i, kvh = h / group;
            job->heads[i] = h;
            job->q[i] = ld->q + (size_t)h * T * ld->d;
            job->k[i] = ld->k + (size_t)kvh * T * ld->d;
            job->v[i] = ld->v ? ld->v + (size_t)kvh * T * ld->d : NULL;
        }
        /* features: the unit's kv head, or the mean over a layer's kv heads */
        float *kn = ld->unit_k_norm + (size_t)u * T, *vn = ld->unit_v_l1 ? ld->unit_v_l1 + (size_t)u * T : NULL;
        int first = opt->layer_granularity ? 0 : g, count = opt->layer_granularity ? ld->KV : 1;
        for (size_t t = 0; t < T; t++) {
            double a = 0, b = 0;
            for (int x = first; x < first + count; x++) {
                a += ld->k_norm[(size_t)x * T + t];
                if (vn) b += ld->v_l1[(size_t)x * T + t];
            }
            kn[t] = (float)(a / count);
            if (vn) vn[t] = (float)(b / count);
        }
        job->stored = (StoredAttention){&plan->readers[plan->seq_reader[s]], plan->seq_index[s], layer, job->heads, hdf5};
        job->data = (UnitData){.n_heads = heads_per, .T = ld->T, .d = ld->d, .layer = layer, .unit = g,
                               .q = job->q, .k = job->k, .v = ld->v ? job->v : NULL, .k_norm = kn, .v_l1 = vn,
                               .read_attention = stored ? read_stored : NULL, .read_ctx = &job->stored};
        for (int c = 0; c < plan->n_configs; c++)
            if (replay_result_alloc(&job->results[c], heads_per, ld->T,
                                    s == 0 && layer == opt->retention_layer && g == opt->retention_unit))
                return kv_fail(err, "out of memory");
    }
    return 0;
}

static void free_jobs(UnitJob *jobs, int n, int n_configs)
{
    for (int u = 0; jobs && u < n; u++) {
        for (int c = 0; jobs[u].results && c < n_configs; c++) replay_result_free(&jobs[u].results[c]);
        free(jobs[u].results); free(jobs[u].heads); free(jobs[u].q); free(jobs[u].k); free(jobs[u].v);
    }
    free(jobs);
}

static double safe_div(double a, long n) { return n > 0 ? a / (double)n : NAN; }

/* Folds one layer's unit results into the result arrays, in unit order. */
static void reduce_layer(const Plan *plan, SimResults *res, Accumulators *acc, const UnitJob *jobs, int n_jobs,
                         int s, int layer)
{
    int L = res->n_layers, H = res->n_heads, S = res->n_sequences, maxT = res->max_T, T = plan->seq_info[s].n_tokens;
    for (int u = 0; u < n_jobs; u++) {
        res->cpu_attention += jobs[u].attention_seconds;
        res->cpu_replay += jobs[u].seconds - jobs[u].attention_seconds;
    }
    for (int u = 0; u < n_jobs; u++)
        for (int c = 0; c < plan->n_configs; c++) {
            const ReplayResult *r = &jobs[u].results[c];
            for (int i = 0; i < jobs[u].data.n_heads; i++) {
                size_t at = (((size_t)c * S + s) * L + layer) * H + jobs[u].heads[i];
                res->mass[at] = safe_div(r->mass[i], r->rows);
                res->kl[at] = safe_div(r->kl[i], r->rows);
                res->error[at] = safe_div(r->error[i], r->sampled_rows);
                res->overlap[at] = safe_div(r->overlap[i], r->sampled_rows);
            }
            for (int t = 0; t < T; t++) {
                res->evict_age[(size_t)c * maxT + t] += r->evict_age[t];
                if (!isnan(r->curve[t])) {
                    acc->curve_sum[((size_t)c * S + s) * maxT + t] += r->curve[t];
                    acc->curve_count[((size_t)c * S + s) * maxT + t]++;
                }
            }
            int budget = plan->configs[(size_t)c * plan->n_seq + s].budget;
            for (int t = 0; t < T; t++) res->entries += t + 1 < budget ? t + 1 : budget;
            if (r->retention) memcpy(res->retention + (size_t)c * T * T, r->retention, (size_t)T * T);
        }
}

static int alloc_results(const SimOptions *opt, const Plan *plan, SimResults *res, Accumulators *acc, KvError *err)
{
    const TraceMeta *m = &plan->readers[0].meta;
    int C = plan->n_configs, S = plan->n_seq;
    res->n_configs = C;
    res->n_sequences = S;
    res->n_layers = m->n_layers;
    res->n_heads = m->n_heads;
    res->n_units = opt->layer_granularity ? 1 : m->n_kv_heads;
    for (int s = 0; s < S; s++)
        if (plan->seq_info[s].n_tokens > res->max_T) res->max_T = plan->seq_info[s].n_tokens;
    size_t cells = (size_t)C * S * m->n_layers * m->n_heads, curve = (size_t)C * S * res->max_T;
    res->config_policy = calloc((size_t)C, sizeof(char *));
    res->config_params = calloc((size_t)C, sizeof(char *));
    res->config_spec = calloc((size_t)C, sizeof *res->config_spec);
    res->config_alloc = calloc((size_t)C, sizeof *res->config_alloc);
    res->config_allocation = calloc((size_t)C, sizeof *res->config_allocation);
    res->config_budget = calloc((size_t)C, sizeof(char *));
    res->config_fraction = malloc((size_t)C * sizeof(double));
    res->budget_tokens = malloc((size_t)C * S * sizeof(int));
    res->seq_length = malloc((size_t)S * sizeof(int));
    res->seq_prompt = malloc((size_t)S * sizeof(int));
    res->seq_source = calloc((size_t)S, sizeof(char *));
    res->mass = malloc(cells * sizeof(double));
    res->kl = malloc(cells * sizeof(double));
    res->error = malloc(cells * sizeof(double));
    res->overlap = malloc(cells * sizeof(double));
    res->evict_age = calloc((size_t)C * res->max_T, sizeof(long));
    res->curve = malloc(curve * sizeof(float));
    acc->curve_sum = calloc(curve, sizeof(double));
    acc->curve_count = calloc(curve, sizeof(int));
    if (opt->retention_layer >= 0) {
        res->retention_T = plan->seq_info[0].n_tokens;
        size_t bytes = (size_t)C * res->retention_T * res->retention_T;
        if (bytes > RETENTION_MAX_BYTES) /* held twice while the unit replays, then written out */
            return kv_fail(err, "--retention: %d configurations x %d x %d steps and tokens are %.1f GiB of maps "
                           "(at most %d GiB): keep fewer policies or budgets, or trim the trace", C,
                           res->retention_T, res->retention_T, (double)bytes / (1 << 30), (int)(RETENTION_MAX_BYTES >> 30));
        res->retention = calloc(bytes, 1);
    }
    if (!res->config_policy || !res->config_params || !res->config_spec || !res->config_alloc || !res->config_allocation || !res->config_budget || !res->config_fraction ||
        !res->budget_tokens || !res->seq_length || !res->seq_prompt || !res->seq_source || !res->mass || !res->kl ||
        !res->error || !res->overlap || !res->evict_age || !res->curve || !acc->curve_sum || !acc->curve_count ||
        (opt->retention_layer >= 0 && !res->retention))
        return kv_fail(err, "out of memory for the results");
    for (size_t i = 0; i < cells; i++) res->mass[i] = res->kl[i] = res->error[i] = res->overlap[i] = NAN;
    for (int c = 0; c < C; c++) {
        const BudgetSpec *b = &opt->budgets[c % opt->n_budgets];
        res->config_policy[c] = opt->policies[plan->pair_policy[c / opt->n_budgets]].name;
        res->config_alloc[c] = *plan->alloc[c];
        res->config_allocation[c] = res->config_alloc[c].text;
        res->config_spec[c] = plan->configs[(size_t)c * S].spec;
        res->config_params[c] = res->config_spec[c].canonical;
        res->config_budget[c] = b->text;
        res->config_fraction[c] = b->fraction > 0 ? b->fraction : NAN;
        for (int s = 0; s < S; s++) res->budget_tokens[(size_t)c * S + s] = plan->configs[(size_t)c * S + s].budget;
    }
    for (int s = 0; s < S; s++) {
        char buf[600];
        const char *path = opt->traces[plan->seq_reader[s]], *base = strrchr(path, '/');
        snprintf(buf, sizeof buf, "%s#%d", base ? base + 1 : path, plan->seq_index[s]);
        res->seq_source[s] = strdup(buf);
        res->seq_length[s] = plan->seq_info[s].n_tokens;
        res->seq_prompt[s] = plan->seq_info[s].n_prompt;
        if (!res->seq_source[s]) return kv_fail(err, "out of memory");
    }
    return 0;
}

/* Starts loading layer `layer` of planned sequence s. */
static void load_start(LayerLoad *l, const Plan *plan, int s, int layer, int values, int background)
{
    trace_layer_load_start(l, &plan->readers[plan->seq_reader[s]], plan->seq_index[s], layer, &plan->seq_info[s],
                           values, plan->kv_wanted, background);
}

/* This layer's configurations: budgets per layer, split into those each
 * unit replays alone (uniform, pyramid: first) and those whose units replay
 * together (adaptive: from *n_alone on); index[i] is each one's config. */
static void layer_configs(const Plan *plan, int s, int layer, ReplayConfig *cfg, int *index, int *n_alone)
{
    int C = plan->n_configs, L = plan->n_model_layers, n = 0;
    for (int pass = 0; pass < 2; pass++) {
        if (pass == 1) *n_alone = n;
        for (int c = 0; c < C; c++) {
            if ((plan->alloc[c]->kind == ALLOC_ADAPTIVE) != pass) continue;
            cfg[n] = plan->configs[(size_t)c * plan->n_seq + s];
            cfg[n].report_budget = cfg[n].budget;
            cfg[n].budget = plan->layer_budget[((size_t)c * plan->n_seq + s) * L + layer];
            index[n++] = c;
        }
    }
}

/* The adaptive configurations: the layer's units replayed together. */
static int replay_together(UnitJob *jobs, int n_jobs, const ReplayConfig *cfg, const int *index, int n,
                           const ReplayOptions *ropt, KvError *err)
{
    UnitData *units = malloc((size_t)n_jobs * sizeof *units);
    ReplayResult **out = calloc((size_t)n_jobs, sizeof *out);
    int rc = units && out ? 0 : kv_fail(err, "out of memory");
    for (int u = 0; u < n_jobs && rc == 0; u++) {
        units[u] = jobs[u].data;
        if (!(out[u] = malloc((size_t)n * sizeof **out))) rc = kv_fail(err, "out of memory");
        for (int i = 0; i < n && rc == 0; i++) out[u][i] = jobs[u].results[index[i]];
    }
    double start = replay_thread_seconds();
    if (rc == 0) rc = replay_units_adaptive(units, n_jobs, cfg, n, ropt, out, err);
    if (n_jobs > 0) jobs[0].seconds += replay_thread_seconds() - start;
    for (int u = 0; u < n_jobs && rc == 0; u++)
        for (int i = 0; i < n; i++) jobs[u].results[index[i]] = out[u][i];
    for (int u = 0; out && u < n_jobs; u++) free(out[u]);
    free(out);
    free(units);
    return rc;
}

/* Replays units first..first+count-1 (count < 0: all) of a loaded layer;
 * *jobs holds every unit of the layer, the replayed ones with their results.
 * Adaptive configurations replay the units together, so a job that holds
 * only some of a layer's units must have none (run_distributed). */
static int replay_units(const SimOptions *opt, const Plan *plan, int error_stride, LayerData *ld, int s, int layer,
                        int first, int count, pthread_mutex_t *hdf5, Progress *progress, long *done, long total,
                        UnitJob **jobs, int *n_jobs, KvError *err)
{
    ReplayConfig *cfg = malloc((size_t)plan->n_configs * sizeof *cfg);
    int *index = malloc((size_t)plan->n_configs * sizeof *index), n_alone = 0;
    int rc = cfg && index ? layer_jobs(opt, plan, ld, s, layer, hdf5, jobs, n_jobs, err) : kv_fail(err, "out of memory");
    if (rc == 0) {
        int n = count < 0 ? *n_jobs : count;
        layer_configs(plan, s, layer, cfg, index, &n_alone);
        Pool pool = {.jobs = *jobs + first, .n_jobs = n, .configs = cfg, .config_index = index, .n_configs = n_alone,
                     .progress = progress, .done = done, .total = total,
                     .ropt = {.n_prompt = opt->prefill ? plan->seq_info[s].n_prompt : 0, .error_stride = error_stride}};
        if (n_alone > 0) rc = run_pool(&pool, opt->threads, err);
        if (rc == 0 && n_alone < plan->n_configs)
            rc = replay_together(*jobs + first, n, cfg + n_alone, index + n_alone, plan->n_configs - n_alone,
                                 &pool.ropt, err);
    }
    free(cfg);
    free(index);
    return rc;
}

static int replay_layer(const SimOptions *opt, const Plan *plan, SimResults *res, Accumulators *acc, LayerData *ld,
                        int s, int layer, pthread_mutex_t *hdf5, Progress *progress, long *done, long total,
                        KvError *err)
{
    UnitJob *jobs = NULL;
    int n_jobs = 0, rc = replay_units(opt, plan, res->error_stride, ld, s, layer, 0, -1, hdf5, progress, done, total,
                                      &jobs, &n_jobs, err);
    if (rc == 0) reduce_layer(plan, res, acc, jobs, n_jobs, s, layer);
    free_jobs(jobs, n_jobs, plan->n_configs);
    return rc;
}

/* Every selected layer of every sequence in order; with more than one thread
 * (and a thread-safe HDF5) the next layer loads while this one replays. */
static int run_layers(const SimOptions *opt, const Plan *plan, SimResults *res, Accumulators *acc,
                      Progress *progress, long *done, long total, int values, KvError *err)
{
    pthread_mutex_t hdf5 = PTHREAD_MUTEX_INITIALIZER;
    int background = opt->threads > 1 && trace_layer_background_ok(), n = plan->n_seq * plan->n_layers, rc = 0;
    LayerLoad load[2];
    load_start(&load[0], plan, 0, plan->layers[0], values, 0);
    for (int i = 0; i < n; i++) {
        LayerLoad *cur = &load[i % 2], *next = &load[(i + 1) % 2];
        int s = i / plan->n_layers, layer = plan->layers[i % plan->n_layers], next_started = 0;
        rc = trace_layer_load_finish(cur, err);
        if (rc == 0 && i + 1 < n) {
            load_start(next, plan, (i + 1) / plan->n_layers, plan->layers[(i + 1) % plan->n_layers], values, background);
            next_started = 1;
        }
        if (rc == 0) rc = replay_layer(opt, plan, res, acc, &cur->ld, s, layer, &hdf5, progress, done, total, err);
        trace_layer_free(&cur->ld);
        if (rc) {
            KvError ignored;
            if (next_started) {
                trace_layer_load_finish(next, &ignored);
                trace_layer_free(&next->ld);
            }
            return kv_wrap(err, "%s sequence %d layer %d", opt->traces[plan->seq_reader[s]], plan->seq_index[s], layer);
        }
    }
    return 0;
}

/* ---------------------------------------------------------------- across ranks */

/* Under mpirun (util/dist.h) a job is one layer of one sequence, or one
 * cache unit of it when there are fewer layers than ranks; a job's partial
 * result is its units' ReplayResults, folded in by reduce_layer in job
 * order: the order of a single process, so the numbers are identical. */
typedef struct {
    const SimOptions *opt;
    const Plan *plan;
    SimResults *res;
    Accumulators *acc;
    int values;
    int units_per_job, jobs_per_layer;
    pthread_mutex_t hdf5;
} SimJobs;

typedef struct {
    int s, layer, first, count;
} SimJobPlace;

static SimJobPlace sim_job_place(const SimJobs *sj, int job)
{
    int per_seq = sj->plan->n_layers * sj->jobs_per_layer;
    return (SimJobPlace){job / per_seq, sj->plan->layers[job % per_seq / sj->jobs_per_layer],
                         job % sj->jobs_per_layer * sj->units_per_job, sj->units_per_job};
}

static void sim_job_describe(void *ctx, int job, char *out, size_t cap)
{
    const SimJobs *sj = ctx;
    SimJobPlace p = sim_job_place(sj, job);
    int n = snprintf(out, cap, "%s sequence %d layer %d", sj->opt->traces[sj->plan->seq_reader[p.s]],
                     sj->plan->seq_index[p.s], p.layer);
    if (sj->jobs_per_layer > 1 && n >= 0 && (size_t)n < cap)
        snprintf(out + n, cap - (size_t)n, " kv head %d", sj->plan->units[p.first]);
}

static void put_result(DistBuffer *out, const ReplayResult *r, int n_heads, int T)
{
    dist_put(out, r->mass, (size_t)n_heads * sizeof(double));
    dist_put(out, r->kl, (size_t)n_heads * sizeof(double));
    dist_put(out, r->error, (size_t)n_heads * sizeof(double));
    dist_put(out, r->overlap, (size_t)n_heads * sizeof(double));
    dist_put_int(out, r->rows);
    dist_put_int(out, r->sampled_rows);
    dist_put(out, r->curve, (size_t)T * sizeof(float));
    dist_put_int(out, r->retention != NULL);
    if (r->retention) dist_put(out, r->retention, (size_t)T * T);
}

static int get_result(DistReader *in, ReplayResult *r, int n_heads, int T)
{
    if (replay_result_alloc(r, n_heads, T, 0)) return -1;
    dist_get(in, r->mass, (size_t)n_heads * sizeof(double));
    dist_get(in, r->kl, (size_t)n_heads * sizeof(double));
    dist_get(in, r->error, (size_t)n_heads * sizeof(double));
    dist_get(in, r->overlap, (size_t)n_heads * sizeof(double));
    r->rows = dist_get_int(in);
    r->sampled_rows = dist_get_int(in);
    dist_get(in, r->curve, (size_t)T * sizeof(float));
    if (dist_get_int(in)) {
        if (!(r->retention = malloc((size_t)T * T))) return -1;
        dist_get(in, r->retention, (size_t)T * T);
    }
    return 0;
}

static int sim_job_run(void *ctx, int job, DistReader *input, DistBuffer *out, KvError *err)
{
    (void)input;
    SimJobs *sj = ctx;
    const Plan *plan = sj->plan;
    SimJobPlace p = sim_job_place(sj, job);
    LayerData ld = {0};
    UnitJob *jobs = NULL;
    Progress quiet = {0}; /* rank 0 shows the run's progress */
    long done = 0;
    int n_jobs = 0, rc = trace_load_layer(&plan->readers[plan->seq_reader[p.s]], plan->seq_index[p.s], p.layer,
                                          &plan->seq_info[p.s], sj->values, plan->kv_wanted, &ld, err);
    if (rc == 0)
        rc = replay_units(sj->opt, plan, sj->res->error_stride, &ld, p.s, p.layer, p.first, p.count, &sj->hdf5,
                          &quiet, &done, 0, &jobs, &n_jobs, err);
    for (int u = p.first; rc == 0 && u < p.first + p.count; u++) {
        dist_put(out, &jobs[u].attention_seconds, sizeof(double));
        dist_put(out, &jobs[u].seconds, sizeof(double));
        for (int c = 0; c < plan->n_configs; c++) put_result(out, &jobs[u].results[c], jobs[u].data.n_heads, ld.T);
    }
    /* eviction ages are integer counts: summed over the job's units here (in any
     * order, exactly), they travel once per configuration instead of once per unit */
    long *ages = rc == 0 ? calloc((size_t)ld.T, sizeof(long)) : NULL;
    if (rc == 0 && !ages) rc = kv_fail(err, "out of memory");
    for (int c = 0; rc == 0 && c < plan->n_configs; c++) {
        memset(ages, 0, (size_t)ld.T * sizeof(long));
        for (int u = p.first; u < p.first + p.count; u++)
            for (int t = 0; t < ld.T; t++) ages[t] += jobs[u].results[c].evict_age[t];
        dist_put(out, ages, (size_t)ld.T * sizeof(long));
    }
    free(ages);
    free_jobs(jobs, n_jobs, plan->n_configs);
    trace_layer_free(&ld);
    return rc;
}

/* The query heads of cache unit u, as layer_jobs assigns them. */
static int unit_heads(const SimJobs *sj, int u, int *heads)
{
    const TraceMeta *m = &sj->plan->readers[0].meta;
    int group = m->n_heads / m->n_kv_heads, n = sj->opt->layer_granularity ? m->n_heads : group;
    for (int i = 0; i < n; i++) heads[i] = sj->opt->layer_granularity ? i : sj->plan->units[u] * group + i;
    return n;
}

static int sim_job_reduce(void *ctx, int job, DistReader *in, KvError *err)
{
    SimJobs *sj = ctx;
    const Plan *plan = sj->plan;
    SimJobPlace p = sim_job_place(sj, job);
    int T = plan->seq_info[p.s].n_tokens, rc = 0;
    UnitJob *units = calloc((size_t)p.count, sizeof *units);
    if (!units) return kv_fail(err, "out of memory");
    for (int i = 0; i < p.count && rc == 0; i++) {
        UnitJob *u = &units[i];
        u->heads = malloc((size_t)plan->readers[0].meta.n_heads * sizeof(int));
        u->results = calloc((size_t)plan->n_configs, sizeof(ReplayResult));
        if (!u->heads || !u->results) { rc = kv_fail(err, "out of memory"); break; }
        u->data.n_heads = unit_heads(sj, p.first + i, u->heads);
        dist_get(in, &u->attention_seconds, sizeof(double));
        dist_get(in, &u->seconds, sizeof(double));
        for (int c = 0; c < plan->n_configs && rc == 0; c++)
            if (get_result(in, &u->results[c], u->data.n_heads, T)) rc = kv_fail(err, "out of memory");
    }
    for (int c = 0; rc == 0 && c < plan->n_configs; c++) /* the units' sum, folded in as the first unit's */
        dist_get(in, units[0].results[c].evict_age, (size_t)T * sizeof(long));
    if (rc == 0 && !in->failed) reduce_layer(plan, sj->res, sj->acc, units, p.count, p.s, p.layer);
    free_jobs(units, p.count, plan->n_configs);
    return rc;
}

static int run_distributed(const SimOptions *opt, const Plan *plan, SimResults *res, Accumulators *acc, int values,
                           KvError *err)
{
    SimJobs sj = {.opt = opt, .plan = plan, .res = res, .acc = acc, .values = values, .jobs_per_layer = 1,
                  .hdf5 = PTHREAD_MUTEX_INITIALIZER};
    int n_units = opt->layer_granularity ? 1 : plan->n_units, layer_jobs_n = plan->n_seq * plan->n_layers;
    sj.units_per_job = n_units;
    int together = 0; /* adaptive configurations replay a layer's units together: no job splits them */
    for (int c = 0; c < plan->n_configs; c++) together |= plan->alloc[c]->kind == ALLOC_ADAPTIVE;
    if (layer_jobs_n < dist_size() && n_units > 1 && !together) sj.units_per_job = 1, sj.jobs_per_layer = n_units;
    DistJobs jobs = {.n_jobs = layer_jobs_n * sj.jobs_per_layer, .ctx = &sj, .run = sim_job_run,
                     .reduce = sim_job_reduce, .describe = sim_job_describe, .label = "simulate"};
    return dist_run(&jobs, err);
}

static int needs_values(const SimOptions *opt)
{
    int need = opt->error_stride != 0;
    for (int p = 0; p < opt->n_policies; p++) need |= !strcmp(opt->policies[p].name, "vatp");
    return need;
}

int simulate_run(const SimOptions *opt, SimResults *res, KvError *err)
{
    memset(res, 0, sizeof *res);
    Plan plan = {0};
    Accumulators acc = {0};
    double t0 = kv_now_seconds();
    int values = needs_values(opt);
    int rc = open_traces(opt, &plan, err) || collect_sequences(opt, &plan, values, err);
    /* on a core of its own while the first layer loads; started after the
     * traces are open, as opening forks a checking child, which must not
     * inherit a thread's locks */
    FileDigests digests;
    if (dist_rank() == 0) file_digests_start(&digests, opt->traces, opt->n_traces, opt->threads > 1 && rc == 0);
    if (rc == 0) {
        const TraceMeta *m = &plan.readers[0].meta;
        trace_model_label(m, res->model, sizeof res->model);
        snprintf(res->model_sha256, sizeof res->model_sha256, "%s", m->model_digest);
        if (opt->layer_granularity && opt->units)
            rc = kv_fail(err, "--heads selects cache units per kv head; it does not apply at layer granularity");
        rc = rc || select_list(opt->layers, opt->n_layers, m->n_layers, "layer", &plan.layers, &plan.n_layers, err) ||
             select_list(opt->units, opt->n_units, m->n_kv_heads, "kv head", &plan.units, &plan.n_units, err) ||
             plan_kv_wanted(opt, &plan, m->n_kv_heads, err);
        if (rc == 0 && opt->retention_layer >= 0 &&
            (opt->retention_layer >= m->n_layers || opt->retention_unit < 0 ||
             opt->retention_unit >= (opt->layer_granularity ? 1 : m->n_kv_heads)))
            rc = kv_fail(err, "retention unit %d:%d does not exist", opt->retention_layer, opt->retention_unit);
    }
    if (rc == 0) plan.n_model_layers = plan.readers[0].meta.n_layers;
    rc = rc || plan_configs(opt, &plan, err) || alloc_results(opt, &plan, res, &acc, err);
    rc = rc || check_costly_memory(opt, &plan, err);
    if (rc == 0) announce_costly(opt, &plan);
    if (rc == 0)
        res->error_stride = opt->error_stride != SIM_ERROR_STRIDE_AUTO ? opt->error_stride
                                                                       : (res->max_T + SIM_ERROR_ROWS - 1) / SIM_ERROR_ROWS;
    if (dist_active()) rc = dist_agree(rc, "planning", err); /* every rank plans; any failure stops them all */
    if (rc == 0 && dist_active()) {
        openblas_set_num_threads(1);
        rc = run_distributed(opt, &plan, res, &acc, values, err);
    } else if (rc == 0) {
        openblas_set_num_threads(1); /* the parallelism is across cache units */
        Progress progress;
        progress_begin(&progress, "simulate");
        long done = 0, total = (long)plan.n_seq * plan.n_layers * (opt->layer_granularity ? 1 : plan.n_units);
        rc = run_layers(opt, &plan, res, &acc, &progress, &done, total, values, err);
        progress_end(&progress);
    }
    if (rc == 0) {
        size_t n = (size_t)res->n_configs * res->n_sequences * res->max_T;
        for (size_t i = 0; i < n; i++)
            res->curve[i] = acc.curve_count[i] ? (float)(acc.curve_sum[i] / acc.curve_count[i]) : NAN;
    }
    if (dist_rank() == 0) {
        if (rc) file_digests_free(&digests); /* no results: no digests */
        else if (!(res->trace_sha256 = file_digests_take(&digests))) rc = kv_fail(err, "out of memory");
    }
    free(acc.curve_sum);
    free(acc.curve_count);
    plan_free(&plan);
    res->seconds = kv_now_seconds() - t0;
    if (rc) sim_results_free(res);
    return rc ? -1 : 0;
}

void sim_results_free(SimResults *res)
{
    for (int s = 0; res->seq_source && s < res->n_sequences; s++) free(res->seq_source[s]);
    free(res->config_policy); free(res->config_params); free(res->config_spec); free(res->config_budget);
    free(res->config_alloc); free(res->config_allocation); free(res->config_fraction);
    free(res->budget_tokens); free(res->seq_length); free(res->seq_prompt); free(res->seq_source);
    free(res->mass); free(res->kl); free(res->error); free(res->overlap); free(res->evict_age); free(res->curve);
    free(res->retention);
    free(res->trace_sha256);
    memset(res, 0, sizeof *res);
}

static const double *metric_array(const SimResults *res, int metric)
{
    return metric == 0 ? res->mass : metric == 1 ? res->kl : metric == 2 ? res->error : res->overlap;
}

void sim_overall(const SimResults *res, int config, int metric, double *mean, double *std)
{
    const double *a = metric_array(res, metric);
    size_t per_seq = (size_t)res->n_layers * res->n_heads;
    double sum = 0, sum2 = 0;
    int n = 0;
    for (int s = 0; s < res->n_sequences; s++) {
        const double *cell = a + ((size_t)config * res->n_sequences + s) * per_seq;
        double seq_sum = 0;
        int seq_n = 0;
        for (size_t i = 0; i < per_seq; i++)
            if (!isnan(cell[i])) { seq_sum += cell[i]; seq_n++; }
        if (!seq_n) continue;
        double v = seq_sum / seq_n;
        sum += v;
        sum2 += v * v;
        n++;
    }
    mean_and_std(sum, sum2, n, mean, std);
}

void mean_and_std(double sum, double sum2, int n, double *mean, double *std)
{
    *mean = n ? sum / n : NAN;
    *std = n > 1 ? sqrt(fmax(0, (sum2 - sum * sum / n) / (n - 1))) : NAN; /* no spread from one value */
}
