/* cmd_init.c — `moe init`: write a randomly initialised MoE model of a given shape with
 * the tokenizer of a vocabulary file (docs/TRAINING.md). */
#include "cli/cli.h"

#include <string.h>

static const char *const USAGE =
    "usage: moe init --arch mixtral|qwen2moe|qwen3moe|olmoe|deepseek --vocab VOCAB.gguf -o MODEL.gguf [shape options]\n"
    "\n"
    "Writes a randomly initialised model (matrices N(0,1)/sqrt(fan_in), token_embd N(0,1), norms 1,\n"
    "biases 0) in llama.cpp's GGUF conventions, with the tokenizer.* keys of VOCAB.gguf.\n"
    "\n"
    "options (defaults):\n"
    "  --arch NAME          mixtral (gguf arch 'llama'), qwen2moe, qwen3moe, olmoe, deepseek (mixtral)\n"
    "  --vocab FILE         GGUF file with the tokenizer (a model or a ggml-vocab-*.gguf)\n"
    "  --vocab-size N       keep only the first N tokens (all)\n"
    "  --layers N           blocks (4)\n"
    "  --embd D             model width (256)\n"
    "  --heads H            attention heads (8)\n"
    "  --kv-heads K         key/value heads (4)\n"
    "  --ff F               expert FFN width (512)\n"
    "  --experts E          routed experts per layer; 0 = a dense model (mixtral only) (8)\n"
    "  --topk K             experts per token (2)\n"
    "  --shared-ff S        shared expert width (qwen2moe: F; deepseek: 0 = none; a multiple of F)\n"
    "  --dense-layers N     deepseek: leading dense layers (0)\n"
    "  --dense-ff F         deepseek: their FFN width (F·K)\n"
    "  --ctx N              context_length (4096)\n"
    "  --seed S             random seed (1)\n"
    "  --dtype f32|f16      type of the weight matrices (f32)\n"
    "  --tied               no output.weight: the output head is token_embd\n"
    "  -o, --output FILE    the model to write (atomically)\n";

int cmd_init(int argc, char **argv) {
    const char *sub = "init", *vocab = NULL, *out = NULL;
    moe_init_params p;
    moe_init_default_params(&p);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int64_t v;
        if (cli_is_help(a)) { fputs(USAGE, stdout); return 0; }
#define INT_OPT(flag, field, lo)                                                      \
        else if (!strcmp(a, flag)) {                                                  \
            if (!cli_arg_int(sub, argc, argv, &i, lo, INT64_C(1) << 30, &v)) return 2; \
            p.field = v;                                                              \
        }
        INT_OPT("--layers", n_layer, 1)
        INT_OPT("--embd", n_embd, 2)
        INT_OPT("--heads", n_head, 1)
        INT_OPT("--kv-heads", n_head_kv, 1)
        INT_OPT("--ff", n_ff, 1)
        INT_OPT("--experts", n_expert, 0)
        INT_OPT("--topk", n_expert_used, 1)
        INT_OPT("--shared-ff", shared_ff, 0)
        INT_OPT("--dense-layers", dense_layers, 0)
        INT_OPT("--dense-ff", dense_ff, 1)
        INT_OPT("--ctx", n_ctx, 1)
        INT_OPT("--vocab-size", vocab_size, 1)
#undef INT_OPT
        else if (!strcmp(a, "--seed")) {
            if (!cli_arg_int(sub, argc, argv, &i, 0, INT64_MAX, &v)) return 2;
            p.seed = (uint64_t)v;
        }
        else if (!strcmp(a, "--arch")) { if (!cli_arg_str(sub, argc, argv, &i, &p.arch)) return 2; }
        else if (!strcmp(a, "--vocab")) { if (!cli_arg_str(sub, argc, argv, &i, &vocab)) return 2; }
        else if (!strcmp(a, "-o") || !strcmp(a, "--output")) { if (!cli_arg_str(sub, argc, argv, &i, &out)) return 2; }
        else if (!strcmp(a, "--dtype")) {
            const char *d;
            if (!cli_arg_str(sub, argc, argv, &i, &d)) return 2;
            if (!strcmp(d, "f16")) p.f16 = true;
            else if (!strcmp(d, "f32")) p.f16 = false;
            else return cli_usage(sub, "--dtype must be f32 or f16, not '%s'", d);
        }
        else if (!strcmp(a, "--tied")) p.tied = true;
        else return cli_usage(sub, "unknown option %s", a);
    }
    if (!vocab) return cli_usage(sub, "--vocab is required");
    if (!out) return cli_usage(sub, "-o is required");
    moe_status st = moe_init_model(&p, vocab, out);
    if (st == MOE_ERR_INVALID) return cli_usage(sub, "%s", moe_last_error());
    if (st) return cli_fail_lib(sub);
    fprintf(stderr, "moe init: wrote %s (%s, %lld layers, d %lld, %lld experts top-%lld)\n", out, p.arch,
            (long long)p.n_layer, (long long)p.n_embd, (long long)p.n_expert, (long long)p.n_expert_used);
    return 0;
}
