/* optim.c — the optimizer side of training: AdamW with bias correction and decoupled
 * weight decay (matrices only), the learning-rate schedule (linear warm-up, then cosine
 * to min_lr), and the global gradient norm for clipping. Elementwise work is split over
 * the pool by index; the norm is summed per thread in double and combined in thread
 * order, so it is the same run after run for the same thread count. */
#include "train/optim.h"

#include <math.h>
#include <stdlib.h>

double tm_lr_at(int64_t step, int64_t steps, int64_t warmup, double lr, double min_lr) {
    if (step < warmup) return lr * (double)(step + 1) / (double)warmup;
    if (steps <= warmup) return lr;
    double frac = (double)(step - warmup) / (double)MOE_MAX(steps - warmup - 1, 1);
    if (frac > 1) frac = 1;
    return min_lr + 0.5 * (lr - min_lr) * (1.0 + cos(M_PI * frac));
}

typedef struct {
    const float *g;
    size_t n;
    double *part;     /* [nth] */
} norm_job;

static void norm_task(void *arg, int ith, int nth) {
    norm_job *j = arg;
    int64_t b, e;
    moe_split((int64_t)j->n, ith, nth, 16, &b, &e);
    double s = 0;
    for (int64_t i = b; i < e; i++) s += (double)j->g[i] * j->g[i];
    j->part[ith] = s;
}

double tm_grad_norm(const float *g, size_t n, moe_pool *pool) {
    int nth = pool ? moe_pool_size(pool) : 1;
    norm_job j = {g, n, calloc((size_t)nth, sizeof(double))};
    if (!j.part) return NAN;
    moe_pool_run(pool, norm_task, &j);
    double s = 0;
    for (int i = 0; i < nth; i++) s += j.part[i];
    free(j.part);
    return sqrt(s);
}

typedef struct {
    const tm_model *m;
    float *mom, *var;
    const tm_adamw *o;
    double lr, grad_scale, bc1, bc2;
} adam_job;

static void adam_task(void *arg, int ith, int nth) {
    const adam_job *j = arg;
    const tm_model *m = j->m;
    const float b1 = (float)j->o->beta1, b2 = (float)j->o->beta2, eps = (float)j->o->eps;
    const float lr = (float)j->lr, gs = (float)j->grad_scale, bc1 = (float)j->bc1, bc2 = (float)j->bc2;
    for (int ti = 0; ti < m->n_tensors; ti++) {
        const tm_tensor *t = &m->t[ti];
        if (!t->trainable) continue;
        const float wd = t->decay ? (float)j->o->weight_decay : 0.0f;
        int64_t b, e;
        moe_split((int64_t)t->n, ith, nth, 16, &b, &e);
        float *p = m->params + t->off, *mm = j->mom + t->off, *vv = j->var + t->off;
        const float *g = m->grads + t->off;
        for (int64_t i = b; i < e; i++) {
            const float gi = g[i] * gs;
            mm[i] = b1 * mm[i] + (1.0f - b1) * gi;
            vv[i] = b2 * vv[i] + (1.0f - b2) * gi * gi;
            const float mh = mm[i] / bc1, vh = vv[i] / bc2;
            p[i] -= lr * (mh / (sqrtf(vh) + eps) + wd * p[i]);
        }
    }
}

void tm_adamw_step(tm_model *m, float *mom, float *var, const tm_adamw *o, int64_t t, double lr, double grad_scale,
                   moe_pool *pool) {
    adam_job j = {m, mom, var, o, lr, grad_scale, 1.0 - pow(o->beta1, (double)t), 1.0 - pow(o->beta2, (double)t)};
    moe_pool_run(pool, adam_task, &j);
}
