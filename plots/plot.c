/* The plot driver: recognise the inputs, pick the figures, prepare their
 * data and run gnuplot on the scripts from plots/, all inside a temporary
 * folder, then move the finished set into place. */
#include "plot.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../trace/h5util.h"
#include "../util/output.h"
#include "figure.h"

typedef struct {
    const char *name;
    InputKind needs;
    const char *script;
    int (*prepare)(FigureJob *job, KvError *err);
    double aspect; /* height / width at page width */
    int one_key;   /* a single plot with one key, which may move below the plot (keybelow) */
    const char *about;
} Figure;

static const Figure FIGURES[] = {
    {"age_bias", INPUT_ANALYSIS, "age_bias.gp", figure_age_bias, 1.05, 0,
     "kept top-B set by token age (H2O, A2SF alphas, ideal); Spearman with age per layer; raw scores"},
    {"mass", INPUT_RESULTS, "budget_curves.gp", figure_mass, 0.5, 1, "retained mass vs budget, a line per configuration"},
    {"error", INPUT_RESULTS, "budget_curves.gp", figure_error, 0.5, 1, "output error vs budget, a line per configuration"},
    {"retention", INPUT_RESULTS, "retention.gp", figure_retention, 0.6, 0,
     "which tokens each policy holds at each step (simulate --retention L:U)"},
    {"eviction_age", INPUT_RESULTS, "eviction_age.gp", figure_eviction_age, 0.5, 0,
     "ages at eviction per configuration: distribution and quartiles"},
    {"heatmap", INPUT_TRACE, "attention_heatmap.gp", figure_heatmap, 0.85, 0, "attention of one head, log colour scale (T > 1024: cell means)"},
    {"key_norm", INPUT_ANALYSIS, "key_norm.gp", figure_key_norm, 0.55, 0, "key L2 norm vs attention received (one head)"},
    {"value_norm", INPUT_ANALYSIS, "value_norm.gp", figure_value_norm, 0.56, 0,
     "value L1 norm of sink tokens vs the others per layer, and vs attention"},
    {"nll", INPUT_EVAL, "budget_curves.gp", figure_nll, 0.5, 1, "closed-loop NLL increase vs budget, a line per configuration"},
    {"offline_vs_closed", INPUT_EVAL, "offline_vs_closed.gp", figure_offline_vs_closed, 0.55, 1,
     "offline retained mass vs closed-loop NLL increase, with rank correlations"},
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
        fprintf(out, "  %-17s from %-36s %s\n", FIGURES[i].name, KIND_WORDS[FIGURES[i].needs], FIGURES[i].about);
}

/* ------------------------------------------------------------ job helpers */

static void append(FigureJob *job, const char *text)
{
    size_t used = strlen(job->vars);
    snprintf(job->vars + used, sizeof job->vars - used, "%s", text);
}

void figure_var(FigureJob *job, const char *name, const char *fmt, ...)
{
    char value[8192], quoted[16500];
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
    char text[128];
    snprintf(text, sizeof text, "%s=%.17g; ", name, value);
    append(job, text);
}

int figure_cell(int T) { return T <= FIGURE_CELLS ? 1 : (T + FIGURE_CELLS - 1) / FIGURE_CELLS; }

long figure_causal_entries(int y0, int y1, int x0, int x1)
{
    long count = 0;
    for (int t = y0; t < y1; t++) count += t + 1 < x1 ? (t + 1 > x0 ? t + 1 - x0 : 0) : x1 - x0;
    return count;
}

FILE *figure_data(FigureJob *job, const char *file, char *rel, size_t cap, KvError *err)
{
    char path[2300];
    snprintf(rel, cap, "data/%s", file);
    snprintf(path, sizeof path, "%s/%s", job->dir, rel);
    FILE *f = fopen(path, "w");
    if (!f) output_io_error(err, path, "plot data");
    return f;
}

/* Closes a file written into the set, naming path in the error. */
static int close_file(FILE *f, const char *path, const char *what, KvError *err)
{
    int bad = ferror(f);
    if (fclose(f) != 0 || bad) return output_io_error(err, path, what);
    return 0;
}

int figure_data_close(const FigureJob *job, FILE *f, const char *file, KvError *err)
{
    char path[2300]; /* where the file would have landed: the temporary folder is gone when the user reads this */
    snprintf(path, sizeof path, "%s/data/%s", job->opt->out_dir, file);
    return close_file(f, path, "plot data", err);
}

void figure_model(hid_t file, char *out, size_t cap)
{
    out[0] = 0;
    char name[512] = "";
    if (h5_attr_read_str(file, "model_file", name, sizeof name) == 0 ||
        h5_attr_read_str(file, "model", name, sizeof name) == 0) {
        char *base = strrchr(name, '/');
        snprintf(out, cap, "%s", base ? base + 1 : name);
        char *dot = strrchr(out, '.');
        if (dot && dot != out) *dot = 0;
    }
}

void figure_styles(FigureJob *job, const char *prefix, const char *const *labels, const SeriesKey *keys, int n)
{
    SeriesStyle *st = malloc((size_t)(n ? n : 1) * sizeof *st);
    char *series = calloc(1, 8192), *colours = calloc(1, 4096), *dashes = calloc(1, 1024), *points = calloc(1, 1024);
    if (st && series && colours && dashes && points) {
        style_assign(keys, n, st);
        for (int i = 0; i < n; i++) {
            const char *sep = i ? " " : "";
            snprintf(series + strlen(series), 8192 - strlen(series), "%s\"%s\"", sep, labels[i]);
            snprintf(colours + strlen(colours), 4096 - strlen(colours), "%s%s", sep, st[i].colour);
            snprintf(dashes + strlen(dashes), 1024 - strlen(dashes), "%s%d", sep, st[i].dash);
            snprintf(points + strlen(points), 1024 - strlen(points), "%s%d", sep, st[i].point);
        }
    }
    char name[64];
    snprintf(name, sizeof name, "%sseries", prefix);
    figure_var(job, name, "%s", series ? series : "");
    snprintf(name, sizeof name, "%scolours", prefix);
    figure_var(job, name, "%s", colours ? colours : "");
    snprintf(name, sizeof name, "%sdashes", prefix);
    figure_var(job, name, "%s", dashes ? dashes : "");
    snprintf(name, sizeof name, "%spoints", prefix);
    figure_var(job, name, "%s", points ? points : "");
    if (!prefix[0]) { /* the figure's main series: for the key's placement */
        job->n_series = n;
        for (int i = 0; i < n; i++)
            job->longest = (int)strlen(labels[i]) > job->longest ? (int)strlen(labels[i]) : job->longest;
    }
    free(st); free(series); free(colours); free(dashes); free(points);
}

const char *figure_log_format(const FigureJob *job)
{
    return !strcmp(job->opt->format, "dumb") ? "10^%T" : "10^{%T}";
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
    if (!f) return output_io_error(err, path, "plot script");
    fputs(text, f);
    return close_file(f, path, "plot script", err);
}

/* Runs gnuplot in dir with the variables, output to data/NAME.log; fails on a
 * non-zero exit, and on any "error" gnuplot printed. */
static int run_gnuplot(const char *dir, const char *name, const char *vars, const char *script, KvError *err)
{
    char log_path[2300];
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
    int located = 0; /* gnuplot's own message: "scripts/x.gp" line N: what */
    while (log && fgets(line, sizeof line, log)) {
        int here = strstr(line, ".gp\" line ") && !strstr(line, "warning");
        if ((!first_error[0] || (here && !located)) && (here || strstr(line, "error") || strstr(line, "rror:"))) {
            snprintf(first_error, sizeof first_error, "%s", line);
            located |= here;
        }
    }
    if (log) fclose(log);
    first_error[strcspn(first_error, "\n")] = 0;
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0 || first_error[0])
        return kv_fail(err, "gnuplot failed on figure %s (exit %d)%s%s", name,
                       WIFEXITED(status) ? WEXITSTATUS(status) : -1, first_error[0] ? ": " : "", first_error);
    return 0;
}

/* ------------------------------------------------------------ inputs */

static int open_input(const char *path, PlotInput *in, KvError *err)
{
    in->path = path;
    in->file = -1;
    in->file = h5_open_read(path, "input file", err);
    if (in->file < 0) return -1;
    char format[64] = "";
    h5_attr_read_str(in->file, "format", format, sizeof format);
    for (int k = 0; k < INPUT_KINDS; k++)
        if (!strcmp(format, KIND_FORMAT[k])) {
            in->kind = (InputKind)k;
            return 0;
        }
    return kv_fail(err, "%s: not a kvtrace trace, results, analysis or eval file (format '%s')", path, format);
}

/* The file name without folder and extension. */
static void file_stem(const char *path, char *out, size_t cap)
{
    const char *base = strrchr(path, '/');
    snprintf(out, cap, "%s", base ? base + 1 : path);
    char *dot = strrchr(out, '.');
    if (dot && dot != out) *dot = 0;
}

/* Results and eval files get labels (--label, else their file names when a
 * kind has several); one trace and one analysis file at most. */
static int label_inputs(const PlotOptions *opt, PlotInput *in, int n_in, KvError *err)
{
    int count[INPUT_KINDS] = {0}, labelled = 0;
    for (int i = 0; i < n_in; i++) count[in[i].kind]++;
    for (int k = INPUT_TRACE; k < INPUT_KINDS; k++)
        if ((k == INPUT_TRACE || k == INPUT_ANALYSIS) && count[k] > 1)
            return kv_fail(err, "plot takes one %s at a time (got %d)", k == INPUT_TRACE ? "trace" : "analysis file",
                           count[k]);
    char labels[4096] = "", *save = NULL, *tok = NULL;
    if (opt->labels) {
        snprintf(labels, sizeof labels, "%s", opt->labels);
        tok = strtok_r(labels, ",", &save);
    }
    for (int i = 0; i < n_in; i++) {
        if (in[i].kind != INPUT_RESULTS && in[i].kind != INPUT_EVAL) continue;
        labelled++;
        if (opt->labels) {
            if (!tok) break;
            if (strlen(tok) >= sizeof in[i].label || strpbrk(tok, "\"'\\"))
                return kv_fail(err, "--label '%s': give a short label without quotes (< 64 characters)", tok);
            snprintf(in[i].label, sizeof in[i].label, "%s", tok);
            tok = strtok_r(NULL, ",", &save);
        } else if (count[in[i].kind] > 1) {
            file_stem(in[i].path, in[i].label, sizeof in[i].label);
        }
    }
    if (opt->labels) {
        int given = 0;
        snprintf(labels, sizeof labels, "%s", opt->labels);
        for (char *t = strtok_r(labels, ",", &save); t; t = strtok_r(NULL, ",", &save)) given++;
        if (given != labelled)
            return kv_fail(err, "--label gives %d label(s) for %d results/eval file(s); give one per file, in order", given,
                           labelled);
    }
    for (int i = 0; i < n_in; i++)
        for (int j = 0; j < i; j++)
            if (in[i].kind == in[j].kind && (in[i].kind == INPUT_RESULTS || in[i].kind == INPUT_EVAL) &&
                !strcmp(in[i].label, in[j].label))
                return kv_fail(err, "%s and %s would both be labelled '%s' in the legends; give --label", in[j].path,
                               in[i].path, in[i].label);
    return 0;
}

static const Figure *find_figure(const char *name)
{
    for (int i = 0; i < N_FIGURES; i++)
        if (!strcmp(FIGURES[i].name, name)) return &FIGURES[i];
    return NULL;
}

/* Marks the figures to draw; an asked-for figure whose input is missing is an error. */
static int choose_figures(const PlotOptions *opt, const PlotInput *in, int n_in, int *wanted, KvError *err)
{
    int have[INPUT_KINDS] = {0};
    for (int i = 0; i < n_in; i++) have[in[i].kind] = 1;
    if (!opt->figures) {
        for (int f = 0; f < N_FIGURES; f++) wanted[f] = have[FIGURES[f].needs];
        return 0;
    }
    char buf[1024];
    if (strlen(opt->figures) >= sizeof buf) return kv_fail(err, "--figure: the list is too long");
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

/* ------------------------------------------------------------ the set */

static const char *extension(const PlotOptions *opt)
{
    return !strcmp(opt->format, "dumb") ? "txt" : opt->format;
}

static const char *terminal(const PlotOptions *opt)
{
    return !strcmp(opt->format, "svg") ? "svg" : !strcmp(opt->format, "dumb") ? "dumb"
                                                 : !strcmp(opt->format, "pdf") ? "pdfcairo" : "pngcairo";
}

/* Creates DIR/.kvtrace-plot-XXXXXX with data/ and scripts/, the scripts in it. */
static int begin_set(const char *out_dir, char *tmp, size_t cap, KvError *err)
{
    snprintf(tmp, cap, "%s/.kvtrace-plot-XXXXXX", out_dir);
    if (!mkdtemp(tmp)) return kv_fail(err, "%s: cannot create a temporary folder in it: %s", out_dir, strerror(errno));
    char path[2300];
    snprintf(path, sizeof path, "%s/data", tmp);
    if (mkdir(path, 0755) != 0) return kv_fail(err, "%s: cannot create: %s", path, strerror(errno));
    snprintf(path, sizeof path, "%s/scripts", tmp);
    if (mkdir(path, 0755) != 0) return kv_fail(err, "%s: cannot create: %s", path, strerror(errno));
    for (const PlotScript *s = PLOT_SCRIPTS; s->name; s++) {
        snprintf(path, sizeof path, "%s/scripts/%s", tmp, s->name);
        if (write_file(path, s->text, err)) return -1;
    }
    return 0;
}

/* The files of the set, relative to its folder: the top level, data/, scripts/. */
typedef struct {
    char (*name)[320];
    int n, cap;
} FileList;

static int list_folder(const char *root, const char *sub, FileList *list, KvError *err)
{
    char path[2300];
    snprintf(path, sizeof path, "%s%s%s", root, sub[0] ? "/" : "", sub);
    DIR *d = opendir(path);
    if (!d) return kv_fail(err, "%s: cannot list: %s", path, strerror(errno));
    struct dirent *e;
    int rc = 0;
    while (rc == 0 && (e = readdir(d))) {
        char full[2700];
        struct stat st;
        snprintf(full, sizeof full, "%s/%s", path, e->d_name);
        if (e->d_name[0] == '.' || stat(full, &st) != 0 || !S_ISREG(st.st_mode)) continue;
        if (list->n == list->cap) {
            int cap = list->cap ? 2 * list->cap : 64;
            void *p = realloc(list->name, (size_t)cap * sizeof *list->name);
            if (!p) { rc = kv_fail(err, "out of memory"); break; }
            list->name = p;
            list->cap = cap;
        }
        snprintf(list->name[list->n++], sizeof list->name[0], "%s%s%s", sub, sub[0] ? "/" : "", e->d_name);
    }
    closedir(d);
    return rc;
}

/* Removes what the temporary folder still holds, and the folder. */
static void abort_set(const char *tmp)
{
    FileList files = {0};
    KvError ignored;
    char path[2700];
    if (list_folder(tmp, "", &files, &ignored) == 0 && list_folder(tmp, "data", &files, &ignored) == 0)
        list_folder(tmp, "scripts", &files, &ignored);
    for (int i = 0; i < files.n; i++) {
        snprintf(path, sizeof path, "%s/%s", tmp, files.name[i]);
        unlink(path);
    }
    free(files.name);
    snprintf(path, sizeof path, "%s/data", tmp);
    rmdir(path);
    snprintf(path, sizeof path, "%s/scripts", tmp);
    rmdir(path);
    rmdir(tmp);
}

/* Checks every file of the finished set against the output rule, then moves
 * them into place. */
static int commit_set(const char *tmp, const char *out_dir, const PlotOptions *opt, const OutputInputs *inputs,
                      KvError *err)
{
    FileList files = {0};
    int rc = list_folder(tmp, "", &files, err) || list_folder(tmp, "data", &files, err) ||
             list_folder(tmp, "scripts", &files, err);
    char from[2700], to[2700];
    for (int i = 0; i < files.n && rc == 0; i++) {
        snprintf(to, sizeof to, "%s/%s", out_dir, files.name[i]);
        struct stat st;
        if (strncmp(files.name[i], "data/", 5) && strncmp(files.name[i], "scripts/", 8)) rc = output_check(to, opt->force, inputs, err);
        else if (stat(to, &st) == 0) rc = output_check(to, opt->force, inputs, err); /* its folder may not exist yet */
    }
    if (rc == 0) {
        snprintf(to, sizeof to, "%s/data", out_dir);
        snprintf(from, sizeof from, "%s/scripts", out_dir);
        rc = output_mkdirs(to, err) || output_mkdirs(from, err);
    }
    for (int i = 0; i < files.n && rc == 0; i++) {
        snprintf(from, sizeof from, "%s/%s", tmp, files.name[i]);
        snprintf(to, sizeof to, "%s/%s", out_dir, files.name[i]);
        rc = output_rename(from, to, opt->force, err);
    }
    free(files.name);
    return rc;
}

/* Before any work: the figures and replot.sh the run will write. */
static int check_outputs(const PlotOptions *opt, const int *wanted, const OutputInputs *inputs, KvError *err)
{
    char path[2300];
    snprintf(path, sizeof path, "%s/replot.sh", opt->out_dir);
    if (output_check(path, opt->force, inputs, err)) return -1;
    for (int f = 0; f < N_FIGURES; f++) {
        if (!wanted[f]) continue;
        snprintf(path, sizeof path, "%s/%s.%s", opt->out_dir, FIGURES[f].name, extension(opt));
        if (output_check(path, opt->force, inputs, err)) return -1;
    }
    return 0;
}

/* ------------------------------------------------------------ drawing */

/* The size; a figure with one key puts it below the plot when it is narrow
 * or its labels are long, in as many columns as fit, and grows to hold it. */
static void size_vars(FigureJob *job, const Figure *fig, const FigureSize *size)
{
    double width = size->width, height = size->fixed_height ? size->height : width * job->aspect;
    int below = fig->one_key && job->n_series && (width < 5 || job->longest > 28 || job->n_series > 16);
    if (below) {
        double char_in = size->font * 0.55 / 72, line_in = size->font * 1.3 / 72;
        int cols = (int)((width - 0.3) / ((job->longest + 7) * char_in));
        cols = cols < 1 ? 1 : cols > job->n_series ? job->n_series : cols;
        int rows = (job->n_series + cols - 1) / cols;
        if (!size->fixed_height) height += rows * line_in + 0.15;
        figure_num(job, "keycols", cols);
    } else if (!size->fixed_height && width < 5 && job->aspect > 0.8) {
        height = width * job->aspect * 1.2; /* multi-panel figures at column width */
    }
    figure_num(job, "keybelow", below);
    figure_num(job, "win", width);
    figure_num(job, "hin", height);
    figure_num(job, "dpi", size->dpi);
    figure_num(job, "fontsize", size->font);
}

static int draw(const Figure *fig, const PlotInput *in, int n_in, const PlotOptions *opt, const FigureSize *size,
                const char *dir, int asked, FILE *replot, PlotOutput *done, KvError *err)
{
    const PlotInput *mine[64];
    int n = 0;
    for (int i = 0; i < n_in && n < 64; i++)
        if (in[i].kind == fig->needs) mine[n++] = &in[i];
    FigureJob *job = calloc(1, sizeof *job);
    if (!job) return kv_fail(err, "out of memory");
    *job = (FigureJob){.opt = opt, .name = fig->name, .dir = dir, .in = mine, .n_in = n, .input = mine[0]->path,
                       .file = mine[0]->file, .aspect = fig->aspect};
    char out[64];
    snprintf(out, sizeof out, "%s.%s", fig->name, extension(opt));
    figure_var(job, "out", "%s", out);
    figure_var(job, "term", "%s", terminal(opt));
    int rc = fig->prepare(job, err);
    if (rc == 0 && job->skip && asked) rc = kv_fail(err, "%s: nothing to draw for figure '%s' (%s)", job->input, fig->name, fig->about);
    if (rc == 0 && !job->skip) {
        size_vars(job, fig, size);
        if (!opt->data_only) rc = run_gnuplot(dir, fig->name, job->vars, fig->script, err);
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

/* Draws every wanted figure into the temporary folder dir, with replot.sh. */
static int draw_all(const PlotInput *in, int n_in, const int *wanted, const PlotOptions *opt, const char *dir,
                    PlotOutput *done, KvError *err)
{
    FigureSize size;
    if (style_parse_size(opt->size, &size, err)) return -1;
    char path[2300];
    snprintf(path, sizeof path, "%s/replot.sh", dir);
    FILE *replot = fopen(path, "w");
    if (!replot) return output_io_error(err, path, "replot script");
    fprintf(replot, "#!/bin/sh\n# Re-draws every figure from the data in data/ (written by kvtrace plot).\n"
                    "cd \"$(dirname \"$0\")\" || exit 1\nset -e\n");
    int rc = 0;
    for (int f = 0; f < N_FIGURES && rc == 0; f++)
        if (wanted[f]) rc = draw(&FIGURES[f], in, n_in, opt, &size, dir, wanted[f] == 2, replot, done, err);
    if (close_file(replot, path, "replot script", err)) rc = -1;
    if (rc == 0 && chmod(path, 0755) != 0) rc = kv_fail(err, "%s: cannot make it executable: %s", path, strerror(errno));
    return rc;
}

static int check_format(const PlotOptions *opt, KvError *err)
{
    static const char *FORMATS[] = {"png", "svg", "pdf", "dumb"};
    for (size_t i = 0; i < sizeof FORMATS / sizeof FORMATS[0]; i++)
        if (!strcmp(opt->format, FORMATS[i])) return 0;
    return kv_fail(err, "unknown format '%s' (png, svg, pdf or dumb)", opt->format);
}

int plot_run(const char *const *inputs, int n_inputs, const PlotOptions *opt, PlotOutput *done, KvError *err)
{
    memset(done, 0, sizeof *done);
    FigureSize size;
    if (check_format(opt, err) || style_parse_size(opt->size, &size, err)) return -1;
    if (!opt->out_dir || !opt->out_dir[0]) return kv_fail(err, "no output folder");
    PlotInput *in = calloc((size_t)n_inputs, sizeof *in);
    OutputInputs readers = {0};
    int wanted[N_FIGURES] = {0}, rc = -1, created = 0;
    char tmp[2300] = "";
    struct stat st;
    if (!in) return kv_fail(err, "out of memory");
    for (int i = 0; i < n_inputs; i++) in[i].file = -1;
    for (int i = 0; i < n_inputs; i++)
        if (open_input(inputs[i], &in[i], err) || output_list_add(&readers, inputs[i])) goto done;
    if (label_inputs(opt, in, n_inputs, err) || choose_figures(opt, in, n_inputs, wanted, err)) goto done;
    if (!opt->data_only && !gnuplot_available()) {
        kv_fail(err, "gnuplot not found on PATH; install it with: sudo apt-get install gnuplot-nox");
        goto done;
    }
    created = stat(opt->out_dir, &st) != 0;
    if (output_mkdirs(opt->out_dir, err) || check_outputs(opt, wanted, &readers, err)) goto done;
    if (begin_set(opt->out_dir, tmp, sizeof tmp, err) || draw_all(in, n_inputs, wanted, opt, tmp, done, err) ||
        commit_set(tmp, opt->out_dir, opt, &readers, err))
        goto done;
    rc = 0;
done:
    if (tmp[0]) abort_set(tmp); /* after a commit only the empty folders are left */
    if (rc) {
        done->n = 0;
        if (created) rmdir(opt->out_dir); /* only if empty */
    }
    for (int i = 0; i < n_inputs; i++)
        if (in[i].file >= 0) H5Fclose(in[i].file);
    free(in);
    output_list_free(&readers);
    return rc;
}
