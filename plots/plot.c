/* The plot driver: recognise the inputs, pick the figures, prepare their
 * data and run gnuplot on the scripts from plots/. */
#include "plot.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../trace/h5util.h"
#include "figure.h"

typedef struct {
    const char *name;
    InputKind needs;
    const char *script;
    int (*prepare)(FigureJob *job, KvError *err);
    const char *about;
} Figure;

static const Figure FIGURES[] = {
    {"age_bias", INPUT_ANALYSIS, "age_bias.gp", figure_age_bias,
     "H2O score, accumulations T-i and A2SF score vs position (one head, and the mean)"},
    {"mass", INPUT_RESULTS, "budget_curves.gp", figure_mass, "retained mass vs budget, a line per policy"},
    {"error", INPUT_RESULTS, "budget_curves.gp", figure_error, "output error vs budget, a line per policy"},
    {"retention", INPUT_RESULTS, "retention.gp", figure_retention,
     "which tokens h2o, a2sf, vatp, knorm and window hold at each step (simulate --retention L:U)"},
    {"eviction_age", INPUT_RESULTS, "eviction_age.gp", figure_eviction_age, "histogram of ages at eviction per policy"},
    {"heatmap", INPUT_TRACE, "attention_heatmap.gp", figure_heatmap, "attention of one head, log colour scale"},
    {"key_norm", INPUT_ANALYSIS, "key_norm.gp", figure_key_norm, "key L2 norm vs attention received (one head)"},
    {"value_norm", INPUT_ANALYSIS, "value_norm.gp", figure_value_norm, "value L1 norm by position, sinks marked"},
    {"nll", INPUT_EVAL, "budget_curves.gp", figure_nll, "closed-loop NLL increase vs budget, a line per policy"},
    {"offline_vs_closed", INPUT_EVAL, "offline_vs_closed.gp", figure_offline_vs_closed,
     "offline retained mass vs closed-loop NLL increase, a point per policy and budget"},
};
#define N_FIGURES (int)(sizeof FIGURES / sizeof FIGURES[0])

static const char *KIND_FORMAT[INPUT_KINDS] = {"kvtrace-trace/1", "kvtrace-results/1", "kvtrace-analysis/1",
                                               "kvtrace-eval/1"};
static const char *KIND_WORDS[INPUT_KINDS] = {"a trace (kvtrace record)", "a results file (kvtrace simulate)",
                                              "an analysis file (kvtrace analyze)", "an eval file (kvtrace eval)"};

void plot_defaults(PlotOptions *opt)
{
    memset(opt, 0, sizeof *opt);
    opt->format = "png";
    opt->layer = -1;
}

void plot_print_figures(FILE *out)
{
    for (int i = 0; i < N_FIGURES; i++)
        fprintf(out, "  %-13s from %-36s %s\n", FIGURES[i].name, KIND_WORDS[FIGURES[i].needs], FIGURES[i].about);
}

/* ------------------------------------------------------------ job helpers */

void figure_var(FigureJob *job, const char *name, const char *fmt, ...)
{
    char value[4096], quoted[8300];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(value, sizeof value, fmt, ap);
    va_end(ap);
    size_t n = 0;
    for (const char *c = value; *c && n + 3 < sizeof quoted; c++) { /* gnuplot doubles ' inside '...' */
        if (*c == '\'') quoted[n++] = '\'';
        quoted[n++] = *c;
    }
    quoted[n] = 0;
    size_t used = strlen(job->vars);
    snprintf(job->vars + used, sizeof job->vars - used, "%s='%s'; ", name, quoted);
}

void figure_num(FigureJob *job, const char *name, double value)
{
    size_t used = strlen(job->vars);
    snprintf(job->vars + used, sizeof job->vars - used, "%s=%.17g; ", name, value);
}

FILE *figure_data(FigureJob *job, const char *file, char *rel, size_t cap, KvError *err)
{
    char path[2200];
    snprintf(rel, cap, "data/%s", file);
    snprintf(path, sizeof path, "%s/%s", job->opt->out_dir, rel);
    FILE *f = fopen(path, "w");
    if (!f) kv_fail(err, "%s: cannot write (%s)", path, strerror(errno));
    return f;
}

int figure_data_close(FILE *f, const char *file, KvError *err)
{
    int bad = ferror(f);
    if (fclose(f) != 0 || bad) return kv_fail(err, "%s: writing the plot data failed (disk full?)", file);
    return 0;
}

void figure_model(const FigureJob *job, char *out, size_t cap)
{
    out[0] = 0;
    char file[512] = "";
    if (h5_attr_read_str(job->file, "model_file", file, sizeof file) == 0 ||
        h5_attr_read_str(job->file, "model", file, sizeof file) == 0) {
        char *base = strrchr(file, '/');
        snprintf(out, cap, "%s", base ? base + 1 : file);
        char *dot = strrchr(out, '.');
        if (dot && dot != out) *dot = 0;
    }
}

/* ------------------------------------------------------------ gnuplot */

/* Whether an executable gnuplot is on PATH. */
static int gnuplot_available(void)
{
    const char *path = getenv("PATH");
    if (!path) return 0;
    char dir[4096];
    for (const char *p = path; *p;) {
        const char *end = strchr(p, ':');
        size_t n = end ? (size_t)(end - p) : strlen(p);
        snprintf(dir, sizeof dir, "%.*s/gnuplot", (int)n, n ? p : ".");
        if (access(dir, X_OK) == 0) return 1;
        if (!end) break;
        p = end + 1;
    }
    return 0;
}

static int write_file(const char *path, const char *text, KvError *err)
{
    FILE *f = fopen(path, "w");
    if (!f) return kv_fail(err, "%s: cannot write (%s)", path, strerror(errno));
    fputs(text, f);
    return figure_data_close(f, path, err);
}

static int write_scripts(const char *dir, KvError *err)
{
    char path[2200];
    snprintf(path, sizeof path, "%s/scripts", dir);
    if (mkdir(path, 0777) != 0 && errno != EEXIST) return kv_fail(err, "%s: cannot create (%s)", path, strerror(errno));
    for (const PlotScript *s = PLOT_SCRIPTS; s->name; s++) {
        snprintf(path, sizeof path, "%s/scripts/%s", dir, s->name);
        if (write_file(path, s->text, err)) return -1;
    }
    return 0;
}

/* Runs gnuplot in dir with the variables, output to data/NAME.log; fails on a
 * non-zero exit, and on any "error" gnuplot printed. */
static int run_gnuplot(const char *dir, const char *name, const char *vars, const char *script, KvError *err)
{
    char log_path[2200];
    snprintf(log_path, sizeof log_path, "%s/data/%s.log", dir, name);
    pid_t pid = fork();
    if (pid < 0) return kv_fail(err, "cannot start gnuplot (%s)", strerror(errno));
    if (pid == 0) {
        int fd = open(log_path, O_WRONLY | O_CREAT | O_TRUNC, 0666);
        if (fd < 0 || chdir(dir) != 0) _exit(126);
        dup2(fd, 1);
        dup2(fd, 2);
        char script_path[256];
        snprintf(script_path, sizeof script_path, "scripts/%s", script);
        execlp("gnuplot", "gnuplot", "-e", vars, script_path, (char *)NULL);
        _exit(127);
    }
    int status;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR) return kv_fail(err, "waiting for gnuplot failed (%s)", strerror(errno));
    FILE *log = fopen(log_path, "r");
    char line[512] = "", first_error[512] = "";
    while (log && fgets(line, sizeof line, log))
        if (!first_error[0] && (strstr(line, "error") || strstr(line, "rror:"))) snprintf(first_error, sizeof first_error, "%s", line);
    if (log) fclose(log);
    first_error[strcspn(first_error, "\n")] = 0;
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0 || first_error[0])
        return kv_fail(err, "gnuplot failed on figure %s (see %s)%s%s", name, log_path, first_error[0] ? ": " : "",
                       first_error);
    return 0;
}

/* ------------------------------------------------------------ inputs */

typedef struct {
    const char *path;
    hid_t file;
    InputKind kind;
} Input;

static int open_input(const char *path, Input *in, KvError *err)
{
    in->path = path;
    in->file = -1;
    if (access(path, R_OK) != 0) return kv_fail(err, "%s: cannot read (%s)", path, strerror(errno));
    if (H5Fis_hdf5(path) <= 0) return kv_fail(err, "%s: not an HDF5 file", path);
    in->file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (in->file < 0) return kv_fail(err, "%s: cannot open (damaged HDF5 file?)", path);
    char format[64] = "";
    h5_attr_read_str(in->file, "format", format, sizeof format);
    for (int k = 0; k < INPUT_KINDS; k++)
        if (!strcmp(format, KIND_FORMAT[k])) {
            in->kind = (InputKind)k;
            return 0;
        }
    return kv_fail(err, "%s: not a kvtrace trace, results, analysis or eval file (format '%s')", path, format);
}

static const Figure *find_figure(const char *name)
{
    for (int i = 0; i < N_FIGURES; i++)
        if (!strcmp(FIGURES[i].name, name)) return &FIGURES[i];
    return NULL;
}

/* Marks the figures to draw; an asked-for figure whose input is missing is an error. */
static int choose_figures(const PlotOptions *opt, const Input *in, int n_in, int *wanted, KvError *err)
{
    int have[INPUT_KINDS] = {0};
    for (int i = 0; i < n_in; i++) have[in[i].kind] = 1;
    if (!opt->figures) {
        for (int f = 0; f < N_FIGURES; f++) wanted[f] = have[FIGURES[f].needs];
        return 0;
    }
    char buf[1024];
    snprintf(buf, sizeof buf, "%s", opt->figures);
    char *save = NULL;
    for (char *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        const Figure *f = find_figure(tok);
        if (!f) return kv_fail(err, "unknown figure '%s' (kvtrace plot --help lists them)", tok);
        if (!have[f->needs])
            return kv_fail(err, "figure '%s' needs %s, but %s is %s", tok, KIND_WORDS[f->needs], in[0].path,
                           KIND_WORDS[in[0].kind]);
        wanted[f - FIGURES] = 2; /* asked for by name */
    }
    return 0;
}

static int prepare_dir(const char *dir, KvError *err)
{
    char path[2200];
    if (mkdir(dir, 0777) != 0 && errno != EEXIST) return kv_fail(err, "%s: cannot create the output folder (%s)", dir, strerror(errno));
    snprintf(path, sizeof path, "%s/data", dir);
    if (mkdir(path, 0777) != 0 && errno != EEXIST) return kv_fail(err, "%s: cannot create (%s)", path, strerror(errno));
    if (access(path, W_OK) != 0) return kv_fail(err, "%s: the output folder is not writable", dir);
    return write_scripts(dir, err);
}

static int draw(const Figure *fig, const Input *in, const PlotOptions *opt, int asked, FILE *replot, PlotOutput *done,
                KvError *err)
{
    FigureJob *job = calloc(1, sizeof *job);
    if (!job) return kv_fail(err, "out of memory");
    const char *ext = !strcmp(opt->format, "svg") ? "svg" : !strcmp(opt->format, "dumb") ? "txt" : "png";
    const char *term = !strcmp(opt->format, "svg") ? "svg" : !strcmp(opt->format, "dumb") ? "dumb" : "pngcairo";
    *job = (FigureJob){.opt = opt, .name = fig->name, .input = in->path, .file = in->file};
    char out[64];
    snprintf(out, sizeof out, "%s.%s", fig->name, ext);
    figure_var(job, "out", "%s", out);
    figure_var(job, "term", "%s", term);
    int rc = fig->prepare(job, err);
    if (rc == 0 && job->skip && asked) rc = kv_fail(err, "%s: nothing to draw for figure '%s' (%s)", in->path, fig->name, fig->about);
    if (rc == 0 && !job->skip) {
        rc = run_gnuplot(opt->out_dir, fig->name, job->vars, fig->script, err);
        fputs("gnuplot -e '", replot); /* the variables, single-quoted for sh */
        for (const char *c = job->vars; *c; c++) fputs(*c == '\'' ? "'\\''" : (char[2]){*c, 0}, replot);
        fprintf(replot, "' scripts/%s\n", fig->script);
        if (rc == 0 && done->n < PLOT_MAX_OUTPUTS) {
            snprintf(done->name[done->n], sizeof done->name[0], "%s", fig->name);
            snprintf(done->file[done->n++], sizeof done->file[0], "%s/%s", opt->out_dir, out);
        }
    }
    free(job);
    return rc;
}

int plot_run(const char *const *inputs, int n_inputs, const PlotOptions *opt, PlotOutput *done, KvError *err)
{
    memset(done, 0, sizeof *done);
    if (strcmp(opt->format, "png") && strcmp(opt->format, "svg") && strcmp(opt->format, "dumb"))
        return kv_fail(err, "unknown format '%s' (png, svg or dumb)", opt->format);
    Input *in = calloc((size_t)n_inputs, sizeof *in);
    int wanted[N_FIGURES] = {0}, rc = -1;
    FILE *replot = NULL;
    if (!in) return kv_fail(err, "out of memory");
    for (int i = 0; i < n_inputs; i++) in[i].file = -1;
    for (int i = 0; i < n_inputs; i++)
        if (open_input(inputs[i], &in[i], err)) goto done;
    if (choose_figures(opt, in, n_inputs, wanted, err)) goto done;
    if (!gnuplot_available()) {
        kv_fail(err, "gnuplot not found on PATH; install it with: sudo apt-get install gnuplot-nox");
        goto done;
    }
    if (prepare_dir(opt->out_dir, err)) goto done;
    char path[2200];
    snprintf(path, sizeof path, "%s/replot.sh", opt->out_dir);
    replot = fopen(path, "w");
    if (!replot) {
        kv_fail(err, "%s: cannot write (%s)", path, strerror(errno));
        goto done;
    }
    fprintf(replot, "#!/bin/sh\n# Re-draws every figure from the data in data/ (written by kvtrace plot).\n"
                    "cd \"$(dirname \"$0\")\" || exit 1\nset -e\n");
    rc = 0;
    for (int f = 0; f < N_FIGURES && rc == 0; f++)
        for (int i = 0; i < n_inputs && rc == 0 && wanted[f]; i++)
            if (in[i].kind == FIGURES[f].needs) {
                rc = draw(&FIGURES[f], &in[i], opt, wanted[f] == 2, replot, done, err);
                break; /* one input of each kind per figure: the first given */
            }
    if (figure_data_close(replot, path, err)) rc = -1;
    replot = NULL;
    chmod(path, 0755);
done:
    if (replot) fclose(replot);
    for (int i = 0; i < n_inputs; i++)
        if (in[i].file >= 0) H5Fclose(in[i].file);
    free(in);
    return rc;
}
