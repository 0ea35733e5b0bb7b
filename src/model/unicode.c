/* unicode.c — codepoint flags and lower-casing over the generated tables, UTF-8 decoding
 * with llama.cpp's handling of invalid bytes, and GPT-2's byte-level map. */
#include "model/unicode.h"
#include "core/common.h"

#include <stdlib.h>

static bool is_whitespace(uint32_t cpt) {
    size_t lo = 0, hi = moe_ucd_n_whitespace;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (moe_ucd_whitespace[mid] < cpt) lo = mid + 1;
        else hi = mid;
    }
    return lo < moe_ucd_n_whitespace && moe_ucd_whitespace[lo] == cpt;
}

uint16_t moe_ucp_flags(uint32_t cpt) {
    if (cpt >= MOE_UCP_MAX) return MOE_UCP_UNDEFINED;
    /* last run whose start <= cpt (runs[0].start == 0) */
    size_t lo = 0, hi = moe_ucd_n_runs;
    while (hi - lo > 1) {
        size_t mid = (lo + hi) / 2;
        if (moe_ucd_runs[mid].start <= cpt) lo = mid;
        else hi = mid;
    }
    uint16_t f = moe_ucd_runs[lo].flags;
    if (is_whitespace(cpt)) f |= MOE_UCP_WHITESPACE;
    return f;
}

uint32_t moe_ucp_tolower(uint32_t cpt) {
    size_t lo = 0, hi = moe_ucd_n_lower;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (moe_ucd_lower[mid][0] < cpt) lo = mid + 1;
        else hi = mid;
    }
    return lo < moe_ucd_n_lower && moe_ucd_lower[lo][0] == cpt ? moe_ucd_lower[lo][1] : cpt;
}

uint32_t moe_utf8_decode(const char *str, size_t n, size_t *off) {
    const unsigned char *s = (const unsigned char *)str + *off;
    size_t left = n - *off;
    unsigned c = s[0];
    if (c < 0x80) { *off += 1; return c; }
    /* same acceptance as llama.cpp's unicode_cpt_from_utf8: the lead byte's high bits pick
     * the length, each following byte must be 10xxxxxx, nothing else is checked */
    size_t len = (c & 0x40) == 0 ? 0 : (c & 0x20) == 0 ? 2 : (c & 0x10) == 0 ? 3 : (c & 0x08) == 0 ? 4 : 0;
    if (len == 0 || len > left) goto invalid;
    uint32_t cpt = c & (0x7F >> len);
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80) goto invalid;
        cpt = (cpt << 6) | (s[i] & 0x3F);
    }
    /* F5..F7 leads decode past U+10FFFF, which llama.cpp cannot re-encode (it throws);
     * treat them as the invalid bytes they are */
    if (cpt >= MOE_UCP_MAX) goto invalid;
    *off += len;
    return cpt;
invalid:
    *off += 1;
    return MOE_UCP_REPLACEMENT;
}

bool moe_utf8_decode_all(const char *s, size_t n, uint32_t **out, size_t *n_out) {
    *out = NULL;
    *n_out = 0;
    if (n == 0) return true;
    if (n > SIZE_MAX / sizeof(uint32_t)) {
        moe_error(MOE_ERR_NOMEM, "text of %zu bytes is too long to decode", n);
        return false;
    }
    uint32_t *c = moe_malloc(n * sizeof *c); /* at most one codepoint per byte */
    if (!c) return false;
    size_t k = 0;
    for (size_t off = 0; off < n;) c[k++] = moe_utf8_decode(s, n, &off);
    *out = c;
    *n_out = k;
    return true;
}

size_t moe_utf8_encode(uint32_t cpt, char buf[4]) {
    unsigned char *b = (unsigned char *)buf;
    if (cpt < 0x80) { b[0] = (unsigned char)cpt; return 1; }
    if (cpt < 0x800) {
        b[0] = (unsigned char)(0xC0 | (cpt >> 6));
        b[1] = (unsigned char)(0x80 | (cpt & 0x3F));
        return 2;
    }
    if (cpt >= MOE_UCP_MAX) cpt = MOE_UCP_REPLACEMENT; /* not encodable: callers never pass one */
    if (cpt < 0x10000) {
        b[0] = (unsigned char)(0xE0 | (cpt >> 12));
        b[1] = (unsigned char)(0x80 | ((cpt >> 6) & 0x3F));
        b[2] = (unsigned char)(0x80 | (cpt & 0x3F));
        return 3;
    }
    b[0] = (unsigned char)(0xF0 | (cpt >> 18));
    b[1] = (unsigned char)(0x80 | ((cpt >> 12) & 0x3F));
    b[2] = (unsigned char)(0x80 | ((cpt >> 6) & 0x3F));
    b[3] = (unsigned char)(0x80 | (cpt & 0x3F));
    return 4;
}

/* GPT-2 (bytes_to_unicode in OpenAI's encoder.py): the 188 printable bytes keep their
 * value; the 68 others (0x00-0x20, 0x7F-0xA0, 0xAD) get U+0100.. in byte order. */
uint32_t moe_gpt2_byte_to_cpt(uint8_t b) {
    if ((b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE) return b;
    if (b <= 0x20) return 0x100 + b;
    if (b <= 0xA0) return 0x100 + 33 + (b - 0x7F);
    return 0x100 + 67; /* 0xAD */
}

int moe_gpt2_cpt_to_byte(uint32_t c) {
    if ((c >= 0x21 && c <= 0x7E) || (c >= 0xA1 && c <= 0xAC) || (c >= 0xAE && c <= 0xFF)) return (int)c;
    if (c >= 0x100 && c < 0x100 + 33) return (int)(c - 0x100);
    if (c >= 0x100 + 33 && c < 0x100 + 67) return (int)(c - 0x100 - 33 + 0x7F);
    if (c == 0x100 + 67) return 0xAD;
    return -1;
}
