/* matmul.h — products of activations with weight matrices kept in their
 * GGUF encoding.
 *
 * A block of several tokens converts the weights a tile of rows at a time
 * into a small float32 scratch and multiplies the tile with OpenBLAS sgemm;
 * a single token (or two or three) takes each row's dot product straight
 * from the encoded bytes (qkernels.h).  Rows (tiles) are shared among the
 * worker threads; each output value is computed by one thread in one fixed
 * order, so results are the same for any number of threads.  Where the
 * processor has an integer kernel for the type (qkernels.h: Q4_K, Q6_K, Q8_0
 * and Q5_0 with AVX-512), a single token's input is rounded to 16-bit integers once per
 * product (X16) and the rows take integer dot products; otherwise the
 * result is the same as for an F32 matrix of the dequantized values. */
#ifndef KV_MATMUL_H
#define KV_MATMUL_H

#include <stddef.h>
#include <stdint.h>

#include "../util/error.h"
#include "../util/pool.h"
#include "qkernels.h"

typedef struct {
    const uint8_t *data; /* row r starts at data + r * row_bytes (any alignment) */
    uint32_t type;       /* GGML_* */
    int rows, cols;      /* [rows][cols]: out[r] = Σ_c W[r][c] * in[c] */
    size_t row_bytes;
} QMatrix;

/* Dequantizes row r into out[cols]. */
void qmatrix_row(const QMatrix *w, int r, float *out);

#define MATMUL_MIN_BLOCK 4
#define MATMUL_MAX_MULTI 3

/* Scratch and threads for the products; one per forward pass state. */
typedef struct {
    WorkerPool *pool;  /* NULL: the caller's thread alone */
    int n_workers;
    float **tile;      /* [n_workers][tile_floats] */
    size_t tile_floats;
    X16 x16[MATMUL_MIN_BLOCK - 1]; /* a few tokens' inputs as 16-bit integers */
    int x16_cols;                  /* their capacity */
} MatmulContext;

/* max_cols: the widest matrix; blocks: whether blocks of >= MATMUL_MIN_BLOCK
 * tokens will be multiplied (then tile scratch is allocated). */
int matmul_init(MatmulContext *c, int n_threads, int max_cols, int blocks, KvError *err);
void matmul_free(MatmulContext *c);


/* outs[i][n][ws[i]->rows] = in[n][cols] · ws[i]ᵀ for count matrices that
 * read the same input (q, k and v; gate and up), in one parallel run;
 * count <= MATMUL_MAX_MULTI. */
void matmul_multi(MatmulContext *c, int count, float *const *outs, const float *in, int n, const QMatrix *const *ws);
void matmul(MatmulContext *c, float *out, const float *in, int n, const QMatrix *w);

#endif
