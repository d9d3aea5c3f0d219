/* sha256.h — SHA-256 of a memory block or a file, used to fingerprint model
 * files in trace metadata (so a trace names exactly which weights produced
 * it) and the input traces in results, analysis and eval files. */
#ifndef KV_SHA256_H
#define KV_SHA256_H

#include <stddef.h>

/* Writes 64 lowercase hex digits and a NUL into hex[65]. */
void sha256_hex(const void *data, size_t len, char hex[65]);

/* The same for a whole file (memory-mapped); -1 when it cannot be read. */
int sha256_file_hex(const char *path, char hex[65]);

#endif
