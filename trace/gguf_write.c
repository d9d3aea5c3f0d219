#include "gguf_write.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "quant.h"

/* A growable byte buffer. */
typedef struct {
    uint8_t *data;
    size_t len, cap;
} Bytes;

static int bytes_put(Bytes *b, const void *p, size_t n)
{
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n) cap *= 2;
        uint8_t *d = realloc(b->data, cap);
        if (!d) return -1;
        b->data = d;
        b->cap = cap;
    }
    memcpy(b->data + b->len, p, n);
    b->len += n;
    return 0;
}

static int put_u32(Bytes *b, uint32_t v) { return bytes_put(b, &v, 4); }
static int put_u64(Bytes *b, uint64_t v) { return bytes_put(b, &v, 8); }
static int put_str(Bytes *b, const char *s)
{
    size_t n = strlen(s);
    return put_u64(b, n) || bytes_put(b, s, n);
}

typedef struct {
    char *name;
    int n_dims;
    uint64_t dims[4];
    uint32_t type;
    uint8_t *data;
    size_t n_bytes;
} PendingTensor;

struct GgufWriter {
    Bytes kv;             /* serialized metadata entries */
    uint64_t n_kv;
    PendingTensor *tensors;
    size_t n_tensors, cap_tensors;
    int failed;
};

GgufWriter *gguf_writer_new(void) { return calloc(1, sizeof(GgufWriter)); }

void gguf_writer_free(GgufWriter *w)
{
    if (!w) return;
    for (size_t i = 0; i < w->n_tensors; i++) {
        free(w->tensors[i].name);
        free(w->tensors[i].data);
    }
    free(w->tensors);
    free(w->kv.data);
    free(w);
}

static int kv_header(GgufWriter *w, const char *key, uint32_t type)
{
    w->n_kv++;
    if (put_str(&w->kv, key) || put_u32(&w->kv, type)) return w->failed = 1, -1;
    return 0;
}

int gguf_writer_add_string(GgufWriter *w, const char *key, const char *value)
{
    if (kv_header(w, key, GGUF_STRING) || put_str(&w->kv, value)) return w->failed = 1, -1;
    return 0;
}

int gguf_writer_add_u32(GgufWriter *w, const char *key, uint32_t value)
{
    if (kv_header(w, key, GGUF_UINT32) || put_u32(&w->kv, value)) return w->failed = 1, -1;
    return 0;
}

int gguf_writer_add_f32(GgufWriter *w, const char *key, float value)
{
    if (kv_header(w, key, GGUF_FLOAT32) || bytes_put(&w->kv, &value, 4)) return w->failed = 1, -1;
    return 0;
}

int gguf_writer_copy_kv(GgufWriter *w, const GgufFile *src, const GgufKV *kv)
{
    size_t n = gguf_value_size(src, kv);
    if (!n || kv_header(w, kv->key, kv->type) || bytes_put(&w->kv, src->base + kv->value_offset, n))
        return w->failed = 1, -1;
    return 0;
}

/* Appends a tensor entry with room for its encoded bytes. */
static PendingTensor *new_tensor(GgufWriter *w, const char *name, int n_dims, const uint64_t *dims, uint32_t type,
                                 uint64_t *n_out)
{
    if (w->n_tensors == w->cap_tensors) {
        size_t cap = w->cap_tensors ? 2 * w->cap_tensors : 16;
        PendingTensor *t = realloc(w->tensors, cap * sizeof *t);
        if (!t) return w->failed = 1, NULL;
        w->tensors = t;
        w->cap_tensors = cap;
    }
    PendingTensor *t = &w->tensors[w->n_tensors];
    memset(t, 0, sizeof *t);
    uint64_t n = 1;
    for (int d = 0; d < n_dims; d++) n *= dims[d];
    t->n_bytes = ggml_row_bytes(type, n);
    t->name = strdup(name);
    t->data = t->n_bytes ? malloc(t->n_bytes) : NULL;
    if (!t->name || !t->data) {
        free(t->name);
        free(t->data);
        return w->failed = 1, NULL;
    }
    t->n_dims = n_dims;
    memcpy(t->dims, dims, (size_t)n_dims * sizeof *dims);
    t->type = type;
    *n_out = n;
    return t;
}

int gguf_writer_add_tensor(GgufWriter *w, const char *name, int n_dims, const uint64_t *dims,
                           uint32_t type, const float *data)
{
    uint64_t n;
    PendingTensor *t = new_tensor(w, name, n_dims, dims, type, &n);
    if (!t) return -1;
    if (ggml_quantize(type, data, t->data, n)) {
        free(t->name);
        free(t->data);
        return w->failed = 1, -1;
    }
    w->n_tensors++;
    return 0;
}

int gguf_writer_add_encoded(GgufWriter *w, const char *name, int n_dims, const uint64_t *dims, uint32_t type,
                            const void *bytes)
{
    uint64_t n;
    PendingTensor *t = new_tensor(w, name, n_dims, dims, type, &n);
    if (!t) return -1;
    memcpy(t->data, bytes, t->n_bytes);
    w->n_tensors++;
    return 0;
}

int gguf_writer_add_array(GgufWriter *w, const char *key, uint32_t elem_type, uint64_t count, const void *values)
{
    size_t size = elem_type == GGUF_INT32 || elem_type == GGUF_FLOAT32 || elem_type == GGUF_UINT32 ? 4 : 0;
    if (!size || kv_header(w, key, GGUF_ARRAY) || put_u32(&w->kv, elem_type) || put_u64(&w->kv, count) ||
        bytes_put(&w->kv, values, (size_t)count * size))
        return w->failed = 1, -1;
    return 0;
}

int gguf_writer_add_string_array(GgufWriter *w, const char *key, const char *const *values, uint64_t count)
{
    if (kv_header(w, key, GGUF_ARRAY) || put_u32(&w->kv, GGUF_STRING) || put_u64(&w->kv, count))
        return w->failed = 1, -1;
    for (uint64_t i = 0; i < count; i++)
        if (put_str(&w->kv, values[i])) return w->failed = 1, -1;
    return 0;
}

#define ALIGNMENT 32

static int write_all(FILE *fp, const void *p, size_t n) { return fwrite(p, 1, n, fp) == n ? 0 : -1; }

static int build_header(GgufWriter *w, Bytes *h)
{
    uint64_t offset = 0;
    if (put_u32(h, 0x46554747u) || put_u32(h, 3) || put_u64(h, w->n_tensors) || put_u64(h, w->n_kv) ||
        bytes_put(h, w->kv.data, w->kv.len))
        return -1;
    for (size_t i = 0; i < w->n_tensors; i++) {
        PendingTensor *t = &w->tensors[i];
        if (put_str(h, t->name) || put_u32(h, (uint32_t)t->n_dims)) return -1;
        for (int d = 0; d < t->n_dims; d++)
            if (put_u64(h, t->dims[d])) return -1;
        if (put_u32(h, t->type) || put_u64(h, offset)) return -1;
        offset += (t->n_bytes + ALIGNMENT - 1) / ALIGNMENT * ALIGNMENT;
    }
    static const uint8_t zeros[ALIGNMENT] = {0};
    return bytes_put(h, zeros, (ALIGNMENT - h->len % ALIGNMENT) % ALIGNMENT);
}

int gguf_writer_save(GgufWriter *w, const char *path, KvError *err)
{
    if (w->failed) return kv_fail(err, "%s: out of memory while building the GGUF", path);
    Bytes header = {0};
    if (build_header(w, &header)) {
        free(header.data);
        return kv_fail(err, "%s: out of memory while building the GGUF header", path);
    }
    char tmp[1024];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *fp = fopen(tmp, "wb");
    if (!fp) {
        free(header.data);
        return kv_fail(err, "%s: cannot create", tmp);
    }
    static const uint8_t zeros[ALIGNMENT] = {0};
    int bad = write_all(fp, header.data, header.len);
    for (size_t i = 0; i < w->n_tensors && !bad; i++) {
        size_t pad = (ALIGNMENT - w->tensors[i].n_bytes % ALIGNMENT) % ALIGNMENT;
        bad = write_all(fp, w->tensors[i].data, w->tensors[i].n_bytes) || write_all(fp, zeros, pad);
    }
    free(header.data);
    if (fclose(fp) != 0) bad = 1;
    if (bad || rename(tmp, path) != 0) {
        remove(tmp);
        return kv_fail(err, "%s: write failed", path);
    }
    return 0;
}
