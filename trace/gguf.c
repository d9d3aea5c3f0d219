#include "gguf.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "quant.h"

#define GGUF_MAGIC 0x46554747u /* "GGUF" little-endian */
#define MAX_DIMS 4

/* A read position that refuses to move past the end of the mapping. */
typedef struct {
    const uint8_t *base;
    size_t size, pos;
    int failed;
} Cursor;

static int take(Cursor *c, void *dst, size_t n)
{
    if (c->failed || n > c->size - c->pos) { c->failed = 1; return -1; }
    memcpy(dst, c->base + c->pos, n);
    c->pos += n;
    return 0;
}

static uint32_t take_u32(Cursor *c) { uint32_t v = 0; take(c, &v, 4); return v; }
static uint64_t take_u64(Cursor *c) { uint64_t v = 0; take(c, &v, 8); return v; }

/* Returns a malloc'd copy of a GGUF string (u64 length + bytes). */
static char *take_string(Cursor *c)
{
    uint64_t len = take_u64(c);
    if (c->failed || len > c->size - c->pos) { c->failed = 1; return NULL; }
    char *s = malloc((size_t)len + 1);
    if (!s) { c->failed = 1; return NULL; }
    memcpy(s, c->base + c->pos, (size_t)len);
    s[len] = 0;
    c->pos += (size_t)len;
    return s;
}

static size_t scalar_size(uint32_t type)
{
    switch (type) {
    case GGUF_UINT8: case GGUF_INT8: case GGUF_BOOL: return 1;
    case GGUF_UINT16: case GGUF_INT16: return 2;
    case GGUF_UINT32: case GGUF_INT32: case GGUF_FLOAT32: return 4;
    case GGUF_UINT64: case GGUF_INT64: case GGUF_FLOAT64: return 8;
    default: return 0;
    }
}

/* Moves past one value of the given type, checking every length. */
static int skip_value(Cursor *c, uint32_t type, int depth)
{
    if (type == GGUF_STRING) {
        uint64_t len = take_u64(c);
        if (c->failed || len > c->size - c->pos) return c->failed = 1, -1;
        c->pos += (size_t)len;
        return 0;
    }
    if (type == GGUF_ARRAY) {
        if (depth > 2) return c->failed = 1, -1;
        uint32_t et = take_u32(c);
        uint64_t n = take_u64(c);
        if (c->failed) return -1;
        size_t es = scalar_size(et);
        if (es) {
            if (n > (c->size - c->pos) / es) return c->failed = 1, -1;
            c->pos += (size_t)(n * es);
            return 0;
        }
        /* each string or nested array takes at least 8 bytes */
        if ((et != GGUF_STRING && et != GGUF_ARRAY) || n > (c->size - c->pos) / 8)
            return c->failed = 1, -1;
        for (uint64_t i = 0; i < n; i++)
            if (skip_value(c, et, depth + 1)) return -1;
        return 0;
    }
    size_t s = scalar_size(type);
    if (!s || s > c->size - c->pos) return c->failed = 1, -1;
    c->pos += s;
    return 0;
}

static int map_file(GgufFile *f, const char *path, KvError *err)
{
    int fd = open(path, O_RDONLY);
    if (fd < 0) return kv_fail(err, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return kv_fail(err, "%s: not a regular file", path);
    }
    if (st.st_size < 24) {
        close(fd);
        return kv_fail(err, "%s: file is too short to be a GGUF model (%lld bytes)", path, (long long)st.st_size);
    }
    void *p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (p == MAP_FAILED) return kv_fail(err, "%s: cannot map: %s", path, strerror(errno));
    f->base = p;
    f->size = (size_t)st.st_size;
    return 0;
}

static int read_kvs(GgufFile *f, Cursor *c, KvError *err)
{
    /* a key-value pair takes at least 8 (key length) + 4 (type) + 1 bytes */
    if (f->n_kv > (f->size - c->pos) / 13)
        return kv_fail(err, "%s: header claims %llu metadata entries, more than the file can hold",
                       f->path, (unsigned long long)f->n_kv);
    f->kv = calloc(f->n_kv ? f->n_kv : 1, sizeof *f->kv);
    if (!f->kv) return kv_fail(err, "%s: out of memory for metadata", f->path);
    for (uint64_t i = 0; i < f->n_kv; i++) {
        GgufKV *kv = &f->kv[i];
        kv->key = take_string(c);
        kv->type = take_u32(c);
        kv->value_offset = c->pos;
        if (!c->failed && kv->type == GGUF_ARRAY) {
            Cursor peek = *c;
            kv->array_type = take_u32(&peek);
            kv->array_count = take_u64(&peek);
        }
        if (c->failed || skip_value(c, kv->type, 0))
            return kv_fail(err, "%s: metadata entry %llu is truncated or malformed", f->path, (unsigned long long)i);
    }
    return 0;
}

static int read_tensor_info(GgufFile *f, Cursor *c, uint64_t i, KvError *err)
{
    GgufTensor *t = &f->tensors[i];
    t->name = take_string(c);
    t->n_dims = take_u32(c);
    if (c->failed) return kv_fail(err, "%s: tensor table is truncated (tensor %llu)", f->path, (unsigned long long)i);
    if (t->n_dims == 0 || t->n_dims > MAX_DIMS)
        return kv_fail(err, "%s: tensor '%s' has %u dimensions (1 to 4 allowed)", f->path, t->name, t->n_dims);
    t->n_elements = 1;
    for (uint32_t d = 0; d < t->n_dims; d++) {
        t->dims[d] = take_u64(c);
        if (t->dims[d] == 0 || t->dims[d] > (1ull << 40) || t->n_elements > (1ull << 40) / t->dims[d])
            return kv_fail(err, "%s: tensor '%s' has absurd dimension %llu", f->path, t->name,
                           (unsigned long long)t->dims[d]);
        t->n_elements *= t->dims[d];
    }
    t->type = take_u32(c);
    uint64_t offset = take_u64(c);
    if (c->failed) return kv_fail(err, "%s: tensor table is truncated (tensor '%s')", f->path, t->name);
    if (!ggml_type_info(t->type))
        return kv_fail(err, "%s: tensor '%s' has unknown tensor type %u", f->path, t->name, t->type);
    t->n_bytes = ggml_row_bytes(t->type, t->n_elements);
    /* a type known only by name: its size is unknown, and the loader refuses it by name */
    if (!t->n_bytes && ggml_type_info(t->type)->block_bytes)
        return kv_fail(err, "%s: tensor '%s' size is not a whole number of %s blocks", f->path, t->name,
                       ggml_type_info(t->type)->name);
    t->data = (const void *)(uintptr_t)offset; /* relative for now; fixed up once the data start is known */
    return 0;
}

static int place_tensors(GgufFile *f, size_t data_start, KvError *err)
{
    for (uint64_t i = 0; i < f->n_tensors; i++) {
        GgufTensor *t = &f->tensors[i];
        uint64_t offset = (uint64_t)(uintptr_t)t->data;
        if (offset % f->alignment)
            return kv_fail(err, "%s: tensor '%s' data offset %llu is not aligned to %zu", f->path, t->name,
                           (unsigned long long)offset, f->alignment);
        if (data_start > f->size || offset > f->size - data_start || t->n_bytes > f->size - data_start - offset)
            return kv_fail(err, "%s: tensor '%s' data lies beyond the end of the file (file truncated?)",
                           f->path, t->name);
        t->data = f->base + data_start + offset;
    }
    return 0;
}

int gguf_open(GgufFile *f, const char *path, KvError *err)
{
    memset(f, 0, sizeof *f);
    snprintf(f->path, sizeof f->path, "%s", path);
    if (map_file(f, path, err)) return -1;
    Cursor c = {f->base, f->size, 0, 0};
    uint32_t magic = take_u32(&c);
    f->version = take_u32(&c);
    if (magic != GGUF_MAGIC) { gguf_close(f); return kv_fail(err, "%s: not a GGUF file (bad magic)", path); }
    if (f->version < 2 || f->version > 3) {
        kv_fail(err, "%s: unsupported GGUF version %u (2 and 3 are supported)", path, f->version);
        gguf_close(f);
        return -1;
    }
    f->n_tensors = take_u64(&c);
    f->n_kv = take_u64(&c);
    f->alignment = 32;
    if (read_kvs(f, &c, err)) goto fail;
    int64_t align;
    if (gguf_get_int(f, "general.alignment", &align) == 0) {
        if (align <= 0 || align > (1 << 20) || (align & (align - 1))) {
            kv_fail(err, "%s: general.alignment %lld is not a power of two", path, (long long)align);
            goto fail;
        }
        f->alignment = (size_t)align;
    }
    /* a tensor info takes at least 8 + 4 + 8 + 4 + 8 bytes */
    if (f->n_tensors > (f->size - c.pos) / 32) { /* 0 tensors: a vocabulary-only file */
        kv_fail(err, "%s: header claims %llu tensors, which the file cannot hold", path,
                (unsigned long long)f->n_tensors);
        goto fail;
    }
    f->tensors = calloc(f->n_tensors ? f->n_tensors : 1, sizeof *f->tensors);
    if (!f->tensors) { kv_fail(err, "%s: out of memory for the tensor table", path); goto fail; }
    for (uint64_t i = 0; i < f->n_tensors; i++)
        if (read_tensor_info(f, &c, i, err)) goto fail;
    size_t data_start = (c.pos + f->alignment - 1) / f->alignment * f->alignment;
    if (place_tensors(f, data_start, err)) goto fail;
    return 0;
fail:
    gguf_close(f);
    return -1;
}

void gguf_close(GgufFile *f)
{
    if (f->kv)
        for (uint64_t i = 0; i < f->n_kv; i++) free(f->kv[i].key);
    if (f->tensors)
        for (uint64_t i = 0; i < f->n_tensors; i++) free(f->tensors[i].name);
    free(f->kv);
    free(f->tensors);
    if (f->base) munmap((void *)f->base, f->size);
    memset(f, 0, sizeof *f);
}

const GgufKV *gguf_find_kv(const GgufFile *f, const char *key)
{
    for (uint64_t i = 0; i < f->n_kv; i++)
        if (f->kv[i].key && strcmp(f->kv[i].key, key) == 0) return &f->kv[i];
    return NULL;
}

size_t gguf_value_size(const GgufFile *f, const GgufKV *kv)
{
    Cursor c = {f->base, f->size, kv->value_offset, 0};
    if (skip_value(&c, kv->type, 0)) return 0;
    return c.pos - kv->value_offset;
}

const GgufTensor *gguf_find_tensor(const GgufFile *f, const char *name)
{
    for (uint64_t i = 0; i < f->n_tensors; i++)
        if (strcmp(f->tensors[i].name, name) == 0) return &f->tensors[i];
    return NULL;
}

/* Reads a numeric scalar of any GGUF numeric type as double and int64. */
static int read_number(const GgufFile *f, const uint8_t *p, uint32_t type, double *d, int64_t *i)
{
    (void)f;
    union { uint8_t u8; int8_t i8; uint16_t u16; int16_t i16; uint32_t u32; int32_t i32;
            float f32; uint64_t u64; int64_t i64; double f64; } v;
    size_t s = scalar_size(type);
    if (!s) return -1;
    memcpy(&v, p, s);
    switch (type) {
    case GGUF_UINT8: case GGUF_BOOL: *i = v.u8; *d = v.u8; break;
    case GGUF_INT8: *i = v.i8; *d = v.i8; break;
    case GGUF_UINT16: *i = v.u16; *d = v.u16; break;
    case GGUF_INT16: *i = v.i16; *d = v.i16; break;
    case GGUF_UINT32: *i = v.u32; *d = v.u32; break;
    case GGUF_INT32: *i = v.i32; *d = v.i32; break;
    case GGUF_UINT64: *i = v.u64 > INT64_MAX ? INT64_MAX : (int64_t)v.u64; *d = (double)v.u64; break;
    case GGUF_INT64: *i = v.i64; *d = (double)v.i64; break;
    /* floats are never read as integers (gguf_get_int refuses them): no conversion that could overflow */
    case GGUF_FLOAT32: *d = v.f32; *i = 0; break;
    case GGUF_FLOAT64: *d = v.f64; *i = 0; break;
    default: return -1;
    }
    return 0;
}

int gguf_get_int(const GgufFile *f, const char *key, int64_t *out)
{
    const GgufKV *kv = gguf_find_kv(f, key);
    double d;
    if (!kv || kv->type == GGUF_FLOAT32 || kv->type == GGUF_FLOAT64) return -1;
    return read_number(f, f->base + kv->value_offset, kv->type, &d, out);
}

int gguf_get_float(const GgufFile *f, const char *key, double *out)
{
    const GgufKV *kv = gguf_find_kv(f, key);
    int64_t i;
    if (!kv) return -1;
    return read_number(f, f->base + kv->value_offset, kv->type, out, &i);
}

int gguf_get_string(const GgufFile *f, const char *key, char *out, size_t cap)
{
    const GgufKV *kv = gguf_find_kv(f, key);
    if (!kv || kv->type != GGUF_STRING || cap == 0) return -1;
    uint64_t len;
    memcpy(&len, f->base + kv->value_offset, 8); /* bounds were checked at open */
    size_t n = len < cap - 1 ? (size_t)len : cap - 1;
    memcpy(out, f->base + kv->value_offset + 8, n);
    out[n] = 0;
    return 0;
}

static const GgufKV *find_array(const GgufFile *f, const char *key, uint32_t want, KvError *err)
{
    const GgufKV *kv = gguf_find_kv(f, key);
    if (!kv) return kv_fail(err, "%s: metadata '%s' is missing", f->path, key), NULL;
    if (kv->type != GGUF_ARRAY || kv->array_type != want)
        return kv_fail(err, "%s: metadata '%s' has an unexpected type", f->path, key), NULL;
    return kv;
}

int gguf_get_string_array(const GgufFile *f, const char *key, char ***out, uint64_t *count, KvError *err)
{
    const GgufKV *kv = find_array(f, key, GGUF_STRING, err);
    if (!kv) return -1;
    char **items = calloc(kv->array_count ? kv->array_count : 1, sizeof *items);
    if (!items) return kv_fail(err, "%s: out of memory reading '%s'", f->path, key);
    Cursor c = {f->base, f->size, kv->value_offset + 12, 0};
    for (uint64_t i = 0; i < kv->array_count; i++) {
        items[i] = take_string(&c);
        if (!items[i]) {
            for (uint64_t j = 0; j < i; j++) free(items[j]);
            free(items);
            return kv_fail(err, "%s: metadata '%s' is malformed", f->path, key);
        }
    }
    *out = items;
    *count = kv->array_count;
    return 0;
}

int gguf_get_float_array(const GgufFile *f, const char *key, float **out, uint64_t *count, KvError *err)
{
    const GgufKV *kv = find_array(f, key, GGUF_FLOAT32, err);
    if (!kv) return -1;
    float *v = malloc((kv->array_count ? kv->array_count : 1) * sizeof *v);
    if (!v) return kv_fail(err, "%s: out of memory reading '%s'", f->path, key);
    memcpy(v, f->base + kv->value_offset + 12, kv->array_count * sizeof *v);
    *out = v;
    *count = kv->array_count;
    return 0;
}

/* ---- accessors for the tokenizers ---- */

const char *gguf_get_string_view(const GgufFile *f, const char *key, size_t *len)
{
    const GgufKV *kv = gguf_find_kv(f, key);
    if (!kv || kv->type != GGUF_STRING) return NULL;
    uint64_t n;
    memcpy(&n, f->base + kv->value_offset, 8); /* bounds were checked at open */
    *len = (size_t)n;
    return (const char *)f->base + kv->value_offset + 8;
}

int gguf_get_string_views(const GgufFile *f, const char *key, GgufString **out, uint64_t *count, KvError *err)
{
    const GgufKV *kv = find_array(f, key, GGUF_STRING, err);
    if (!kv) return -1;
    GgufString *v = malloc((kv->array_count ? kv->array_count : 1) * sizeof *v);
    if (!v) return kv_fail(err, "%s: out of memory reading '%s'", f->path, key);
    size_t pos = kv->value_offset + 12;
    for (uint64_t i = 0; i < kv->array_count; i++) {
        uint64_t n;
        memcpy(&n, f->base + pos, 8); /* every length was checked against the file at open */
        v[i].s = (const char *)f->base + pos + 8;
        v[i].len = (size_t)n;
        pos += 8 + (size_t)n;
    }
    *out = v;
    *count = kv->array_count;
    return 0;
}

int gguf_get_i32_array(const GgufFile *f, const char *key, int32_t **out, uint64_t *count, KvError *err)
{
    const GgufKV *kv = find_array(f, key, GGUF_INT32, err);
    if (!kv) return -1;
    int32_t *v = malloc((kv->array_count ? kv->array_count : 1) * sizeof *v);
    if (!v) return kv_fail(err, "%s: out of memory reading '%s'", f->path, key);
    memcpy(v, f->base + kv->value_offset + 12, kv->array_count * sizeof *v);
    *out = v;
    *count = kv->array_count;
    return 0;
}
