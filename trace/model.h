/* model.h — a Llama- or Qwen2-architecture model whose weight matrices stay
 * in the file's encoding, memory-mapped.
 *
 * Loaded from a GGUF file (architecture "llama": Llama 1/2/3/3.1/3.2,
 * Mistral, TinyLlama, SmolLM, DeepSeek-LLM; "qwen2": Qwen2/2.5, with q/k/v
 * biases and NEOX rotation) or from a llama2.c checkpoint (.bin, version 0
 * header) with its tokenizer.bin.  Matrices are QMatrix views into the
 * mapping (any of the 13 readable tensor types, see quant.h); the small
 * vectors (norms, biases, RoPE factors) are float32, copied when the file's
 * are not aligned float32. */
#ifndef KV_MODEL_H
#define KV_MODEL_H

#include <stddef.h>

#include "../util/error.h"
#include "gguf.h"
#include "matmul.h"
#include "tokenizer.h"

typedef struct {
    int dim;          /* model width */
    int hidden_dim;   /* feed-forward width */
    int n_layers;
    int n_heads;      /* query heads */
    int n_kv_heads;   /* key/value heads (grouped-query attention) */
    int head_dim;
    int vocab_size;
    int max_seq_len;  /* context length the model declares */
    float rope_theta;
    float norm_eps;
    int rope_neox;    /* rotate pairs (j, j + head_dim/2) (NEOX, qwen2), else (2j, 2j+1) */
    float rope_linear; /* linear scaling: positions divided by this factor (1 = none) */
} ModelConfig;

typedef struct {
    const float *attn_norm;  /* [dim] */
    QMatrix wq;              /* [n_heads*head_dim][dim] */
    QMatrix wk, wv;          /* [n_kv_heads*head_dim][dim] */
    const float *bq, *bk, *bv; /* qwen2's biases of q, k, v; NULL for llama */
    QMatrix wo;              /* [dim][n_heads*head_dim] */
    const float *ffn_norm;   /* [dim] */
    QMatrix w_gate, w_up;    /* [hidden][dim] */
    QMatrix w_down;          /* [dim][hidden] */
} LayerWeights;

typedef struct {
    ModelConfig cfg;
    char path[512];
    char name[128];
    char arch[32];
    char format[16];         /* "gguf" or "llama2c" */
    char weight_type[16];    /* type of the attention weights, e.g. "F32", "Q4_K" */
    char digest[65];         /* sha256 of the model file */
    QMatrix token_embd;      /* [vocab][dim] */
    const float *output_norm;
    QMatrix output;          /* [vocab][dim]; the same view as token_embd when tied */
    LayerWeights *layers;
    const float *rope_factors; /* [head_dim/2] frequency divisors (Llama 3.1 scaling), or NULL */
    char rope_scaling[16];   /* "none", "linear" or "llama3" */
    Tokenizer tokenizer;
    int has_tokenizer;
    char tokenizer_note[512]; /* why there is no tokenizer, when there is none */
    /* ownership */
    GgufFile gguf;
    void *map;
    size_t map_size;
    float **owned;
    int n_owned, cap_owned;
} Model;

/* tokenizer_path: for llama2.c checkpoints; NULL means tokenizer.bin beside
 * the model.  A missing or unsupported tokenizer is not an error: the model
 * loads with has_tokenizer = 0 and a note, and can still run token ids. */
int model_load(Model *m, const char *path, const char *tokenizer_path, KvError *err);
void model_free(Model *m);

/* Converts every matrix to float32 in owned memory (what kvtrace did before
 * it kept weights encoded): the reference the tests compare the encoded path
 * with.  Costs 4 bytes per parameter. */
int model_dequantize_all(Model *m, KvError *err);

/* The rotation the forward pass applies, in words (the trace's rope_layout). */
void model_rope_layout(const Model *m, char *out, size_t cap);

/* The angle frequency of pair j (angle = position * frequency), RoPE
 * scaling included. */
double model_rope_frequency(const Model *m, int j);

/* Llama 3.1's frequency divisors (what convert_hf_to_gguf.py stores as
 * rope_freqs): wavelengths above old_context/low slowed by `factor`, below
 * old_context/high kept, a smooth blend between.  out: head_dim/2 values. */
void rope_llama3_factors(double theta, int head_dim, double factor, double low, double high, int old_context,
                         float *out);

/* Internal to the loaders. */
int model_load_gguf(Model *m, const char *path, KvError *err);
int model_load_llama2c(Model *m, const char *path, const char *tokenizer_path, KvError *err);
int model_check_config(const Model *m, KvError *err);
float *model_own(Model *m, size_t n_floats);

#endif
