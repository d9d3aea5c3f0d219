#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "../trace/h5util.h"
#include "../util/dist.h"
#include "cli.h"

/* Under mpirun every rank meets the same errors; rank 0 alone reports them. */
int cli_error(const char *cmd, const char *msg)
{
    if (dist_rank() != 0) return 1;
    fprintf(stderr, "kvtrace %s: %s\n", cmd, msg);
    return 1;
}

int cli_usage_error(const char *cmd, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (dist_rank() != 0) return 2;
    fprintf(stderr, "kvtrace %s: %s (see kvtrace %s --help)\n", cmd, msg, cmd);
    return 2;
}

int parse_int(const char *s, long min, long max, long *out)
{
    if (!s || !*s) return -1;
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || *end || v < min || v > max) return -1;
    *out = v;
    return 0;
}

int parse_double(const char *s, double min, double max, double *out)
{
    if (!s || !*s) return -1;
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || *end || !isfinite(v) || v < min || v > max) return -1;
    *out = v;
    return 0;
}

int parse_int_list(const char *s, int **out, int *n)
{
    size_t cap = 1;
    for (const char *p = s; *p; p++) cap += *p == ',';
    int *v = malloc(cap * sizeof *v);
    char *copy = strdup(s);
    if (!v || !copy) { free(v); free(copy); return -1; }
    int count = 0;
    char *save = NULL;
    for (char *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        long x;
        if (parse_int(tok, 0, 1L << 30, &x)) { free(v); free(copy); return -1; }
        v[count++] = (int)x;
    }
    free(copy);
    if (count == 0) { free(v); return -1; }
    *out = v;
    *n = count;
    return 0;
}

int read_lines(const char *path, char ***lines, int *n)
{
    FILE *fp = fopen(path, "r");
    if (!fp) return -1;
    char **v = NULL, *line = NULL;
    size_t lcap = 0;
    int count = 0, cap = 0;
    ssize_t len;
    while ((len = getline(&line, &lcap, fp)) >= 0) {
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r')) line[--len] = 0;
        if (len == 0) continue;
        if (count == cap) {
            cap = cap ? 2 * cap : 16;
            char **g = realloc(v, (size_t)cap * sizeof *v);
            if (!g) break;
            v = g;
        }
        if (!(v[count] = strdup(line))) break;
        count++;
    }
    int bad = ferror(fp) || !feof(fp);
    free(line);
    fclose(fp);
    if (bad) { free_lines(v, count); return -1; }
    *lines = v;
    *n = count;
    return 0;
}

void free_lines(char **lines, int n)
{
    for (int i = 0; i < n; i++) free(lines[i]);
    free(lines);
}

/* Appends one argument, single-quoted unless it is plainly safe for sh. */
static void append_quoted(char *out, size_t *used, const char *arg)
{
    int plain = *arg != 0;
    for (const char *c = arg; *c && plain; c++)
        plain = isalnum((unsigned char)*c) || strchr("_@%+=:,./-", *c);
    if (plain) {
        *used += (size_t)sprintf(out + *used, "%s", arg);
        return;
    }
    out[(*used)++] = '\'';
    for (const char *c = arg; *c; c++) {
        if (*c == '\'') {
            memcpy(out + *used, "'\\''", 4);
            *used += 4;
        } else {
            out[(*used)++] = *c;
        }
    }
    out[(*used)++] = '\'';
    out[*used] = 0;
}

char *cli_command_line(int argc, char **argv)
{
    size_t cap = 16;
    for (int i = 0; i < argc; i++) cap += 4 * strlen(argv[i]) + 3;
    char *out = malloc(cap);
    if (!out) return NULL;
    size_t used = (size_t)sprintf(out, "kvtrace");
    for (int i = 0; i < argc; i++) {
        out[used++] = ' ';
        out[used] = 0;
        append_quoted(out, &used, argv[i]);
    }
    return out;
}

int file_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

int cli_add_policy(PolicySpec **list, int *n, const char *text, KvError *err)
{
    PolicySpec *p = realloc(*list, (size_t)(*n + 1) * sizeof *p);
    if (!p) return kv_fail(err, "out of memory");
    *list = p;
    if (policy_parse(text, &p[*n], err)) return -1;
    (*n)++;
    return 0;
}

int cli_add_allocation(AllocSpec **list, int *n, const char *text, KvError *err)
{
    AllocSpec *a = realloc(*list, (size_t)(*n + 1) * sizeof *a);
    if (!a) return kv_fail(err, "out of memory");
    *list = a;
    if (allocation_parse(text, &a[*n], err)) return -1;
    (*n)++;
    return 0;
}

int cli_add_budgets(BudgetSpec **list, int *n, const char *text, KvError *err)
{
    int count = 1;
    for (const char *c = text; *c; c++) count += *c == ',';
    BudgetSpec *grown = realloc(*list, (size_t)(*n + count) * sizeof **list);
    char *copy = strdup(text);
    if (!grown || !copy) {
        if (grown) *list = grown;
        free(copy);
        return kv_fail(err, "out of memory");
    }
    *list = grown;
    int before = *n, rc = 0;
    char *save = NULL;
    for (char *tok = strtok_r(copy, ",", &save); tok && rc == 0; tok = strtok_r(NULL, ",", &save))
        rc = parse_budget(tok, &(*list)[(*n)++], err);
    free(copy);
    if (rc) return -1;
    return *n > before ? 0 : kv_fail(err, "--budget needs at least one budget");
}

int cli_check_traces(const char *const *paths, int n, KvError *err)
{
    for (int i = 0; i < n; i++) {
        hid_t f = h5_open_read(paths[i], "trace", err);
        if (f < 0) return -1;
        H5Fclose(f);
    }
    return 0;
}
