/* cmd_upcycle.c — `moe upcycle`: sparse upcycling of a dense llama model into a
 * Mixtral-layout MoE model, every expert a copy of the dense FFN (docs/TRAINING.md). */
#include "cli/cli.h"

#include <string.h>

static const char *const USAGE =
    "usage: moe upcycle -m DENSE.gguf --experts E --topk K -o MOE.gguf [options]\n"
    "\n"
    "Sparse upcycling (Komatsuzaki et al. 2022): copies each chosen layer's dense FFN into all\n"
    "E experts and adds a router drawn N(0, 0.02^2), writing a Mixtral-layout GGUF (arch 'llama'\n"
    "with expert_count). At step 0 it computes the dense model's logits (top-k weights\n"
    "renormalised to 1 over identical experts); continue with `moe train`. With --every 1\n"
    "(every layer) moe.c and llama.cpp load the file; with --every N > 1 only moe.c does\n"
    "(llama.cpp's llama architecture has the same FFN kind in every layer).\n"
    "A dense model comes from `moe init --experts 0` + `moe train`.\n"
    "\n"
    "options (defaults):\n"
    "  -m, --model FILE     the dense llama model (no expert_count)\n"
    "  --experts E          experts per layer (8)\n"
    "  --topk K             experts per token (2)\n"
    "  --every N            upcycle every N-th layer: layers il (from 0) with (il+1) % N == 0,\n"
    "                       i.e. the 2nd, 4th, ... for N = 2 (Switch/GShard's \"every other\n"
    "                       layer\"); the others keep their dense FFN unchanged (1: all layers)\n"
    "  --seed S             router initialisation seed (1)\n"
    "  --router-std S       router weights' standard deviation (0.02)\n"
    "  --dtype f32|f16      matrices' type (f32, or f16 when the dense file's are f16)\n"
    "  -o, --output FILE    the MoE model to write (atomically)\n";

int cmd_upcycle(int argc, char **argv) {
    const char *sub = "upcycle", *in = NULL, *out = NULL;
    moe_upcycle_params p;
    moe_upcycle_default_params(&p);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int64_t v;
        double d;
        if (cli_is_help(a)) { fputs(USAGE, stdout); return 0; }
        else if (!strcmp(a, "-m") || !strcmp(a, "--model")) { if (!cli_arg_str(sub, argc, argv, &i, &in)) return 2; }
        else if (!strcmp(a, "-o") || !strcmp(a, "--output")) { if (!cli_arg_str(sub, argc, argv, &i, &out)) return 2; }
        else if (!strcmp(a, "--experts")) { if (!cli_arg_int(sub, argc, argv, &i, 1, 1024, &v)) return 2; p.n_expert = v; }
        else if (!strcmp(a, "--topk")) { if (!cli_arg_int(sub, argc, argv, &i, 1, 1024, &v)) return 2; p.n_expert_used = v; }
        else if (!strcmp(a, "--every")) { if (!cli_arg_int(sub, argc, argv, &i, 1, 1 << 20, &v)) return 2; p.every = v; }
        else if (!strcmp(a, "--seed")) { if (!cli_arg_int(sub, argc, argv, &i, 0, INT64_MAX, &v)) return 2; p.seed = (uint64_t)v; }
        else if (!strcmp(a, "--router-std")) {
            if (!cli_arg_float(sub, argc, argv, &i, &d)) return 2;
            if (!(d >= 0 && d < 1e3)) return cli_usage(sub, "--router-std must be in [0, 1000), not %g", d);
            p.router_std = (float)d;
        }
        else if (!strcmp(a, "--dtype")) {
            const char *t;
            if (!cli_arg_str(sub, argc, argv, &i, &t)) return 2;
            if (!strcmp(t, "f16")) p.f16 = true;
            else if (!strcmp(t, "f32")) p.f16 = false;
            else return cli_usage(sub, "--dtype must be f32 or f16, not '%s'", t);
        }
        else return cli_usage(sub, "unknown option %s", a);
    }
    if (!in) return cli_usage(sub, "-m is required");
    if (!out) return cli_usage(sub, "-o is required");
    if (p.n_expert_used > p.n_expert)
        return cli_usage(sub, "--topk %lld exceeds --experts %lld", (long long)p.n_expert_used, (long long)p.n_expert);
    moe_status st = moe_upcycle(&p, in, out);
    if (st == MOE_ERR_INVALID || st == MOE_ERR_UNSUPPORTED) {
        fprintf(stderr, "moe %s\n", moe_last_error()); /* the message starts "upcycle: " */
        return 2;
    }
    if (st) return cli_fail_lib(sub);
    if (p.every == 1)
        fprintf(stderr, "moe upcycle: wrote %s (%lld experts top-%lld, every layer)\n", out, (long long)p.n_expert,
                (long long)p.n_expert_used);
    else
        fprintf(stderr, "moe upcycle: wrote %s (%lld experts top-%lld in the layers il with (il+1) %% %lld == 0, the "
                        "others dense; moe.c runs it, llama.cpp does not)\n", out, (long long)p.n_expert,
                (long long)p.n_expert_used, (long long)p.every);
    return 0;
}
