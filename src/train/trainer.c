/* trainer.c — `moe train` as a library call (moe_train in moe.h): loads the model and
 * tokenizes the data, runs the training loop (gradient accumulation, clipping, AdamW,
 * loss-free bias updates), evaluates, logs (stderr progress line, JSONL per step), and
 * writes checkpoints (atomic GGUF: weights + Adam moments + step + RNG + data position)
 * that --resume continues bit for bit. docs/TRAINING.md describes the formats. */
#include "train/optim.h"
#include "train/tmodel.h"
#include "core/types.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#define CKPT_VERSION 1

void moe_train_default_params(moe_train_params *p) {
    memset(p, 0, sizeof *p);
    moe_layer_opts_default(&p->router);
    p->steps = 100;
    p->batch = 8;
    p->ctx = 128;
    p->grad_accum = 1;
    p->lr = 1e-3;
    p->min_lr = -1;          /* < 0: lr / 10 */
    p->clip = 1.0;
    p->weight_decay = 0.1;
    p->beta1 = 0.9;
    p->beta2 = 0.95;
    p->adam_eps = 1e-8;
    p->aux_coef = 0.01;
    p->z_coef = 0.0;
    p->bias_update_rate = 1e-3;
    p->seed = 42;
    p->eval_batches = 8;
    p->progress = true;
}

typedef struct {
    const moe_train_params *p;
    moe_gguf *g;
    tm_config c;
    tm_model m;
    bool model_ok;
    moe_pool *pool;
    float *mom, *var;
    int32_t *data, *eval;
    size_t n_data, n_eval;
    int32_t *tok, *tgt;          /* [B × T] */
    int64_t step;                /* steps done */
    uint64_t rng;                /* window sampler state */
    uint64_t windows;            /* windows drawn so far (the data position) */
    int64_t *load;               /* [n_layer × E] tokens per expert over the step */
    int32_t *hash_map;
    FILE *log;
    double t_optim, t_eval;       /* seconds in the optimizer (norm, AdamW), in evaluation */
} trainer;

/* ---------------------------------------------------------------- data */

static moe_status read_file(const char *path, char **out, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return moe_error(MOE_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap + 1);
    while (buf) {
        size_t r = fread(buf + n, 1, cap - n, f);
        n += r;
        if (n < cap) break;
        cap *= 2;
        char *nb = realloc(buf, cap + 1);
        if (!nb) { free(buf); buf = NULL; }
        else buf = nb;
    }
    bool err = ferror(f);
    fclose(f);
    if (!buf) return moe_error(MOE_ERR_NOMEM, "%s: out of memory reading the file", path);
    if (err) { free(buf); return moe_error(MOE_ERR_IO, "%s: read error", path); }
    buf[n] = 0;
    *out = buf;
    *len = n;
    return MOE_OK;
}

static moe_status tokenize_file(const moe_tokenizer *tok, const char *path, int64_t need, int32_t **ids, size_t *n) {
    char *text = NULL;
    size_t len = 0;
    moe_status st = read_file(path, &text, &len);
    if (st) return st;
    st = moe_tokenizer_encode(tok, text, len, false, false, ids, n);
    free(text);
    if (st) return moe_error(st, "%s: tokenizing: %s", path, moe_last_error());
    if ((int64_t)*n < need)
        return moe_error(MOE_ERR_INVALID, "%s: %zu tokens; at least %lld (ctx + 1) are needed", path, *n, (long long)need);
    return MOE_OK;
}

/* B windows of T+1 consecutive tokens at positions drawn from the RNG. */
static void sample_batch(trainer *t) {
    const int64_t B = t->p->batch, T = t->p->ctx;
    for (int64_t b = 0; b < B; b++) {
        uint64_t start = tm_rng_next(&t->rng) % (uint64_t)(t->n_data - (size_t)T);
        t->windows++;
        memcpy(t->tok + b * T, t->data + start, (size_t)T * sizeof(int32_t));
        memcpy(t->tgt + b * T, t->data + start + 1, (size_t)T * sizeof(int32_t));
    }
}

/* ---------------------------------------------------------------- router options */

static moe_status load_hash_map(trainer *t, const char *spec) {
    const int E = (int)t->c.hp.n_expert;
    const int64_t V = t->c.hp.n_vocab;
    t->hash_map = moe_malloc((size_t)V * sizeof *t->hash_map);
    if (!t->hash_map) return MOE_ERR_NOMEM;
    moe_status st;
    if (!strcmp(spec, "random")) {
        st = moe_router_hash_map_random(t->hash_map, V, E, t->p->seed);
    } else if (!strcmp(spec, "balanced")) { /* Roller et al.: balanced on the training data */
        int64_t *freq = moe_calloc((size_t)V, sizeof *freq);
        if (!freq) return MOE_ERR_NOMEM;
        for (size_t i = 0; i < t->n_data; i++) freq[t->data[i]]++;
        st = moe_router_hash_map_balanced(t->hash_map, freq, V, E);
        free(freq);
    } else {
        FILE *f = fopen(spec, "r");
        if (!f) return moe_error(MOE_ERR_IO, "--hash-map %s: cannot open: %s", spec, strerror(errno));
        int64_t n = 0;
        long v;
        st = MOE_OK;
        while (n < V && fscanf(f, "%ld", &v) == 1) {
            if (v < 0 || v >= E) { st = moe_error(MOE_ERR_FORMAT, "%s: line %lld: %ld is not an expert id", spec, (long long)n + 1, v); break; }
            t->hash_map[n++] = (int32_t)v;
        }
        fclose(f);
        if (!st && n < V) st = moe_error(MOE_ERR_FORMAT, "%s: %lld entries, the vocabulary has %lld", spec, (long long)n, (long long)V);
    }
    if (st) return st;
    t->c.router.hash_map = t->hash_map;
    t->c.router.hash_map_len = V;
    return MOE_OK;
}

/* The --router flags on top of the file's router (or of a new router's defaults). */
static moe_status apply_router(trainer *t) {
    const moe_layer_opts *o = &t->p->router;
    moe_router_cfg *r = &t->c.router;
    const int E = (int)t->c.hp.n_expert;
    if (E == 0) return o->router ? moe_error(MOE_ERR_INVALID, "--router: the model has no experts") : MOE_OK;
    if (o->router) {
        moe_router_kind kind;
        moe_status st = moe_router_from_name(o->router, &kind);
        if (st) return st;
        if (kind != r->kind) {
            int k = r->k;
            moe_router_cfg_default(r, kind, E);
            if (kind == MOE_ROUTER_TOPK || kind == MOE_ROUTER_LOSS_FREE || kind == MOE_ROUTER_DEEPSEEK_V3 ||
                kind == MOE_ROUTER_ADAMOE || kind == MOE_ROUTER_USMOE)
                r->k = k;
            if (kind == MOE_ROUTER_TOPK) r->renorm = t->c.hp.expert_weights_norm;
            r->hash_map = NULL;
            r->hash_map_len = 0;
        }
    }
    /* a flag the router does not read is a mistake worth saying (as `moe layer` does) */
    const moe_router_kind k = r->kind;
    const bool tc = k == MOE_ROUTER_TOPK || k == MOE_ROUTER_SWITCH || k == MOE_ROUTER_GSHARD;
    const bool ds = k == MOE_ROUTER_DEEPSEEK_V3 || k == MOE_ROUTER_LOSS_FREE;
    const struct { bool given, ok; const char *flag; } rules[] = {
        {o->k != 0, k == MOE_ROUTER_TOPK || ds || k == MOE_ROUTER_ADAMOE || k == MOE_ROUTER_USMOE, "--k"},
        {o->renorm >= 0, k == MOE_ROUTER_TOPK || ds, "--renorm/--no-renorm"},
        {!isnan(o->capacity_factor), tc || k == MOE_ROUTER_EXPERT_CHOICE, "--capacity-factor"},
        {o->min_capacity >= 0, k == MOE_ROUTER_EXPERT_CHOICE, "--min-capacity"},
        {o->priority != NULL, tc, "--priority"},
        {o->n_group || o->topk_group, ds, "--n-group/--topk-group"},
        {!isnan(o->route_scale), ds, "--route-scale"},
        {o->assign != NULL, k == MOE_ROUTER_BASE, "--assign"},
        {o->hash_map != NULL, k == MOE_ROUTER_HASH, "--hash-map"},
        {o->gshard_sample >= 0, k == MOE_ROUTER_GSHARD, "--gshard-sample"},
        {!isnan(o->usmoe_alpha) || !isnan(o->usmoe_beta), k == MOE_ROUTER_USMOE, "--usmoe-alpha/--usmoe-beta"},
        {t->p->n_null > 0, k == MOE_ROUTER_ADAMOE, "--null-experts"},
        {t->p->slots_per_expert > 0, k == MOE_ROUTER_SOFT_MOE, "--slots"},
    };
    for (size_t i = 0; i < MOE_ARRAY_LEN(rules); i++)
        if (rules[i].given && !rules[i].ok)
            return moe_error(MOE_ERR_INVALID, "%s does not apply to router %s (docs/TRAINING.md lists each router's options)",
                             rules[i].flag, moe_router_name(k));
    if (r->kind == MOE_ROUTER_ADAMOE) r->n_null = t->p->n_null > 0 ? t->p->n_null : r->n_null > 0 ? r->n_null : MOE_MAX(1, E / 2);
    if (r->kind == MOE_ROUTER_SOFT_MOE && t->p->slots_per_expert > 0) r->slots_per_expert = t->p->slots_per_expert;
    if (o->k) r->k = o->k;
    if (o->renorm >= 0) r->renorm = o->renorm != 0;
    if (!isnan(o->capacity_factor)) r->capacity_factor = o->capacity_factor;
    if (o->min_capacity >= 0) r->min_capacity = o->min_capacity;
    if (o->n_group) r->n_group = o->n_group;
    if (o->topk_group) r->topk_group = o->topk_group;
    if (!isnan(o->route_scale)) r->route_scale = (float)o->route_scale;
    if (o->gshard_sample >= 0) { r->gshard_sample = o->gshard_sample != 0; r->seed = o->seed; }
    if (!isnan(o->usmoe_alpha)) r->usmoe_alpha = (float)o->usmoe_alpha;
    if (!isnan(o->usmoe_beta)) r->usmoe_beta = (float)o->usmoe_beta;
    if (o->assign) {
        if (!strcmp(o->assign, "balanced")) r->assign = MOE_ASSIGN_BALANCED;
        else if (!strcmp(o->assign, "greedy")) r->assign = MOE_ASSIGN_GREEDY;
        else if (!strcmp(o->assign, "auction")) r->assign = MOE_ASSIGN_AUCTION;
        else return moe_error(MOE_ERR_INVALID, "--assign: '%s' is not one of balanced, greedy, auction", o->assign);
    }
    if (o->priority) {
        if (!strcmp(o->priority, "token")) r->priority = MOE_PRIORITY_TOKEN;
        else if (!strcmp(o->priority, "bpr")) r->priority = MOE_PRIORITY_BPR;
        else return moe_error(MOE_ERR_INVALID, "--priority: '%s' is not one of token, bpr", o->priority);
    }
    if (r->kind == MOE_ROUTER_HASH && o->hash_map) {
        moe_status st = load_hash_map(t, o->hash_map);
        if (st) return st;
    }
    return moe_router_cfg_check(r);
}

/* ---------------------------------------------------------------- checkpoints */

/* FNV-1a over 32-bit words of the parameters and both moments: catches a checkpoint
 * whose bytes changed after it was written (the GGUF reader catches truncation). */
static uint64_t checksum(const trainer *t) {
    uint64_t h = 0xcbf29ce484222325ull;
    const float *bufs[3] = {t->m.params, t->mom, t->var};
    for (int b = 0; b < 3; b++) {
        const uint32_t *w = (const uint32_t *)bufs[b];
        for (size_t i = 0; i < t->m.n_params; i++) h = (h ^ w[i]) * 0x100000001b3ull;
    }
    return h;
}

static moe_status save_checkpoint(trainer *t, const char *path) {
    moe_gguf_writer *w = moe_gguf_writer_init();
    if (!w) return MOE_ERR_NOMEM;
    void *buf = NULL;
    moe_status st = tm_model_to_writer(&t->m, w, t->g, true, false, &buf);
    const moe_train_params *p = t->p;
    const int64_t ne = (int64_t)t->m.n_params;
#define TRY(x) do { if (!st) st = (x); } while (0)
    TRY(moe_gguf_writer_set_u32(w, "moe.train.version", CKPT_VERSION));
    TRY(moe_gguf_writer_set_u64(w, "moe.train.step", (uint64_t)t->step));
    TRY(moe_gguf_writer_set_u64(w, "moe.train.rng", t->rng));
    TRY(moe_gguf_writer_set_u64(w, "moe.train.windows", t->windows));
    TRY(moe_gguf_writer_set_u64(w, "moe.train.n_params", (uint64_t)ne));
    TRY(moe_gguf_writer_set_u64(w, "moe.train.checksum", checksum(t)));
    TRY(moe_gguf_writer_set_u64(w, "moe.train.data_tokens", (uint64_t)t->n_data));
    TRY(moe_gguf_writer_set_u64(w, "moe.train.steps", (uint64_t)p->steps));
    TRY(moe_gguf_writer_set_u64(w, "moe.train.batch", (uint64_t)p->batch));
    TRY(moe_gguf_writer_set_u64(w, "moe.train.ctx", (uint64_t)p->ctx));
    TRY(moe_gguf_writer_set_u64(w, "moe.train.grad_accum", (uint64_t)p->grad_accum));
    TRY(moe_gguf_writer_set_u64(w, "moe.train.seed", p->seed));
    TRY(moe_gguf_writer_set_f32(w, "moe.train.lr", (float)p->lr));
    TRY(moe_gguf_writer_add_tensor(w, "moe.train.adam_m", MOE_TYPE_F32, 1, &ne, t->mom, (uint64_t)ne * 4));
    TRY(moe_gguf_writer_add_tensor(w, "moe.train.adam_v", MOE_TYPE_F32, 1, &ne, t->var, (uint64_t)ne * 4));
    TRY(moe_gguf_writer_write(w, path));
#undef TRY
    moe_gguf_writer_free(w);
    free(buf);
    return st;
}

static moe_status ckpt_u64(const moe_gguf *g, const char *key, uint64_t *out) {
    const moe_gguf_value *v = moe_gguf_find(g, key);
    if (!v)
        return moe_error(MOE_ERR_FORMAT, "%s: not a moe.c training checkpoint ('%s' is missing)", moe_gguf_path(g), key);
    if (v->type != MOE_GGUF_U64 && v->type != MOE_GGUF_U32)
        return moe_error(MOE_ERR_FORMAT, "%s: '%s' is not an unsigned integer", moe_gguf_path(g), key);
    *out = v->v.u64;
    return MOE_OK;
}

static moe_status load_checkpoint(trainer *t, const char *path) {
    const moe_train_params *p = t->p;
    moe_gguf *g = moe_gguf_open(path);
    if (!g) return moe_error(moe_last_status() ? moe_last_status() : MOE_ERR_IO, "checkpoint %s: %s", path, moe_last_error());
    moe_status st;
    uint64_t ver, step, rng, win, np, sum, ntok, batch, ctx, accum, steps;
    if ((st = ckpt_u64(g, "moe.train.version", &ver)) || (st = ckpt_u64(g, "moe.train.step", &step)) ||
        (st = ckpt_u64(g, "moe.train.rng", &rng)) || (st = ckpt_u64(g, "moe.train.windows", &win)) ||
        (st = ckpt_u64(g, "moe.train.n_params", &np)) || (st = ckpt_u64(g, "moe.train.checksum", &sum)) ||
        (st = ckpt_u64(g, "moe.train.data_tokens", &ntok)) || (st = ckpt_u64(g, "moe.train.batch", &batch)) ||
        (st = ckpt_u64(g, "moe.train.ctx", &ctx)) || (st = ckpt_u64(g, "moe.train.grad_accum", &accum)) ||
        (st = ckpt_u64(g, "moe.train.steps", &steps)))
        goto done;
    if (ver != CKPT_VERSION) {
        st = moe_error(MOE_ERR_UNSUPPORTED, "%s: checkpoint version %llu (this build reads %d)", path, (unsigned long long)ver, CKPT_VERSION);
        goto done;
    }
    const char *arch = "";
    moe_gguf_get_str(g, "general.architecture", &arch);
    if (strcmp(arch, t->c.arch->name) != 0) {
        st = moe_error(MOE_ERR_INVALID, "%s: the checkpoint is of architecture '%s', the model of '%s'", path, arch, t->c.arch->name);
        goto done;
    }
    if (np != t->m.n_params) {
        st = moe_error(MOE_ERR_INVALID, "%s: the checkpoint has %llu parameters, the model %zu (another shape or router)",
                       path, (unsigned long long)np, t->m.n_params);
        goto done;
    }
    if (batch != (uint64_t)p->batch || ctx != (uint64_t)p->ctx || accum != (uint64_t)p->grad_accum) {
        st = moe_error(MOE_ERR_INVALID, "%s: made with --batch %llu --ctx %llu --grad-accum %llu; this run has %lld, %lld, %lld",
                       path, (unsigned long long)batch, (unsigned long long)ctx, (unsigned long long)accum,
                       (long long)p->batch, (long long)p->ctx, (long long)p->grad_accum);
        goto done;
    }
    if (ntok != t->n_data) {
        st = moe_error(MOE_ERR_INVALID, "%s: the training data had %llu tokens, --data has %zu", path, (unsigned long long)ntok, t->n_data);
        goto done;
    }
    if (step > (uint64_t)p->steps) {
        st = moe_error(MOE_ERR_INVALID, "%s: the checkpoint is at step %llu, beyond --steps %lld", path, (unsigned long long)step, (long long)p->steps);
        goto done;
    }
    (void)steps;
    if ((st = tm_model_load_weights(&t->m, g, false, 0))) {
        st = moe_error(st, "checkpoint does not match the model: %s", moe_last_error());
        goto done;
    }
    const char *names[2] = {"moe.train.adam_m", "moe.train.adam_v"};
    float *dst[2] = {t->mom, t->var};
    for (int i = 0; i < 2; i++) {
        const moe_gguf_tensor *gt = moe_gguf_find_tensor(g, names[i]);
        if (!gt || gt->type != MOE_TYPE_F32 || gt->n_dims != 1 || (uint64_t)gt->ne[0] != np) {
            st = moe_error(MOE_ERR_FORMAT, "%s: tensor '%s' is missing or misshapen", path, names[i]);
            goto done;
        }
        memcpy(dst[i], gt->data, np * sizeof(float));
    }
    /* the padding between tensors is not stored; it is zero in both */
    if (checksum(t) != sum) {
        st = moe_error(MOE_ERR_FORMAT, "%s: checkpoint is corrupt (checksum mismatch)", path);
        goto done;
    }
    t->step = (int64_t)step;
    t->rng = rng;
    t->windows = win;
done:
    moe_gguf_close(g);
    return st;
}

/* ---------------------------------------------------------------- logging */

static double maxvio_of(const int64_t *load, int E) {
    double sum = 0, mx = 0;
    for (int e = 0; e < E; e++) {
        sum += (double)load[e];
        if (load[e] > mx) mx = (double)load[e];
    }
    double mean = sum / E;
    return mean > 0 ? (mx - mean) / mean : 0;
}

static void fmt_eta(double s, char *buf, size_t n) {
    if (!isfinite(s) || s < 0) s = 0;
    long x = (long)(s + 0.5);
    if (x >= 3600) snprintf(buf, n, "%ldh%02ldm", x / 3600, (x / 60) % 60);
    else snprintf(buf, n, "%ldm%02lds", x / 60, x % 60);
}

static moe_status evaluate(trainer *t, double *loss_out) {
    const int64_t B = t->p->batch, T = t->p->ctx;
    const int64_t per = (int64_t)((t->n_eval - 1) / (size_t)T); /* windows that fit */
    int64_t nb = MOE_MIN(t->p->eval_batches, per / B);
    if (nb < 1) nb = 1;
    double sum = 0;
    int64_t cnt = 0;
    for (int64_t i = 0; i < nb; i++) {
        int64_t rows = 0;
        for (int64_t b = 0; b < B; b++) {
            int64_t w = (i * B + b) % MOE_MAX(per, 1);
            size_t start = (size_t)(w * T);
            if (start + (size_t)T + 1 > t->n_eval) continue;
            memcpy(t->tok + rows * T, t->eval + start, (size_t)T * sizeof(int32_t));
            memcpy(t->tgt + rows * T, t->eval + start + 1, (size_t)T * sizeof(int32_t));
            rows++;
        }
        for (; rows < B; rows++) { /* fill (only when the eval file holds fewer windows) */
            memcpy(t->tok + rows * T, t->tok, (size_t)T * sizeof(int32_t));
            memcpy(t->tgt + rows * T, t->tgt, (size_t)T * sizeof(int32_t));
        }
        moe_status st = tm_forward(&t->m, t->tok, t->tgt, B, T);
        if (st) return st;
        sum += t->m.loss;
        cnt++;
    }
    *loss_out = sum / (double)cnt;
    return MOE_OK;
}

/* On resume: drop the log lines of steps after the checkpoint (a run killed between
 * checkpoints logged steps that will run again), so the log reads as one run. */
static moe_status trim_log(const char *path, int64_t step) {
    FILE *f = fopen(path, "r");
    if (!f) return MOE_OK; /* no log yet */
    char tmp_path[4096];
    snprintf(tmp_path, sizeof tmp_path, "%s.tmp", path);
    FILE *o = fopen(tmp_path, "w");
    if (!o) { fclose(f); return moe_error(MOE_ERR_IO, "%s: cannot write: %s", tmp_path, strerror(errno)); }
    char *line = NULL;
    size_t cap = 0;
    while (getline(&line, &cap, f) > 0) {
        const char *q = strstr(line, "\"step\":");
        if (!q || strtoll(q + 7, NULL, 10) > step) continue; /* later steps, timing lines */
        fputs(line, o);
    }
    free(line);
    fclose(f);
    if (fclose(o) || rename(tmp_path, path))
        return moe_error(MOE_ERR_IO, "%s: cannot rewrite the log: %s", path, strerror(errno));
    return MOE_OK;
}

/* ---------------------------------------------------------------- the loop */

static moe_status train_step(trainer *t, double *loss, double *gnorm, double *aux, double *z) {
    const moe_train_params *p = t->p;
    const int64_t L = t->c.hp.n_layer, E = t->c.hp.n_expert;
    tm_zero_grad(&t->m);
    if (t->load) memset(t->load, 0, (size_t)(L * E) * sizeof *t->load);
    *loss = *aux = *z = 0;
    const float scale = 1.0f / (float)p->grad_accum;
    for (int64_t a = 0; a < p->grad_accum; a++) {
        sample_batch(t);
        moe_status st = tm_forward(&t->m, t->tok, t->tgt, p->batch, p->ctx);
        if (!st) st = tm_backward(&t->m, scale);
        if (st) return st;
        *loss += t->m.loss / (double)p->grad_accum;
        *aux += t->m.aux_loss / (double)p->grad_accum;
        *z += t->m.z_loss / (double)p->grad_accum;
        for (int64_t il = 0; il < L && t->load; il++)
            if (t->m.moe[il].off && t->m.moe[il].rt.stats.load)
                for (int64_t e = 0; e < E; e++) t->load[il * E + e] += t->m.moe[il].rt.stats.load[e];
    }
    const double tn = moe_time_s();
    *gnorm = tm_grad_norm(t->m.grads, t->m.n_params, t->pool);
    t->t_optim += moe_time_s() - tn;
    if (!isfinite(*gnorm) || !isfinite(*loss))
        return moe_error(MOE_ERR_INVALID, "training diverged at step %lld (loss %g, gradient norm %g): lower --lr",
                         (long long)t->step + 1, *loss, *gnorm);
    const double gs = p->clip > 0 && *gnorm > p->clip ? p->clip / *gnorm : 1.0;
    const double min_lr = p->min_lr >= 0 ? p->min_lr : p->lr / 10;
    const double lr = tm_lr_at(t->step, p->steps, p->warmup, p->lr, min_lr);
    tm_adamw o = {p->beta1, p->beta2, p->adam_eps, p->weight_decay};
    const double to = moe_time_s();
    tm_adamw_step(&t->m, t->mom, t->var, &o, t->step + 1, lr, gs, t->pool);
    t->t_optim += moe_time_s() - to;
    /* auxiliary-loss-free balancing: the selection bias follows the step's loads */
    const moe_router_kind k = t->c.router.kind;
    if (t->load && (k == MOE_ROUTER_LOSS_FREE || k == MOE_ROUTER_DEEPSEEK_V3) && p->bias_update_rate > 0)
        for (int64_t il = 0; il < L; il++)
            if (t->m.w.layers[il].sel_bias)
                moe_router_bias_update(t->m.w.layers[il].sel_bias, t->load + il * E, (int)E, (float)p->bias_update_rate);
    t->step++;
    if (t->log) {
        fprintf(t->log, "{\"step\":%lld,\"loss\":%.17g,\"lr\":%.9g,\"grad_norm\":%.9g,\"aux_loss\":%.9g,\"z_loss\":%.9g",
                (long long)t->step, *loss, lr, *gnorm, *aux, *z);
        if (t->load) {
            fprintf(t->log, ",\"max_vio\":[");
            bool first = true;
            for (int64_t il = 0; il < L; il++) {
                if (!t->m.moe[il].off) continue;
                fprintf(t->log, "%s%.6g", first ? "" : ",", maxvio_of(t->load + il * E, (int)E));
                first = false;
            }
            fprintf(t->log, "],\"load\":[");
            first = true;
            for (int64_t il = 0; il < L; il++) {
                if (!t->m.moe[il].off) continue;
                fprintf(t->log, "%s[", first ? "" : ",");
                for (int64_t e = 0; e < E; e++) fprintf(t->log, "%s%lld", e ? "," : "", (long long)t->load[il * E + e]);
                fprintf(t->log, "]");
                first = false;
            }
            fprintf(t->log, "]");
        }
        fprintf(t->log, ",\"tokens\":%lld}\n", (long long)(p->batch * p->ctx * p->grad_accum * t->step));
        fflush(t->log);
    }
    return MOE_OK;
}

static void trainer_free(trainer *t) {
    if (t->log) fclose(t->log);
    if (t->model_ok) tm_model_free(&t->m);
    tm_config_free(&t->c);
    moe_pool_free(t->pool);
    moe_gguf_close(t->g);
    free(t->mom);
    free(t->var);
    free(t->data);
    free(t->eval);
    free(t->tok);
    free(t->tgt);
    free(t->load);
    free(t->hash_map);
}

static moe_status check_params(const moe_train_params *p) {
    if (!p->model_path || !p->data_path || !p->out_path)
        return moe_error(MOE_ERR_INVALID, "train: the model, the data and the output path are required");
    if (p->steps < 1 || p->batch < 1 || p->ctx < 2 || p->grad_accum < 1 || p->warmup < 0 || p->stop_at < 0)
        return moe_error(MOE_ERR_INVALID, "train: --steps, --batch, --grad-accum must be >= 1, --ctx >= 2, --warmup >= 0");
    if (!(p->lr > 0) || !isfinite(p->lr) || !(p->beta1 >= 0 && p->beta1 < 1) || !(p->beta2 >= 0 && p->beta2 < 1) ||
        !(p->adam_eps > 0) || p->weight_decay < 0 || p->clip < 0 || p->aux_coef < 0 || p->z_coef < 0)
        return moe_error(MOE_ERR_INVALID, "train: invalid optimizer settings (lr > 0, 0 <= beta < 1, eps > 0, "
                                          "weight decay, clip, aux and z coefficients >= 0)");
    if (p->batch * p->ctx > (INT64_C(1) << 24))
        return moe_error(MOE_ERR_INVALID, "train: --batch × --ctx = %lld tokens per micro-batch is too many",
                         (long long)(p->batch * p->ctx));
    return MOE_OK;
}

moe_status moe_train(const moe_train_params *p) {
    moe_status st = check_params(p);
    if (st) return st;
    trainer t;
    memset(&t, 0, sizeof t);
    t.p = p;
    moe_tokenizer *tok = NULL;
    if (!(t.g = moe_gguf_open(p->model_path))) return moe_last_status() ? moe_last_status() : MOE_ERR_IO;
    if ((st = tm_config_from_gguf(t.g, &t.c))) goto done;
    if (!(tok = moe_tokenizer_load(t.g))) {
        st = moe_error(moe_last_status() ? moe_last_status() : MOE_ERR_FORMAT, "%s: tokenizer: %s", p->model_path, moe_last_error());
        goto done;
    }
    if ((st = tokenize_file(tok, p->data_path, p->ctx + 1, &t.data, &t.n_data))) goto done;
    if (p->eval_path && (st = tokenize_file(tok, p->eval_path, p->ctx + 1, &t.eval, &t.n_eval))) goto done;
    for (size_t i = 0; i < t.n_data; i++)
        if (t.data[i] >= t.c.hp.n_vocab) {
            st = moe_error(MOE_ERR_FORMAT, "%s: token id %d is beyond the embedding's %lld rows", p->model_path, t.data[i],
                           (long long)t.c.hp.n_vocab);
            goto done;
        }
    moe_router_kind file_kind = t.c.router.kind;
    int file_rows = t.c.hp.n_expert ? moe_router_n_logits(&t.c.router) : 0;
    if ((st = apply_router(&t))) goto done;
    const bool new_router = t.c.hp.n_expert && (t.c.router.kind != file_kind || moe_router_n_logits(&t.c.router) != file_rows);
    if (!(t.pool = moe_pool_create(p->n_threads))) { st = moe_last_status() ? moe_last_status() : MOE_ERR_NOMEM; goto done; }
    moe_blas_set_threads(moe_pool_size(t.pool));
    if ((st = tm_model_init(&t.m, &t.c, t.pool))) goto done;
    t.model_ok = true;
    t.m.aux_coef = (float)p->aux_coef;
    t.m.z_coef = (float)p->z_coef;
    if ((st = tm_model_load_weights(&t.m, t.g, new_router, p->seed))) goto done;
    const size_t np = t.m.n_params, BT = (size_t)(p->batch * p->ctx);
    t.mom = moe_aligned_alloc(np * sizeof(float));
    t.var = moe_aligned_alloc(np * sizeof(float));
    t.tok = moe_malloc(BT * sizeof(int32_t));
    t.tgt = moe_malloc(BT * sizeof(int32_t));
    if (t.c.hp.n_expert) t.load = moe_calloc((size_t)(t.c.hp.n_layer * t.c.hp.n_expert), sizeof *t.load);
    if (!t.mom || !t.var || !t.tok || !t.tgt || (t.c.hp.n_expert && !t.load)) { st = MOE_ERR_NOMEM; goto done; }
    memset(t.mom, 0, np * sizeof(float));
    memset(t.var, 0, np * sizeof(float));
    t.rng = p->seed * 0x9e3779b97f4a7c15ull ^ 0xd1b54a32d192ed03ull;
    if (p->resume_path && (st = load_checkpoint(&t, p->resume_path))) goto done;
    if (p->log_path && p->resume_path && (st = trim_log(p->log_path, t.step))) goto done;
    if (p->log_path && !(t.log = fopen(p->log_path, p->resume_path ? "a" : "w"))) {
        st = moe_error(MOE_ERR_IO, "%s: cannot open the log: %s", p->log_path, strerror(errno));
        goto done;
    }
    if (p->progress)
        fprintf(stderr, "moe train: %s (%s, %.2f M parameters, router %s), data %zu tokens%s, %lld tokens per step%s\n",
                p->model_path, t.c.arch->name, (double)t.m.n_params / 1e6,
                t.c.hp.n_expert ? moe_router_name(t.c.router.kind) : "none (dense)", t.n_data,
                t.n_eval ? ", with eval data" : "", (long long)(p->batch * p->ctx * p->grad_accum),
                p->resume_path ? ", resumed" : "");
    const int64_t stop = p->stop_at > 0 ? MOE_MIN(p->stop_at, p->steps) : p->steps;
    const double t0 = moe_time_s();
    const int64_t step0 = t.step;
    const double tokens_per_step = (double)(p->batch * p->ctx * p->grad_accum);
    while (t.step < stop) {
        double loss, gnorm, aux, z;
        if ((st = train_step(&t, &loss, &gnorm, &aux, &z))) goto done;
        const double el = moe_time_s() - t0, rate = (double)(t.step - step0) * tokens_per_step / el;
        if (p->progress) {
            char eta[32];
            fmt_eta(el / (double)(t.step - step0) * (double)(stop - t.step), eta, sizeof eta);
            fprintf(stderr, "step %lld/%lld  loss %.4f  lr %.3e  |g| %.3f  %.0f tok/s  ETA %s\n", (long long)t.step,
                    (long long)p->steps, loss, tm_lr_at(t.step - 1, p->steps, p->warmup, p->lr, p->min_lr >= 0 ? p->min_lr : p->lr / 10),
                    gnorm, rate, eta);
        }
        if (t.n_eval && ((p->eval_every > 0 && t.step % p->eval_every == 0) || t.step == stop)) {
            double el_loss, te = moe_time_s();
            /* evaluation time is kept out of the training phases */
            double sa = t.m.t_attn, sm = t.m.t_moe, sf = t.m.t_ffn, sh = t.m.t_head;
            if ((st = evaluate(&t, &el_loss))) goto done;
            t.m.t_attn = sa; t.m.t_moe = sm; t.m.t_ffn = sf; t.m.t_head = sh;
            t.t_eval += moe_time_s() - te;
            if (p->progress) fprintf(stderr, "eval  step %lld  loss %.4f  perplexity %.3f\n", (long long)t.step, el_loss, exp(el_loss));
            if (t.log) {
                fprintf(t.log, "{\"step\":%lld,\"eval_loss\":%.9g,\"eval_ppl\":%.9g}\n", (long long)t.step, el_loss, exp(el_loss));
                fflush(t.log);
            }
        }
        if (p->checkpoint_path && ((p->checkpoint_every > 0 && t.step % p->checkpoint_every == 0) || t.step == stop))
            if ((st = save_checkpoint(&t, p->checkpoint_path))) goto done;
    }
    {
        /* where the time went: for throughput reports (bench/train.sh) */
        const double total = moe_time_s() - t0, tr = total - t.t_eval;
        const tm_model *m = &t.m;
        const double other = tr - m->t_attn - m->t_moe - m->t_ffn - m->t_head - t.t_optim;
        if (p->progress && total > 0 && t.step > step0)
            fprintf(stderr, "time: %.2f s, %.0f tok/s; attention %.0f%%, MoE layers %.0f%%, dense FFN %.0f%%, "
                    "head+loss %.0f%%, optimizer %.0f%%, other %.0f%% (eval %.2f s)\n", total,
                    (double)(t.step - step0) * tokens_per_step / tr, 100 * m->t_attn / tr, 100 * m->t_moe / tr,
                    100 * m->t_ffn / tr, 100 * m->t_head / tr, 100 * t.t_optim / tr, 100 * other / tr, t.t_eval);
        if (t.log) {
            fprintf(t.log, "{\"timing\":{\"seconds\":%.6g,\"train_seconds\":%.6g,\"tokens\":%.0f,\"attention\":%.6g,"
                    "\"moe\":%.6g,\"dense_ffn\":%.6g,\"head\":%.6g,\"optimizer\":%.6g,\"eval\":%.6g}}\n",
                    total, tr, (double)(t.step - step0) * tokens_per_step, m->t_attn, m->t_moe, m->t_ffn, m->t_head,
                    t.t_optim, t.t_eval);
            fflush(t.log);
        }
    }
    {
        moe_gguf_writer *w = moe_gguf_writer_init();
        void *buf = NULL;
        if (!w) { st = MOE_ERR_NOMEM; goto done; }
        st = tm_model_to_writer(&t.m, w, t.g, true, p->f16_out, &buf);
        if (!st) st = moe_gguf_writer_write(w, p->out_path);
        moe_gguf_writer_free(w);
        free(buf);
    }
done:
    moe_tokenizer_free(tok);
    trainer_free(&t);
    return st;
}
