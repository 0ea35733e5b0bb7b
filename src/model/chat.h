/* chat.h — the built-in chat templates (ids of moe_chat_template_*): one entry per
 * formatting rule of llama.cpp's llm_chat_apply_template, plus "tulu" (OLMoE-Instruct /
 * Tulu 2), which llama.cpp would misdetect as GLM-Edge. */
#ifndef MOE_MODEL_CHAT_H
#define MOE_MODEL_CHAT_H

typedef enum chat_tmpl {
    CHAT_CHATML,
    CHAT_LLAMA2,
    CHAT_LLAMA2_SYS,
    CHAT_LLAMA2_SYS_BOS,
    CHAT_LLAMA2_SYS_STRIP,
    CHAT_MISTRAL_V1,
    CHAT_MISTRAL_V3,
    CHAT_MISTRAL_V3_TEKKEN,
    CHAT_MISTRAL_V7,
    CHAT_MISTRAL_V7_TEKKEN,
    CHAT_PHI3,
    CHAT_PHI4,
    CHAT_FALCON3,
    CHAT_ZEPHYR,
    CHAT_MONARCH,
    CHAT_GEMMA,
    CHAT_ORION,
    CHAT_OPENCHAT,
    CHAT_VICUNA,
    CHAT_VICUNA_ORCA,
    CHAT_DEEPSEEK,
    CHAT_DEEPSEEK2,
    CHAT_DEEPSEEK3,
    CHAT_COMMAND_R,
    CHAT_LLAMA3,
    CHAT_CHATGLM3,
    CHAT_CHATGLM4,
    CHAT_GLMEDGE,
    CHAT_MINICPM,
    CHAT_EXAONE3,
    CHAT_GRANITE,
    CHAT_MEGREZ,
    CHAT_BAILING,
    CHAT_LLAMA4,
    CHAT_DOTS1,
    CHAT_HUNYUAN_MOE,
    CHAT_TULU,
    CHAT_COUNT
} chat_tmpl;

#endif
