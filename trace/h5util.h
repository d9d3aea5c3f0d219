/* h5util.h — small checked helpers over the HDF5 C API shared by the trace,
 * results and analysis files: string/number attributes, growable chunked
 * datasets, whole-dataset reads.  Every helper returns -1 (with a message
 * naming the file and object) instead of letting HDF5 print its own stack. */
#ifndef KV_H5UTIL_H
#define KV_H5UTIL_H

#include <hdf5.h>
#include <stddef.h>

#include "../util/error.h"
#include "../util/output.h"

/* Silences HDF5's automatic error printing.  libhdf5 keeps one error stack
 * per thread: call it at startup and at the start of every thread that uses
 * HDF5. */
void h5_quiet(void);

/* Once at startup, before any other HDF5 call: no library cleanup at exit
 * (after a failed H5Fclose, e.g. on a full disk, libhdf5 1.10's exit handler
 * dereferences the half-closed file and crashes) and errors stay quiet. */
void h5_startup(void);

/* Creates (truncating) an HDF5 file in the 1.10 file format, whose metadata
 * carries checksums, so a damaged kvtrace file is refused instead of being
 * trusted.  Chunked datasets made by h5_create_growable carry fletcher32. */
hid_t h5_create_file(const char *path);

/* Opens an existing file read-only, safely: its metadata, attributes and
 * strings are first read in a child process (libhdf5 1.10 can crash or hang
 * on damaged files, most of all old-format ones without checksums), and only
 * a file the child read cleanly is opened here.  Files being recorded, or
 * left by a recording that was killed, are opened as SWMR readers.  `what`
 * names the expected kind in messages ("trace", "results file").
 * Returns the file id, or -1 with a one-line message. */
hid_t h5_open_read(const char *path, const char *what, KvError *err);

/* From now on h5_open_read skips the child's check: for MPI ranks other than
 * 0, whose inputs rank 0 checks before they open them (cli_check_traces), so
 * a sweep's traces are walked twice (by rank 0) instead of once per rank.
 * The one switch of this module's state. */
void h5_trust_inputs(void);

int h5_attr_write_str(hid_t obj, const char *name, const char *value);
int h5_attr_write_int(hid_t obj, const char *name, long long value);
int h5_attr_write_double(hid_t obj, const char *name, double value);
/* Rewrites an existing int attribute in place (allowed while SWMR-writing,
 * where creating or deleting attributes is not). */
int h5_attr_update_int(hid_t obj, const char *name, long long value);
/* Read an attribute; -1 when missing or of the wrong kind. */
int h5_attr_read_str(hid_t obj, const char *name, char *out, size_t cap);
int h5_attr_read_int(hid_t obj, const char *name, long long *out);
int h5_attr_read_double(hid_t obj, const char *name, double *out);
/* Reads a string attribute of any length into a malloc'd string. */
char *h5_attr_read_str_alloc(hid_t obj, const char *name);

hid_t h5_float16_type(void); /* IEEE half precision; caller closes */

/* Chunked storage with shuffle, deflate and (checksum) a fletcher32 checksum. */
int h5_set_chunked(hid_t dcpl, int rank, const hsize_t *chunk, int deflate_level, int checksum);

/* Creates a chunked, shuffle+deflate+fletcher32 (not for strings) dataset whose first `growable` axes
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
/* The first n strings of a longer 1-D string dataset. */
char **h5_read_string_prefix(hid_t loc, const char *name, int n);
void h5_free_strings(char **v, int n);

/* Writes a whole file through write(file, ctx) into out's temporary file
 * (output_begin made it); the caller commits or aborts.  Messages name the
 * final path, the file kind (`what`: "results", "analysis") and the OS
 * error. */
int h5_write_file(const OutputFile *out, const char *what, int (*write)(hid_t file, void *ctx), void *ctx,
                  KvError *err);

/* Provenance: attribute `name` = the SHA-256 of each file, newline-separated
 * in the order given ("unreadable" for one that cannot be read). */
int h5_attr_write_file_digests(hid_t obj, const char *name, const char *const *paths, int n);

/* Rank and dims of a dataset; -1 if it does not exist. */
int h5_dataset_shape(hid_t loc, const char *name, int *rank, hsize_t dims[8]);
/* Reads a whole dataset converted to mem_type when its element count is n. */
int h5_read_all(hid_t loc, const char *name, hid_t mem_type, void *out, size_t n);

/* Reads the first n elements (whole rows along axis 0; the dataset may hold
 * more rows) converted to mem_type. */
int h5_read_prefix(hid_t loc, const char *name, hid_t mem_type, void *out, size_t n);

/* h5_read_prefix for float data (float32, float64 or IEEE float16); float16
 * is converted here, not by HDF5's slow generic conversion. */
int h5_read_floats(hid_t loc, const char *name, float *out, size_t n);
/* The same for [first, first + width) along axis 1 of each row (width 0:
 * all of it): n floats, [rows][width][rest...]. */
int h5_read_floats_part(hid_t loc, const char *name, size_t first, size_t width, float *out, size_t n);

/* 1 when rows 0..rows-1 of a chunked dataset are not all stored (a file
 * that declares more than it holds: truncated, or crafted), 0 when they
 * are (or the dataset is not chunked), -1 on error; have/want count chunks.
 * row_axes: bit i set when axis i is indexed by rows (1 for [T, ...],
 * 6 for [H, T, T]). */
int h5_chunks_missing(hid_t loc, const char *name, hsize_t rows, unsigned row_axes, hsize_t *have, hsize_t *want);

int h5_exists(hid_t loc, const char *path);

#endif
