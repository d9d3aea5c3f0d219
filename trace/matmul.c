#include "matmul.h"

#include <cblas.h>
#include <stdlib.h>
#include <string.h>

#include "qkernels.h"

/* The float32 scratch a tile of a block product fills (its rows depend only
 * on the matrix width, so the arithmetic never depends on the thread count). */
#define TILE_FLOATS (512 * 1024)
#define TILE_MIN_ROWS 16

/* Rows per task of a single-token product: about four tasks per worker.
 * Smaller tasks measured slower (16 rows: 28.6 against 46 tokens/s on two
 * threads, TinyLlama-shaped Q4_K), as the workers meet at the shared task
 * counter every few microseconds.  Each row is still one dot product in one
 * order, so results do not depend on it. */
static int dot_rows(int rows, int n_workers)
{
    int step = (rows + 4 * n_workers - 1) / (4 * n_workers);
    return step < 16 ? 16 : (step + 15) / 16 * 16;
}

static int tile_rows(int cols)
{
    int rows = TILE_FLOATS / cols / 16 * 16;
    return rows < TILE_MIN_ROWS ? TILE_MIN_ROWS : rows;
}

void qmatrix_row(const QMatrix *w, int r, float *out)
{
    qkernels()->type[w->type].dequant(w->data + (size_t)r * w->row_bytes, out, w->cols);
}

int matmul_init(MatmulContext *c, int n_threads, int max_cols, int blocks, KvError *err)
{
    memset(c, 0, sizeof *c);
    if (n_threads > 1 && !(c->pool = pool_create(n_threads, err))) return -1;
    c->n_workers = pool_threads(c->pool);
    c->x16_cols = max_cols / 32 * 32;
    for (int k = 0; k < MATMUL_MIN_BLOCK - 1; k++) {
        X16 *x = &c->x16[k];
        x->q = malloc((size_t)c->x16_cols * sizeof *x->q + 1);
        x->scale = malloc((size_t)c->x16_cols / 32 * sizeof *x->scale + 1);
        x->sum32 = malloc((size_t)c->x16_cols / 32 * sizeof *x->sum32 + 1);
        if (!x->q || !x->scale || !x->sum32) {
            matmul_free(c);
            return kv_fail(err, "out of memory for matrix scratch");
        }
    }
    if (!blocks) return 0;
    /* a tile holds tile_rows(cols) * cols <= max(TILE_FLOATS, TILE_MIN_ROWS * cols) floats */
    c->tile_floats = TILE_MIN_ROWS * (size_t)max_cols > TILE_FLOATS ? TILE_MIN_ROWS * (size_t)max_cols : TILE_FLOATS;
    c->tile = calloc((size_t)c->n_workers, sizeof *c->tile);
    for (int w = 0; c->tile && w < c->n_workers; w++)
        if (!(c->tile[w] = malloc(c->tile_floats * sizeof(float)))) break;
    if (!c->tile || !c->tile[c->n_workers - 1]) {
        matmul_free(c);
        return kv_fail(err, "out of memory for matrix scratch");
    }
    return 0;
}

void matmul_free(MatmulContext *c)
{
    for (int w = 0; c->tile && w < c->n_workers; w++) free(c->tile[w]);
    free(c->tile);
    for (int k = 0; k < MATMUL_MIN_BLOCK - 1; k++) {
        free(c->x16[k].q);
        free(c->x16[k].scale);
        free(c->x16[k].sum32);
    }
    pool_free(c->pool);
    memset(c, 0, sizeof *c);
}

/* One parallel run over the rows of several matrices: task t covers `step`
 * rows of one matrix. */
typedef struct {
    MatmulContext *mc;
    int count, n;
    float *const *outs;
    const float *in;
    const QMatrix *const *ws;
    int use_x16; /* mc->x16[0..n) hold the input */
    int first_task[MATMUL_MAX_MULTI + 1]; /* first task of each matrix; [count] = total */
    int step[MATMUL_MAX_MULTI];
} Job;

static void locate(const Job *job, int task, int *i, int *r0, int *r1)
{
    int m = 0;
    while (task >= job->first_task[m + 1]) m++;
    *i = m;
    *r0 = (task - job->first_task[m]) * job->step[m];
    *r1 = *r0 + job->step[m] < job->ws[m]->rows ? *r0 + job->step[m] : job->ws[m]->rows;
}

/* A few tokens: dot products straight from the encoded rows. */
static void dot_task(void *ctx, int task, int worker)
{
    (void)worker;
    const Job *job = ctx;
    int i, r0, r1;
    locate(job, task, &i, &r0, &r1);
    const QMatrix *w = job->ws[i];
    const QTypeKernels *kernel = &qkernels()->type[w->type];
    int x16 = job->use_x16 && kernel->dot_x16;
    for (int r = r0; r < r1; r++) {
        const uint8_t *row = w->data + (size_t)r * w->row_bytes;
        for (int k = 0; k < job->n; k++)
            job->outs[i][(size_t)k * w->rows + r] = x16 ? kernel->dot_x16(row, &job->mc->x16[k], w->cols)
                                                        : kernel->dot(row, job->in + (size_t)k * w->cols, w->cols);
    }
}

/* A block of tokens: a tile of rows to float32, then sgemm. */
static void tile_task(void *ctx, int task, int worker)
{
    const Job *job = ctx;
    int i, r0, r1;
    locate(job, task, &i, &r0, &r1);
    const QMatrix *w = job->ws[i];
    float *tile = job->mc->tile[worker];
    void (*dequant)(const uint8_t *, float *, int) = qkernels()->type[w->type].dequant;
    for (int r = r0; r < r1; r++) dequant(w->data + (size_t)r * w->row_bytes, tile + (size_t)(r - r0) * w->cols, w->cols);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, job->n, r1 - r0, w->cols, 1.0f, job->in, w->cols, tile,
                w->cols, 0.0f, job->outs[i] + r0, w->rows);
}

void matmul_multi(MatmulContext *c, int count, float *const *outs, const float *in, int n, const QMatrix *const *ws)
{
    int blocks = n >= MATMUL_MIN_BLOCK && c->tile;
    Job job = {.mc = c, .count = count, .n = n, .outs = outs, .in = in, .ws = ws};
    for (int i = 0; i < count; i++) {
        job.step[i] = blocks ? tile_rows(ws[i]->cols) : dot_rows(ws[i]->rows, c->n_workers);
        job.first_task[i + 1] = job.first_task[i] + (ws[i]->rows + job.step[i] - 1) / job.step[i];
    }
    int cols = ws[0]->cols;
    for (int i = 0; !blocks && n < MATMUL_MIN_BLOCK && i < count; i++)
        job.use_x16 |= qkernels()->type[ws[i]->type].dot_x16 != NULL && cols % 32 == 0 && cols <= c->x16_cols;
    for (int k = 0; job.use_x16 && k < n; k++) x16_quantize(in + (size_t)k * cols, cols, &c->x16[k]);
    pool_run(c->pool, job.first_task[count], blocks ? tile_task : dot_task, &job);
}

void matmul(MatmulContext *c, float *out, const float *in, int n, const QMatrix *w)
{
    matmul_multi(c, 1, &out, in, n, &w);
}
