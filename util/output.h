/* output.h — the one rule for every file kvtrace writes.
 *
 * 1. An output that already exists is refused unless the user said --force.
 * 2. An output that is one of the command's inputs (the same file by device
 *    and inode, however it is spelled: symlinks, "./", hard links) is refused
 *    even with --force, and so are two outputs that name one file.
 * 3. A result appears only complete: it is written under a temporary name in
 *    the same directory and renamed into place at the end.  A run that fails,
 *    is interrupted or is killed leaves the previous file exactly as it was.
 *    Without --force the rename refuses to replace a file that appeared in
 *    the meantime (two runs racing for one output: the second one fails).
 *
 * Every subcommand that writes files goes through these functions; nothing
 * else in kvtrace creates, replaces or removes a user's file. */
#ifndef KV_OUTPUT_H
#define KV_OUTPUT_H

#include <stddef.h>
#include <stdio.h>

#include "error.h"

/* The files a command reads, for rule 2; outputs already accepted are added
 * with output_list_add too, so a second output cannot name the first. */
typedef struct {
    const char **paths;
    int n, cap;
} OutputInputs;

int output_list_add(OutputInputs *list, const char *path);
void output_list_free(OutputInputs *list);

/* Rules 1 and 2 for one output path, before any work is done. */
int output_check(const char *path, int force, const OutputInputs *inputs, KvError *err);

/* A temporary file beside its final path (rule 3). */
typedef struct {
    char *path; /* the final name */
    char *tmp;  /* the temporary name, created empty by output_begin; NULL once committed or aborted */
    int force;
} OutputFile;

/* Checks path (rules 1 and 2) and creates the temporary file beside it. */
int output_begin(OutputFile *o, const char *path, int force, const OutputInputs *inputs, KvError *err);
/* Renames the finished temporary file into place. */
int output_commit(OutputFile *o, KvError *err);
/* Removes the temporary file: the previous output, if any, is untouched. */
void output_abort(OutputFile *o);

/* Several outputs of one command, all or nothing: output_check_all before
 * the work (each accepted path joins inputs, so two outputs cannot name one
 * file), output_write_all after it: every file is written to its temporary
 * file, and only when all succeeded are they renamed into place. */
typedef struct {
    const char *path;
    int (*write)(const OutputFile *out, void *ctx, KvError *err);
    void *ctx;
} OutputJob;

int output_check_all(const OutputJob *jobs, int n, int force, OutputInputs *inputs, KvError *err);
int output_write_all(const OutputJob *jobs, int n, int force, KvError *err);

/* Renames tmp to path: replacing it when force, else only if path does not
 * exist at that moment (atomically where the filesystem allows). */
int output_rename(const char *tmp, const char *path, int force, KvError *err);

/* Opens out's temporary file for text ("w"); NULL with a message naming the
 * final path.  output_close_text checks every write and the close. */
FILE *output_open_text(const OutputFile *out, const char *what, KvError *err);
int output_close_text(FILE *fp, const OutputFile *out, const char *what, KvError *err);

/* "PATH: writing the WHAT failed: <strerror(errno)>" for a failed write;
 * errno must still be the failing call's.  Returns -1. */
int output_io_error(KvError *err, const char *path, const char *what);

/* Creates a directory and its missing parents (mode 0755). */
int output_mkdirs(const char *dir, KvError *err);

/* path with another extension: "out/r.h5" + ".csv" -> "out/r.csv" (malloc'd;
 * the extension is appended when the last component has none). */
char *output_replace_extension(const char *path, const char *ext);

#endif
