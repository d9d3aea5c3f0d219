/* tokenizer.h — SentencePiece-style (llama) tokenizer: pieces with scores and
 * byte fallback, loaded from GGUF metadata or from llama2.c's tokenizer.bin.
 *
 * Encoding follows llama2.c exactly: BOS, a dummy-prefix space (for
 * non-empty text), one piece per UTF-8 character (bytes as <0xNN> pieces when
 * the character is not a piece), then repeated merging of the adjacent pair
 * whose concatenation is a piece with the highest score (leftmost on ties). */
#ifndef KV_TOKENIZER_H
#define KV_TOKENIZER_H

#include <stddef.h>

#include "../util/error.h"
#include "gguf.h"

typedef struct {
    int vocab_size;
    char **pieces;       /* piece text with real spaces (GGUF's U+2581 converted) */
    float *scores;
    int bos_id, eos_id;
    int byte_ids[256];   /* id of the <0xNN> piece for each byte */
    int *hash_slots;     /* open-addressing index piece -> id, -1 = empty */
    size_t hash_cap;
} Tokenizer;

int tokenizer_from_gguf(Tokenizer *t, const GgufFile *f, KvError *err);
int tokenizer_from_llama2c(Tokenizer *t, const char *path, int vocab_size, KvError *err);
void tokenizer_free(Tokenizer *t);

/* Encodes text into a malloc'd id array (*ids, *n) starting with BOS. */
int tokenizer_encode(const Tokenizer *t, const char *text, int **ids, int *n, KvError *err);

/* The bytes a token stands for: a <0xNN> piece gives that byte.  Writes at
 * most cap-1 bytes and a NUL; returns the byte count. */
size_t tokenizer_decode(const Tokenizer *t, int id, char *out, size_t cap);

/* Id of an exact piece, or -1. */
int tokenizer_lookup(const Tokenizer *t, const char *piece, size_t len);

#endif
