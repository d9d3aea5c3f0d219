#include "unicode.h"

int unicode_category(uint32_t cp)
{
    if (cp >= 0x110000) return UCAT_C;
    int lo = 0, hi = UNICODE_N_RANGES - 1; /* last range whose start is <= cp */
    while (lo < hi) {
        int mid = (lo + hi + 1) / 2;
        if (UNICODE_RANGE_STARTS[mid] <= cp) lo = mid;
        else hi = mid - 1;
    }
    return UNICODE_RANGE_CODES[lo];
}

int unicode_is_space(uint32_t cp)
{
    if (cp < 0x80) return (cp >= 0x09 && cp <= 0x0D) || cp == 0x20;
    for (int i = 6; i < UNICODE_N_WHITE_SPACE; i++)
        if (UNICODE_WHITE_SPACE[i] == cp) return 1;
    return 0;
}

static int is_continuation(unsigned char b) { return (b & 0xC0) == 0x80; }

uint32_t utf8_decode(const unsigned char *s, size_t n, size_t *pos)
{
    size_t i = *pos;
    unsigned char b = s[i];
    int len = utf8_len_from_lead(b);
    uint32_t cp = UNICODE_REPLACEMENT;
    if (b < 0x80) {
        cp = b;
    } else if (len == 1 || (b & 0xF8) == 0xF8 || i + (size_t)len > n) {
        len = 0; /* a stray continuation byte, 0xF8..0xFF, or cut short by the end */
    } else {
        cp = b & (0x7F >> len);
        for (int k = 1; k < len; k++) {
            if (!is_continuation(s[i + k])) { len = 0; break; }
            cp = cp << 6 | (s[i + k] & 0x3F);
        }
        if (len == 0 || cp > 0x10FFFF) { cp = UNICODE_REPLACEMENT; len = 0; }
    }
    *pos = i + (len > 0 ? (size_t)len : 1);
    return cp;
}

int utf8_encode(uint32_t cp, unsigned char *out)
{
    if (cp < 0x80) { out[0] = (unsigned char)cp; return 1; }
    if (cp < 0x800) {
        out[0] = (unsigned char)(0xC0 | cp >> 6);
        out[1] = (unsigned char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (unsigned char)(0xE0 | cp >> 12);
        out[1] = (unsigned char)(0x80 | (cp >> 6 & 0x3F));
        out[2] = (unsigned char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (unsigned char)(0xF0 | cp >> 18);
    out[1] = (unsigned char)(0x80 | (cp >> 12 & 0x3F));
    out[2] = (unsigned char)(0x80 | (cp >> 6 & 0x3F));
    out[3] = (unsigned char)(0x80 | (cp & 0x3F));
    return 4;
}

int utf8_len_from_lead(unsigned char lead)
{
    static const unsigned char by_high_nibble[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};
    return by_high_nibble[lead >> 4];
}

int utf8_valid_len(const unsigned char *s, size_t n)
{
    if (n == 0) return 0;
    unsigned char b = s[0];
    if (b < 0x80) return 1;
    int len = b >= 0xC2 && b <= 0xDF ? 2 : b >= 0xE0 && b <= 0xEF ? 3 : b >= 0xF0 && b <= 0xF4 ? 4 : 0;
    if (len == 0 || (size_t)len > n) return 0;
    for (int k = 1; k < len; k++)
        if (!is_continuation(s[k])) return 0;
    if (b == 0xE0 && s[1] < 0xA0) return 0; /* overlong */
    if (b == 0xED && s[1] >= 0xA0) return 0; /* surrogate */
    if (b == 0xF0 && s[1] < 0x90) return 0; /* overlong */
    if (b == 0xF4 && s[1] >= 0x90) return 0; /* above U+10FFFF */
    return len;
}

/* GPT-2 keeps the printable bytes ! .. ~, ¡ .. ¬ and ® .. ÿ as themselves
 * and moves the other 68 bytes, in byte order, to U+0100 .. U+0143. */
static int gpt2_printable(unsigned b) { return (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE; }

uint32_t gpt2_byte_char(uint8_t b)
{
    if (gpt2_printable(b)) return b;
    if (b <= 0x20) return 256u + b;
    if (b <= 0xA0) return 256u + 33 + (b - 0x7Fu);
    return 256u + 67; /* 0xAD */
}

int gpt2_char_byte(uint32_t cp)
{
    if (cp < 256) return gpt2_printable(cp) ? (int)cp : -1;
    if (cp < 256 + 33) return (int)(cp - 256);
    if (cp < 256 + 67) return (int)(0x7F + (cp - 256 - 33));
    if (cp == 256 + 67) return 0xAD;
    return -1;
}
