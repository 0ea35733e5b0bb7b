/* unicode.h — the Unicode the tokenizers need: UTF-8 decoding that never fails (as
 * llama.cpp's unicode_cpts_from_utf8), codepoint flags from the generated tables
 * (unicode_data.c), lower-casing, and GPT-2's byte <-> codepoint map. */
#ifndef MOE_MODEL_UNICODE_H
#define MOE_MODEL_UNICODE_H

#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>

/* Codepoint flags, the same bits as llama.cpp's unicode_cpt_flags: one general-category
 * bit (low byte) plus White_Space. MOE_UCP_UNDEFINED is Cn (unassigned). */
enum {
    MOE_UCP_UNDEFINED   = 0x0001,
    MOE_UCP_NUMBER      = 0x0002, /* \p{N} */
    MOE_UCP_LETTER      = 0x0004, /* \p{L} */
    MOE_UCP_SEPARATOR   = 0x0008, /* \p{Z} */
    MOE_UCP_MARK        = 0x0010, /* \p{M} */
    MOE_UCP_PUNCTUATION = 0x0020, /* \p{P} */
    MOE_UCP_SYMBOL      = 0x0040, /* \p{S} */
    MOE_UCP_CONTROL     = 0x0080, /* \p{C} */
    MOE_UCP_CATEGORIES  = 0x00FF,
    MOE_UCP_WHITESPACE  = 0x0100, /* White_Space property */
};

#define MOE_UCP_MAX 0x110000u
#define MOE_UCP_REPLACEMENT 0xFFFDu

/* Generated tables (unicode_data.c). */
typedef struct { uint32_t start; uint16_t flags; } moe_ucd_run;
extern const char moe_ucd_version[];
extern const moe_ucd_run moe_ucd_runs[];
extern const size_t moe_ucd_n_runs;
extern const uint32_t moe_ucd_whitespace[];
extern const size_t moe_ucd_n_whitespace;
extern const uint32_t moe_ucd_lower[][2];
extern const size_t moe_ucd_n_lower;

/* Flags of a codepoint; MOE_UCP_UNDEFINED beyond U+10FFFF. */
uint16_t moe_ucp_flags(uint32_t cpt);
/* Simple lower-case mapping (the codepoint itself when it has none). */
uint32_t moe_ucp_tolower(uint32_t cpt);

/* Length of the UTF-8 sequence a lead byte announces (1 for continuation bytes), as
 * llama.cpp's unicode_len_utf8: used to cut text into symbols without validating it. */
static inline size_t moe_utf8_len(unsigned char c) {
    static const unsigned char lookup[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};
    return lookup[c >> 4];
}

/* Decodes one codepoint at s[*off] (*off < n) and advances *off. Invalid input (a stray
 * continuation byte, a truncated sequence, a lead byte F8..FF, or a value above U+10FFFF)
 * yields U+FFFD and advances one byte, as llama.cpp does; like llama.cpp, overlong forms
 * and surrogates are accepted. Never reads past s[n-1]. */
uint32_t moe_utf8_decode(const char *s, size_t n, size_t *off);
/* Decodes all of s: *out gets a malloc'ed array of *n_out codepoints (NULL when n == 0).
 * Returns false on allocation failure (error recorded). */
bool moe_utf8_decode_all(const char *s, size_t n, uint32_t **out, size_t *n_out);
/* Encodes cpt (≤ U+10FFFF) into buf (4 bytes); returns the length. */
size_t moe_utf8_encode(uint32_t cpt, char buf[4]);

/* GPT-2's byte-level map: every byte has a printable codepoint (bytes 0x21-0x7E,
 * 0xA1-0xAC, 0xAE-0xFF are their own codepoint, the others count up from U+0100). */
uint32_t moe_gpt2_byte_to_cpt(uint8_t byte);
/* The byte of a codepoint of that map, -1 when the codepoint is not in it. */
int moe_gpt2_cpt_to_byte(uint32_t cpt);

#endif
