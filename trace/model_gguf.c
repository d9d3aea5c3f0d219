/* Loading a llama-architecture GGUF into a Model. */
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

static float arch_float(const Model *m, const char *suffix, double def)
{
    char key[128];
    snprintf(key, sizeof key, "%s.%s", m->arch, suffix);
    double v;
    return gguf_get_float(&m->gguf, key, &v) == 0 ? (float)v : (float)def;
}

static int read_config(Model *m, KvError *err)
{
    ModelConfig *c = &m->cfg;
    if (gguf_get_string(&m->gguf, "general.architecture", m->arch, sizeof m->arch) != 0)
        return kv_fail(err, "%s: metadata 'general.architecture' is missing", m->path);
    if (strcmp(m->arch, "llama") != 0)
        return kv_fail(err, "%s: architecture '%s' is not supported (kvtrace runs 'llama' models)", m->path, m->arch);
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
    int rope_dims = 0;
    if (arch_int(m, "rope.dimension_count", c->head_dim, &rope_dims, err)) return -1;
    if (rope_dims != c->head_dim)
        return kv_fail(err, "%s: partial rotary embeddings (%d of %d dims) are not supported", m->path, rope_dims,
                       c->head_dim);
    c->rope_theta = arch_float(m, "rope.freq_base", 10000.0);
    c->norm_eps = arch_float(m, "attention.layer_norm_rms_epsilon", 1e-5);
    const GgufTensor *emb = gguf_find_tensor(&m->gguf, "token_embd.weight");
    if (!emb || emb->n_dims != 2)
        return kv_fail(err, "%s: tensor 'token_embd.weight' is missing or not 2-D", m->path);
    c->vocab_size = (int)emb->dims[1];
    return model_check_config(m, err);
}

/* Finds a tensor, checks its shape (dims[0] is the input width) and returns
 * float32 data: the mapped bytes for F32, a dequantized copy otherwise. */
static const float *tensor_f32(Model *m, const char *name, uint64_t d0, uint64_t d1, KvError *err)
{
    const GgufTensor *t = gguf_find_tensor(&m->gguf, name);
    if (!t) return kv_fail(err, "%s: tensor '%s' is missing", m->path, name), NULL;
    uint64_t want_dims = d1 ? 2 : 1;
    if (t->n_dims != want_dims || t->dims[0] != d0 || (d1 && t->dims[1] != d1))
        return kv_fail(err, "%s: tensor '%s' has shape [%llu, %llu], expected [%llu, %llu]", m->path, name,
                       (unsigned long long)t->dims[0], (unsigned long long)(t->n_dims > 1 ? t->dims[1] : 0),
                       (unsigned long long)d0, (unsigned long long)d1), NULL;
    const GgmlTypeInfo *info = ggml_type_info(t->type);
    if (!info->can_dequantize)
        return kv_fail(err, "%s: tensor '%s' has type %s, which kvtrace cannot read "
                       "(supported: F32, F16, BF16, Q8_0, Q4_0, Q4_K, Q6_K)", m->path, name, info->name), NULL;
    if (t->type == GGML_F32) return t->data;
    float *out = model_own(m, t->n_elements);
    if (!out) return kv_fail(err, "%s: out of memory dequantizing '%s'", m->path, name), NULL;
    ggml_dequantize(t->type, t->data, out, t->n_elements);
    return out;
}

static int load_layer(Model *m, int l, KvError *err)
{
    const ModelConfig *c = &m->cfg;
    uint64_t dim = (uint64_t)c->dim, q = (uint64_t)c->n_heads * c->head_dim;
    uint64_t kv = (uint64_t)c->n_kv_heads * c->head_dim, hid = (uint64_t)c->hidden_dim;
    LayerWeights *w = &m->layers[l];
    char name[96];
#define LOAD(field, suffix, d0, d1)                                    \
    snprintf(name, sizeof name, "blk.%d.%s.weight", l, suffix);       \
    if (!(w->field = tensor_f32(m, name, d0, d1, err))) return -1;
    LOAD(attn_norm, "attn_norm", dim, 0)
    LOAD(wq, "attn_q", dim, q)
    LOAD(wk, "attn_k", dim, kv)
    LOAD(wv, "attn_v", dim, kv)
    LOAD(wo, "attn_output", q, dim)
    LOAD(ffn_norm, "ffn_norm", dim, 0)
    LOAD(w_gate, "ffn_gate", dim, hid)
    LOAD(w_up, "ffn_up", dim, hid)
    LOAD(w_down, "ffn_down", hid, dim)
#undef LOAD
    return 0;
}

int model_load_gguf(Model *m, const char *path, KvError *err)
{
    snprintf(m->format, sizeof m->format, "gguf");
    if (gguf_open(&m->gguf, path, err)) return -1;
    if (read_config(m, err)) return -1;
    const ModelConfig *c = &m->cfg;
    uint64_t dim = (uint64_t)c->dim, voc = (uint64_t)c->vocab_size;
    m->layers = calloc((size_t)c->n_layers, sizeof *m->layers);
    if (!m->layers) return kv_fail(err, "%s: out of memory", path);
    if (!(m->token_embd = tensor_f32(m, "token_embd.weight", dim, voc, err))) return -1;
    if (!(m->output_norm = tensor_f32(m, "output_norm.weight", dim, 0, err))) return -1;
    if (gguf_find_tensor(&m->gguf, "output.weight")) {
        if (!(m->output = tensor_f32(m, "output.weight", dim, voc, err))) return -1;
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
