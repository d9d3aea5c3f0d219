/* Loading a llama2.c checkpoint (legacy version-0 .bin: a 7-int header, then
 * float32 weights) and its tokenizer.bin. */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "model.h"
#include "quant.h"

static int map_checkpoint(Model *m, const char *path, KvError *err)
{
    int fd = open(path, O_RDONLY);
    if (fd < 0) return kv_fail(err, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || st.st_size < 28) {
        close(fd);
        return kv_fail(err, "%s: neither a GGUF file nor a llama2.c checkpoint (too short)", path);
    }
    void *p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (p == MAP_FAILED) return kv_fail(err, "%s: cannot map: %s", path, strerror(errno));
    m->map = p;
    m->map_size = (size_t)st.st_size;
    return 0;
}

/* Hands out consecutive float arrays from the mapped weights. */
typedef struct {
    const float *next;
    uint64_t left; /* floats remaining */
    int truncated; /* a take failed: the file ends before its weights do */
} WeightCursor;

/* The next n floats, or NULL once the file is too short: then every later
 * take fails too (a smaller tensor after a missing one must not succeed). */
static const float *take(WeightCursor *c, uint64_t n)
{
    if (n > c->left) {
        c->left = 0;
        c->truncated = 1;
        return NULL;
    }
    const float *p = c->next;
    c->next += n;
    c->left -= n;
    return p;
}

static QMatrix f32_matrix(const float *data, int rows, int cols)
{
    return (QMatrix){(const uint8_t *)data, GGML_F32, rows, cols, (size_t)cols * sizeof(float)};
}

static int assign_weights(Model *m, int shared, KvError *err)
{
    const ModelConfig *c = &m->cfg;
    int dim = c->dim, q = c->n_heads * c->head_dim, kv = c->n_kv_heads * c->head_dim, hid = c->hidden_dim;
    uint64_t L = (uint64_t)c->n_layers, V = (uint64_t)c->vocab_size;
    WeightCursor wc = {(const float *)((const char *)m->map + 28), (m->map_size - 28) / 4, 0};
    const float *embd = take(&wc, V * dim);
    const float *rms_att = take(&wc, L * dim), *wq = take(&wc, L * q * dim), *wk = take(&wc, L * kv * dim);
    const float *wv = take(&wc, L * kv * dim), *wo = take(&wc, L * dim * q), *rms_ffn = take(&wc, L * dim);
    const float *w1 = take(&wc, L * hid * dim), *w2 = take(&wc, L * dim * hid), *w3 = take(&wc, L * hid * dim);
    m->output_norm = take(&wc, (uint64_t)dim);
    const float *freqs = take(&wc, (uint64_t)c->max_seq_len * c->head_dim); /* unused RoPE tables (real, imag) */
    const float *out = shared ? embd : take(&wc, V * dim);
    (void)freqs;
    if (wc.truncated || !embd || !rms_att || !wq || !wk || !wv || !wo || !rms_ffn || !w1 || !w2 || !w3 || !out)
        return kv_fail(err, "%s: llama2.c checkpoint is truncated (header says dim %d, %d layers, vocab %d)",
                       m->path, c->dim, c->n_layers, c->vocab_size);
    m->token_embd = f32_matrix(embd, c->vocab_size, dim);
    m->output = f32_matrix(out, c->vocab_size, dim);
    for (uint64_t l = 0; l < L; l++) {
        m->layers[l] = (LayerWeights){.attn_norm = rms_att + l * dim, .wq = f32_matrix(wq + l * q * dim, q, dim),
                                      .wk = f32_matrix(wk + l * kv * dim, kv, dim),
                                      .wv = f32_matrix(wv + l * kv * dim, kv, dim),
                                      .wo = f32_matrix(wo + l * dim * q, dim, q), .ffn_norm = rms_ffn + l * dim,
                                      .w_gate = f32_matrix(w1 + l * hid * dim, hid, dim),
                                      .w_up = f32_matrix(w3 + l * hid * dim, hid, dim),
                                      .w_down = f32_matrix(w2 + l * dim * hid, dim, hid)};
    }
    return 0;
}

int model_load_llama2c(Model *m, const char *path, const char *tokenizer_path, KvError *err)
{
    snprintf(m->format, sizeof m->format, "llama2c");
    snprintf(m->arch, sizeof m->arch, "llama");
    snprintf(m->weight_type, sizeof m->weight_type, "F32");
    if (map_checkpoint(m, path, err)) return -1;
    int32_t h[7];
    memcpy(h, m->map, sizeof h);
    ModelConfig *c = &m->cfg;
    int shared = h[5] > 0;
    *c = (ModelConfig){.dim = h[0], .hidden_dim = h[1], .n_layers = h[2], .n_heads = h[3], .n_kv_heads = h[4],
                       .vocab_size = h[5] > 0 ? h[5] : h[5] > INT32_MIN ? -h[5] : 0, /* negative: own classifier */
                       .max_seq_len = h[6], .rope_theta = 10000.0f, .norm_eps = 1e-5f, .rope_linear = 1.0f};
    /* there is no magic number: a header of implausible sizes means some other file */
    if (c->dim <= 0 || c->dim > 65536 || c->hidden_dim <= 0 || c->hidden_dim > 1 << 18 || c->n_layers <= 0 ||
        c->n_layers > 1024 || c->n_heads <= 0 || c->n_heads > 1024 || c->n_kv_heads <= 0 ||
        c->n_kv_heads > c->n_heads || c->vocab_size <= 0 || c->vocab_size > 1 << 22 || c->max_seq_len <= 0 ||
        c->max_seq_len > 1 << 20)
        return kv_fail(err, "%s: neither a GGUF file nor a llama2.c checkpoint (header gives dim %d, %d layers, "
                       "%d heads, vocab %d)", path, c->dim, c->n_layers, c->n_heads, c->vocab_size);
    c->head_dim = c->dim / c->n_heads;
    if (model_check_config(m, err)) return -1;
    const char *base = strrchr(path, '/');
    snprintf(m->name, sizeof m->name, "%s", base ? base + 1 : path);
    m->layers = calloc((size_t)c->n_layers, sizeof *m->layers);
    if (!m->layers) return kv_fail(err, "%s: out of memory", path);
    if (assign_weights(m, shared, err)) return -1;
    char tok_path[600];
    if (tokenizer_path) {
        snprintf(tok_path, sizeof tok_path, "%s", tokenizer_path);
    } else {
        char dir[512];
        snprintf(dir, sizeof dir, "%s", path);
        snprintf(tok_path, sizeof tok_path, "%s/tokenizer.bin", dirname(dir));
    }
    KvError tok_err;
    if (tokenizer_from_llama2c(&m->tokenizer, tok_path, c->vocab_size, &tok_err) == 0)
        m->has_tokenizer = 1;
    else
        snprintf(m->tokenizer_note, sizeof m->tokenizer_note, "%s", tok_err.msg);
    return 0;
}
