/* kvtrace tokenize MODEL.gguf --text TEXT — the token ids a text becomes. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../trace/gguf.h"
#include "../trace/tokenizer.h"
#include "cli.h"

static const char TOKENIZE_HELP[] =
    "usage: kvtrace tokenize MODEL.gguf (--text TEXT | --text-file FILE) [options]\n"
    "\n"
    "Prints the token ids TEXT becomes, one token a line: the id and its piece as a trace stores it\n"
    "(quoted; spaces kept, control characters escaped, bytes that are not UTF-8 as <0xNN>).  The ids\n"
    "are those `kvtrace record --prompt` feeds the model, and llama.cpp's.  MODEL may be a whole model\n"
    "or a vocabulary-only GGUF.  Tokenizers: SentencePiece (tokenizer.ggml.model = llama) and\n"
    "byte-level BPE (gpt2) with the pre-tokenizers llama-bpe (Llama 3), qwen2, deepseek-llm,\n"
    "deepseek-coder, gpt-2, smollm, falcon, starcoder, mpt, refact and a few aliases.\n"
    "\n"
    "  --text TEXT        the text\n"
    "  --text-file FILE   the whole file as one text (not line by line)\n"
    "  --chat             the text as one user message in the model's chat template (Llama 3,\n"
    "                     ChatML, Llama 2 [INST]), ending where the assistant's answer begins;\n"
    "                     other templates are refused\n"
    "  --system TEXT      with --chat: a system message first\n"
    "  --no-bos           do not add the BOS (or EOS) the vocabulary asks for\n"
    "  --no-special       special-token text such as <s> or <|im_start|> stays plain text\n"
    "                     (user-defined tokens still match, as in llama.cpp)\n"
    "  --ids-only         print only the ids, on one line, separated by spaces\n";

typedef struct {
    const char *model, *text, *text_file, *system;
    int chat, no_bos, no_special, ids_only;
} TokenizeArgs;

static int parse_args(int argc, char **argv, TokenizeArgs *a)
{
    static const struct option longopts[] = {
        {"text", 1, 0, 't'}, {"text-file", 1, 0, 'f'}, {"chat", 0, 0, 'c'}, {"system", 1, 0, 's'},
        {"no-bos", 0, 0, 'b'}, {"no-special", 0, 0, 'n'}, {"ids-only", 0, 0, 'i'}, {"help", 0, 0, 'h'}, {0, 0, 0, 0}};
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (c) {
        case 't': a->text = optarg; break;
        case 'f': a->text_file = optarg; break;
        case 'c': a->chat = 1; break;
        case 's': a->system = optarg; break;
        case 'b': a->no_bos = 1; break;
        case 'n': a->no_special = 1; break;
        case 'i': a->ids_only = 1; break;
        case 'h': fputs(TOKENIZE_HELP, stdout); return -1;
        default: return cli_usage_error("tokenize", "unknown option or missing value: %s", argv[optind - 1]);
        }
    }
    if (optind != argc - 1) return cli_usage_error("tokenize", "expected exactly one MODEL argument");
    a->model = argv[optind];
    if (!!a->text + !!a->text_file != 1) return cli_usage_error("tokenize", "give exactly one of --text, --text-file");
    if (a->system && !a->chat) return cli_usage_error("tokenize", "--system needs --chat");
    if (a->chat && a->no_special)
        return cli_usage_error("tokenize", "--chat writes special tokens, so it cannot go with --no-special");
    return 0;
}

/* The whole file, NUL-terminated, its length in *len. */
static char *read_file(const char *path, size_t *len, KvError *err)
{
    FILE *fp = fopen(path, "rb");
    if (!fp) return kv_fail(err, "%s: cannot open the text file", path), NULL;
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    while (buf) {
        n += fread(buf + n, 1, cap - n - 1, fp);
        if (n < cap - 1) break;
        char *grown = realloc(buf, 2 * cap);
        if (!grown) { free(buf); buf = NULL; break; }
        buf = grown;
        cap *= 2;
    }
    int bad = ferror(fp);
    fclose(fp);
    if (!buf || bad) {
        free(buf);
        return kv_fail(err, "%s: cannot read the text file", path), NULL;
    }
    buf[n] = 0;
    *len = n;
    return buf;
}

/* A piece in single quotes, control characters as C escapes. */
static void print_piece(const char *p)
{
    putchar('\'');
    for (; *p; p++) {
        unsigned char c = (unsigned char)*p;
        if (c == '\n') fputs("\\n", stdout);
        else if (c == '\t') fputs("\\t", stdout);
        else if (c == '\r') fputs("\\r", stdout);
        else if (c == '\\' || c == '\'') printf("\\%c", c);
        else if (c < 0x20 || c == 0x7f) printf("\\x%02x", c);
        else putchar(c);
    }
    putchar('\'');
}

static void print_ids(const Tokenizer *t, const int *ids, int n, int ids_only)
{
    for (int i = 0; i < n; i++) {
        if (ids_only) {
            printf(i ? " %d" : "%d", ids[i]);
            continue;
        }
        printf("%7d  ", ids[i]);
        print_piece(t->pieces[ids[i]]);
        putchar('\n');
    }
    if (ids_only) putchar('\n');
}

static int tokenize(const TokenizeArgs *a, const Tokenizer *t, KvError *err)
{
    size_t len = 0;
    char *text = a->text_file ? read_file(a->text_file, &len, err) : strdup(a->text);
    if (!text) return a->text_file ? -1 : kv_fail(err, "out of memory");
    if (!a->text_file) len = strlen(text);
    if (a->chat) {
        char *wrapped;
        int rc = tokenizer_chat_prompt(t, a->system, text, &wrapped, err);
        free(text);
        if (rc) return -1;
        text = wrapped;
        len = strlen(text);
    }
    TokenizeOptions o = {.add_special = !a->no_bos, .parse_special = !a->no_special};
    int *ids = NULL, n = 0;
    int rc = tokenizer_encode_opts(t, text, len, &o, &ids, &n, err);
    free(text);
    if (rc) return -1;
    print_ids(t, ids, n, a->ids_only);
    free(ids);
    if (fflush(stdout) != 0) return kv_fail(err, "cannot write the output");
    return 0;
}

int cmd_tokenize(int argc, char **argv)
{
    TokenizeArgs a = {0};
    int rc = parse_args(argc, argv, &a);
    if (rc) return rc < 0 ? 0 : rc;
    GgufFile g;
    Tokenizer t;
    KvError err;
    if (gguf_open(&g, a.model, &err)) return cli_error("tokenize", err.msg);
    rc = tokenizer_from_gguf(&t, &g, &err);
    gguf_close(&g);
    if (rc) return cli_error("tokenize", err.msg);
    rc = tokenize(&a, &t, &err);
    tokenizer_free(&t);
    return rc ? cli_error("tokenize", err.msg) : 0;
}
