/* optim.h — AdamW, the learning-rate schedule and the gradient norm (optim.c). */
#ifndef MOE_TRAIN_OPTIM_H
#define MOE_TRAIN_OPTIM_H

#include "train/tmodel.h"

typedef struct tm_adamw {
    double beta1, beta2, eps, weight_decay;
} tm_adamw;

/* Learning rate of step (0-based): linear warm-up over `warmup` steps to lr, then cosine
 * decay to min_lr at the last step. */
double tm_lr_at(int64_t step, int64_t steps, int64_t warmup, double lr, double min_lr);
/* ‖g‖₂ over n floats. */
double tm_grad_norm(const float *g, size_t n, moe_pool *pool);
/* One AdamW update of every trainable tensor of m (t = 1-based step for the bias
 * correction; gradients multiplied by grad_scale first, for clipping). Weight decay
 * (decoupled, × lr) only on tensors marked decay. mom/var: [n_params]. */
void tm_adamw_step(tm_model *m, float *mom, float *var, const tm_adamw *o, int64_t t, double lr, double grad_scale,
                   moe_pool *pool);

#endif
