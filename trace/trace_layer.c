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

int trace_load_layer(const TraceReader *r, int seq, int layer, const TraceSeqInfo *info, int values,
                     LayerData *ld, KvError *err)
{
    const TraceMeta *m = &r->meta;
    ld->T = info->n_tokens; ld->H = m->n_heads; ld->KV = m->n_kv_heads; ld->d = m->head_dim;
    size_t T = (size_t)ld->T, qn = T * ld->H * ld->d, kn = T * ld->KV * ld->d, nn = T * ld->KV;
    float *raw = malloc(qn * sizeof(float)), *norms = malloc(nn * sizeof(float));
    ld->q = malloc(qn * sizeof(float));
    ld->k = malloc(kn * sizeof(float));
    ld->v = values ? malloc(kn * sizeof(float)) : NULL;
    ld->k_norm = malloc(nn * sizeof(float));
    ld->v_l1 = values ? malloc(nn * sizeof(float)) : NULL;
    int rc = -1;
    if (!raw || !norms || !ld->q || !ld->k || (values && (!ld->v || !ld->v_l1)) || !ld->k_norm) {
        kv_fail(err, "out of memory loading layer %d", layer);
        goto done;
    }
    if (trace_read_layer(r, seq, layer, "q", raw, qn, err)) goto done;
    by_head(raw, ld->q, ld->T, ld->H, ld->d);
    if (trace_read_layer(r, seq, layer, "k", raw, kn, err)) goto done;
    by_head(raw, ld->k, ld->T, ld->KV, ld->d);
    if (trace_read_layer(r, seq, layer, "k_norm", norms, nn, err)) goto done;
    by_head(norms, ld->k_norm, ld->T, ld->KV, 1);
    if (values) {
        if (trace_read_layer(r, seq, layer, "v", raw, kn, err)) goto done;
        by_head(raw, ld->v, ld->T, ld->KV, ld->d);
        if (trace_read_layer(r, seq, layer, "v_norm_l1", norms, nn, err)) goto done;
        by_head(norms, ld->v_l1, ld->T, ld->KV, 1);
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
    l->rc = trace_load_layer(l->reader, l->seq, l->layer, &l->info, l->values, &l->ld, &l->err);
    return NULL;
}

void trace_layer_load_start(LayerLoad *l, const TraceReader *r, int seq, int layer, const TraceSeqInfo *info,
                            int values, int background)
{
    *l = (LayerLoad){.reader = r, .seq = seq, .layer = layer, .values = values, .info = *info};
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
