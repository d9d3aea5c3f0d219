#include "model.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "../util/sha256.h"
#include "quant.h"

float *model_own(Model *m, size_t n_floats)
{
    if (m->n_owned == m->cap_owned) {
        int cap = m->cap_owned ? 2 * m->cap_owned : 32;
        float **o = realloc(m->owned, (size_t)cap * sizeof *o);
        if (!o) return NULL;
        m->owned = o;
        m->cap_owned = cap;
    }
    float *p = malloc((n_floats ? n_floats : 1) * sizeof(float));
    if (p) m->owned[m->n_owned++] = p;
    return p;
}

int model_check_config(const Model *m, KvError *err)
{
    const ModelConfig *c = &m->cfg;
    if (c->dim <= 0 || c->dim > 65536 || c->hidden_dim <= 0 || c->hidden_dim > 1 << 18 ||
        c->n_layers <= 0 || c->n_layers > 1024 || c->n_heads <= 0 || c->n_heads > 1024 ||
        c->n_kv_heads <= 0 || c->vocab_size <= 0 || c->vocab_size > 1 << 22)
        return kv_fail(err, "%s: absurd model dimensions (dim %d, hidden %d, layers %d, heads %d, vocab %d)",
                       m->path, c->dim, c->hidden_dim, c->n_layers, c->n_heads, c->vocab_size);
    if (c->dim % c->n_heads || c->n_heads % c->n_kv_heads)
        return kv_fail(err, "%s: %d heads and %d kv heads do not divide width %d", m->path, c->n_heads,
                       c->n_kv_heads, c->dim);
    if (c->head_dim % 2)
        return kv_fail(err, "%s: head size %d is odd; RoPE needs pairs", m->path, c->head_dim);
    if (!(c->rope_theta > 0) || !isfinite(c->rope_theta) || !(c->norm_eps > 0) || !isfinite(c->norm_eps) ||
        c->max_seq_len <= 0 || !(c->rope_linear > 0) || !isfinite(c->rope_linear))
        return kv_fail(err, "%s: invalid rope theta %g, rope scaling %g, norm epsilon %g or context length %d", m->path,
                       c->rope_theta, c->rope_linear, c->norm_eps, c->max_seq_len);
    return 0;
}

static int floats_finite(const float *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!isfinite(p[i])) return 0;
    return 1;
}

static int matrix_finite(const QMatrix *w)
{
    return ggml_all_finite(w->type, w->data, (size_t)w->rows * (size_t)w->cols);
}

static int check_finite(const Model *m, KvError *err)
{
    const ModelConfig *c = &m->cfg;
    size_t dim = (size_t)c->dim, q = (size_t)c->n_heads * c->head_dim, kv = (size_t)c->n_kv_heads * c->head_dim;
    if (!matrix_finite(&m->token_embd) || !matrix_finite(&m->output) || !floats_finite(m->output_norm, dim) ||
        (m->rope_factors && !floats_finite(m->rope_factors, (size_t)c->head_dim / 2)))
        return kv_fail(err, "%s: embedding or output weights contain NaN or Inf", m->path);
    for (int l = 0; l < c->n_layers; l++) {
        const LayerWeights *w = &m->layers[l];
        int ok = floats_finite(w->attn_norm, dim) && floats_finite(w->ffn_norm, dim) && matrix_finite(&w->wq) &&
                 matrix_finite(&w->wk) && matrix_finite(&w->wv) && matrix_finite(&w->wo) &&
                 matrix_finite(&w->w_gate) && matrix_finite(&w->w_up) && matrix_finite(&w->w_down) &&
                 (!w->bq || (floats_finite(w->bq, q) && floats_finite(w->bk, kv) && floats_finite(w->bv, kv)));
        if (!ok) return kv_fail(err, "%s: weights of layer %d contain NaN or Inf", m->path, l);
    }
    return 0;
}

int model_load(Model *m, const char *path, const char *tokenizer_path, KvError *err)
{
    memset(m, 0, sizeof *m);
    snprintf(m->path, sizeof m->path, "%s", path);
    snprintf(m->rope_scaling, sizeof m->rope_scaling, "none");
    m->cfg.rope_linear = 1.0f;
    FILE *fp = fopen(path, "rb");
    if (!fp) return kv_fail(err, "%s: cannot open model: %s", path, strerror(errno));
    char magic[4] = {0};
    size_t got = fread(magic, 1, 4, fp);
    fclose(fp);
    int rc;
    if (got == 4 && memcmp(magic, "GGUF", 4) == 0)
        rc = model_load_gguf(m, path, err);
    else
        rc = model_load_llama2c(m, path, tokenizer_path, err);
    if (rc == 0) rc = check_finite(m, err);
    if (rc != 0) {
        model_free(m);
        return -1;
    }
    const void *bytes = m->gguf.base ? (const void *)m->gguf.base : m->map;
    size_t size = m->gguf.base ? m->gguf.size : m->map_size;
    sha256_hex(bytes, size, m->digest);
    return 0;
}

void model_free(Model *m)
{
    for (int i = 0; i < m->n_owned; i++) free(m->owned[i]);
    free(m->owned);
    free(m->layers);
    if (m->has_tokenizer) tokenizer_free(&m->tokenizer);
    if (m->gguf.base) gguf_close(&m->gguf);
    if (m->map) munmap(m->map, m->map_size);
    memset(m, 0, sizeof *m);
}

static int to_f32(Model *m, QMatrix *w, KvError *err)
{
    if (w->type == GGML_F32 && (uintptr_t)w->data % sizeof(float) == 0) return 0;
    float *out = model_own(m, (size_t)w->rows * (size_t)w->cols);
    if (!out) return kv_fail(err, "%s: out of memory converting the weights to float32", m->path);
    for (int r = 0; r < w->rows; r++) qmatrix_row(w, r, out + (size_t)r * w->cols);
    *w = (QMatrix){(const uint8_t *)out, GGML_F32, w->rows, w->cols, (size_t)w->cols * sizeof(float)};
    return 0;
}

int model_dequantize_all(Model *m, KvError *err)
{
    int tied = m->output.data == m->token_embd.data;
    if (to_f32(m, &m->token_embd, err)) return -1;
    if (tied)
        m->output = m->token_embd;
    else if (to_f32(m, &m->output, err))
        return -1;
    for (int l = 0; l < m->cfg.n_layers; l++) {
        LayerWeights *w = &m->layers[l];
        QMatrix *all[] = {&w->wq, &w->wk, &w->wv, &w->wo, &w->w_gate, &w->w_up, &w->w_down};
        for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
            if (to_f32(m, all[i], err)) return -1;
    }
    return 0;
}

double model_rope_frequency(const Model *m, int j)
{
    const ModelConfig *c = &m->cfg;
    double f = pow((double)c->rope_theta, -2.0 * j / c->head_dim) / c->rope_linear;
    return m->rope_factors ? f / m->rope_factors[j] : f;
}

void model_rope_layout(const Model *m, char *out, size_t cap)
{
    const ModelConfig *c = &m->cfg;
    char pos[48] = "pos";
    if (c->rope_linear != 1.0f) snprintf(pos, sizeof pos, "(pos / %g)", c->rope_linear);
    snprintf(out, cap, "%s, angle = %s * theta^(-2j/head_dim)%s",
             c->rope_neox ? "halves (j, j + head_dim/2)" : "adjacent pairs (2j, 2j+1)", pos,
             m->rope_factors ? " / rope_freqs[j] (llama3 scaling)" : "");
}
