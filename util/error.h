/* error.h — the one error type every module reports through.
 *
 * Functions that can fail return 0 on success and -1 on failure, and fill a
 * KvError with a one-line message that names the file and the problem.  The
 * command-line layer prints that line; nothing below it prints errors. */
#ifndef KV_ERROR_H
#define KV_ERROR_H

typedef struct {
    char msg[1024];
} KvError;

/* Sets the message (printf-style) and returns -1 so callers can write
 * `return kv_fail(err, "...")`.  err may be NULL. */
int kv_fail(KvError *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Prefixes the existing message with more context ("reading x.h5: ..."). */
int kv_wrap(KvError *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
