/* Figures from a trace (kvtrace record): the attention heatmap of one head,
 * recomputed exactly from q and k as the simulator does, in cells of
 * several tokens for a long sequence. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../trace/trace_file.h"
#include "../trace/trace_layer.h"
#include "figure.h"

/* A sequence longer than FIGURE_CELLS tokens is drawn in square cells of
 * figure_cell(T) tokens, each the mean of the attention over its causal
 * entries (i <= t); rows are recomputed HEATMAP_ROWS at a time (a whole
 * number of cell rows), so neither the T x T matrix nor its text ever exists. */
enum { HEATMAP_ROWS = 256 };

/* One row of cells: rows [0, rows) of block are tokens y0.. of the sequence. */
static void heatmap_line(FILE *out, const float *block, int rows, int y0, int T, int cell)
{
    for (int x0 = 0; x0 < T; x0 += cell) {
        int x1 = x0 + cell < T ? x0 + cell : T;
        long count = figure_causal_entries(y0, y0 + rows, x0, x1);
        if (count == 0) { /* above the diagonal: keys not yet produced */
            fputs("0 ", out);
            continue;
        }
        double sum = 0;
        for (int r = 0; r < rows; r++)
            for (int i = x0; i < x1 && i <= y0 + r; i++) sum += block[(size_t)r * T + i];
        double mean = sum / (double)count;
        fprintf(out, "%.4g ", mean > 1e-30 ? mean : 1e-30); /* not 0 (blank): below the colour range, black */
    }
    fputc('\n', out);
}

static int write_heatmap(FigureJob *job, const float *q, const float *k, int d, int T, char *rel, size_t cap,
                         KvError *err)
{
    int cell = figure_cell(T), rows = HEATMAP_ROWS / cell > 1 ? HEATMAP_ROWS / cell * cell : cell;
    float *block = malloc((size_t)rows * T * sizeof(float));
    if (!block) return kv_fail(err, "out of memory for %d rows of %d tokens", rows, T);
    FILE *out = figure_data(job, "heatmap.dat", rel, cap, err);
    if (!out) {
        free(block);
        return -1;
    }
    for (int t0 = 0; t0 < T; t0 += rows) {
        int n = T - t0 < rows ? T - t0 : rows;
        attention_rows(q, k, d, t0, n, block, T);
        for (int r = 0; r < n; r += cell)
            heatmap_line(out, block + (size_t)r * T, n - r < cell ? n - r : cell, t0 + r, T, cell);
    }
    free(block);
    return figure_data_close(job, out, "heatmap.dat", err);
}

int figure_heatmap(FigureJob *job, KvError *err)
{
    const PlotOptions *opt = job->opt;
    TraceReader r;
    if (trace_open(&r, job->input, err)) return -1;
    int layer = opt->layer >= 0 ? opt->layer : r.meta.n_layers / 2, head = opt->head, rc = -1;
    TraceSeqInfo info;
    LayerData ld = {0};
    uint8_t *kv_heads = NULL;
    char rel[256];
    if (opt->sequence < 0 || opt->sequence >= r.n_sequences || layer >= r.meta.n_layers || head < 0 ||
        head >= r.meta.n_heads) {
        kv_fail(err, "%s: no sequence %d, layer %d, head %d (it has %d sequences, %d layers, %d heads)", job->input,
                opt->sequence, layer, head, r.n_sequences, r.meta.n_layers, r.meta.n_heads);
        goto done;
    }
    int g = head / (r.meta.n_heads / r.meta.n_kv_heads);
    if (!(kv_heads = calloc((size_t)r.meta.n_kv_heads, 1))) {
        kv_fail(err, "out of memory");
        goto done;
    }
    kv_heads[g] = 1; /* the head's kv head alone is read */
    if (trace_sequence_info(&r, opt->sequence, &info, err) ||
        trace_load_layer(&r, opt->sequence, layer, &info, 0, kv_heads, &ld, err))
        goto done;
    int T = ld.T, cell = figure_cell(T);
    if (write_heatmap(job, ld.q + (size_t)head * T * ld.d, ld.k + (size_t)g * T * ld.d, ld.d, T, rel, sizeof rel, err))
        goto done;
    char model[128];
    trace_model_label(&r.meta, model, sizeof model);
    figure_var(job, "data", "%s", rel);
    figure_var(job, "title", "%s: attention of layer %d head %d, sequence %d (T = %d, %d prompt tokens)", model, layer,
               head, opt->sequence, T, info.n_prompt);
    if (cell > 1) figure_var(job, "cblabel", "mean of a_t(i) over %d x %d-token cells", cell, cell);
    else figure_var(job, "cblabel", "attention probability a_t(i)");
    figure_num(job, "T", T);
    figure_num(job, "cell", cell);
    /* the colour floor: a decade below a uniform row's 1/T on long sequences, else 10^-4 */
    int decade = (int)floor(log10(0.1 / T));
    figure_num(job, "decade", decade < -4 ? decade : -4);
    figure_var(job, "logformat", "%s", figure_log_format(job));
    rc = 0;
done:
    free(kv_heads);
    trace_layer_free(&ld);
    trace_close(&r);
    return rc;
}
