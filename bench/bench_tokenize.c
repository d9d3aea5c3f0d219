/* Tokenization speed: the library call on a 32 KB and a 1 MB text (a
 * benchmark, not a test).
 *
 * usage: bench_tokenize VOCAB.gguf [VOCAB.gguf ...]
 *
 * The texts are English-like words with punctuation, numbers, a little
 * non-ASCII and line breaks, the same on every run.  Each figure is the best
 * of five encodings (add_special and parse_special on, as `record` encodes);
 * the vocabulary's load time is the best of three.  The load average comes
 * first: figures taken on a busy machine are slower. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../trace/tokenizer.h"

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static char *make_text(size_t size)
{
    static const char *WORDS[] = {"once", "upon", "a", "time", "there", "was", "little", "girl", "named", "Lily",
                                  "she", "loved", "to", "play", "outside", "in", "the", "park", "The", "KV", "cache",
                                  "holds", "keys", "and", "values", "2024", "3.14", "caf\xc3\xa9", "na\xc3\xafve"};
    static const char *AFTER[] = {" ", " ", " ", ", ", ". ", "! ", "'s ", ".\n", ": "};
    char *t = malloc(size + 32);
    size_t n = 0;
    unsigned s = 7;
    while (n < size) {
        s = s * 1103515245u + 12345u;
        n += (size_t)sprintf(t + n, "%s%s", WORDS[(s >> 8) % (sizeof WORDS / sizeof WORDS[0])],
                             AFTER[(s >> 20) % (sizeof AFTER / sizeof AFTER[0])]);
    }
    t[size] = 0;
    while (size > 0 && ((unsigned char)t[size - 1] & 0xC0) == 0x80) t[--size] = 0; /* whole characters */
    return t;
}

static int bench(const char *path, char *const texts[2], const size_t sizes[2])
{
    double load = 1e30, best[2] = {1e30, 1e30};
    int n_ids = 0;
    Tokenizer t;
    KvError err;
    for (int r = 0; r < 3; r++) {
        GgufFile g;
        double t0 = now();
        if (gguf_open(&g, path, &err) || tokenizer_from_gguf(&t, &g, &err)) {
            fprintf(stderr, "%s\n", err.msg);
            return 1;
        }
        gguf_close(&g);
        if (now() - t0 < load) load = now() - t0;
        if (r < 2) tokenizer_free(&t);
    }
    TokenizeOptions o = {.add_special = 1, .parse_special = 1};
    for (int k = 0; k < 2; k++)
        for (int r = 0; r < 5; r++) {
            int *ids, n;
            double t0 = now();
            if (tokenizer_encode_opts(&t, texts[k], sizes[k], &o, &ids, &n, &err)) {
                fprintf(stderr, "%s\n", err.msg);
                tokenizer_free(&t);
                return 1;
            }
            if (now() - t0 < best[k]) best[k] = now() - t0;
            n_ids = n;
            free(ids);
        }
    const char *base = strrchr(path, '/');
    printf("%-32s %8.3f s %9.4f s %9.3f s %12d %8.2f\n", base ? base + 1 : path, load, best[0], best[1], n_ids,
           (double)sizes[1] / 1e6 / best[1]);
    tokenizer_free(&t);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: bench_tokenize VOCAB.gguf [VOCAB.gguf ...]\n");
        return 2;
    }
    double avg[3] = {0};
    FILE *fp = fopen("/proc/loadavg", "r");
    if (fp) {
        if (fscanf(fp, "%lf %lf %lf", &avg[0], &avg[1], &avg[2]) != 3) avg[0] = avg[1] = avg[2] = -1;
        fclose(fp);
    }
    size_t sizes[2] = {32 * 1024, 1 << 20};
    char *texts[2] = {make_text(sizes[0]), make_text(sizes[1])};
    sizes[0] = strlen(texts[0]);
    sizes[1] = strlen(texts[1]);
    printf("load average %.2f %.2f %.2f\n", avg[0], avg[1], avg[2]);
    printf("%-32s %10s %11s %11s %12s %8s\n", "vocabulary", "load", "32 KB", "1 MB", "1 MB tokens", "MB/s");
    int rc = 0;
    for (int i = 1; i < argc; i++) rc |= bench(argv[i], texts, sizes);
    free(texts[0]);
    free(texts[1]);
    return rc;
}
