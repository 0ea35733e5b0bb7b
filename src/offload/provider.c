/* provider.c — the offloading expert provider behind `--mem`: routed experts are read
 * from the model file with pread (O_DIRECT where the file system allows) into a fixed
 * pool of slots sized from the memory budget; the cache policy of xcache.c decides what
 * to evict; an I/O thread loads the experts the router picked (and those a predictor
 * guessed) while the compute threads work. A wrong guess costs time, never results:
 * a slot holds the file's bytes, each matrix with its rows interleaved in fours from its
 * second use on (op_get; core/matmul.h: the kernels then stream it, with the same results). */
#include "offload/xcache.h"
#include "io/gguf.h"
#include "model/model.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <stdio.h>
#include <unistd.h>

/* O_DIRECT needs offsets, lengths and buffers aligned to the logical block size; 4 KiB
 * covers every common device. */
#define IO_ALIGN 4096u
#define QUEUE_CAP 4096
/* What the budget must also cover besides weights, slots and the context's buffers: the
 * binary's heap, thread stacks touched, the caller's logits row, bookkeeping. */
#define OFFLOAD_OVERHEAD (16ull << 20)

enum { SLOT_EMPTY = 0, SLOT_LOADING, SLOT_READY, SLOT_FAILED };

/* Where one matrix of an expert lies in the file. */
typedef struct {
    uint64_t offset, bytes;
    moe_mat mat;          /* data is rebased into the slot when loaded */
} part_loc;

typedef struct {
    part_loc part[3];     /* gate, up, down */
} expert_loc;

typedef struct {
    moe_expert_weights w;
    int state;
    int pins;             /* users: the forward pass (get..release) and the I/O thread */
    int uses;             /* gets since it was loaded (op_get interleaves at the second) */
    char err[512];
} slot_info;

typedef struct {
    int layer, expert;
    bool predicted;
} io_req;

struct moe_offload {
    moe_expert_provider base;
    const moe_model *model;
    char path[512];
    int fd;
    bool direct;
    struct stat st0;              /* size and mtime at open: the file must not change */
    moe_pread_fn read_fn;
    void *read_ctx;
    int n_layer, n_expert;
    expert_loc *loc;              /* [n_layer × n_expert]; part[0].bytes == 0: not routed */
    uint64_t slot_bytes;
    int64_t n_slots;
    uint8_t *pool;                /* n_slots × slot_bytes, IO_ALIGN-aligned */
    slot_info *slots;
    moe_xcache *cache;
    moe_offload_plan plan;
    int64_t need_slots;           /* one layer's experts (per layer: every layer's) */
    uint64_t min_budget;
    /* I/O thread */
    pthread_t io_thread;
    moe_buf il_tmp;               /* op_get's moe_mat_interleave scratch (4 rows; 64 for tiled rows) */
    bool io_running, io_quit;
    pthread_mutex_t mu;
    pthread_cond_t cv_work, cv_done;
    io_req queue[QUEUE_CAP];
    int q_head, q_len;
    /* prediction bookkeeping: the last guess for every layer */
    uint8_t *guess;               /* [n_layer × n_expert] */
    bool *have_guess;             /* [n_layer] */
    bool *hinted;                 /* [n_layer]: the forward pass announces its experts */
    int64_t *layer_pred;          /* [n_layer × 3]: guessed, guessed and used, used (scored) */
    const moe_profile *profile;   /* statistical predictor, or NULL */
    bool gate_lookahead;
    int prefetch_n;
    moe_offload_stats stats;
};

/* ---------------------------------------------------------------- reading */

static int64_t default_pread(void *ctx, int fd, void *buf, size_t n, uint64_t off) {
    (void)ctx;
    return pread(fd, buf, n, (off_t)off);
}

static uint64_t align_down(uint64_t x) { return x & ~(uint64_t)(IO_ALIGN - 1); }
static uint64_t align_up(uint64_t x) { return (x + IO_ALIGN - 1) & ~(uint64_t)(IO_ALIGN - 1); }

/* Bytes one matrix takes in a slot: its aligned read window. */
static uint64_t window_bytes(const part_loc *p) {
    return align_up(p->offset + p->bytes) - align_down(p->offset);
}

/* Reads expert (layer, expert) into slot memory `dst` and points w at it. Runs without
 * the lock: the slot is pinned and LOADING, nobody else touches it. Returns an error
 * message in err (empty on success). */
static void load_expert(moe_offload *o, int layer, int expert, uint8_t *dst, moe_expert_weights *w,
                        char *err, size_t errlen) {
    const expert_loc *L = &o->loc[(size_t)layer * (size_t)o->n_expert + (size_t)expert];
    static const char *names[3] = {"gate", "up", "down"};
    err[0] = 0;
    struct stat st;
    if (fstat(o->fd, &st) != 0 || st.st_size != o->st0.st_size || st.st_mtim.tv_sec != o->st0.st_mtim.tv_sec ||
        st.st_mtim.tv_nsec != o->st0.st_mtim.tv_nsec) {
        snprintf(err, errlen, "%.160s: the model file changed on disk while in use (reading expert %d of layer %d); restart to use the new file",
                 o->path, expert, layer);
        return;
    }
    moe_mat *mats[3] = {&w->gate, &w->up, &w->down};
    uint8_t *p = dst;
    for (int k = 0; k < 3; k++) {
        const part_loc *pl = &L->part[k];
        uint64_t start = align_down(pl->offset), len = window_bytes(pl);
        uint64_t done = 0;
        while (done < len) {
            int64_t r = o->read_fn(o->read_ctx, o->fd, p + done, (size_t)(len - done), start + done);
            if (r < 0 && errno == EINTR) continue;
            if (r < 0) {
                snprintf(err, errlen, "%.160s: reading expert %d of layer %d (%s, %llu bytes at offset %llu) failed: %s", o->path,
                         expert, layer, names[k], (unsigned long long)pl->bytes, (unsigned long long)pl->offset,
                         strerror(errno));
                return;
            }
            if (r == 0) {
                /* the aligned window may run past the end of the file: only the tail
                 * beyond the matrix itself may be missing */
                if (start + done >= pl->offset + pl->bytes) break;
                snprintf(err, errlen, "%.160s: short read of expert %d of layer %d (%s): got %llu of %llu bytes at offset %llu",
                         o->path, expert, layer, names[k], (unsigned long long)(start + done - pl->offset),
                         (unsigned long long)pl->bytes, (unsigned long long)pl->offset);
                return;
            }
            done += (uint64_t)r;
        }
        if (!o->direct) /* we keep our own copy: do not let the page cache hold a second */
            posix_fadvise(o->fd, (off_t)start, (off_t)len, POSIX_FADV_DONTNEED);
        *mats[k] = pl->mat;
        mats[k]->data = p + (pl->offset - start);
        p += len;
        o->stats.bytes_read += len;
    }
}

/* ---------------------------------------------------------------- slots */

/* Finds or makes the slot of (layer, expert); caller holds the lock. *fresh is set when
 * the slot was just claimed and the caller must load it. Returns -1 on error. Records no
 * use: the policies' statistics count each routing choice once, in op_hint (or op_get
 * when the forward pass gave no hint), and each guess once (guess_layer), never a second
 * look at the same choice. */
static int64_t claim_slot(moe_offload *o, int layer, int expert, bool *fresh) {
    *fresh = false;
    int64_t s = moe_xcache_find(o->cache, layer, expert);
    if (s >= 0) return s;
    s = moe_xcache_insert(o->cache, layer, expert, NULL);
    if (s < 0) return -1;
    *fresh = true;
    o->slots[s].state = SLOT_LOADING;
    o->slots[s].uses = 0;
    return s;
}

static void pin(moe_offload *o, int64_t s, int delta) {
    o->slots[s].pins += delta;
    moe_xcache_pin(o->cache, s, o->slots[s].pins > 0);
}

static void *io_main(void *arg) {
    moe_offload *o = arg;
    pthread_mutex_lock(&o->mu);
    for (;;) {
        while (!o->q_len && !o->io_quit) pthread_cond_wait(&o->cv_work, &o->mu);
        if (o->io_quit) break;
        io_req r = o->queue[o->q_head];
        o->q_head = (o->q_head + 1) % QUEUE_CAP;
        o->q_len--;
        bool fresh;
        int64_t s = claim_slot(o, r.layer, r.expert, &fresh);
        if (s < 0) { moe_clear_error(); continue; } /* every slot busy: drop the prefetch */
        if (!fresh) continue;
        pin(o, s, +1);
        /* A guess has no use recorded yet, so every policy would take it for the first
         * victim before its layer runs: protect it until that layer's hint (op_hint). */
        if (r.predicted) moe_xcache_protect(o->cache, s, r.layer);
        pthread_mutex_unlock(&o->mu);
        char err[512];
        load_expert(o, r.layer, r.expert, o->pool + (size_t)s * o->slot_bytes, &o->slots[s].w, err, sizeof err);
        pthread_mutex_lock(&o->mu);
        if (err[0]) {
            o->slots[s].state = SLOT_FAILED;
            memcpy(o->slots[s].err, err, sizeof err);
        } else {
            o->slots[s].state = SLOT_READY;
        }
        o->stats.loads_background++;
        pin(o, s, -1);
        pthread_cond_broadcast(&o->cv_done);
    }
    pthread_mutex_unlock(&o->mu);
    return NULL;
}

static void enqueue(moe_offload *o, int layer, int expert, bool predicted, bool front) {
    if (o->q_len == QUEUE_CAP) return; /* a full queue drops guesses: they are optional */
    io_req r = {layer, expert, predicted};
    if (front) {
        o->q_head = (o->q_head + QUEUE_CAP - 1) % QUEUE_CAP;
        o->queue[o->q_head] = r;
    } else {
        o->queue[(o->q_head + o->q_len) % QUEUE_CAP] = r;
    }
    o->q_len++;
}

/* ---------------------------------------------------------------- provider ops */

static const moe_expert_weights *op_get(moe_expert_provider *p, int layer, int expert) {
    moe_offload *o = (moe_offload *)p;
    if (layer < 0 || layer >= o->n_layer || expert < 0 || expert >= o->n_expert ||
        !o->loc[(size_t)layer * (size_t)o->n_expert + (size_t)expert].part[0].bytes)
        return moe_error_null(MOE_ERR_INVALID, "expert %d of layer %d does not exist", expert, layer);
    double t0 = moe_time_s();
    pthread_mutex_lock(&o->mu);
    bool fresh;
    int64_t s = claim_slot(o, layer, expert, &fresh);
    if (s < 0) {
        pthread_mutex_unlock(&o->mu);
        return NULL;
    }
    pin(o, s, +1);
    if (!o->hinted[layer]) { /* no hint for this batch: count the use here */
        moe_xcache_use(o->cache, layer, expert);
        o->stats.accesses++;
        if (fresh) o->stats.misses++;
        else o->stats.hits++;
    }
    if (fresh) {
        /* not cached and not queued: read it on this thread */
        o->stats.demand_loads++;
        pthread_mutex_unlock(&o->mu);
        char err[512];
        load_expert(o, layer, expert, o->pool + (size_t)s * o->slot_bytes, &o->slots[s].w, err, sizeof err);
        pthread_mutex_lock(&o->mu);
        o->slots[s].state = err[0] ? SLOT_FAILED : SLOT_READY;
        if (err[0]) memcpy(o->slots[s].err, err, sizeof err);
        pthread_cond_broadcast(&o->cv_done);
    } else {
        if (o->slots[s].state == SLOT_LOADING) o->stats.waits++;
        while (o->slots[s].state == SLOT_LOADING) pthread_cond_wait(&o->cv_done, &o->mu);
    }
    const moe_expert_weights *w = NULL;
    if (o->slots[s].state == SLOT_FAILED) {
        moe_error(MOE_ERR_IO, "%s", o->slots[s].err);
        /* forget the slot so a later call retries (and fails again if the fault stays) */
        pin(o, s, -1);
        moe_xcache_remove(o->cache, s);
        o->slots[s].state = SLOT_EMPTY;
    } else {
        w = &o->slots[s].w;
    }
    pthread_mutex_unlock(&o->mu);
    o->stats.stall_seconds += moe_time_s() - t0;
    /* The slot is our memory: at its second use its matrices are interleaved for the
     * kernels, as the loader does for a model read into memory (core/matmul.h; the same
     * results). Not at the first: when the budget forces misses, an expert is often
     * evicted before it is used again, and rearranging every expert read cost 25 % of
     * the decode speed (mix-1b Q8_0 at --mem 900M: 37 -> 27 tok/s). Not on the I/O
     * thread either: it gets little CPU while the compute threads run (the decode's I/O
     * wait went from 0.2 to 1.0 s over mix-1b's first 128 loads). The slot is pinned and
     * READY, so no other thread touches it; without memory for the four rows of scratch
     * it stays row-major, which the kernels read as well. */
    if (w && ++o->slots[s].uses == 2) {
        moe_mat *mats[3] = {&o->slots[s].w.gate, &o->slots[s].w.up, &o->slots[s].w.down};
        for (int k = 0; k < 3; k++)
            if (moe_mat_can_interleave(mats[k]) && moe_mat_interleave(mats[k], &o->il_tmp) != MOE_OK) moe_clear_error();
    }
    return w;
}

static void op_release(moe_expert_provider *p, int layer, int expert) {
    moe_offload *o = (moe_offload *)p;
    pthread_mutex_lock(&o->mu);
    int64_t s = moe_xcache_find(o->cache, layer, expert);
    if (s >= 0 && o->slots[s].pins > 0) pin(o, s, -1);
    pthread_mutex_unlock(&o->mu);
}

/* Records a guess for `layer` (scored when the router's choice arrives) and queues the
 * guessed experts that are not cached. Caller holds the lock. */
static void guess_layer(moe_offload *o, int layer, const int32_t *experts, int n) {
    uint8_t *g = o->guess + (size_t)layer * (size_t)o->n_expert;
    memset(g, 0, (size_t)o->n_expert);
    for (int i = 0; i < n; i++)
        if (experts[i] >= 0 && experts[i] < o->n_expert) g[experts[i]] = 1;
    o->have_guess[layer] = true;
    if (!o->io_running) return;
    /* A guess is knowledge of the near future: it counts as one use, so the policies
     * weigh the guessed experts up (on mix-1b at half the memory, with the protection in
     * io_main, the hit rate went 0.64 -> 0.69 against counting real uses only). */
    for (int i = 0; i < n; i++)
        if (experts[i] >= 0 && experts[i] < o->n_expert) moe_xcache_use(o->cache, layer, experts[i]);
    for (int i = 0; i < n; i++) {
        int e = experts[i];
        if (e < 0 || e >= o->n_expert || moe_xcache_find(o->cache, layer, e) >= 0) continue;
        enqueue(o, layer, e, true, false);
        o->stats.prefetches++;
    }
}

static bool is_moe_layer(const moe_offload *o, int l) {
    return o->loc[(size_t)l * (size_t)o->n_expert].part[0].bytes != 0;
}

static void op_hint(moe_expert_provider *p, int layer, const int32_t *experts, int n, bool predicted) {
    moe_offload *o = (moe_offload *)p;
    if (layer < 0 || layer >= o->n_layer) return;
    pthread_mutex_lock(&o->mu);
    if (predicted) {
        guess_layer(o, layer, experts, n);
        pthread_cond_signal(&o->cv_work);
        pthread_mutex_unlock(&o->mu);
        return;
    }
    moe_xcache_begin_layer(o->cache, layer); /* also ends this layer's prefetch protection */
    /* The cache's hit rate: routed experts already resident (or being prefetched) when
     * the router picked them. The reads queued below are misses, even though they
     * overlap with compute. */
    o->hinted[layer] = true;
    for (int i = 0; i < n; i++) {
        if (experts[i] < 0 || experts[i] >= o->n_expert) continue;
        moe_xcache_use(o->cache, layer, experts[i]);
        o->stats.accesses++;
        if (moe_xcache_find(o->cache, layer, experts[i]) >= 0) o->stats.hits++;
        else o->stats.misses++;
    }
    /* score the last guess for this layer against what the router chose */
    const uint8_t *g = o->guess + (size_t)layer * (size_t)o->n_expert;
    if (o->have_guess[layer]) {
        int64_t guessed = 0, right = 0;
        for (int e = 0; e < o->n_expert; e++) guessed += g[e];
        for (int i = 0; i < n; i++) right += experts[i] >= 0 && experts[i] < o->n_expert && g[experts[i]];
        o->stats.predicted += guessed;
        o->stats.predicted_right += right;
        o->stats.routed_with_guess += n;
        o->layer_pred[3 * layer] += guessed;
        o->layer_pred[3 * layer + 1] += right;
        o->layer_pred[3 * layer + 2] += n;
        o->have_guess[layer] = false;
    }
    if (o->io_running) {
        /* The experts the router picked go to the front of the queue, in reverse so the
         * first is read first: the compute thread starts on a cached one (or the first)
         * while the I/O thread reads the next. */
        for (int i = n - 1; i >= 0; i--) {
            int e = experts[i];
            if (e < 0 || e >= o->n_expert || moe_xcache_find(o->cache, layer, e) >= 0) continue;
            enqueue(o, layer, e, false, true);
        }
    }
    /* EdgeMoE's statistical predictor: guess the next MoE layer's experts from these */
    if (o->profile) {
        int next = layer + 1;
        while (next < o->n_layer && !is_moe_layer(o, next)) next++;
        if (next < o->n_layer && next < moe_profile_n_layers(o->profile)) {
            int32_t out[256];
            int m = moe_profile_predict(o->profile, next, experts, n, out, MOE_MIN(o->prefetch_n, 256));
            if (m > 0) guess_layer(o, next, out, m);
        }
    }
    if (o->io_running) pthread_cond_signal(&o->cv_work);
    pthread_mutex_unlock(&o->mu);
}

static void op_destroy(moe_expert_provider *p) { moe_offload_free((moe_offload *)p); }

static const moe_expert_provider_ops g_ops = {op_get, op_hint, op_release, op_destroy};

/* ---------------------------------------------------------------- setup */

moe_offload_params moe_offload_default_params(void) {
    moe_offload_params p = {0};
    p.policy = MOE_CACHE_EDGEMOE;
    p.prefetch = true;
    /* Off by default: when reads are the bottleneck, a wrong guess costs a whole expert
     * read (docs/BENCHMARKS.md, "Expert offloading", has the numbers). */
    p.gate_lookahead = false;
    return p;
}

/* Where every expert's matrices lie in the file (from the model's mapped views), the
 * slot size, and how many slots the budget leaves after the resident weights and the
 * context's own buffers. */
static moe_status plan_slots(moe_offload *o, const moe_model *m, const moe_context *ctx, const moe_offload_params *prm) {
    const moe_gguf *g = moe_model_gguf(m);
    o->loc = moe_calloc((size_t)o->n_layer * (size_t)o->n_expert, sizeof *o->loc);
    if (!o->loc) return MOE_ERR_NOMEM;
    const uint8_t *base = moe_gguf_base(g);
    for (int l = 0; l < o->n_layer; l++) {
        for (int e = 0; e < o->n_expert; e++) {
            const moe_expert_weights *w = moe_mapped_provider_slot(m->experts, l, e);
            if (!w || !w->gate.data) continue;
            const moe_mat *mats[3] = {&w->gate, &w->up, &w->down};
            expert_loc *L = &o->loc[(size_t)l * (size_t)o->n_expert + (size_t)e];
            uint64_t bytes = 0;
            for (int k = 0; k < 3; k++) {
                L->part[k].offset = (uint64_t)((const uint8_t *)mats[k]->data - base);
                L->part[k].bytes = (uint64_t)mats[k]->rows * mats[k]->row_bytes;
                L->part[k].mat = *mats[k];
                bytes += window_bytes(&L->part[k]);
            }
            o->slot_bytes = MOE_MAX(o->slot_bytes, bytes);
        }
    }
    /* The plan estimates the KV cache and scratch (its KV type does not matter here); the
     * context knows its real numbers, which replace them below. */
    moe_offload_plan_compute(g, prm->budget, (int)moe_context_n_ctx(ctx), MOE_KV_F32, &o->plan);
    moe_clear_error();
    if (!o->plan.n_moe_layers || !o->slot_bytes)
        return moe_error(MOE_ERR_UNSUPPORTED, "%s: no routed expert tensors: nothing to offload", o->path);
    o->plan.kv_bytes = 0;
    o->plan.overhead_bytes = moe_context_memory_bytes(ctx) + OFFLOAD_OVERHEAD;
    /* the plan counts raw expert bytes; our slots also hold the alignment padding */
    uint64_t fixed = o->plan.resident_bytes + o->plan.overhead_bytes;
    o->n_slots = prm->budget > fixed ? (int64_t)((prm->budget - fixed) / o->slot_bytes) : 0;
    int64_t total_experts = (int64_t)o->plan.n_moe_layers * o->n_expert;
    /* per layer, only layers with experts get slots (not deepseek's leading dense blocks
     * or the dense layers of upcycle --every N) */
    o->need_slots = prm->per_layer ? (int64_t)o->plan.n_experts_used * o->plan.n_moe_layers : o->plan.n_experts_used;
    if (o->n_slots > total_experts) o->n_slots = total_experts; /* everything fits */
    o->min_budget = fixed + (uint64_t)o->need_slots * o->slot_bytes;
    return MOE_OK;
}

uint64_t moe_offload_min_budget(const moe_model *m, const moe_context *ctx, bool per_layer) {
    moe_offload o;
    memset(&o, 0, sizeof o);
    snprintf(o.path, sizeof o.path, "%s", moe_gguf_path(moe_model_gguf(m)));
    o.n_layer = (int)moe_model_n_layer(m);
    o.n_expert = (int)moe_model_hparams(m)->n_expert;
    moe_offload_params prm = moe_offload_default_params();
    prm.per_layer = per_layer;
    uint64_t r = o.n_expert > 0 && plan_slots(&o, m, ctx, &prm) == MOE_OK ? o.min_budget : 0;
    free(o.loc);
    return r;
}

moe_offload *moe_offload_init(const moe_model *m, const moe_context *ctx, const moe_offload_params *params) {
    moe_offload_params prm = params ? *params : moe_offload_default_params();
    const moe_gguf *g = moe_model_gguf(m);
    moe_offload *o = moe_calloc(1, sizeof *o);
    if (!o) return NULL;
    o->base.ops = &g_ops;
    o->model = m;
    o->fd = -1;
    pthread_mutex_init(&o->mu, NULL);
    pthread_cond_init(&o->cv_work, NULL);
    pthread_cond_init(&o->cv_done, NULL);
    snprintf(o->path, sizeof o->path, "%s", moe_gguf_path(g));
    o->read_fn = prm.read_fn ? prm.read_fn : default_pread;
    o->read_ctx = prm.read_ctx;
    o->profile = prm.profile;
    o->gate_lookahead = prm.gate_lookahead && prm.prefetch;
    o->n_layer = (int)moe_model_n_layer(m);
    o->n_expert = (int)moe_model_hparams(m)->n_expert;
    if (o->n_expert <= 0) {
        moe_error(MOE_ERR_UNSUPPORTED, "%s: the model has no routed experts: --mem needs an MoE model", o->path);
        goto fail;
    }
    if (m->params.no_mmap) {
        /* the whole file is already in memory: a budget below its size cannot hold */
        moe_error(MOE_ERR_INVALID, "%s: the model was loaded with no_mmap (--no-mmap), which reads every expert into "
                  "memory: --mem needs the file mapped", o->path);
        goto fail;
    }
    if (m->router.kind == MOE_ROUTER_SOFT_MOE) {
        /* every slot of every expert runs for every batch: there is nothing to page */
        moe_error(MOE_ERR_UNSUPPORTED, "%s: a Soft MoE model uses all its experts for every token: --mem does not apply",
                  o->path);
        goto fail;
    }

    if (plan_slots(o, m, ctx, &prm) != MOE_OK) goto fail;
    if (o->n_slots < o->need_slots) {
        moe_error(MOE_ERR_NOMEM, "%s: a budget of %.1f MiB is too small: the resident weights (%.1f MiB), the KV cache and "
                  "scratch (%.1f MiB) and %lld expert slots of %.2f MiB need at least %.1f MiB",
                  o->path, prm.budget / 1048576.0, o->plan.resident_bytes / 1048576.0, o->plan.overhead_bytes / 1048576.0,
                  (long long)o->need_slots, o->slot_bytes / 1048576.0, o->min_budget / 1048576.0);
        goto fail;
    }
    o->pool = NULL;
    if (posix_memalign((void **)&o->pool, IO_ALIGN, (size_t)o->n_slots * o->slot_bytes) != 0) {
        o->pool = NULL;
        moe_error(MOE_ERR_NOMEM, "out of memory allocating %lld expert slots", (long long)o->n_slots);
        goto fail;
    }
    o->slots = moe_calloc((size_t)o->n_slots, sizeof *o->slots);
    o->guess = moe_calloc((size_t)o->n_layer * (size_t)o->n_expert, 1);
    o->have_guess = moe_calloc((size_t)o->n_layer, sizeof *o->have_guess);
    o->hinted = moe_calloc((size_t)o->n_layer, sizeof *o->hinted);
    o->layer_pred = moe_calloc((size_t)o->n_layer * 3, sizeof *o->layer_pred);
    bool *has_experts = moe_calloc((size_t)o->n_layer, sizeof *has_experts);
    if (has_experts) {
        for (int l = 0; l < o->n_layer; l++) has_experts[l] = is_moe_layer(o, l);
        o->cache = moe_xcache_init(prm.policy >= MOE_CACHE_BELADY ? MOE_CACHE_EDGEMOE : prm.policy, o->n_slots,
                                   prm.per_layer, o->n_layer, o->n_expert, has_experts);
        free(has_experts);
    }
    if (!o->slots || !o->guess || !o->have_guess || !o->hinted || !o->layer_pred || !o->cache) goto fail;

    /* O_DIRECT keeps the experts out of the page cache (our slots are the only copy);
     * some file systems (tmpfs) refuse it, and then we drop pages after each read. */
    o->fd = prm.no_direct ? -1 : open(o->path, O_RDONLY | O_DIRECT | O_CLOEXEC);
    o->direct = o->fd >= 0;
    if (o->fd < 0) o->fd = open(o->path, O_RDONLY | O_CLOEXEC);
    if (o->fd < 0 || fstat(o->fd, &o->st0) != 0) {
        moe_error(MOE_ERR_IO, "%s: cannot open for expert reads: %s", o->path, strerror(errno));
        goto fail;
    }
    if ((uint64_t)o->st0.st_size != moe_gguf_file_size(g)) {
        moe_error(MOE_ERR_IO, "%s: the file changed size since it was loaded", o->path);
        goto fail;
    }
    if (prm.prefetch) {
        if (pthread_create(&o->io_thread, NULL, io_main, o) != 0) {
            moe_error(MOE_ERR_NOMEM, "could not start the expert I/O thread");
            goto fail;
        }
        o->io_running = true;
    }
    o->prefetch_n = prm.prefetch_n > 0 ? prm.prefetch_n : MOE_MAX(o->plan.n_experts_used, 1);
    if (o->profile && moe_profile_n_experts(o->profile) != o->n_expert) {
        moe_error(MOE_ERR_INVALID, "the expert profile is for %d experts per layer, the model has %d",
                  moe_profile_n_experts(o->profile), o->n_expert);
        goto fail;
    }
    o->stats.n_slots = o->n_slots;
    o->stats.slot_bytes = o->slot_bytes;
    o->stats.direct_io = o->direct;
    return o;
fail:
    moe_offload_free(o);
    return NULL;
}

void moe_offload_free(moe_offload *o) {
    if (!o) return;
    if (o->io_running) {
        pthread_mutex_lock(&o->mu);
        o->io_quit = true;
        pthread_cond_broadcast(&o->cv_work);
        pthread_mutex_unlock(&o->mu);
        pthread_join(o->io_thread, NULL);
    }
    if (o->fd >= 0) close(o->fd);
    moe_xcache_free(o->cache);
    free(o->pool);
    free(o->slots);
    free(o->guess);
    free(o->have_guess);
    free(o->hinted);
    free(o->layer_pred);
    free(o->loc);
    moe_buf_free(&o->il_tmp);
    pthread_mutex_destroy(&o->mu);
    pthread_cond_destroy(&o->cv_work);
    pthread_cond_destroy(&o->cv_done);
    free(o);
}

void moe_offload_attach(moe_offload *o, moe_context *c) {
    moe_context_set_expert_provider(c, o ? &o->base : NULL);
    moe_context_set_lookahead(c, o && o->gate_lookahead && !o->profile ? o->prefetch_n : 0);
}

void moe_offload_get_stats(moe_offload *o, moe_offload_stats *out) {
    pthread_mutex_lock(&o->mu);
    *out = o->stats;
    pthread_mutex_unlock(&o->mu);
    out->hit_rate = out->accesses ? (double)out->hits / (double)out->accesses : 0;
    out->prefetch_precision = out->predicted ? (double)out->predicted_right / (double)out->predicted : 0;
    out->prefetch_recall = out->routed_with_guess ? (double)out->predicted_right / (double)out->routed_with_guess : 0;
}

uint64_t moe_offload_pool_bytes(const moe_offload *o) { return (uint64_t)o->n_slots * o->slot_bytes; }

bool moe_offload_layer_prediction(moe_offload *o, int layer, double *precision, double *recall) {
    if (layer < 0 || layer >= o->n_layer) return false;
    pthread_mutex_lock(&o->mu);
    int64_t guessed = o->layer_pred[3 * layer], right = o->layer_pred[3 * layer + 1], used = o->layer_pred[3 * layer + 2];
    pthread_mutex_unlock(&o->mu);
    if (!guessed || !used) return false;
    *precision = (double)right / (double)guessed;
    *recall = (double)right / (double)used;
    return true;
}

int moe_offload_n_layers(const moe_offload *o) { return o->n_layer; }
