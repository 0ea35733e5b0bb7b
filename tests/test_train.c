/* test_train.c — `moe init` and `moe train` end to end: initialised models of every
 * architecture load in the inference engine and its logits equal the training model's
 * forward pass; init matches mkmoe.py's keys, names and shapes; a few hundred steps
 * overfit a tiny text; --resume continues bit for bit; corrupt, truncated and mismatched
 * checkpoints are refused with clear messages; a SIGKILLed run leaves a usable
 * checkpoint; `moe plot` writes well-formed SVG with the series. */
#include "test.h"
#include "moe.h"
#include "train/tmodel.h"

#include <stdlib.h>
#include <unistd.h>

static const char *vocab(void) { return test_fixture("tokenizer/ggml-vocab-llama-spm.gguf"); }

static void tiny_init(moe_init_params *p, const char *arch) {
    moe_init_default_params(p);
    p->arch = arch;
    p->n_layer = 2;
    p->n_embd = 32;
    p->n_head = 4;
    p->n_head_kv = 2;
    p->n_ff = 24;
    p->n_expert = 4;
    p->n_expert_used = 2;
    p->n_ctx = 64;
    p->vocab_size = 300;
    p->seed = 3;
    if (!strcmp(arch, "deepseek")) { p->shared_ff = 48; p->dense_layers = 1; }
}

static char *tmp(const char *name) {
    static char buf[8][512];
    static int i;
    char *b = buf[i++ % 8];
    snprintf(b, sizeof buf[0], "%s/%s", test_tmpdir(), name);
    return b;
}

static void write_text(const char *path, int words, unsigned seed) {
    static const char *w[] = {"the", "cat", "sat", "on", "a", "mat", "and", "dog", "ran", "to", "big", "red", "house"};
    FILE *f = fopen(path, "w");
    for (int i = 0; i < words; i++) {
        seed = seed * 1103515245u + 12345u;
        fprintf(f, "%s%s", i ? " " : "", w[(seed >> 16) % 13]);
    }
    fclose(f);
}

/* The training forward pass and the inference pass agree on a fresh model of each arch. */
TEST(train_init_logits_match_inference) {
    const char *archs[] = {"mixtral", "qwen2moe", "qwen3moe", "olmoe", "deepseek", "mixtral"};
    for (size_t a = 0; a < MOE_ARRAY_LEN(archs); a++) {
        moe_init_params p;
        tiny_init(&p, archs[a]);
        if (a == 5) p.n_expert = 0; /* a dense llama */
        const char *path = tmp("init.gguf");
        REQUIRE_MSG(moe_init_model(&p, vocab(), path) == MOE_OK, "%s: %s", archs[a], moe_last_error());
        moe_model *m = moe_model_load(path, NULL);
        REQUIRE_MSG(m, "%s: moe_model_load: %s", archs[a], moe_last_error());
        moe_context *c = moe_context_init(m, 16);
        REQUIRE(c);
        int32_t toks[12];
        for (int i = 0; i < 12; i++) toks[i] = (int32_t)((i * 37 + 11) % 300);
        const int64_t V = moe_model_n_vocab(m);
        CHECK_EQ_INT(V, 300);
        float *ref = malloc((size_t)(12 * V) * sizeof *ref);
        REQUIRE(moe_eval(c, toks, 12, ref, 0) == MOE_OK);
        moe_gguf *g = moe_gguf_open(path);
        tm_config cfg;
        tm_model tm;
        REQUIRE_MSG(tm_config_from_gguf(g, &cfg) == MOE_OK, "%s", moe_last_error());
        REQUIRE(tm_model_init(&tm, &cfg, NULL) == MOE_OK);
        REQUIRE(tm_model_load_weights(&tm, g, false, 0) == MOE_OK);
        REQUIRE(tm_forward(&tm, toks, NULL, 1, 12) == MOE_OK);
        double worst = 0, scale = 0;
        for (int64_t i = 0; i < 12 * V; i++) {
            worst = fmax(worst, fabs(ref[i] - tm.logits[i]));
            scale = fmax(scale, fabs(ref[i]));
        }
        CHECK_MSG(worst <= 1e-4 * fmax(scale, 1.0), "%s: logits differ by %g (scale %g)", archs[a], worst, scale);
        tm_model_free(&tm);
        tm_config_free(&cfg);
        moe_gguf_close(g);
        free(ref);
        moe_context_free(c);
        moe_model_free(m);
    }
}

/* Keys, tensor names and shapes as mkmoe.py writes them for the same shape. */
TEST(train_init_matches_mkmoe) {
    if (!test_have_python_module("numpy")) { test_skip("python3 numpy not available"); return; }
    const char *archs[] = {"mixtral", "qwen2moe", "olmoe"};
    for (size_t a = 0; a < MOE_ARRAY_LEN(archs); a++) {
        const char *ours = tmp("ours.gguf"), *theirs = tmp("mk.gguf");
        char cmd[2048];
        snprintf(cmd, sizeof cmd, "%s init --arch %s --layers 2 --embd 32 --heads 4 --kv-heads 2 --ff 24 --experts 4 "
                 "--topk 2 --ctx 64 --vocab %s --vocab-size 300 -o %s 2>&1 && /usr/bin/python3 %s --arch %s --layers 2 "
                 "--embd 32 --heads 4 --kv-heads 2 --ff 24 --experts 4 --topk 2 --ctx 64 --vocab-from %s --vocab-size 300 "
                 "--dtype f32 --out %s 2>&1", test_moe_bin(), archs[a], vocab(), ours, test_fixture("mkmoe.py"), archs[a],
                 vocab(), theirs);
        char *out = NULL;
        int rc = test_run(cmd, &out);
        REQUIRE_MSG(rc == 0, "%s", out ? out : "");
        free(out);
        moe_gguf *x = moe_gguf_open(ours), *y = moe_gguf_open(theirs);
        REQUIRE(x && y);
        /* every key of mkmoe's file is in ours with the same type (merges: mkmoe drops them
         * on a cut vocabulary, we keep the merges that still apply) */
        for (int64_t i = 0; i < moe_gguf_n_kv(y); i++) {
            const char *k = moe_gguf_kv_key(y, i);
            const moe_gguf_value *vy = moe_gguf_kv_value(y, i), *vx = moe_gguf_find(x, k);
            CHECK_MSG(vx != NULL, "%s: key %s missing", archs[a], k);
            if (vx && strcmp(k, "general.name")) {
                CHECK_MSG(vx->type == vy->type, "%s: key %s type %d vs %d", archs[a], k, vx->type, vy->type);
                if (vx->type == MOE_GGUF_U32 || vx->type == MOE_GGUF_I32) CHECK_MSG(vx->v.u64 == vy->v.u64 || vx->v.i64 == vy->v.i64, "%s: %s value", archs[a], k);
                if (vx->type == MOE_GGUF_ARRAY) CHECK_MSG(vx->v.arr.n == vy->v.arr.n, "%s: %s has %llu entries vs %llu", archs[a], k,
                                                          (unsigned long long)vx->v.arr.n, (unsigned long long)vy->v.arr.n);
            }
        }
        CHECK_EQ_INT(moe_gguf_n_tensors(x), moe_gguf_n_tensors(y));
        for (int64_t i = 0; i < moe_gguf_n_tensors(y); i++) {
            const moe_gguf_tensor *ty = moe_gguf_tensor_at(y, i), *tx = moe_gguf_find_tensor(x, ty->name);
            CHECK_MSG(tx != NULL, "%s: tensor %s missing", archs[a], ty->name);
            if (!tx) continue;
            CHECK_MSG(tx->n_dims == ty->n_dims && !memcmp(tx->ne, ty->ne, sizeof tx->ne), "%s: %s shape differs", archs[a], ty->name);
            CHECK_MSG(tx->type == ty->type, "%s: %s type %d vs %d", archs[a], ty->name, tx->type, ty->type);
        }
        moe_gguf_close(x);
        moe_gguf_close(y);
    }
}

static void train_defaults(moe_train_params *p, const char *model, const char *data) {
    moe_train_default_params(p);
    p->model_path = model;
    p->data_path = data;
    p->batch = 4;
    p->ctx = 16;
    p->lr = 3e-3;
    p->n_threads = 2;
    p->progress = false;
    p->seed = 5;
}

static char *slurp(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)n + 1);
    size_t r = fread(b, 1, (size_t)n, f);
    b[r] = 0;
    fclose(f);
    return b;
}

/* A few hundred steps on a short repeated text drive the loss far down. */
TEST(train_overfits_tiny_text) {
    moe_init_params ip;
    tiny_init(&ip, "mixtral");
    const char *model = tmp("ov.gguf"), *data = tmp("ov.txt"), *log = tmp("ov.jsonl");
    REQUIRE(moe_init_model(&ip, vocab(), model) == MOE_OK);
    FILE *f = fopen(data, "w");
    for (int i = 0; i < 20; i++) fputs("the quick brown fox jumps over the lazy dog. ", f);
    fclose(f);
    moe_train_params p;
    train_defaults(&p, model, data);
    p.steps = 200;
    p.warmup = 10;
    p.lr = 1e-2;
    p.weight_decay = 0;
    p.out_path = tmp("ov_out.gguf");
    p.log_path = log;
    REQUIRE_MSG(moe_train(&p) == MOE_OK, "%s", moe_last_error());
    char *s = slurp(log);
    REQUIRE(s);
    double first = strtod(strstr(s, "\"loss\":") + 7, NULL);
    const char *lastl = s, *q = s;
    while ((q = strstr(q, "\"loss\":"))) lastl = q++;
    double last = strtod(lastl + 7, NULL);
    CHECK_MSG(first > 5.0 && last < 0.5, "loss %g → %g", first, last);
    free(s);
    /* the trained file runs in the inference engine */
    moe_model *m = moe_model_load(p.out_path, NULL);
    CHECK_MSG(m != NULL, "%s", moe_last_error());
    moe_model_free(m);
}

/* Per-step losses of the "loss" field in a log, as exact text. */
static int log_losses(const char *path, char out[][40], int max) {
    char *s = slurp(path);
    if (!s) return 0;
    int n = 0;
    for (char *q = s; (q = strstr(q, "\"loss\":")) && n < max; q++) {
        q += 7;
        size_t k = strcspn(q, ",}");
        snprintf(out[n++], 40, "%.*s", (int)k, q);
    }
    free(s);
    return n;
}

TEST(train_resume_bit_identical) {
    const char *archs[] = {"qwen2moe", "mixtral"};
    const char *routers[] = {NULL, "loss-free"};
    for (int r = 0; r < 2; r++) {
        moe_init_params ip;
        tiny_init(&ip, archs[r]);
        const char *model = tmp("rs.gguf"), *data = tmp("rs.txt");
        REQUIRE(moe_init_model(&ip, vocab(), model) == MOE_OK);
        write_text(data, 600, 7);
        moe_train_params p;
        train_defaults(&p, model, data);
        p.router.router = routers[r];
        p.steps = 6;
        p.warmup = 2;
        p.grad_accum = 2;
        p.out_path = tmp("full.gguf");
        p.log_path = tmp("full.jsonl");
        REQUIRE_MSG(moe_train(&p) == MOE_OK, "%s", moe_last_error());
        p.stop_at = 3;
        p.out_path = tmp("half.gguf");
        p.log_path = tmp("half.jsonl");
        p.checkpoint_path = tmp("ck.gguf");
        REQUIRE_MSG(moe_train(&p) == MOE_OK, "%s", moe_last_error());
        /* the interrupted run's log went further than its checkpoint: resume trims it */
        FILE *lf = fopen(p.log_path, "a");
        fputs("{\"step\":4,\"loss\":1}\n{\"timing\":{}}\n", lf);
        fclose(lf);
        p.stop_at = 0;
        p.resume_path = p.checkpoint_path;
        p.checkpoint_path = NULL;
        p.out_path = tmp("resumed.gguf");
        REQUIRE_MSG(moe_train(&p) == MOE_OK, "%s", moe_last_error());
        char a[8][40], b[8][40];
        int na = log_losses(tmp("full.jsonl"), a, 8), nb = log_losses(tmp("half.jsonl"), b, 8);
        CHECK_EQ_INT(na, 6);
        CHECK_EQ_INT(nb, 6);
        for (int i = 0; i < na && i < nb; i++) CHECK_MSG(!strcmp(a[i], b[i]), "step %d: loss %s vs %s", i + 1, a[i], b[i]);
        /* final weights: identical bytes */
        moe_gguf *x = moe_gguf_open(tmp("full.gguf")), *y = moe_gguf_open(tmp("resumed.gguf"));
        REQUIRE(x && y);
        CHECK_EQ_INT(moe_gguf_n_tensors(x), moe_gguf_n_tensors(y));
        for (int64_t i = 0; i < moe_gguf_n_tensors(x); i++) {
            const moe_gguf_tensor *tx = moe_gguf_tensor_at(x, i), *ty = moe_gguf_find_tensor(y, tx->name);
            CHECK_MSG(ty && tx->nbytes == ty->nbytes && !memcmp(tx->data, ty->data, tx->nbytes), "%s differs", tx->name);
        }
        moe_gguf_close(x);
        moe_gguf_close(y);
    }
}

TEST(train_checkpoint_errors) {
    moe_init_params ip;
    tiny_init(&ip, "mixtral");
    const char *model = tmp("ce.gguf"), *data = tmp("ce.txt"), *ck = tmp("ce_ck.gguf");
    REQUIRE(moe_init_model(&ip, vocab(), model) == MOE_OK);
    write_text(data, 400, 3);
    moe_train_params p;
    train_defaults(&p, model, data);
    p.steps = 2;
    p.out_path = tmp("ce_out.gguf");
    p.checkpoint_path = ck;
    REQUIRE_MSG(moe_train(&p) == MOE_OK, "%s", moe_last_error());
    p.checkpoint_path = NULL;
    p.steps = 4;
    /* truncated */
    char *img = slurp(ck);
    FILE *f = fopen(ck, "rb");
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fclose(f);
    const char *bad = tmp("ce_bad.gguf");
    f = fopen(bad, "wb");
    fwrite(img, 1, (size_t)n - 100, f);
    fclose(f);
    p.resume_path = bad;
    CHECK(moe_train(&p) != MOE_OK);
    CHECK_STR_CONTAINS(moe_last_error(), "ce_bad.gguf");
    /* a flipped byte in the Adam state (last bytes of the file) */
    img[n - 10] ^= 0x40;
    f = fopen(bad, "wb");
    fwrite(img, 1, (size_t)n, f);
    fclose(f);
    CHECK(moe_train(&p) != MOE_OK);
    CHECK_STR_CONTAINS(moe_last_error(), "corrupt");
    free(img);
    /* not a checkpoint: the model itself */
    p.resume_path = model;
    CHECK(moe_train(&p) != MOE_OK);
    CHECK_STR_CONTAINS(moe_last_error(), "not a moe.c training checkpoint");
    /* another shape */
    const char *other = tmp("ce_other.gguf");
    ip.n_ff = 16;
    REQUIRE(moe_init_model(&ip, vocab(), other) == MOE_OK);
    p.model_path = other;
    p.resume_path = ck;
    CHECK(moe_train(&p) != MOE_OK);
    CHECK_STR_CONTAINS(moe_last_error(), "parameters");
    /* another architecture */
    tiny_init(&ip, "olmoe");
    REQUIRE(moe_init_model(&ip, vocab(), other) == MOE_OK);
    CHECK(moe_train(&p) != MOE_OK);
    CHECK_STR_CONTAINS(moe_last_error(), "architecture");
    /* another batch */
    p.model_path = model;
    p.batch = 2;
    CHECK(moe_train(&p) != MOE_OK);
    CHECK_STR_CONTAINS(moe_last_error(), "--batch");
}

/* SIGKILL in the middle of a run: the last checkpoint is intact and resumes. */
TEST(train_sigkill_keeps_checkpoint) {
    moe_init_params ip;
    tiny_init(&ip, "mixtral");
    const char *model = tmp("kill.gguf"), *data = tmp("kill.txt"), *ck = tmp("kill_ck.gguf");
    REQUIRE(moe_init_model(&ip, vocab(), model) == MOE_OK);
    write_text(data, 400, 9);
    char cmd[2048];
    /* the run checkpoints every step and is killed once a checkpoint exists and a few
     * more steps (with their writes) had time to run */
    snprintf(cmd, sizeof cmd,
             "%s train -m %s --data %s --steps 100000 --batch 4 --ctx 16 -t 1 --quiet --checkpoint %s "
             "--checkpoint-every 1 -o %s/kill_out.gguf & pid=$!; i=0; while [ ! -f %s ] && [ $i -lt 200 ]; do sleep 0.02; "
             "i=$((i+1)); done; sleep 0.2; kill -9 $pid; wait $pid 2>/dev/null; ls %s",
             test_moe_bin(), model, data, ck, test_tmpdir(), ck, ck);
    char *out = NULL;
    int rc = test_run(cmd, &out);
    CHECK_MSG(rc == 0, "%s", out ? out : "");
    free(out);
    moe_gguf *g = moe_gguf_open(ck);
    REQUIRE_MSG(g, "checkpoint after SIGKILL: %s", moe_last_error());
    int64_t step = 0;
    CHECK(moe_gguf_get_i64(g, "moe.train.step", &step) == MOE_OK && step >= 1);
    moe_gguf_close(g);
    moe_train_params p;
    train_defaults(&p, model, data);
    p.n_threads = 1;
    p.steps = 100000;
    p.stop_at = step + 1;
    p.resume_path = ck;
    p.out_path = tmp("kill_resumed.gguf");
    CHECK_MSG(moe_train(&p) == MOE_OK, "resume after SIGKILL: %s", moe_last_error());
}

TEST(train_plot_svg) {
    if (!test_have_python_module("numpy")) { test_skip("python3 not available"); return; }
    moe_init_params ip;
    tiny_init(&ip, "mixtral");
    const char *model = tmp("pl.gguf"), *data = tmp("pl.txt"), *log = tmp("pl.jsonl"), *svg = tmp("pl.svg");
    REQUIRE(moe_init_model(&ip, vocab(), model) == MOE_OK);
    write_text(data, 400, 11);
    moe_train_params p;
    train_defaults(&p, model, data);
    p.steps = 6;
    p.eval_path = data;
    p.eval_every = 3;
    p.eval_batches = 2;
    p.out_path = tmp("pl_out.gguf");
    p.log_path = log;
    REQUIRE_MSG(moe_train(&p) == MOE_OK, "%s", moe_last_error());
    char cmd[2048];
    snprintf(cmd, sizeof cmd,
             "%s plot %s -o %s && /usr/bin/python3 -c \"import xml.etree.ElementTree as E,sys; r=E.parse('%s').getroot(); "
             "L=[p.get('data-label') for p in r.iter('{http://www.w3.org/2000/svg}polyline')]; print(L); "
             "n=[len(p.get('points').split()) for p in r.iter('{http://www.w3.org/2000/svg}polyline')]; "
             "need=['train','eval','MoE layer 0','MoE layer 1','expert 0','expert 3']; "
             "sys.exit(0 if all(x in L for x in need) and n[0]==6 and n[1]==2 else 1)\"",
             test_moe_bin(), log, svg, svg);
    char *out = NULL;
    int rc = test_run(cmd, &out);
    CHECK_MSG(rc == 0, "%s", out ? out : "");
    free(out);
}

TEST(train_cli_errors) {
    char cmd[1024], *out = NULL;
    snprintf(cmd, sizeof cmd, "%s train -m /nonexistent.gguf --data x -o y 2>&1", test_moe_bin());
    CHECK(test_run(cmd, &out) != 0);
    CHECK_STR_CONTAINS(out, "nonexistent.gguf");
    free(out);
    snprintf(cmd, sizeof cmd, "%s init --arch nope --vocab %s -o %s/x.gguf 2>&1", test_moe_bin(), vocab(), test_tmpdir());
    CHECK(test_run(cmd, &out) != 0);
    CHECK_STR_CONTAINS(out, "nope");
    free(out);
    snprintf(cmd, sizeof cmd, "%s init --vocab %s --vocab-size 300 --layers 1 --embd 16 --heads 2 --kv-heads 1 --ff 8 "
             "--experts 4 -o %s/cli.gguf 2>&1 && echo 'the cat sat on the mat the cat sat on the mat' > %s/cli.txt && "
             "%s train -m %s/cli.gguf --data %s/cli.txt --ctx 4 --batch 1 --steps 1 --router topk --assign greedy "
             "-o %s/cli_out.gguf 2>&1", test_moe_bin(), vocab(), test_tmpdir(), test_tmpdir(), test_moe_bin(),
             test_tmpdir(), test_tmpdir(), test_tmpdir());
    CHECK(test_run(cmd, &out) != 0);
    CHECK_STR_CONTAINS(out, "--assign does not apply to router topk");
    free(out);
    snprintf(cmd, sizeof cmd, "%s train --help", test_moe_bin());
    CHECK(test_run(cmd, &out) == 0);
    CHECK_STR_CONTAINS(out, "--checkpoint-every");
    free(out);
}

/* The training model's forward pass on llama.cpp's fixture models (F16 weights, read as
 * F32) against llama.cpp's own logits. llama.cpp rounds activations to F16 before each
 * dot product with F16 weights, so agreement is to about F16 precision, not exact. */
TEST(train_forward_vs_llamacpp) {
    const char *names[] = {"mixtral-f16", "qwen2moe-f16", "olmoe-f16"};
    FILE *tf = fopen(test_fixture("gguf/tokens.txt"), "r");
    REQUIRE(tf);
    int32_t toks[64];
    int n = 0;
    while (n < 64 && fscanf(tf, "%d", &toks[n]) == 1) n++;
    fclose(tf);
    REQUIRE(n == 64);
    for (size_t a = 0; a < MOE_ARRAY_LEN(names); a++) {
        char path[256], lpath[256];
        snprintf(path, sizeof path, "gguf/%s.gguf", names[a]);
        snprintf(lpath, sizeof lpath, "gguf/%s.logits", names[a]);
        moe_gguf *g = moe_gguf_open(test_fixture(path));
        REQUIRE_MSG(g, "%s", moe_last_error());
        tm_config cfg;
        tm_model tm;
        REQUIRE_MSG(tm_config_from_gguf(g, &cfg) == MOE_OK, "%s", moe_last_error());
        REQUIRE(tm_model_init(&tm, &cfg, NULL) == MOE_OK);
        REQUIRE(tm_model_load_weights(&tm, g, false, 0) == MOE_OK);
        REQUIRE(tm_forward(&tm, toks, NULL, 1, 64) == MOE_OK);
        const int64_t V = cfg.hp.n_vocab;
        float *ref = malloc((size_t)(64 * V) * sizeof *ref);
        FILE *lf = fopen(test_fixture(lpath), "rb");
        REQUIRE(lf && fread(ref, sizeof *ref, (size_t)(64 * V), lf) == (size_t)(64 * V));
        fclose(lf);
        double worst = 0, scale = 0;
        int argmax_same = 0;
        for (int t = 0; t < 64; t++) {
            const float *r = ref + t * V, *o = tm.logits + t * V;
            int64_t ar = 0, ao = 0;
            double err = 0;
            for (int64_t i = 0; i < V; i++) {
                err = fmax(err, fabs(r[i] - o[i]));
                scale = fmax(scale, fabs(r[i]));
                if (r[i] > r[ar]) ar = i;
                if (o[i] > o[ao]) ao = i;
            }
            argmax_same += ar == ao;
            worst = fmax(worst, err);
        }
        if (getenv("MOE_TEST_VERBOSE"))
            fprintf(stderr, "%s: max |Δlogit| %.4g (max |logit| %.3g), argmax agrees at %d/64\n", names[a], worst, scale, argmax_same);
        /* measured: max |Δ| ≈ 4e-4 of the logit scale, argmax 64/64; a routing flip at a
         * near-tie could move a position or two */
        CHECK_MSG(argmax_same >= 62, "%s: argmax agrees at %d/64 positions", names[a], argmax_same);
        CHECK_MSG(worst <= 2e-3 * scale,  "%s: max |Δlogit| %g vs scale %g", names[a], worst, scale);
        free(ref);
        tm_model_free(&tm);
        tm_config_free(&cfg);
        moe_gguf_close(g);
    }
}

/* Routers llama.cpp cannot express travel in moe.router.* keys and extra tensors, and a
 * trained file continues training with its own router. */
TEST(train_router_roundtrip) {
    moe_init_params ip;
    tiny_init(&ip, "mixtral");
    const char *model = tmp("rt.gguf"), *data = tmp("rt.txt"), *out = tmp("rt_out.gguf"), *out2 = tmp("rt_out2.gguf");
    REQUIRE(moe_init_model(&ip, vocab(), model) == MOE_OK);
    write_text(data, 400, 13);
    const char *routers[] = {"loss-free", "adamoe", "expert-choice", "soft-moe", "hash"};
    for (size_t r = 0; r < MOE_ARRAY_LEN(routers); r++) {
        moe_train_params p;
        train_defaults(&p, model, data);
        p.steps = 2;
        p.router.router = routers[r];
        if (!strcmp(routers[r], "adamoe")) p.n_null = 3;
        if (!strcmp(routers[r], "soft-moe")) p.slots_per_expert = 2;
        if (!strcmp(routers[r], "expert-choice")) p.router.capacity_factor = 1.5;
        p.out_path = out;
        REQUIRE_MSG(moe_train(&p) == MOE_OK, "%s: %s", routers[r], moe_last_error());
        moe_gguf *g = moe_gguf_open(out);
        REQUIRE(g);
        const char *kind = NULL;
        CHECK(moe_gguf_get_str(g, "moe.router.kind", &kind) == MOE_OK && kind && !strcmp(kind, routers[r]));
        tm_config c;
        REQUIRE_MSG(tm_config_from_gguf(g, &c) == MOE_OK, "%s: %s", routers[r], moe_last_error());
        CHECK_MSG(!strcmp(moe_router_name(c.router.kind), routers[r]), "%s read back as %s", routers[r], moe_router_name(c.router.kind));
        if (!strcmp(routers[r], "adamoe")) CHECK_EQ_INT(c.router.n_null, 3);
        if (!strcmp(routers[r], "soft-moe")) CHECK_EQ_INT(c.router.slots_per_expert, 2);
        if (!strcmp(routers[r], "expert-choice")) CHECK_NEAR(c.router.capacity_factor, 1.5, 1e-6);
        if (!strcmp(routers[r], "loss-free")) {
            /* the selection bias moved away from 0 by the update rule */
            const moe_gguf_tensor *b = moe_gguf_find_tensor(g, "blk.0.exp_probs_b.bias");
            REQUIRE(b && b->ne[0] == 4);
            double s = 0;
            for (int e = 0; e < 4; e++) s += fabs(((const float *)b->data)[e]);
            CHECK_MSG(s > 1e-4, "loss-free bias was not updated (sum |b| = %g)", s);
        }
        tm_config_free(&c);
        moe_gguf_close(g);
        /* continue training the trained file with its own router */
        p.model_path = out;
        p.router.router = NULL;
        p.n_null = p.slots_per_expert = 0;
        p.router.capacity_factor = NAN;
        p.out_path = out2;
        CHECK_MSG(moe_train(&p) == MOE_OK, "%s (continued): %s", routers[r], moe_last_error());
    }
}

/* Gradient accumulation: 2 micro-batches of B windows make the same steps as one batch of
 * 2B (the same windows in the same order; top-k without capacity and without the balance
 * loss does not depend on how tokens are grouped), up to float rounding. */
TEST(train_grad_accum_equals_big_batch) {
    moe_init_params ip;
    tiny_init(&ip, "mixtral");
    const char *model = tmp("ga.gguf"), *data = tmp("ga.txt");
    REQUIRE(moe_init_model(&ip, vocab(), model) == MOE_OK);
    write_text(data, 600, 17);
    moe_train_params p;
    train_defaults(&p, model, data);
    p.steps = 4;
    p.aux_coef = 0;
    p.batch = 4;
    p.out_path = tmp("ga1.gguf");
    p.log_path = tmp("ga1.jsonl");
    REQUIRE_MSG(moe_train(&p) == MOE_OK, "%s", moe_last_error());
    p.batch = 2;
    p.grad_accum = 2;
    p.out_path = tmp("ga2.gguf");
    p.log_path = tmp("ga2.jsonl");
    REQUIRE_MSG(moe_train(&p) == MOE_OK, "%s", moe_last_error());
    char a[8][40], b[8][40];
    int na = log_losses(tmp("ga1.jsonl"), a, 8), nb = log_losses(tmp("ga2.jsonl"), b, 8);
    REQUIRE(na == 4 && nb == 4);
    for (int i = 0; i < 4; i++) {
        double x = atof(a[i]), y = atof(b[i]);
        CHECK_MSG(fabs(x - y) <= 1e-4 * fabs(x), "step %d: loss %.9g (batch 4) vs %.9g (2 × 2)", i + 1, x, y);
    }
}
