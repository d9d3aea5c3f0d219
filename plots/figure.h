/* figure.h — what one figure's preparation works with (private to plots/):
 * its input files, a place for data files, and the gnuplot variables the
 * script will receive.  Each figure is one prepare function: it reads its
 * inputs, writes data files and sets variables; plot.c runs gnuplot. */
#ifndef KV_FIGURE_H
#define KV_FIGURE_H

#include <hdf5.h>
#include <stdio.h>

#include "../util/error.h"
#include "plot.h"
#include "style.h"

typedef enum { INPUT_TRACE, INPUT_RESULTS, INPUT_ANALYSIS, INPUT_EVAL, INPUT_KINDS } InputKind;

typedef struct {
    const char *path;
    hid_t file;
    InputKind kind;
    char label[64];        /* results and eval files: the name in legends ("" for a single file) */
} PlotInput;

typedef struct {
    const PlotOptions *opt;
    const char *name;      /* figure name, also the output file's stem */
    const char *dir;       /* the folder the set is written into (temporary) */
    const PlotInput *const *in; /* the inputs of the figure's kind, in the order given */
    int n_in;
    const char *input;     /* in[0]'s path and open file, for single-input figures */
    hid_t file;
    char vars[32768];      /* gnuplot -e assignments */
    double aspect;         /* height / width at page width (prepare may change it) */
    int n_series, longest; /* set by figure_styles: how many series, the longest label (characters) */
    int skip;              /* set by prepare: nothing to draw (e.g. no retention maps) */
} FigureJob;

/* Appends name='value' (quotes escaped) to the gnuplot variables. */
void figure_var(FigureJob *job, const char *name, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Appends name=number. */
void figure_num(FigureJob *job, const char *name, double value);
/* Opens DIR/data/FILE for writing; its relative path (for the script) in rel. */
FILE *figure_data(FigureJob *job, const char *file, char *rel, size_t cap, KvError *err);
/* Closes a data file, reporting write errors (disk full) with the file's
 * final name, DIR/data/FILE. */
int figure_data_close(const FigureJob *job, FILE *f, const char *file, KvError *err);
/* The model label of an input ("stories260K"), or "" if it does not say. */
void figure_model(hid_t file, char *out, size_t cap);
/* Sets PREFIXseries (quoted labels), PREFIXcolours, PREFIXdashes and
 * PREFIXpoints for n series (prefix "" for the figure's main series). */
void figure_styles(FigureJob *job, const char *prefix, const char *const *labels, const SeriesKey *keys, int n);
/* Square maps of a long sequence (the attention heatmap, retention maps) are
 * drawn in cells of figure_cell(T) tokens a side, at most FIGURE_CELLS a
 * side; sequences of up to FIGURE_CELLS tokens, one token per cell. */
enum { FIGURE_CELLS = 1024 };
int figure_cell(int T);
/* Causal entries (i <= t) among rows [y0, y1) and columns [x0, x1). */
long figure_causal_entries(int y0, int y1, int x0, int x1);
/* "10^{%T}" for the terminals that render it, "10^%T" for dumb. */
const char *figure_log_format(const FigureJob *job);

/* prepare functions, by input kind */
int figure_mass(FigureJob *job, KvError *err);
int figure_error(FigureJob *job, KvError *err);
int figure_retention(FigureJob *job, KvError *err);
int figure_eviction_age(FigureJob *job, KvError *err);
int figure_age_bias(FigureJob *job, KvError *err);
int figure_key_norm(FigureJob *job, KvError *err);
int figure_value_norm(FigureJob *job, KvError *err);
int figure_heatmap(FigureJob *job, KvError *err);
int figure_nll(FigureJob *job, KvError *err);
int figure_offline_vs_closed(FigureJob *job, KvError *err);

#endif
