/* Loading a llama- or qwen2-architecture GGUF into a Model. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model.h"
#include "quant.h"

/* Reads "<arch>.<suffix>" as an integer; def < 0 means required. */
static int arch_int(const Model *m, const char *suffix, int64_t def, int *out, KvError *err)
{
    char key[128];
    snprintf(key, sizeof key, "%s.%s", m->arch, suffix);
    int64_t v;
    if (gguf_get_int(&m->gguf, key, &v) != 0) {
        if (def < 0) return kv_fail(err, "%s: metadata '%s' is missing", m->path, key);
        v = def;
    }
    if (v <= 0 || v > (1ll << 30)) return kv_fail(err, "%s: metadata '%s' = %lld is absurd", m->path, key, (long long)v);
    *out = (int)v;
    return 0;
}

/* "<arch>.<suffix>" as a float; NaN when it is not a finite float32. */
static float arch_float(const Model *m, const char *suffix, double def)
{
    char key[128];
    snprintf(key, sizeof key, "%s.%s", m->arch, suffix);
    double v;
    if (gguf_get_float(&m->gguf, key, &v) != 0) v = def;
    return isfinite(v) && fabs(v) <= 3.4e38 ? (float)v : NAN;
}

void rope_llama3_factors(double theta, int head_dim, double factor, double low, double high, int old_context,
                         float *out)
{
    for (int j = 0; j < head_dim / 2; j++) {
        double freq = pow(theta, -2.0 * j / head_dim), wavelen = 2 * M_PI / freq;
        if (wavelen < old_context / high) {
            out[j] = 1.0f;
        } else if (wavelen > old_context / low) {
            out[j] = (float)factor;
        } else {
            double smooth = (old_context / wavelen - low) / (high - low);
            out[j] = (float)(1.0 / ((1 - smooth) / factor + smooth));
        }
    }
}

/* Llama 3.1's scaling from rope.scaling.* keys, when the file has no
 * rope_freqs tensor. */
static int llama3_factors(Model *m, KvError *err)
{
    const ModelConfig *c = &m->cfg;
    float factor = arch_float(m, "rope.scaling.factor", 8.0), low = arch_float(m, "rope.scaling.low_freq_factor", 1.0);
    float high = arch_float(m, "rope.scaling.high_freq_factor", 4.0);
    int old_ctx = 0;
    if (arch_int(m, "rope.scaling.original_context_length", 8192, &old_ctx, err)) return -1;
    if (!(factor >= 1) || !(low > 0) || !(high > low))
        return kv_fail(err, "%s: llama3 RoPE scaling parameters are invalid (factor %g, low %g, high %g)", m->path,
                       factor, low, high);
    float *f = model_own(m, (size_t)c->head_dim / 2);
    if (!f) return kv_fail(err, "%s: out of memory", m->path);
    rope_llama3_factors(c->rope_theta, c->head_dim, factor, low, high, old_ctx, f);
    m->rope_factors = f;
    return 0;
}

/* Finds a tensor and checks its shape: dims[0] = d0, and dims[1] = d1 when d1 > 0. */
static const GgufTensor *find_shaped(Model *m, const char *name, uint64_t d0, uint64_t d1, int optional,
                                     KvError *err)
{
    const GgufTensor *t = gguf_find_tensor(&m->gguf, name);
    if (!t) return optional ? NULL : (kv_fail(err, "%s: tensor '%s' is missing", m->path, name), NULL);
    uint64_t want_dims = d1 ? 2 : 1;
    if (t->n_dims != want_dims || t->dims[0] != d0 || (d1 && t->dims[1] != d1))
        return kv_fail(err, "%s: tensor '%s' has shape [%llu, %llu], expected [%llu, %llu]", m->path, name,
                       (unsigned long long)t->dims[0], (unsigned long long)(t->n_dims > 1 ? t->dims[1] : 0),
                       (unsigned long long)d0, (unsigned long long)d1), NULL;
    const GgmlTypeInfo *info = ggml_type_info(t->type);
    if (!info->can_read)
        return kv_fail(err, "%s: tensor '%s' has type %s, which kvtrace cannot read (it reads %s)", m->path, name,
                       info->name, ggml_readable_types()), NULL;
    return t;
}

/* A weight matrix [rows][cols] as a view of the mapped bytes.  Old llama.cpp
 * files (2023) quantized some tensors as one flat array whose blocks
 * straddle rows; such a tensor is converted to float32 here. */
static int load_matrix(Model *m, const char *name, int cols, int rows, QMatrix *w, KvError *err)
{
    const GgufTensor *t = find_shaped(m, name, (uint64_t)cols, (uint64_t)rows, 0, err);
    if (!t) return -1;
    *w = (QMatrix){t->data, t->type, rows, cols, ggml_row_bytes(t->type, (uint64_t)cols)};
    if (w->row_bytes) return 0;
    float *flat = model_own(m, t->n_elements);
    if (!flat) return kv_fail(err, "%s: out of memory converting '%s'", m->path, name);
    ggml_dequantize(t->type, t->data, flat, t->n_elements);
    *w = (QMatrix){(const uint8_t *)flat, GGML_F32, rows, cols, (size_t)cols * sizeof(float)};
    return 0;
}

/* A vector of n floats: the mapped data when it is aligned float32, else a
 * converted copy.  Optional vectors that are absent give *out = NULL. */
static int load_vector(Model *m, const char *name, int n, int optional, const float **out, KvError *err)
{
    *out = NULL;
    const GgufTensor *t = find_shaped(m, name, (uint64_t)n, 0, optional, err);
    if (!t) return optional && !gguf_find_tensor(&m->gguf, name) ? 0 : -1;
    if (t->type == GGML_F32 && (uintptr_t)t->data % sizeof(float) == 0) {
        *out = t->data;
        return 0;
    }
    float *v = model_own(m, (size_t)n);
    if (!v) return kv_fail(err, "%s: out of memory", m->path);
    if (ggml_dequantize(t->type, t->data, v, (size_t)n))
        return kv_fail(err, "%s: vector '%s' of %d values is not a whole number of %s blocks", m->path, name, n,
                       ggml_type_info(t->type)->name);
    *out = v;
    return 0;
}

static int read_rope(Model *m, KvError *err)
{
    ModelConfig *c = &m->cfg;
    int rope_dims = 0;
    if (arch_int(m, "rope.dimension_count", c->head_dim, &rope_dims, err)) return -1;
    if (rope_dims != c->head_dim)
        return kv_fail(err, "%s: partial rotary embeddings (%d of %d dims) are not supported", m->path, rope_dims,
                       c->head_dim);
    c->rope_neox = strcmp(m->arch, "qwen2") == 0;
    char key[128], old_key[128], type[32] = "";
    snprintf(key, sizeof key, "%s.rope.scaling.type", m->arch);
    snprintf(old_key, sizeof old_key, "%s.rope.scale_linear", m->arch);
    gguf_get_string(&m->gguf, key, type, sizeof type);
    if (load_vector(m, "rope_freqs.weight", c->head_dim / 2, 1, &m->rope_factors, err)) return -1;
    if (m->rope_factors || strcmp(type, "llama3") == 0) {
        snprintf(m->rope_scaling, sizeof m->rope_scaling, "llama3");
        return m->rope_factors ? 0 : llama3_factors(m, err);
    }
    if (strcmp(type, "linear") == 0 || (!type[0] && gguf_find_kv(&m->gguf, old_key))) {
        c->rope_linear = arch_float(m, type[0] ? "rope.scaling.factor" : "rope.scale_linear", 1.0);
        snprintf(m->rope_scaling, sizeof m->rope_scaling, c->rope_linear != 1.0f ? "linear" : "none");
        return 0;
    }
    if (type[0] && strcmp(type, "none") != 0)
        return kv_fail(err, "%s: RoPE scaling '%s' is not supported (kvtrace applies none, linear and llama3)",
                       m->path, type);
    return 0;
}

static int read_config(Model *m, KvError *err)
{
    ModelConfig *c = &m->cfg;
    if (gguf_get_string(&m->gguf, "general.architecture", m->arch, sizeof m->arch) != 0)
        return kv_fail(err, "%s: metadata 'general.architecture' is missing", m->path);
    if (strcmp(m->arch, "llama") != 0 && strcmp(m->arch, "qwen2") != 0)
        return kv_fail(err, "%s: architecture '%s' is not supported (kvtrace runs 'llama' and 'qwen2' models)",
                       m->path, m->arch);
    if (gguf_get_string(&m->gguf, "general.name", m->name, sizeof m->name) != 0)
        snprintf(m->name, sizeof m->name, "unnamed");
    if (arch_int(m, "embedding_length", -1, &c->dim, err) ||
        arch_int(m, "feed_forward_length", -1, &c->hidden_dim, err) ||
        arch_int(m, "block_count", -1, &c->n_layers, err) ||
        arch_int(m, "attention.head_count", -1, &c->n_heads, err) ||
        arch_int(m, "attention.head_count_kv", c->n_heads, &c->n_kv_heads, err) ||
        arch_int(m, "context_length", 2048, &c->max_seq_len, err))
        return -1;
    c->head_dim = c->dim / c->n_heads;
    int key_length = 0;
    if (arch_int(m, "attention.key_length", c->head_dim, &key_length, err)) return -1;
    if (key_length != c->head_dim)
        return kv_fail(err, "%s: head size %d differs from width / heads = %d; not supported", m->path, key_length,
                       c->head_dim);
    c->norm_eps = arch_float(m, "attention.layer_norm_rms_epsilon", 1e-5);
    c->rope_theta = arch_float(m, "rope.freq_base", 10000.0);
    const GgufTensor *emb = gguf_find_tensor(&m->gguf, "token_embd.weight");
    if (!emb || emb->n_dims != 2 || emb->dims[1] > (1u << 30))
        return kv_fail(err, "%s: tensor 'token_embd.weight' is missing or not 2-D", m->path);
    c->vocab_size = (int)emb->dims[1];
    if (model_check_config(m, err) || read_rope(m, err)) return -1;
    return model_check_config(m, err);
}

static int load_layer(Model *m, int l, KvError *err)
{
    const ModelConfig *c = &m->cfg;
    int dim = c->dim, q = c->n_heads * c->head_dim, kv = c->n_kv_heads * c->head_dim, hid = c->hidden_dim;
    int biases = strcmp(m->arch, "qwen2") == 0 ? 0 : 1; /* qwen2 requires them; llama may have them */
    LayerWeights *w = &m->layers[l];
    char name[96];
#define NAME(suffix) (snprintf(name, sizeof name, "blk.%d.%s", l, suffix), name)
    if (load_vector(m, NAME("attn_norm.weight"), dim, 0, &w->attn_norm, err) ||
        load_matrix(m, NAME("attn_q.weight"), dim, q, &w->wq, err) ||
        load_matrix(m, NAME("attn_k.weight"), dim, kv, &w->wk, err) ||
        load_matrix(m, NAME("attn_v.weight"), dim, kv, &w->wv, err) ||
        load_vector(m, NAME("attn_q.bias"), q, biases, &w->bq, err) ||
        load_vector(m, NAME("attn_k.bias"), kv, biases, &w->bk, err) ||
        load_vector(m, NAME("attn_v.bias"), kv, biases, &w->bv, err) ||
        load_matrix(m, NAME("attn_output.weight"), q, dim, &w->wo, err) ||
        load_vector(m, NAME("ffn_norm.weight"), dim, 0, &w->ffn_norm, err) ||
        load_matrix(m, NAME("ffn_gate.weight"), dim, hid, &w->w_gate, err) ||
        load_matrix(m, NAME("ffn_up.weight"), dim, hid, &w->w_up, err) ||
        load_matrix(m, NAME("ffn_down.weight"), hid, dim, &w->w_down, err))
        return -1;
#undef NAME
    if (!w->bq != !w->bk || !w->bq != !w->bv)
        return kv_fail(err, "%s: layer %d has some but not all of the q/k/v biases", m->path, l);
    return 0;
}

int model_load_gguf(Model *m, const char *path, KvError *err)
{
    snprintf(m->format, sizeof m->format, "gguf");
    if (gguf_open(&m->gguf, path, err)) return -1;
    if (read_config(m, err)) return -1;
    const ModelConfig *c = &m->cfg;
    m->layers = calloc((size_t)c->n_layers, sizeof *m->layers);
    if (!m->layers) return kv_fail(err, "%s: out of memory", path);
    if (load_matrix(m, "token_embd.weight", c->dim, c->vocab_size, &m->token_embd, err) ||
        load_vector(m, "output_norm.weight", c->dim, 0, &m->output_norm, err))
        return -1;
    if (gguf_find_tensor(&m->gguf, "output.weight")) {
        if (load_matrix(m, "output.weight", c->dim, c->vocab_size, &m->output, err)) return -1;
    } else {
        m->output = m->token_embd; /* tied classifier */
    }
    for (int l = 0; l < c->n_layers; l++)
        if (load_layer(m, l, err)) return -1;
    const GgufTensor *q0 = gguf_find_tensor(&m->gguf, "blk.0.attn_q.weight");
    snprintf(m->weight_type, sizeof m->weight_type, "%s", ggml_type_info(q0->type)->name);
    KvError tok_err;
    if (tokenizer_from_gguf(&m->tokenizer, &m->gguf, &tok_err) == 0)
        m->has_tokenizer = 1;
    else
        snprintf(m->tokenizer_note, sizeof m->tokenizer_note, "%s", tok_err.msg);
    return 0;
}
