/* matmul.c — the generic, type-driven matrix multiplication behind matmul.h. Every type
 * plugs in through its traits (from_float of the vec_dot_type, vec_dot); the threading
 * and blocking live here once. */
#include "core/matmul.h"

#include <stdlib.h>

void *moe_buf_reserve(moe_buf *b, size_t n) {
    if (n <= b->cap) return b->ptr;
    void *p = moe_aligned_alloc(n);
    if (!p) return NULL;
    free(b->ptr);
    b->ptr = p;
    b->cap = n;
    return p;
}

void moe_buf_free(moe_buf *b) {
    free(b->ptr);
    b->ptr = NULL;
    b->cap = 0;
}

size_t moe_act_row_size(int wtype, int64_t cols) {
    const moe_type_traits *t = moe_type_get(wtype);
    return t ? moe_row_size(t->vec_dot_type, cols) : 0;
}

typedef struct {
    const moe_type_traits *vt;
    const float *x;
    uint8_t *xq;
    int64_t n, cols;
    size_t row_bytes;
} prep_job;

static void prep_task(void *arg, int ith, int nth) {
    prep_job *j = arg;
    int64_t b, e;
    moe_split(j->n, ith, nth, 1, &b, &e);
    for (int64_t t = b; t < e; t++)
        j->vt->from_float(j->x + t * j->cols, j->xq + (size_t)t * j->row_bytes, j->cols);
}

void moe_act_prepare(moe_pool *pool, int wtype, const float *x, void *xq, int64_t n, int64_t cols) {
    const moe_type_traits *wt = moe_type_get(wtype);
    prep_job j = {moe_type_get(wt->vec_dot_type), x, xq, n, cols, moe_act_row_size(wtype, cols)};
    if (n == 1) prep_task(&j, 0, 1); /* one row: not worth waking the pool */
    else moe_pool_run(pool, prep_task, &j);
}

typedef struct {
    const moe_mat *W;
    moe_vec_dot_fn dot;
    const uint8_t *xq;
    size_t xq_row_bytes;
    float *y;
    int64_t ldy, n;
} mm_job;

/* Rows are split between threads; within a thread, a block of rows is multiplied with
 * every token before moving on, so a block of weights is read from DRAM once per batch
 * and stays in cache while the tokens stream past. */
#define MM_ROW_BLOCK 16

static void mm_task(void *arg, int ith, int nth) {
    mm_job *j = arg;
    const moe_mat *W = j->W;
    int64_t r0, r1;
    moe_split(W->rows, ith, nth, j->n > 1 ? MM_ROW_BLOCK : 4, &r0, &r1);
    const uint8_t *wd = W->data;
    for (int64_t rb = r0; rb < r1; rb += MM_ROW_BLOCK) {
        int64_t re = MOE_MIN(rb + MM_ROW_BLOCK, r1);
        for (int64_t t = 0; t < j->n; t++) {
            const uint8_t *xr = j->xq + (size_t)t * j->xq_row_bytes;
            float *yr = j->y + t * j->ldy;
            for (int64_t r = rb; r < re; r++) j->dot(W->cols, &yr[r], wd + (size_t)r * W->row_bytes, xr);
        }
    }
}

void moe_matmul_prepared(moe_pool *pool, float *y, int64_t ldy, const moe_mat *W, const void *xq, int64_t n) {
    const moe_type_traits *wt = moe_type_get(W->type);
    mm_job j = {W, wt->vec_dot, xq, moe_act_row_size(W->type, W->cols), y, ldy, n};
    moe_pool_run(pool, mm_task, &j);
}

moe_status moe_matmul(moe_pool *pool, float *y, const moe_mat *W, const float *x, int64_t n, moe_buf *scratch) {
    moe_status st = moe_type_check_compute(W->type);
    if (st) return st;
    void *xq = moe_buf_reserve(scratch, moe_act_row_size(W->type, W->cols) * (size_t)n);
    if (!xq) return MOE_ERR_NOMEM;
    moe_act_prepare(pool, W->type, x, xq, n, W->cols);
    moe_matmul_prepared(pool, y, W->rows, W, xq, n);
    return MOE_OK;
}

void moe_mat_get_row(const moe_mat *W, int64_t r, float *out) {
    moe_type_get(W->type)->to_float((const uint8_t *)W->data + (size_t)r * W->row_bytes, out, W->cols);
}
