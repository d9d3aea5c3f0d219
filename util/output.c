#include "output.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int output_list_add(OutputInputs *list, const char *path)
{
    if (list->n == list->cap) {
        int cap = list->cap ? 2 * list->cap : 8;
        const char **p = realloc(list->paths, (size_t)cap * sizeof *p);
        if (!p) return -1;
        list->paths = p;
        list->cap = cap;
    }
    list->paths[list->n++] = path;
    return 0;
}

void output_list_free(OutputInputs *list)
{
    free(list->paths);
    *list = (OutputInputs){0};
}

/* The folder part of a path ("." for a bare name), malloc'd. */
static char *folder_of(const char *path)
{
    char *copy = strdup(path);
    if (!copy) return NULL;
    char *dir = strdup(dirname(copy));
    free(copy);
    return dir;
}

static char *base_of(const char *path)
{
    char *copy = strdup(path);
    if (!copy) return NULL;
    char *base = strdup(basename(copy));
    free(copy);
    return base;
}

/* The path with its folder resolved (symlinks, "./", ".."): two spellings
 * of one output give the same string even before the file exists. */
static char *canonical_output(const char *path)
{
    char *dir = folder_of(path), *base = base_of(path), *real = dir ? realpath(dir, NULL) : NULL, *out = NULL;
    if (real && base) {
        size_t n = strlen(real) + strlen(base) + 2;
        if ((out = malloc(n))) snprintf(out, n, "%s/%s", real, base);
    }
    free(dir);
    free(base);
    free(real);
    return out;
}

static int same_file(const struct stat *a, const struct stat *b)
{
    return a->st_dev == b->st_dev && a->st_ino == b->st_ino;
}

static int check_not_an_input(const char *path, const OutputInputs *inputs, KvError *err)
{
    struct stat out_st, in_st;
    int out_exists = stat(path, &out_st) == 0;
    char *canon = canonical_output(path);
    int rc = 0;
    for (int i = 0; inputs && i < inputs->n && rc == 0; i++) {
        const char *in = inputs->paths[i];
        int same = out_exists && stat(in, &in_st) == 0 && same_file(&out_st, &in_st);
        if (!same && canon) { /* a second output spelled differently, not written yet */
            char *other = canonical_output(in);
            same = other && !strcmp(other, canon);
            free(other);
        }
        if (same)
            rc = kv_fail(err, "%s is the same file as %s, which this command reads or writes; refusing to "
                         "overwrite it (choose another output name)", path, in);
    }
    free(canon);
    return rc;
}

int output_check(const char *path, int force, const OutputInputs *inputs, KvError *err)
{
    if (!path || !*path) return kv_fail(err, "an output file name is empty");
    if (check_not_an_input(path, inputs, err)) return -1;
    struct stat st;
    if (lstat(path, &st) == 0) {
        if (S_ISDIR(st.st_mode)) return kv_fail(err, "%s is a folder, not a file", path);
        if (!force) return kv_fail(err, "%s exists; use --force to replace it", path);
    }
    char *dir = folder_of(path);
    if (!dir) return kv_fail(err, "out of memory");
    int rc = 0;
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode))
        rc = kv_fail(err, "%s: the folder %s does not exist", path, dir);
    else if (access(dir, W_OK | X_OK) != 0)
        rc = kv_fail(err, "%s: the folder %s is not writable: %s", path, dir, strerror(errno));
    free(dir);
    return rc;
}

int output_begin(OutputFile *o, const char *path, int force, const OutputInputs *inputs, KvError *err)
{
    *o = (OutputFile){.force = force};
    if (output_check(path, force, inputs, err)) return -1;
    char *dir = folder_of(path), *base = base_of(path);
    size_t n = (dir ? strlen(dir) : 0) + (base ? strlen(base) : 0) + 32;
    o->path = strdup(path);
    o->tmp = dir && base ? malloc(n) : NULL;
    int rc = 0;
    if (!o->path || !o->tmp) {
        rc = kv_fail(err, "out of memory");
    } else {
        /* hidden, beside the output (same filesystem, so the rename is atomic) */
        snprintf(o->tmp, n, "%s/.%s.tmp-XXXXXX", dir, base);
        int fd = mkstemp(o->tmp);
        if (fd < 0) {
            rc = kv_fail(err, "%s: cannot create a temporary file in %s: %s", path, dir, strerror(errno));
        } else {
            mode_t mask = umask(0); /* mkstemp makes 0600; outputs get the usual 0666 & ~umask */
            umask(mask);
            fchmod(fd, 0666 & ~mask);
            close(fd);
        }
    }
    free(dir);
    free(base);
    if (rc) {
        free(o->path);
        free(o->tmp);
        *o = (OutputFile){0};
    }
    return rc;
}

int output_check_all(const OutputJob *jobs, int n, int force, OutputInputs *inputs, KvError *err)
{
    for (int i = 0; i < n; i++) {
        if (output_check(jobs[i].path, force, inputs, err)) return -1;
        if (output_list_add(inputs, jobs[i].path)) return kv_fail(err, "out of memory");
    }
    return 0;
}

int output_write_all(const OutputJob *jobs, int n, int force, KvError *err)
{
    OutputFile *files = calloc((size_t)(n > 0 ? n : 1), sizeof *files);
    if (!files) return kv_fail(err, "out of memory");
    int rc = 0, i;
    /* the outputs were checked against the inputs before the work; here only existence matters again */
    for (i = 0; i < n && rc == 0; i++)
        rc = output_begin(&files[i], jobs[i].path, force, NULL, err) || jobs[i].write(&files[i], jobs[i].ctx, err);
    for (i = 0; i < n && rc == 0; i++) rc = output_commit(&files[i], err);
    for (i = 0; i < n; i++) output_abort(&files[i]); /* no-op for those committed */
    free(files);
    return rc ? -1 : 0;
}

int output_rename(const char *tmp, const char *path, int force, KvError *err)
{
    if (force) {
        if (rename(tmp, path) != 0) return kv_fail(err, "%s: cannot move the finished file into place: %s", path,
                                                   strerror(errno));
        return 0;
    }
#ifdef RENAME_NOREPLACE
    if (renameat2(AT_FDCWD, tmp, AT_FDCWD, path, RENAME_NOREPLACE) == 0) return 0;
    if (errno == EEXIST)
        return kv_fail(err, "%s appeared while this run was writing it (another run?); use --force to replace it",
                       path);
    if (errno != EINVAL && errno != ENOSYS)
        return kv_fail(err, "%s: cannot move the finished file into place: %s", path, strerror(errno));
#endif
    /* filesystems without RENAME_NOREPLACE: a hard link also refuses an existing name */
    if (link(tmp, path) == 0) {
        unlink(tmp);
        return 0;
    }
    if (errno == EEXIST)
        return kv_fail(err, "%s appeared while this run was writing it (another run?); use --force to replace it",
                       path);
    struct stat st;
    if (stat(path, &st) == 0) return kv_fail(err, "%s exists; use --force to replace it", path);
    if (rename(tmp, path) != 0)
        return kv_fail(err, "%s: cannot move the finished file into place: %s", path, strerror(errno));
    return 0;
}

int output_commit(OutputFile *o, KvError *err)
{
    if (!o->tmp) return kv_fail(err, "%s: nothing to commit", o->path ? o->path : "output");
    int rc = output_rename(o->tmp, o->path, o->force, err);
    if (rc) unlink(o->tmp);
    free(o->tmp);
    free(o->path);
    *o = (OutputFile){0};
    return rc;
}

void output_abort(OutputFile *o)
{
    if (o->tmp) unlink(o->tmp);
    free(o->tmp);
    free(o->path);
    *o = (OutputFile){0};
}

FILE *output_open_text(const OutputFile *out, const char *what, KvError *err)
{
    errno = 0;
    FILE *fp = fopen(out->tmp, "w");
    if (!fp) output_io_error(err, out->path, what);
    return fp;
}

int output_close_text(FILE *fp, const OutputFile *out, const char *what, KvError *err)
{
    errno = 0;
    int bad = fflush(fp) != 0 || ferror(fp);
    int saved = errno;
    if (fclose(fp) != 0 && !bad) {
        bad = 1;
        saved = errno;
    }
    errno = saved;
    return bad ? output_io_error(err, out->path, what) : 0;
}

int output_io_error(KvError *err, const char *path, const char *what)
{
    int e = errno;
    if (e == 0) return kv_fail(err, "%s: writing the %s failed", path, what);
    return kv_fail(err, "%s: writing the %s failed: %s", path, what, strerror(e));
}

int output_mkdirs(const char *dir, KvError *err)
{
    struct stat st;
    if (stat(dir, &st) == 0) {
        if (S_ISDIR(st.st_mode)) return 0;
        return kv_fail(err, "%s exists and is not a folder", dir);
    }
    char *parent = folder_of(dir);
    int rc = parent && strcmp(parent, dir) != 0 ? output_mkdirs(parent, err) : 0;
    free(parent);
    if (rc) return -1;
    if (mkdir(dir, 0755) != 0 && errno != EEXIST)
        return kv_fail(err, "%s: cannot create the folder: %s", dir, strerror(errno));
    return 0;
}

char *output_replace_extension(const char *path, const char *ext)
{
    const char *slash = strrchr(path, '/'), *dot = strrchr(path, '.');
    size_t keep = dot && (!slash || dot > slash) && dot != (slash ? slash + 1 : path) ? (size_t)(dot - path)
                                                                                      : strlen(path);
    char *out = malloc(keep + strlen(ext) + 1);
    if (!out) return NULL;
    memcpy(out, path, keep);
    strcpy(out + keep, ext);
    return out;
}
