/* figure.h — what one figure's preparation works with (private to plots/):
 * the input file, a place for data files, and the gnuplot variables the
 * script will receive.  Each figure is one prepare function: it reads its
 * input, writes data files and sets variables; plot.c runs gnuplot. */
#ifndef KV_FIGURE_H
#define KV_FIGURE_H

#include <hdf5.h>
#include <stdio.h>

#include "../util/error.h"
#include "plot.h"

typedef enum { INPUT_TRACE, INPUT_RESULTS, INPUT_ANALYSIS, INPUT_EVAL, INPUT_KINDS } InputKind;

typedef struct {
    const PlotOptions *opt;
    const char *name;      /* figure name, also the output file's stem */
    const char *input;     /* path of the input file */
    hid_t file;            /* the open input */
    char vars[16384];      /* gnuplot -e assignments */
    int skip;              /* set by prepare: nothing to draw (e.g. no retention maps) */
} FigureJob;

/* Appends name='value' (quotes escaped) to the gnuplot variables. */
void figure_var(FigureJob *job, const char *name, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Appends name=number. */
void figure_num(FigureJob *job, const char *name, double value);
/* Opens DIR/data/FILE for writing; its relative path (for the script) in rel. */
FILE *figure_data(FigureJob *job, const char *file, char *rel, size_t cap, KvError *err);
/* Closes a data file, reporting write errors (disk full). */
int figure_data_close(FILE *f, const char *file, KvError *err);
/* The model label of the input ("stories260K"), or "" if it does not say. */
void figure_model(const FigureJob *job, char *out, size_t cap);

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
