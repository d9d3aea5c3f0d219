/* pretokenize.h — llama.cpp's pre-tokenizers: how byte-level BPE vocabularies
 * split text into words before merging (GGUF key tokenizer.ggml.pre).
 *
 * Each pre-tokenizer is a list of regular expressions applied in turn: every
 * piece of text so far is split into its matches and the stretches between
 * them.  The GPT-2 and Llama 3 patterns run as hand-written splitters that
 * behave exactly as llama.cpp's (its own fast paths); the others go through
 * trace/regex.c.  Word boundaries are counted in code points. */
#ifndef KV_PRETOKENIZE_H
#define KV_PRETOKENIZE_H

#include <stddef.h>
#include <stdint.h>

typedef struct Pretokenizer Pretokenizer;

/* NULL when the name is not one kvtrace knows (or memory ran out). */
Pretokenizer *pretokenizer_new(const char *name);
void pretokenizer_free(Pretokenizer *p);
/* Writes the supported names, comma-separated, for error messages. */
void pretokenizer_names(char *out, size_t cap);

/* llama.cpp's flags for this pre-tokenizer: look a whole word up before
 * merging (Llama 3), and add BOS unless the vocabulary says otherwise. */
int pretokenizer_ignores_merges(const Pretokenizer *p);
int pretokenizer_adds_bos(const Pretokenizer *p);

/* The words of one text: lens[0..n) code points each, in order. */
typedef struct {
    size_t *lens, n;
    size_t *spare;    /* scratch, reused between calls */
    uint32_t *units;
    size_t cap;
} Words;

/* Splits cps[0..n) into words; -1 only when memory runs out. */
int pretokenize(const Pretokenizer *p, const uint32_t *cps, size_t n, Words *w);
void words_free(Words *w);

/* One pattern alone over cps[0..n) (for tests comparing the hand-written
 * splitters with the regex engine): custom = 1 uses the hand-written
 * splitter where there is one, for these two patterns.  -1 on a bad pattern
 * or no memory. */
extern const char PRETOKENIZE_GPT2_PATTERN[], PRETOKENIZE_LLAMA3_PATTERN[];
int pretokenize_pattern(const char *pattern, int custom, const uint32_t *cps, size_t n, Words *w);

#endif
