/* matmul.h — y = W·x for weights of any type: the one entry point the model code uses.
 * Activations are first converted to the weight type's vec_dot_type (Q8_0 for Q4_0,
 * Q8_K for the K-quants, F16 for F16 weights, ...) exactly as llama.cpp's CPU backend
 * does, then every output is one vec_dot of a weight row with an activation row. */
#ifndef MOE_CORE_MATMUL_H
#define MOE_CORE_MATMUL_H

#include "core/common.h"
#include "core/threads.h"
#include "core/types.h"

/* A weight matrix: `rows` rows of `cols` values of `type`; row r starts at
 * data + r * row_bytes (row_bytes is normally moe_row_size(type, cols)), unless the
 * matrix is interleaved (below). */
typedef struct moe_mat {
    const void *data;
    int type;
    int64_t rows, cols;
    size_t row_bytes;
    bool interleaved; /* moe_mat_interleave's layout */
} moe_mat;

static inline moe_mat moe_mat_make(const void *data, int type, int64_t rows, int64_t cols) {
    moe_mat m = {data, type, rows, cols, moe_row_size((moe_type)type, cols), false};
    return m;
}

/* A growable scratch buffer (64-byte aligned). */
typedef struct moe_buf {
    void *ptr;
    size_t cap;
} moe_buf;
void *moe_buf_reserve(moe_buf *b, size_t n);   /* NULL + error on failure */
void moe_buf_free(moe_buf *b);

/* Interleaving: each group of four rows keeps its 4·row_bytes bytes, but ordered block by
 * block, block i of rows 0, 1, 2, 3 side by side (llama.cpp repacks Q4_0 and Q4_K into
 * blocks of four or eight rows for the same reason). The four-row kernels then read one
 * sequential stream instead of four: on the Zen 5 host of docs/BENCHMARKS.md four
 * interleaved streams of 1-3 KB rows read at 18-25 GB/s per core where one stream reads at
 * ~30. The legacy types, Q4_K, Q5_K and IQ4_XS (IQ4_NL: on Q4_0's) go further: the bytes inside each block of four rows are
 * rearranged as well, so that one vector load holds all four rows in lanes of their own
 * and their kernels need no per-row float work (docs/QUANTS.md; quant_legacy.c,
 * quant_k.c). The kernels of a type sum in one order in either layout, so results are
 * bit-identical. Rows of those types wider than 4,096 values are also stored in
 * column tiles, 32 rows at a time (cpu.h, MOE_IL_TILE_COLS: why and how). Possible where
 * the type has an interleaved kernel (moe_type_vec_dot_x4i) and rows is a multiple of 4.
 * moe_mat_interleave rewrites W->data in place (it must be writable) and sets
 * W->interleaved; scratch holds four rows (64 when tiled). */
bool moe_mat_can_interleave(const moe_mat *W);
moe_status moe_mat_interleave(moe_mat *W, moe_buf *scratch);
/* Whether W's interleaved layout is tiled; the rows a call of its kernel must start at
 * (1 row-major, 4 interleaved, 32 tiled: a super-group); and the super-group of a tiled
 * matrix that starts at row r0 (a multiple of 32) copied to dst in the untiled layout
 * (min(32, rows − r0) rows: what the batch tiles read). */
bool moe_mat_tiled(const moe_mat *W);
int64_t moe_mat_row_unit(const moe_mat *W);
void moe_mat_untile(const moe_mat *W, int64_t r0, void *dst);
/* y[r] = dot(W row r, xq) for r0 <= r < r1, with the kernel for W's layout: row-major,
 * four rows at a time where the type has a four-row kernel (each activation block is then
 * loaded once for four rows, and four accumulations are in flight, which is what keeps
 * decode at the memory's speed), the rest one by one; interleaved, one call for all the
 * groups (r0 is then a multiple of moe_mat_row_unit(W), and so is r1 unless it is the
 * last row). xq: a prepared activation row. */
void moe_mat_dot_rows(const moe_mat *W, int64_t r0, int64_t r1, const void *xq, float *y);

/* Bytes of one activation row of `cols` values prepared for weights of type wtype. */
size_t moe_act_row_size(int wtype, int64_t cols);
/* Converts n rows of x [n × cols] (row stride cols) into xq (row stride
 * moe_act_row_size), split over the pool's threads. */
void moe_act_prepare(moe_pool *pool, int wtype, const float *x, void *xq, int64_t n, int64_t cols);
/* y[t * ldy + r] = dot(W row r, xq row t) for t < n, r < W->rows. One token goes to
 * moe_matvec_multi (core/gemm.h: each thread streams one part of the rows); batches split
 * row blocks × tokens between threads. xq must come from moe_act_prepare for
 * W->type (or any type with the same vec_dot_type). */
void moe_matmul_prepared(moe_pool *pool, float *y, int64_t ldy, const moe_mat *W, const void *xq, int64_t n);
/* Both steps; scratch holds the prepared activations. */
moe_status moe_matmul(moe_pool *pool, float *y, const moe_mat *W, const float *x, int64_t n, moe_buf *scratch);

/* Dequantizes row r of W into out[W->cols] (either layout). */
void moe_mat_get_row(const moe_mat *W, int64_t r, float *out);

#endif
