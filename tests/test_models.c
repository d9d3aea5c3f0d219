/* The helper of test_models.py: writes synthetic models, and runs a model
 * the ways kvtrace can, checking they agree bit for bit.
 *
 * usage: test_models write OUT.gguf ARCH ROPE TYPE [DIM HIDDEN LAYERS HEADS KV_HEADS VOCAB]
 *        test_models forward MODEL.gguf OUTDIR TOKENS
 *   forward runs TOKENS (comma-separated ids) through the model with the
 *   weights encoded, as one block and token by token, on 1 and 3 threads,
 *   and again with every matrix dequantized to float32 at load.  It checks
 *   that the thread counts (token by token also 2) and the two weight paths
 *   give identical bits (token by token with integer products: within 1e-4,
 *   and not identical, so the integer path is known to run), and
 *   writes q, k, v ([layer][t][heads*head_dim]) and logits ([t][vocab]) of
 *   the block run and of the token-by-token run (step-*.f32) to OUTDIR. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "../trace/forward.h"
#include "../trace/qkernels.h"
#include "../trace/quant.h"
#include "../trace/synthetic.h"
#include "check.h"

typedef struct {
    int T, L, qd, kvd, V;
    float *q, *k, *v, *logits;
} Outputs;

static int capture(void *ctx, int layer, int pos0, int n, const float *q, const float *k, const float *v)
{
    Outputs *o = ctx;
    for (int r = 0; r < n; r++) {
        size_t t = (size_t)layer * o->T + pos0 + r;
        memcpy(o->q + t * o->qd, q + (size_t)r * o->qd, (size_t)o->qd * 4);
        memcpy(o->k + t * o->kvd, k + (size_t)r * o->kvd, (size_t)o->kvd * 4);
        memcpy(o->v + t * o->kvd, v + (size_t)r * o->kvd, (size_t)o->kvd * 4);
    }
    return 0;
}

static void outputs_alloc(Outputs *o, const ModelConfig *c, int T)
{
    *o = (Outputs){T, c->n_layers, c->n_heads * c->head_dim, c->n_kv_heads * c->head_dim, c->vocab_size, 0, 0, 0, 0};
    size_t rows = (size_t)o->L * T;
    o->q = calloc(rows * o->qd, 4);
    o->k = calloc(rows * o->kvd, 4);
    o->v = calloc(rows * o->kvd, 4);
    o->logits = calloc((size_t)T * o->V, 4);
}

static void outputs_free(Outputs *o)
{
    free(o->q); free(o->k); free(o->v); free(o->logits);
}

static int outputs_equal(const Outputs *a, const Outputs *b)
{
    size_t rows = (size_t)a->L * a->T;
    return !memcmp(a->q, b->q, rows * a->qd * 4) && !memcmp(a->k, b->k, rows * a->kvd * 4) &&
           !memcmp(a->v, b->v, rows * a->kvd * 4) && !memcmp(a->logits, b->logits, (size_t)a->T * a->V * 4);
}

/* The largest |a - b| of each output over its largest |b|, the worst of the four. */
static double outputs_error(const Outputs *a, const Outputs *b)
{
    size_t rows = (size_t)a->L * a->T;
    const float *x[4] = {a->q, a->k, a->v, a->logits}, *y[4] = {b->q, b->k, b->v, b->logits};
    size_t n[4] = {rows * a->qd, rows * a->kvd, rows * a->kvd, (size_t)a->T * a->V};
    double worst = 0;
    for (int i = 0; i < 4; i++) {
        double diff = 0, size = 0;
        for (size_t j = 0; j < n[i]; j++) {
            diff = fmax(diff, fabs((double)x[i][j] - y[i][j]));
            size = fmax(size, fabs((double)y[i][j]));
        }
        worst = fmax(worst, size > 0 ? diff / size : diff);
    }
    return worst;
}

/* Whether single tokens take integer products for some matrix of the model
 * (its type has qkernels.h's dot_x16 on this processor): then encoded
 * weights round the input, dequantized ones do not. */
static int integer_products(const Model *m)
{
    const QMatrix *any = &m->output;
    int found = qkernels()->type[any->type].dot_x16 != NULL;
    for (int l = 0; l < m->cfg.n_layers; l++) {
        const LayerWeights *w = &m->layers[l];
        const QMatrix *ws[7] = {&w->wq, &w->wk, &w->wv, &w->wo, &w->w_gate, &w->w_up, &w->w_down};
        for (int i = 0; i < 7; i++) found |= qkernels()->type[ws[i]->type].dot_x16 != NULL;
    }
    return found;
}

/* One run: all tokens as one block, or one at a time. */
static void run(const Model *m, const int *tokens, int T, int stepwise, int threads, Outputs *o)
{
    ForwardState s;
    KvError err;
    int rc = forward_state_init(&s, &m->cfg, T, stepwise ? 1 : T, &err);
    if (rc == 0 && threads > 1) rc = forward_state_threads(&s, threads, &err);
    CHECK(rc == 0, "%s", err.msg);
    if (rc) return;
    outputs_alloc(o, &m->cfg, T);
    ForwardObserver obs = {o, capture, NULL};
    for (int t = 0; t < T; t += stepwise ? 1 : T)
        CHECK(forward_block(m, &s, tokens + t, stepwise ? 1 : T, t, o->logits + (size_t)t * o->V, &obs, NULL, &err) == 0,
              "%s", err.msg);
    forward_state_free(&s);
}

static void dump(const char *dir, const char *prefix, const Outputs *o)
{
    const char *names[4] = {"q", "k", "v", "logits"};
    const float *data[4] = {o->q, o->k, o->v, o->logits};
    size_t rows = (size_t)o->L * o->T, counts[4] = {rows * o->qd, rows * o->kvd, rows * o->kvd, (size_t)o->T * o->V};
    for (int i = 0; i < 4; i++) {
        char path[1024];
        snprintf(path, sizeof path, "%s/%s%s.f32", dir, prefix, names[i]);
        FILE *fp = fopen(path, "wb");
        CHECK(fp && fwrite(data[i], 4, counts[i], fp) == counts[i], "cannot write %s", path);
        if (fp) fclose(fp);
    }
}

static void forward_all_ways(const char *model_path, const char *dir, const char *token_list)
{
    int tokens[4096], T = 0;
    for (const char *p = token_list; *p && T < 4096; p = strchr(p, ',') ? strchr(p, ',') + 1 : p + strlen(p))
        tokens[T++] = atoi(p);
    Model m;
    KvError err;
    int rc = model_load(&m, model_path, NULL, &err);
    CHECK(rc == 0, "%s", err.msg);
    if (rc) return;
    Outputs block1, block3, step1, step2, step3, deq_block, deq_step;
    run(&m, tokens, T, 0, 1, &block1);
    run(&m, tokens, T, 0, 3, &block3);
    run(&m, tokens, T, 1, 1, &step1);
    run(&m, tokens, T, 1, 2, &step2);
    run(&m, tokens, T, 1, 3, &step3);
    CHECK(outputs_equal(&block1, &block3), "a block on 3 threads differs from 1 thread");
    CHECK(outputs_equal(&step1, &step2), "token by token on 2 threads differs from 1 thread");
    CHECK(outputs_equal(&step1, &step3), "token by token on 3 threads differs from 1 thread");
    char type[16];
    snprintf(type, sizeof type, "%s", m.weight_type);
    int integer = integer_products(&m);
    CHECK(model_dequantize_all(&m, &err) == 0, "%s", err.msg);
    run(&m, tokens, T, 0, 2, &deq_block);
    run(&m, tokens, T, 1, 2, &deq_step);
    int same_block = outputs_equal(&block1, &deq_block), same_step = outputs_equal(&step1, &deq_step);
    CHECK(same_block, "%s: a block with weights dequantized at load differs from the encoded weights", type);
    printf("%s: encoded weights = dequantized at load, bit for bit (block: %s, token by token: %s); "
           "1, 2 and 3 threads identical\n", type, same_block ? "yes" : "NO", same_step ? "yes" : "NO");
    if (integer) {
        /* the rounded input must show: otherwise the integer kernels were not used */
        CHECK(!same_step, "%s: token by token gives the float path's bits: integer products not taken", type);
        /* 16-bit input rounding: ~1e-5 per product (test_quant), well inside float32-vs-float64's 1e-4 */
        double e = outputs_error(&step1, &deq_step);
        printf("%s: token by token with integer products: relative difference %.2g from dequantized weights "
               "(bound 1e-4)\n", type, e);
        CHECK(e <= 1e-4, "%s: token by token differs from dequantized weights by %.3g", type, e);
    } else {
        CHECK(same_step, "%s: token by token with weights dequantized at load differs from the encoded weights", type);
    }
    dump(dir, "", &block1);
    dump(dir, "step-", &step1);
    outputs_free(&block1); outputs_free(&block3); outputs_free(&step1); outputs_free(&step2); outputs_free(&step3);
    outputs_free(&deq_block); outputs_free(&deq_step);
    model_free(&m);
}

int main(int argc, char **argv)
{
    if (argc >= 6 && !strcmp(argv[1], "write")) {
        char type_name[32];
        snprintf(type_name, sizeof type_name, "%s", argv[5]);
        char *random = strstr(type_name, "-random"); /* random blocks instead of quantized weights */
        if (random) *random = 0;
        int type = ggml_type_by_name(type_name);
        int shape[6] = {512, 512, 2, 4, 1, 320}; /* GQA 4:1, head_dim 128, n_ff a multiple of 256 */
        for (int i = 0; i < 6 && 6 + i < argc; i++) shape[i] = atoi(argv[6 + i]);
        SyntheticModel s = {.arch = argv[3], .rope_scaling = argv[4], .dim = shape[0], .hidden = shape[1],
                            .layers = shape[2], .heads = shape[3], .kv_heads = shape[4], .vocab = shape[5],
                            .context = 4096, .type = (uint32_t)type, .rope_theta = 10000.0f, .scale = 0.05f,
                            .seed = 1234, .random_blocks = random != NULL};
        KvError err;
        CHECK(type >= 0, "unknown type %s", argv[5]);
        CHECK(type < 0 || synthetic_model_write(&s, argv[2], &err) == 0, "%s", err.msg);
    } else if (argc == 5 && !strcmp(argv[1], "forward")) {
        forward_all_ways(argv[2], argv[3], argv[4]);
    } else {
        fprintf(stderr, "usage: test_models write OUT ARCH ROPE TYPE [shape] | forward MODEL OUTDIR TOKENS\n");
        return 2;
    }
    return check_status();
}
