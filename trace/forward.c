#include "forward.h"

#include "../util/softmax.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

int forward_state_init(ForwardState *s, const ModelConfig *cfg, int capacity, int max_block, KvError *err)
{
    memset(s, 0, sizeof *s);
    /* Small models: OpenBLAS's worker threads cost more in hand-offs than the
     * products they share; one thread is several times faster below this width. */
    if (cfg->dim < 512) openblas_set_num_threads(1);
    s->cfg = *cfg;
    s->capacity = capacity;
    s->max_block = max_block;
    size_t B = (size_t)max_block, kvd = (size_t)cfg->n_kv_heads * cfg->head_dim;
    size_t qd = (size_t)cfg->n_heads * cfg->head_dim;
    size_t cache = (size_t)cfg->n_layers * kvd * (size_t)capacity;
    s->key_cache = calloc(cache, sizeof(float));
    s->value_cache = calloc(cache, sizeof(float));
    s->x = malloc(B * cfg->dim * sizeof(float));
    s->xb = malloc(B * (cfg->dim > (int)qd ? cfg->dim : (int)qd) * sizeof(float));
    s->xb2 = malloc(B * (cfg->dim > (int)qd ? cfg->dim : (int)qd) * sizeof(float));
    s->q = malloc(B * qd * sizeof(float));
    s->k = malloc(B * kvd * sizeof(float));
    s->v = malloc(B * kvd * sizeof(float));
    s->hb = malloc(B * cfg->hidden_dim * sizeof(float));
    s->hb2 = malloc(B * cfg->hidden_dim * sizeof(float));
    s->scores = malloc(B * (size_t)capacity * sizeof(float));
    s->rope_cos = malloc(B * (size_t)(cfg->head_dim / 2) * sizeof(float));
    s->rope_sin = malloc(B * (size_t)(cfg->head_dim / 2) * sizeof(float));
    if (!s->key_cache || !s->value_cache || !s->x || !s->xb || !s->xb2 || !s->q || !s->k || !s->v || !s->hb ||
        !s->hb2 || !s->scores || !s->rope_cos || !s->rope_sin) {
        forward_state_free(s);
        return kv_fail(err, "out of memory for a %d-token KV cache", capacity);
    }
    return 0;
}

void forward_state_free(ForwardState *s)
{
    free(s->key_cache); free(s->value_cache); free(s->x); free(s->xb); free(s->xb2); free(s->q);
    free(s->k); free(s->v); free(s->hb); free(s->hb2); free(s->scores); free(s->rope_cos); free(s->rope_sin);
    memset(s, 0, sizeof *s);
}

static void rmsnorm(float *out, const float *x, const float *w, int n, float eps)
{
    double ss = 0;
    for (int i = 0; i < n; i++) ss += (double)x[i] * x[i];
    float scale = (float)(1.0 / sqrt(ss / n + eps));
    for (int i = 0; i < n; i++) out[i] = x[i] * scale * w[i];
}

/* out[n][rows] = in[n][cols] · W[rows][cols]ᵀ.  One row goes through sgemv:
 * sgemm's packing costs more than the product itself at n = 1. */
static void matmul(float *out, const float *in, const float *w, int n, int cols, int rows)
{
    if (n == 1) {
        cblas_sgemv(CblasRowMajor, CblasNoTrans, rows, cols, 1.0f, w, cols, in, 1, 0.0f, out, 1);
        return;
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, rows, cols, 1.0f, in, cols, w, cols, 0.0f, out, rows);
}

/* Angles in double: pos * theta^(-2j/d) loses digits in float at long positions. */
static void rope_tables(ForwardState *s, int pos0, int n)
{
    int half = s->cfg.head_dim / 2;
    for (int r = 0; r < n; r++)
        for (int j = 0; j < half; j++) {
            double freq = pow((double)s->cfg.rope_theta, -2.0 * j / s->cfg.head_dim);
            double angle = (double)(pos0 + r) * freq;
            s->rope_cos[r * half + j] = (float)cos(angle);
            s->rope_sin[r * half + j] = (float)sin(angle);
        }
}

/* Rotates adjacent pairs (2j, 2j+1) of every head in n rows of width heads*d. */
static void rope_apply(const ForwardState *s, float *x, int n, int heads)
{
    int d = s->cfg.head_dim, half = d / 2;
    for (int r = 0; r < n; r++)
        for (int h = 0; h < heads; h++) {
            float *v = x + ((size_t)r * heads + h) * d;
            const float *c = s->rope_cos + r * half, *sn = s->rope_sin + r * half;
            for (int j = 0; j < half; j++) {
                float a = v[2 * j], b = v[2 * j + 1];
                v[2 * j] = a * c[j] - b * sn[j];
                v[2 * j + 1] = a * sn[j] + b * c[j];
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

static int attention(const Model *m, ForwardState *s, int layer, int pos0, int n, const ForwardObserver *obs,
                     const uint8_t *keep, KvError *err)
{
    const ModelConfig *c = &m->cfg;
    int d = c->head_dim, qd = c->n_heads * d, group = c->n_heads / c->n_kv_heads, len = pos0 + n;
    float scale = 1.0f / sqrtf((float)d);
    for (int h = 0; h < c->n_heads; h++) {
        int g = h / group;
        long unit = forward_unit_row(s, layer, g);
        const float *kc = s->key_cache + unit * d, *vc = s->value_cache + unit * d;
        if (n == 1)
            cblas_sgemv(CblasRowMajor, CblasNoTrans, len, d, scale, kc, d, s->q + h * d, 1, 0.0f, s->scores, 1);
        else
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, len, d, scale, s->q + h * d, qd, kc, d, 0.0f,
                        s->scores, s->capacity);
        causal_softmax(s->scores, s->capacity, n, pos0, keep ? keep + unit : NULL);
        if (obs && obs->on_attention && obs->on_attention(obs->ctx, layer, h, pos0, n, s->scores, s->capacity))
            return kv_wrap(err, "recording attention");
        if (n == 1)
            cblas_sgemv(CblasRowMajor, CblasTrans, len, d, 1.0f, vc, d, s->scores, 1, 0.0f, s->xb2 + h * d, 1);
        else
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, d, len, 1.0f, s->scores, s->capacity, vc, d,
                        0.0f, s->xb2 + h * d, qd);
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
    matmul(s->hb, s->xb, w->w_gate, n, c->dim, c->hidden_dim);
    matmul(s->hb2, s->xb, w->w_up, n, c->dim, c->hidden_dim);
    size_t total = (size_t)n * c->hidden_dim;
    for (size_t i = 0; i < total; i++) {
        float g = s->hb[i];
        s->hb[i] = g / (1.0f + expf(-g)) * s->hb2[i]; /* SiLU(gate) * up */
    }
    matmul(s->xb, s->hb, w->w_down, n, c->hidden_dim, c->dim);
    for (size_t i = 0; i < (size_t)n * c->dim; i++) s->x[i] += s->xb[i];
}

static int layer_forward(const Model *m, ForwardState *s, int l, int pos0, int n, const ForwardObserver *obs,
                         const uint8_t *keep, KvError *err)
{
    const ModelConfig *c = &m->cfg;
    const LayerWeights *w = &m->layers[l];
    int qd = c->n_heads * c->head_dim, kvd = c->n_kv_heads * c->head_dim;
    for (int r = 0; r < n; r++)
        rmsnorm(s->xb + (size_t)r * c->dim, s->x + (size_t)r * c->dim, w->attn_norm, c->dim, c->norm_eps);
    matmul(s->q, s->xb, w->wq, n, c->dim, qd);
    matmul(s->k, s->xb, w->wk, n, c->dim, kvd);
    matmul(s->v, s->xb, w->wv, n, c->dim, kvd);
    rope_apply(s, s->q, n, c->n_heads);
    rope_apply(s, s->k, n, c->n_kv_heads);
    store_kv(s, l, pos0, n);
    if (obs && obs->on_qkv && obs->on_qkv(obs->ctx, l, pos0, n, s->q, s->k, s->v))
        return kv_wrap(err, "recording q/k/v");
    if (attention(m, s, l, pos0, n, obs, keep, err)) return -1;
    matmul(s->xb, s->xb2, w->wo, n, qd, c->dim);
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
        memcpy(s->x + (size_t)r * c->dim, m->token_embd + (size_t)tokens[r] * c->dim, (size_t)c->dim * sizeof(float));
    }
    rope_tables(s, pos0, n);
    for (int l = 0; l < c->n_layers; l++)
        if (layer_forward(m, s, l, pos0, n, obs, keep, err)) return -1;
    if (logits) {
        for (int r = 0; r < n; r++)
            rmsnorm(s->xb + (size_t)r * c->dim, s->x + (size_t)r * c->dim, m->output_norm, c->dim, c->norm_eps);
        matmul(logits, s->xb, m->output, n, c->dim, c->vocab_size);
    }
    return 0;
}
