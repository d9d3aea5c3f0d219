/* kvtrace plot FILE... -o DIR */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../plots/plot.h"
#include "cli.h"

static void print_help(void)
{
    printf("usage: kvtrace plot FILE.h5 [FILE.h5 ...] -o DIR [options]\n"
           "\n"
           "Draws figures from results (kvtrace simulate), analysis (kvtrace analyze), eval (kvtrace eval)\n"
           "and trace (kvtrace record) files with gnuplot. The data of every figure goes to DIR/data, the\n"
           "scripts to DIR/scripts, and DIR/replot.sh re-draws them by hand. The set appears only complete:\n"
           "if any figure fails, nothing is written. Figures:\n");
    plot_print_figures(stdout);
    printf("\n"
           "  --figure LIST          only these figures (comma-separated); default: all the inputs allow\n"
           "  --format F             png (default), svg, pdf, or dumb (text)\n"
           "  --size S               column (3.4 in), page (7 in, default), or WxH in pixels at 150 dpi\n"
           "                         (or with a unit: 6x4in, 16x10cm)\n"
           "  --policy LIST          results/eval figures: only these policies (repeatable)\n"
           "  --config P:K=V,...     ... or these configurations, e.g. a2sf:alpha=0.1 (repeatable)\n"
           "  --label LIST           one label per results/eval file, in order: several files go on one\n"
           "                         figure, told apart in the legend (default: the file names)\n"
           "  --budget B             retention and eviction-age figures: the budget as given to simulate\n"
           "                         (default: the middle one)\n"
           "  --sequence N --layer L --head H   heatmap: which sequence, layer and query head\n"
           "                         (default 0, the middle layer, 0)\n"
           "  --force                replace figures and data that exist in DIR\n"
           "  --data-only            write the data files, the gnuplot scripts and replot.sh, but draw nothing\n"
           "                         (no gnuplot needed; DIR/replot.sh draws them later)\n"
           "  -o, --output DIR       output folder (created if missing)\n");
}

static int parse_args(int argc, char **argv, PlotOptions *o, KvError *err)
{
    static const struct option longopts[] = {
        {"figure", 1, 0, 'f'}, {"format", 1, 0, 'F'}, {"budget", 1, 0, 'b'}, {"sequence", 1, 0, 's'},
        {"layer", 1, 0, 'l'},  {"head", 1, 0, 'H'},   {"output", 1, 0, 'o'}, {"size", 1, 0, 'S'},
        {"policy", 1, 0, 'p'}, {"config", 1, 0, 'c'}, {"label", 1, 0, 'L'},  {"force", 0, 0, 'x'},
        {"data-only", 0, 0, 'D'},
        {"help", 0, 0, 'h'},   {0, 0, 0, 0}};
    int c;
    long v;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "o:h", longopts, NULL)) != -1) {
        switch (c) {
        case 'f': o->figures = optarg; break;
        case 'F': o->format = optarg; break;
        case 'b': o->budget = optarg; break;
        case 'S': o->size = optarg; break;
        case 'L': o->labels = optarg; break;
        case 'x': o->force = 1; break;
        case 'D': o->data_only = 1; break;
        case 'p':
            if (o->n_policy == PLOT_MAX_FILTERS) return kv_fail(err, "too many --policy options (%d at most)", PLOT_MAX_FILTERS), 2;
            o->policy[o->n_policy++] = optarg;
            break;
        case 'c':
            if (o->n_config == PLOT_MAX_FILTERS) return kv_fail(err, "too many --config options (%d at most)", PLOT_MAX_FILTERS), 2;
            o->config[o->n_config++] = optarg;
            break;
        case 's': if (parse_int(optarg, 0, 1 << 30, &v)) return kv_fail(err, "--sequence needs a number >= 0"), 2; o->sequence = (int)v; break;
        case 'l': if (parse_int(optarg, 0, 1 << 20, &v)) return kv_fail(err, "--layer needs a number >= 0"), 2; o->layer = (int)v; break;
        case 'H': if (parse_int(optarg, 0, 1 << 20, &v)) return kv_fail(err, "--head needs a number >= 0"), 2; o->head = (int)v; break;
        case 'o': o->out_dir = optarg; break;
        case 'h': print_help(); return -1;
        default: return kv_fail(err, "unknown option or missing value: %s", argv[optind - 1]), 2;
        }
    }
    if (optind >= argc) return kv_fail(err, "expected at least one input file"), 2;
    if (!o->out_dir) return kv_fail(err, "missing -o DIR"), 2;
    return 0;
}

int cmd_plot(int argc, char **argv)
{
    PlotOptions opt;
    plot_defaults(&opt);
    KvError err;
    int rc = parse_args(argc, argv, &opt, &err);
    if (rc < 0) return 0;
    if (rc == 2) return cli_usage_error("plot", "%s", err.msg);
    char *dir = strdup(opt.out_dir); /* "figs/" names its files figs/mass.png, not figs//mass.png */
    if (!dir) return cli_error("plot", "out of memory");
    for (size_t n = strlen(dir); n > 1 && dir[n - 1] == '/'; n--) dir[n - 1] = 0;
    opt.out_dir = dir;
    PlotOutput done;
    if (plot_run((const char *const *)argv + optind, argc - optind, &opt, &done, &err)) {
        free(dir);
        return cli_error("plot", err.msg);
    }
    if (opt.data_only) {
        fprintf(stderr, "data for %d figure(s) in %s/data; draw them with %s/replot.sh\n", done.n, dir, dir);
    } else {
        for (int i = 0; i < done.n; i++) printf("%s\n", done.file[i]);
        fprintf(stderr, "%d figure(s) in %s (data in %s/data, re-draw with %s/replot.sh)\n", done.n, dir, dir, dir);
    }
    free(dir);
    return 0;
}
