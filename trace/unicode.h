/* unicode.h — what the tokenizers need to know about Unicode: UTF-8
 * decoding as llama.cpp does it, general categories (from the table that
 * scripts/gen-unicode-tables.py generates into unicode_tables.c), the
 * White_Space property, and GPT-2's byte-to-character map for byte-level BPE. */
#ifndef KV_UNICODE_H
#define KV_UNICODE_H

#include <stddef.h>
#include <stdint.h>

enum { UCAT_C = 0, UCAT_N = 1, UCAT_L = 2, UCAT_Z = 3, UCAT_M = 4, UCAT_P = 5, UCAT_S = 6 };

#define UNICODE_REPLACEMENT 0xFFFDu

/* Category code (UCAT_*) of a code point; C for unassigned and out of range. */
int unicode_category(uint32_t cp);
int unicode_is_space(uint32_t cp);

/* Decodes one code point at s[*pos] (n bytes in all) and advances *pos.  A
 * malformed sequence gives U+FFFD and advances one byte (llama.cpp's rule:
 * the lead byte fixes the length, continuation bytes must be 10xxxxxx,
 * overlong forms are accepted). */
uint32_t utf8_decode(const unsigned char *s, size_t n, size_t *pos);
/* Writes cp as UTF-8 (1..4 bytes) and returns the byte count. */
int utf8_encode(uint32_t cp, unsigned char *out);
/* Length of a UTF-8 sequence from its lead byte (1 for a continuation byte). */
int utf8_len_from_lead(unsigned char lead);
/* Length of the valid UTF-8 sequence at s (strict: no overlong forms, no
 * surrogates, at most U+10FFFF), or 0 when s[0] does not start one. */
int utf8_valid_len(const unsigned char *s, size_t n);

/* GPT-2's byte-level alphabet: byte b is written as code point gpt2_byte_char(b);
 * gpt2_char_byte maps back (-1 for a code point that stands for no byte). */
uint32_t gpt2_byte_char(uint8_t b);
int gpt2_char_byte(uint32_t cp);

/* The generated tables (unicode_tables.c). */
extern const char UNICODE_VERSION[];
extern const int UNICODE_N_RANGES;
extern const uint32_t UNICODE_RANGE_STARTS[];
extern const uint8_t UNICODE_RANGE_CODES[];
extern const uint32_t UNICODE_WHITE_SPACE[];
extern const int UNICODE_N_WHITE_SPACE;

#endif
