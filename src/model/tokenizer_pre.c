/* tokenizer_pre.c — the BPE pre-tokenizers of llama.cpp (src/llama-vocab.cpp's regex
 * lists per `tokenizer.ggml.pre`, src/unicode.cpp's unicode_regex_split), reproduced so
 * that the words, and so the token ids, are identical:
 *   - the GPT-2 and Llama-3 patterns go through llama.cpp's hand-written matchers, which
 *     differ from a true regex in corner cases; they are ported line by line;
 *   - a pattern with \p{..} runs, as in llama.cpp, over the "collapsed" text (each
 *     codepoint >= 128 replaced by one byte standing for its category, whitespace by \v)
 *     with the \p{..} rewritten to classes of those bytes plus llama.cpp's ASCII sets;
 *   - any other pattern runs over the codepoints (non-ASCII whitespace turned into \v,
 *     as llama.cpp does for std::wregex);
 * each regex refines the pieces of the previous one, matches and the text between them
 * both becoming pieces (std::regex_iterator's walk, empty matches included). */
#include "model/tokenizer_pre.h"
#include "model/tokenizer_regex.h"
#include "model/unicode.h"

#include <stdio.h>
#include <stdlib.h>

/* ------------------------------------------------------------------ regex lists */

#define R_GPT2 "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)"
#define R_CONTRACT "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])"
#define R_LLAMA3 R_CONTRACT "|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
#define R_LLAMA3_ORIG "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
#define R_QWEN2 R_CONTRACT "|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
#define R_CJK_LLM "[\u4E00-\u9FA5\u0800-\u4E00\uAC00-\uD7FF]+"
#define R_CJK_V3 "[\u4E00-\u9FA5\u3040-\u309F\u30A0-\u30FF]+"
#define R_ASCII_PUNCT_WORD "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+"
#define R_BLOOM " ?[^(\\s|.,!?\u2026\u3002\uFF0C\u3001\u0964\u06D4\u060C)]+"
#define R_LU_LL "[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]*[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]+"
#define R_LU_LL2 "[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]+[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]*"
#define R_CASE1 "[^\\r\\n\\p{L}\\p{N}]?((?=[\\p{L}])([^a-z]))*((?=[\\p{L}])([^A-Z]))+"
#define R_CASE2 "[^\\r\\n\\p{L}\\p{N}]?((?=[\\p{L}])([^a-z]))+((?=[\\p{L}])([^A-Z]))*"
#define R_TAIL3 "| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"

static const char *const RX_DEFAULT[] = {"[\\p{P}\\$\\+<=>\\^~\\|]+", R_GPT2, "\\p{N}+", "[0-9][0-9][0-9]", NULL};
static const char *const RX_GPT2[] = {R_GPT2, NULL};
static const char *const RX_LLAMA3[] = {R_LLAMA3, NULL};
static const char *const RX_JAIS2[] = {
    R_CONTRACT "|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+"
    "|\\s{512}(?!\\S)|\\s{256}(?!\\S)|\\s{128}(?!\\S)|\\s{64}(?!\\S)|\\s{32}(?!\\S)|\\s{16}(?!\\S)"
    "|\\s{8}(?!\\S)|\\s{4}(?!\\S)|\\s{1,2}(?!\\S)|\\s{1}", NULL};
/* DeepSeek-LLM's letter class is Unicode's cased letters (Lu|Ll|Lt) of an older version,
 * written here with UCNs so that no editor normalizes U+1F7D, U+2126, U+212A ... */
static const char *const RX_DEEPSEEK_LLM[] = {
    "[\r\n]",
    "\\s?[A-Za-z\u00B5\u00C0-\u00D6\u00D8-\u00F6\u00F8-\u01BA\u01BC-\u01BF\u01C4-\u0293\u0295-\u02AF"
    "\u0370-\u0373\u0376\u0377\u037B-\u037D\u037F\u0386\u0388-\u038A\u038C\u038E-\u03A1\u03A3-\u03F5"
    "\u03F7-\u0481\u048A-\u052F\u0531-\u0556\u10A0-\u10C5\u13A0-\u13F5\u13F8-\u13FD\u1C90-\u1CBA"
    "\u1CBD-\u1CBF\u1D00-\u1D2B\u1D6B-\u1D77\u1D79-\u1D9A\u1E00-\u1F15\u1F18-\u1F1D\u1F20-\u1F45"
    "\u1F48-\u1F4D\u1F50-\u1F57\u1F59\u1F5B\u1F5D\u1F5F-\u1F7D\u1F80-\u1FB4\u1FB6-\u1FBC\u1FBE"
    "\u1FC2-\u1FC4\u1FC6-\u1FCC\u1FD0-\u1FD3\u1FD6-\u1FDB\u1FE0-\u1FEC\u1FF2-\u1FF4\u1FF6-\u1FFC"
    "\u2102\u2107\u210A-\u2113\u2115\u2119-\u211D\u2124\u2126\u2128\u212A-\u212D\u212F-\u2134\u2139"
    "\u213C-\u213F\u2145-\u2149\u214E\u2183\u2184\u2C00-\u2C7B\u2C7E-\u2CE4\u2CEB-\u2CEE\u2CF2\u2CF3"
    "\uA640-\uA66D\uA680-\uA69B\uA722-\uA76F\uA771-\uA787\uA78B-\uA78E\uAB70-\uABBF\uFB00-\uFB06"
    "\uFB13-\uFB17\uFF21-\uFF3A\uFF41-\uFF5A\U00010400-\U0001044F\U000104B0-\U000104D3"
    "\U000104D8-\U000104FB\U00010C80-\U00010CB2\U00010CC0-\U00010CF2\U000118A0-\U000118DF"
    "\U0001E900-\U0001E943]+",
    "\\s?[!-/:-~\uFF01-\uFF0F\uFF1A-\uFF5E\u2018-\u201F\u3000-\u3002]+",
    "\\s+$",
    R_CJK_LLM,
    "\\p{N}+",
    NULL};
static const char *const RX_DEEPSEEK3[] = {
    "\\p{N}{1,3}", R_CJK_V3,
    R_ASCII_PUNCT_WORD "|[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+| ?[\\p{P}\\p{S}]+[\r\n]*|\\s*[\r\n]+|\\s+(?!\\S)|\\s+",
    NULL};
static const char *const RX_SPARK2_5[] = {
    "\\p{N}{1,3}", R_CJK_V3,
    R_ASCII_PUNCT_WORD "|[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+| ?[\\p{P}\\p{S}]+|[\r\n]|\\s+(?!\\S)|\\s+",
    "\\p{N}", NULL};
static const char *const RX_YOUTU[] = {
    "[\uAC00-\uD7A3\u3131-\u318E]+|[\uFF01\u2026\u201C\u201D\u2018\u2019\u2014\uFF1A\uFF1B\uFF0C\u3001-\u303F\uFE30-\uFE4F]+"
    "|[\u3105-\u312F]+|[\u4E00-\u9FA5\u3040-\u309F\u30A0-\u30FF]+",
    R_LU_LL R_CONTRACT "?|" R_LU_LL2 R_CONTRACT "?|\\p{N}" R_TAIL3, NULL};
static const char *const RX_DEEPSEEK_CODER[] = {"[\r\n]", "\\s?\\p{L}+", "\\s?\\p{P}+", R_CJK_LLM, "\\p{N}", NULL};
static const char *const RX_FALCON[] = {"[\\p{P}\\$\\+<=>\\^~\\|`]+", R_GPT2, "[0-9][0-9][0-9]", NULL};
static const char *const RX_STARCODER[] = {"\\p{N}", R_GPT2, NULL};
static const char *const RX_QWEN2[] = {R_QWEN2, NULL};
static const char *const RX_QWEN35[] = {
    R_CONTRACT "|[^\\r\\n\\p{L}\\p{N}]?[\\p{L}\\p{M}]+|\\p{N}| ?[^\\s\\p{L}\\p{M}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
    NULL};
static const char *const RX_BLOOM[] = {R_BLOOM, NULL};
static const char *const RX_VIKING[] = {R_BLOOM, "\\p{N}", NULL};
static const char *const RX_TEKKEN[] = {R_CASE1 "|" R_CASE2 "|\\p{N}" R_TAIL3, NULL};
static const char *const RX_CHAMELEON[] = {
    "<sentinel:[0-9]+>", "(IMGIMG)((A|B|C|D|E|F|G|H|I){1,4})Z", "([\\t\\n]|    |  )", "\\p{N}",
    "[\\p{P}!-/:-@\\[-`{-~]", R_GPT2, NULL};
static const char *const RX_GPT4O[] = {
    R_CASE1 R_CONTRACT "?|" R_CASE2 R_CONTRACT "?|\\p{N}{1,3}" R_TAIL3, NULL};
static const char *const RX_GRANITE_EMB[] = {
    "[^\\r\\n\\p{L}\\p{N}]?((?=[\\p{L}\\p{M}])([^a-z]))*((?=[\\p{L}\\p{M}])([^A-Z]))+" R_CONTRACT "?"
    "|[^\\r\\n\\p{L}\\p{N}]?((?=[\\p{L}\\p{M}])([^a-z]))+((?=[\\p{L}\\p{M}])([^A-Z]))*" R_CONTRACT "?"
    "|\\p{N}{1,3}" R_TAIL3, NULL};
static const char *const RX_TINY_AYA[] = {
    "\\d{1,3}(?=(?:\\d{3})*\\b)",
    R_LU_LL R_CONTRACT "?|" R_LU_LL2 R_CONTRACT "?|\\p{N}{1,3}" R_TAIL3, NULL};
static const char *const RX_SUPERBPE[] = {"\\p{N}+", "(?=(\\d{3})+(?!\\d))", NULL};
static const char *const RX_BAILINGMOE[] = {
    "'(?:[sSdDmMtT]|[lL][lL]|[vV][eE]|[rR][eE])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]|\\s+(?!\\S)|\\s+",
    NULL};
static const char *const RX_SEED_CODER[] = {
    R_CONTRACT "|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1}| ?[^\\s\\p{L}\\p{N}\\r\\n]+|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+", NULL};
static const char *const RX_UFAKZEKA[] = {
    "[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+", NULL};
static const char *const RX_LAGUNA[] = {"[^\\n]+|[\\n]+", R_QWEN2, NULL};
static const char *const RX_EXAONE_MOE[] = {
    R_CONTRACT "|[^\\r\\n\\p{L}\\p{N}]?(?:\\p{L}\\p{M}*(?: \\p{L}\\p{M}*)*)+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]?|\\s*[\\r\\n]|\\s+(?!\\S)|\\s+",
    NULL};
static const char *const RX_MINICPM5[] = {
    "\\p{N}{1,3}",
    R_CONTRACT "|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}+| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+", NULL};

/* name, regexes, ignore_merges, clean_spaces, add_bos, no_bos — as llama.cpp's
 * llama_vocab::impl::load sets them for a BPE vocabulary. */
#define E(name, rx, im, cs, ab, nb) {name, rx, im, cs, ab, nb}
static const moe_pretok_info g_pretoks[] = {
    E("default", RX_DEFAULT, 0, 1, 0, 0),
    E("minicpm5", RX_MINICPM5, 1, 1, 0, 0),
    E("llama3", RX_LLAMA3, 1, 1, 1, 0),
    E("llama-v3", RX_LLAMA3, 1, 1, 1, 0),
    E("llama-bpe", RX_LLAMA3, 1, 1, 1, 0),
    E("falcon3", RX_LLAMA3, 1, 1, 1, 0),
    E("falcon-h1", RX_LLAMA3, 1, 1, 1, 0),
    E("pixtral", RX_LLAMA3, 1, 1, 1, 0),
    E("midm-2.0", RX_LLAMA3, 1, 1, 1, 0),
    E("lfm2", RX_LLAMA3, 1, 1, 1, 0),
    E("jina-v5-nano", RX_LLAMA3, 1, 1, 1, 0),
    E("deepseek-llm", RX_DEEPSEEK_LLM, 0, 0, 0, 0),
    E("deepseek-coder", RX_DEEPSEEK_CODER, 0, 0, 0, 0),
    E("deepseek-v3", RX_DEEPSEEK3, 0, 0, 0, 0),
    E("spark2_5", RX_SPARK2_5, 0, 0, 0, 0),
    E("youtu", RX_YOUTU, 1, 0, 0, 0),
    E("falcon", RX_FALCON, 0, 1, 0, 0),
    E("mpt", RX_GPT2, 0, 1, 0, 0),
    E("starcoder", RX_STARCODER, 0, 1, 0, 0),
    E("gpt-2", RX_GPT2, 0, 1, 0, 0),
    E("phi-2", RX_GPT2, 0, 1, 0, 0),
    E("jina-es", RX_GPT2, 0, 1, 0, 0),
    E("jina-de", RX_GPT2, 0, 1, 0, 0),
    E("gigachat", RX_GPT2, 0, 1, 0, 0),
    E("jina-v2-es", RX_GPT2, 0, 1, 0, 0),
    E("jina-v2-de", RX_GPT2, 0, 1, 0, 0),
    E("a.x-4.0", RX_GPT2, 0, 1, 0, 0),
    E("mellum", RX_GPT2, 0, 1, 0, 0),
    E("modern-bert", RX_GPT2, 0, 1, 0, 0),
    E("jina-v1-en", RX_GPT2, 0, 1, 0, 0),
    E("jina-v2-code", RX_GPT2, 0, 1, 0, 0),
    E("roberta-bpe", RX_GPT2, 0, 1, 0, 0),
    E("jais-2", RX_JAIS2, 0, 1, 0, 0),
    E("refact", RX_STARCODER, 0, 1, 0, 0),
    E("command-r", RX_STARCODER, 0, 0, 0, 0),
    E("qwen2", RX_QWEN2, 0, 0, 0, 0),
    E("deepseek-r1-qwen", RX_QWEN2, 0, 0, 0, 0),
    E("kormo", RX_QWEN2, 0, 0, 0, 0),
    E("f2llmv2", RX_QWEN2, 0, 0, 0, 0),
    E("qwen35", RX_QWEN35, 0, 0, 0, 0),
    E("stablelm2", RX_QWEN2, 0, 1, 0, 0),
    E("olmo", RX_GPT2, 0, 1, 0, 0),
    E("dbrx", RX_LLAMA3, 0, 1, 0, 0),
    E("smaug-bpe", RX_LLAMA3, 0, 1, 0, 0),
    E("poro-chat", RX_BLOOM, 0, 0, 0, 0),
    E("glm4", RX_LLAMA3, 0, 1, 0, 1),
    E("chatglm-bpe", RX_LLAMA3, 0, 1, 0, 1),
    E("viking", RX_VIKING, 0, 0, 0, 0),
    E("jais", RX_GPT2, 0, 1, 0, 0),
    E("tekken", RX_TEKKEN, 1, 0, 1, 0),
    E("smollm", RX_STARCODER, 0, 0, 0, 0),
    E("codeshell", RX_STARCODER, 0, 1, 0, 0),
    E("bloom", RX_BLOOM, 0, 1, 0, 0),
    E("gpt3-finnish", RX_BLOOM, 0, 1, 0, 0),
    E("exaone", RX_STARCODER, 0, 1, 0, 0),
    E("exaone4", RX_GPT2, 0, 1, 0, 0),
    E("exaone-moe", RX_EXAONE_MOE, 0, 1, 0, 0),
    E("chameleon", RX_CHAMELEON, 0, 0, 1, 0),
    E("minerva-7b", RX_STARCODER, 0, 1, 0, 0),
    E("megrez", RX_QWEN2, 0, 1, 0, 0),
    E("gpt-4o", RX_GPT4O, 0, 0, 0, 0),
    E("llama4", RX_GPT4O, 0, 0, 0, 0),
    E("kanana2", RX_GPT4O, 0, 0, 0, 0),
    E("talkie", RX_GPT4O, 0, 0, 0, 0),
    E("granite-embed-multi-97m", RX_GRANITE_EMB, 1, 0, 0, 0),
    E("tiny_aya", RX_TINY_AYA, 0, 0, 0, 0),
    E("cohere2moe", RX_TINY_AYA, 0, 0, 0, 0),
    E("superbpe", RX_SUPERBPE, 0, 0, 0, 0),
    E("trillion", RX_GPT2, 0, 0, 0, 0),
    E("granite-docling", RX_GPT2, 0, 0, 0, 0),
    E("bailingmoe", RX_BAILINGMOE, 0, 0, 0, 0),
    E("bailingmoe2", RX_BAILINGMOE, 0, 0, 0, 0),
    E("llada-moe", RX_BAILINGMOE, 0, 0, 0, 0),
    E("seed-coder", RX_SEED_CODER, 0, 0, 0, 0),
    E("hunyuan", RX_QWEN2, 0, 0, 0, 0),
    E("hunyuan-dense", RX_DEEPSEEK3, 0, 0, 0, 0),
    E("hy_v4", RX_DEEPSEEK3, 0, 0, 0, 0),
    E("joyai-llm", RX_DEEPSEEK3, 0, 0, 0, 0),
    E("ufakzeka", RX_UFAKZEKA, 0, 0, 0, 0),
    E("grok-2", RX_QWEN2, 0, 0, 0, 0),
    E("laguna", RX_LAGUNA, 0, 0, 0, 0),
    E("minimax-m2", RX_GPT4O, 0, 0, 0, 0),
    E("solar-open", RX_QWEN2, 0, 0, 0, 0),
    E("mellum2", RX_STARCODER, 0, 1, 0, 0),
    /* known to llama.cpp, but needing machinery this port does not have (custom splitters,
     * SentencePiece-style BPE without byte encoding, normalizers) */
    E("kimi-k2", NULL, 0, 0, 0, 0),
    E("afmoe", NULL, 0, 0, 0, 0),
    E("gemma4", NULL, 0, 0, 0, 0),
    E("granite-embed-multi-311m", NULL, 0, 0, 0, 0),
    E("sarvam-moe", NULL, 0, 0, 0, 0),
    E("whitespace", NULL, 0, 0, 0, 0),
};
#undef E

const moe_pretok_info *moe_pretok_find(const char *name) {
    if (!name || !*name) name = "default"; /* llama.cpp warns and uses 'default' */
    for (size_t i = 0; i < MOE_ARRAY_LEN(g_pretoks); i++)
        if (strcmp(g_pretoks[i].name, name) == 0) return &g_pretoks[i];
    return NULL;
}

/* ------------------------------------------------------------------ compiled form */

enum { RK_GPT2, RK_LLAMA3, RK_COLLAPSED, RK_CODEPOINTS };

typedef struct {
    int kind;
    moe_regex *re; /* RK_COLLAPSED, RK_CODEPOINTS */
} pre_regex;

struct moe_pretok {
    pre_regex *rx;
    size_t n_rx;
    bool need_collapsed;
};

/* llama.cpp's k_ucat_enum / k_ucat_cpt / k_ucat_map: the categories a pattern may name,
 * the byte standing for each in the collapsed text, and the ASCII members (sic: '~' is
 * missing from \p{S}, as in llama.cpp). */
typedef struct { const char *pat; uint16_t flag; } ucat;
static const ucat g_ucats[] = {
    {"\\p{N}", MOE_UCP_NUMBER}, {"\\p{L}", MOE_UCP_LETTER}, {"\\p{P}", MOE_UCP_PUNCTUATION},
    {"\\p{M}", MOE_UCP_MARK},   {"\\p{S}", MOE_UCP_SYMBOL}, {"\\p{Lu}", MOE_UCP_LETTER},
    {"\\p{Ll}", MOE_UCP_LETTER}, {"\\p{Lt}", MOE_UCP_LETTER}, {"\\p{Lm}", MOE_UCP_LETTER},
    {"\\p{Lo}", MOE_UCP_LETTER},
};

static unsigned char collapsed_byte(uint16_t category) {
    switch (category) {
    case MOE_UCP_NUMBER: return 0xD1;
    case MOE_UCP_LETTER: return 0xD2;
    case MOE_UCP_PUNCTUATION: return 0xD3;
    case MOE_UCP_MARK: return 0xD4;
    case MOE_UCP_SYMBOL: return 0xD5;
    default: return 0xD0;
    }
}

static const char *ascii_members(uint16_t category) {
    switch (category) {
    case MOE_UCP_NUMBER: return "0-9";
    case MOE_UCP_LETTER: return "A-Za-z";
    case MOE_UCP_PUNCTUATION: return "!-#%-*,-/:-;?-@\\[-\\]_\\{\\}";
    case MOE_UCP_SYMBOL: return "\\$\\+<->^`\\|";
    default: return "";
    }
}

static bool uses_categories(const char *rx) {
    for (size_t i = 0; i < MOE_ARRAY_LEN(g_ucats); i++)
        if (strstr(rx, g_ucats[i].pat)) return true;
    return false;
}

/* A growable array of units. */
typedef struct { uint32_t *v; size_t n, cap; } uvec;
static bool uvec_push(uvec *u, uint32_t x) {
    if (u->n == u->cap) {
        size_t nc = u->cap ? 2 * u->cap : 256;
        uint32_t *p = realloc(u->v, nc * sizeof *p);
        if (!p) return false;
        u->v = p;
        u->cap = nc;
    }
    u->v[u->n++] = x;
    return true;
}

/* The rewrite of unicode_regex_split: \p{X} -> [<byte><ascii set>] (no brackets inside a
 * class), tracking '[' ... ']' the way llama.cpp does. */
static moe_regex *compile_collapsed(const char *rx, const char *what) {
    size_t n = strlen(rx);
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)rx[i] >= 0x80) {
            moe_error(MOE_ERR_UNSUPPORTED, "%s: regex mixes unicode categories and non-ASCII characters", what);
            return NULL;
        }
    uvec u = {0};
    bool inside = false, ok = true;
    for (size_t i = 0; i < n && ok; i++) {
        if (rx[i] == '[' && (i == 0 || rx[i - 1] != '\\')) { ok = uvec_push(&u, '['); inside = true; continue; }
        if (inside && rx[i] == ']' && rx[i - 1] != '\\') { ok = uvec_push(&u, ']'); inside = false; continue; }
        if (rx[i] == '\\' && i + 3 < n && rx[i + 1] == 'p' && rx[i + 2] == '{') {
            const char *close = strchr(rx + i + 3, '}');
            if (close && (size_t)(close - rx) <= i + 10) {
                size_t len = (size_t)(close - rx) - i + 1;
                const ucat *hit = NULL;
                for (size_t k = 0; k < MOE_ARRAY_LEN(g_ucats); k++)
                    if (strlen(g_ucats[k].pat) == len && memcmp(g_ucats[k].pat, rx + i, len) == 0) hit = &g_ucats[k];
                if (hit) {
                    if (!inside) ok = ok && uvec_push(&u, '[');
                    ok = ok && uvec_push(&u, collapsed_byte(hit->flag));
                    for (const char *a = ascii_members(hit->flag); *a && ok; a++) ok = uvec_push(&u, (unsigned char)*a);
                    if (!inside) ok = ok && uvec_push(&u, ']');
                    i += len - 1;
                    continue;
                }
            }
        }
        ok = uvec_push(&u, (unsigned char)rx[i]);
    }
    moe_regex *re = NULL;
    if (!ok) moe_error(MOE_ERR_NOMEM, "%s: out of memory", what);
    else re = moe_regex_compile(u.v, u.n, what);
    free(u.v);
    return re;
}

static moe_regex *compile_codepoints(const char *rx, const char *what) {
    uint32_t *cp;
    size_t n;
    if (!moe_utf8_decode_all(rx, strlen(rx), &cp, &n)) return NULL;
    moe_regex *re = moe_regex_compile(cp, n, what);
    free(cp);
    return re;
}

moe_pretok *moe_pretok_create(const moe_pretok_info *info) {
    if (!info || !info->regexes) {
        moe_error(MOE_ERR_UNSUPPORTED, "pre-tokenizer '%s' is not supported", info ? info->name : "?");
        return NULL;
    }
    moe_pretok *p = moe_calloc(1, sizeof *p);
    if (!p) return NULL;
    size_t n = 0;
    while (info->regexes[n]) n++;
    p->rx = moe_calloc(n ? n : 1, sizeof *p->rx);
    if (!p->rx) { free(p); return NULL; }
    p->n_rx = n;
    char what[96];
    for (size_t i = 0; i < n; i++) {
        const char *rx = info->regexes[i];
        pre_regex *r = &p->rx[i];
        snprintf(what, sizeof what, "pre-tokenizer '%s', regex %zu", info->name, i + 1);
        if (strcmp(rx, R_GPT2) == 0) { r->kind = RK_GPT2; continue; }
        if (strcmp(rx, R_LLAMA3) == 0 || strcmp(rx, R_LLAMA3_ORIG) == 0) { r->kind = RK_LLAMA3; continue; }
        if (uses_categories(rx)) {
            r->kind = RK_COLLAPSED;
            r->re = compile_collapsed(rx, what);
            p->need_collapsed = true;
        } else {
            r->kind = RK_CODEPOINTS;
            r->re = compile_codepoints(rx, what);
        }
        if (!r->re) { moe_pretok_free(p); return NULL; }
    }
    return p;
}

void moe_pretok_free(moe_pretok *p) {
    if (!p) return;
    for (size_t i = 0; i < p->n_rx; i++) moe_regex_free(p->rx[i].re);
    free(p->rx);
    free(p);
}

/* ------------------------------------------------------------------ splitting */

typedef struct { size_t *v; size_t n, cap; bool oom; } svec;
static void svec_push(svec *s, size_t x) {
    if (x == 0 || s->oom) return; /* an empty piece adds nothing to the words */
    if (s->n == s->cap) {
        size_t nc = s->cap ? 2 * s->cap : 64;
        size_t *p = realloc(s->v, nc * sizeof *p);
        if (!p) { s->oom = true; return; }
        s->v = p;
        s->cap = nc;
    }
    s->v[s->n++] = x;
}

/* The state of llama.cpp's hand-written matchers over one piece [ini, end). */
typedef struct {
    const uint32_t *cpt;
    size_t ini, end, prev_end;
    svec *out;
} cm;

#define OUT_OF_RANGE 0xFFFFFFFFu
static uint32_t cm_cpt(const cm *c, size_t pos) { return pos >= c->ini && pos < c->end ? c->cpt[pos] : OUT_OF_RANGE; }
/* 0 (no flag at all) outside the piece, unlike any codepoint's flags */
static uint16_t cm_flags(const cm *c, size_t pos) { return pos >= c->ini && pos < c->end ? moe_ucp_flags(c->cpt[pos]) : 0; }
static size_t cm_add(cm *c, size_t end) {
    size_t len = end - c->prev_end;
    svec_push(c->out, len);
    c->prev_end = end;
    return len;
}

#define F_WS MOE_UCP_WHITESPACE
#define F_L MOE_UCP_LETTER
#define F_N MOE_UCP_NUMBER

/* 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S) — llama.cpp's
 * unicode_regex_split_custom_gpt2, step by step. */
static void split_gpt2(cm *c) {
    for (size_t pos = c->ini; pos < c->end;) {
        uint32_t cpt = cm_cpt(c, pos);
        uint16_t flags = cm_flags(c, pos);
        if (cpt == '\'' && pos + 1 < c->end) {
            uint32_t nx = cm_cpt(c, pos + 1);
            if (nx == 's' || nx == 't' || nx == 'm' || nx == 'd') { pos += cm_add(c, pos + 2); continue; }
            if (pos + 2 < c->end) {
                uint32_t nn = cm_cpt(c, pos + 2);
                if ((nx == 'r' && nn == 'e') || (nx == 'v' && nn == 'e') || (nx == 'l' && nn == 'l')) {
                    pos += cm_add(c, pos + 3);
                    continue;
                }
            }
        }
        uint16_t f2 = cpt == ' ' ? cm_flags(c, pos + 1) : flags;
        if (f2 & F_L) {
            pos += cpt == ' ';
            while (f2 & F_L) f2 = cm_flags(c, ++pos);
            cm_add(c, pos);
            continue;
        }
        if (f2 & F_N) {
            pos += cpt == ' ';
            while (f2 & F_N) f2 = cm_flags(c, ++pos);
            cm_add(c, pos);
            continue;
        }
        if (!(f2 & (F_WS | F_L | F_N)) && f2) {
            pos += cpt == ' ';
            while (!(f2 & (F_WS | F_L | F_N)) && f2) f2 = cm_flags(c, ++pos);
            cm_add(c, pos);
            continue;
        }
        size_t nws = 0;
        while (cm_flags(c, pos + nws) & F_WS) nws++;
        if (nws > 1 && cm_cpt(c, pos + nws) != OUT_OF_RANGE) { /* \s+(?!\S) */
            pos += nws - 1;
            cm_add(c, pos);
            continue;
        }
        if (nws > 0) {
            pos += nws;
            cm_add(c, pos);
            continue;
        }
        cm_add(c, ++pos); /* no match */
    }
}

/* (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*
 * |\s*[\r\n]+|\s+(?!\S)|\s+ — llama.cpp's unicode_regex_split_custom_llama3. */
static void split_llama3(cm *c) {
    for (size_t pos = c->ini; pos < c->end;) {
        uint32_t cpt = cm_cpt(c, pos);
        uint16_t flags = cm_flags(c, pos);
        if (cpt == '\'' && pos + 1 < c->end) {
            uint32_t nx = moe_ucp_tolower(cm_cpt(c, pos + 1));
            if (nx == 's' || nx == 't' || nx == 'm' || nx == 'd') { pos += cm_add(c, pos + 2); continue; }
            if (pos + 2 < c->end) {
                uint32_t nn = moe_ucp_tolower(cm_cpt(c, pos + 2));
                if ((nx == 'r' && nn == 'e') || (nx == 'v' && nn == 'e') || (nx == 'l' && nn == 'l')) {
                    pos += cm_add(c, pos + 3);
                    continue;
                }
            }
        }
        if (!(cpt == '\r' || cpt == '\n' || (flags & F_N))) {
            if ((flags & F_L) || (cm_flags(c, pos + 1) & F_L)) { /* one or more letters */
                pos++;
                while (cm_flags(c, pos) & F_L) pos++;
                cm_add(c, pos);
                continue;
            }
        }
        if (flags & F_N) { /* \p{N}{1,3} */
            size_t ini = pos;
            while (cm_flags(c, pos) & F_N) {
                if (++pos - ini >= 3) {
                    cm_add(c, pos);
                    ini = pos;
                }
            }
            cm_add(c, pos);
            continue;
        }
        uint16_t f2 = cpt == ' ' ? cm_flags(c, pos + 1) : flags;
        if (!(f2 & (F_WS | F_L | F_N)) && flags) { /* llama.cpp tests `flags` here, not f2 */
            pos += cpt == ' ';
            while (!(f2 & (F_WS | F_L | F_N)) && f2) f2 = cm_flags(c, ++pos);
            uint32_t c2 = cm_cpt(c, pos);
            while (c2 == '\r' || c2 == '\n') c2 = cm_cpt(c, ++pos);
            cm_add(c, pos);
            continue;
        }
        size_t nws = 0, last_rn = 0;
        while (cm_flags(c, pos + nws) & F_WS) {
            uint32_t c2 = cm_cpt(c, pos + nws);
            if (c2 == '\r' || c2 == '\n') last_rn = pos + nws + 1;
            nws++;
        }
        if (last_rn > 0) { /* \s*[\r\n]+ */
            pos = last_rn;
            cm_add(c, pos);
            continue;
        }
        if (nws > 1 && cm_cpt(c, pos + nws) != OUT_OF_RANGE) {
            pos += nws - 1;
            cm_add(c, pos);
            continue;
        }
        if (nws > 0) {
            pos += nws;
            cm_add(c, pos);
            continue;
        }
        cm_add(c, ++pos);
    }
}

/* std::regex_iterator over one piece [ini, end): matches and the gaps between them. */
static int split_regex(const moe_regex *re, const uint32_t *u, size_t ini, size_t end, svec *out) {
    size_t last = ini, from = ini, ms, me;
    for (;;) {
        int r = moe_regex_search(re, u, ini, end, from, false, false, &ms, &me);
        if (r < 0) return -1;
        if (r == 0) break;
        for (;;) {
            svec_push(out, ms - last);
            svec_push(out, me - ms);
            last = me;
            if (me > ms) { from = me; break; }
            /* an empty match: first a non-empty one at the same place, else move on */
            if (me == end) { from = end + 1; break; }
            r = moe_regex_search(re, u, ini, end, me, true, true, &ms, &me);
            if (r < 0) return -1;
            if (r == 0) { from = last + 1; break; }
        }
        if (from > end) break;
    }
    svec_push(out, end - last);
    return 0;
}

moe_status moe_pretok_split(const moe_pretok *p, const uint32_t *cpt, size_t n, size_t **lens, size_t *n_words) {
    *lens = NULL;
    *n_words = 0;
    if (n == 0) return MOE_OK;
    uint32_t *collapsed = NULL, *wide = NULL;
    svec cur = {0}, next = {0};
    moe_status st = MOE_OK;
    svec_push(&cur, n);
    for (size_t i = 0; i < p->n_rx && st == MOE_OK; i++) {
        const pre_regex *r = &p->rx[i];
        const uint32_t *units = NULL;
        if (r->kind == RK_COLLAPSED) {
            if (!collapsed) {
                collapsed = moe_malloc(n * sizeof *collapsed);
                if (!collapsed) { st = MOE_ERR_NOMEM; break; }
                for (size_t k = 0; k < n; k++) {
                    uint32_t c = cpt[k];
                    if (c < 128) { collapsed[k] = c; continue; }
                    uint16_t f = moe_ucp_flags(c);
                    collapsed[k] = f & MOE_UCP_WHITESPACE ? 0x0B : collapsed_byte(f & MOE_UCP_CATEGORIES);
                }
            }
            units = collapsed;
        } else if (r->kind == RK_CODEPOINTS) {
            if (!wide) {
                wide = moe_malloc(n * sizeof *wide);
                if (!wide) { st = MOE_ERR_NOMEM; break; }
                for (size_t k = 0; k < n; k++)
                    wide[k] = cpt[k] > 0x7F && (moe_ucp_flags(cpt[k]) & MOE_UCP_WHITESPACE) ? 0x0B : cpt[k];
            }
            units = wide;
        }
        next.n = 0;
        size_t start = 0;
        for (size_t k = 0; k < cur.n; k++) {
            size_t end = start + cur.v[k];
            if (r->kind == RK_GPT2 || r->kind == RK_LLAMA3) {
                cm c = {cpt, start, end, start, &next};
                if (r->kind == RK_GPT2) split_gpt2(&c);
                else split_llama3(&c);
            } else if (split_regex(r->re, units, start, end, &next) < 0) {
                st = moe_last_status();
                break;
            }
            start = end;
        }
        if (next.oom) st = moe_error(MOE_ERR_NOMEM, "out of memory pre-tokenizing");
        svec t = cur;
        cur = next;
        next = t;
    }
    free(collapsed);
    free(wide);
    free(next.v);
    if (cur.oom && st == MOE_OK) st = moe_error(MOE_ERR_NOMEM, "out of memory pre-tokenizing");
    if (st != MOE_OK) {
        free(cur.v);
        return st;
    }
    *lens = cur.v;
    *n_words = cur.n;
    return MOE_OK;
}
