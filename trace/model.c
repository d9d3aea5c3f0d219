#include "model.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "../util/sha256.h"

float *model_own(Model *m, size_t n_floats)
{
    if (m->n_owned == m->cap_owned) {
        int cap = m->cap_owned ? 2 * m->cap_owned : 32;
        float **o = realloc(m->owned, (size_t)cap * sizeof *o);
        if (!o) return NULL;
        m->owned = o;
        m->cap_owned = cap;
    }
    float *p = malloc(n_floats * sizeof(float));
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
    if (!(c->rope_theta > 0) || !(c->norm_eps > 0) || c->max_seq_len <= 0)
        return kv_fail(err, "%s: invalid rope theta, norm epsilon or context length", m->path);
    return 0;
}

static int all_finite(const float *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!isfinite(p[i])) return 0;
    return 1;
}

int model_check_finite(const Model *m, KvError *err)
{
    const ModelConfig *c = &m->cfg;
    size_t dim = (size_t)c->dim, q = (size_t)c->n_heads * c->head_dim, kv = (size_t)c->n_kv_heads * c->head_dim;
    size_t hid = (size_t)c->hidden_dim, voc = (size_t)c->vocab_size;
    if (!all_finite(m->token_embd, voc * dim) || !all_finite(m->output, voc * dim) ||
        !all_finite(m->output_norm, dim))
        return kv_fail(err, "%s: embedding or output weights contain NaN or Inf", m->path);
    for (int l = 0; l < c->n_layers; l++) {
        const LayerWeights *w = &m->layers[l];
        if (!all_finite(w->attn_norm, dim) || !all_finite(w->wq, q * dim) || !all_finite(w->wk, kv * dim) ||
            !all_finite(w->wv, kv * dim) || !all_finite(w->wo, dim * q) || !all_finite(w->ffn_norm, dim) ||
            !all_finite(w->w_gate, hid * dim) || !all_finite(w->w_up, hid * dim) ||
            !all_finite(w->w_down, dim * hid))
            return kv_fail(err, "%s: weights of layer %d contain NaN or Inf", m->path, l);
    }
    return 0;
}

int model_load(Model *m, const char *path, const char *tokenizer_path, KvError *err)
{
    memset(m, 0, sizeof *m);
    snprintf(m->path, sizeof m->path, "%s", path);
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
    if (rc == 0) rc = model_check_finite(m, err);
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
