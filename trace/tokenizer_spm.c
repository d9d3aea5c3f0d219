/* SentencePiece encoding, as llama.cpp's llm_tokenizer_spm: spaces as U+2581
 * and a dummy-prefix one, one symbol per UTF-8 character, then repeatedly the
 * adjacent pair whose concatenation is the token with the highest score
 * (leftmost on ties) merges; a symbol that is no token (an unknown character)
 * becomes its <0xNN> byte tokens.  For valid UTF-8 and a vocabulary whose
 * pieces are made of characters that are pieces themselves (as SentencePiece
 * builds them) this is also llama2.c's encoding. */
#include <stdlib.h>
#include <string.h>

#include "tokenizer_impl.h"
#include "unicode.h"

typedef struct {
    const Tokenizer *t;
    const char *text;
} SpmText;

/* Orders floats so that the highest score gets the lowest rank. */
static uint32_t rank_of_score(float score)
{
    if (score == 0.0f) score = 0.0f; /* -0 ranks as +0 */
    uint32_t u;
    memcpy(&u, &score, sizeof u);
    u = (u & 0x80000000u) ? ~u : u | 0x80000000u; /* ascending with the float */
    return ~u;
}

static int spm_pair(const void *ctx, const MergeSymbol *left, const MergeSymbol *right, uint32_t *rank, int *merged)
{
    const SpmText *s = ctx;
    int id = tokenizer_lookup(s->t, s->text + left->start, (size_t)(left->len + right->len));
    if (id < 0) return 0;
    *rank = rank_of_score(s->t->scores[id]);
    *merged = id;
    return 1;
}

/* The text as the pieces spell it: the dummy prefix, spaces as U+2581. */
static int spm_text(const char *text, size_t len, int space_prefix, Encoding *e, size_t *out_len)
{
    size_t need = 3 * (len + 1);
    if (need > e->buf_cap) {
        char *b = realloc(e->buf, need);
        if (!b) return -1;
        e->buf = b;
        e->buf_cap = need;
    }
    size_t m = 0;
    for (size_t i = 0; i < len + (size_t)!!space_prefix; i++) {
        char c = space_prefix ? (i ? text[i - 1] : ' ') : text[i];
        if (c == ' ') {
            memcpy(e->buf + m, "\xe2\x96\x81", 3);
            m += 3;
        } else {
            e->buf[m++] = c;
        }
    }
    *out_len = m;
    return 0;
}

/* A symbol that is no token goes out as its bytes' <0xNN> tokens. */
static int push_bytes(const Tokenizer *t, const char *s, int len, Encoding *e, KvError *err)
{
    for (int k = 0; k < len; k++) {
        unsigned char b = (unsigned char)s[k];
        if (t->byte_ids[b] >= 0) {
            if (encoding_push(e, t->byte_ids[b])) return kv_fail(err, "out of memory encoding text");
            continue;
        }
        size_t at = 0;
        uint32_t cp = utf8_decode((const unsigned char *)s, (size_t)len, &at);
        if (cp == 0x2581) /* a space of the text (or the dummy prefix) */
            return kv_fail(err, "%s: the vocabulary cannot spell a space: no U+2581 piece and no <0x%02X> byte piece",
                           t->path, b);
        if (cp < 0x20 || cp == UNICODE_REPLACEMENT)
            return kv_fail(err, "%s: the vocabulary cannot spell byte 0x%02X of the text (no <0x%02X> piece)", t->path,
                           b, b);
        return kv_fail(err, "%s: the vocabulary cannot spell '%.*s' (U+%04X): no piece for it and no <0x%02X> byte "
                       "piece", t->path, len, s, (unsigned)cp, b);
    }
    return 0;
}

int spm_encode(const Tokenizer *t, const char *text, size_t len, int space_prefix, Encoding *e, KvError *err)
{
    size_t m;
    if (len == 0) return 0;
    if (spm_text(text, len, space_prefix, e, &m) || encoding_reserve_symbols(e, m))
        return kv_fail(err, "out of memory encoding a %zu-byte text", len);
    int rc = encoding_check_length(e, m / t->max_cover, err);
    if (rc) return rc;
    int n = 0;
    for (size_t i = 0; i < m; n++) {
        int l = utf8_len_from_lead((unsigned char)e->buf[i]);
        if ((size_t)l > m - i) l = (int)(m - i);
        e->syms[n] = (MergeSymbol){(int)i, l, tokenizer_lookup(t, e->buf + i, (size_t)l), 0, 0};
        i += (size_t)l;
    }
    link_symbols(e->syms, n);
    SpmText ctx = {t, e->buf};
    if (merge_symbols(e->syms, n, spm_pair, &ctx, &e->heap)) return kv_fail(err, "out of memory encoding text");
    for (int i = 0; i >= 0; i = e->syms[i].next) {
        const MergeSymbol *s = &e->syms[i];
        if (s->id >= 0) {
            if (encoding_push(e, s->id)) return kv_fail(err, "out of memory encoding text");
        } else if (push_bytes(t, e->buf + s->start, s->len, e, err)) {
            return -1;
        }
    }
    return encoding_check_length(e, 0, err);
}
