/* tokenizer_impl.h — what the tokenizer's own files share (tokenizer.c,
 * tokenizer_merge.c, tokenizer_spm.c, tokenizer_bpe.c, tokenizer_chat.c);
 * nothing outside the tokenizer includes it. */
#ifndef KV_TOKENIZER_IMPL_H
#define KV_TOKENIZER_IMPL_H

#include "pretokenize.h"
#include "tokenizer.h"

/* ---- merging adjacent symbols, best pair first (tokenizer_merge.c) ---- */

/* A symbol is bytes [start, start+len) of the text being encoded, with its
 * token id (-1: none) and its neighbours; len 0 once merged into its left. */
typedef struct {
    int start, len, id, prev, next;
} MergeSymbol;

/* Whether left+right merge, into which token, and how urgently (lower rank
 * first; equal ranks go leftmost first, as in llama.cpp). */
typedef int (*PairRule)(const void *ctx, const MergeSymbol *left, const MergeSymbol *right, uint32_t *rank,
                        int *merged);

typedef struct {
    uint64_t key; /* rank << 32 | index of the pair's left symbol */
    int sym;
} MergeEntry;

typedef struct {
    MergeEntry *heap; /* one entry per symbol whose pair with its right neighbour merges */
    int *where;       /* per symbol: its heap position, -1 none */
    int *merged;      /* per symbol: the token its pair merges into */
    int n, cap;
} MergeHeap;

/* Merges syms[0..n) (linked in order) until no pair merges. */
int merge_symbols(MergeSymbol *syms, int n, PairRule rule, const void *ctx, MergeHeap *h);
void merge_heap_free(MergeHeap *h);

/* ---- one encoding call's state, reused across the text's pieces ---- */

typedef struct {
    int *ids;
    int n, cap;
    int max_tokens;      /* > 0: TOKENIZE_TOO_LONG past this */
    MergeSymbol *syms;
    int syms_cap;
    MergeHeap heap;
    char *buf;           /* SentencePiece text / a BPE word's byte characters */
    size_t buf_cap;
    uint32_t *cps;       /* BPE: the piece as code points */
    size_t cps_cap;
    unsigned char *bytes;/* BPE: one word's bytes */
    size_t bytes_cap;
    Words words;
} Encoding;

int encoding_push(Encoding *e, int id);
int encoding_reserve_symbols(Encoding *e, size_t n);
/* TOKENIZE_TOO_LONG with the message when e already holds more than allowed,
 * or would with at least `more` further ids. */
int encoding_check_length(const Encoding *e, size_t more, KvError *err);
/* Symbols for syms[0..n) linked in order. */
void link_symbols(MergeSymbol *syms, int n);

/* ---- the two families ---- */

/* SentencePiece: one piece of text (no special tokens in it). */
int spm_encode(const Tokenizer *t, const char *text, size_t len, int space_prefix, Encoding *e, KvError *err);

/* BPE: merges, pre-tokenizer and pieces from the GGUF (after the index). */
int bpe_load(Tokenizer *t, const GgufFile *f, KvError *err);
int bpe_encode(const Tokenizer *t, const char *text, size_t len, Encoding *e, KvError *err);
/* The bytes a BPE token stands for; returns their count (out holds 4*len). */
size_t bpe_token_bytes(const Tokenizer *t, int id, unsigned char *out);
void bpe_free(Tokenizer *t);

#endif
