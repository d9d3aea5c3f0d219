/* FIPS 180-4 SHA-256, written from the standard. */
#include "sha256.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const uint32_t K[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
};

static uint32_t rotr(uint32_t x, int n) { return (x >> n) | (x << (32 - n)); }

static void compress(uint32_t h[8], const uint8_t block[64])
{
    uint32_t w[64];
    for (int i = 0; i < 16; i++)
        w[i] = (uint32_t)block[4 * i] << 24 | (uint32_t)block[4 * i + 1] << 16 |
               (uint32_t)block[4 * i + 2] << 8 | (uint32_t)block[4 * i + 3];
    for (int i = 16; i < 64; i++) {
        uint32_t s0 = rotr(w[i - 15], 7) ^ rotr(w[i - 15], 18) ^ (w[i - 15] >> 3);
        uint32_t s1 = rotr(w[i - 2], 17) ^ rotr(w[i - 2], 19) ^ (w[i - 2] >> 10);
        w[i] = w[i - 16] + s0 + w[i - 7] + s1;
    }
    uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4], f = h[5], g = h[6], hh = h[7];
    for (int i = 0; i < 64; i++) {
        uint32_t t1 = hh + (rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)) + ((e & f) ^ (~e & g)) + K[i] + w[i];
        uint32_t t2 = (rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
        hh = g; g = f; f = e; e = d + t1; d = c; c = b; b = a; a = t1 + t2;
    }
    h[0] += a; h[1] += b; h[2] += c; h[3] += d; h[4] += e; h[5] += f; h[6] += g; h[7] += hh;
}

#if defined(__x86_64__)
#include <cpuid.h>
#include <immintrin.h>

/* The same compression with the SHA extensions (Intel since Goldmont / Ice
 * Lake, AMD since Zen): about five times faster on multi-gigabyte models.
 * The instructions keep the state as (a, b, e, f) and (c, d, g, h). */
__attribute__((target("sha,sse4.1")))
static void compress_blocks_sha(uint32_t h[8], const uint8_t *p, size_t blocks)
{
    const __m128i swap = _mm_set_epi64x(0x0c0d0e0f08090a0bLL, 0x0405060700010203LL); /* big-endian words */
    __m128i dcba = _mm_loadu_si128((const __m128i *)h), hgfe = _mm_loadu_si128((const __m128i *)(h + 4));
    __m128i badc = _mm_shuffle_epi32(dcba, 0xB1), efgh = _mm_shuffle_epi32(hgfe, 0x1B);
    __m128i abef = _mm_alignr_epi8(badc, efgh, 8), cdgh = _mm_blend_epi16(efgh, badc, 0xF0);
    for (size_t b = 0; b < blocks; b++, p += 64) {
        __m128i abef0 = abef, cdgh0 = cdgh, m[4];
        for (int i = 0; i < 4; i++) m[i] = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(p + 16 * i)), swap);
        for (int i = 0; i < 16; i++) { /* rounds 4i .. 4i+3 */
            __m128i msg = _mm_add_epi32(m[i % 4], _mm_loadu_si128((const __m128i *)(K + 4 * i)));
            cdgh = _mm_sha256rnds2_epu32(cdgh, abef, msg);
            abef = _mm_sha256rnds2_epu32(abef, cdgh, _mm_shuffle_epi32(msg, 0x0E));
            if (i < 12) { /* words 4i+16 .. 4i+19 replace words 4i .. 4i+3 */
                __m128i w = _mm_sha256msg1_epu32(m[i % 4], m[(i + 1) % 4]);
                w = _mm_add_epi32(w, _mm_alignr_epi8(m[(i + 3) % 4], m[(i + 2) % 4], 4));
                m[i % 4] = _mm_sha256msg2_epu32(w, m[(i + 3) % 4]);
            }
        }
        abef = _mm_add_epi32(abef, abef0);
        cdgh = _mm_add_epi32(cdgh, cdgh0);
    }
    __m128i feba = _mm_shuffle_epi32(abef, 0x1B), dchg = _mm_shuffle_epi32(cdgh, 0xB1);
    _mm_storeu_si128((__m128i *)h, _mm_blend_epi16(feba, dchg, 0xF0));
    _mm_storeu_si128((__m128i *)(h + 4), _mm_alignr_epi8(dchg, feba, 8));
}

static int have_sha_extensions(void)
{
    unsigned a, b, c, d;
    return __get_cpuid_count(7, 0, &a, &b, &c, &d) && (b >> 29 & 1) && __get_cpuid(1, &a, &b, &c, &d) &&
           (c >> 19 & 1); /* SHA, SSE4.1 */
}
#endif

static void compress_blocks(uint32_t h[8], const uint8_t *p, size_t blocks)
{
#if defined(__x86_64__)
    if (have_sha_extensions()) {
        compress_blocks_sha(h, p, blocks);
        return;
    }
#endif
    for (size_t i = 0; i < blocks; i++) compress(h, p + 64 * i);
}

static void sha256_init(uint32_t h[8])
{
    static const uint32_t initial[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                                        0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
    memcpy(h, initial, sizeof initial);
}

/* The last rest (< 64) bytes of a message of len bytes, the padding, the digest. */
static void sha256_finish(uint32_t h[8], const uint8_t *rest_bytes, size_t rest, uint64_t len, char hex[65])
{
    uint8_t tail[128] = {0};
    memcpy(tail, rest_bytes, rest);
    tail[rest] = 0x80;
    size_t tail_len = rest < 56 ? 64 : 128;
    uint64_t bits = len * 8;
    for (int i = 0; i < 8; i++) tail[tail_len - 1 - i] = (uint8_t)(bits >> (8 * i));
    compress_blocks(h, tail, tail_len / 64);
    for (int i = 0; i < 8; i++) snprintf(hex + 8 * i, 9, "%08x", h[i]);
}

void sha256_hex(const void *data, size_t len, char hex[65])
{
    uint32_t h[8];
    sha256_init(h);
    const uint8_t *p = data;
    size_t full = len / 64;
    compress_blocks(h, p, full);
    sha256_finish(h, p + 64 * full, len - 64 * full, len, hex);
}

/* Fills buf from fd up to size bytes (fewer only at the end of the file);
 * returns the bytes read, or -1. */
static ssize_t read_full(int fd, uint8_t *buf, size_t size)
{
    size_t got = 0;
    while (got < size) {
        ssize_t n = read(fd, buf + got, size - got);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return -1;
        if (n == 0) break;
        got += (size_t)n;
    }
    return (ssize_t)got;
}

/* Read a block at a time, not mapped: a mapping of a many-gigabyte trace
 * would count in the process's resident memory as it is hashed. */
int sha256_file_hex(const char *path, char hex[65])
{
    enum { BLOCK = 4 << 20 }; /* a multiple of 64 */
    int fd = open(path, O_RDONLY);
    if (fd < 0) return -1;
    struct stat st;
    uint8_t *buf = malloc(BLOCK);
    int rc = -1;
    if (buf && fstat(fd, &st) == 0 && S_ISREG(st.st_mode)) {
        posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
        uint32_t h[8];
        uint64_t len = 0;
        sha256_init(h);
        for (;;) {
            ssize_t n = read_full(fd, buf, BLOCK);
            if (n < 0) break;
            len += (uint64_t)n;
            if (n == BLOCK) {
                compress_blocks(h, buf, BLOCK / 64);
                continue;
            }
            size_t full = (size_t)n / 64;
            compress_blocks(h, buf, full);
            sha256_finish(h, buf + 64 * full, (size_t)n - 64 * full, len, hex);
            rc = 0;
            break;
        }
    }
    free(buf);
    close(fd);
    return rc;
}

static void *digest_files(void *arg)
{
    FileDigests *d = arg;
    d->lines = calloc((size_t)d->n * 66 + 1, 1);
    for (int i = 0; d->lines && i < d->n; i++) {
        char hex[65];
        if (sha256_file_hex(d->paths[i], hex)) snprintf(hex, sizeof hex, "unreadable");
        strcat(d->lines, i ? "\n" : "");
        strcat(d->lines, hex);
    }
    return NULL;
}

void file_digests_start(FileDigests *d, const char *const *paths, int n, int background)
{
    *d = (FileDigests){.paths = paths, .n = n};
    d->on_thread = background && pthread_create(&d->thread, NULL, digest_files, d) == 0;
}

char *file_digests_take(FileDigests *d)
{
    if (d->on_thread) pthread_join(d->thread, NULL);
    else digest_files(d);
    char *lines = d->lines;
    *d = (FileDigests){0};
    return lines;
}

void file_digests_free(FileDigests *d)
{
    if (d->on_thread) pthread_join(d->thread, NULL);
    free(d->lines);
    *d = (FileDigests){0};
}
