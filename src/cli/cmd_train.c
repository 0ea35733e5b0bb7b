/* cmd_train.c — `moe train`: train a GGUF model on a text file with any router, with
 * checkpoints, resume, a JSONL log and eval perplexity (docs/TRAINING.md). */
#include "cli/cli.h"

#include <math.h>
#include <string.h>

static const char *const USAGE =
    "usage: moe train -m MODEL.gguf --data TRAIN.txt -o OUT.gguf [options]\n"
    "\n"
    "Trains every weight of the model (F32, AdamW) on windows of --ctx+1 tokens drawn from the\n"
    "tokenized text, and writes OUT.gguf (loadable by `moe run`; see docs/TRAINING.md).\n"
    "\n"
    "data and schedule (defaults):\n"
    "  -m, --model FILE        the model to start from (moe init makes one)\n"
    "  --data FILE             training text (tokenized with the model's tokenizer)\n"
    "  --eval-data FILE        held-out text: loss and perplexity every --eval-every steps and at the end\n"
    "  --steps N               optimizer steps (100)\n"
    "  --batch B               sequences per micro-batch (8)\n"
    "  --ctx T, -c T           tokens per sequence (128)\n"
    "  --grad-accum N          micro-batches per step (1)\n"
    "  --lr LR                 peak learning rate (1e-3)\n"
    "  --min-lr LR             final learning rate of the cosine decay (lr/10)\n"
    "  --warmup N              linear warm-up steps (0)\n"
    "  --clip C                clip the global gradient norm to C; 0 = off (1.0)\n"
    "  --weight-decay W        AdamW decoupled weight decay on matrices (0.1)\n"
    "  --beta1 B, --beta2 B    AdamW moments (0.9, 0.95)\n"
    "  --seed S                data sampling seed (42)\n"
    "  -t, --threads N         threads (all cores)\n"
    "\n"
    "router (default: the model file's; see docs/ROUTERS.md):\n"
    "  --router NAME           topk switch gshard expert-choice soft-moe base deepseek-v3 loss-free adamoe hash usmoe\n"
    "  --k K, --renorm, --no-renorm, --capacity-factor C, --min-capacity N, --priority token|bpr,\n"
    "  --n-group G, --topk-group G, --route-scale S, --assign balanced|greedy|auction,\n"
    "  --hash-map FILE|balanced|random, --gshard-sample, --usmoe-alpha A, --usmoe-beta B,\n"
    "  --null-experts M (adamoe), --slots P (soft-moe)\n"
    "  --aux-coef A            balance loss coefficient (0.01)\n"
    "  --z-coef Z              router z-loss coefficient (0)\n"
    "  --bias-update-rate U    loss-free / deepseek-v3 bias step u (1e-3)\n"
    "\n"
    "output, checkpoints, logs:\n"
    "  -o, --output FILE       the trained model\n"
    "  --dtype f32|f16         type of the output's matrices (f32)\n"
    "  --checkpoint FILE       checkpoint file (written atomically every --checkpoint-every steps and at the end)\n"
    "  --checkpoint-every N    (0: only at the end)\n"
    "  --resume FILE           continue from a checkpoint (same model, data, batch, ctx)\n"
    "  --stop-at N             stop after step N (the schedule still spans --steps)\n"
    "  --log FILE              JSONL log: one line per step, one per evaluation\n"
    "  --eval-every N          (0: only at the end)\n"
    "  --eval-batches N        batches per evaluation (8)\n"
    "  --quiet                 no progress line\n";

int cmd_train(int argc, char **argv) {
    const char *sub = "train";
    moe_train_params p;
    moe_train_default_params(&p);
    moe_layer_opts *o = &p.router;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int64_t v;
        double f;
        if (cli_is_help(a)) { fputs(USAGE, stdout); return 0; }
#define STR_OPT(cond, dst) else if (cond) { if (!cli_arg_str(sub, argc, argv, &i, &dst)) return 2; }
#define INT_OPT(cond, dst, lo, hi) else if (cond) { if (!cli_arg_int(sub, argc, argv, &i, lo, hi, &v)) return 2; dst = v; }
#define FLT_OPT(cond, dst) else if (cond) { if (!cli_arg_float(sub, argc, argv, &i, &f)) return 2; dst = f; }
        STR_OPT(!strcmp(a, "-m") || !strcmp(a, "--model"), p.model_path)
        STR_OPT(!strcmp(a, "--data"), p.data_path)
        STR_OPT(!strcmp(a, "--eval-data"), p.eval_path)
        STR_OPT(!strcmp(a, "-o") || !strcmp(a, "--output"), p.out_path)
        STR_OPT(!strcmp(a, "--checkpoint"), p.checkpoint_path)
        STR_OPT(!strcmp(a, "--resume"), p.resume_path)
        STR_OPT(!strcmp(a, "--log"), p.log_path)
        INT_OPT(!strcmp(a, "--steps"), p.steps, 1, INT64_C(1) << 40)
        INT_OPT(!strcmp(a, "--batch"), p.batch, 1, 1 << 20)
        INT_OPT(!strcmp(a, "--ctx") || !strcmp(a, "-c"), p.ctx, 2, 1 << 20)
        INT_OPT(!strcmp(a, "--grad-accum"), p.grad_accum, 1, 1 << 20)
        INT_OPT(!strcmp(a, "--warmup"), p.warmup, 0, INT64_C(1) << 40)
        INT_OPT(!strcmp(a, "--stop-at"), p.stop_at, 1, INT64_C(1) << 40)
        INT_OPT(!strcmp(a, "--checkpoint-every"), p.checkpoint_every, 0, INT64_C(1) << 40)
        INT_OPT(!strcmp(a, "--eval-every"), p.eval_every, 0, INT64_C(1) << 40)
        INT_OPT(!strcmp(a, "--eval-batches"), p.eval_batches, 1, 1 << 20)
        INT_OPT(!strcmp(a, "-t") || !strcmp(a, "--threads"), p.n_threads, 1, 1024)
        INT_OPT(!strcmp(a, "--seed"), p.seed, 0, INT64_MAX)
        INT_OPT(!strcmp(a, "--k") || !strcmp(a, "-k"), o->k, 1, 1024)
        INT_OPT(!strcmp(a, "--min-capacity"), o->min_capacity, 0, 1 << 30)
        INT_OPT(!strcmp(a, "--n-group"), o->n_group, 1, 1024)
        INT_OPT(!strcmp(a, "--topk-group"), o->topk_group, 1, 1024)
        INT_OPT(!strcmp(a, "--null-experts"), p.n_null, 1, 1024)
        INT_OPT(!strcmp(a, "--slots"), p.slots_per_expert, 1, 1024)
        FLT_OPT(!strcmp(a, "--lr"), p.lr)
        FLT_OPT(!strcmp(a, "--min-lr"), p.min_lr)
        FLT_OPT(!strcmp(a, "--clip"), p.clip)
        FLT_OPT(!strcmp(a, "--weight-decay"), p.weight_decay)
        FLT_OPT(!strcmp(a, "--beta1"), p.beta1)
        FLT_OPT(!strcmp(a, "--beta2"), p.beta2)
        FLT_OPT(!strcmp(a, "--aux-coef"), p.aux_coef)
        FLT_OPT(!strcmp(a, "--z-coef"), p.z_coef)
        FLT_OPT(!strcmp(a, "--bias-update-rate"), p.bias_update_rate)
        FLT_OPT(!strcmp(a, "--capacity-factor"), o->capacity_factor)
        FLT_OPT(!strcmp(a, "--route-scale"), o->route_scale)
        FLT_OPT(!strcmp(a, "--usmoe-alpha"), o->usmoe_alpha)
        FLT_OPT(!strcmp(a, "--usmoe-beta"), o->usmoe_beta)
        STR_OPT(!strcmp(a, "--router"), o->router)
        STR_OPT(!strcmp(a, "--assign"), o->assign)
        STR_OPT(!strcmp(a, "--priority"), o->priority)
        STR_OPT(!strcmp(a, "--hash-map"), o->hash_map)
#undef STR_OPT
#undef INT_OPT
#undef FLT_OPT
        else if (!strcmp(a, "--renorm")) o->renorm = 1;
        else if (!strcmp(a, "--no-renorm")) o->renorm = 0;
        else if (!strcmp(a, "--gshard-sample")) o->gshard_sample = 1;
        else if (!strcmp(a, "--quiet")) p.progress = false;
        else if (!strcmp(a, "--dtype")) {
            const char *d;
            if (!cli_arg_str(sub, argc, argv, &i, &d)) return 2;
            if (!strcmp(d, "f16")) p.f16_out = true;
            else if (!strcmp(d, "f32")) p.f16_out = false;
            else return cli_usage(sub, "--dtype must be f32 or f16, not '%s'", d);
        }
        else return cli_usage(sub, "unknown option %s", a);
    }
    if (!p.model_path) return cli_usage(sub, "-m MODEL.gguf is required");
    if (!p.data_path) return cli_usage(sub, "--data is required");
    if (!p.out_path) return cli_usage(sub, "-o is required");
    moe_status st = moe_train(&p);
    if (st == MOE_ERR_INVALID) return cli_fail_lib(sub);
    if (st) return cli_fail_lib(sub);
    if (p.progress) fprintf(stderr, "moe train: wrote %s\n", p.out_path);
    return 0;
}
