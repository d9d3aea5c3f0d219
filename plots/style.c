/* Series styles and figure sizes (style.h). */
#include "style.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    const char *family;
    const char *colour;
} FamilyColour;

/* Policies, then the analysis' score names. */
static const FamilyColour FAMILIES[] = {
    {"h2o", "#1f77b4"},       {"a2sf", "#d62728"},      {"vatp", "#2ca02c"},      {"knorm", "#9467bd"},
    {"window", "#8c564b"},    {"streaming", "#e377c2"}, {"tova", "#ff7f0e"},      {"snapkv", "#17becf"},
    {"random", "#bcbd22"},    {"ideal", "#000000"},     {"optimal", "#555555"},   {"full", "#a0a0a0"},
    {"accumulations", "#7f7f7f"}, {"mean_attention", "#e6ab02"},
};
#define N_FAMILIES (int)(sizeof FAMILIES / sizeof FAMILIES[0])

static const int DASHES[] = {1, 2, 4, 3, 5};
static const int POINTS[] = {7, 5, 9, 11, 13, 15, 6, 4, 8, 10, 12, 14, 1, 2};
#define N_DASHES (int)(sizeof DASHES / sizeof DASHES[0])
#define N_POINTS (int)(sizeof POINTS / sizeof POINTS[0])

const char *style_family_colour(const char *family)
{
    for (int i = 0; i < N_FAMILIES; i++)
        if (!strcmp(FAMILIES[i].family, family)) return FAMILIES[i].colour;
    return "#6b6b00";
}

static int is_oracle(const char *family)
{
    return !strcmp(family, "ideal") || !strcmp(family, "optimal") || !strcmp(family, "full");
}

/* Shade k of n of a colour: dark to light; very dark colours only lighten. */
static void shade(const char *base, int k, int n, char out[8])
{
    unsigned rgb = (unsigned)strtoul(base + 1, NULL, 16), c[3] = {rgb >> 16 & 255, rgb >> 8 & 255, rgb & 255};
    double t = n > 1 ? (double)k / (n - 1) : 0.5, f;
    unsigned brightest = c[0] > c[1] ? (c[0] > c[2] ? c[0] : c[2]) : (c[1] > c[2] ? c[1] : c[2]);
    f = brightest < 0x60 ? (n > 1 ? 0.7 * t : 0) : (n > 1 ? -0.45 + 0.9 * t : 0);
    for (int j = 0; j < 3; j++) {
        double v = f < 0 ? c[j] * (1 + f) : c[j] + (255 - c[j]) * f;
        c[j] = (unsigned)lround(v);
    }
    snprintf(out, 8, "#%02x%02x%02x", c[0] & 255, c[1] & 255, c[2] & 255);
}

void style_assign(const SeriesKey *keys, int n, SeriesStyle *out)
{
    for (int i = 0; i < n; i++) {
        int k = 0, variants = 0;
        for (int j = 0; j < n; j++)
            if (!strcmp(keys[j].family, keys[i].family)) {
                k += j < i;
                variants++;
            }
        shade(style_family_colour(keys[i].family), k, variants, out[i].colour);
        out[i].dash = DASHES[(is_oracle(keys[i].family) + k + keys[i].group + i / N_POINTS) % N_DASHES];
        out[i].point = POINTS[i % N_POINTS];
    }
}

int style_parse_size(const char *text, FigureSize *out, KvError *err)
{
    *out = (FigureSize){.width = 7.0, .height = 0, .dpi = 150, .font = 9};
    if (!text || !strcmp(text, "page")) return 0;
    if (!strcmp(text, "column")) {
        out->width = 3.4;
        out->font = 8;
        return 0;
    }
    double w, h;
    char unit[8] = "", extra;
    int got = sscanf(text, "%lfx%lf%7[a-z]%c", &w, &h, unit, &extra);
    double per_inch = !unit[0] || !strcmp(unit, "px") ? out->dpi : !strcmp(unit, "in") ? 1 : !strcmp(unit, "cm") ? 2.54 : 0;
    if (got < 2 || got > 3 || per_inch == 0 || !(w > 0 && h > 0))
        return kv_fail(err, "--size '%s': give column, page or WxH (pixels, or with a unit: 6x4in, 16x10cm)", text);
    out->width = w / per_inch;
    out->height = h / per_inch;
    out->fixed_height = 1;
    if (out->width < 1 || out->height < 0.7 || out->width > 60 || out->height > 60)
        return kv_fail(err, "--size '%s': %.1f x %.1f inches is outside 1 x 0.7 to 60 x 60", text, out->width,
                       out->height);
    out->font = out->width < 5 ? 8 : 9;
    return 0;
}
