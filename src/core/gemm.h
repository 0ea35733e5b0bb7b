/* gemm.h — the matrix products the forward pass needs beyond matmul.h's one-matrix entry
 * point: several matrix-vector products in ONE pool run (decode), and blocked tile
 * kernels for batches (prefill) that compute every output exactly as the type's vec_dot
 * does, so batch and token-by-token results stay bit-identical. */
#ifndef MOE_CORE_GEMM_H
#define MOE_CORE_GEMM_H

#include "core/matmul.h"

/* One product of a fused run: y[r] = dot(W row r, xq) for r < W->rows; xq prepared for
 * W->type (moe_act_prepare). */
typedef struct moe_mv_seg {
    const moe_mat *W;
    const void *xq;
    float *y;
} moe_mv_seg;

/* All segments' products in one pool run. The rows of all segments are laid end to end
 * and split between threads by weight bytes, so each thread streams one contiguous
 * stretch of memory and the threads finish together; decoding a token then costs one
 * pool synchronisation for q/k/v and one for the gate and up projections of every
 * chosen expert, instead of one per matrix. Results equal moe_matmul_prepared's. */
void moe_matvec_multi(moe_pool *pool, const moe_mv_seg *segs, int n_segs);

/* The tile kernel for W's type, or NULL: y[t·ldy + r] for rows [r0, r1) and tokens
 * [t0, t1), each value computed as W's vec_dot computes it (same operations in the same
 * order). xq rows are xq_row_bytes apart. */
typedef void (*moe_gemm_tile_fn)(const moe_mat *W, int64_t r0, int64_t r1, const uint8_t *xq, size_t xq_row_bytes,
                                 int64_t t0, int64_t t1, float *y, int64_t ldy);
moe_gemm_tile_fn moe_gemm_tile_for(int wtype);
/* The rows per call of that tile kernel that moe_gemm_prepared hands a thread at a time:
 * 16, or 32 where the kernel prepares each pass of tokens once per call for eight rows at a
 * time (interleaved Q4_0, Q4_K and Q8_0), which then costs it half as much per row. */
int64_t moe_gemm_tile_rows(const moe_mat *W);

/* y[t·ldy + r] = W·xq_t for t < n, bit-identical to moe_matmul_prepared: one token goes
 * to moe_matvec_multi; batches to the type's tile kernel where it has one, blocked so a
 * block of weight rows stays in L1/L2 while the tokens pass. */
void moe_gemm_prepared(moe_pool *pool, float *y, int64_t ldy, const moe_mat *W, const void *xq, int64_t n);

/* Tests only: nonzero makes moe_gemm_prepared take, on a tiled matrix, the path it takes
 * when it cannot allocate the copy of a block of rows (the decode kernel, token by token),
 * which a test cannot otherwise reach. Not for use from more than one thread at a time. */
extern int moe_gemm_test_no_copy;

#endif
