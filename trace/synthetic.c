#include "synthetic.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gguf_write.h"
#include "model.h"
#include "quant.h"

/* xorshift64*: fast, deterministic, good enough for weights. */
static uint64_t next_u64(uint64_t *s)
{
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 2685821657736338717ull;
}

static float uniform(uint64_t *s) { return (float)(next_u64(s) >> 40) / 16777216.0f - 0.5f; }

/* Sum of four uniforms: mean 0, standard deviation 1/sqrt(3), scaled to sd. */
static void fill_normal(float *x, size_t n, uint64_t *s, float sd)
{
    float k = sd * 1.7320508f;
    for (size_t i = 0; i < n; i++) x[i] = k * (uniform(s) + uniform(s) + uniform(s) + uniform(s));
}

static void fill_around(float *x, size_t n, uint64_t *s, float center, float spread)
{
    for (size_t i = 0; i < n; i++) x[i] = center + spread * uniform(s);
}

typedef struct {
    GgufWriter *w;
    uint64_t seed;
    float *buf;
    int random_blocks;
} Writer;

static int add(Writer *wr, const char *name, uint64_t d0, uint64_t d1, uint32_t type, float center, float spread)
{
    uint64_t dims[2] = {d0, d1};
    size_t n = (size_t)d0 * (d1 ? d1 : 1);
    if (spread < 0)
        fill_normal(wr->buf, n, &wr->seed, -spread);
    else
        fill_around(wr->buf, n, &wr->seed, center, spread);
    return gguf_writer_add_tensor(wr->w, name, d1 ? 2 : 1, dims, type, wr->buf);
}

/* Random encoded bytes whose float16 scales are all sd/256: values of
 * roughly the intended size without quantizing anything. */
static int add_random_blocks(Writer *wr, const char *name, uint64_t d0, uint64_t d1, uint32_t type, float sd)
{
    uint64_t dims[2] = {d0, d1};
    size_t n_bytes = ggml_row_bytes(type, d0 * d1), words = n_bytes / 8 + 1;
    uint64_t *bytes = (uint64_t *)wr->buf; /* the float buffer holds at least 4 bytes per value */
    for (size_t i = 0; i < words; i++) bytes[i] = next_u64(&wr->seed);
    const GgmlTypeInfo *t = ggml_type_info(type);
    int offsets[2], count = ggml_scale_offsets(type, offsets);
    uint16_t h = float_to_fp16(sd / 256);
    uint8_t *p = (uint8_t *)bytes;
    for (size_t b = 0; b < n_bytes / (size_t)t->block_bytes; b++)
        for (int i = 0; i < count; i++) {
            p[b * t->block_bytes + offsets[i]] = (uint8_t)h;
            p[b * t->block_bytes + offsets[i] + 1] = (uint8_t)(h >> 8);
        }
    return gguf_writer_add_encoded(wr->w, name, 2, dims, type, bytes);
}

/* A weight matrix [d1][d0] of type with standard deviation sd. */
static int add_matrix(Writer *wr, const char *name, uint64_t d0, uint64_t d1, uint32_t type, float sd)
{
    if (wr->random_blocks && ggml_type_info(type)->block_elems > 1)
        return add_random_blocks(wr, name, d0, d1, type, sd);
    return add(wr, name, d0, d1, type, 0, -sd);
}

/* SentencePiece metadata: <unk>, <s>, </s>, the byte pieces, then made-up
 * pieces with falling scores. */
static int write_tokenizer(const SyntheticModel *s, GgufWriter *w)
{
    if (s->vocab < 259) return 0;
    char **pieces = calloc((size_t)s->vocab, sizeof *pieces);
    float *scores = malloc((size_t)s->vocab * sizeof *scores);
    int32_t *types = malloc((size_t)s->vocab * sizeof *types);
    int bad = !pieces || !scores || !types;
    for (int i = 0; !bad && i < s->vocab; i++) {
        char piece[32];
        if (i < 3)
            snprintf(piece, sizeof piece, "%s", i == 0 ? "<unk>" : i == 1 ? "<s>" : "</s>");
        else if (i < 259)
            snprintf(piece, sizeof piece, "<0x%02X>", i - 3);
        else /* "\u2581" (the SentencePiece space) and letters */
            snprintf(piece, sizeof piece, "\xe2\x96\x81%c%c", 'a' + (i - 259) % 26, 'a' + (i - 259) / 26 % 26);
        bad = !(pieces[i] = strdup(piece));
        scores[i] = i < 259 ? 0.0f : -(float)(i - 259);
        types[i] = i == 0 ? 2 : i < 3 ? 3 : i < 259 ? 6 : 1;
    }
    uint32_t bos = 1, eos = 2;
    bad = bad || gguf_writer_add_string(w, "tokenizer.ggml.model", "llama") ||
          gguf_writer_add_string_array(w, "tokenizer.ggml.tokens", (const char *const *)pieces, (uint64_t)s->vocab) ||
          gguf_writer_add_array(w, "tokenizer.ggml.scores", GGUF_FLOAT32, (uint64_t)s->vocab, scores) ||
          gguf_writer_add_array(w, "tokenizer.ggml.token_type", GGUF_INT32, (uint64_t)s->vocab, types) ||
          gguf_writer_add_u32(w, "tokenizer.ggml.bos_token_id", bos) ||
          gguf_writer_add_u32(w, "tokenizer.ggml.eos_token_id", eos);
    for (int i = 0; pieces && i < s->vocab; i++) free(pieces[i]);
    free(pieces);
    free(scores);
    free(types);
    return bad;
}

/* Llama 3.1's scaling (factor 8, low 1, high 4) with a short original
 * context, so that every regime (kept, blended, slowed) occurs in small
 * test models. */
#define LLAMA3_FACTOR 8.0
#define LLAMA3_LOW 1.0
#define LLAMA3_HIGH 4.0
#define LLAMA3_CONTEXT 64

static int write_metadata(const SyntheticModel *s, GgufWriter *w)
{
    char key[128];
    int bad = gguf_writer_add_string(w, "general.architecture", s->arch) ||
              gguf_writer_add_string(w, "general.name", "synthetic");
#define U32(suffix, v) (snprintf(key, sizeof key, "%s.%s", s->arch, suffix), gguf_writer_add_u32(w, key, (uint32_t)(v)))
#define F32(suffix, v) (snprintf(key, sizeof key, "%s.%s", s->arch, suffix), gguf_writer_add_f32(w, key, (float)(v)))
#define STR(suffix, v) (snprintf(key, sizeof key, "%s.%s", s->arch, suffix), gguf_writer_add_string(w, key, v))
    bad = bad || U32("embedding_length", s->dim) || U32("feed_forward_length", s->hidden) ||
          U32("block_count", s->layers) || U32("attention.head_count", s->heads) ||
          U32("attention.head_count_kv", s->kv_heads) || U32("context_length", s->context) ||
          U32("rope.dimension_count", s->dim / s->heads) || F32("rope.freq_base", s->rope_theta) ||
          F32("attention.layer_norm_rms_epsilon", 1e-5);
    if (!strcmp(s->rope_scaling, "linear"))
        bad = bad || STR("rope.scaling.type", "linear") || F32("rope.scaling.factor", 4.0);
    if (!strcmp(s->rope_scaling, "llama3-keys"))
        bad = bad || STR("rope.scaling.type", "llama3") || F32("rope.scaling.factor", LLAMA3_FACTOR) ||
              F32("rope.scaling.low_freq_factor", LLAMA3_LOW) || F32("rope.scaling.high_freq_factor", LLAMA3_HIGH) ||
              U32("rope.scaling.original_context_length", LLAMA3_CONTEXT);
#undef U32
#undef F32
#undef STR
    return bad;
}

static int write_layer(const SyntheticModel *s, Writer *wr, int l)
{
    uint64_t dim = (uint64_t)s->dim, hd = dim / (uint64_t)s->heads, q = hd * (uint64_t)s->heads;
    uint64_t kv = hd * (uint64_t)s->kv_heads, hid = (uint64_t)s->hidden;
    float sd = s->scale;
    char name[96];
#define NAME(suffix) (snprintf(name, sizeof name, "blk.%d.%s", l, suffix), name)
    int bad = add(wr, NAME("attn_norm.weight"), dim, 0, GGML_F32, 1.0f, 0.2f) ||
              add_matrix(wr, NAME("attn_q.weight"), dim, q, s->type, sd) ||
              add_matrix(wr, NAME("attn_k.weight"), dim, kv, s->type, sd) ||
              add_matrix(wr, NAME("attn_v.weight"), dim, kv, s->type, sd) ||
              add_matrix(wr, NAME("attn_output.weight"), q, dim, s->type, sd) ||
              add(wr, NAME("ffn_norm.weight"), dim, 0, GGML_F32, 1.0f, 0.2f) ||
              add_matrix(wr, NAME("ffn_gate.weight"), dim, hid, s->type, sd) ||
              add_matrix(wr, NAME("ffn_up.weight"), dim, hid, s->type, sd) ||
              add_matrix(wr, NAME("ffn_down.weight"), hid, dim, s->type, sd);
    if (!bad && !strcmp(s->arch, "qwen2"))
        bad = add(wr, NAME("attn_q.bias"), q, 0, GGML_F32, 0, 0.5f) ||
              add(wr, NAME("attn_k.bias"), kv, 0, GGML_F32, 0, 0.5f) ||
              add(wr, NAME("attn_v.bias"), kv, 0, GGML_F32, 0, 0.5f);
#undef NAME
    return bad;
}

int synthetic_model_write(const SyntheticModel *s, const char *path, KvError *err)
{
    uint64_t dim = (uint64_t)s->dim, voc = (uint64_t)s->vocab;
    size_t biggest = (size_t)dim * (size_t)(s->hidden > s->vocab ? s->hidden : s->vocab);
    if ((size_t)dim * dim > biggest) biggest = (size_t)dim * dim;
    Writer wr = {gguf_writer_new(), s->seed ? s->seed : 1, malloc(biggest * sizeof(float)), s->random_blocks};
    if (!wr.w || !wr.buf) {
        gguf_writer_free(wr.w);
        free(wr.buf);
        return kv_fail(err, "%s: out of memory for a synthetic model", path);
    }
    int bad = write_metadata(s, wr.w) || write_tokenizer(s, wr.w) ||
              add_matrix(&wr, "token_embd.weight", dim, voc, s->type, 1.0f) ||
              add(&wr, "output_norm.weight", dim, 0, GGML_F32, 1.0f, 0.2f) ||
              (!s->tied && add_matrix(&wr, "output.weight", dim, voc, s->type, s->scale));
    if (!bad && !strcmp(s->rope_scaling, "llama3")) {
        uint64_t half = dim / (uint64_t)s->heads / 2, dims[1] = {half};
        rope_llama3_factors(s->rope_theta, s->dim / s->heads, LLAMA3_FACTOR, LLAMA3_LOW, LLAMA3_HIGH, LLAMA3_CONTEXT,
                            wr.buf);
        bad = gguf_writer_add_tensor(wr.w, "rope_freqs.weight", 1, dims, GGML_F32, wr.buf);
    }
    for (int l = 0; !bad && l < s->layers; l++) bad = write_layer(s, &wr, l);
    free(wr.buf);
    int rc = bad ? kv_fail(err, "%s: cannot build the synthetic model (type %s, shape not a whole number of blocks?)",
                           path, ggml_type_info(s->type) ? ggml_type_info(s->type)->name : "?")
                 : gguf_writer_save(wr.w, path, err);
    gguf_writer_free(wr.w);
    return rc;
}
