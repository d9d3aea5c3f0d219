/* model.h — a Llama-architecture model held as float32 weights.
 *
 * Loaded from a GGUF file (architecture "llama": Llama 1/2/3, TinyLlama,
 * SmolLM, Mistral-style) or from a llama2.c checkpoint (.bin, version 0
 * header) with its tokenizer.bin.  F32 tensors point straight into the
 * memory-mapped file; other types are dequantized once into owned buffers.
 * Matrices are row-major [out][in], as GGUF and llama2.c store them. */
#ifndef KV_MODEL_H
#define KV_MODEL_H

#include <stddef.h>

#include "../util/error.h"
#include "gguf.h"
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
} ModelConfig;

typedef struct {
    const float *attn_norm;  /* [dim] */
    const float *wq;         /* [n_heads*head_dim][dim] */
    const float *wk, *wv;    /* [n_kv_heads*head_dim][dim] */
    const float *wo;         /* [dim][n_heads*head_dim] */
    const float *ffn_norm;   /* [dim] */
    const float *w_gate;     /* [hidden][dim] */
    const float *w_up;       /* [hidden][dim] */
    const float *w_down;     /* [dim][hidden] */
} LayerWeights;

typedef struct {
    ModelConfig cfg;
    char path[512];
    char name[128];
    char arch[32];
    char format[16];         /* "gguf" or "llama2c" */
    char weight_type[16];    /* type of the attention weights, e.g. "F32", "Q8_0" */
    char digest[65];         /* sha256 of the model file */
    const float *token_embd; /* [vocab][dim] */
    const float *output_norm;
    const float *output;     /* [vocab][dim]; equals token_embd when tied */
    LayerWeights *layers;
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

/* Internal to the loaders. */
int model_load_gguf(Model *m, const char *path, KvError *err);
int model_load_llama2c(Model *m, const char *path, const char *tokenizer_path, KvError *err);
int model_check_config(const Model *m, KvError *err);
int model_check_finite(const Model *m, KvError *err);
float *model_own(Model *m, size_t n_floats);

#endif
