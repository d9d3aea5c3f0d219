/* regex.h — the small regular-expression engine behind the pre-tokenizers.
 *
 * It matches the way llama.cpp's std::regex does (ECMAScript: ordered
 * alternatives, greedy quantifiers, backtracking), over arrays of 32-bit
 * units, and knows only what the pre-tokenizer patterns use: literals,
 * classes [..] [^..] with ranges, \s \S \d \r \n \t, \p{L} \p{N} \p{P} \p{S}
 * \p{M} (and \p{Lu} .. \p{Lo}, all meaning \p{L}), groups (?:..) and (..)
 * without quantifiers, lookahead (?!..) (?=..), ?, *, +, {m}, {m,}, {m,n},
 * and $ (end of the text searched).
 *
 * Like llama.cpp, a pattern with \p{..} is matched over "collapsed" units:
 * ASCII stays itself, other white space becomes 0x0B and every other code
 * point becomes 0xD0 + its category (0xD1 N, 0xD2 L, 0xD3 P, 0xD4 M, 0xD5 S,
 * 0xD0 the rest); \p{X} then means that unit or X's ASCII members (llama.cpp's
 * table, in which '~' is neither P nor S).  Other patterns see code points,
 * with non-ASCII white space as 0x0B (regex_unit() makes both kinds). */
#ifndef KV_REGEX_H
#define KV_REGEX_H

#include <stddef.h>
#include <stdint.h>

typedef struct Regex Regex;

/* NULL on a pattern outside the subset, with the reason in why. */
Regex *regex_compile(const char *pattern, char *why, size_t why_cap);
void regex_free(Regex *re);

/* Whether the pattern has \p{..} and so matches collapsed units. */
int regex_collapsed(const Regex *re);
/* The unit a code point becomes for a collapsed or a plain pattern. */
uint32_t regex_unit(uint32_t cp, int collapsed);

/* The leftmost non-empty match in u[from, end), as std::regex_search finds it:
 * returns 1 and [*match_start, *match_end), or 0 when there is none. */
int regex_search(const Regex *re, const uint32_t *u, size_t from, size_t end, size_t *match_start,
                 size_t *match_end);

#endif
