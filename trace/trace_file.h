/* trace_file.h — the kvtrace trace format (HDF5, "kvtrace-trace/1"):
 * writing it incrementally while a model runs, and reading it back.
 * FORMAT.md in the repository root is the specification; this module is its
 * only implementation.
 *
 * Writing: every sequence's groups, datasets and attributes are created up
 * front, then the file switches to HDF5's SWMR mode (single writer, multiple
 * readers).  From then on rows (one per token) are staged in memory and
 * appended to the chunked datasets at each flush; after the rows reach the
 * file, the sequence's `n_rows` attribute advances to cover them.  So a
 * reader opened during the recording, or the file left by a recording that
 * was killed, always shows a consistent prefix: rows 0..n_rows-1 of every
 * dataset.  `complete` attributes are set last. */
#ifndef KV_TRACE_FILE_H
#define KV_TRACE_FILE_H

#include <stddef.h>

#include "../util/error.h"

#define TRACE_FORMAT "kvtrace-trace/1"
#define KVTRACE_VERSION "0.1.0"

typedef struct {
    char model_name[128];
    char model_arch[32];
    char model_digest[65];
    char model_file[512];
    char model_weight_type[16];
    int n_layers, n_heads, n_kv_heads, head_dim, dim, vocab_size;
    double rope_theta;
    char rope_layout[128]; /* the rotation applied before q and k were stored, in words */
    char recorder_version[32];
    char created[40];
    char command[4096];
} TraceMeta;

typedef struct {
    int store_attention; /* also store attention probabilities [heads][T][T] */
    int half;            /* q, k, v as float16 */
    int block_rows;      /* most rows the recorder runs at once (0: a few) */
} TraceOptions;

/* What is known of a sequence before its recording starts. */
#define TRACE_SEQ_ATTRS 8
typedef struct {
    const char *prompt; /* the prompt text ("" for explicit ids) */
    int n_prompt;       /* P */
    int capacity;       /* rows it may take (prompt + generated) */
    int n_attrs;        /* numeric attributes saying how it was produced */
    const char *attr_names[TRACE_SEQ_ATTRS];
    double attr_values[TRACE_SEQ_ATTRS];
} TraceSequencePlan;

/* A short name for titles and reports: the model file's name without its
 * folder and extension ("stories260K"), else the model name. */
void trace_model_label(const TraceMeta *m, char *out, size_t cap);

/* ---- writing ---- */

typedef struct TraceWriter TraceWriter;

/* Creates the file with every planned sequence (empty) and starts SWMR
 * writing.  Messages name `display` (the output's final name) rather than
 * path when given. */
TraceWriter *trace_writer_create(const char *path, const char *display, const TraceMeta *meta,
                                 const TraceOptions *opt, const TraceSequencePlan *plan, int n_sequences,
                                 KvError *err);
/* Starts the next planned sequence. */
int trace_writer_begin_sequence(TraceWriter *w, KvError *err);
/* Rows per flush: callers never stage more rows than this between flushes. */
int trace_writer_stage_rows(const TraceWriter *w);
int trace_writer_stage_token(TraceWriter *w, int pos, int token, const char *piece);
int trace_writer_stage_qkv(TraceWriter *w, int layer, int pos0, int n, const float *q, const float *k,
                           const float *v);
/* The recorder's KV cache, [n_layers][n_kv_heads][capacity][head_dim] keys and
 * values, which hold every staged row's k and v until the flush: the writer
 * reads k and v from there (stage_qkv takes them only for their norms), so
 * it stages no copies of them.  Required before the first sequence begins. */
int trace_writer_kv_source(TraceWriter *w, const float *keys, const float *values, int capacity, KvError *err);
int trace_writer_stage_attention(TraceWriter *w, int layer, int head, int pos0, int n, const float *probs, int ld);
void trace_writer_set_nll(TraceWriter *w, int pos, float nll);
/* Rows staged and not yet written. */
int trace_writer_pending(const TraceWriter *w);
int trace_writer_flush(TraceWriter *w, KvError *err);
/* Flushes and marks the sequence complete (or leaves it flagged incomplete). */
int trace_writer_end_sequence(TraceWriter *w, int complete, KvError *err);
/* Closes the file; marks it complete when asked and every sequence was. Frees w. */
int trace_writer_close(TraceWriter *w, int complete, KvError *err);

/* ---- reading ---- */

typedef struct {
    long long file; /* hid_t */
    char path[512];
    TraceMeta meta;
    int n_sequences; /* sequences with at least one row */
    int n_planned;   /* sequences the recording planned (more when it was interrupted) */
    int complete;
} TraceReader;

typedef struct {
    int n_tokens;       /* T: rows every dataset holds in full (n_rows for a trace being recorded) */
    int n_prompt;
    int complete;
    int has_attention;
    int has_values; /* v and its norms (needed for output error and vatp) */
    int half;       /* q/k/v stored as float16 */
} TraceSeqInfo;

/* Opens and checks the root: format version and model shape. */
int trace_open(TraceReader *r, const char *path, KvError *err);
void trace_close(TraceReader *r);
/* Checks one sequence's datasets against the shapes FORMAT.md gives. */
int trace_sequence_info(const TraceReader *r, int seq, TraceSeqInfo *info, KvError *err);
int trace_read_tokens(const TraceReader *r, int seq, int *tokens, int n, KvError *err);
int trace_read_floats(const TraceReader *r, int seq, const char *name, float *out, size_t n, KvError *err);
/* name is one of q, k, v, k_norm, v_norm_l1, v_norm_l2, attention; out holds n floats.
 * Values must be finite. */
int trace_read_layer(const TraceReader *r, int seq, int layer, const char *name, float *out, size_t n,
                     KvError *err);
/* The same for heads first .. first+width-1 only (axis 1): out is [T][width][...]. */
int trace_read_layer_heads(const TraceReader *r, int seq, int layer, const char *name, int first, int width,
                           float *out, size_t n, KvError *err);
/* Rows t0..t0+n-1, columns 0..t0+n-1 of one head's stored attention into
 * out (row stride ld). */
int trace_read_attention_rows(const TraceReader *r, int seq, int layer, int head, int t0, int n, float *out,
                              long ld, KvError *err);
char *trace_read_prompt(const TraceReader *r, int seq);
/* Pieces of tokens 0..n-1 (n may be less than T): malloc'd strings; NULL on failure. */
char **trace_read_pieces(const TraceReader *r, int seq, int n, KvError *err);
void trace_free_pieces(char **pieces, int n);

#endif
