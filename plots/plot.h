/* plot.h — `kvtrace plot` as a library call: figures from results,
 * analysis, eval and trace files.
 *
 * For every figure kvtrace writes plain whitespace-separated data files into
 * DIR/data and runs one gnuplot script from plots/ (embedded in the binary
 * and written to DIR/scripts), with gnuplot's output in DIR/data/NAME.log.
 * DIR/replot.sh holds the exact commands, so any figure can be re-drawn or
 * restyled by hand from the same data.
 *
 * The set is written atomically: everything goes into a temporary folder
 * inside DIR and is moved into place only when every figure succeeded, under
 * util/output.h's rule (existing files need force; an input is never an
 * output). */
#ifndef KV_PLOT_H
#define KV_PLOT_H

#include <stdio.h>

#include "../util/error.h"

typedef struct {
    const char *name;   /* "budget_curves.gp" */
    const char *text;
} PlotScript;

/* Generated from the .gp files in plots/ by plots/embed.py; ends with {0, 0}. */
extern const PlotScript PLOT_SCRIPTS[];

#define PLOT_MAX_FILTERS 64

typedef struct {
    const char *out_dir;
    const char *format;   /* "png" (pngcairo, default), "svg", "pdf" (pdfcairo), or "dumb" (text, for terminals and tests) */
    const char *size;     /* "column", "page" (default) or "WxH" (pixels; "6x4in", "16x10cm") */
    const char *figures;  /* comma-separated figure names; NULL = every figure the inputs allow */
    const char *labels;   /* comma-separated, one per results/eval file (NULL: the file names) */
    const char *policy[PLOT_MAX_FILTERS]; /* results figures: only these policies ... */
    int n_policy;
    const char *config[PLOT_MAX_FILTERS]; /* ... or these configurations ("a2sf:alpha=0.1") */
    int n_config;
    int force;            /* replace existing outputs */
    int data_only;        /* write the data files, scripts and replot.sh but run no gnuplot (draw later, elsewhere) */
    int sequence;         /* heatmap: which sequence of a trace */
    int layer, head;      /* heatmap: layer and query head (-1 = middle layer) */
    const char *budget;   /* retention, eviction ages: budget as given to simulate (NULL = the middle one) */
} PlotOptions;

#define PLOT_MAX_OUTPUTS 32

typedef struct {
    int n;
    char name[PLOT_MAX_OUTPUTS][32];     /* figure names */
    char file[PLOT_MAX_OUTPUTS][1100];   /* figure files written */
} PlotOutput;

void plot_defaults(PlotOptions *opt);
int plot_run(const char *const *inputs, int n_inputs, const PlotOptions *opt, PlotOutput *done, KvError *err);
/* The figures, what each needs and shows, for --help. */
void plot_print_figures(FILE *out);

#endif
