/* cmd_layer.c — `moe layer ROUTER --weights W --input X --output OUT`: one MoE layer on
 * safetensors files, for comparing routers and gradients with research code
 * (../shared/specs/moe-layer.md; docs/LAYER.md). */
#include "cli/cli.h"

#include <math.h>
#include <string.h>

static const char *const USAGE =
    "usage: moe layer ROUTER --weights W.safetensors --input X.safetensors --output OUT.safetensors\n"
    "                 [--backward] [--aux-coef A] [--z-coef Z] [router options] [-t N] [--json]\n"
    "\n"
    "Runs one MoE layer: y = Σ_e weight_e · f_e(x) (+ shared expert), f_e(h) = down_e(silu(gate_e h) ⊙ up_e h).\n"
    "W holds router.weight [E, d] (+ router.bias, router.scale), experts.gate/up [E, ff, d], experts.down [E, d, ff],\n"
    "optionally shared.gate/up [S, d], shared.down [d, S]. X holds x [T, d] (+ dy [T, d], token_ids [T]).\n"
    "OUT gets y, expert_index, expert_weight (soft-moe: dispatch, combine), aux_loss, z_loss and, with\n"
    "--backward, dx and d.NAME for every tensor of W: gradients of Σ y⊙dy + A·aux_loss + Z·z_loss.\n"
    "\n"
    "routers and their options (defaults):\n"
    "  topk           --k 2, --renorm | --no-renorm (renorm), --capacity-factor 0, --priority token\n"
    "  switch         --capacity-factor 1.0, --priority token\n"
    "  gshard         --capacity-factor 1.0, --priority token, --gshard-sample [--seed N]\n"
    "  expert-choice  --capacity-factor 1.0, --min-capacity 4\n"
    "  soft-moe       slots per expert = rows of router.weight / E; router.scale (default 1)\n"
    "  base           --assign balanced|greedy|auction (balanced); y = x + σ(x·c_e)·f_e(x)\n"
    "  deepseek-v3    --k 2, --renorm (on), --n-group 1, --topk-group 1, --route-scale 1.0\n"
    "  loss-free      as deepseek-v3 with softmax scores and --no-renorm\n"
    "  adamoe         --k 2; null experts m = rows of router.weight − E\n"
    "  hash           --hash-map FILE (line i = expert of token id i; default token_id mod E)\n"
    "  usmoe          --k 2, --usmoe-alpha 0.5, --usmoe-beta 0.5, --no-renorm | --renorm (no-renorm)\n"
    "\n"
    "options:\n"
    "  --weights, -w FILE   layer weights (safetensors)\n"
    "  --input, -i FILE     inputs (safetensors)\n"
    "  --output, -o FILE    outputs (safetensors, written atomically)\n"
    "  --backward           also compute gradients (X must hold dy)\n"
    "  --aux-coef A         coefficient of aux_loss in the backward (0)\n"
    "  --z-coef Z           coefficient of z_loss in the backward (0)\n"
    "  --priority token|bpr capacity fill order: token order or batch-prioritised (top-1 probability)\n"
    "  --act swiglu|gelu    expert MLP (swiglu); gelu experts have no gate tensors\n"
    "  -t, --threads N      threads (all cores)\n"
    "  --json               print the routing statistics as JSON\n";

int cmd_layer(int argc, char **argv) {
    const char *sub = "layer", *wpath = NULL, *xpath = NULL, *opath = NULL;
    bool json = false;
    moe_layer_opts o;
    moe_layer_opts_default(&o);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int64_t v;
        if (cli_is_help(a)) { fputs(USAGE, stdout); return 0; }
        else if (!strcmp(a, "--weights") || !strcmp(a, "-w")) { if (!cli_arg_str(sub, argc, argv, &i, &wpath)) return 2; }
        else if (!strcmp(a, "--input") || !strcmp(a, "-i")) { if (!cli_arg_str(sub, argc, argv, &i, &xpath)) return 2; }
        else if (!strcmp(a, "--output") || !strcmp(a, "-o")) { if (!cli_arg_str(sub, argc, argv, &i, &opath)) return 2; }
        else if (!strcmp(a, "--backward")) o.backward = true;
        else if (!strcmp(a, "--aux-coef")) { if (!cli_arg_float(sub, argc, argv, &i, &o.aux_coef)) return 2; }
        else if (!strcmp(a, "--z-coef")) { if (!cli_arg_float(sub, argc, argv, &i, &o.z_coef)) return 2; }
        else if (!strcmp(a, "--k") || !strcmp(a, "-k") || !strcmp(a, "--top-k")) {
            if (!cli_arg_int(sub, argc, argv, &i, 1, 1 << 20, &v)) return 2;
            o.k = (int)v;
        }
        else if (!strcmp(a, "--renorm")) o.renorm = 1;
        else if (!strcmp(a, "--no-renorm")) o.renorm = 0;
        else if (!strcmp(a, "--capacity-factor")) { if (!cli_arg_float(sub, argc, argv, &i, &o.capacity_factor)) return 2; }
        else if (!strcmp(a, "--min-capacity")) {
            if (!cli_arg_int(sub, argc, argv, &i, 0, 1 << 30, &v)) return 2;
            o.min_capacity = (int)v;
        }
        else if (!strcmp(a, "--n-group")) {
            if (!cli_arg_int(sub, argc, argv, &i, 1, 1 << 16, &v)) return 2;
            o.n_group = (int)v;
        }
        else if (!strcmp(a, "--topk-group")) {
            if (!cli_arg_int(sub, argc, argv, &i, 1, 1 << 16, &v)) return 2;
            o.topk_group = (int)v;
        }
        else if (!strcmp(a, "--route-scale")) { if (!cli_arg_float(sub, argc, argv, &i, &o.route_scale)) return 2; }
        else if (!strcmp(a, "--assign")) { if (!cli_arg_str(sub, argc, argv, &i, &o.assign)) return 2; }
        else if (!strcmp(a, "--priority")) { if (!cli_arg_str(sub, argc, argv, &i, &o.priority)) return 2; }
        else if (!strcmp(a, "--hash-map")) { if (!cli_arg_str(sub, argc, argv, &i, &o.hash_map)) return 2; }
        else if (!strcmp(a, "--gshard-sample")) o.gshard_sample = 1;
        else if (!strcmp(a, "--seed")) {
            if (!cli_arg_int(sub, argc, argv, &i, 0, INT64_MAX, &v)) return 2;
            o.seed = (uint64_t)v;
        }
        else if (!strcmp(a, "--usmoe-alpha")) { if (!cli_arg_float(sub, argc, argv, &i, &o.usmoe_alpha)) return 2; }
        else if (!strcmp(a, "--usmoe-beta")) { if (!cli_arg_float(sub, argc, argv, &i, &o.usmoe_beta)) return 2; }
        else if (!strcmp(a, "--act")) { if (!cli_arg_str(sub, argc, argv, &i, &o.act)) return 2; }
        else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) {
            if (!cli_arg_int(sub, argc, argv, &i, 1, 512, &v)) return 2;
            o.n_threads = (int)v;
        }
        else if (!strcmp(a, "--json")) json = true;
        else if (a[0] == '-' && a[1]) return cli_usage(sub, "unknown option %s", a);
        else if (!o.router) o.router = a;
        else return cli_usage(sub, "unexpected argument '%s' (the router is '%s')", a, o.router);
    }
    if (!o.router) return cli_usage(sub, "no router given");
    if (!wpath) return cli_usage(sub, "--weights is required");
    if (!xpath) return cli_usage(sub, "--input is required");
    if (!opath) return cli_usage(sub, "--output is required");
    if (o.gshard_sample < 0 && o.seed) return cli_usage(sub, "--seed only applies with --gshard-sample");

    moe_layer_report rep;
    moe_status st = moe_layer_run(&o, wpath, xpath, opath, &rep);
    if (st == MOE_ERR_INVALID) {
        /* a bad option combination: a usage error */
        return cli_usage(sub, "%s", moe_last_error());
    }
    if (st) return cli_fail_lib(sub);

    if (json) {
        printf("{\"router\": ");
        cli_json_str(stdout, o.router, strlen(o.router));
        printf(", \"tokens\": %lld, \"d\": %lld, \"ff\": %lld, \"shared_ff\": %lld, \"experts\": %d, \"k\": %d",
               (long long)rep.n_tokens, (long long)rep.d, (long long)rep.ff, (long long)rep.shared_ff, rep.n_expert,
               rep.n_cols);
        printf(", \"aux_loss\": "); cli_json_num(stdout, rep.aux_loss);
        printf(", \"z_loss\": "); cli_json_num(stdout, rep.z_loss);
        printf(", \"dropped\": %lld, \"dropped_tokens\": %lld, \"null\": %lld", (long long)rep.n_dropped,
               (long long)rep.n_dropped_tokens, (long long)rep.n_null);
        printf(", \"maxvio\": "); cli_json_num(stdout, rep.maxvio);
        printf(", \"entropy\": "); cli_json_num(stdout, rep.entropy);
        printf(", \"load\": [");
        for (int e = 0; e < rep.n_expert; e++) printf(e ? ", %lld" : "%lld", (long long)rep.load[e]);
        printf("], \"seconds_forward\": "); cli_json_num(stdout, rep.seconds_forward);
        printf(", \"seconds_backward\": "); cli_json_num(stdout, rep.seconds_backward);
        printf("}\n");
    } else {
        printf("%s: %lld tokens, d %lld, %d experts of width %lld%s: aux_loss %.6g, z_loss %.6g, dropped %lld "
               "(tokens %lld), MaxVio %.3f, entropy %.4f; forward %.2f ms%s",
               o.router, (long long)rep.n_tokens, (long long)rep.d, rep.n_expert, (long long)rep.ff,
               rep.shared_ff ? " + shared" : "", rep.aux_loss, rep.z_loss, (long long)rep.n_dropped,
               (long long)rep.n_dropped_tokens, isfinite(rep.maxvio) ? rep.maxvio : 0.0, rep.entropy,
               rep.seconds_forward * 1e3, o.backward ? ", backward " : "");
        if (o.backward) printf("%.2f ms", rep.seconds_backward * 1e3);
        printf("\nwrote %s\n", opath);
    }
    moe_layer_report_free(&rep);
    return 0;
}
