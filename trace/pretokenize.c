#include "pretokenize.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "regex.h"
#include "unicode.h"

/* The patterns, as llama.cpp's src/llama-vocab.cpp lists them (MIT). */
#define GPT2_PATTERN "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)"
#define LLAMA3_PATTERN                                                                                   \
    "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| " \
    "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
#define QWEN2_PATTERN                                                                                    \
    "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| "      \
    "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
/* DeepSeek's cased letters, written with escapes so look-alikes (U+2126 OHM
 * SIGN, U+212A KELVIN SIGN, U+1FBE ...) cannot be mistaken for others. */
#define DEEPSEEK_LETTERS                                                                                  \
    "\\s?[A-Za-z\u00B5\u00C0-\u00D6\u00D8-\u00F6\u00F8-\u01BA\u01BC-\u01BF\u01C4-\u0293\u0295-\u02AF"     \
    "\u0370-\u0373\u0376\u0377\u037B-\u037D\u037F\u0386\u0388-\u038A\u038C\u038E-\u03A1\u03A3-\u03F5"     \
    "\u03F7-\u0481\u048A-\u052F\u0531-\u0556\u10A0-\u10C5\u13A0-\u13F5\u13F8-\u13FD\u1C90-\u1CBA"         \
    "\u1CBD-\u1CBF\u1D00-\u1D2B\u1D6B-\u1D77\u1D79-\u1D9A\u1E00-\u1F15\u1F18-\u1F1D\u1F20-\u1F45"         \
    "\u1F48-\u1F4D\u1F50-\u1F57\u1F59\u1F5B\u1F5D\u1F5F-\u1F7D\u1F80-\u1FB4\u1FB6-\u1FBC\u1FBE"           \
    "\u1FC2-\u1FC4\u1FC6-\u1FCC\u1FD0-\u1FD3\u1FD6-\u1FDB\u1FE0-\u1FEC\u1FF2-\u1FF4\u1FF6-\u1FFC\u2102"   \
    "\u2107\u210A-\u2113\u2115\u2119-\u211D\u2124\u2126\u2128\u212A-\u212D\u212F-\u2134\u2139"            \
    "\u213C-\u213F\u2145-\u2149\u214E\u2183\u2184\u2C00-\u2C7B\u2C7E-\u2CE4\u2CEB-\u2CEE\u2CF2\u2CF3"     \
    "\uA640-\uA66D\uA680-\uA69B\uA722-\uA76F\uA771-\uA787\uA78B-\uA78E\uAB70-\uABBF\uFB00-\uFB06"         \
    "\uFB13-\uFB17\uFF21-\uFF3A\uFF41-\uFF5A\U00010400-\U0001044F\U000104B0-\U000104D3"                   \
    "\U000104D8-\U000104FB\U00010C80-\U00010CB2\U00010CC0-\U00010CF2\U000118A0-\U000118DF"                \
    "\U0001E900-\U0001E943]+"
#define CJK_RUNS "[\u4E00-\u9FA5\u0800-\u4E00\uAC00-\uD7FF]+"

const char PRETOKENIZE_GPT2_PATTERN[] = GPT2_PATTERN;
const char PRETOKENIZE_LLAMA3_PATTERN[] = LLAMA3_PATTERN;

#define MAX_STEPS 6

typedef struct {
    const char *names; /* tokenizer.ggml.pre values, space-separated; the first is shown */
    int ignore_merges, add_bos;
    const char *patterns[MAX_STEPS];
} PretokenizerSpec;

static const PretokenizerSpec SPECS[] = {
    {"llama-bpe llama3 llama-v3 falcon3", 1, 1, {LLAMA3_PATTERN}},
    {"qwen2 deepseek-r1-qwen stablelm2 megrez", 0, 0, {QWEN2_PATTERN}},
    {"deepseek-llm", 0, 0,
     {"[\r\n]", DEEPSEEK_LETTERS, "\\s?[!-/:-~\uFF01-\uFF0F\uFF1A-\uFF5E\u2018-\u201F\u3000-\u3002]+", "\\s+$",
      CJK_RUNS, "\\p{N}+"}},
    {"deepseek-coder", 0, 0, {"[\r\n]", "\\s?\\p{L}+", "\\s?\\p{P}+", CJK_RUNS, "\\p{N}"}},
    {"gpt-2 phi-2 mpt olmo", 0, 0, {GPT2_PATTERN}},
    {"smollm starcoder refact command-r codeshell exaone minerva-7b", 0, 0, {"\\p{N}", GPT2_PATTERN}},
    {"falcon", 0, 0, {"[\\p{P}\\$\\+<=>\\^~\\|`]+", GPT2_PATTERN, "[0-9][0-9][0-9]"}},
    {"dbrx smaug-bpe", 0, 0, {LLAMA3_PATTERN}},
    {"default", 0, 0, {"[\\p{P}\\$\\+<=>\\^~\\|]+", GPT2_PATTERN, "\\p{N}+", "[0-9][0-9][0-9]"}},
};

enum { SPLIT_REGEX, SPLIT_GPT2, SPLIT_LLAMA3 };

typedef struct {
    int kind;
    Regex *re;
} Step;

struct Pretokenizer {
    const PretokenizerSpec *spec;
    Step steps[MAX_STEPS];
    int n_steps;
};

static int has_name(const char *names, const char *name)
{
    size_t n = strlen(name);
    for (const char *p = names; *p;) {
        size_t w = strcspn(p, " ");
        if (w == n && n > 0 && memcmp(p, name, n) == 0) return 1;
        p += w + (p[w] == ' ');
    }
    return 0;
}

static int make_step(Step *s, const char *pattern, int custom)
{
    s->re = NULL;
    if (custom && !strcmp(pattern, GPT2_PATTERN)) s->kind = SPLIT_GPT2;
    else if (custom && !strcmp(pattern, LLAMA3_PATTERN)) s->kind = SPLIT_LLAMA3;
    else {
        char why[128];
        s->kind = SPLIT_REGEX;
        if (!(s->re = regex_compile(pattern, why, sizeof why))) return -1;
    }
    return 0;
}

Pretokenizer *pretokenizer_new(const char *name)
{
    const PretokenizerSpec *spec = NULL;
    for (size_t i = 0; i < sizeof SPECS / sizeof SPECS[0] && !spec; i++)
        if (has_name(SPECS[i].names, name)) spec = &SPECS[i];
    Pretokenizer *p = spec ? calloc(1, sizeof *p) : NULL;
    if (!p) return NULL;
    p->spec = spec;
    for (int i = 0; i < MAX_STEPS && spec->patterns[i]; i++, p->n_steps++)
        if (make_step(&p->steps[i], spec->patterns[i], 1)) {
            pretokenizer_free(p);
            return NULL;
        }
    return p;
}

void pretokenizer_free(Pretokenizer *p)
{
    if (!p) return;
    for (int i = 0; i < p->n_steps; i++) regex_free(p->steps[i].re);
    free(p);
}

void pretokenizer_names(char *out, size_t cap)
{
    size_t used = 0;
    out[0] = 0;
    for (size_t i = 0; i < sizeof SPECS / sizeof SPECS[0] && used < cap; i++)
        used += (size_t)snprintf(out + used, cap - used, "%s%.*s", i ? ", " : "", (int)strcspn(SPECS[i].names, " "),
                                 SPECS[i].names);
}

int pretokenizer_ignores_merges(const Pretokenizer *p) { return p->spec->ignore_merges; }
int pretokenizer_adds_bos(const Pretokenizer *p) { return p->spec->add_bos; }

/* ---- llama.cpp's hand-written splitters (same words as the patterns) ---- */

/* A view of one piece of text being split: code points in [begin, end). */
typedef struct {
    const uint32_t *cps;
    size_t begin, end;
    size_t *out, *n_out; /* word lengths written here */
    size_t done;         /* where the last word ended */
} Span;

#define OUTSIDE 0xFFFFFFFFu

static uint32_t cp_at(const Span *s, size_t i) { return i < s->end ? s->cps[i] : OUTSIDE; }
static int is_letter(const Span *s, size_t i) { return i < s->end && unicode_category(s->cps[i]) == UCAT_L; }
static int is_number(const Span *s, size_t i) { return i < s->end && unicode_category(s->cps[i]) == UCAT_N; }
static int is_space(const Span *s, size_t i) { return i < s->end && unicode_is_space(s->cps[i]); }
/* [^\s\p{L}\p{N}] */
static int is_other(const Span *s, size_t i) { return i < s->end && !is_space(s, i) && !is_letter(s, i) && !is_number(s, i); }
static int is_newline(uint32_t c) { return c == '\r' || c == '\n'; }

static void emit(Span *s, size_t end)
{
    if (end > s->done) s->out[(*s->n_out)++] = end - s->done;
    s->done = end;
}

static uint32_t ascii_lower(uint32_t c) { return c >= 'A' && c <= 'Z' ? c + 32 : c; }

/* 's 't 're 've 'm 'll 'd at i: returns its length (0 if none). */
static size_t contraction(const Span *s, size_t i, int any_case)
{
    if (cp_at(s, i) != '\'' || i + 1 >= s->end) return 0;
    uint32_t a = cp_at(s, i + 1), b = i + 2 < s->end ? cp_at(s, i + 2) : 0;
    if (any_case) { a = ascii_lower(a); b = ascii_lower(b); }
    if (a == 's' || a == 't' || a == 'm' || a == 'd') return 2;
    if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) return 3;
    return 0;
}

/* After the branches for words, what is left is white space:
 * \s*[\r\n]+ (llama3 only), \s+(?!\S), \s+, or one unmatched character. */
static size_t whitespace_end(const Span *s, size_t i, int newline_runs)
{
    size_t n = 0, after_newline = 0;
    while (is_space(s, i + n)) {
        if (is_newline(cp_at(s, i + n))) after_newline = i + n + 1;
        n++;
    }
    if (newline_runs && after_newline) return after_newline;
    if (n > 1 && i + n < s->end) return i + n - 1; /* leave the last space to the next word */
    return i + (n ? n : 1);
}

/* 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S) */
static void split_gpt2(Span *s)
{
    for (size_t i = s->begin; i < s->end;) {
        size_t c = contraction(s, i, 0), j = i + (cp_at(s, i) == ' ');
        if (c) i += c;
        else if (is_letter(s, j)) for (i = j; is_letter(s, i); i++) {}
        else if (is_number(s, j)) for (i = j; is_number(s, i); i++) {}
        else if (is_other(s, j)) for (i = j; is_other(s, i); i++) {}
        else i = whitespace_end(s, i, 0);
        emit(s, i);
    }
}

/* (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+ */
static void split_llama3(Span *s)
{
    for (size_t i = s->begin; i < s->end;) {
        uint32_t c = cp_at(s, i);
        size_t k = contraction(s, i, 1), j = i + (c == ' ');
        if (k) {
            i += k;
        } else if (!is_newline(c) && !is_number(s, i) && (is_letter(s, i) || is_letter(s, i + 1))) {
            for (i++; is_letter(s, i); i++) {}
        } else if (is_number(s, i)) {
            size_t start = i;
            for (; is_number(s, i); i++)
                if (i + 1 - start == 3) { emit(s, i + 1); start = i + 1; }
        } else if (is_other(s, j) || (c == ' ' && j >= s->end)) {
            for (i = j; is_other(s, i); i++) {}
            while (is_newline(cp_at(s, i))) i++;
        } else {
            i = whitespace_end(s, i, 1);
        }
        emit(s, i);
    }
}

/* ---- driving the steps ---- */

static int reserve(Words *w, size_t n)
{
    if (n <= w->cap) return 0;
    size_t *a = realloc(w->lens, n * sizeof *a), *b = a ? realloc(w->spare, n * sizeof *b) : NULL;
    if (a) w->lens = a;
    if (b) w->spare = b;
    uint32_t *u = b ? realloc(w->units, n * sizeof *u) : NULL;
    if (!u) return -1;
    w->units = u;
    w->cap = n;
    return 0;
}

static void regex_split(const Regex *re, Span *s, const uint32_t *units)
{
    size_t at = s->begin, ms, me;
    while (at < s->end && regex_search(re, units, at, s->end, &ms, &me)) {
        emit(s, ms); /* the text between matches is a piece of its own */
        emit(s, me);
        at = me;
    }
    emit(s, s->end);
}

/* Splits every current piece with one step; the pieces swap buffers. */
static void run_step(const Step *step, const uint32_t *cps, size_t n, Words *w)
{
    if (step->kind == SPLIT_REGEX) {
        int collapsed = regex_collapsed(step->re);
        for (size_t i = 0; i < n; i++) w->units[i] = regex_unit(cps[i], collapsed);
    }
    size_t n_out = 0, begin = 0;
    for (size_t k = 0; k < w->n; k++) {
        Span s = {cps, begin, begin + w->lens[k], w->spare, &n_out, begin};
        if (step->kind == SPLIT_GPT2) split_gpt2(&s);
        else if (step->kind == SPLIT_LLAMA3) split_llama3(&s);
        else regex_split(step->re, &s, w->units);
        begin = s.end;
    }
    size_t *t = w->lens;
    w->lens = w->spare;
    w->spare = t;
    w->n = n_out;
}

static int split_all(const Step *steps, int n_steps, const uint32_t *cps, size_t n, Words *w)
{
    w->n = 0;
    if (n == 0) return 0;
    if (reserve(w, n)) return -1;
    w->lens[0] = n;
    w->n = 1;
    for (int i = 0; i < n_steps; i++) run_step(&steps[i], cps, n, w);
    return 0;
}

int pretokenize(const Pretokenizer *p, const uint32_t *cps, size_t n, Words *w)
{
    return split_all(p->steps, p->n_steps, cps, n, w);
}

int pretokenize_pattern(const char *pattern, int custom, const uint32_t *cps, size_t n, Words *w)
{
    Step step;
    if (make_step(&step, pattern, custom)) return -1;
    int rc = split_all(&step, 1, cps, n, w);
    regex_free(step.re);
    return rc;
}

void words_free(Words *w)
{
    free(w->lens);
    free(w->spare);
    free(w->units);
    memset(w, 0, sizeof *w);
}
