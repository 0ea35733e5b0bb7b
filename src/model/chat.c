/* chat.c — chat templates: recognise a model's template family from substrings of its
 * Jinja text and format a conversation in C, following llama.cpp's
 * llm_chat_detect_template / llm_chat_apply_template rule for rule, so that a prompt
 * built here tokenizes to what llama.cpp would feed the model. */
#include "model/chat.h"

#include "core/common.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>

static const char *const g_names[CHAT_COUNT] = {
    [CHAT_CHATML] = "chatml",
    [CHAT_LLAMA2] = "llama2",
    [CHAT_LLAMA2_SYS] = "llama2-sys",
    [CHAT_LLAMA2_SYS_BOS] = "llama2-sys-bos",
    [CHAT_LLAMA2_SYS_STRIP] = "llama2-sys-strip",
    [CHAT_MISTRAL_V1] = "mistral-v1",
    [CHAT_MISTRAL_V3] = "mistral-v3",
    [CHAT_MISTRAL_V3_TEKKEN] = "mistral-v3-tekken",
    [CHAT_MISTRAL_V7] = "mistral-v7",
    [CHAT_MISTRAL_V7_TEKKEN] = "mistral-v7-tekken",
    [CHAT_PHI3] = "phi3",
    [CHAT_PHI4] = "phi4",
    [CHAT_FALCON3] = "falcon3",
    [CHAT_ZEPHYR] = "zephyr",
    [CHAT_MONARCH] = "monarch",
    [CHAT_GEMMA] = "gemma",
    [CHAT_ORION] = "orion",
    [CHAT_OPENCHAT] = "openchat",
    [CHAT_VICUNA] = "vicuna",
    [CHAT_VICUNA_ORCA] = "vicuna-orca",
    [CHAT_DEEPSEEK] = "deepseek",
    [CHAT_DEEPSEEK2] = "deepseek2",
    [CHAT_DEEPSEEK3] = "deepseek3",
    [CHAT_COMMAND_R] = "command-r",
    [CHAT_LLAMA3] = "llama3",
    [CHAT_CHATGLM3] = "chatglm3",
    [CHAT_CHATGLM4] = "chatglm4",
    [CHAT_GLMEDGE] = "glmedge",
    [CHAT_MINICPM] = "minicpm",
    [CHAT_EXAONE3] = "exaone3",
    [CHAT_GRANITE] = "granite",
    [CHAT_MEGREZ] = "megrez",
    [CHAT_BAILING] = "bailing",
    [CHAT_LLAMA4] = "llama4",
    [CHAT_DOTS1] = "dots1",
    [CHAT_HUNYUAN_MOE] = "hunyuan-moe",
    [CHAT_TULU] = "tulu",
};

int moe_chat_template_count(void) { return CHAT_COUNT; }

const char *moe_chat_template_name(int tmpl) {
    return tmpl >= 0 && tmpl < CHAT_COUNT ? g_names[tmpl] : NULL;
}

int moe_chat_template_from_name(const char *name) {
    if (!name) return -1;
    for (int i = 0; i < CHAT_COUNT; i++)
        if (strcmp(name, g_names[i]) == 0) return i;
    return -1;
}

int moe_chat_template_detect(const char *t) {
    if (!t) return -1;
    int byname = moe_chat_template_from_name(t);
    if (byname >= 0) return byname;
#define HAS(s) (strstr(t, (s)) != NULL)
    /* The order is llama.cpp's: several families share markers, and the first test that
     * matches wins. */
    if (HAS("<|im_start|>")) {
        /* SmolVLM (<end_of_utterance>) is not supported: it is not a MoE family. */
        return HAS("<|im_sep|>") ? CHAT_PHI4 : CHAT_CHATML;
    }
    if (strncmp(t, "mistral", 7) == 0 || HAS("[INST]")) {
        if (HAS("[SYSTEM_PROMPT]")) return CHAT_MISTRAL_V7;
        if (HAS("' [INST] ' + system_message") || HAS("[AVAILABLE_TOOLS]")) {
            if (HAS(" [INST]")) return CHAT_MISTRAL_V1;
            if (HAS("\"[INST]\"")) return CHAT_MISTRAL_V3_TEKKEN;
            return CHAT_MISTRAL_V3;
        }
        if (HAS("content.strip()")) return CHAT_LLAMA2_SYS_STRIP;
        if (HAS("bos_token + '[INST]")) return CHAT_LLAMA2_SYS_BOS;
        if (HAS("<<SYS>>")) return CHAT_LLAMA2_SYS;
        return CHAT_LLAMA2;
    }
    if (HAS("<|assistant|>") && HAS("<|end|>")) return CHAT_PHI3;
    if (HAS("[gMASK]<sop>")) return CHAT_CHATGLM4;
    if (HAS("<|assistant|>") && HAS("<|user|>")) {
        if (HAS("</s>")) return CHAT_FALCON3;
        /* llama.cpp sends everything else here to GLM-Edge. Two families it thereby
         * misformats are told apart first: Zephyr closes every turn with the end token
         * (spelled out, or eos_token after the user's content too), Tulu 2 / OLMo /
         * OLMoE-Instruct close only the assistant's turn with eos_token. GLM-Edge's
         * template names neither. */
        if (HAS("<|endoftext|>") || HAS("'<|user|>\\n' + message['content'] + eos_token")) return CHAT_ZEPHYR;
        if (HAS("eos_token")) return CHAT_TULU;
        return CHAT_GLMEDGE;
    }
    if (HAS("<|{{ item['role'] }}|>") && HAS("<|begin_of_image|>")) return CHAT_GLMEDGE;
    if (HAS("<|user|>") && HAS("<|endoftext|>")) return CHAT_ZEPHYR;
    if (HAS("bos_token + message['role']")) return CHAT_MONARCH;
    if (HAS("<start_of_turn>")) return CHAT_GEMMA;
    if (HAS("'\\n\\nAssistant: ' + eos_token")) return CHAT_ORION;
    if (HAS("GPT4 Correct ")) return CHAT_OPENCHAT;
    if (HAS("USER: ") && HAS("ASSISTANT: ")) return HAS("SYSTEM: ") ? CHAT_VICUNA_ORCA : CHAT_VICUNA;
    if (HAS("### Instruction:") && HAS("<|EOT|>")) return CHAT_DEEPSEEK;
    if (HAS("<|START_OF_TURN_TOKEN|>") && HAS("<|USER_TOKEN|>")) return CHAT_COMMAND_R;
    if (HAS("<|start_header_id|>") && HAS("<|end_header_id|>")) return CHAT_LLAMA3;
    if (HAS("[gMASK]sop")) return CHAT_CHATGLM3;
    if (HAS("<\xe7\x94\xa8\xe6\x88\xb7>")) return CHAT_MINICPM;  /* <用户> */
    if (HAS("'Assistant: ' + message['content'] + eos_token")) return CHAT_DEEPSEEK2;
    /* <｜Assistant｜>, <｜User｜>, <｜end▁of▁sentence｜> */
    if (HAS("<\xef\xbd\x9c" "Assistant\xef\xbd\x9c>") && HAS("<\xef\xbd\x9c" "User\xef\xbd\x9c>") &&
        HAS("<\xef\xbd\x9c" "end\xe2\x96\x81of\xe2\x96\x81sentence\xef\xbd\x9c>"))
        return CHAT_DEEPSEEK3;
    if (HAS("[|system|]") && HAS("[|assistant|]") && HAS("[|endofturn|]")) return CHAT_EXAONE3;
    if (HAS("<|start_of_role|>")) return CHAT_GRANITE;
    if (HAS("<|role_start|>")) return CHAT_MEGREZ;
    if (HAS("<role>ASSISTANT</role>") && HAS("'HUMAN'")) return CHAT_BAILING;
    if (HAS("<|header_start|>") && HAS("<|header_end|>")) return CHAT_LLAMA4;
    if (HAS("<|endofuserprompt|>")) return CHAT_DOTS1;
    if (HAS("<|startoftext|>") && HAS("<|extra_4|>")) return CHAT_HUNYUAN_MOE;
#undef HAS
    return -1;
}

/* ------------------------------------------------------------------ formatting */

typedef struct sbuf {
    char *p;
    size_t n, cap;
    bool oom;
} sbuf;

static void sb_addn(sbuf *b, const char *s, size_t n) {
    if (b->oom) return;
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->n + n + 1) cap *= 2;
        char *q = realloc(b->p, cap);
        if (!q) {
            b->oom = true;
            return;
        }
        b->p = q;
        b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
}

static void sb_add(sbuf *b, const char *s) { sb_addn(b, s, strlen(s)); }

/* Python's str.strip() on ASCII whitespace, as llama.cpp's trim(). */
static void sb_add_trim(sbuf *b, const char *s) {
    size_t a = 0, e = strlen(s);
    while (a < e && isspace((unsigned char)s[a])) a++;
    while (e > a && isspace((unsigned char)s[e - 1])) e--;
    sb_addn(b, s + a, e - a);
}

static bool is(const char *role, const char *r) { return strcmp(role, r) == 0; }

static void fmt_mistral(sbuf *b, chat_tmpl t, const moe_chat_msg *m, size_t n) {
    if (t == CHAT_MISTRAL_V7 || t == CHAT_MISTRAL_V7_TEKKEN) {
        const char *sp = t == CHAT_MISTRAL_V7 ? " " : "";
        for (size_t i = 0; i < n; i++) {
            if (is(m[i].role, "system")) {
                sb_add(b, "[SYSTEM_PROMPT]"); sb_add(b, sp); sb_add(b, m[i].content); sb_add(b, "[/SYSTEM_PROMPT]");
            } else if (is(m[i].role, "user")) {
                sb_add(b, "[INST]"); sb_add(b, sp); sb_add(b, m[i].content); sb_add(b, "[/INST]");
            } else {
                sb_add(b, sp); sb_add(b, m[i].content); sb_add(b, "</s>");
            }
        }
        return;
    }
    const char *lead = t == CHAT_MISTRAL_V1 ? " " : "";
    const char *trail = t == CHAT_MISTRAL_V3_TEKKEN ? "" : " ";
    bool inside = false;
    for (size_t i = 0; i < n; i++) {
        if (!inside) {
            sb_add(b, lead); sb_add(b, "[INST]"); sb_add(b, trail);
            inside = true;
        }
        if (is(m[i].role, "system")) {
            sb_add(b, m[i].content); sb_add(b, "\n\n");
        } else if (is(m[i].role, "user")) {
            sb_add(b, m[i].content); sb_add(b, lead); sb_add(b, "[/INST]");
        } else {
            sb_add(b, trail);
            if (t == CHAT_MISTRAL_V3) sb_add_trim(b, m[i].content);
            else sb_add(b, m[i].content);
            sb_add(b, "</s>");
            inside = false;
        }
    }
}

static void fmt_llama2(sbuf *b, chat_tmpl t, const moe_chat_msg *m, size_t n) {
    bool sys = t != CHAT_LLAMA2;
    bool bos_inside = t == CHAT_LLAMA2_SYS_BOS;
    bool strip = t == CHAT_LLAMA2_SYS_STRIP;
    bool inside = true;  /* the first [INST] is written here; BOS comes from the tokenizer */
    sb_add(b, "[INST] ");
    for (size_t i = 0; i < n; i++) {
        if (!inside) {
            inside = true;
            sb_add(b, bos_inside ? "<s>[INST] " : "[INST] ");
        }
#define CONTENT() (strip ? sb_add_trim(b, m[i].content) : sb_add(b, m[i].content))
        if (is(m[i].role, "system")) {
            if (sys) {
                sb_add(b, "<<SYS>>\n"); CONTENT(); sb_add(b, "\n<</SYS>>\n\n");
            } else {
                CONTENT(); sb_add(b, "\n");  /* merged into the first user turn */
            }
        } else if (is(m[i].role, "user")) {
            CONTENT(); sb_add(b, " [/INST]");
        } else {
            CONTENT(); sb_add(b, "</s>");
            inside = false;
        }
#undef CONTENT
    }
}

static void fmt_gemma(sbuf *b, const moe_chat_msg *m, size_t n, bool add_ass) {
    sbuf sys = {0};
    for (size_t i = 0; i < n; i++) {
        if (is(m[i].role, "system")) {
            /* gemma has no system turn: prepend it to the next user turn */
            sb_add_trim(&sys, m[i].content);
            continue;
        }
        const char *role = is(m[i].role, "assistant") ? "model" : m[i].role;
        sb_add(b, "<start_of_turn>"); sb_add(b, role); sb_add(b, "\n");
        if (sys.n && !is(role, "model")) {
            sb_addn(b, sys.p, sys.n); sb_add(b, "\n\n");
            sys.n = 0;
        }
        sb_add_trim(b, m[i].content); sb_add(b, "<end_of_turn>\n");
    }
    if (sys.oom) b->oom = true;
    free(sys.p);
    if (add_ass) sb_add(b, "<start_of_turn>model\n");
}

static void fmt_role_wrap(sbuf *b, const moe_chat_msg *m, size_t n, const char *pre, const char *mid,
                          const char *post, bool trim, const char *gen, bool add_ass) {
    for (size_t i = 0; i < n; i++) {
        sb_add(b, pre); sb_add(b, m[i].role); sb_add(b, mid);
        if (trim) sb_add_trim(b, m[i].content);
        else sb_add(b, m[i].content);
        sb_add(b, post);
    }
    if (add_ass) sb_add(b, gen);
}

#define DS_USER "<\xef\xbd\x9cUser\xef\xbd\x9c>"
#define DS_ASSISTANT "<\xef\xbd\x9c" "Assistant\xef\xbd\x9c>"
#define DS_EOS "<\xef\xbd\x9c" "end\xe2\x96\x81of\xe2\x96\x81sentence\xef\xbd\x9c>"

static void format(sbuf *b, chat_tmpl t, const moe_chat_msg *m, size_t n, bool add_ass, const char *eos) {
    switch (t) {
    case CHAT_CHATML:
        fmt_role_wrap(b, m, n, "<|im_start|>", "\n", "<|im_end|>\n", false, "<|im_start|>assistant\n", add_ass);
        break;
    case CHAT_MISTRAL_V1: case CHAT_MISTRAL_V3: case CHAT_MISTRAL_V3_TEKKEN:
    case CHAT_MISTRAL_V7: case CHAT_MISTRAL_V7_TEKKEN:
        fmt_mistral(b, t, m, n);
        break;
    case CHAT_LLAMA2: case CHAT_LLAMA2_SYS: case CHAT_LLAMA2_SYS_BOS: case CHAT_LLAMA2_SYS_STRIP:
        fmt_llama2(b, t, m, n);
        break;
    case CHAT_PHI3:
        fmt_role_wrap(b, m, n, "<|", "|>\n", "<|end|>\n", false, "<|assistant|>\n", add_ass);
        break;
    case CHAT_PHI4:
        fmt_role_wrap(b, m, n, "<|im_start|>", "<|im_sep|>", "<|im_end|>", false, "<|im_start|>assistant<|im_sep|>", add_ass);
        break;
    case CHAT_FALCON3:
        fmt_role_wrap(b, m, n, "<|", "|>\n", "\n", false, "<|assistant|>\n", add_ass);
        break;
    case CHAT_ZEPHYR:
        fmt_role_wrap(b, m, n, "<|", "|>\n", "<|endoftext|>\n", false, "<|assistant|>\n", add_ass);
        break;
    case CHAT_MONARCH:
        for (size_t i = 0; i < n; i++) {
            if (i) sb_add(b, "<s>");  /* the first BOS comes from the tokenizer */
            sb_add(b, m[i].role); sb_add(b, "\n"); sb_add(b, m[i].content); sb_add(b, "</s>\n");
        }
        if (add_ass) sb_add(b, "<s>assistant\n");
        break;
    case CHAT_GEMMA:
        fmt_gemma(b, m, n, add_ass);
        break;
    case CHAT_ORION: {
        sbuf sys = {0};
        for (size_t i = 0; i < n; i++) {
            if (is(m[i].role, "system")) {
                sb_add(&sys, m[i].content);
            } else if (is(m[i].role, "user")) {
                sb_add(b, "Human: ");
                if (sys.n) { sb_addn(b, sys.p, sys.n); sb_add(b, "\n\n"); sys.n = 0; }
                sb_add(b, m[i].content); sb_add(b, "\n\nAssistant: </s>");
            } else {
                sb_add(b, m[i].content); sb_add(b, "</s>");
            }
        }
        if (sys.oom) b->oom = true;
        free(sys.p);
        break;
    }
    case CHAT_OPENCHAT:
        for (size_t i = 0; i < n; i++) {
            if (is(m[i].role, "system")) {
                sb_add(b, m[i].content);
            } else {
                char r0[2] = {(char)toupper((unsigned char)m[i].role[0]), 0};
                sb_add(b, "GPT4 Correct "); sb_add(b, r0); sb_add(b, m[i].role[0] ? m[i].role + 1 : "");
                sb_add(b, ": "); sb_add(b, m[i].content);
            }
            sb_add(b, "<|end_of_turn|>");
        }
        if (add_ass) sb_add(b, "GPT4 Correct Assistant:");
        break;
    case CHAT_VICUNA: case CHAT_VICUNA_ORCA:
        for (size_t i = 0; i < n; i++) {
            if (is(m[i].role, "system")) {
                if (t == CHAT_VICUNA_ORCA) { sb_add(b, "SYSTEM: "); sb_add(b, m[i].content); sb_add(b, "\n"); }
                else { sb_add(b, m[i].content); sb_add(b, "\n\n"); }
            } else if (is(m[i].role, "user")) {
                sb_add(b, "USER: "); sb_add(b, m[i].content); sb_add(b, "\n");
            } else if (is(m[i].role, "assistant")) {
                sb_add(b, "ASSISTANT: "); sb_add(b, m[i].content); sb_add(b, "</s>\n");
            }
        }
        if (add_ass) sb_add(b, "ASSISTANT:");
        break;
    case CHAT_DEEPSEEK:
        for (size_t i = 0; i < n; i++) {
            if (is(m[i].role, "system")) sb_add(b, m[i].content);
            else if (is(m[i].role, "user")) { sb_add(b, "### Instruction:\n"); sb_add(b, m[i].content); sb_add(b, "\n"); }
            else if (is(m[i].role, "assistant")) { sb_add(b, "### Response:\n"); sb_add(b, m[i].content); sb_add(b, "\n<|EOT|>\n"); }
        }
        if (add_ass) sb_add(b, "### Response:\n");
        break;
    case CHAT_DEEPSEEK2:
        for (size_t i = 0; i < n; i++) {
            if (is(m[i].role, "system")) { sb_add(b, m[i].content); sb_add(b, "\n\n"); }
            else if (is(m[i].role, "user")) { sb_add(b, "User: "); sb_add(b, m[i].content); sb_add(b, "\n\n"); }
            else if (is(m[i].role, "assistant")) { sb_add(b, "Assistant: "); sb_add(b, m[i].content); sb_add(b, DS_EOS); }
        }
        if (add_ass) sb_add(b, "Assistant:");
        break;
    case CHAT_DEEPSEEK3:
        for (size_t i = 0; i < n; i++) {
            if (is(m[i].role, "system")) { sb_add(b, m[i].content); sb_add(b, "\n\n"); }
            else if (is(m[i].role, "user")) { sb_add(b, DS_USER); sb_add(b, m[i].content); }
            else if (is(m[i].role, "assistant")) { sb_add(b, DS_ASSISTANT); sb_add(b, m[i].content); sb_add(b, DS_EOS); }
        }
        if (add_ass) sb_add(b, DS_ASSISTANT);
        break;
    case CHAT_COMMAND_R:
        for (size_t i = 0; i < n; i++) {
            const char *tok = is(m[i].role, "system") ? "<|SYSTEM_TOKEN|>"
                            : is(m[i].role, "user")   ? "<|USER_TOKEN|>"
                            : is(m[i].role, "assistant") ? "<|CHATBOT_TOKEN|>" : NULL;
            if (!tok) continue;
            sb_add(b, "<|START_OF_TURN_TOKEN|>"); sb_add(b, tok); sb_add_trim(b, m[i].content); sb_add(b, "<|END_OF_TURN_TOKEN|>");
        }
        if (add_ass) sb_add(b, "<|START_OF_TURN_TOKEN|><|CHATBOT_TOKEN|>");
        break;
    case CHAT_LLAMA3:
        fmt_role_wrap(b, m, n, "<|start_header_id|>", "<|end_header_id|>\n\n", "<|eot_id|>", true,
                      "<|start_header_id|>assistant<|end_header_id|>\n\n", add_ass);
        break;
    case CHAT_CHATGLM3:
        sb_add(b, "[gMASK]sop");
        fmt_role_wrap(b, m, n, "<|", "|>\n ", "", false, "<|assistant|>", add_ass);
        break;
    case CHAT_CHATGLM4:
        sb_add(b, "[gMASK]<sop>");
        fmt_role_wrap(b, m, n, "<|", "|>\n", "", false, "<|assistant|>\n", add_ass);
        break;
    case CHAT_GLMEDGE:
        fmt_role_wrap(b, m, n, "<|", "|>\n", "", false, "<|assistant|>", add_ass);
        break;
    case CHAT_MINICPM:
        for (size_t i = 0; i < n; i++) {
            if (is(m[i].role, "user")) { sb_add(b, "<\xe7\x94\xa8\xe6\x88\xb7>"); sb_add_trim(b, m[i].content); sb_add(b, "<AI>"); }
            else sb_add_trim(b, m[i].content);
        }
        break;
    case CHAT_EXAONE3:
        for (size_t i = 0; i < n; i++) {
            if (is(m[i].role, "system")) { sb_add(b, "[|system|]"); sb_add_trim(b, m[i].content); sb_add(b, "[|endofturn|]\n"); }
            else if (is(m[i].role, "user")) { sb_add(b, "[|user|]"); sb_add_trim(b, m[i].content); sb_add(b, "\n"); }
            else if (is(m[i].role, "assistant")) { sb_add(b, "[|assistant|]"); sb_add_trim(b, m[i].content); sb_add(b, "[|endofturn|]\n"); }
        }
        if (add_ass) sb_add(b, "[|assistant|]");
        break;
    case CHAT_GRANITE:
        for (size_t i = 0; i < n; i++) {
            sb_add(b, "<|start_of_role|>"); sb_add(b, m[i].role); sb_add(b, "<|end_of_role|>");
            if (is(m[i].role, "assistant_tool_call")) sb_add(b, "<|tool_call|>");
            sb_add(b, m[i].content); sb_add(b, "<|end_of_text|>\n");
        }
        if (add_ass) sb_add(b, "<|start_of_role|>assistant<|end_of_role|>");
        break;
    case CHAT_MEGREZ:
        fmt_role_wrap(b, m, n, "<|role_start|>", "<|role_end|>", "<|turn_end|>", false, "<|role_start|>assistant<|role_end|>", add_ass);
        break;
    case CHAT_BAILING:
        for (size_t i = 0; i < n; i++) {
            sb_add(b, "<role>");
            if (is(m[i].role, "user")) sb_add(b, "HUMAN");
            else
                for (const char *r = m[i].role; *r; r++) { char u = (char)toupper((unsigned char)*r); sb_addn(b, &u, 1); }
            sb_add(b, "</role>"); sb_add(b, m[i].content);
        }
        if (add_ass) sb_add(b, "<role>ASSISTANT</role>");
        break;
    case CHAT_LLAMA4:
        fmt_role_wrap(b, m, n, "<|header_start|>", "<|header_end|>\n\n", "<|eot|>", true,
                      "<|header_start|>assistant<|header_end|>\n\n", add_ass);
        break;
    case CHAT_DOTS1:
        for (size_t i = 0; i < n; i++) {
            if (is(m[i].role, "system")) { sb_add(b, "<|system|>"); sb_add(b, m[i].content); sb_add(b, "<|endofsystem|>"); }
            else if (is(m[i].role, "user")) { sb_add(b, "<|userprompt|>"); sb_add(b, m[i].content); sb_add(b, "<|endofuserprompt|>"); }
            else { sb_add(b, "<|response|>"); sb_add(b, m[i].content); sb_add(b, "<|endofresponse|>"); }
        }
        if (add_ass) sb_add(b, "<|response|>");
        break;
    case CHAT_HUNYUAN_MOE:
        for (size_t i = 0; i < n; i++) {
            if (is(m[i].role, "system")) { sb_add(b, "<|startoftext|>"); sb_add(b, m[i].content); sb_add(b, "<|extra_4|>"); }
            else if (is(m[i].role, "assistant")) { sb_add(b, m[i].content); sb_add(b, "<|eos|>"); }
            else { sb_add(b, "<|startoftext|>"); sb_add(b, m[i].content); sb_add(b, "<|extra_0|>"); }
        }
        break;
    case CHAT_TULU:
        /* Tulu 2 / OLMoE-Instruct: '<|role|>\n' + content + '\n', the assistant's turn
         * closed by eos_token. */
        for (size_t i = 0; i < n; i++) {
            sb_add(b, "<|"); sb_add(b, m[i].role); sb_add(b, "|>\n"); sb_add(b, m[i].content);
            if (is(m[i].role, "assistant")) sb_add(b, eos);
            sb_add(b, "\n");
        }
        if (add_ass) sb_add(b, "<|assistant|>\n");
        break;
    case CHAT_COUNT:
        break;
    }
}

char *moe_chat_format(int tmpl, const moe_chat_msg *msgs, size_t n_msgs, bool add_assistant,
                      const char *bos, const char *eos) {
    (void)bos;  /* every supported format leaves the leading BOS to the tokenizer */
    if (tmpl < 0 || tmpl >= CHAT_COUNT)
        return moe_error_null(MOE_ERR_INVALID, "chat template: invalid template id %d", tmpl);
    if (n_msgs && !msgs) return moe_error_null(MOE_ERR_INVALID, "chat template: no messages");
    for (size_t i = 0; i < n_msgs; i++)
        if (!msgs[i].role || !msgs[i].content)
            return moe_error_null(MOE_ERR_INVALID, "chat template: message %zu has no role or content", i);
    sbuf b = {0};
    sb_add(&b, "");  /* an empty conversation still returns "" */
    format(&b, (chat_tmpl)tmpl, msgs, n_msgs, add_assistant, eos ? eos : "");
    if (b.oom) {
        free(b.p);
        return moe_error_null(MOE_ERR_NOMEM, "chat template: out of memory formatting %zu messages", n_msgs);
    }
    return b.p;
}
