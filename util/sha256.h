/* sha256.h — SHA-256 of a memory block, used to fingerprint model files in
 * trace metadata (so a trace names exactly which weights produced it). */
#ifndef KV_SHA256_H
#define KV_SHA256_H

#include <stddef.h>

/* Writes 64 lowercase hex digits and a NUL into hex[65]. */
void sha256_hex(const void *data, size_t len, char hex[65]);

#endif
