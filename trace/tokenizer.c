/* The tokenizer's front: loading a vocabulary (GGUF metadata or llama2.c's
 * tokenizer.bin), the text -> id index, cutting special tokens out of the
 * text, and the encoding loop that hands the rest to SentencePiece or BPE. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer_impl.h"
#include "unicode.h"

#define MAX_VOCAB (1 << 24)

/* ---- the text -> id index ---- */

static size_t hash_bytes(const char *s, size_t n)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (size_t i = 0; i < n; i++) h = (h ^ (uint8_t)s[i]) * 1099511628211ull;
    return (size_t)h;
}

int tokenizer_lookup(const Tokenizer *t, const char *text, size_t len)
{
    size_t mask = t->index_cap - 1;
    for (size_t i = hash_bytes(text, len) & mask;; i = (i + 1) & mask) {
        int id = t->index[i];
        if (id < 0) return -1;
        if ((size_t)t->text_lens[id] == len && memcmp(t->texts[id], text, len) == 0) return id;
    }
}

/* The first of duplicate texts wins. */
static int build_index(Tokenizer *t, KvError *err)
{
    t->index_cap = 16;
    while (t->index_cap < 2 * (size_t)t->vocab_size) t->index_cap *= 2;
    t->index = malloc(t->index_cap * sizeof *t->index);
    if (!t->index) return kv_fail(err, "%s: out of memory for the tokenizer", t->path);
    memset(t->index, 0xff, t->index_cap * sizeof *t->index);
    size_t mask = t->index_cap - 1;
    for (int id = 0; id < t->vocab_size; id++) {
        size_t len = (size_t)t->text_lens[id];
        if (tokenizer_lookup(t, t->texts[id], len) >= 0) continue;
        size_t i = hash_bytes(t->texts[id], len) & mask;
        while (t->index[i] >= 0) i = (i + 1) & mask;
        t->index[i] = id;
    }
    return 0;
}

/* ---- loading ---- */

static int alloc_tokens(Tokenizer *t, int n, KvError *err)
{
    t->vocab_size = n;
    t->texts = calloc((size_t)n, sizeof *t->texts);
    t->text_lens = calloc((size_t)n, sizeof *t->text_lens);
    t->types = malloc((size_t)n);
    if (!t->texts || !t->text_lens || !t->types) return kv_fail(err, "%s: out of memory for %d tokens", t->path, n);
    memset(t->types, TOKEN_NORMAL, (size_t)n);
    return 0;
}

/* A copy of s[0..len) with every `from` replaced by `to` (SentencePiece's
 * U+2581 and ' '). */
static char *replace_all(const char *s, int len, const char *from, const char *to, int *out_len)
{
    size_t fl = strlen(from), tl = strlen(to), count = 0;
    for (int i = 0; i + (int)fl <= len; i++)
        if (!memcmp(s + i, from, fl)) { count++; i += (int)fl - 1; }
    char *r = malloc((size_t)len + count * tl + 1);
    if (!r) return NULL;
    int w = 0;
    for (int i = 0; i < len;) {
        if (i + (int)fl <= len && !memcmp(s + i, from, fl)) { memcpy(r + w, to, tl); w += (int)tl; i += (int)fl; }
        else r[w++] = s[i++];
    }
    r[w] = 0;
    *out_len = w;
    return r;
}

#define SP_SPACE "\xe2\x96\x81" /* U+2581, SentencePiece's space */

static int load_texts(Tokenizer *t, const GgufFile *f, KvError *err)
{
    GgufString *v = NULL;
    uint64_t n = 0;
    if (gguf_get_string_views(f, "tokenizer.ggml.tokens", &v, &n, err)) return -1;
    int rc = n == 0 || n > MAX_VOCAB ? kv_fail(err, "%s: the vocabulary has %llu tokens", t->path, (unsigned long long)n)
                                     : alloc_tokens(t, (int)n, err);
    for (int i = 0; rc == 0 && i < t->vocab_size; i++) {
        if (v[i].len > INT_MAX / 2 || !(t->texts[i] = malloc(v[i].len + 1))) {
            rc = kv_fail(err, "%s: out of memory for token %d", t->path, i);
            break;
        }
        memcpy(t->texts[i], v[i].s, v[i].len);
        t->texts[i][v[i].len] = 0;
        t->text_lens[i] = (int)v[i].len;
    }
    free(v);
    return rc;
}

static int load_types(Tokenizer *t, const GgufFile *f, KvError *err)
{
    if (!gguf_find_kv(f, "tokenizer.ggml.token_type")) return 0; /* all normal */
    int32_t *v = NULL;
    uint64_t n = 0;
    if (gguf_get_i32_array(f, "tokenizer.ggml.token_type", &v, &n, err)) return -1;
    int rc = 0;
    if (n != (uint64_t)t->vocab_size)
        rc = kv_fail(err, "%s: tokenizer.ggml.token_type has %llu entries for %d tokens", t->path,
                     (unsigned long long)n, t->vocab_size);
    for (int i = 0; rc == 0 && i < t->vocab_size; i++) t->types[i] = v[i] >= 1 && v[i] <= 6 ? (uint8_t)v[i] : 0;
    free(v);
    return rc;
}

static int load_scores(Tokenizer *t, const GgufFile *f, KvError *err)
{
    uint64_t n = 0;
    if (gguf_get_float_array(f, "tokenizer.ggml.scores", &t->scores, &n, err) || n != (uint64_t)t->vocab_size)
        return kv_fail(err, "%s: tokenizer scores missing or of the wrong length", t->path);
    return 0;
}

/* A special token id: the key's value, which must name a token, or def when
 * the key is absent (-1 when def is no token either). */
static int special_id(Tokenizer *t, const GgufFile *f, const char *key, int def, int *out, KvError *err)
{
    int64_t v;
    if (gguf_get_int(f, key, &v) != 0) {
        *out = def >= 0 && def < t->vocab_size ? def : -1;
        return 0;
    }
    if (v < 0 || v >= t->vocab_size)
        return kv_fail(err, "%s: %s = %lld is not a token id (the vocabulary has %d tokens)", t->path, key,
                       (long long)v, t->vocab_size);
    *out = (int)v;
    return 0;
}

static int flag(const GgufFile *f, const char *key, int def)
{
    int64_t v;
    return gguf_get_int(f, key, &v) == 0 ? v != 0 : def;
}

static int load_special_ids(Tokenizer *t, const GgufFile *f, KvError *err)
{
    int spm = t->kind == TOKENIZER_SPM; /* llama.cpp's defaults: 1/2 for SentencePiece, 11 for BPE */
    if (special_id(t, f, "tokenizer.ggml.bos_token_id", spm ? 1 : 11, &t->bos_id, err) ||
        special_id(t, f, "tokenizer.ggml.eos_token_id", spm ? 2 : 11, &t->eos_id, err))
        return -1;
    t->add_bos = flag(f, "tokenizer.ggml.add_bos_token", spm ? 1 : t->add_bos);
    t->add_eos = flag(f, "tokenizer.ggml.add_eos_token", 0);
    t->add_space_prefix = flag(f, "tokenizer.ggml.add_space_prefix", spm);
    if (t->add_bos && t->bos_id < 0)
        return kv_fail(err, "%s: tokenizer.ggml.add_bos_token is set but there is no BOS token", t->path);
    if (t->add_eos && t->eos_id < 0)
        return kv_fail(err, "%s: tokenizer.ggml.add_eos_token is set but there is no EOS token", t->path);
    return 0;
}

/* Which chat template --chat applies, as llama.cpp recognises them. */
static ChatFormat detect_chat(const Tokenizer *t, const GgufFile *f)
{
    size_t n;
    const char *tpl = f ? gguf_get_string_view(f, "tokenizer.chat_template", &n) : NULL;
#define HAS(s) (memmem(tpl, n, s, strlen(s)) != NULL)
    if (!tpl) {
        if (tokenizer_lookup(t, "<|start_header_id|>", 19) >= 0) return CHAT_LLAMA3;
        if (tokenizer_lookup(t, "<|im_start|>", 12) >= 0) return CHAT_CHATML;
        return CHAT_NONE;
    }
    if (HAS("<|im_start|>")) return HAS("<|im_sep|>") || HAS("<end_of_utterance>") ? CHAT_OTHER : CHAT_CHATML;
    if (HAS("[INST]")) {
        if (HAS("[SYSTEM_PROMPT]") || HAS("' [INST] ' + system_message") || HAS("[AVAILABLE_TOOLS]")) return CHAT_OTHER;
        if (HAS("content.strip()")) return CHAT_LLAMA2_STRIP;
        return HAS("<<SYS>>") || HAS("bos_token + '[INST]") ? CHAT_LLAMA2_SYS : CHAT_LLAMA2;
    }
    if (HAS("<|start_header_id|>") && HAS("<|end_header_id|>")) return CHAT_LLAMA3;
    return CHAT_OTHER;
#undef HAS
}

static int cmp_special(const void *a, const void *b, void *ctx)
{
    const Tokenizer *t = ctx;
    int x = *(const int *)a, y = *(const int *)b;
    if (t->text_lens[x] != t->text_lens[y]) return t->text_lens[x] > t->text_lens[y] ? -1 : 1;
    return x < y ? -1 : x > y;
}

static int is_special_type(int type) { return type == TOKEN_CONTROL || type == TOKEN_USER_DEFINED || type == TOKEN_UNKNOWN; }

/* Byte fallback, special-token list and the longest token's reach. */
static int finish(Tokenizer *t, KvError *err)
{
    if (t->kind == TOKENIZER_SPM) {
        for (int b = 0; b < 256; b++) {
            char name[8], raw = (char)b;
            snprintf(name, sizeof name, "<0x%02X>", b);
            t->byte_ids[b] = tokenizer_lookup(t, name, 6);
            if (t->byte_ids[b] < 0) t->byte_ids[b] = tokenizer_lookup(t, &raw, 1); /* llama.cpp's fallback */
        }
        if (!t->pieces && !(t->pieces = calloc((size_t)t->vocab_size, sizeof *t->pieces)))
            return kv_fail(err, "%s: out of memory for the tokenizer", t->path);
        for (int i = 0, len; i < t->vocab_size; i++)
            if (!t->pieces[i] && !(t->pieces[i] = replace_all(t->texts[i], t->text_lens[i], SP_SPACE, " ", &len)))
                return kv_fail(err, "%s: out of memory for the tokenizer", t->path);
        t->max_cover = 1;
        for (int i = 0; i < t->vocab_size; i++)
            if (t->types[i] != TOKEN_BYTE && (size_t)t->text_lens[i] > t->max_cover) t->max_cover = (size_t)t->text_lens[i];
    }
    t->specials = malloc((size_t)t->vocab_size * sizeof *t->specials);
    if (!t->specials) return kv_fail(err, "%s: out of memory for the tokenizer", t->path);
    for (int i = 0; i < t->vocab_size; i++)
        if (is_special_type(t->types[i]) && t->text_lens[i] > 0) t->specials[t->n_specials++] = i;
    qsort_r(t->specials, (size_t)t->n_specials, sizeof *t->specials, cmp_special, t);
    return 0;
}

int tokenizer_from_gguf(Tokenizer *t, const GgufFile *f, KvError *err)
{
    memset(t, 0, sizeof *t);
    memset(t->byte_ids, 0xff, sizeof t->byte_ids);
    snprintf(t->path, sizeof t->path, "%s", f->path);
    char model[64] = "";
    if (gguf_get_string(f, "tokenizer.ggml.model", model, sizeof model) != 0)
        return kv_fail(err, "%s: no tokenizer in the GGUF metadata", f->path);
    if (strcmp(model, "llama") == 0) t->kind = TOKENIZER_SPM;
    else if (strcmp(model, "gpt2") == 0) t->kind = TOKENIZER_BPE;
    else
        return kv_fail(err, "%s: tokenizer model '%s' is not supported (kvtrace reads SentencePiece 'llama' and "
                       "byte-level BPE 'gpt2')", f->path, model);
    int rc = load_texts(t, f, err) || load_types(t, f, err) ||
             (t->kind == TOKENIZER_SPM && load_scores(t, f, err)) || build_index(t, err) ||
             (t->kind == TOKENIZER_BPE && bpe_load(t, f, err)) || load_special_ids(t, f, err) || finish(t, err);
    if (rc) {
        tokenizer_free(t);
        return -1;
    }
    t->chat = detect_chat(t, f);
    return 0;
}

static int read_exact(FILE *fp, void *dst, size_t n) { return fread(dst, 1, n, fp) == n ? 0 : -1; }

int tokenizer_from_llama2c(Tokenizer *t, const char *path, int vocab_size, KvError *err)
{
    memset(t, 0, sizeof *t);
    memset(t->byte_ids, 0xff, sizeof t->byte_ids);
    snprintf(t->path, sizeof t->path, "%s", path);
    if (vocab_size <= 0 || vocab_size > MAX_VOCAB) return kv_fail(err, "%s: vocabulary of %d tokens", path, vocab_size);
    FILE *fp = fopen(path, "rb");
    if (!fp) return kv_fail(err, "%s: cannot open tokenizer", path);
    t->kind = TOKENIZER_SPM;
    int max_len, bad = alloc_tokens(t, vocab_size, err);
    t->scores = calloc((size_t)vocab_size, sizeof *t->scores);
    bad = bad || !t->scores || read_exact(fp, &max_len, 4);
    for (int i = 0; i < vocab_size && !bad; i++) {
        int len;
        bad = read_exact(fp, &t->scores[i], 4) || read_exact(fp, &len, 4) || len < 0 || len > 4096;
        if (!bad) {
            t->texts[i] = malloc((size_t)len + 1);
            bad = !t->texts[i] || read_exact(fp, t->texts[i], (size_t)len);
            if (!bad) t->texts[i][len] = 0;
            t->text_lens[i] = len;
        }
    }
    fclose(fp);
    if (bad) {
        tokenizer_free(t);
        return kv_fail(err, "%s: truncated or malformed tokenizer.bin (expected %d pieces)", path, vocab_size);
    }
    t->pieces = t->texts; /* llama2.c's pieces have real spaces; matching uses SentencePiece's */
    if (!(t->texts = calloc((size_t)vocab_size, sizeof *t->texts))) bad = 1;
    for (int i = 0; i < vocab_size && !bad; i++)
        bad = !(t->texts[i] = replace_all(t->pieces[i], t->text_lens[i], " ", SP_SPACE, &t->text_lens[i]));
    if (bad) {
        tokenizer_free(t);
        return kv_fail(err, "%s: out of memory for the tokenizer", path);
    }
    t->bos_id = vocab_size > 1 ? 1 : -1;
    t->eos_id = vocab_size > 2 ? 2 : -1;
    t->add_bos = t->bos_id >= 0;
    t->add_space_prefix = 1;
    if (build_index(t, err) || finish(t, err)) {
        tokenizer_free(t);
        return -1;
    }
    t->chat = detect_chat(t, NULL);
    return 0;
}

void tokenizer_free(Tokenizer *t)
{
    if (t->pieces)
        for (int i = 0; i < t->vocab_size; i++) free(t->pieces[i]);
    free(t->pieces);
    if (t->texts)
        for (int i = 0; i < t->vocab_size; i++) free(t->texts[i]);
    free(t->texts);
    free(t->text_lens);
    free(t->types);
    free(t->scores);
    free(t->index);
    free(t->specials);
    bpe_free(t);
    memset(t, 0, sizeof *t);
}

/* ---- cutting special tokens out of the text ---- */

/* A piece of the text: a special token (id >= 0) or text to encode. */
typedef struct {
    int id;
    size_t start, len;
} Fragment;

typedef struct {
    Fragment *items;
    size_t n, cap;
} Fragments;

static int add_fragment(Fragments *fr, int id, size_t start, size_t len)
{
    if (fr->n == fr->cap) {
        size_t cap = fr->cap ? 2 * fr->cap : 16;
        Fragment *p = realloc(fr->items, cap * sizeof *p);
        if (!p) return -1;
        fr->items = p;
        fr->cap = cap;
    }
    fr->items[fr->n++] = (Fragment){id, start, len};
    return 0;
}

/* Marks one special token's matches, leftmost first and never across text
 * already taken (claim_end[i] > 0: byte i is taken, up to claim_end[i]). */
static void claim_matches(const Tokenizer *t, int id, const char *text, size_t len, size_t *claim_end, int *owner)
{
    size_t tl = (size_t)t->text_lens[id];
    for (size_t at = 0; at + tl <= len;) {
        const char *hit = memmem(text + at, len - at, t->texts[id], tl);
        if (!hit) return;
        size_t p = (size_t)(hit - text), taken = p;
        while (taken < p + tl && !claim_end[taken]) taken++;
        if (taken < p + tl) { /* overlaps an earlier token's text: look past that */
            at = claim_end[taken];
            continue;
        }
        for (size_t k = p; k < p + tl; k++) claim_end[k] = p + tl;
        owner[p] = id;
        at = p + tl;
    }
}

/* As llama.cpp's tokenizer_st_partition: each special token in turn, longest
 * first, takes its leftmost non-overlapping occurrences in the text not yet
 * taken.  Control and unknown tokens only when parse_special. */
static int partition(const Tokenizer *t, const char *text, size_t len, int parse_special, Fragments *fr)
{
    fr->n = 0;
    unsigned char *pairs = calloc(65536 / 8 + 1, 1), seen[256] = {0};
    size_t *claim_end = NULL;
    int *owner = NULL, rc = -1;
    if (!pairs) return -1;
    for (size_t i = 0; i < len; i++) { /* which first bytes and byte pairs occur: most tokens can be skipped */
        unsigned a = (unsigned char)text[i], b = i + 1 < len ? (unsigned char)text[i + 1] : 256;
        seen[a] = 1;
        if (b < 256) pairs[(a << 8 | b) >> 3] |= (unsigned char)(1u << (b & 7));
    }
    for (int k = 0; k < t->n_specials; k++) {
        int id = t->specials[k];
        const unsigned char *s = (const unsigned char *)t->texts[id];
        if (!parse_special && t->types[id] != TOKEN_USER_DEFINED) continue;
        if ((size_t)t->text_lens[id] > len || !seen[s[0]]) continue;
        if (t->text_lens[id] > 1 && !(pairs[(s[0] << 8 | s[1]) >> 3] & (1u << (s[1] & 7)))) continue;
        if (!claim_end && (!(claim_end = calloc(len, sizeof *claim_end)) || !(owner = malloc(len * sizeof *owner))))
            goto out;
        claim_matches(t, id, text, len, claim_end, owner);
    }
    size_t start = 0;
    for (size_t i = 0; claim_end && i < len;) {
        if (!claim_end[i]) { i++; continue; }
        if ((i > start && add_fragment(fr, -1, start, i - start)) || add_fragment(fr, owner[i], i, claim_end[i] - i))
            goto out;
        i = start = claim_end[i];
    }
    if (start < len && add_fragment(fr, -1, start, len - start)) goto out;
    rc = 0;
out:
    free(pairs);
    free(claim_end);
    free(owner);
    return rc;
}

/* ---- encoding ---- */

int encoding_push(Encoding *e, int id)
{
    if (e->n == e->cap) {
        int cap = e->cap ? 2 * e->cap : 64;
        int *p = cap > 0 ? realloc(e->ids, (size_t)cap * sizeof *p) : NULL;
        if (!p) return -1;
        e->ids = p;
        e->cap = cap;
    }
    e->ids[e->n++] = id;
    return 0;
}

int encoding_reserve_symbols(Encoding *e, size_t n)
{
    if (n > INT_MAX / 2) return -1;
    if ((int)n <= e->syms_cap) return 0;
    MergeSymbol *p = realloc(e->syms, n * sizeof *p);
    if (!p) return -1;
    e->syms = p;
    e->syms_cap = (int)n;
    return 0;
}

int encoding_check_length(const Encoding *e, size_t more, KvError *err)
{
    if (e->max_tokens <= 0 || (size_t)e->n + more <= (size_t)e->max_tokens) return 0;
    kv_fail(err, "the text needs more than %d tokens", e->max_tokens);
    return TOKENIZE_TOO_LONG;
}

static void encoding_free(Encoding *e)
{
    free(e->syms);
    merge_heap_free(&e->heap);
    free(e->buf);
    free(e->cps);
    free(e->bytes);
    words_free(&e->words);
}

static int encode_fragments(const Tokenizer *t, const char *text, const Fragments *fr, Encoding *e, KvError *err)
{
    int after_special = 1; /* SentencePiece's dummy prefix goes at the start and after each special token */
    for (size_t i = 0; i < fr->n; i++) {
        const Fragment *f = &fr->items[i];
        int rc;
        if (f->id >= 0) {
            rc = encoding_push(e, f->id) ? kv_fail(err, "out of memory encoding text") : 0;
            after_special = 1;
        } else if (t->kind == TOKENIZER_SPM) {
            rc = spm_encode(t, text + f->start, f->len, t->add_space_prefix && after_special, e, err);
            after_special = 0;
        } else {
            rc = bpe_encode(t, text + f->start, f->len, e, err);
        }
        if (rc == 0) rc = encoding_check_length(e, 0, err);
        if (rc) return rc;
    }
    return 0;
}

int tokenizer_encode_opts(const Tokenizer *t, const char *text, size_t len, const TokenizeOptions *o, int **ids,
                          int *n, KvError *err)
{
    Encoding e = {.max_tokens = o->max_tokens};
    Fragments fr = {0};
    int rc = encoding_check_length(&e, len / t->max_cover, err); /* each token covers at most max_cover bytes */
    if (rc == 0 && len > INT_MAX / 4) rc = kv_fail(err, "the text is too long (%zu bytes)", len);
    if (rc == 0 && o->add_special && t->add_bos && encoding_push(&e, t->bos_id))
        rc = kv_fail(err, "out of memory encoding text");
    if (rc == 0 && partition(t, text, len, o->parse_special, &fr)) rc = kv_fail(err, "out of memory encoding text");
    if (rc == 0) rc = encode_fragments(t, text, &fr, &e, err);
    if (rc == 0 && o->add_special && t->add_eos && encoding_push(&e, t->eos_id))
        rc = kv_fail(err, "out of memory encoding text");
    if (rc == 0) rc = encoding_check_length(&e, 0, err);
    free(fr.items);
    encoding_free(&e);
    if (rc) {
        free(e.ids);
        return rc;
    }
    if (!e.ids && !(e.ids = malloc(sizeof *e.ids))) return kv_fail(err, "out of memory encoding text");
    *ids = e.ids;
    *n = e.n;
    return 0;
}

int tokenizer_encode(const Tokenizer *t, const char *text, int **ids, int *n, KvError *err)
{
    TokenizeOptions o = {.add_special = 1, .parse_special = 1};
    return tokenizer_encode_opts(t, text, strlen(text), &o, ids, n, err);
}

size_t tokenizer_decode(const Tokenizer *t, int id, char *out, size_t cap)
{
    if (cap == 0) return 0;
    out[0] = 0;
    if (id < 0 || id >= t->vocab_size) return 0;
    const char *p = t->texts[id];
    size_t n = (size_t)t->text_lens[id];
    unsigned byte;
    if (t->kind == TOKENIZER_BPE) {
        unsigned char *b = malloc(4 * n + 1);
        if (!b) return 0;
        n = bpe_token_bytes(t, id, b);
        if (n > cap - 1) n = cap - 1;
        memcpy(out, b, n);
        free(b);
    } else if (n == 6 && sscanf(p, "<0x%02X>", &byte) == 1) {
        out[0] = (char)byte;
        n = 1;
    } else {
        n = strlen(t->pieces[id]);
        if (n > cap - 1) n = cap - 1;
        memcpy(out, t->pieces[id], n);
    }
    out[n] = 0;
    return n;
}
