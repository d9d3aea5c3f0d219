/* gguf.h — reading GGUF files (v2 and v3): metadata and the tensor table.
 *
 * The file is memory-mapped; every length, count and offset read from it is
 * checked against the file size before it is used, so a truncated or hostile
 * header yields an error, never a read out of bounds.  Tensor data pointers
 * point into the mapping and stay valid until gguf_close(). */
#ifndef KV_GGUF_H
#define KV_GGUF_H

#include <stddef.h>
#include <stdint.h>

#include "../util/error.h"

enum {
    GGUF_UINT8 = 0, GGUF_INT8 = 1, GGUF_UINT16 = 2, GGUF_INT16 = 3, GGUF_UINT32 = 4,
    GGUF_INT32 = 5, GGUF_FLOAT32 = 6, GGUF_BOOL = 7, GGUF_STRING = 8, GGUF_ARRAY = 9,
    GGUF_UINT64 = 10, GGUF_INT64 = 11, GGUF_FLOAT64 = 12,
};

typedef struct {
    char *key;
    uint32_t type;          /* GGUF_* */
    size_t value_offset;    /* where the value starts in the file */
    uint32_t array_type;    /* for arrays: element type */
    uint64_t array_count;   /* for arrays: element count */
} GgufKV;

typedef struct {
    char *name;
    uint32_t n_dims;
    uint64_t dims[4];       /* dims[0] is the contiguous (innermost) one */
    uint64_t n_elements;
    uint32_t type;          /* GGML_* (see quant.h) */
    const void *data;
    size_t n_bytes;
} GgufTensor;

typedef struct {
    char path[512];
    const uint8_t *base;
    size_t size;
    uint32_t version;
    uint64_t n_kv;
    GgufKV *kv;
    uint64_t n_tensors;
    GgufTensor *tensors;
    size_t alignment;
} GgufFile;

int gguf_open(GgufFile *f, const char *path, KvError *err);
void gguf_close(GgufFile *f);

const GgufKV *gguf_find_kv(const GgufFile *f, const char *key);
/* Size in bytes of an entry's serialized value (checked at open). */
size_t gguf_value_size(const GgufFile *f, const GgufKV *kv);
const GgufTensor *gguf_find_tensor(const GgufFile *f, const char *name);

/* Scalar getters: return 0 and set *out when the key exists with a numeric
 * type convertible to the request; -1 otherwise (no error message). */
int gguf_get_int(const GgufFile *f, const char *key, int64_t *out);
int gguf_get_float(const GgufFile *f, const char *key, double *out);
/* Copies a string value (NUL-terminated, truncated to cap). */
int gguf_get_string(const GgufFile *f, const char *key, char *out, size_t cap);

/* Array readers: the caller frees *out (and for strings, each element and
 * then the array).  Fail with a message on a wrong element type. */
int gguf_get_string_array(const GgufFile *f, const char *key, char ***out, uint64_t *count, KvError *err);
int gguf_get_float_array(const GgufFile *f, const char *key, float **out, uint64_t *count, KvError *err);

/* For the tokenizers: a string value, or each string of an array, as a view
 * into the mapping (not NUL-terminated; valid until gguf_close), and an INT32
 * array copied out.  The view getter returns NULL when the key is missing or
 * not a string. */
typedef struct {
    const char *s;
    size_t len;
} GgufString;
const char *gguf_get_string_view(const GgufFile *f, const char *key, size_t *len);
int gguf_get_string_views(const GgufFile *f, const char *key, GgufString **out, uint64_t *count, KvError *err);
int gguf_get_i32_array(const GgufFile *f, const char *key, int32_t **out, uint64_t *count, KvError *err);

#endif
