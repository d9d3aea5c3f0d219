/* tokenizer.h — text to token ids and back, for the two tokenizer families
 * of GGUF models, loaded from GGUF metadata or from llama2.c's tokenizer.bin:
 *
 * - SentencePiece ("llama": Llama 1/2, Mistral, TinyLlama, llama2.c): pieces
 *   with scores and <0xNN> byte fallback (trace/tokenizer_spm.c);
 * - byte-level BPE ("gpt2": Llama 3, Qwen2, DeepSeek, SmolLM, GPT-2, Falcon,
 *   StarCoder, MPT, Refact): merges ranked by their order, a pre-tokenizer
 *   named by tokenizer.ggml.pre (trace/tokenizer_bpe.c, trace/pretokenize.c).
 *
 * Encoding gives llama.cpp's llama_tokenize ids: special tokens written in the
 * text are cut out first (longest first; control tokens only when asked), the
 * rest is encoded piece by piece.  Merging runs on a heap over a linked list
 * of symbols: O(n log n) in the text length. */
#ifndef KV_TOKENIZER_H
#define KV_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#include "../util/error.h"
#include "gguf.h"

typedef enum { TOKENIZER_SPM, TOKENIZER_BPE } TokenizerKind;

/* GGUF's tokenizer.ggml.token_type values. */
enum { TOKEN_NORMAL = 1, TOKEN_UNKNOWN = 2, TOKEN_CONTROL = 3, TOKEN_USER_DEFINED = 4, TOKEN_UNUSED = 5,
       TOKEN_BYTE = 6 };

/* The chat templates kvtrace applies (tokenizer_chat_prompt), as llama.cpp
 * recognises them from tokenizer.chat_template or, without one, from the
 * special tokens; CHAT_OTHER: a template kvtrace does not apply. */
typedef enum {
    CHAT_NONE, CHAT_OTHER, CHAT_LLAMA3, CHAT_CHATML,
    CHAT_LLAMA2,       /* [INST] without a system block */
    CHAT_LLAMA2_SYS,   /* [INST] <<SYS>> ... */
    CHAT_LLAMA2_STRIP  /* the same, message trimmed */
} ChatFormat;

typedef struct Pretokenizer Pretokenizer;
typedef struct MergeRule MergeRule;

typedef struct {
    TokenizerKind kind;
    char path[512];       /* the file it came from, for messages */
    int vocab_size;
    char **pieces;        /* per token, what a trace stores (FORMAT.md `pieces`), NUL-terminated */
    float *scores;        /* SentencePiece merge scores; NULL for BPE */
    int bos_id, eos_id;   /* -1 when there is none */
    int add_bos, add_eos; /* what encoding with add_special adds */
    ChatFormat chat;
    char pre[64];         /* BPE: the pre-tokenizer's name */

    /* The rest is the tokenizer's own. */
    char **texts;         /* token text as stored (SentencePiece: spaces as U+2581; BPE: byte characters) */
    int *text_lens;
    uint8_t *types;       /* TOKEN_* per token */
    int add_space_prefix; /* SentencePiece's dummy prefix */
    int byte_ids[256];    /* token of each byte value, -1 when the vocabulary has none */
    int *index;           /* open addressing text -> id, -1 empty */
    size_t index_cap;
    int *specials;        /* control, user-defined and unknown tokens, longest text first */
    int n_specials;
    size_t max_cover;     /* the most text bytes one token stands for */
    MergeRule *merges;    /* BPE: (left, right) -> rank, merged id */
    size_t merges_cap;
    Pretokenizer *pretok;
    int ignore_merges;
} Tokenizer;

int tokenizer_from_gguf(Tokenizer *t, const GgufFile *f, KvError *err);
int tokenizer_from_llama2c(Tokenizer *t, const char *path, int vocab_size, KvError *err);
void tokenizer_free(Tokenizer *t);

typedef struct {
    int add_special;   /* BOS/EOS as the vocabulary asks (add_bos_token, add_eos_token) */
    int parse_special; /* control tokens written in the text (<s>, <|im_start|>) become their ids;
                        * user-defined ones always do, as in llama.cpp */
    int max_tokens;    /* > 0: stop as soon as the ids would outnumber this */
} TokenizeOptions;

#define TOKENIZE_TOO_LONG (-2)

/* Encodes text[0..len) into a malloc'd id array.  Returns 0, -1 on an error,
 * or TOKENIZE_TOO_LONG (with a message) past o->max_tokens. */
int tokenizer_encode_opts(const Tokenizer *t, const char *text, size_t len, const TokenizeOptions *o, int **ids,
                          int *n, KvError *err);
/* As `record` encodes a prompt: add_special and parse_special, no limit. */
int tokenizer_encode(const Tokenizer *t, const char *text, int **ids, int *n, KvError *err);

/* The bytes a token stands for (<0xNN> pieces give the byte; byte-level BPE
 * decodes its characters).  Writes at most cap-1 bytes and a NUL; returns the
 * byte count. */
size_t tokenizer_decode(const Tokenizer *t, int id, char *out, size_t cap);

/* Id of a token's exact text (as in `texts`), or -1. */
int tokenizer_lookup(const Tokenizer *t, const char *text, size_t len);

/* One user message (after an optional system message, NULL for none) in the
 * model's chat template, ready to encode with parse_special; malloc'd.  Fails
 * clearly when the vocabulary has no template kvtrace knows. */
int tokenizer_chat_prompt(const Tokenizer *t, const char *system, const char *user, char **out, KvError *err);

#endif
