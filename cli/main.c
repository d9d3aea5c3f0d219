/* kvtrace — record attention traces from real language-model runs, replay
 * them under KV-cache eviction policies, analyse and plot what they show. */
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "../trace/h5util.h"
#include "../trace/trace_file.h"
#include "../util/dist.h"
#include "cli.h"

typedef struct {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
    int distributed; /* spreads its work over MPI ranks (util/dist.h) */
} Subcommand;

static const Subcommand SUBCOMMANDS[] = {
    {"record", cmd_record, "run a model over prompts and record q/k/v (and attention) into an HDF5 trace", 0},
    {"info", cmd_info, "describe and validate a trace file", 0},
    {"simulate", cmd_simulate, "replay traces under eviction policies and budgets; write metrics", 1},
    {"analyze", cmd_analyze, "age-bias, key-norm and value-norm statistics of a trace (GSL)", 1},
    {"plot", cmd_plot, "draw figures from results, analysis, eval and trace files (gnuplot)", 0},
    {"eval", cmd_eval, "run the model with each policy driving its KV cache; compare with the full cache", 1},
    {"demo", cmd_demo, "the main job: record example traces and report on them", 0},
    {"tokenize", cmd_tokenize, "the token ids and pieces a text becomes (SentencePiece or byte-level BPE)", 0},
};

static void usage(FILE *out)
{
    fprintf(out, "kvtrace %s — KV-cache eviction traces: record, simulate, analyze, plot\n\n"
                 "usage: kvtrace <command> [options]   (kvtrace <command> --help for details)\n\n",
            KVTRACE_VERSION);
    for (size_t i = 0; i < sizeof SUBCOMMANDS / sizeof SUBCOMMANDS[0]; i++)
        fprintf(out, "  %-10s %s\n", SUBCOMMANDS[i].name, SUBCOMMANDS[i].summary);
}

static int run_command(int argc, char **argv)
{
    /* a file-size limit (ulimit -f) makes writes fail with EFBIG, reported like a full disk */
    signal(SIGXFSZ, SIG_IGN);
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(argv[1], "--version")) {
        printf("kvtrace %s\n", KVTRACE_VERSION);
        return 0;
    }
    for (size_t i = 0; i < sizeof SUBCOMMANDS / sizeof SUBCOMMANDS[0]; i++) {
        if (strcmp(argv[1], SUBCOMMANDS[i].name)) continue;
        if (dist_size() > 1 && !SUBCOMMANDS[i].distributed) { /* N copies would race for the same outputs */
            if (dist_rank() == 0)
                fprintf(stderr, "kvtrace %s: does not run under mpirun with %d ranks (simulate, analyze and eval "
                        "do); run it without mpirun\n", argv[1], dist_size());
            return 2;
        }
        return SUBCOMMANDS[i].run(argc - 1, argv + 1);
    }
    fprintf(stderr, "kvtrace: unknown command '%s' (try kvtrace --help)\n", argv[1]);
    return 2;
}

int main(int argc, char **argv)
{
    h5_startup();
    KvError err;
    if (dist_init(&argc, &argv, &err)) { /* under mpirun without MPI built in: say so, once */
        if (dist_rank() == 0) fprintf(stderr, "kvtrace: %s\n", err.msg);
        return 1;
    }
    if (dist_rank() > 0) h5_trust_inputs(); /* rank 0 checks every trace before the others open it */
    int rc = run_command(argc, argv);
    dist_finalize();
    return rc;
}
