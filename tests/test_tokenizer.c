/* The tokenizers through the library calls.
 *
 * usage: test_tokenizer CASE [VOCAB.gguf]
 *   vectors VOCAB    every llama.cpp test vector beside VOCAB (VOCAB.inp, VOCAB.out)
 *                    reproduced by tokenizer_encode_opts (no BOS, control tokens as text)
 *   encode VOCAB TEXTS  prints the ids of each text in TEXTS (laid out as a .inp file), encoded
 *                    as `record` does (for test_tokenize.py's synthetic vocabularies)
 *   splitters        the hand-written GPT-2 and Llama 3 splitters split random text
 *                    exactly as the regex engine runs their patterns
 *   regex            the regex engine on known answers, llama.cpp's quirks included
 *   spm_naive VOCAB  the heap merge equals the quadratic best-pair-first merge
 *   long_text VOCAB  a 256 KB text: the token limit stops early; the full encoding
 *                    decodes back to the text (and, for BPE, equals its lines' encodings) */
#include <stdint.h>
#include <string.h>

#include "../trace/pretokenize.h"
#include "../trace/tokenizer.h"
#include "../trace/unicode.h"
#include "check.h"

static char *slurp(const char *path, size_t *len)
{
    FILE *fp = fopen(path, "rb");
    if (!fp) return NULL;
    fseek(fp, 0, SEEK_END);
    long n = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    if (buf && fread(buf, 1, (size_t)n, fp) != (size_t)n) { free(buf); buf = NULL; }
    fclose(fp);
    if (buf) buf[n] = 0;
    *len = (size_t)n;
    return buf;
}

static int load(Tokenizer *t, const char *path)
{
    GgufFile g;
    KvError err;
    int rc = gguf_open(&g, path, &err) || tokenizer_from_gguf(t, &g, &err);
    CHECK(rc == 0, "%s", err.msg);
    if (rc == 0) gguf_close(&g);
    return rc;
}

static int encode_as(const Tokenizer *t, const char *text, size_t len, int special, int max_tokens, int **ids, int *n)
{
    TokenizeOptions o = {.add_special = special, .parse_special = special, .max_tokens = max_tokens};
    KvError err;
    int rc = tokenizer_encode_opts(t, text, len, &o, ids, n, &err);
    if (rc == -1) CHECK(0, "encoding failed: %s", err.msg);
    return rc;
}

/* As llama.cpp's tests encode: no BOS, control tokens as text. */
static int encode(const Tokenizer *t, const char *text, size_t len, int max_tokens, int **ids, int *n)
{
    return encode_as(t, text, len, 0, max_tokens, ids, n);
}

static const char SEP[] = "\n__ggml_vocab_test__\n"; /* llama.cpp's separator of test inputs */

/* encode VOCAB TEXTS: each text of TEXTS (llama.cpp's .inp layout) encoded as
 * `record` does (BOS, special tokens), one line of ids each on stdout. */
static void encode_file(const char *vocab, const char *texts)
{
    size_t len;
    char *inp = slurp(texts, &len);
    Tokenizer t;
    CHECK(inp != NULL, "cannot read %s", texts);
    if (!inp || load(&t, vocab)) { free(inp); return; }
    for (char *text = inp, *end; (end = strstr(text, SEP)); text = end + strlen(SEP)) {
        int *ids = NULL, n = 0;
        if (encode_as(&t, text, (size_t)(end - text), 1, 0, &ids, &n) == 0)
            for (int i = 0; i < n; i++) printf(" %d", ids[i]);
        putchar('\n');
        free(ids);
    }
    tokenizer_free(&t);
    free(inp);
}

/* ---- vectors ---- */

static void vectors(const char *vocab)
{
    char path[1024];
    size_t inp_len, out_len;
    snprintf(path, sizeof path, "%s.inp", vocab);
    char *inp = slurp(path, &inp_len);
    snprintf(path, sizeof path, "%s.out", vocab);
    char *out = slurp(path, &out_len);
    Tokenizer t;
    CHECK(inp && out, "cannot read the vectors of %s", vocab);
    if (!inp || !out || load(&t, vocab)) { free(inp); free(out); return; }
    int total = 0, matched = 0;
    char *text = inp, *line = out;
    for (char *end; (end = strstr(text, SEP)); text = end + strlen(SEP)) {
        char *eol = strchr(line, '\n');
        CHECK(eol, "%s.out has fewer lines than inputs", vocab);
        if (!eol) break;
        *eol = 0;
        int *ids = NULL, n = 0, same = encode(&t, text, (size_t)(end - text), 0, &ids, &n) == 0;
        char *p = line;
        for (int i = 0; same && i < n; i++) {
            char *next;
            long want = strtol(p, &next, 10);
            same = next != p && want == ids[i];
            p = next;
        }
        same = same && strspn(p, " ") == strlen(p);
        if (!same) printf("vector %d (%.40s...) differs\n  want%s\n", total, text, line);
        free(ids);
        matched += same;
        total++;
        line = eol + 1;
    }
    printf("%s: %d of %d vectors match\n", vocab, matched, total);
    CHECK(total >= 40 && matched == total, "%d of %d vectors match", matched, total);
    tokenizer_free(&t);
    free(inp);
    free(out);
}

/* ---- random text ---- */

static uint64_t rng_state = 42;
static uint32_t rnd(uint32_t n)
{
    rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
    return (uint32_t)(rng_state >> 33) % n;
}

/* Code points that exercise every branch of the pre-tokenizer patterns. */
static const uint32_t POOL[] = {
    'a', 'b', 'Z', 's', 't', 'm', 'd', 'r', 'e', 'v', 'l', 'S', 'T', 'R', 'E', 'L', 'D', 'M', 'V', '\'', '\'',
    ' ', ' ', ' ', '\t', '\n', '\r', '0', '7', '9', '.', ',', '!', '~', '$', '<', '|', '_', '-', '(',
    0xE9, 0xDF, 0x416, 0x4E2D, 0x65E5, 0xAC00, 0x301, 0xA0, 0x3000, 0x2028, 0x1F600, 0x663, 0xB2, 0xBD, 0xFF21,
    0x2003, 0x85, 0x7F, 0x1, 0xFFFD, 0x2126, 0x212A, 0x3002, 0xFF01};

static size_t random_cps(uint32_t *cps, size_t max)
{
    size_t n = rnd((uint32_t)max + 1);
    for (size_t i = 0; i < n; i++) cps[i] = POOL[rnd(sizeof POOL / sizeof POOL[0])];
    return n;
}

static size_t to_utf8(const uint32_t *cps, size_t n, char *out)
{
    size_t w = 0;
    for (size_t i = 0; i < n; i++) w += (size_t)utf8_encode(cps[i], (unsigned char *)out + w);
    out[w] = 0;
    return w;
}

/* ---- splitters ---- */

static int same_words(const Words *a, const Words *b)
{
    if (a->n != b->n) return 0;
    for (size_t i = 0; i < a->n; i++)
        if (a->lens[i] != b->lens[i]) return 0;
    return 1;
}

static void splitters(void)
{
    const char *patterns[] = {PRETOKENIZE_GPT2_PATTERN, PRETOKENIZE_LLAMA3_PATTERN};
    uint32_t cps[48];
    char text[48 * 4 + 1];
    Words custom = {0}, general = {0};
    int differ = 0, trials = 4000;
    for (int trial = 0; trial < trials; trial++) {
        size_t n = random_cps(cps, 40);
        for (int p = 0; p < 2; p++) {
            CHECK(pretokenize_pattern(patterns[p], 1, cps, n, &custom) == 0, "custom split failed");
            CHECK(pretokenize_pattern(patterns[p], 0, cps, n, &general) == 0, "regex split failed");
            if (!same_words(&custom, &general) && differ++ < 5) {
                to_utf8(cps, n, text);
                printf("%s splits '%s' differently: %zu vs %zu words\n", p ? "llama3" : "gpt2", text, custom.n,
                       general.n);
            }
        }
    }
    printf("%d random texts, %d differences\n", trials, differ);
    CHECK(differ == 0, "the hand-written splitters differ from the regex engine");
    words_free(&custom);
    words_free(&general);
}

/* ---- regex known answers ---- */

static void expect_split(const char *pattern, const char *text, const char *want)
{
    uint32_t cps[64];
    size_t n = 0, len = strlen(text);
    for (size_t i = 0; i < len;) cps[n++] = utf8_decode((const unsigned char *)text, len, &i);
    Words w = {0};
    char got[256] = "";
    CHECK(pretokenize_pattern(pattern, 0, cps, n, &w) == 0, "pattern %s failed", pattern);
    size_t at = 0;
    for (size_t k = 0; k < w.n; k++) {
        char piece[128];
        to_utf8(cps + at, w.lens[k], piece);
        snprintf(got + strlen(got), sizeof got - strlen(got), "%s%s", k ? "|" : "", piece);
        at += w.lens[k];
    }
    CHECK(!strcmp(got, want), "%s on '%s': got '%s', want '%s'", pattern, text, got, want);
    words_free(&w);
}

static void regex_cases(void)
{
    expect_split("[0-9][0-9][0-9]", "12345a678", "123|45a|678");
    expect_split("\\s+$", "a  b   ", "a  b|   ");
    expect_split("\\p{N}", "x\xd9\xa3y12", "x|\xd9\xa3|y|1|2");                  /* Arabic-Indic three is N */
    expect_split("[\\p{P}\\$\\+<=>\\^~\\|`]+", "a~b..c", "a|~|b|..|c");         /* ~ listed as itself */
    expect_split("\\s?\\p{P}+", "a ~b ,c", "a ~b| ,|c");                        /* llama.cpp: ~ is not \p{P} */
    expect_split("\\s?\\p{L}+", "ab \xc3\xa9t\xe4\xb8\xad 9", "ab| \xc3\xa9t\xe4\xb8\xad| 9");
    expect_split("[\r\n]", "a\r\nb", "a|\r|\n|b");
    expect_split("(?:'[sS]|'[tT])|x+(?!y)", "'Sxxxy't", "'S|xx|xy|'t");
    expect_split("\\s+(?!\\S)|\\s+", "a   b \xe3\x80\x80 c", "a|  | |b| \xe3\x80\x80| |c"); /* U+3000 is white space */
}

/* ---- SentencePiece: heap vs quadratic ---- */

/* llama.cpp's SentencePiece loop written the obvious way: merge the best
 * adjacent pair (highest score, leftmost) until none is a token. */
static int naive_spm(const Tokenizer *t, const char *text, int *out)
{
    size_t len = strlen(text), m = 3;
    char *buf = malloc(3 * len + 4);
    memcpy(buf, "\xe2\x96\x81", 3);
    for (size_t i = 0; i < len; i++) {
        if (text[i] == ' ') { memcpy(buf + m, "\xe2\x96\x81", 3); m += 3; }
        else buf[m++] = text[i];
    }
    int *start = malloc(m * sizeof *start), *slen = malloc(m * sizeof *slen), n = 0;
    for (size_t i = 0; i < m; n++) {
        start[n] = (int)i;
        slen[n] = utf8_len_from_lead((unsigned char)buf[i]);
        if ((size_t)slen[n] > m - i) slen[n] = (int)(m - i);
        i += (size_t)slen[n];
    }
    for (;;) {
        int best = -1;
        float best_score = 0;
        for (int i = 0; i + 1 < n; i++) {
            int id = tokenizer_lookup(t, buf + start[i], (size_t)(slen[i] + slen[i + 1]));
            if (id >= 0 && (best < 0 || t->scores[id] > best_score)) { best = i; best_score = t->scores[id]; }
        }
        if (best < 0) break;
        slen[best] += slen[best + 1];
        memmove(start + best + 1, start + best + 2, (size_t)(n - best - 2) * sizeof *start);
        memmove(slen + best + 1, slen + best + 2, (size_t)(n - best - 2) * sizeof *slen);
        n--;
    }
    int k = 0;
    for (int i = 0; i < n; i++) {
        int id = tokenizer_lookup(t, buf + start[i], (size_t)slen[i]);
        if (id >= 0) out[k++] = id;
        else for (int b = 0; b < slen[i]; b++) out[k++] = t->byte_ids[(unsigned char)buf[start[i] + b]];
    }
    free(buf); free(start); free(slen);
    return k;
}

static void spm_naive(const char *vocab)
{
    Tokenizer t;
    if (load(&t, vocab)) return;
    CHECK(t.kind == TOKENIZER_SPM, "%s is not a SentencePiece vocabulary", vocab);
    static const char *WORDS[] = {"the", "quick", "brown", "fox", "jumps", "over", "lazy", "dog", "Hello", "world",
                                  "\xc3\xa9t\xc3\xa9", "\xe4\xb8\xad\xe6\x96\x87", "1234", "!!", "\n", "  ", "\t",
                                  "naïve", "co-operate", "\xf0\x9f\x98\x80"};
    int trials = 60, differ = 0;
    for (int trial = 0; trial < trials; trial++) {
        char text[4096] = "";
        int words = 1 + (int)rnd(trial < 50 ? 30 : 400);
        for (int w = 0; w < words && strlen(text) + 32 < sizeof text; w++) {
            strcat(text, WORDS[rnd(sizeof WORDS / sizeof WORDS[0])]);
            if (rnd(3)) strcat(text, " ");
        }
        int *want = malloc(4 * sizeof text * sizeof *want), n_want = naive_spm(&t, text, want), *got, n_got;
        if (encode(&t, text, strlen(text), 0, &got, &n_got) == 0) {
            int same = n_got == n_want && !memcmp(got, want, (size_t)n_got * sizeof *got);
            if (!same && differ++ < 3) printf("differs on '%s' (%d vs %d ids)\n", text, n_got, n_want);
            free(got);
        }
        free(want);
    }
    printf("%d texts, %d differences\n", trials, differ);
    CHECK(differ == 0, "the heap merge differs from the quadratic one");
    tokenizer_free(&t);
}

/* ---- long text ---- */

static void long_text(const char *vocab)
{
    Tokenizer t;
    if (load(&t, vocab)) return;
    static const char *WORDS[] = {"Once", "upon", "a", "time", "there", "was", "little", "girl", "named", "Lily",
                                  "caf\xc3\xa9", "\xe6\x97\xa5\xe6\x9c\xac", "42", "1999", "don't", "(yes)"};
    size_t cap = 256 * 1024, len = 0;
    char *text = malloc(cap + 64);
    size_t *line_start = malloc(cap * sizeof *line_start), lines = 0;
    while (len < cap) { /* lines that start with a word and end with ".\n" */
        line_start[lines++] = len;
        int words = 3 + (int)rnd(12);
        for (int w = 0; w < words; w++)
            len += (size_t)sprintf(text + len, "%s%s", w ? " " : "", WORDS[rnd(sizeof WORDS / sizeof WORDS[0])]);
        len += (size_t)sprintf(text + len, ".\n");
    }
    int *ids = NULL, n = 0;
    CHECK(encode(&t, text, len, 2048, &ids, &n) == TOKENIZE_TOO_LONG, "a 256 KB text fits in 2048 tokens?");
    CHECK(encode(&t, text, len, 0, &ids, &n) == 0, "encoding 256 KB failed");
    printf("%zu bytes -> %d tokens\n", len, n);
    CHECK(n > 2048, "only %d tokens", n);
    /* decoding gives the text back (SentencePiece: after its dummy-prefix space) */
    char *back = malloc(8 * len + 16), piece[1024];
    size_t blen = 0;
    for (int i = 0; i < n; i++) {
        size_t k = tokenizer_decode(&t, ids[i], piece, sizeof piece);
        memcpy(back + blen, piece, k);
        blen += k;
    }
    size_t skip = t.kind == TOKENIZER_SPM;
    CHECK(blen == len + skip && !memcmp(back + skip, text, len), "decoding does not give the text back");
    if (t.kind == TOKENIZER_BPE) { /* no word of a pre-tokenizer crosses a ".\n" + word boundary */
        int at = 0, same = 1;
        for (size_t l = 0; l < lines && same; l++) {
            size_t end = l + 1 < lines ? line_start[l + 1] : len;
            int *part, np;
            if (encode(&t, text + line_start[l], end - line_start[l], 0, &part, &np)) { same = 0; break; }
            same = at + np <= n && !memcmp(ids + at, part, (size_t)np * sizeof *part);
            at += np;
            free(part);
        }
        CHECK(same && at == n, "the whole text's ids differ from its lines' ids");
    }
    free(back);
    free(ids);
    free(text);
    free(line_start);
    tokenizer_free(&t);
}

int main(int argc, char **argv)
{
    const char *what = argc > 1 ? argv[1] : "";
    if (!strcmp(what, "vectors") && argc > 2) vectors(argv[2]);
    else if (!strcmp(what, "encode") && argc > 3) encode_file(argv[2], argv[3]);
    else if (!strcmp(what, "splitters")) splitters();
    else if (!strcmp(what, "regex")) regex_cases();
    else if (!strcmp(what, "spm_naive") && argc > 2) spm_naive(argv[2]);
    else if (!strcmp(what, "long_text") && argc > 2) long_text(argv[2]);
    else {
        fprintf(stderr, "usage: test_tokenizer vectors|encode|splitters|regex|spm_naive|long_text [VOCAB.gguf [TEXTS]]\n");
        return 2;
    }
    return check_status();
}
