/* synthetic.h — random-weight models of any shape, architecture, RoPE
 * scaling and tensor type, written as GGUF (for tests and benchmarks).
 *
 * Weights are deterministic in the seed: normal-ish matrices of standard
 * deviation `scale`, norms near 1, qwen2 biases near 0.  Every matrix
 * (embedding and classifier included) is quantized to `type` with
 * quantize.c's quantizers; vectors stay F32.  With random_blocks, block
 * types get random bytes with small scales instead (no quantizing: fast, for
 * benchmark-sized models).  A vocabulary of 259 or more gets SentencePiece
 * metadata (<unk>, <s>, </s>, the 256 byte pieces, then made-up pieces). */
#ifndef KV_SYNTHETIC_H
#define KV_SYNTHETIC_H

#include <stdint.h>

#include "../util/error.h"

typedef struct {
    const char *arch;         /* "llama" or "qwen2" */
    const char *rope_scaling; /* "none", "linear" (factor 4), "llama3" (rope_freqs tensor),
                               * "llama3-keys" (the same factors from rope.scaling.* keys) */
    int dim, hidden, layers, heads, kv_heads, vocab, context;
    uint32_t type;            /* GGML_* of every matrix */
    int tied;                 /* no output.weight: the classifier is the embedding */
    float rope_theta;
    float scale;              /* standard deviation of the matrices */
    uint64_t seed;
    int random_blocks;
} SyntheticModel;

int synthetic_model_write(const SyntheticModel *spec, const char *path, KvError *err);

#endif
