#include "trace_file.h"

#include <errno.h>
#include <hdf5.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "h5util.h"
#include "quant.h"

#define CHUNK_ROWS 64
#define DEFLATE_LEVEL 1            /* fast: recording must keep pace with the model */
#define ATTENTION_STAGE_BYTES (64u << 20)
#define STAGE_BYTES (4u << 20) /* q/k/v staging beyond one block of rows */

enum { D_Q, D_K, D_V, D_KNORM, D_VL1, D_VL2, D_ATTN, D_PER_LAYER };
static const char *LAYER_DATASETS[D_PER_LAYER] = {"q", "k", "v", "k_norm", "v_norm_l1", "v_norm_l2", "attention"};

struct TraceWriter {
    hid_t file;
    char *path, *display; /* the file written, and the name messages give */
    TraceMeta meta;
    TraceOptions opt;
    int capacity, stage_cap;
    hid_t f16;
    int n_planned, n_sequences, all_complete;
    /* the sequence being written */
    hid_t seq;
    hid_t d_tokens, d_pieces, d_nll;
    hid_t *d_layer;      /* [n_layers][D_PER_LAYER] */
    int flushed, staged; /* rows written / rows staged (absolute) */
    int *tokens;
    char **pieces;
    /* q, k, v staged as the file stores them (float16 or float32: qkv_size
     * bytes each), so a block of rows costs half the memory in float16 */
    unsigned char *q;                        /* [layer][stage row][...] */
    size_t qkv_size;
    /* k and v are not staged: the KV source (trace_writer_kv_source) holds
     * them; kv_rows is one layer's rows gathered from it for a flush */
    const float *kv_keys, *kv_values;
    int kv_capacity;
    unsigned char *kv_rows;                  /* [stage row][n_kv_heads * head_dim] */
    float *k_norm, *v_l1, *v_l2;             /* [layer][stage row][...] */
    float *attention;                        /* [layer][head][stage row][capacity] */
    float *nll;                              /* [capacity]; row t is known once token t+1 is */
};

/* ------------------------------------------------------------ writing */

static int write_root_meta(TraceWriter *w)
{
    const TraceMeta *m = &w->meta;
    hid_t f = w->file;
    int bad = h5_attr_write_str(f, "format", TRACE_FORMAT) || h5_attr_write_str(f, "model_name", m->model_name) ||
              h5_attr_write_str(f, "model_architecture", m->model_arch) ||
              h5_attr_write_str(f, "model_sha256", m->model_digest) ||
              h5_attr_write_str(f, "model_file", m->model_file) ||
              h5_attr_write_str(f, "model_weight_type", m->model_weight_type) ||
              h5_attr_write_int(f, "n_layers", m->n_layers) || h5_attr_write_int(f, "n_heads", m->n_heads) ||
              h5_attr_write_int(f, "n_kv_heads", m->n_kv_heads) || h5_attr_write_int(f, "head_dim", m->head_dim) ||
              h5_attr_write_int(f, "model_dim", m->dim) || h5_attr_write_int(f, "vocab_size", m->vocab_size) ||
              h5_attr_write_double(f, "rope_theta", m->rope_theta) ||
              h5_attr_write_str(f, "rope_layout", m->rope_layout) ||
              h5_attr_write_str(f, "recorder_version", m->recorder_version) ||
              h5_attr_write_str(f, "created", m->created) || h5_attr_write_str(f, "command", m->command) ||
              h5_attr_write_int(f, "attention_stored", w->opt.store_attention) ||
              h5_attr_write_str(f, "qkv_dtype", w->opt.half ? "float16" : "float32") ||
              h5_attr_write_int(f, "n_sequences", w->n_planned) || h5_attr_write_int(f, "complete", 0);
    return bad ? -1 : 0;
}

static void free_staging(TraceWriter *w)
{
    if (w->pieces)
        for (int i = 0; i < w->stage_cap; i++) free(w->pieces[i]);
    free(w->tokens); free(w->pieces); free(w->q); free(w->kv_rows); free(w->k_norm);
    free(w->v_l1); free(w->v_l2); free(w->attention); free(w->nll); free(w->d_layer);
}

static int alloc_staging(TraceWriter *w)
{
    const TraceMeta *m = &w->meta;
    size_t L = (size_t)m->n_layers, S = (size_t)w->stage_cap;
    size_t qd = (size_t)m->n_heads * m->head_dim;
    w->tokens = calloc(S, sizeof *w->tokens);
    w->pieces = calloc(S, sizeof *w->pieces);
    w->qkv_size = w->opt.half ? sizeof(uint16_t) : sizeof(float);
    w->q = malloc(L * S * qd * w->qkv_size);
    w->k_norm = malloc(L * S * m->n_kv_heads * sizeof(float));
    w->v_l1 = malloc(L * S * m->n_kv_heads * sizeof(float));
    w->v_l2 = malloc(L * S * m->n_kv_heads * sizeof(float));
    w->nll = malloc((size_t)w->capacity * sizeof(float));
    w->d_layer = malloc(L * D_PER_LAYER * sizeof(hid_t));
    if (w->opt.store_attention)
        w->attention = calloc(L * m->n_heads * S * (size_t)w->capacity, sizeof(float));
    return (!w->tokens || !w->pieces || !w->q || !w->k_norm || !w->v_l1 || !w->v_l2 || !w->nll ||
            !w->d_layer || (w->opt.store_attention && !w->attention))
               ? -1 : 0;
}

int trace_writer_stage_rows(const TraceWriter *w) { return w->stage_cap; }
int trace_writer_pending(const TraceWriter *w) { return w->staged - w->flushed; }

static int create_layer_datasets(TraceWriter *w, hid_t layer_group)
{
    const TraceMeta *m = &w->meta;
    hsize_t H = (hsize_t)m->n_heads, KV = (hsize_t)m->n_kv_heads, D = (hsize_t)m->head_dim, C = CHUNK_ROWS;
    hid_t qkv_type = w->opt.half ? w->f16 : H5T_IEEE_F32LE;
    hsize_t qdims[3] = {0, H, D}, qchunk[3] = {C, H, D};
    hsize_t kdims[3] = {0, KV, D}, kchunk[3] = {C, KV, D};
    hsize_t ndims[2] = {0, KV}, nchunk[2] = {C, KV};
    hid_t d[D_PER_LAYER];
    d[D_Q] = h5_create_growable(layer_group, "q", qkv_type, 3, qdims, qchunk, 1, DEFLATE_LEVEL);
    d[D_K] = h5_create_growable(layer_group, "k", qkv_type, 3, kdims, kchunk, 1, DEFLATE_LEVEL);
    d[D_V] = h5_create_growable(layer_group, "v", qkv_type, 3, kdims, kchunk, 1, DEFLATE_LEVEL);
    d[D_KNORM] = h5_create_growable(layer_group, "k_norm", H5T_IEEE_F32LE, 2, ndims, nchunk, 1, DEFLATE_LEVEL);
    d[D_VL1] = h5_create_growable(layer_group, "v_norm_l1", H5T_IEEE_F32LE, 2, ndims, nchunk, 1, DEFLATE_LEVEL);
    d[D_VL2] = h5_create_growable(layer_group, "v_norm_l2", H5T_IEEE_F32LE, 2, ndims, nchunk, 1, DEFLATE_LEVEL);
    d[D_ATTN] = -1;
    if (w->opt.store_attention) {
        /* both T axes grow, the head axis does not: built by hand */
        hsize_t achunk[3] = {1, C, C}, cur[3] = {H, 0, 0}, max[3] = {H, H5S_UNLIMITED, H5S_UNLIMITED};
        hid_t space = H5Screate_simple(3, cur, max), dcpl = H5Pcreate(H5P_DATASET_CREATE);
        if (space >= 0 && dcpl >= 0 && h5_set_chunked(dcpl, 3, achunk, DEFLATE_LEVEL, 1) == 0)
            d[D_ATTN] = H5Dcreate2(layer_group, "attention", H5T_IEEE_F32LE, space, H5P_DEFAULT, dcpl, H5P_DEFAULT);
        if (dcpl >= 0) H5Pclose(dcpl);
        if (space >= 0) H5Sclose(space);
    }
    int bad = 0;
    for (int i = 0; i < D_PER_LAYER; i++) {
        if (d[i] >= 0) H5Dclose(d[i]);
        else if (i != D_ATTN || w->opt.store_attention) bad = 1;
    }
    return bad ? -1 : 0;
}

static hid_t string_type(void)
{
    hid_t str = H5Tcopy(H5T_C_S1);
    if (str >= 0 && (H5Tset_size(str, H5T_VARIABLE) < 0 || H5Tset_cset(str, H5T_CSET_UTF8) < 0)) {
        H5Tclose(str);
        return -1;
    }
    return str;
}

static int create_sequence_datasets(TraceWriter *w, hid_t seq)
{
    hsize_t dims[1] = {0}, chunk[1] = {256};
    hid_t str = string_type();
    hid_t d[3] = {h5_create_growable(seq, "tokens", H5T_STD_I32LE, 1, dims, chunk, 1, DEFLATE_LEVEL),
                  str >= 0 ? h5_create_growable(seq, "pieces", str, 1, dims, chunk, 1, DEFLATE_LEVEL) : -1,
                  h5_create_growable(seq, "nll", H5T_IEEE_F32LE, 1, dims, chunk, 1, DEFLATE_LEVEL)};
    if (str >= 0) H5Tclose(str);
    int bad = 0;
    for (int i = 0; i < 3; i++) {
        if (d[i] < 0) bad = 1;
        else H5Dclose(d[i]);
    }
    hid_t layers = bad ? -1 : H5Gcreate2(seq, "layers", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    if (layers < 0) return -1;
    for (int l = 0; l < w->meta.n_layers && !bad; l++) {
        char name[16];
        snprintf(name, sizeof name, "%03d", l);
        hid_t g = H5Gcreate2(layers, name, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
        bad = g < 0 || create_layer_datasets(w, g);
        if (g >= 0) H5Gclose(g);
    }
    H5Gclose(layers);
    return bad ? -1 : 0;
}

/* One empty sequence: attributes (complete = 0, n_rows = 0) and datasets. */
static int create_sequence(TraceWriter *w, int index, const TraceSequencePlan *p)
{
    char name[64];
    snprintf(name, sizeof name, "sequences/%04d", index);
    hid_t g = H5Gcreate2(w->file, name, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    int bad = g < 0 || h5_attr_write_str(g, "prompt", p->prompt ? p->prompt : "") ||
              h5_attr_write_int(g, "n_prompt", p->n_prompt) || h5_attr_write_int(g, "n_rows", 0) ||
              h5_attr_write_int(g, "complete", 0);
    for (int i = 0; i < p->n_attrs && !bad; i++) bad = h5_attr_write_double(g, p->attr_names[i], p->attr_values[i]);
    if (!bad) bad = create_sequence_datasets(w, g);
    if (g >= 0) H5Gclose(g);
    return bad ? -1 : 0;
}

static void writer_free(TraceWriter *w)
{
    if (w->f16 >= 0) H5Tclose(w->f16);
    free_staging(w);
    free(w->path);
    free(w->display);
    free(w);
}

/* Rows staged between flushes.  A block of rows is staged whole (all layers'
 * q/k/v are known only when the block has run), so the stage holds at least
 * the recorder's block, in whole chunks.  Beyond that, two chunks' rows make
 * flushes rarer for small models; for wide ones (TinyLlama: 225 KB per row)
 * one chunk, so that staging stays small beside the model. */
static int stage_rows(const TraceMeta *m, const TraceOptions *opt)
{
    size_t row_bytes = (size_t)m->n_layers * (size_t)(m->n_heads + 2 * m->n_kv_heads) * m->head_dim *
                       (opt->half ? sizeof(uint16_t) : sizeof(float));
    int rows = row_bytes * 2 * CHUNK_ROWS <= STAGE_BYTES ? 2 * CHUNK_ROWS : CHUNK_ROWS;
    int block = (opt->block_rows + CHUNK_ROWS - 1) / CHUNK_ROWS * CHUNK_ROWS;
    return block > rows ? block : rows;
}

TraceWriter *trace_writer_create(const char *path, const char *display, const TraceMeta *meta,
                                 const TraceOptions *opt, const TraceSequencePlan *plan, int n_sequences,
                                 KvError *err)
{
    TraceWriter *w = calloc(1, sizeof *w);
    if (!w) return kv_fail(err, "%s: out of memory", display ? display : path), NULL;
    w->file = w->f16 = -1;
    w->path = strdup(path);
    w->display = strdup(display ? display : path);
    w->meta = *meta;
    w->opt = *opt;
    w->n_planned = n_sequences;
    w->all_complete = 1;
    w->seq = -1;
    w->capacity = 1;
    for (int i = 0; i < n_sequences; i++)
        if (plan[i].capacity > w->capacity) w->capacity = plan[i].capacity;
    w->stage_cap = stage_rows(meta, opt);
    if (opt->store_attention) { /* bound the staged attention rows by memory */
        size_t row_bytes = (size_t)meta->n_layers * meta->n_heads * (size_t)w->capacity * sizeof(float);
        size_t rows = ATTENTION_STAGE_BYTES / row_bytes;
        if (rows < (size_t)w->stage_cap) w->stage_cap = rows < 1 ? 1 : (int)rows;
    }
    if (!w->path || !w->display || alloc_staging(w)) {
        kv_fail(err, "%s: out of memory", display ? display : path);
        goto fail;
    }
    errno = 0;
    w->f16 = h5_float16_type();
    w->file = h5_create_file(path);
    if (w->file < 0 || w->f16 < 0) {
        output_io_error(err, w->display, "trace");
        goto fail;
    }
    hid_t g = H5Gcreate2(w->file, "sequences", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    int bad = g < 0 || write_root_meta(w);
    if (g >= 0) H5Gclose(g);
    for (int i = 0; i < n_sequences && !bad; i++) bad = create_sequence(w, i, &plan[i]);
    /* from here on only appends and in-place attribute updates: readers see a consistent file */
    if (bad || H5Fstart_swmr_write(w->file) < 0) {
        output_io_error(err, w->display, "trace header");
        goto fail;
    }
    return w;
fail:
    if (w->file >= 0) H5Fclose(w->file);
    writer_free(w);
    return NULL;
}

static int open_sequence_datasets(TraceWriter *w)
{
    w->d_tokens = H5Dopen2(w->seq, "tokens", H5P_DEFAULT);
    w->d_pieces = H5Dopen2(w->seq, "pieces", H5P_DEFAULT);
    w->d_nll = H5Dopen2(w->seq, "nll", H5P_DEFAULT);
    /* q/k/v and the norms are written a whole staged block at a time, and never
     * read back: HDF5's chunk cache (1 MiB per open dataset, kept until close)
     * would only hold copies of chunks already on disk, up to 6 MiB per layer.
     * Without it each chunk is filtered and written straight through.  The
     * attention rows fill their 64×64 chunks over several flushes: cached. */
    hid_t uncached = H5Pcreate(H5P_DATASET_ACCESS);
    int bad = w->d_tokens < 0 || w->d_pieces < 0 || w->d_nll < 0 || uncached < 0 ||
              H5Pset_chunk_cache(uncached, H5D_CHUNK_CACHE_NSLOTS_DEFAULT, 0, H5D_CHUNK_CACHE_W0_DEFAULT) < 0;
    for (int l = 0; l < w->meta.n_layers && !bad; l++)
        for (int i = 0; i < D_PER_LAYER && !bad; i++) {
            if (i == D_ATTN && !w->opt.store_attention) continue;
            char name[64];
            snprintf(name, sizeof name, "layers/%03d/%s", l, LAYER_DATASETS[i]);
            hid_t d = H5Dopen2(w->seq, name, i == D_ATTN ? H5P_DEFAULT : uncached);
            w->d_layer[(size_t)l * D_PER_LAYER + i] = d;
            bad = d < 0;
        }
    if (uncached >= 0) H5Pclose(uncached);
    return bad ? -1 : 0;
}

int trace_writer_begin_sequence(TraceWriter *w, KvError *err)
{
    if (w->n_sequences >= w->n_planned) return kv_fail(err, "%s: no more planned sequences", w->display);
    if (!w->kv_keys) return kv_fail(err, "%s: no KV source to read k and v from", w->display);
    char name[64];
    snprintf(name, sizeof name, "sequences/%04d", w->n_sequences);
    for (size_t i = 0; i < (size_t)w->meta.n_layers * D_PER_LAYER; i++) w->d_layer[i] = -1;
    w->d_tokens = w->d_pieces = w->d_nll = -1;
    w->seq = H5Gopen2(w->file, name, H5P_DEFAULT);
    if (w->seq < 0 || open_sequence_datasets(w))
        return kv_fail(err, "%s: cannot open sequence %d for writing", w->display, w->n_sequences);
    w->n_sequences++;
    w->flushed = w->staged = 0;
    for (int i = 0; i < w->capacity; i++) w->nll[i] = NAN;
    return 0;
}

int trace_writer_stage_token(TraceWriter *w, int pos, int token, const char *piece)
{
    int slot = pos - w->flushed;
    if (slot < 0 || slot >= w->stage_cap || pos >= w->capacity) return -1;
    w->tokens[slot] = token;
    free(w->pieces[slot]);
    w->pieces[slot] = strdup(piece ? piece : "");
    if (!w->pieces[slot]) return -1;
    if (pos + 1 > w->staged) w->staged = pos + 1;
    return 0;
}

static void vector_norms(const float *x, int d, float *l1, float *l2)
{
    double s1 = 0, s2 = 0;
    for (int i = 0; i < d; i++) {
        s1 += fabsf(x[i]);
        s2 += (double)x[i] * x[i];
    }
    if (l1) *l1 = (float)s1;
    *l2 = (float)sqrt(s2);
}

/* Copies n values into the stage in the file's type. */
static void stage_values(const TraceWriter *w, unsigned char *dst, const float *src, size_t n)
{
    if (!w->opt.half) {
        memcpy(dst, src, n * sizeof(float));
        return;
    }
    uint16_t *half = (uint16_t *)(void *)dst;
    for (size_t i = 0; i < n; i++) half[i] = float_to_fp16(src[i]);
}

int trace_writer_stage_qkv(TraceWriter *w, int layer, int pos0, int n, const float *q, const float *k,
                           const float *v)
{
    const TraceMeta *m = &w->meta;
    int slot0 = pos0 - w->flushed, KV = m->n_kv_heads, d = m->head_dim;
    if (slot0 < 0 || slot0 + n > w->stage_cap) return -1;
    size_t qd = (size_t)m->n_heads * d, S = (size_t)w->stage_cap;
    size_t row = (size_t)layer * S + (size_t)slot0;
    stage_values(w, w->q + row * qd * w->qkv_size, q, (size_t)n * qd);
    for (int r = 0; r < n; r++)
        for (int g = 0; g < KV; g++) {
            size_t at = (row + (size_t)r) * KV + (size_t)g, src = ((size_t)r * KV + g) * d;
            vector_norms(k + src, d, NULL, &w->k_norm[at]);
            vector_norms(v + src, d, &w->v_l1[at], &w->v_l2[at]);
        }
    return 0;
}

int trace_writer_stage_attention(TraceWriter *w, int layer, int head, int pos0, int n, const float *probs, int ld)
{
    if (!w->attention) return 0;
    int slot0 = pos0 - w->flushed;
    if (slot0 < 0 || slot0 + n > w->stage_cap) return -1;
    size_t C = (size_t)w->capacity;
    float *dst = w->attention + (((size_t)layer * w->meta.n_heads + head) * w->stage_cap + slot0) * C;
    for (int r = 0; r < n; r++) {
        size_t len = (size_t)pos0 + r + 1;
        memcpy(dst + r * C, probs + (size_t)r * ld, len * sizeof(float));
        memset(dst + r * C + len, 0, (C - len) * sizeof(float));
    }
    return 0;
}

void trace_writer_set_nll(TraceWriter *w, int pos, float nll)
{
    if (pos >= 0 && pos < w->capacity) w->nll[pos] = nll;
}

int trace_writer_kv_source(TraceWriter *w, const float *keys, const float *values, int capacity, KvError *err)
{
    if (capacity < w->capacity)
        return kv_fail(err, "%s: a KV cache of %d rows cannot hold a %d-row sequence", w->display, capacity, w->capacity);
    size_t kvd = (size_t)w->meta.n_kv_heads * w->meta.head_dim;
    free(w->kv_rows);
    w->kv_rows = malloc((size_t)w->stage_cap * kvd * w->qkv_size);
    if (!w->kv_rows) return kv_fail(err, "%s: out of memory", w->display);
    w->kv_keys = keys;
    w->kv_values = values;
    w->kv_capacity = capacity;
    return 0;
}

/* Rows [flushed, flushed + n) of one layer's keys or values from the KV
 * source, as the trace stores them ([row][kv head][d], the file's type). */
static const unsigned char *kv_source_rows(TraceWriter *w, const float *cache, int layer, int n)
{
    int KV = w->meta.n_kv_heads, d = w->meta.head_dim;
    for (int r = 0; r < n; r++)
        for (int g = 0; g < KV; g++) {
            const float *src = cache + (((size_t)layer * KV + g) * w->kv_capacity + (size_t)(w->flushed + r)) * d;
            stage_values(w, w->kv_rows + ((size_t)r * KV + g) * d * w->qkv_size, src, (size_t)d);
        }
    return w->kv_rows;
}

/* Appends staged rows of a q/k/v array (already in the file's type). */
static int append_qkv(TraceWriter *w, hid_t d, const unsigned char *rows, size_t n_rows)
{
    return h5_append_rows(d, w->opt.half ? w->f16 : H5T_NATIVE_FLOAT, (hsize_t)w->flushed, n_rows, rows);
}

static int write_attention(TraceWriter *w, int layer, int rows)
{
    hid_t d = w->d_layer[(size_t)layer * D_PER_LAYER + D_ATTN];
    hsize_t H = (hsize_t)w->meta.n_heads, T = (hsize_t)w->staged;
    hsize_t ext[3] = {H, T, T};
    if (H5Dset_extent(d, ext) < 0) return -1;
    hid_t fs = H5Dget_space(d);
    hsize_t mdims[2] = {(hsize_t)w->stage_cap, (hsize_t)w->capacity}, mstart[2] = {0, 0}, mcount[2] = {rows, T};
    hid_t ms = H5Screate_simple(2, mdims, NULL);
    int rc = fs >= 0 && ms >= 0 ? 0 : -1;
    for (hsize_t h = 0; h < H && rc == 0; h++) {
        hsize_t start[3] = {h, (hsize_t)w->flushed, 0}, count[3] = {1, (hsize_t)rows, T};
        const float *src = w->attention + ((size_t)layer * H + h) * (size_t)w->stage_cap * w->capacity;
        if (H5Sselect_hyperslab(fs, H5S_SELECT_SET, start, NULL, count, NULL) < 0 ||
            H5Sselect_hyperslab(ms, H5S_SELECT_SET, mstart, NULL, mcount, NULL) < 0 ||
            H5Dwrite(d, H5T_NATIVE_FLOAT, ms, fs, H5P_DEFAULT, src) < 0)
            rc = -1;
    }
    if (ms >= 0) H5Sclose(ms);
    if (fs >= 0) H5Sclose(fs);
    return rc;
}

static int flush_layer(TraceWriter *w, int l, int rows)
{
    const TraceMeta *m = &w->meta;
    size_t S = (size_t)w->stage_cap, qd = (size_t)m->n_heads * m->head_dim;
    size_t KV = (size_t)m->n_kv_heads, base = (size_t)l * S;
    hid_t *d = w->d_layer + (size_t)l * D_PER_LAYER;
    hsize_t at = (hsize_t)w->flushed;
    if (append_qkv(w, d[D_Q], w->q + base * qd * w->qkv_size, (size_t)rows) ||
        append_qkv(w, d[D_K], kv_source_rows(w, w->kv_keys, l, rows), (size_t)rows) ||
        append_qkv(w, d[D_V], kv_source_rows(w, w->kv_values, l, rows), (size_t)rows) ||
        h5_append_rows(d[D_KNORM], H5T_NATIVE_FLOAT, at, (hsize_t)rows, w->k_norm + base * KV) ||
        h5_append_rows(d[D_VL1], H5T_NATIVE_FLOAT, at, (hsize_t)rows, w->v_l1 + base * KV) ||
        h5_append_rows(d[D_VL2], H5T_NATIVE_FLOAT, at, (hsize_t)rows, w->v_l2 + base * KV))
        return -1;
    return w->attention ? write_attention(w, l, rows) : 0;
}

int trace_writer_flush(TraceWriter *w, KvError *err)
{
    int rows = w->staged - w->flushed;
    if (rows <= 0) return 0;
    errno = 0;
    hid_t str = string_type();
    /* nll[flushed - 1] became known after the last flush: rewrite it with the new rows */
    int nll0 = w->flushed > 0 ? w->flushed - 1 : 0;
    int bad = str < 0 || h5_append_rows(w->d_tokens, H5T_NATIVE_INT, (hsize_t)w->flushed, (hsize_t)rows, w->tokens) ||
              h5_append_rows(w->d_pieces, str, (hsize_t)w->flushed, (hsize_t)rows, w->pieces) ||
              h5_append_rows(w->d_nll, H5T_NATIVE_FLOAT, (hsize_t)nll0, (hsize_t)(w->staged - nll0), w->nll + nll0);
    if (str >= 0) H5Tclose(str);
    for (int l = 0; l < w->meta.n_layers && !bad; l++) bad = flush_layer(w, l, rows);
    /* the rows are on disk before n_rows says so: a reader or a killed run sees a consistent prefix */
    if (bad || H5Fflush(w->file, H5F_SCOPE_GLOBAL) < 0 || h5_attr_update_int(w->seq, "n_rows", w->staged) ||
        H5Fflush(w->file, H5F_SCOPE_GLOBAL) < 0)
        return output_io_error(err, w->display, "trace rows");
    w->flushed = w->staged;
    return 0;
}

static void close_sequence_handles(TraceWriter *w)
{
    for (size_t i = 0; i < (size_t)w->meta.n_layers * D_PER_LAYER; i++)
        if (w->d_layer[i] >= 0) H5Dclose(w->d_layer[i]);
    if (w->d_tokens >= 0) H5Dclose(w->d_tokens);
    if (w->d_pieces >= 0) H5Dclose(w->d_pieces);
    if (w->d_nll >= 0) H5Dclose(w->d_nll);
    if (w->seq >= 0) H5Gclose(w->seq);
    w->seq = w->d_tokens = w->d_pieces = w->d_nll = -1;
}

int trace_writer_end_sequence(TraceWriter *w, int complete, KvError *err)
{
    if (w->seq < 0) return 0;
    int rc = trace_writer_flush(w, err);
    /* the complete flag is the last thing written for a sequence */
    errno = 0;
    if (rc == 0 && complete && (h5_attr_update_int(w->seq, "complete", 1) || H5Fflush(w->file, H5F_SCOPE_GLOBAL) < 0))
        rc = output_io_error(err, w->display, "trace's complete flag");
    if (!complete || rc) w->all_complete = 0;
    close_sequence_handles(w);
    return rc;
}

int trace_writer_close(TraceWriter *w, int complete, KvError *err)
{
    int rc = 0;
    if (w->seq >= 0) rc = trace_writer_end_sequence(w, 0, err);
    errno = 0;
    if (rc == 0 && complete && w->all_complete && w->n_sequences == w->n_planned &&
        h5_attr_update_int(w->file, "complete", 1))
        rc = output_io_error(err, w->display, "trace's complete flag");
    if (H5Fclose(w->file) < 0 && rc == 0) rc = output_io_error(err, w->display, "trace (closing it)");
    writer_free(w);
    return rc;
}

/* ------------------------------------------------------------ reading */

static int read_meta(TraceReader *r, KvError *err)
{
    hid_t f = (hid_t)r->file;
    TraceMeta *m = &r->meta;
    long long L, H, KV, D, dim, V, complete;
    if (h5_attr_read_int(f, "n_layers", &L) || h5_attr_read_int(f, "n_heads", &H) ||
        h5_attr_read_int(f, "n_kv_heads", &KV) || h5_attr_read_int(f, "head_dim", &D) ||
        h5_attr_read_int(f, "model_dim", &dim) || h5_attr_read_int(f, "vocab_size", &V) ||
        h5_attr_read_double(f, "rope_theta", &m->rope_theta) || h5_attr_read_int(f, "complete", &complete))
        return kv_fail(err, "%s: trace is missing required root attributes (model shape)", r->path);
    if (L <= 0 || L > 1024 || H <= 0 || H > 1024 || KV <= 0 || KV > H || H % KV || D <= 0 || D > 4096)
        return kv_fail(err, "%s: trace root attributes give an absurd model shape (layers %lld, heads %lld/%lld, "
                       "head_dim %lld)", r->path, L, H, KV, D);
    *m = (TraceMeta){.n_layers = (int)L, .n_heads = (int)H, .n_kv_heads = (int)KV, .head_dim = (int)D,
                     .dim = (int)dim, .vocab_size = (int)V, .rope_theta = m->rope_theta};
    h5_attr_read_str(f, "model_name", m->model_name, sizeof m->model_name);
    h5_attr_read_str(f, "model_architecture", m->model_arch, sizeof m->model_arch);
    h5_attr_read_str(f, "model_sha256", m->model_digest, sizeof m->model_digest);
    h5_attr_read_str(f, "model_file", m->model_file, sizeof m->model_file);
    h5_attr_read_str(f, "model_weight_type", m->model_weight_type, sizeof m->model_weight_type);
    h5_attr_read_str(f, "recorder_version", m->recorder_version, sizeof m->recorder_version);
    h5_attr_read_str(f, "created", m->created, sizeof m->created);
    h5_attr_read_str(f, "command", m->command, sizeof m->command);
    r->complete = complete == 1;
    return 0;
}

/* Rows recorded in sequence seq: its n_rows attribute (files written since
 * SWMR recording), -1 when it has none (older files: the datasets' length). */
static long long sequence_rows(hid_t f, int seq)
{
    char path[64];
    snprintf(path, sizeof path, "sequences/%04d", seq);
    hid_t g = h5_exists(f, path) ? H5Gopen2(f, path, H5P_DEFAULT) : -1;
    long long rows = -1;
    if (g >= 0) {
        if (h5_attr_read_int(g, "n_rows", &rows)) rows = -1;
        H5Gclose(g);
    }
    return rows;
}

int trace_open(TraceReader *r, const char *path, KvError *err)
{
    memset(r, 0, sizeof *r);
    r->file = -1;
    snprintf(r->path, sizeof r->path, "%s", path);
    hid_t f = h5_open_read(path, "trace", err);
    if (f < 0) return -1;
    r->file = f;
    char format[64];
    if (h5_attr_read_str(f, "format", format, sizeof format)) {
        trace_close(r);
        return kv_fail(err, "%s: not a kvtrace trace (no 'format' attribute)", path);
    }
    if (strcmp(format, TRACE_FORMAT) != 0) {
        trace_close(r);
        return kv_fail(err, "%s: trace format '%s' is not supported (this kvtrace reads '%s')", path, format,
                       TRACE_FORMAT);
    }
    if (read_meta(r, err)) { trace_close(r); return -1; }
    hid_t g = h5_exists(f, "sequences") ? H5Gopen2(f, "sequences", H5P_DEFAULT) : -1;
    H5G_info_t info;
    if (g < 0 || H5Gget_info(g, &info) < 0) {
        if (g >= 0) H5Gclose(g);
        trace_close(r);
        return kv_fail(err, "%s: trace has no 'sequences' group", path);
    }
    H5Gclose(g);
    if (info.nlinks > 1000000) {
        trace_close(r);
        return kv_fail(err, "%s: trace declares %llu sequences (damaged?)", path, (unsigned long long)info.nlinks);
    }
    r->n_planned = (int)info.nlinks;
    /* sequences are recorded in order: those not reached by an interrupted recording come last, empty */
    r->n_sequences = r->n_planned;
    while (r->n_sequences > 0 && sequence_rows(f, r->n_sequences - 1) == 0) r->n_sequences--;
    return 0;
}

void trace_close(TraceReader *r)
{
    if (r->file >= 0) H5Fclose((hid_t)r->file);
    r->file = -1;
}

static void seq_path(char *buf, size_t cap, int seq, const char *name)
{
    snprintf(buf, cap, "sequences/%04d/%s", seq, name);
}

/* A dataset of the sequence must hold rows 0..T-1 in full: its shape is
 * want except that its row axes may be longer (a recording in progress or
 * killed mid-flush), and every chunk those rows touch must be stored. */
static int check_shape(const TraceReader *r, int seq, const char *name, int rank, const hsize_t *want,
                       unsigned row_axes, KvError *err)
{
    char path[256];
    seq_path(path, sizeof path, seq, name);
    int got_rank;
    hsize_t dims[8];
    if (h5_dataset_shape((hid_t)r->file, path, &got_rank, dims))
        return kv_fail(err, "%s: sequence %d has no dataset '%s'", r->path, seq, name);
    int ok = got_rank == rank;
    for (int i = 0; ok && i < rank; i++) ok = row_axes & (1u << i) ? dims[i] >= want[i] : dims[i] == want[i];
    if (!ok) return kv_fail(err, "%s: dataset '%s' has the wrong shape", r->path, path);
    hsize_t rows = 0, have, need;
    for (int i = 0; i < rank; i++)
        if (row_axes & (1u << i)) rows = want[i];
    int missing = h5_chunks_missing((hid_t)r->file, path, rows, row_axes, &have, &need);
    if (missing < 0) return kv_fail(err, "%s: cannot read the storage of '%s' (damaged?)", r->path, path);
    if (missing)
        return kv_fail(err, "%s: '%s' declares %llu rows but stores only %llu of the %llu chunks they need "
                       "(truncated or damaged)", r->path, path, (unsigned long long)rows,
                       (unsigned long long)have, (unsigned long long)need);
    return 0;
}

int trace_sequence_info(const TraceReader *r, int seq, TraceSeqInfo *info, KvError *err)
{
    memset(info, 0, sizeof *info);
    if (seq < 0 || seq >= r->n_sequences) return kv_fail(err, "%s: no sequence %d", r->path, seq);
    char path[256];
    seq_path(path, sizeof path, seq, "tokens");
    int rank;
    hsize_t dims[8];
    if (h5_dataset_shape((hid_t)r->file, path, &rank, dims) || rank != 1)
        return kv_fail(err, "%s: sequence %d has no 1-D 'tokens' dataset", r->path, seq);
    const TraceMeta *m = &r->meta;
    long long rows = sequence_rows((hid_t)r->file, seq);
    if (rows > (long long)dims[0])
        return kv_fail(err, "%s: sequence %d says %lld rows but 'tokens' holds %llu (damaged)", r->path, seq, rows,
                       (unsigned long long)dims[0]);
    hsize_t T = rows >= 0 ? (hsize_t)rows : dims[0];
    if (T > (hsize_t)1 << 24)
        return kv_fail(err, "%s: sequence %d declares %llu tokens (damaged?)", r->path, seq, (unsigned long long)T);
    info->n_tokens = (int)T;
    seq_path(path, sizeof path, seq, "");
    hid_t g = H5Gopen2((hid_t)r->file, path, H5P_DEFAULT);
    long long n_prompt = -1, complete = 0;
    if (g >= 0) {
        h5_attr_read_int(g, "n_prompt", &n_prompt);
        h5_attr_read_int(g, "complete", &complete);
        H5Gclose(g);
    }
    if (n_prompt < 0 || (n_prompt > (long long)T && complete == 1))
        return kv_fail(err, "%s: sequence %d has a missing or invalid n_prompt", r->path, seq);
    info->n_prompt = n_prompt > (long long)T ? (int)T : (int)n_prompt; /* interrupted inside its prompt */
    info->complete = complete == 1;
    hsize_t tv[1] = {T}, q[3] = {T, (hsize_t)m->n_heads, (hsize_t)m->head_dim};
    hsize_t kv[3] = {T, (hsize_t)m->n_kv_heads, (hsize_t)m->head_dim}, norms[2] = {T, (hsize_t)m->n_kv_heads};
    if (check_shape(r, seq, "tokens", 1, tv, 1, err) || check_shape(r, seq, "pieces", 1, tv, 1, err) ||
        check_shape(r, seq, "nll", 1, tv, 1, err))
        return -1;
    for (int l = 0; l < m->n_layers; l++) {
        char name[64];
        const hsize_t *shapes[6] = {q, kv, kv, norms, norms, norms};
        int values = 1;
        for (int i = 0; i < 6; i++) {
            snprintf(name, sizeof name, "layers/%03d/%s", l, LAYER_DATASETS[i]);
            seq_path(path, sizeof path, seq, name);
            int optional = i == D_V || i == D_VL1 || i == D_VL2; /* values may be left out */
            if (optional && !h5_exists((hid_t)r->file, path)) { values = 0; continue; }
            if (check_shape(r, seq, name, i < 3 ? 3 : 2, shapes[i], 1, err)) return -1;
        }
        info->has_values = l == 0 ? values : info->has_values && values;
        snprintf(name, sizeof name, "layers/%03d/attention", l);
        seq_path(path, sizeof path, seq, name);
        int has = h5_exists((hid_t)r->file, path);
        if (l == 0) info->has_attention = has;
        if (has != info->has_attention) return kv_fail(err, "%s: attention stored for some layers only", r->path);
        hsize_t a[3] = {(hsize_t)m->n_heads, T, T};
        if (has && check_shape(r, seq, name, 3, a, 6, err)) return -1;
    }
    seq_path(path, sizeof path, seq, "layers/000/q");
    hid_t d = H5Dopen2((hid_t)r->file, path, H5P_DEFAULT);
    if (d >= 0) {
        hid_t t = H5Dget_type(d);
        info->half = H5Tget_size(t) == 2;
        H5Tclose(t);
        H5Dclose(d);
    }
    return 0;
}

int trace_read_tokens(const TraceReader *r, int seq, int *tokens, int n, KvError *err)
{
    char path[256];
    seq_path(path, sizeof path, seq, "tokens");
    if (h5_read_prefix((hid_t)r->file, path, H5T_NATIVE_INT, tokens, (size_t)n))
        return kv_fail(err, "%s: cannot read %s", r->path, path);
    for (int i = 0; i < n; i++)
        if (tokens[i] < 0 || (r->meta.vocab_size > 0 && tokens[i] >= r->meta.vocab_size))
            return kv_fail(err, "%s: %s holds token id %d outside the vocabulary", r->path, path, tokens[i]);
    return 0;
}

static int read_floats_part(const TraceReader *r, int seq, const char *name, int first, int width, float *out,
                            size_t n, KvError *err)
{
    char path[256];
    seq_path(path, sizeof path, seq, name);
    if (h5_read_floats_part((hid_t)r->file, path, (size_t)first, (size_t)width, out, n))
        return kv_fail(err, "%s: cannot read %s (missing, wrong size or corrupt)", r->path, path);
    return 0;
}

int trace_read_floats(const TraceReader *r, int seq, const char *name, float *out, size_t n, KvError *err)
{
    return read_floats_part(r, seq, name, 0, 0, out, n, err);
}

int trace_read_layer_heads(const TraceReader *r, int seq, int layer, const char *name, int first, int width,
                           float *out, size_t n, KvError *err)
{
    char rel[64];
    snprintf(rel, sizeof rel, "layers/%03d/%s", layer, name);
    if (read_floats_part(r, seq, rel, first, width, out, n, err)) return -1;
    for (size_t i = 0; i < n; i++)
        if (!isfinite(out[i]))
            return kv_fail(err, "%s: sequence %d %s holds NaN or Inf", r->path, seq, rel);
    return 0;
}

int trace_read_layer(const TraceReader *r, int seq, int layer, const char *name, float *out, size_t n,
                     KvError *err)
{
    return trace_read_layer_heads(r, seq, layer, name, 0, 0, out, n, err);
}

int trace_read_attention_rows(const TraceReader *r, int seq, int layer, int head, int t0, int n, float *out,
                              long ld, KvError *err)
{
    char path[256], rel[64];
    snprintf(rel, sizeof rel, "layers/%03d/attention", layer);
    seq_path(path, sizeof path, seq, rel);
    hid_t d = H5Dopen2((hid_t)r->file, path, H5P_DEFAULT);
    if (d < 0) return kv_fail(err, "%s: cannot open %s", r->path, path);
    hsize_t start[3] = {(hsize_t)head, (hsize_t)t0, 0}, count[3] = {1, (hsize_t)n, (hsize_t)(t0 + n)};
    hsize_t mdims[2] = {(hsize_t)n, (hsize_t)ld}, mstart[2] = {0, 0}, mcount[2] = {(hsize_t)n, (hsize_t)(t0 + n)};
    hid_t fs = H5Dget_space(d), ms = H5Screate_simple(2, mdims, NULL);
    int rc = fs >= 0 && ms >= 0 && H5Sselect_hyperslab(fs, H5S_SELECT_SET, start, NULL, count, NULL) >= 0 &&
                     H5Sselect_hyperslab(ms, H5S_SELECT_SET, mstart, NULL, mcount, NULL) >= 0 &&
                     H5Dread(d, H5T_NATIVE_FLOAT, ms, fs, H5P_DEFAULT, out) >= 0
                 ? 0 : -1;
    if (ms >= 0) H5Sclose(ms);
    if (fs >= 0) H5Sclose(fs);
    H5Dclose(d);
    if (rc) return kv_fail(err, "%s: cannot read rows %d..%d of %s", r->path, t0, t0 + n - 1, path);
    for (int i = 0; i < n; i++)
        for (int j = 0; j <= t0 + i; j++)
            if (!isfinite(out[(long)i * ld + j]) || out[(long)i * ld + j] < 0)
                return kv_fail(err, "%s: %s holds a negative, NaN or Inf probability", r->path, path);
    return 0;
}

char *trace_read_prompt(const TraceReader *r, int seq)
{
    char path[256];
    seq_path(path, sizeof path, seq, "");
    hid_t g = H5Gopen2((hid_t)r->file, path, H5P_DEFAULT);
    if (g < 0) return NULL;
    char *s = h5_attr_read_str_alloc(g, "prompt");
    H5Gclose(g);
    return s;
}

char **trace_read_pieces(const TraceReader *r, int seq, int n, KvError *err)
{
    char path[256];
    seq_path(path, sizeof path, seq, "pieces");
    char **out = h5_read_string_prefix((hid_t)r->file, path, n);
    if (!out) kv_fail(err, "%s: cannot read %s", r->path, path);
    return out;
}

void trace_free_pieces(char **pieces, int n) { h5_free_strings(pieces, n); }

void trace_model_label(const TraceMeta *m, char *out, size_t cap)
{
    const char *base = strrchr(m->model_file, '/');
    base = base ? base + 1 : m->model_file;
    if (!*base) base = m->model_name;
    snprintf(out, cap, "%s", base);
    char *dot = strrchr(out, '.');
    if (dot && dot != out) *dot = 0;
}
