/* matmul.c — the generic, type-driven matrix multiplication behind matmul.h. Every type
 * plugs in through its traits (from_float of the vec_dot_type, vec_dot); the threading
 * and blocking live here once. */
#include "core/matmul.h"
#include "core/cpu.h"          /* the column tiles of the layouts of their own */
#include "core/gemm.h"       /* one token: moe_matvec_multi */
#include "core/quant_k.h"      /* the interleaved layouts of Q4_K, Q5_K and IQ4_XS */
#include "core/quant_legacy.h"

#include <stdlib.h>
#include <string.h>

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
    const uint8_t *xq;
    size_t xq_row_bytes;
    float *y;
    int64_t ldy, n;
    int64_t row_parts, tok_parts; /* thread ith takes row part ith % row_parts, token part ith / row_parts */
} mm_job;

void moe_mat_dot_rows(const moe_mat *W, int64_t r0, int64_t r1, const void *xq, float *y) {
    const uint8_t *wd = (const uint8_t *)W->data;
    if (W->interleaved) {
        moe_type_vec_dot_x4i(W->type)(W->cols, y + r0, wd + (size_t)r0 * W->row_bytes, W->row_bytes, xq, (r1 - r0) / 4);
        return;
    }
    const moe_vec_dot_x4_fn dot4 = moe_type_vec_dot_x4(W->type);
    const moe_vec_dot_fn dot = moe_type_get(W->type)->vec_dot;
    int64_t r = r0;
    if (dot4)
        for (; r + 4 <= r1; r += 4) dot4(W->cols, y + r, wd + (size_t)r * W->row_bytes, W->row_bytes, xq);
    for (; r < r1; r++) dot(W->cols, y + r, wd + (size_t)r * W->row_bytes, xq);
}

/* Batches: within a thread, a block of rows is multiplied with every token before moving
 * on, so the block's weights come from DRAM once per batch and stay in L1/L2 while the
 * tokens stream past. 16 rows of a 4096-wide Q8_0 matrix are 70 KB. */
#define MM_ROW_BLOCK 16

static void mm_task(void *arg, int ith, int nth) {
    const mm_job *j = arg;
    const int64_t parts = j->row_parts, tparts = j->tok_parts;
    if (ith >= parts * tparts) return; /* threads left over when nth is not a multiple */
    int64_t r0, r1, t0, t1;
    /* a tiled matrix's kernel calls start at its super-groups (moe_mat_row_unit) */
    const int64_t blk = MOE_MAX(MM_ROW_BLOCK, moe_mat_row_unit(j->W));
    moe_split(j->W->rows, (int)(ith % parts), (int)parts, blk, &r0, &r1);
    moe_split(j->n, (int)(ith / parts), (int)tparts, 1, &t0, &t1);
    for (int64_t rb = r0; rb < r1; rb += blk) {
        const int64_t re = MOE_MIN(rb + blk, r1);
        for (int64_t t = t0; t < t1; t++)
            moe_mat_dot_rows(j->W, rb, re, j->xq + (size_t)t * j->xq_row_bytes, j->y + t * j->ldy);
    }
}

void moe_matmul_prepared(moe_pool *pool, float *y, int64_t ldy, const moe_mat *W, const void *xq, int64_t n) {
    if (n == 1) { /* decode: the fused matvec, one segment (each thread streams a part) */
        const moe_mv_seg sg = {W, xq, y};
        moe_matvec_multi(pool, &sg, 1);
        return;
    }
    const int nth = moe_pool_size(pool);
    /* Rows are split between threads; only when there are too few row blocks to go round
     * (a small matrix in a batch) are the tokens split as well. */
    const int64_t row_chunks = (W->rows + MM_ROW_BLOCK - 1) / MM_ROW_BLOCK;
    mm_job j = {W, xq, moe_act_row_size(W->type, W->cols), y, ldy, n, 1, 1};
    j.row_parts = MOE_MAX(1, MOE_MIN((int64_t)nth, row_chunks));
    j.tok_parts = MOE_MAX(1, MOE_MIN(nth / j.row_parts, n));
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

/* The types whose interleaved kernels read a layout of their own (the others: blocks side
 * by side): how a group of four rows is written, how block i of row r is read back, the
 * bytes of one block of four rows, and the values in a block. */
typedef struct {
    void (*interleave_group)(uint8_t *dst, const uint8_t *src, size_t bx, int64_t nb);
    void (*group_block)(const uint8_t *group, int64_t i, int r, void *out);
    size_t blk;
    int64_t qk;
} own_layout;

static const own_layout *own_layout_of(int type) {
    static const own_layout q4_0 = {moe_q4_0_interleave_group, moe_q4_0_group_block, MOE_Q4_0_IL_BLOCK, 32},
                            q5_0 = {moe_q5_0_interleave_group, moe_q5_0_group_block, MOE_Q5_0_IL_BLOCK, 32},
                            q4_1 = {moe_q4_1_interleave_group, moe_q4_1_group_block, MOE_Q4_1_IL_BLOCK, 32},
                            q5_1 = {moe_q5_1_interleave_group, moe_q5_1_group_block, MOE_Q5_1_IL_BLOCK, 32},
                            q8_0 = {moe_q8_0_interleave_group, moe_q8_0_group_block, MOE_Q8_0_IL_BLOCK, 32},
                            q4_K = {moe_q4_K_interleave_group, moe_q4_K_group_block, MOE_Q4_K_IL_BLOCK, MOE_QK_K},
                            q5_K = {moe_q5_K_interleave_group, moe_q5_K_group_block, MOE_Q5_K_IL_BLOCK, MOE_QK_K},
                            iq4_xs = {moe_iq4_xs_interleave_group, moe_iq4_xs_group_block, MOE_IQ4_XS_IL_BLOCK, MOE_QK_K};
    /* IQ4_NL's blocks are Q4_0's ({d, 16 bytes of nibbles}): the same layout */
    return type == MOE_TYPE_Q4_0 || type == MOE_TYPE_IQ4_NL ? &q4_0
           : type == MOE_TYPE_Q8_0                          ? &q8_0
           : type == MOE_TYPE_Q4_K                          ? &q4_K
           : type == MOE_TYPE_Q5_K                          ? &q5_K
           : type == MOE_TYPE_Q5_0                          ? &q5_0
           : type == MOE_TYPE_Q4_1                          ? &q4_1
           : type == MOE_TYPE_Q5_1                          ? &q5_1
           : type == MOE_TYPE_IQ4_XS                        ? &iq4_xs
                                                            : NULL;
}

/* T, the blocks per column tile of W's layout (cpu.h: moe_il_tile_blocks), or 0 */
static int64_t tile_blocks(const moe_mat *W, const own_layout *own) {
    return own && W->interleaved ? moe_il_tile_blocks(W->cols / own->qk, own->qk) : 0;
}

bool moe_mat_tiled(const moe_mat *W) { return tile_blocks(W, own_layout_of(W->type)) > 0; }

int64_t moe_mat_row_unit(const moe_mat *W) {
    return !W->interleaved ? 1 : moe_mat_tiled(W) ? 4 * MOE_IL_SG_GROUPS : 4;
}

/* Where block i of group g of a tiled matrix is (cpu.h, moe_il_tiled_offset) */
static const uint8_t *tiled_block(const moe_mat *W, const own_layout *own, int64_t T, int64_t g, int64_t i) {
    const int64_t sg = g / MOE_IL_SG_GROUPS, ngroups = W->rows / 4;
    const int64_t gs = MOE_MIN(MOE_IL_SG_GROUPS, ngroups - sg * MOE_IL_SG_GROUPS);
    const uint8_t *base = (const uint8_t *)W->data + (size_t)(sg * MOE_IL_SG_GROUPS) * 4 * W->row_bytes;
    return base + moe_il_tiled_offset(i, g % MOE_IL_SG_GROUPS, gs, W->cols / own->qk, T, own->blk);
}

void moe_mat_untile(const moe_mat *W, int64_t r0, void *dst) {
    const own_layout *own = own_layout_of(W->type);
    const int64_t T = tile_blocks(W, own), nb = W->cols / (own ? own->qk : 1), g0 = r0 / 4;
    const int64_t gs = MOE_MIN(MOE_IL_SG_GROUPS, W->rows / 4 - g0);
    const size_t gb = 4 * W->row_bytes;
    if (!T) { /* already the untiled layout */
        memcpy(dst, (const uint8_t *)W->data + (size_t)r0 * W->row_bytes, (size_t)gs * gb);
        return;
    }
    /* tile by tile in the source's order: each tile of a group to its place in the group */
    const uint8_t *src = (const uint8_t *)W->data + (size_t)r0 * W->row_bytes;
    for (int64_t t = 0; t < nb; t += T) {
        const size_t n = (size_t)MOE_MIN(T, nb - t) * own->blk;
        for (int64_t g = 0; g < gs; g++, src += n) memcpy((uint8_t *)dst + (size_t)g * gb + (size_t)t * own->blk, src, n);
    }
}

void moe_mat_get_row(const moe_mat *W, int64_t r, float *out) {
    const moe_type_traits *t = moe_type_get(W->type);
    const uint8_t *row = (const uint8_t *)W->data + (size_t)r * W->row_bytes;
    if (!W->interleaved) {
        t->to_float(row, out, W->cols);
        return;
    }
    /* block i of row r is block 4i + r % 4 of the row's group (every type with a layout of its own: own_layout_of) */
    const uint8_t *group = (const uint8_t *)W->data + (size_t)(r & ~(int64_t)3) * W->row_bytes;
    const own_layout *own = own_layout_of(W->type);
    const int64_t T = tile_blocks(W, own);
    for (int64_t i = 0; i < W->cols / t->block_size; i++) {
        moe_block_q5_K b; /* the largest of the blocks with a layout of their own */
        const void *blk = group + (size_t)(4 * i + (r & 3)) * t->type_size;
        if (T) {
            own->group_block(tiled_block(W, own, T, r / 4, i), 0, (int)(r & 3), &b);
            blk = &b;
        } else if (own) {
            own->group_block(group, i, (int)(r & 3), &b);
            blk = &b;
        }
        t->to_float(blk, out + i * t->block_size, t->block_size);
    }
}

bool moe_mat_can_interleave(const moe_mat *W) {
    return W->data && !W->interleaved && W->rows % 4 == 0 && moe_type_vec_dot_x4i(W->type) &&
           W->row_bytes == moe_row_size((moe_type)W->type, W->cols);
}

/* One group of four rows (a copy in tmp) written back block by block: the types without
 * a layout of their own (Q2_K, Q3_K, Q6_K, Q8_K; blocks of 84 bytes and more) */
static void interleave_group(uint8_t *group, const uint8_t *tmp, size_t rb, int64_t nb, size_t ts) {
    for (int64_t i = 0; i < nb; i++)
        for (int r = 0; r < 4; r++) memcpy(group + (size_t)(4 * i + r) * ts, tmp + (size_t)r * rb + (size_t)i * ts, ts);
}

moe_status moe_mat_interleave(moe_mat *W, moe_buf *scratch) {
    if (!moe_mat_can_interleave(W))
        return moe_error(MOE_ERR_INVALID, "a %lld×%lld %s matrix cannot be interleaved", (long long)W->rows,
                         (long long)W->cols, moe_type_name(W->type));
    const size_t ts = moe_type_get(W->type)->type_size, rb = W->row_bytes, gb = 4 * rb;
    const int64_t nb = (int64_t)(rb / ts);
    const own_layout *own = own_layout_of(W->type);
    const int64_t T = own ? moe_il_tile_blocks(nb, own->qk) : 0;
    /* tiled: a super-group's rows, then its groups interleaved, then tiled back in place */
    uint8_t *tmp = moe_buf_reserve(scratch, T ? 2 * MOE_IL_SG_GROUPS * gb : gb);
    if (!tmp) return MOE_ERR_NOMEM;
    if (T) {
        uint8_t *il = tmp + MOE_IL_SG_GROUPS * gb;
        for (int64_t g0 = 0; g0 < W->rows / 4; g0 += MOE_IL_SG_GROUPS) {
            const int64_t gs = MOE_MIN(MOE_IL_SG_GROUPS, W->rows / 4 - g0);
            uint8_t *dst = (uint8_t *)W->data + (size_t)g0 * gb;
            memcpy(tmp, dst, (size_t)gs * gb);
            for (int64_t g = 0; g < gs; g++) own->interleave_group(il + (size_t)g * gb, tmp + (size_t)g * gb, rb, nb);
            for (int64_t t = 0; t < nb; t += T) {
                const size_t n = (size_t)MOE_MIN(T, nb - t) * own->blk;
                for (int64_t g = 0; g < gs; g++, dst += n) memcpy(dst, il + (size_t)g * gb + (size_t)t * own->blk, n);
            }
        }
        W->interleaved = true;
        return MOE_OK;
    }
    for (int64_t g = 0; g < W->rows / 4; g++) {
        uint8_t *group = (uint8_t *)W->data + (size_t)g * gb;
        memcpy(tmp, group, gb);
        if (own) own->interleave_group(group, tmp, rb, nb);
        else interleave_group(group, tmp, rb, nb, ts);
    }
    W->interleaved = true;
    return MOE_OK;
}
