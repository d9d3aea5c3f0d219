#include "regex.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "unicode.h"

#define UNBOUNDED SIZE_MAX

typedef struct { uint32_t lo, hi; } Range;
typedef struct { Range *ranges; int n, cap; int negate; } CharClass;

typedef struct Node Node;
typedef struct { Node *nodes; int n, cap; } Sequence;
typedef struct { Sequence *seqs; int n, cap; } Alternatives;

enum { NODE_CLASS, NODE_GROUP, NODE_LOOKAHEAD, NODE_END };
struct Node {
    int kind;
    CharClass cls;     /* NODE_CLASS, repeated min..max times */
    size_t min, max;
    Alternatives alt;  /* NODE_GROUP, NODE_LOOKAHEAD */
    int negate;        /* NODE_LOOKAHEAD: (?!..) */
};

struct Regex {
    Alternatives top;
    int collapsed;
    int lead_skips; /* one alternative that starts with an unbounded class: see regex_search */
};

/* ---- building ---------------------------------------------------------- */

static int grow(void **items, int *cap, int need, size_t size)
{
    if (need <= *cap) return 0;
    int c = *cap ? 2 * *cap : 4;
    while (c < need) c *= 2;
    void *p = realloc(*items, (size_t)c * size);
    if (!p) return -1;
    memset((char *)p + (size_t)*cap * size, 0, (size_t)(c - *cap) * size);
    *items = p;
    *cap = c;
    return 0;
}

static int class_add(CharClass *c, uint32_t lo, uint32_t hi)
{
    if (grow((void **)&c->ranges, &c->cap, c->n + 1, sizeof *c->ranges)) return -1;
    c->ranges[c->n++] = (Range){lo, hi};
    return 0;
}

static int cmp_range(const void *a, const void *b)
{
    const Range *x = a, *y = b;
    return x->lo < y->lo ? -1 : x->lo > y->lo;
}

/* Sorts and merges the ranges so membership is one binary search. */
static void class_finish(CharClass *c)
{
    if (c->n == 0) return;
    qsort(c->ranges, (size_t)c->n, sizeof *c->ranges, cmp_range);
    int w = 0;
    for (int r = 1; r < c->n; r++) {
        if (c->ranges[r].lo <= c->ranges[w].hi + 1) {
            if (c->ranges[r].hi > c->ranges[w].hi) c->ranges[w].hi = c->ranges[r].hi;
        } else {
            c->ranges[++w] = c->ranges[r];
        }
    }
    c->n = w + 1;
}

static int class_has(const CharClass *c, uint32_t u)
{
    int lo = 0, hi = c->n - 1, in = 0;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        if (u < c->ranges[mid].lo) hi = mid - 1;
        else if (u > c->ranges[mid].hi) lo = mid + 1;
        else { in = 1; break; }
    }
    return in != c->negate;
}

static void free_alternatives(Alternatives *a);

static void free_node(Node *n)
{
    free(n->cls.ranges);
    free_alternatives(&n->alt);
}

static void free_alternatives(Alternatives *a)
{
    for (int i = 0; i < a->n; i++) {
        for (int j = 0; j < a->seqs[i].n; j++) free_node(&a->seqs[i].nodes[j]);
        free(a->seqs[i].nodes);
    }
    free(a->seqs);
    memset(a, 0, sizeof *a);
}

/* ---- parsing ------------------------------------------------------------ */

typedef struct {
    uint32_t *p; /* the pattern as code points */
    size_t n, i;
    char *why;
    size_t why_cap;
} Parser;

static int parse_fail(Parser *ps, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int parse_fail(Parser *ps, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    if (ps->why_cap) vsnprintf(ps->why, ps->why_cap, fmt, ap);
    va_end(ap);
    return -1;
}

static uint32_t peek(const Parser *ps, size_t ahead) { return ps->i + ahead < ps->n ? ps->p[ps->i + ahead] : 0; }

/* The collapsed unit of a category (llama.cpp's numbering), 0xD0 for the rest. */
static uint32_t collapsed_unit(int cat)
{
    switch (cat) {
    case UCAT_N: return 0xD1;
    case UCAT_L: return 0xD2;
    case UCAT_P: return 0xD3;
    case UCAT_M: return 0xD4;
    case UCAT_S: return 0xD5;
    default: return 0xD0;
    }
}

/* ASCII members of a category in llama.cpp's collapsed patterns, as lo/hi pairs. */
static const char *category_ascii(int cat)
{
    switch (cat) {
    case UCAT_N: return "09";
    case UCAT_L: return "AZaz";
    case UCAT_P: return "!#%*,/:;?@[]__{{}}";
    case UCAT_S: return "$$++<>^^``||";
    default: return "";
    }
}

static int add_category(Parser *ps, CharClass *c)
{
    static const struct { const char *name; int cat; } NAMES[] = {
        {"N", UCAT_N}, {"L", UCAT_L}, {"P", UCAT_P}, {"M", UCAT_M}, {"S", UCAT_S},
        {"Lu", UCAT_L}, {"Ll", UCAT_L}, {"Lt", UCAT_L}, {"Lm", UCAT_L}, {"Lo", UCAT_L}};
    char name[8] = "";
    if (peek(ps, 0) != '{') return parse_fail(ps, "\\p without {");
    size_t k = 0;
    for (ps->i++; ps->i < ps->n && ps->p[ps->i] != '}' && k + 1 < sizeof name; ps->i++) name[k++] = (char)ps->p[ps->i];
    if (peek(ps, 0) != '}') return parse_fail(ps, "unterminated \\p{");
    ps->i++;
    for (size_t j = 0; j < sizeof NAMES / sizeof NAMES[0]; j++) {
        if (strcmp(name, NAMES[j].name) != 0) continue;
        const char *a = category_ascii(NAMES[j].cat);
        uint32_t unit = collapsed_unit(NAMES[j].cat);
        if (class_add(c, unit, unit)) return -1;
        for (; *a; a += 2)
            if (class_add(c, (uint32_t)a[0], (uint32_t)a[1])) return -1;
        return 0;
    }
    return parse_fail(ps, "unknown category \\p{%s}", name);
}

/* An escape after '\': adds its members to c; *single gets the character
 * when it is one (so it can start a range), else -1. */
static int parse_escape(Parser *ps, CharClass *c, int64_t *single)
{
    uint32_t e = peek(ps, 0);
    ps->i++;
    *single = -1;
    switch (e) {
    case 's': return class_add(c, 0x09, 0x0D) || class_add(c, 0x20, 0x20) ? -1 : 0;
    case 'd': return class_add(c, '0', '9');
    case 'p': return add_category(ps, c);
    case 'r': *single = '\r'; break;
    case 'n': *single = '\n'; break;
    case 't': *single = '\t'; break;
    case 'f': *single = '\f'; break;
    case 'v': *single = '\v'; break;
    default:
        if (e == 0 || e >= 0x80 || (e >= '0' && e <= '9') || (e >= 'A' && e <= 'Z') || (e >= 'a' && e <= 'z'))
            return parse_fail(ps, "unsupported escape \\%c", e ? (char)e : '?');
        *single = e;
    }
    return class_add(c, (uint32_t)*single, (uint32_t)*single);
}

static int parse_class(Parser *ps, CharClass *c)
{
    ps->i++; /* '[' */
    if (peek(ps, 0) == '^') { c->negate = 1; ps->i++; }
    while (ps->i < ps->n && ps->p[ps->i] != ']') {
        int64_t lo;
        if (ps->p[ps->i] == '\\') {
            ps->i++;
            if (parse_escape(ps, c, &lo)) return -1;
        } else {
            lo = ps->p[ps->i++];
            if (class_add(c, (uint32_t)lo, (uint32_t)lo)) return -1;
        }
        if (lo < 0 || peek(ps, 0) != '-' || peek(ps, 1) == ']' || ps->i + 1 >= ps->n) continue;
        ps->i++; /* a range lo-hi */
        int64_t hi;
        CharClass tmp = {0};
        if (ps->p[ps->i] == '\\') {
            ps->i++;
            int rc = parse_escape(ps, &tmp, &hi);
            free(tmp.ranges);
            if (rc) return -1;
        } else {
            hi = ps->p[ps->i++];
        }
        if (hi < lo) return parse_fail(ps, "bad range in a class");
        c->ranges[c->n - 1].hi = (uint32_t)hi;
    }
    if (peek(ps, 0) != ']') return parse_fail(ps, "unterminated [");
    ps->i++;
    class_finish(c);
    return 0;
}

/* ?, *, +, {m}, {m,}, {m,n} after an atom (greedy only). */
static int parse_quantifier(Parser *ps, size_t *min, size_t *max)
{
    *min = *max = 1;
    uint32_t q = peek(ps, 0);
    if (q == '?') { *min = 0; ps->i++; }
    else if (q == '*') { *min = 0; *max = UNBOUNDED; ps->i++; }
    else if (q == '+') { *max = UNBOUNDED; ps->i++; }
    else if (q == '{') {
        size_t a = 0, b;
        for (ps->i++; peek(ps, 0) >= '0' && peek(ps, 0) <= '9'; ps->i++) a = a * 10 + (peek(ps, 0) - '0');
        b = a;
        if (peek(ps, 0) == ',') {
            ps->i++;
            b = UNBOUNDED;
            if (peek(ps, 0) != '}')
                for (b = 0; peek(ps, 0) >= '0' && peek(ps, 0) <= '9'; ps->i++) b = b * 10 + (peek(ps, 0) - '0');
        }
        if (peek(ps, 0) != '}' || b < a) return parse_fail(ps, "bad {m,n} quantifier");
        ps->i++;
        *min = a;
        *max = b;
    }
    if (peek(ps, 0) == '?' && q && strchr("?*+{", (int)q)) return parse_fail(ps, "lazy quantifiers are not supported");
    return 0;
}

static int parse_alternatives(Parser *ps, Alternatives *alt, int depth);

static int parse_group(Parser *ps, Node *nd, int depth)
{
    ps->i++; /* '(' */
    nd->kind = NODE_GROUP;
    if (peek(ps, 0) == '?') {
        uint32_t k = peek(ps, 1);
        if (k == '!' || k == '=') { nd->kind = NODE_LOOKAHEAD; nd->negate = k == '!'; }
        else if (k != ':') return parse_fail(ps, "unsupported group (?%c", (char)k);
        ps->i += 2;
    }
    if (parse_alternatives(ps, &nd->alt, depth + 1)) return -1;
    if (peek(ps, 0) != ')') return parse_fail(ps, "unbalanced (");
    ps->i++;
    return 0;
}

static int parse_atom(Parser *ps, Node *nd, int depth)
{
    uint32_t c = ps->p[ps->i];
    int64_t single;
    nd->kind = NODE_CLASS;
    switch (c) {
    case '(': if (parse_group(ps, nd, depth)) return -1; break;
    case '[': if (parse_class(ps, &nd->cls)) return -1; break;
    case '$': nd->kind = NODE_END; ps->i++; return 0;
    case '\\':
        ps->i++;
        if (peek(ps, 0) == 'S') { /* not white space */
            ps->i++;
            nd->cls.negate = 1;
            if (class_add(&nd->cls, 0x09, 0x0D) || class_add(&nd->cls, 0x20, 0x20)) return -1;
        } else if (parse_escape(ps, &nd->cls, &single)) {
            return -1;
        }
        class_finish(&nd->cls);
        break;
    case '^': case '.': case '*': case '+': case '?': case '{':
        return parse_fail(ps, "unsupported or misplaced '%c'", (char)c);
    default:
        ps->i++;
        if (class_add(&nd->cls, c, c)) return -1;
    }
    if (parse_quantifier(ps, &nd->min, &nd->max)) return -1;
    if (nd->kind != NODE_CLASS && (nd->min != 1 || nd->max != 1))
        return parse_fail(ps, "quantified groups are not supported");
    return 0;
}

static int parse_sequence(Parser *ps, Sequence *seq, int depth)
{
    while (ps->i < ps->n && ps->p[ps->i] != '|' && ps->p[ps->i] != ')') {
        if (grow((void **)&seq->nodes, &seq->cap, seq->n + 1, sizeof *seq->nodes)) return -1;
        if (parse_atom(ps, &seq->nodes[seq->n++], depth)) return -1;
    }
    return 0;
}

static int parse_alternatives(Parser *ps, Alternatives *alt, int depth)
{
    if (depth > 16) return parse_fail(ps, "groups nested too deeply");
    for (;;) {
        if (grow((void **)&alt->seqs, &alt->cap, alt->n + 1, sizeof *alt->seqs)) return -1;
        if (parse_sequence(ps, &alt->seqs[alt->n++], depth)) return -1;
        if (peek(ps, 0) != '|') return 0;
        ps->i++;
    }
}

Regex *regex_compile(const char *pattern, char *why, size_t why_cap)
{
    size_t len = strlen(pattern);
    Regex *re = calloc(1, sizeof *re);
    Parser ps = {calloc(len + 1, sizeof(uint32_t)), 0, 0, why, why_cap};
    if (why_cap) why[0] = 0;
    if (!re || !ps.p) {
        free(re);
        free(ps.p);
        if (why_cap) snprintf(why, why_cap, "out of memory");
        return NULL;
    }
    for (size_t at = 0; at < len;) ps.p[ps.n++] = utf8_decode((const unsigned char *)pattern, len, &at);
    re->collapsed = strstr(pattern, "\\p{") != NULL;
    int rc = parse_alternatives(&ps, &re->top, 0);
    if (rc == 0 && ps.i != ps.n) rc = parse_fail(&ps, "unbalanced )");
    free(ps.p);
    if (rc) {
        if (why_cap && !why[0]) snprintf(why, why_cap, "out of memory");
        regex_free(re);
        return NULL;
    }
    const Sequence *first = &re->top.seqs[0];
    re->lead_skips = re->top.n == 1 && first->n > 0 && first->nodes[0].kind == NODE_CLASS &&
                     first->nodes[0].max == UNBOUNDED;
    return re;
}

void regex_free(Regex *re)
{
    if (!re) return;
    free_alternatives(&re->top);
    free(re);
}

int regex_collapsed(const Regex *re) { return re->collapsed; }

uint32_t regex_unit(uint32_t cp, int collapsed)
{
    if (cp < 0x80) return cp;
    if (unicode_is_space(cp)) return 0x0B;
    return collapsed ? collapsed_unit(unicode_category(cp)) : cp;
}

/* ---- matching ----------------------------------------------------------- */

/* What remains to match after the current sequence ends (a group's tail). */
typedef struct Continuation {
    const Sequence *seq;
    int idx;
    const struct Continuation *up;
} Continuation;

typedef struct { const uint32_t *u; size_t end; } Subject;

static int match_alternatives(const Subject *s, const Alternatives *a, size_t pos, const Continuation *k,
                              size_t *out);

/* Matches seq from node idx at pos, then the continuation; the first way
 * that succeeds wins (ECMAScript order), its end in *out. */
static int match_sequence(const Subject *s, const Sequence *seq, int idx, size_t pos, const Continuation *k,
                          size_t *out)
{
    for (; idx < seq->n; idx++) {
        const Node *nd = &seq->nodes[idx];
        if (nd->kind == NODE_END) {
            if (pos != s->end) return 0;
        } else if (nd->kind == NODE_LOOKAHEAD) {
            size_t ignored;
            if (match_alternatives(s, &nd->alt, pos, NULL, &ignored) == nd->negate) return 0;
        } else if (nd->kind == NODE_GROUP) {
            Continuation after = {seq, idx + 1, k};
            return match_alternatives(s, &nd->alt, pos, &after, out);
        } else {
            size_t n = 0;
            while (n < nd->max && pos + n < s->end && class_has(&nd->cls, s->u[pos + n])) n++;
            if (n < nd->min) return 0;
            if (n > nd->min) { /* greedy: longest first, then give back one at a time */
                for (size_t j = n + 1; j-- > nd->min;)
                    if (match_sequence(s, seq, idx + 1, pos + j, k, out)) return 1;
                return 0;
            }
            pos += n;
        }
    }
    if (!k) { *out = pos; return 1; }
    return match_sequence(s, k->seq, k->idx, pos, k->up, out);
}

static int match_alternatives(const Subject *s, const Alternatives *a, size_t pos, const Continuation *k,
                              size_t *out)
{
    for (int i = 0; i < a->n; i++)
        if (match_sequence(s, &a->seqs[i], 0, pos, k, out)) return 1;
    return 0;
}

int regex_search(const Regex *re, const uint32_t *u, size_t from, size_t end, size_t *match_start,
                 size_t *match_end)
{
    Subject s = {u, end};
    const CharClass *lead = re->lead_skips ? &re->top.seqs[0].nodes[0].cls : NULL;
    for (size_t at = from; at < end;) {
        size_t e;
        if (match_alternatives(&s, &re->top, at, NULL, &e) && e > at) {
            *match_start = at;
            *match_end = e;
            return 1;
        }
        /* "X+rest" failed at `at` after X ran to at+n: from any start inside
         * that run X+ offers a subset of the same ends, so those fail too. */
        size_t n = 0;
        if (lead)
            while (at + n < end && class_has(lead, u[at + n])) n++;
        at += n ? n : 1;
    }
    return 0;
}
