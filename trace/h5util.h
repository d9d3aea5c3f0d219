/* h5util.h — small checked helpers over the HDF5 C API shared by the trace,
 * results and analysis files: string/number attributes, growable chunked
 * datasets, whole-dataset reads.  Every helper returns -1 (with a message
 * naming the file and object) instead of letting HDF5 print its own stack. */
#ifndef KV_H5UTIL_H
#define KV_H5UTIL_H

#include <hdf5.h>
#include <stddef.h>

#include "../util/error.h"

/* Silences HDF5's automatic error printing (call once at startup). */
void h5_quiet(void);

int h5_attr_write_str(hid_t obj, const char *name, const char *value);
int h5_attr_write_int(hid_t obj, const char *name, long long value);
int h5_attr_write_double(hid_t obj, const char *name, double value);
/* Read an attribute; -1 when missing or of the wrong kind. */
int h5_attr_read_str(hid_t obj, const char *name, char *out, size_t cap);
int h5_attr_read_int(hid_t obj, const char *name, long long *out);
int h5_attr_read_double(hid_t obj, const char *name, double *out);
/* Reads a string attribute of any length into a malloc'd string. */
char *h5_attr_read_str_alloc(hid_t obj, const char *name);

hid_t h5_float16_type(void); /* IEEE half precision; caller closes */

/* Creates a chunked, shuffle+deflate dataset whose first `growable` axes
 * start at 0 and are unlimited; the rest have the fixed sizes in dims. */
hid_t h5_create_growable(hid_t loc, const char *name, hid_t file_type, int rank, const hsize_t *dims,
                         const hsize_t *chunk, int growable, int deflate_level);

/* Grows axis 0 to row0+nrows and writes nrows rows from buf. */
int h5_append_rows(hid_t dset, hid_t mem_type, hsize_t row0, hsize_t nrows, const void *buf);

/* Creates and fills a small fixed-size (contiguous) dataset. */
int h5_write_array(hid_t loc, const char *name, hid_t file_type, hid_t mem_type, int rank, const hsize_t *dims,
                   const void *buf);

/* A 1-D dataset of UTF-8 variable-length strings. */
int h5_write_strings(hid_t loc, const char *name, const char *const *v, int n);

/* Reads a 1-D string dataset of n elements into malloc'd strings (NULL on
 * failure); free with h5_free_strings. */
char **h5_read_strings(hid_t loc, const char *name, int n);
void h5_free_strings(char **v, int n);

/* Writes a whole file through write(file, ctx) under a temporary name and
 * renames it into place, so a failure never leaves a file that looks
 * complete.  what names the file kind in messages ("results", "analysis"). */
int h5_write_file(const char *path, const char *what, int (*write)(hid_t file, void *ctx), void *ctx,
                  KvError *err);

/* Rank and dims of a dataset; -1 if it does not exist. */
int h5_dataset_shape(hid_t loc, const char *name, int *rank, hsize_t dims[8]);
/* Reads a whole dataset converted to mem_type when its element count is n. */
int h5_read_all(hid_t loc, const char *name, hid_t mem_type, void *out, size_t n);

/* Reads a whole float dataset (float32, float64 or IEEE float16) into n
 * floats; float16 is converted here, not by HDF5's slow generic conversion. */
int h5_read_floats(hid_t loc, const char *name, float *out, size_t n);

int h5_exists(hid_t loc, const char *path);

#endif
