/* style.h — one look for every kvtrace figure (private to plots/): the
 * colour, dash pattern and point type of each series, and the figure size.
 *
 * A policy family (h2o, a2sf, ...) has one colour in every figure; its
 * variants (parameters, or the same policy from several input files) are
 * shades of it, from dark to light.  Point types go round a list of 14, so
 * up to 14 series differ in their points alone; dash patterns follow the
 * variant (and the input file), and the oracles (ideal, optimal, full) are
 * never solid.  Every series of a figure therefore differs from every other
 * in colour and in (dash, point): distinct in colour and in black-and-white
 * print.  The scripts receive the styles as space-separated lists
 * (colours, dashes, points, in the order of the series). */
#ifndef KV_STYLE_H
#define KV_STYLE_H

#include <stddef.h>

#include "../util/error.h"

typedef struct {
    char colour[8]; /* "#rrggbb" */
    int dash;       /* gnuplot dash type 1..5 */
    int point;      /* gnuplot point type */
} SeriesStyle;

/* What one series is: its policy family, and its group (input file index). */
typedef struct {
    const char *family;
    int group;
} SeriesKey;

/* Styles for n series; series i is the k-th of its family in the figure
 * (counted in order), and gets the k-th shade of the family colour. */
void style_assign(const SeriesKey *keys, int n, SeriesStyle *out);

/* The base colour of a policy family ("#1f77b4"); unknown names share one. */
const char *style_family_colour(const char *family);

/* A figure's size: inches, and the raster resolution. */
typedef struct {
    double width, height; /* inches */
    int dpi;              /* PNG pixels per inch */
    double font;          /* points */
    int fixed_height;     /* the height was given (WxH): the figure's aspect does not apply */
} FigureSize;

/* "column" (3.4 in), "page" (7 in, the default) or "WxH" in pixels (at 150
 * dpi), or with a unit: "6x4in", "16x10cm". */
int style_parse_size(const char *text, FigureSize *out, KvError *err);

#endif
