#include "tokenizer.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint64_t hash_bytes(const char *s, size_t n)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (size_t i = 0; i < n; i++) h = (h ^ (uint8_t)s[i]) * 1099511628211ull;
    return h;
}

int tokenizer_lookup(const Tokenizer *t, const char *piece, size_t len)
{
    size_t mask = t->hash_cap - 1;
    for (size_t i = hash_bytes(piece, len) & mask;; i = (i + 1) & mask) {
        int id = t->hash_slots[i];
        if (id < 0) return -1;
        if (strlen(t->pieces[id]) == len && memcmp(t->pieces[id], piece, len) == 0) return id;
    }
}

/* Builds the piece index and the byte-fallback table; the first of
 * duplicate pieces wins. */
static int build_index(Tokenizer *t, KvError *err, const char *path)
{
    t->hash_cap = 16;
    while (t->hash_cap < 2 * (size_t)t->vocab_size) t->hash_cap *= 2;
    t->hash_slots = malloc(t->hash_cap * sizeof *t->hash_slots);
    if (!t->hash_slots) return kv_fail(err, "%s: out of memory for the tokenizer", path);
    memset(t->hash_slots, 0xff, t->hash_cap * sizeof *t->hash_slots);
    size_t mask = t->hash_cap - 1;
    for (int id = 0; id < t->vocab_size; id++) {
        size_t len = strlen(t->pieces[id]);
        if (tokenizer_lookup(t, t->pieces[id], len) >= 0) continue;
        size_t i = hash_bytes(t->pieces[id], len) & mask;
        while (t->hash_slots[i] >= 0) i = (i + 1) & mask;
        t->hash_slots[i] = id;
    }
    for (int b = 0; b < 256; b++) {
        char name[8];
        snprintf(name, sizeof name, "<0x%02X>", b);
        int id = tokenizer_lookup(t, name, 6);
        t->byte_ids[b] = id >= 0 ? id : b + 3; /* llama2.c's layout when the piece is absent */
    }
    return 0;
}

/* Replaces U+2581 (LOWER ONE EIGHTH BLOCK, SentencePiece's space) by ' '. */
static void spaces_from_sentencepiece(char *s)
{
    char *w = s;
    for (const char *r = s; *r;) {
        if ((uint8_t)r[0] == 0xe2 && (uint8_t)r[1] == 0x96 && (uint8_t)r[2] == 0x81) {
            *w++ = ' ';
            r += 3;
        } else {
            *w++ = *r++;
        }
    }
    *w = 0;
}

int tokenizer_from_gguf(Tokenizer *t, const GgufFile *f, KvError *err)
{
    memset(t, 0, sizeof *t);
    char model[64] = "";
    if (gguf_get_string(f, "tokenizer.ggml.model", model, sizeof model) != 0)
        return kv_fail(err, "%s: no tokenizer in the GGUF metadata", f->path);
    if (strcmp(model, "llama") != 0)
        return kv_fail(err, "%s: tokenizer model '%s' is not supported (only SentencePiece 'llama')", f->path, model);
    uint64_t n_pieces = 0, n_scores = 0;
    if (gguf_get_string_array(f, "tokenizer.ggml.tokens", &t->pieces, &n_pieces, err)) return -1;
    t->vocab_size = (int)n_pieces;
    if (gguf_get_float_array(f, "tokenizer.ggml.scores", &t->scores, &n_scores, err) || n_scores != n_pieces) {
        if (!t->scores || n_scores != n_pieces) kv_fail(err, "%s: tokenizer scores missing or of the wrong length", f->path);
        tokenizer_free(t);
        return -1;
    }
    for (int i = 0; i < t->vocab_size; i++) spaces_from_sentencepiece(t->pieces[i]);
    int64_t v;
    t->bos_id = gguf_get_int(f, "tokenizer.ggml.bos_token_id", &v) == 0 ? (int)v : 1;
    t->eos_id = gguf_get_int(f, "tokenizer.ggml.eos_token_id", &v) == 0 ? (int)v : 2;
    if (build_index(t, err, f->path)) { tokenizer_free(t); return -1; }
    return 0;
}

static int read_exact(FILE *fp, void *dst, size_t n) { return fread(dst, 1, n, fp) == n ? 0 : -1; }

int tokenizer_from_llama2c(Tokenizer *t, const char *path, int vocab_size, KvError *err)
{
    memset(t, 0, sizeof *t);
    FILE *fp = fopen(path, "rb");
    if (!fp) return kv_fail(err, "%s: cannot open tokenizer", path);
    t->vocab_size = vocab_size;
    t->pieces = calloc((size_t)vocab_size, sizeof *t->pieces);
    t->scores = calloc((size_t)vocab_size, sizeof *t->scores);
    int max_len;
    int bad = !t->pieces || !t->scores || read_exact(fp, &max_len, 4);
    for (int i = 0; i < vocab_size && !bad; i++) {
        int len;
        bad = read_exact(fp, &t->scores[i], 4) || read_exact(fp, &len, 4) || len < 0 || len > 4096;
        if (!bad) {
            t->pieces[i] = malloc((size_t)len + 1);
            bad = !t->pieces[i] || read_exact(fp, t->pieces[i], (size_t)len);
            if (!bad) t->pieces[i][len] = 0;
        }
    }
    fclose(fp);
    if (bad) {
        tokenizer_free(t);
        return kv_fail(err, "%s: truncated or malformed tokenizer.bin (expected %d pieces)", path, vocab_size);
    }
    t->bos_id = 1;
    t->eos_id = 2;
    if (build_index(t, err, path)) { tokenizer_free(t); return -1; }
    return 0;
}

void tokenizer_free(Tokenizer *t)
{
    if (t->pieces)
        for (int i = 0; i < t->vocab_size; i++) free(t->pieces[i]);
    free(t->pieces);
    free(t->scores);
    free(t->hash_slots);
    memset(t, 0, sizeof *t);
}

/* Appends the ids for one UTF-8 character (or stray bytes). */
static void push_char(const Tokenizer *t, const char *c, size_t len, int *ids, int *n)
{
    int id = tokenizer_lookup(t, c, len);
    if (id >= 0) {
        ids[(*n)++] = id;
        return;
    }
    for (size_t i = 0; i < len; i++) ids[(*n)++] = t->byte_ids[(uint8_t)c[i]];
}

/* One merge step: the adjacent pair with the best-scoring merged piece. */
static int merge_best_pair(const Tokenizer *t, int *ids, int *n, char *buf)
{
    float best_score = -1e30f;
    int best_id = -1, best_at = -1;
    for (int i = 0; i + 1 < *n; i++) {
        size_t la = strlen(t->pieces[ids[i]]), lb = strlen(t->pieces[ids[i + 1]]);
        memcpy(buf, t->pieces[ids[i]], la);
        memcpy(buf + la, t->pieces[ids[i + 1]], lb);
        int id = tokenizer_lookup(t, buf, la + lb);
        if (id >= 0 && t->scores[id] > best_score) {
            best_score = t->scores[id];
            best_id = id;
            best_at = i;
        }
    }
    if (best_at < 0) return 0;
    ids[best_at] = best_id;
    memmove(ids + best_at + 1, ids + best_at + 2, (size_t)(*n - best_at - 2) * sizeof *ids);
    (*n)--;
    return 1;
}

int tokenizer_encode(const Tokenizer *t, const char *text, int **out, int *n_out, KvError *err)
{
    size_t text_len = strlen(text), max_piece = 0;
    for (int i = 0; i < t->vocab_size; i++) {
        size_t l = strlen(t->pieces[i]);
        if (l > max_piece) max_piece = l;
    }
    int *ids = malloc((text_len + 3) * sizeof *ids);
    char *buf = malloc(2 * max_piece + 2);
    if (!ids || !buf) {
        free(ids);
        free(buf);
        return kv_fail(err, "out of memory encoding a %zu-byte text", text_len);
    }
    int n = 0;
    ids[n++] = t->bos_id;
    if (text_len > 0) push_char(t, " ", 1, ids, &n);
    for (size_t i = 0; i < text_len;) {
        size_t len = 1; /* a lead byte plus up to three continuation bytes */
        while (i + len < text_len && len < 4 && ((uint8_t)text[i + len] & 0xc0) == 0x80) len++;
        push_char(t, text + i, len, ids, &n);
        i += len;
    }
    int body = n - 1; /* BOS never merges */
    while (merge_best_pair(t, ids + 1, &body, buf)) {}
    n = body + 1;
    free(buf);
    *out = ids;
    *n_out = n;
    return 0;
}

size_t tokenizer_decode(const Tokenizer *t, int id, char *out, size_t cap)
{
    if (cap == 0) return 0;
    if (id < 0 || id >= t->vocab_size) { out[0] = 0; return 0; }
    const char *p = t->pieces[id];
    unsigned byte;
    if (strlen(p) == 6 && sscanf(p, "<0x%02X>", &byte) == 1) {
        out[0] = (char)byte;
        if (cap > 1) out[1] = 0;
        return 1;
    }
    size_t n = strlen(p);
    if (n > cap - 1) n = cap - 1;
    memcpy(out, p, n);
    out[n] = 0;
    return n;
}
