/* Fuzzing the tokenizers with text: every vocabulary of llama.cpp's test set
 * (SentencePiece and byte-level BPE with each pre-tokenizer) encodes the
 * input's text.  The first byte picks the vocabulary and the options.  For
 * byte-level BPE, decoding the ids of valid UTF-8 text must give back the
 * text byte for byte (the encoding is lossless): a mismatch aborts, a finding
 * like a crash.  Invalid UTF-8 is read as U+FFFD, as llama.cpp does, so its
 * ids decode to the replacement character instead: not lossless, by design. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../trace/gguf.h"
#include "../trace/tokenizer.h"
#include "../trace/unicode.h"
#include "fuzz.h"

#ifndef KVTRACE_SOURCE_DIR
#define KVTRACE_SOURCE_DIR "."
#endif

#define MAX_VOCABS 16

typedef struct {
    GgufFile file;
    Tokenizer tok;
} Vocab;

static Vocab vocabs[MAX_VOCABS];
static int n_vocabs = -1;

static void load_vocabularies(void)
{
    const char *dir = getenv("KVTRACE_FUZZ_VOCAB");
    char def[1024];
    snprintf(def, sizeof def, "%s/../shared/reference/vocab", KVTRACE_SOURCE_DIR);
    if (!dir) dir = def;
    n_vocabs = 0;
    DIR *d = opendir(dir);
    struct dirent *e;
    while (d && (e = readdir(d)) && n_vocabs < MAX_VOCABS) {
        size_t len = strlen(e->d_name);
        if (len < 5 || strcmp(e->d_name + len - 5, ".gguf")) continue;
        char path[2048];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        KvError err;
        Vocab *v = &vocabs[n_vocabs];
        if (gguf_open(&v->file, path, &err) == 0 && tokenizer_from_gguf(&v->tok, &v->file, &err) == 0) n_vocabs++;
    }
    if (d) closedir(d);
    if (n_vocabs == 0) fprintf(stderr, "fuzz_tokenize: no vocabulary in %s (set KVTRACE_FUZZ_VOCAB)\n", dir);
}

static int valid_utf8(const char *text, size_t len)
{
    for (size_t i = 0; i < len;) {
        int n = utf8_valid_len((const unsigned char *)text + i, len - i);
        if (n == 0) return 0;
        i += (size_t)n;
    }
    return 1;
}

static void check_lossless(const Tokenizer *t, const char *text, size_t len, const int *ids, int n)
{
    size_t cap = len * 4 + 64, used = 0;
    char *back = malloc(cap);
    for (int i = 0; back && i < n; i++) {
        if (ids[i] < 0 || ids[i] >= t->vocab_size) abort();
        char piece[1024];
        size_t k = tokenizer_decode(t, ids[i], piece, sizeof piece);
        if (used + k > cap) abort(); /* longer than the text: wrong */
        memcpy(back + used, piece, k);
        used += k;
    }
    if (back && (used != len || memcmp(back, text, len))) abort();
    free(back);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (n_vocabs < 0) load_vocabularies();
    if (n_vocabs == 0 || size < 1) return 0;
    const Vocab *v = &vocabs[data[0] % n_vocabs];
    int special = data[0] >> 7;
    const char *text = (const char *)data + 1;
    size_t len = size - 1;
    TokenizeOptions o = {.add_special = (data[0] >> 6) & 1, .parse_special = special, .max_tokens = 1 << 20};
    int *ids = NULL, n = 0;
    KvError err;
    if (tokenizer_encode_opts(&v->tok, text, len, &o, &ids, &n, &err) == 0) {
        /* lossless for byte-level BPE when no special token was added or parsed (BOS has no text) */
        if (v->tok.kind == TOKENIZER_BPE && !special && !o.add_special && !memchr(text, 0, len) &&
            valid_utf8(text, len))
            check_lossless(&v->tok, text, len, ids, n);
        free(ids);
    }
    return 0;
}
