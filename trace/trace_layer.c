#include "trace_layer.h"

#include <cblas.h>
#include <hdf5.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../util/softmax.h"
#include "h5util.h"

void trace_layer_free(LayerData *ld)
{
    free(ld->q); free(ld->k); free(ld->v); free(ld->k_norm); free(ld->v_l1);
    free(ld->unit_k_norm); free(ld->unit_v_l1);
    memset(ld, 0, sizeof *ld);
}

/* [T][heads][d] -> [heads][T][d] */
static void by_head(const float *src, float *dst, int T, int heads, int d)
{
    for (int t = 0; t < T; t++)
        for (int h = 0; h < heads; h++)
            memcpy(dst + ((size_t)h * T + t) * d, src + ((size_t)t * heads + h) * d, (size_t)d * sizeof(float));
}

/* Heads [first, first + width) of a [T][heads][d] dataset into dst, head-major
 * [heads][T][d]. */
static int read_heads(const TraceReader *r, int seq, int layer, const char *name, int T, int d, int first, int width,
                      float *raw, float *dst, KvError *err)
{
    size_t n = (size_t)T * width * d;
    if (trace_read_layer_heads(r, seq, layer, name, first, width, raw, n, err)) return -1;
    by_head(raw, dst + (size_t)first * T * d, T, width, d);
    return 0;
}

/* Kv heads [x0, x1) and their query heads. */
static int read_kv_heads(const TraceReader *r, int seq, int layer, int values, int x0, int x1, float *raw,
                         float *norms, LayerData *ld, KvError *err)
{
    int T = ld->T, d = ld->d, group = ld->H / ld->KV, w = x1 - x0;
    if (read_heads(r, seq, layer, "q", T, d, x0 * group, w * group, raw, ld->q, err) ||
        read_heads(r, seq, layer, "k", T, d, x0, w, raw, ld->k, err) ||
        read_heads(r, seq, layer, "k_norm", T, 1, x0, w, norms, ld->k_norm, err))
        return -1;
    if (!values) return 0;
    return read_heads(r, seq, layer, "v", T, d, x0, w, raw, ld->v, err) ||
                   read_heads(r, seq, layer, "v_norm_l1", T, 1, x0, w, norms, ld->v_l1, err)
               ? -1 : 0;
}

/* The end of the run of kv heads from x0 that are all wanted or all not. */
static int run_end(const uint8_t *kv_heads, int KV, int x0)
{
    int x1 = x0 + 1;
    while (x1 < KV && kv_heads && !kv_heads[x1] == !kv_heads[x0]) x1++;
    return kv_heads ? x1 : KV;
}

static void *alloc_floats(size_t n, int zeroed) { return zeroed ? calloc(n, sizeof(float)) : malloc(n * sizeof(float)); }

int trace_load_layer(const TraceReader *r, int seq, int layer, const TraceSeqInfo *info, int values,
                     const uint8_t *kv_heads, LayerData *ld, KvError *err)
{
    const TraceMeta *m = &r->meta;
    ld->T = info->n_tokens; ld->H = m->n_heads; ld->KV = m->n_kv_heads; ld->d = m->head_dim;
    int widest = 0, subset = 0;
    for (int x0 = 0, x1; x0 < ld->KV; x0 = x1) { /* runs of wanted kv heads */
        x1 = run_end(kv_heads, ld->KV, x0);
        if (!kv_heads || kv_heads[x0]) widest = x1 - x0 > widest ? x1 - x0 : widest;
        else subset = 1;
    }
    size_t T = (size_t)ld->T, group = (size_t)(ld->H / ld->KV), d = (size_t)ld->d;
    size_t qn = T * ld->H * d, kn = T * ld->KV * d, nn = T * ld->KV;
    /* a subset leaves the other heads zero: pages never touched, never resident */
    float *raw = malloc(T * widest * group * d * sizeof(float) + 1), *norms = malloc(T * widest * sizeof(float) + 1);
    ld->q = alloc_floats(qn, subset);
    ld->k = alloc_floats(kn, subset);
    ld->v = values ? alloc_floats(kn, subset) : NULL;
    ld->k_norm = alloc_floats(nn, subset);
    ld->v_l1 = values ? alloc_floats(nn, subset) : NULL;
    int rc = -1;
    if (!raw || !norms || !ld->q || !ld->k || (values && (!ld->v || !ld->v_l1)) || !ld->k_norm) {
        kv_fail(err, "out of memory loading layer %d", layer);
        goto done;
    }
    for (int x0 = 0, x1; x0 < ld->KV; x0 = x1) {
        x1 = run_end(kv_heads, ld->KV, x0);
        if ((!kv_heads || kv_heads[x0]) && read_kv_heads(r, seq, layer, values, x0, x1, raw, norms, ld, err))
            goto done;
    }
    rc = 0;
done:
    free(raw);
    free(norms);
    return rc;
}

int trace_layer_background_ok(void)
{
    hbool_t threadsafe = 0;
    return H5is_library_threadsafe(&threadsafe) >= 0 && threadsafe;
}

static void *load_layer(void *arg)
{
    LayerLoad *l = arg;
    h5_quiet(); /* HDF5's error stack is per thread */
    l->rc = trace_load_layer(l->reader, l->seq, l->layer, &l->info, l->values, l->kv_heads, &l->ld, &l->err);
    return NULL;
}

void trace_layer_load_start(LayerLoad *l, const TraceReader *r, int seq, int layer, const TraceSeqInfo *info,
                            int values, const uint8_t *kv_heads, int background)
{
    *l = (LayerLoad){.reader = r, .seq = seq, .layer = layer, .values = values, .kv_heads = kv_heads, .info = *info};
    l->in_background = background && pthread_create(&l->thread, NULL, load_layer, l) == 0;
    if (!l->in_background) load_layer(l);
}

int trace_layer_load_finish(LayerLoad *l, KvError *err)
{
    if (l->in_background) pthread_join(l->thread, NULL);
    l->in_background = 0;
    if (l->rc) *err = l->err;
    return l->rc;
}

void attention_rows(const float *q, const float *k, int d, int t0, int n, float *out, long ld)
{
    float scale = 1.0f / sqrtf((float)d);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, t0 + n, d, scale, q + (size_t)t0 * d, d, k, d, 0.0f,
                out, (int)ld);
    for (int r = 0; r < n; r++) softmax_inplace(out + r * ld, t0 + r + 1);
}
