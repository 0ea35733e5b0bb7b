/* tokenizer_regex.h — a small backtracking regex engine for the pre-tokenizer patterns:
 * the ECMAScript subset llama.cpp's patterns use, with std::regex's matching semantics
 * (leftmost match, ordered alternation, greedy quantifiers, atomic lookahead), over
 * arrays of 32-bit units (bytes of llama.cpp's "collapsed" text, or codepoints). */
#ifndef MOE_MODEL_TOKENIZER_REGEX_H
#define MOE_MODEL_TOKENIZER_REGEX_H

#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>

typedef struct moe_regex moe_regex;

/* Compiles a pattern given as units. Supported: literals, escapes \r \n \t \v \f \0
 * \xHH \uHHHH and escaped punctuation, classes [...] / [^...] with ranges and \s \S \d \D
 * \w \W, '.', '^', '$', \b \B, groups ( ) (?: ), lookahead (?= ) (?! ), alternation, and
 * the quantifiers ? * + {n} {n,} {n,m}, each optionally lazy (?). \s is the ASCII set
 * std::regex uses in the "C" locale ([\t\n\v\f\r ]). Returns NULL with an error naming
 * `what` on a syntax error. */
moe_regex *moe_regex_compile(const uint32_t *pat, size_t n, const char *what);
void moe_regex_free(moe_regex *re);

/* Finds the leftmost match in text[from, end) whose start is >= from; `begin` is where
 * the searched sequence starts (for ^ and \b). With `anchored` the match must start at
 * `from`; with `not_null` an empty match is refused. Returns 1 and sets [*ms, *me) when
 * found, 0 when not, -1 when the pattern needed more nesting than the engine allows
 * (error recorded). */
int moe_regex_search(const moe_regex *re, const uint32_t *text, size_t begin, size_t end,
                     size_t from, bool anchored, bool not_null, size_t *ms, size_t *me);

#endif
