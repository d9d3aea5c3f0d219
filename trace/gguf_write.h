/* gguf_write.h — writing GGUF v3 files.
 *
 * Used to convert a model to another tensor type (tests write F16 and Q8_0
 * copies of the bundled model) and to build random-weight models with large
 * layer shapes for benchmarks.  Everything is buffered in memory and written
 * at gguf_writer_save(), to a temporary name renamed into place. */
#ifndef KV_GGUF_WRITE_H
#define KV_GGUF_WRITE_H

#include <stddef.h>
#include <stdint.h>

#include "gguf.h"

typedef struct GgufWriter GgufWriter;

GgufWriter *gguf_writer_new(void);
void gguf_writer_free(GgufWriter *w);

/* Each add returns 0, or -1 when out of memory (the writer then refuses to save). */
int gguf_writer_add_string(GgufWriter *w, const char *key, const char *value);
int gguf_writer_add_u32(GgufWriter *w, const char *key, uint32_t value);
int gguf_writer_add_f32(GgufWriter *w, const char *key, float value);
/* Copies one metadata entry verbatim from an open GGUF file. */
int gguf_writer_copy_kv(GgufWriter *w, const GgufFile *src, const GgufKV *kv);
/* Quantizes data (float32, n = product of dims) to type and stores it. */
int gguf_writer_add_tensor(GgufWriter *w, const char *name, int n_dims, const uint64_t *dims,
                           uint32_t type, const float *data);

/* Stores a tensor already encoded in type (ggml_row_bytes(type, n) bytes). */
int gguf_writer_add_encoded(GgufWriter *w, const char *name, int n_dims, const uint64_t *dims, uint32_t type,
                            const void *bytes);
/* Arrays of GGUF_INT32, GGUF_UINT32 or GGUF_FLOAT32 values, and of strings. */
int gguf_writer_add_array(GgufWriter *w, const char *key, uint32_t elem_type, uint64_t count, const void *values);
int gguf_writer_add_string_array(GgufWriter *w, const char *key, const char *const *values, uint64_t count);

int gguf_writer_save(GgufWriter *w, const char *path, KvError *err);

#endif
