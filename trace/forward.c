#include "forward.h"

#include "../util/softmax.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static int alloc_scores(ForwardState *s, int workers)
{
    free(s->scores);
    s->scores = malloc((size_t)workers * s->max_block * (size_t)s->capacity * sizeof(float));
    return s->scores ? 0 : -1;
}

static int max_width(const ModelConfig *c)
{
    int w = c->dim > c->hidden_dim ? c->dim : c->hidden_dim, q = c->n_heads * c->head_dim;
    return w > q ? w : q;
}

int forward_state_init(ForwardState *s, const ModelConfig *cfg, int capacity, int max_block, KvError *err)
{
    memset(s, 0, sizeof *s);
    /* all parallelism is the pool's (deterministic); OpenBLAS's own threads would
     * compete with it, and cost more in hand-offs than small products are worth */
    openblas_set_num_threads(1);
    s->cfg = *cfg;
    s->capacity = capacity;
    s->max_block = max_block;
    size_t B = (size_t)max_block, kvd = (size_t)cfg->n_kv_heads * cfg->head_dim;
    size_t qd = (size_t)cfg->n_heads * cfg->head_dim, wide = (size_t)(cfg->dim > (int)qd ? cfg->dim : (int)qd);
    size_t cache = (size_t)cfg->n_layers * kvd * (size_t)capacity;
    s->key_cache = calloc(cache, sizeof(float));
    s->value_cache = calloc(cache, sizeof(float));
    s->x = malloc(B * cfg->dim * sizeof(float));
    s->xb = malloc(B * wide * sizeof(float));
    s->xb2 = malloc(B * wide * sizeof(float));
    s->q = malloc(B * qd * sizeof(float));
    s->k = malloc(B * kvd * sizeof(float));
    s->v = malloc(B * kvd * sizeof(float));
    s->hb = malloc(B * cfg->hidden_dim * sizeof(float));
    s->hb2 = malloc(B * cfg->hidden_dim * sizeof(float));
    s->rope_cos = malloc(B * (size_t)(cfg->head_dim / 2) * sizeof(float));
    s->rope_sin = malloc(B * (size_t)(cfg->head_dim / 2) * sizeof(float));
    int bad = alloc_scores(s, 1);
    if (!s->key_cache || !s->value_cache || !s->x || !s->xb || !s->xb2 || !s->q || !s->k || !s->v || !s->hb ||
        !s->hb2 || bad || !s->rope_cos || !s->rope_sin) {
        forward_state_free(s);
        return kv_fail(err, "out of memory for a %d-token KV cache", capacity);
    }
    if (matmul_init(&s->mm, 1, max_width(cfg), max_block >= MATMUL_MIN_BLOCK, err)) {
        forward_state_free(s);
        return -1;
    }
    return 0;
}

int forward_state_threads(ForwardState *s, int n_threads, KvError *err)
{
    matmul_free(&s->mm);
    if (matmul_init(&s->mm, n_threads, max_width(&s->cfg), s->max_block >= MATMUL_MIN_BLOCK, err)) return -1;
    if (alloc_scores(s, s->mm.n_workers))
        return kv_fail(err, "out of memory for attention scores of %d threads", s->mm.n_workers);
    return 0;
}

void forward_state_free(ForwardState *s)
{
    free(s->key_cache); free(s->value_cache); free(s->x); free(s->xb); free(s->xb2); free(s->q);
    free(s->k); free(s->v); free(s->hb); free(s->hb2); free(s->scores); free(s->rope_cos); free(s->rope_sin);
    matmul_free(&s->mm);
    memset(s, 0, sizeof *s);
}

static void rmsnorm(float *out, const float *x, const float *w, int n, float eps)
{
    double ss = 0;
    for (int i = 0; i < n; i++) ss += (double)x[i] * x[i];
    float scale = (float)(1.0 / sqrt(ss / n + eps));
    for (int i = 0; i < n; i++) out[i] = x[i] * scale * w[i];
}

/* Angles in double: pos * freq loses digits in float at long positions. */
static void rope_tables(const Model *m, ForwardState *s, int pos0, int n)
{
    int half = s->cfg.head_dim / 2;
    for (int j = 0; j < half; j++) {
        double freq = model_rope_frequency(m, j);
        for (int r = 0; r < n; r++) {
            double angle = (double)(pos0 + r) * freq;
            s->rope_cos[r * half + j] = (float)cos(angle);
            s->rope_sin[r * half + j] = (float)sin(angle);
        }
    }
}

/* Rotates the pairs of every head in n rows of width heads*d: (2j, 2j+1),
 * or (j, j + d/2) for NEOX models. */
static void rope_apply(const ForwardState *s, float *x, int n, int heads)
{
    int d = s->cfg.head_dim, half = d / 2, neox = s->cfg.rope_neox;
    int step = neox ? 1 : 2, other = neox ? half : 1;
    for (int r = 0; r < n; r++)
        for (int h = 0; h < heads; h++) {
            float *v = x + ((size_t)r * heads + h) * d;
            const float *c = s->rope_cos + r * half, *sn = s->rope_sin + r * half;
            for (int j = 0; j < half; j++) {
                float *p = v + step * j, a = p[0], b = p[other];
                p[0] = a * c[j] - b * sn[j];
                p[other] = a * sn[j] + b * c[j];
            }
        }
}

/* Row-wise causal softmax; masked keys (keep == 0) get probability 0. */
static void causal_softmax(float *scores, int ld, int n, int pos0, const uint8_t *keep)
{
    for (int r = 0; r < n; r++) {
        float *row = scores + (size_t)r * ld;
        int len = pos0 + r + 1;
        int all_kept = 1; /* then the same kernel as the full cache, bit for bit */
        for (int i = 0; keep && i < len - 1 && all_kept; i++) all_kept = keep[i];
        if (all_kept) {
            softmax_inplace(row, len);
            for (int i = len; i < pos0 + n; i++) row[i] = 0.0f;
            continue;
        }
        float max = -INFINITY;
        for (int i = 0; i < len; i++)
            if ((!keep || keep[i] || i == len - 1) && row[i] > max) max = row[i];
        double sum = 0;
        for (int i = 0; i < len; i++) {
            float e = (!keep || keep[i] || i == len - 1) ? expf(row[i] - max) : 0.0f;
            row[i] = e;
            sum += e;
        }
        float inv = (float)(1.0 / sum);
        for (int i = 0; i < len; i++) row[i] *= inv;
        for (int i = len; i < pos0 + n; i++) row[i] = 0.0f;
    }
}

/* One parallel run of attention heads: scores, softmax and the weighted
 * values of head first + task, in scores buffer `task` when an observer will
 * read them afterwards, else in the worker's own. */
typedef struct {
    ForwardState *s;
    int layer, pos0, n, first, per_task_buffer;
    const uint8_t *keep;
} HeadJob;

static float *head_scores(const HeadJob *job, int task, int worker)
{
    const ForwardState *s = job->s;
    int b = job->per_task_buffer ? task : worker;
    return s->scores + (size_t)b * s->max_block * s->capacity;
}

static void head_task(void *ctx, int task, int worker)
{
    const HeadJob *job = ctx;
    ForwardState *s = job->s;
    const ModelConfig *c = &s->cfg;
    int h = job->first + task, n = job->n, pos0 = job->pos0;
    int d = c->head_dim, qd = c->n_heads * d, len = pos0 + n, group = c->n_heads / c->n_kv_heads;
    long unit = forward_unit_row(s, job->layer, h / group);
    const float *kc = s->key_cache + unit * d, *vc = s->value_cache + unit * d;
    float *scores = head_scores(job, task, worker), scale = 1.0f / sqrtf((float)d);
    if (n == 1)
        cblas_sgemv(CblasRowMajor, CblasNoTrans, len, d, scale, kc, d, s->q + h * d, 1, 0.0f, scores, 1);
    else
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, len, d, scale, s->q + h * d, qd, kc, d, 0.0f, scores,
                    s->capacity);
    causal_softmax(scores, s->capacity, n, pos0, job->keep ? job->keep + unit : NULL);
    if (n == 1)
        cblas_sgemv(CblasRowMajor, CblasTrans, len, d, 1.0f, vc, d, scores, 1, 0.0f, s->xb2 + h * d, 1);
    else
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, d, len, 1.0f, scores, s->capacity, vc, d, 0.0f,
                    s->xb2 + h * d, qd);
}

/* Heads run in parallel; an observer sees their probabilities in head order,
 * a group of (threads) heads at a time. */
static int attention(const Model *m, ForwardState *s, int layer, int pos0, int n, const ForwardObserver *obs,
                     const uint8_t *keep, KvError *err)
{
    int heads = m->cfg.n_heads, observed = obs && obs->on_attention;
    int group = observed ? s->mm.n_workers : heads;
    for (int first = 0; first < heads; first += group) {
        HeadJob job = {s, layer, pos0, n, first, observed, keep};
        int count = heads - first < group ? heads - first : group;
        pool_run(s->mm.pool, count, head_task, &job);
        for (int t = 0; observed && t < count; t++)
            if (obs->on_attention(obs->ctx, layer, first + t, pos0, n, head_scores(&job, t, 0), s->capacity))
                return kv_wrap(err, "recording attention");
    }
    return 0;
}

static void store_kv(ForwardState *s, int layer, int pos0, int n)
{
    int d = s->cfg.head_dim, kvh = s->cfg.n_kv_heads;
    for (int r = 0; r < n; r++)
        for (int g = 0; g < kvh; g++) {
            long at = (forward_unit_row(s, layer, g) + pos0 + r) * d;
            memcpy(s->key_cache + at, s->k + ((size_t)r * kvh + g) * d, (size_t)d * sizeof(float));
            memcpy(s->value_cache + at, s->v + ((size_t)r * kvh + g) * d, (size_t)d * sizeof(float));
        }
}

static void feed_forward(const Model *m, ForwardState *s, const LayerWeights *w, int n)
{
    const ModelConfig *c = &m->cfg;
    for (int r = 0; r < n; r++)
        rmsnorm(s->xb + (size_t)r * c->dim, s->x + (size_t)r * c->dim, w->ffn_norm, c->dim, c->norm_eps);
    const QMatrix *gate_up[2] = {&w->w_gate, &w->w_up};
    float *outs[2] = {s->hb, s->hb2};
    matmul_multi(&s->mm, 2, outs, s->xb, n, gate_up);
    size_t total = (size_t)n * c->hidden_dim;
    for (size_t i = 0; i < total; i++) {
        float g = s->hb[i];
        s->hb[i] = g / (1.0f + expf(-g)) * s->hb2[i]; /* SiLU(gate) * up */
    }
    matmul(&s->mm, s->xb, s->hb, n, &w->w_down);
    for (size_t i = 0; i < (size_t)n * c->dim; i++) s->x[i] += s->xb[i];
}

static void add_bias(float *x, const float *bias, int n, int width)
{
    for (int r = 0; r < n; r++)
        for (int i = 0; i < width; i++) x[(size_t)r * width + i] += bias[i];
}

static int layer_forward(const Model *m, ForwardState *s, int l, int pos0, int n, const ForwardObserver *obs,
                         const uint8_t *keep, KvError *err)
{
    const ModelConfig *c = &m->cfg;
    const LayerWeights *w = &m->layers[l];
    int qd = c->n_heads * c->head_dim, kvd = c->n_kv_heads * c->head_dim;
    for (int r = 0; r < n; r++)
        rmsnorm(s->xb + (size_t)r * c->dim, s->x + (size_t)r * c->dim, w->attn_norm, c->dim, c->norm_eps);
    const QMatrix *qkv[3] = {&w->wq, &w->wk, &w->wv};
    float *outs[3] = {s->q, s->k, s->v};
    matmul_multi(&s->mm, 3, outs, s->xb, n, qkv);
    if (w->bq) {
        add_bias(s->q, w->bq, n, qd);
        add_bias(s->k, w->bk, n, kvd);
        add_bias(s->v, w->bv, n, kvd);
    }
    rope_apply(s, s->q, n, c->n_heads);
    rope_apply(s, s->k, n, c->n_kv_heads);
    store_kv(s, l, pos0, n);
    if (obs && obs->on_qkv && obs->on_qkv(obs->ctx, l, pos0, n, s->q, s->k, s->v))
        return kv_wrap(err, "recording q/k/v");
    if (attention(m, s, l, pos0, n, obs, keep, err)) return -1;
    matmul(&s->mm, s->xb, s->xb2, n, &w->wo);
    for (size_t i = 0; i < (size_t)n * c->dim; i++) s->x[i] += s->xb[i];
    feed_forward(m, s, w, n);
    return 0;
}

int forward_block(const Model *m, ForwardState *s, const int *tokens, int n, int pos0, float *logits,
                  const ForwardObserver *obs, const uint8_t *keep, KvError *err)
{
    const ModelConfig *c = &m->cfg;
    if (n <= 0 || n > s->max_block || pos0 < 0 || pos0 + n > s->capacity)
        return kv_fail(err, "block of %d tokens at position %d exceeds the %d-token context", n, pos0, s->capacity);
    for (int r = 0; r < n; r++) {
        if (tokens[r] < 0 || tokens[r] >= c->vocab_size)
            return kv_fail(err, "token id %d is outside the vocabulary (0..%d)", tokens[r], c->vocab_size - 1);
        qmatrix_row(&m->token_embd, tokens[r], s->x + (size_t)r * c->dim);
    }
    rope_tables(m, s, pos0, n);
    for (int l = 0; l < c->n_layers; l++)
        if (layer_forward(m, s, l, pos0, n, obs, keep, err)) return -1;
    if (logits) forward_logits(m, s, 0, n, logits);
    return 0;
}

void forward_logits(const Model *m, ForwardState *s, int r0, int n, float *logits)
{
    const ModelConfig *c = &m->cfg;
    float *normed = s->xb + (size_t)r0 * c->dim;
    for (int r = r0; r < r0 + n; r++)
        rmsnorm(s->xb + (size_t)r * c->dim, s->x + (size_t)r * c->dim, m->output_norm, c->dim, c->norm_eps);
    matmul(&s->mm, logits, normed, n, &m->output);
}
