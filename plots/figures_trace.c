/* Figures from a trace (kvtrace record): the attention heatmap of one head,
 * recomputed exactly from q and k as the simulator does. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../trace/trace_file.h"
#include "../trace/trace_layer.h"
#include "figure.h"

static int write_heatmap(FigureJob *job, const float *attention, int T, char *rel, size_t cap, KvError *err)
{
    FILE *out = figure_data(job, "heatmap.dat", rel, cap, err);
    if (!out) return -1;
    for (int t = 0; t < T; t++) {
        const float *row = attention + (size_t)t * T;
        for (int i = 0; i < T; i++) {
            if (i > t) fputs("0 ", out);
            else fprintf(out, "%.4g ", row[i] > 1e-6f ? row[i] : 1e-6f); /* below the colour range: black */
        }
        fputc('\n', out);
    }
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
    float *attention = NULL;
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
    int T = ld.T;
    if (!(attention = malloc((size_t)T * T * sizeof(float)))) {
        kv_fail(err, "out of memory for a %d x %d heatmap", T, T);
        goto done;
    }
    attention_rows(ld.q + (size_t)head * T * ld.d, ld.k + (size_t)g * T * ld.d, ld.d, 0, T, attention, T);
    if (write_heatmap(job, attention, T, rel, sizeof rel, err)) goto done;
    char model[128];
    trace_model_label(&r.meta, model, sizeof model);
    figure_var(job, "data", "%s", rel);
    figure_var(job, "title", "%s: attention of layer %d head %d, sequence %d (T = %d, %d prompt tokens)", model, layer, head, opt->sequence, T, info.n_prompt);
    figure_num(job, "T", T);
    figure_var(job, "logformat", "%s", figure_log_format(job));
    rc = 0;
done:
    free(kv_heads);
    free(attention);
    trace_layer_free(&ld);
    trace_close(&r);
    return rc;
}
