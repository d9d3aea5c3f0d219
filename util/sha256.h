/* sha256.h — SHA-256 of a memory block or a file, used to fingerprint model
 * files in trace metadata (so a trace names exactly which weights produced
 * it) and the input traces in results, analysis and eval files. */
#ifndef KV_SHA256_H
#define KV_SHA256_H

#include <pthread.h>
#include <stddef.h>

/* Writes 64 lowercase hex digits and a NUL into hex[65]. */
void sha256_hex(const void *data, size_t len, char hex[65]);

/* The same for a whole file (read a block at a time); -1 when it cannot be read. */
int sha256_file_hex(const char *path, char hex[65]);

/* The digests of input files, one line each ("unreadable" for a file that
 * cannot be read), computed on a thread of their own when asked: hashing a
 * trace of many gigabytes then overlaps the work that reads it, on a core
 * that would otherwise wait (a multi-threaded run loads its first layer
 * alone). */
typedef struct {
    const char *const *paths;
    int n;
    char *lines;       /* malloc'd when done; NULL when out of memory */
    pthread_t thread;
    int on_thread;
} FileDigests;

/* Starts hashing paths[0..n) (which must outlive the job): on a thread when
 * background is set and a thread can be had, else at file_digests_take. */
void file_digests_start(FileDigests *d, const char *const *paths, int n, int background);
/* Waits for the digests and hands them over (malloc'd; NULL when out of
 * memory); d is then done with. */
char *file_digests_take(FileDigests *d);
/* Abandons the job (waits for its thread). */
void file_digests_free(FileDigests *d);

#endif
