/* Byte-level BPE, as llama.cpp's llm_tokenizer_bpe: the pre-tokenizer splits
 * the text (invalid UTF-8 read as U+FFFD) into words; each word's UTF-8 bytes
 * become GPT-2 byte characters, one symbol each, and the adjacent pair with
 * the lowest merge rank (leftmost on ties) merges until none does.  Llama 3
 * looks a whole word up first (ignore_merges). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer_impl.h"
#include "unicode.h"

struct MergeRule {
    uint64_t pair; /* left << 32 | right; EMPTY_PAIR when the slot is free */
    int32_t rank, merged;
};

#define EMPTY_PAIR UINT64_MAX

static size_t mix(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    return (size_t)x;
}

static const MergeRule *find_rule(const Tokenizer *t, int left, int right)
{
    uint64_t pair = (uint64_t)(uint32_t)left << 32 | (uint32_t)right;
    size_t mask = t->merges_cap - 1;
    for (size_t i = mix(pair) & mask;; i = (i + 1) & mask) {
        if (t->merges[i].pair == pair) return &t->merges[i];
        if (t->merges[i].pair == EMPTY_PAIR) return NULL;
    }
}

/* The first merge of a pair wins, as in llama.cpp. */
static void add_rule(Tokenizer *t, int left, int right, int rank, int merged)
{
    uint64_t pair = (uint64_t)(uint32_t)left << 32 | (uint32_t)right;
    size_t mask = t->merges_cap - 1, i = mix(pair) & mask;
    while (t->merges[i].pair != EMPTY_PAIR) {
        if (t->merges[i].pair == pair) return;
        i = (i + 1) & mask;
    }
    t->merges[i] = (MergeRule){pair, rank, merged};
}

static int show_len(size_t len) { return len > 40 ? 40 : (int)len; }

/* One merge "LEFT RIGHT": both sides and their concatenation must be tokens. */
static int load_rule(Tokenizer *t, const GgufString *m, uint64_t rank, char *scratch, KvError *err)
{
    const char *space = m->len > 1 ? memchr(m->s + 1, ' ', m->len - 1) : NULL;
    if (!space)
        return kv_fail(err, "%s: tokenizer merge %llu ('%.*s') is truncated: no space between two tokens", t->path,
                       (unsigned long long)rank, show_len(m->len), m->s);
    size_t ll = (size_t)(space - m->s), rl = m->len - ll - 1;
    int left = tokenizer_lookup(t, m->s, ll), right = tokenizer_lookup(t, space + 1, rl);
    memcpy(scratch, m->s, ll);
    memcpy(scratch + ll, space + 1, rl);
    int merged = left >= 0 && right >= 0 ? tokenizer_lookup(t, scratch, ll + rl) : -1;
    if (merged < 0)
        return kv_fail(err, "%s: tokenizer merge %llu ('%.*s') names a token that is not in the vocabulary", t->path,
                       (unsigned long long)rank, show_len(m->len), m->s);
    add_rule(t, left, right, (int)rank, merged);
    return 0;
}

static int load_merges(Tokenizer *t, const GgufFile *f, KvError *err)
{
    GgufString *m = NULL;
    uint64_t n = 0;
    if (gguf_get_string_views(f, "tokenizer.ggml.merges", &m, &n, err)) return -1;
    if (n > (1u << 26)) { free(m); return kv_fail(err, "%s: %llu tokenizer merges is absurd", t->path, (unsigned long long)n); }
    t->merges_cap = 16;
    while (t->merges_cap < 2 * n + 16) t->merges_cap *= 2;
    t->merges = malloc(t->merges_cap * sizeof *t->merges);
    size_t longest = 1;
    for (uint64_t i = 0; i < n; i++) longest = m[i].len > longest ? m[i].len : longest;
    char *scratch = malloc(longest);
    int rc = !t->merges || !scratch ? kv_fail(err, "%s: out of memory for the tokenizer merges", t->path) : 0;
    if (rc == 0) {
        memset(t->merges, 0xff, t->merges_cap * sizeof *t->merges);
        for (uint64_t i = 0; i < n && rc == 0; i++) rc = load_rule(t, &m[i], i, scratch, err);
    }
    free(scratch);
    free(m);
    return rc;
}

/* Pieces for traces: the token's bytes, as UTF-8 where they are valid UTF-8,
 * with each other byte (and NUL) written <0xNN>. */
static char *display_piece(const unsigned char *b, size_t n)
{
    char *p = malloc(6 * n + 1), *w = p;
    if (!p) return NULL;
    for (size_t i = 0; i < n;) {
        int l = b[i] ? utf8_valid_len(b + i, n - i) : 0;
        if (l > 0) {
            memcpy(w, b + i, (size_t)l);
            w += l;
            i += (size_t)l;
        } else {
            w += sprintf(w, "<0x%02X>", b[i++]);
        }
    }
    *w = 0;
    return p;
}

static int load_pieces(Tokenizer *t, KvError *err)
{
    size_t longest = 1;
    for (int i = 0; i < t->vocab_size; i++) longest = (size_t)t->text_lens[i] > longest ? (size_t)t->text_lens[i] : longest;
    unsigned char *bytes = malloc(4 * longest);
    t->pieces = calloc((size_t)(unsigned)t->vocab_size, sizeof *t->pieces);
    int rc = 0;
    for (int i = 0; i < t->vocab_size && bytes && t->pieces && rc == 0; i++) {
        size_t n = bpe_token_bytes(t, i, bytes);
        if (n > t->max_cover) t->max_cover = n;
        if (!(t->pieces[i] = display_piece(bytes, n))) rc = -1;
    }
    free(bytes);
    if (!bytes || !t->pieces || rc) return kv_fail(err, "%s: out of memory for the token pieces", t->path);
    return 0;
}

int bpe_load(Tokenizer *t, const GgufFile *f, KvError *err)
{
    char pre[64] = "default", known[512];
    size_t len;
    const char *given = gguf_get_string_view(f, "tokenizer.ggml.pre", &len);
    if (given) snprintf(pre, sizeof pre, "%.*s", (int)(len < sizeof pre - 1 ? len : sizeof pre - 1), given);
    snprintf(t->pre, sizeof t->pre, "%s", pre);
    if (!(t->pretok = pretokenizer_new(pre))) {
        pretokenizer_names(known, sizeof known);
        return kv_fail(err, "%s: pre-tokenizer '%s' (tokenizer.ggml.pre) is not supported; kvtrace knows %s "
                       "(record --tokens still works)", t->path, pre, known);
    }
    t->ignore_merges = pretokenizer_ignores_merges(t->pretok);
    t->add_bos = pretokenizer_adds_bos(t->pretok);
    if (load_merges(t, f, err)) return -1;
    for (int b = 0; b < 256; b++) {
        unsigned char c[4];
        t->byte_ids[b] = tokenizer_lookup(t, (const char *)c, (size_t)utf8_encode(gpt2_byte_char((uint8_t)b), c));
    }
    return load_pieces(t, err);
}

void bpe_free(Tokenizer *t)
{
    free(t->merges);
    pretokenizer_free(t->pretok);
}

size_t bpe_token_bytes(const Tokenizer *t, int id, unsigned char *out)
{
    const char *s = t->texts[id];
    size_t n = (size_t)t->text_lens[id], w = 0;
    int type = t->types[id];
    unsigned hex;
    if (type == TOKEN_CONTROL || type == TOKEN_USER_DEFINED || type == TOKEN_UNKNOWN) {
        memcpy(out, s, n); /* special tokens are stored as plain text */
        return n;
    }
    if (type == TOKEN_BYTE && n == 6 && sscanf(s, "<0x%02X>", &hex) == 1) {
        out[0] = (unsigned char)hex;
        return 1;
    }
    for (size_t i = 0; i < n;) {
        size_t at = i;
        int b = gpt2_char_byte(utf8_decode((const unsigned char *)s, n, &i));
        if (b >= 0) out[w++] = (unsigned char)b;
        else for (; at < i; at++) out[w++] = (unsigned char)s[at]; /* not a byte character: kept as it is */
    }
    return w;
}

/* ---- encoding ---- */

static int bpe_pair(const void *ctx, const MergeSymbol *left, const MergeSymbol *right, uint32_t *rank, int *merged)
{
    const MergeRule *r = find_rule(ctx, left->id, right->id);
    if (!r) return 0;
    *rank = (uint32_t)r->rank;
    *merged = r->merged;
    return 1;
}

static int grow_to(void **p, size_t *cap, size_t need, size_t size)
{
    if (need <= *cap) return 0;
    void *q = realloc(*p, need * size);
    if (!q) return -1;
    *p = q;
    *cap = need;
    return 0;
}

/* The whole word as one token, when ignore_merges allows it (-1: not one). */
static int whole_word(const Tokenizer *t, const unsigned char *b, size_t n, Encoding *e)
{
    if (grow_to((void **)&e->buf, &e->buf_cap, 2 * n, 1)) return -1;
    size_t m = 0;
    for (size_t i = 0; i < n; i++) m += (size_t)utf8_encode(gpt2_byte_char(b[i]), (unsigned char *)e->buf + m);
    return tokenizer_lookup(t, e->buf, m);
}

static int encode_word(const Tokenizer *t, const unsigned char *b, size_t n, Encoding *e, KvError *err)
{
    int id = t->ignore_merges ? whole_word(t, b, n, e) : -1;
    if (id >= 0) return encoding_push(e, id) ? kv_fail(err, "out of memory encoding text") : 0;
    if (encoding_reserve_symbols(e, n)) return kv_fail(err, "out of memory encoding text");
    for (size_t i = 0; i < n; i++) {
        if (t->byte_ids[b[i]] < 0)
            return kv_fail(err, "%s: the text has byte 0x%02X, which the vocabulary cannot spell (no byte token "
                           "for it)", t->path, b[i]);
        e->syms[i] = (MergeSymbol){(int)i, 1, t->byte_ids[b[i]], 0, 0};
    }
    link_symbols(e->syms, (int)n);
    if (merge_symbols(e->syms, (int)n, bpe_pair, t, &e->heap)) return kv_fail(err, "out of memory encoding text");
    for (int i = 0; i >= 0; i = e->syms[i].next)
        if (encoding_push(e, e->syms[i].id)) return kv_fail(err, "out of memory encoding text");
    return 0;
}

int bpe_encode(const Tokenizer *t, const char *text, size_t len, Encoding *e, KvError *err)
{
    int rc = encoding_check_length(e, len / t->max_cover, err);
    if (rc) return rc;
    if (grow_to((void **)&e->cps, &e->cps_cap, len, sizeof *e->cps))
        return kv_fail(err, "out of memory encoding a %zu-byte text", len);
    size_t n = 0;
    for (size_t i = 0; i < len;) e->cps[n++] = utf8_decode((const unsigned char *)text, len, &i);
    if (pretokenize(t->pretok, e->cps, n, &e->words)) return kv_fail(err, "out of memory encoding text");
    size_t at = 0;
    for (size_t w = 0; w < e->words.n; w++) {
        size_t nb = 0, end = at + e->words.lens[w];
        if (grow_to((void **)&e->bytes, &e->bytes_cap, 4 * (end - at), 1))
            return kv_fail(err, "out of memory encoding text");
        for (; at < end; at++) nb += (size_t)utf8_encode(e->cps[at], e->bytes + nb);
        if (encode_word(t, e->bytes, nb, e, err)) return -1;
        if ((rc = encoding_check_length(e, 0, err))) return rc;
    }
    return 0;
}
