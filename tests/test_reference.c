/* Reproduces the independent float64 reference values for stories260K:
 * tokenizer ids, logits, attention, q, k, v — from the GGUF, from a llama2.c
 * checkpoint written here from the GGUF's tensors, and from F16 / Q8_0
 * copies of the GGUF written here.
 *
 * usage: test_reference CASE MODEL.gguf GOLDEN.h5 WORKDIR
 *   CASE: tokenizer | forward | forward-stepwise | llama2c | f16 | q8_0 | q4_0 */
#include <hdf5.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>

#include "../trace/forward.h"
#include "../trace/gguf_write.h"
#include "../trace/h5util.h"
#include "../trace/quant.h"
#include "../trace/sampler.h"
#include "check.h"

typedef struct {
    int T, L, H, KV, D, V;
    int *tokens;
    float *logits, *attn, *q, *k, *v; /* golden layouts: [layer][head][t][...] */
} Golden;

static int load_golden(Golden *g, const char *path)
{
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0) return -1;
    int rank;
    hsize_t dims[8];
    h5_dataset_shape(f, "forward/q", &rank, dims);
    g->L = (int)dims[0]; g->H = (int)dims[1]; g->T = (int)dims[2]; g->D = (int)dims[3];
    h5_dataset_shape(f, "forward/k", &rank, dims);
    g->KV = (int)dims[1];
    h5_dataset_shape(f, "forward/logits", &rank, dims);
    g->V = (int)dims[1];
    size_t T = (size_t)g->T, nq = (size_t)g->L * g->H * T * g->D, nk = (size_t)g->L * g->KV * T * g->D;
    g->tokens = malloc(T * sizeof(int));
    g->logits = malloc(T * g->V * sizeof(float));
    g->attn = malloc((size_t)g->L * g->H * T * T * sizeof(float));
    g->q = malloc(nq * sizeof(float));
    g->k = malloc(nk * sizeof(float));
    g->v = malloc(nk * sizeof(float));
    int rc = h5_read_all(f, "forward/tokens", H5T_NATIVE_INT, g->tokens, T) ||
             h5_read_all(f, "forward/logits", H5T_NATIVE_FLOAT, g->logits, T * g->V) ||
             h5_read_all(f, "forward/attn", H5T_NATIVE_FLOAT, g->attn, (size_t)g->L * g->H * T * T) ||
             h5_read_all(f, "forward/q", H5T_NATIVE_FLOAT, g->q, nq) ||
             h5_read_all(f, "forward/k", H5T_NATIVE_FLOAT, g->k, nk) ||
             h5_read_all(f, "forward/v", H5T_NATIVE_FLOAT, g->v, nk);
    H5Fclose(f);
    return rc ? -1 : 0;
}

static void free_golden(Golden *g)
{
    free(g->tokens); free(g->logits); free(g->attn); free(g->q); free(g->k); free(g->v);
}

/* What the forward pass showed, in the golden layouts. */
typedef struct {
    const Golden *g;
    float *attn, *q, *k, *v;
} Captured;

static int capture_qkv(void *ctx, int layer, int pos0, int n, const float *q, const float *k, const float *v)
{
    Captured *c = ctx;
    const Golden *g = c->g;
    for (int r = 0; r < n; r++) {
        int t = pos0 + r;
        for (int h = 0; h < g->H; h++)
            memcpy(c->q + (((size_t)layer * g->H + h) * g->T + t) * g->D, q + ((size_t)r * g->H + h) * g->D,
                   (size_t)g->D * sizeof(float));
        for (int h = 0; h < g->KV; h++) {
            size_t dst = (((size_t)layer * g->KV + h) * g->T + t) * g->D, src = ((size_t)r * g->KV + h) * g->D;
            memcpy(c->k + dst, k + src, (size_t)g->D * sizeof(float));
            memcpy(c->v + dst, v + src, (size_t)g->D * sizeof(float));
        }
    }
    return 0;
}

static int capture_attention(void *ctx, int layer, int head, int pos0, int n, const float *probs, int ld)
{
    Captured *c = ctx;
    const Golden *g = c->g;
    for (int r = 0; r < n; r++) {
        float *dst = c->attn + (((size_t)layer * g->H + head) * g->T + pos0 + r) * g->T;
        memset(dst, 0, (size_t)g->T * sizeof(float));
        memcpy(dst, probs + (size_t)r * ld, (size_t)(pos0 + r + 1) * sizeof(float));
    }
    return 0;
}

/* Runs the golden tokens (in one block, or one at a time) and compares. */
static void compare_forward(const char *model_path, const char *tok_path, const Golden *g, int stepwise, double tol)
{
    Model m;
    KvError err;
    int rc = model_load(&m, model_path, tok_path, &err);
    CHECK(rc == 0, "load %s: %s", model_path, err.msg);
    if (rc) return;
    ForwardState s;
    CHECK(forward_state_init(&s, &m.cfg, g->T, g->T, &err) == 0, "%s", err.msg);
    size_t T = (size_t)g->T;
    Captured c = {g, calloc((size_t)g->L * g->H * T * T, 4), malloc((size_t)g->L * g->H * T * g->D * 4),
                  malloc((size_t)g->L * g->KV * T * g->D * 4), malloc((size_t)g->L * g->KV * T * g->D * 4)};
    float *logits = malloc(T * g->V * sizeof(float));
    ForwardObserver obs = {&c, capture_qkv, capture_attention};
    if (stepwise)
        for (int t = 0; t < g->T; t++)
            CHECK(forward_block(&m, &s, g->tokens + t, 1, t, logits + (size_t)t * g->V, &obs, NULL, &err) == 0, "%s", err.msg);
    else
        CHECK(forward_block(&m, &s, g->tokens, g->T, 0, logits, &obs, NULL, &err) == 0, "%s", err.msg);
    double e_logits = rel_max_error(logits, g->logits, T * g->V);
    double e_attn = rel_max_error(c.attn, g->attn, (size_t)g->L * g->H * T * T);
    double e_q = rel_max_error(c.q, g->q, (size_t)g->L * g->H * T * g->D);
    double e_k = rel_max_error(c.k, g->k, (size_t)g->L * g->KV * T * g->D);
    double e_v = rel_max_error(c.v, g->v, (size_t)g->L * g->KV * T * g->D);
    printf("%s (%s): relative max error logits %.2e attention %.2e q %.2e k %.2e v %.2e (tolerance %.0e)\n",
           model_path, stepwise ? "token by token" : "one block", e_logits, e_attn, e_q, e_k, e_v, tol);
    CHECK(e_logits <= tol, "logits error %g", e_logits);
    CHECK(e_attn <= tol, "attention error %g", e_attn);
    CHECK(e_q <= tol && e_k <= tol && e_v <= tol, "q/k/v error %g %g %g", e_q, e_k, e_v);
    int agree = 0;
    for (int t = 0; t < g->T; t++)
        agree += argmax(logits + (size_t)t * g->V, g->V) == argmax(g->logits + (size_t)t * g->V, g->V);
    CHECK(agree == g->T, "top-1 agrees on %d of %d positions", agree, g->T);
    free(logits); free(c.attn); free(c.q); free(c.k); free(c.v);
    forward_state_free(&s);
    model_free(&m);
}

static void check_tokenizer_cases(const Tokenizer *tok, const char *golden_path)
{
    hid_t f = H5Fopen(golden_path, H5F_ACC_RDONLY, H5P_DEFAULT);
    int cases = 0;
    for (int i = 0;; i++, cases++) {
        char path[64];
        snprintf(path, sizeof path, "tokenizer/case%d", i);
        if (!h5_exists(f, path)) break;
        hid_t g = H5Gopen2(f, path, H5P_DEFAULT);
        char *text = h5_attr_read_str_alloc(g, "text");
        int rank;
        hsize_t dims[8];
        h5_dataset_shape(g, "ids", &rank, dims);
        int *want = malloc(dims[0] * sizeof(int)), *got, n;
        h5_read_all(g, "ids", H5T_NATIVE_INT, want, dims[0]);
        KvError err;
        CHECK(tokenizer_encode(tok, text, &got, &n, &err) == 0, "%s", err.msg);
        int same = n == (int)dims[0] && memcmp(got, want, (size_t)n * sizeof(int)) == 0;
        CHECK(same, "case%d '%s': %d ids, want %d", i, text, n, (int)dims[0]);
        printf("tokenizer case%d: %d ids %s\n", i, n, same ? "match" : "DIFFER");
        free(got); free(want); free(text);
        H5Gclose(g);
    }
    H5Fclose(f);
    CHECK(cases >= 5, "only %d tokenizer cases found", cases);
}

/* Writes the GGUF's tensors as a llama2.c checkpoint (version 0 header,
 * separate classifier) and its pieces as tokenizer.bin. */
static void write_llama2c(const char *gguf_path, const char *bin_path, const char *tok_path)
{
    Model m;
    KvError err;
    CHECK(model_load(&m, gguf_path, NULL, &err) == 0, "%s", err.msg);
    CHECK(model_dequantize_all(&m, &err) == 0, "%s", err.msg); /* every matrix as float32 */
    const ModelConfig *c = &m.cfg;
    FILE *fp = fopen(bin_path, "wb");
    int tied = m.output.data == m.token_embd.data;
    int32_t header[7] = {c->dim, c->hidden_dim, c->n_layers, c->n_heads, c->n_kv_heads,
                         tied ? c->vocab_size : -c->vocab_size, c->max_seq_len};
    fwrite(header, 4, 7, fp);
    size_t dim = (size_t)c->dim, qd = (size_t)c->n_heads * c->head_dim, kvd = (size_t)c->n_kv_heads * c->head_dim;
    size_t hid = (size_t)c->hidden_dim;
    fwrite(m.token_embd.data, 4, (size_t)c->vocab_size * dim, fp);
#define ALL_LAYERS(field, n) for (int l = 0; l < c->n_layers; l++) fwrite(m.layers[l].field, 4, n, fp);
    ALL_LAYERS(attn_norm, dim) ALL_LAYERS(wq.data, qd * dim) ALL_LAYERS(wk.data, kvd * dim)
    ALL_LAYERS(wv.data, kvd * dim) ALL_LAYERS(wo.data, dim * qd) ALL_LAYERS(ffn_norm, dim)
    ALL_LAYERS(w_gate.data, hid * dim) ALL_LAYERS(w_down.data, dim * hid) ALL_LAYERS(w_up.data, hid * dim)
#undef ALL_LAYERS
    fwrite(m.output_norm, 4, dim, fp);
    float *freqs = calloc((size_t)c->max_seq_len * c->head_dim, 4); /* unused RoPE tables */
    fwrite(freqs, 4, (size_t)c->max_seq_len * c->head_dim, fp);
    free(freqs);
    if (!tied) fwrite(m.output.data, 4, (size_t)c->vocab_size * dim, fp);
    fclose(fp);
    fp = fopen(tok_path, "wb");
    int max_len = 0;
    for (int i = 0; i < m.tokenizer.vocab_size; i++)
        if ((int)strlen(m.tokenizer.pieces[i]) > max_len) max_len = (int)strlen(m.tokenizer.pieces[i]);
    fwrite(&max_len, 4, 1, fp);
    for (int i = 0; i < m.tokenizer.vocab_size; i++) {
        int len = (int)strlen(m.tokenizer.pieces[i]);
        fwrite(&m.tokenizer.scores[i], 4, 1, fp);
        fwrite(&len, 4, 1, fp);
        fwrite(m.tokenizer.pieces[i], 1, (size_t)len, fp);
    }
    fclose(fp);
    model_free(&m);
}

/* Copies the GGUF with every 2-D weight converted to type (F32 kept where the
 * row length is not a whole number of the type's blocks, as llama.cpp does). */
static void write_converted_gguf(const char *src_path, const char *dst_path, uint32_t type)
{
    GgufFile f;
    KvError err;
    CHECK(gguf_open(&f, src_path, &err) == 0, "%s", err.msg);
    GgufWriter *w = gguf_writer_new();
    for (uint64_t i = 0; i < f.n_kv; i++) gguf_writer_copy_kv(w, &f, &f.kv[i]);
    for (uint64_t i = 0; i < f.n_tensors; i++) {
        const GgufTensor *t = &f.tensors[i];
        float *data = malloc(t->n_elements * sizeof(float));
        ggml_dequantize(t->type, t->data, data, t->n_elements);
        uint32_t out = t->n_dims == 2 && t->dims[0] % (uint64_t)ggml_type_info(type)->block_elems == 0 ? type : GGML_F32;
        CHECK(gguf_writer_add_tensor(w, t->name, (int)t->n_dims, t->dims, out, data) == 0, "add %s", t->name);
        free(data);
    }
    CHECK(gguf_writer_save(w, dst_path, &err) == 0, "%s", err.msg);
    gguf_writer_free(w);
    gguf_close(&f);
}

/* 4-bit weights move a 260K-parameter model's logits a lot: the check is
 * that the file loads as Q4_0, runs, and still predicts like the original. */
static void q4_check(const char *path, const Golden *g)
{
    Model m;
    KvError err;
    CHECK(model_load(&m, path, NULL, &err) == 0, "%s", err.msg);
    CHECK(!strcmp(m.weight_type, "Q4_0"), "weight type %s", m.weight_type);
    ForwardState s;
    CHECK(forward_state_init(&s, &m.cfg, g->T, g->T, &err) == 0, "%s", err.msg);
    float *logits = malloc((size_t)g->T * g->V * sizeof(float));
    CHECK(forward_block(&m, &s, g->tokens, g->T, 0, logits, NULL, NULL, &err) == 0, "%s", err.msg);
    double e = rel_max_error(logits, g->logits, (size_t)g->T * g->V);
    int agree = 0;
    for (int t = 0; t < g->T; t++)
        agree += argmax(logits + (size_t)t * g->V, g->V) == argmax(g->logits + (size_t)t * g->V, g->V);
    printf("%s: relative max logit error %.2e, top-1 agrees on %d of %d positions\n", path, e, agree, g->T);
    CHECK(e < 0.3, "logits error %g", e);
    CHECK(agree >= g->T * 3 / 4, "top-1 agrees on %d of %d", agree, g->T);
    free(logits);
    forward_state_free(&s);
    model_free(&m);
}

int main(int argc, char **argv)
{
    if (argc != 5) {
        fprintf(stderr, "usage: test_reference CASE MODEL GOLDEN WORKDIR\n");
        return 2;
    }
    const char *what = argv[1], *model = argv[2], *golden_path = argv[3], *work = argv[4];
    h5_quiet();
    char parent[1024];
    snprintf(parent, sizeof parent, "%s", work);
    for (char *p = parent + 1; *p; p++)
        if (*p == '/') { *p = 0; mkdir(parent, 0755); *p = '/'; }
    mkdir(work, 0755);
    Golden g;
    if (load_golden(&g, golden_path)) {
        fprintf(stderr, "cannot read %s\n", golden_path);
        return 1;
    }
    char a[1024], b[1024];
    if (!strcmp(what, "tokenizer")) {
        Model m;
        KvError err;
        CHECK(model_load(&m, model, NULL, &err) == 0, "%s", err.msg);
        CHECK(m.has_tokenizer, "no tokenizer: %s", m.tokenizer_note);
        check_tokenizer_cases(&m.tokenizer, golden_path);
        model_free(&m);
    } else if (!strcmp(what, "forward")) {
        compare_forward(model, NULL, &g, 0, 1e-4);
    } else if (!strcmp(what, "forward-stepwise")) {
        compare_forward(model, NULL, &g, 1, 1e-4);
    } else if (!strcmp(what, "llama2c")) {
        snprintf(a, sizeof a, "%s/stories260K.bin", work);
        snprintf(b, sizeof b, "%s/tokenizer.bin", work);
        write_llama2c(model, a, b);
        compare_forward(a, b, &g, 0, 1e-4);
        Model m;
        KvError err;
        CHECK(model_load(&m, a, NULL, &err) == 0, "%s", err.msg); /* finds tokenizer.bin beside it */
        CHECK(m.has_tokenizer && !strcmp(m.format, "llama2c"), "llama2c model without tokenizer");
        if (m.has_tokenizer) check_tokenizer_cases(&m.tokenizer, golden_path);
        model_free(&m);
    } else if (!strcmp(what, "q4_0")) {
        snprintf(a, sizeof a, "%s/stories260K-q4_0.gguf", work);
        write_converted_gguf(model, a, GGML_Q4_0);
        q4_check(a, &g);
    } else if (!strcmp(what, "f16") || !strcmp(what, "q8_0")) {
        int f16 = !strcmp(what, "f16");
        snprintf(a, sizeof a, "%s/stories260K-%s.gguf", work, what);
        write_converted_gguf(model, a, f16 ? GGML_F16 : GGML_Q8_0);
        /* float16 keeps ~3 decimal digits, Q8_0 ~2; errors compound over 5 layers
         * and attention probabilities are the most sensitive output */
        compare_forward(a, NULL, &g, 0, f16 ? 2e-3 : 5e-2);
    } else {
        fprintf(stderr, "unknown case %s\n", what);
        return 2;
    }
    free_golden(&g);
    return check_status();
}
