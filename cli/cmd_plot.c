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
           "scripts to DIR/scripts, and DIR/replot.sh re-draws them by hand. Figures:\n");
    plot_print_figures(stdout);
    printf("\n"
           "  --figure LIST          only these figures (comma-separated); default: all the inputs allow\n"
           "  --format F             png (pngcairo, default), svg, or dumb (text)\n"
           "  --budget B             retention and eviction-age figures: the budget as given to simulate\n"
           "                         (default: the middle one)\n"
           "  --sequence N --layer L --head H   heatmap: which sequence, layer and query head\n"
           "                         (default 0, the middle layer, 0)\n"
           "  -o, --output DIR       output folder (created if missing)\n");
}

static int parse_args(int argc, char **argv, PlotOptions *o, KvError *err)
{
    static const struct option longopts[] = {
        {"figure", 1, 0, 'f'}, {"format", 1, 0, 'F'}, {"budget", 1, 0, 'b'}, {"sequence", 1, 0, 's'},
        {"layer", 1, 0, 'l'}, {"head", 1, 0, 'H'}, {"output", 1, 0, 'o'}, {"help", 0, 0, 'h'}, {0, 0, 0, 0}};
    int c;
    long v;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "o:h", longopts, NULL)) != -1) {
        switch (c) {
        case 'f': o->figures = optarg; break;
        case 'F': o->format = optarg; break;
        case 'b': o->budget = optarg; break;
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
    PlotOutput done;
    if (plot_run((const char *const *)argv + optind, argc - optind, &opt, &done, &err))
        return cli_error("plot", err.msg);
    for (int i = 0; i < done.n; i++) printf("%s\n", done.file[i]);
    fprintf(stderr, "%d figure(s) in %s (data in %s/data, re-draw with %s/replot.sh)\n", done.n, opt.out_dir,
            opt.out_dir, opt.out_dir);
    return 0;
}
