/* gemm.c — threading of the forward pass's products beyond matmul.c: several
 * matrix-vector products in one pool run (decode) and the blocked batch product over
 * the tile kernels of gemm_tiles.c (prefill). */
#include "core/gemm.h"

#include <stdlib.h>

/* ---------------------------------------------------------------- fused matvec */

#define MV_MAX_SEGS 64
#define MV_CHUNK (32u << 10) /* bytes: the unit of work a thread takes from another's part (~1 µs) */
#define MV_SPAN 8            /* chunks a thread takes of its own part at a time (256 KB) */

typedef struct {
    const moe_mv_seg *segs;
    int n;
    uint64_t total;            /* bytes of all segments */
    uint64_t off[MV_MAX_SEGS]; /* first byte of each segment in the joint stream */
} mv_job;

/* Rows in units of four (the x4 kernels' groups), or of a super-group where the matrix is
 * tiled (moe_mat_row_unit): bytes [lo, hi) of the joint stream cover the units whose first
 * byte lies in them. */
static void mv_range(const mv_job *j, uint64_t lo, uint64_t hi) {
    for (int s = 0; s < j->n; s++) {
        const moe_mv_seg *sg = &j->segs[s];
        const moe_mat *W = sg->W;
        const int64_t unit = MOE_MAX(4, moe_mat_row_unit(W));
        const uint64_t gb = (uint64_t)unit * W->row_bytes, o = j->off[s];
        const uint64_t end = o + (uint64_t)W->rows * W->row_bytes;
        if (end <= lo || o >= hi) continue;
        const int64_t ng = (W->rows + unit - 1) / unit;
        const int64_t g0 = lo <= o ? 0 : (int64_t)((lo - o + gb - 1) / gb);
        const int64_t g1 = MOE_MIN(ng, (int64_t)((hi - o + gb - 1) / gb));
        if (g0 >= g1) continue;
        moe_mat_dot_rows(W, g0 * unit, MOE_MIN(W->rows, g1 * unit), sg->xq, sg->y);
    }
}

/* chunks [c0, c1) of the joint stream */
static void mv_chunks(void *arg, int64_t c0, int64_t c1) {
    const mv_job *j = arg;
    mv_range(j, (uint64_t)c0 * MV_CHUNK, MOE_MIN((uint64_t)c1 * MV_CHUNK, j->total));
}

void moe_matvec_multi(moe_pool *pool, const moe_mv_seg *segs, int n_segs) {
    const double t0 = pool ? moe_time_s() : 0; /* two clock reads a product: ~50 ns */
    uint64_t bytes = 0;
    for (int s0 = 0; s0 < n_segs; s0 += MV_MAX_SEGS) {
        mv_job j;
        j.segs = segs + s0;
        j.n = MOE_MIN(n_segs - s0, MV_MAX_SEGS);
        j.total = 0;
        uint64_t values = 0;
        for (int s = 0; s < j.n; s++) {
            j.off[s] = j.total;
            j.total += (uint64_t)j.segs[s].W->rows * j.segs[s].W->row_bytes;
            values += (uint64_t)j.segs[s].W->rows * (uint64_t)j.segs[s].W->cols;
        }
        /* Each thread streams one contiguous part of the segments' bytes, then takes 32 KB
         * chunks from the ends of the others' (moe_pool_run_parts). Paired on the Zen 5
         * host against shrinking ranges claimed in turn (each thread restarted its stream
         * ~8 times per product), decode tg64: q4_0 +7 %, q4_K +7 %, q8_0 +2 % (medians of
         * 4 pairs; docs/BENCHMARKS.md). */
        const int64_t chunks = (int64_t)((j.total + MV_CHUNK - 1) / MV_CHUNK);
        if (values < 16384) mv_range(&j, 0, j.total); /* a router: not worth waking the pool */
        else moe_pool_run_parts(pool, mv_chunks, &j, chunks, moe_pool_size(pool), MV_SPAN);
        bytes += j.total;
    }
    if (pool) moe_pool_note_product(pool, moe_time_s() - t0, bytes);
}

/* ---------------------------------------------------------------- batches */

/* A thread's rows are taken moe_gemm_tile_rows(W) at a time (16, or 32 for the eight-row
 * tiles); each such block of weights (16 KB for 16 rows of a 1024-wide Q8_0 matrix) stays
 * in L1 or L2 while every token passes over it in tiles of eight. */

typedef struct {
    const moe_mat *W;
    moe_gemm_tile_fn tile;
    const uint8_t *xq;
    size_t xb;
    float *y;
    int64_t ldy, n;
    int64_t row_parts, tok_parts;
    int64_t rows; /* rows per tile call: moe_gemm_tile_rows */
} gemm_job;

int moe_gemm_test_no_copy = 0;

static void gemm_task(void *arg, int ith, int nth) {
    const gemm_job *j = arg;
    if (ith >= j->row_parts * j->tok_parts) return;
    int64_t r0, r1, t0, t1;
    moe_split(j->W->rows, (int)(ith % j->row_parts), (int)j->row_parts, j->rows, &r0, &r1);
    moe_split(j->n, (int)(ith / j->row_parts), (int)j->tok_parts, 4, &t0, &t1);
    if (r0 >= r1 || t0 >= t1) return;
    /* The tiles read the untiled layout: a tiled matrix's super-groups (32 rows, the
     * tiles' row block) are copied back to it first, once per block of rows for all the
     * tokens (~1 % of the work of a 128-token batch). Without memory for the copy, the
     * decode kernel takes every token (the same bits, slower). */
    uint8_t *untiled = NULL;
    if (moe_mat_tiled(j->W) && (moe_gemm_test_no_copy || !(untiled = malloc((size_t)j->rows * j->W->row_bytes)))) {
        for (int64_t t = t0; t < t1; t++)
            moe_mat_dot_rows(j->W, r0, r1, j->xq + (size_t)t * j->xb, j->y + t * j->ldy);
        return;
    }
    for (int64_t rb = r0; rb < r1; rb += j->rows) {
        const int64_t re = MOE_MIN(rb + j->rows, r1);
        if (!untiled) {
            j->tile(j->W, rb, re, j->xq, j->xb, t0, t1, j->y, j->ldy);
            continue;
        }
        moe_mat_untile(j->W, rb, untiled);
        moe_mat V = *j->W; /* the block alone, untiled: rows [rb, re) as rows [0, re − rb) */
        V.data = untiled;
        V.rows = re - rb;
        j->tile(&V, 0, re - rb, j->xq, j->xb, t0, t1, j->y + rb, j->ldy);
    }
    free(untiled);
}

void moe_gemm_prepared(moe_pool *pool, float *y, int64_t ldy, const moe_mat *W, const void *xq, int64_t n) {
    const moe_gemm_tile_fn tile = moe_gemm_tile_for(W->type);
    if (n == 1 || !tile) { /* one token: the fused matvec (moe_matmul_prepared hands it on) */
        moe_matmul_prepared(pool, y, ldy, W, xq, n);
        return;
    }
    const int nth = moe_pool_size(pool);
    const int64_t rows = moe_gemm_tile_rows(W), row_chunks = (W->rows + rows - 1) / rows;
    gemm_job j = {W, tile, xq, moe_act_row_size(W->type, W->cols), y, ldy, n, 1, 1, rows};
    /* up to eight row ranges per thread, claimed by whichever thread is free: the last
     * one leaves the other thread idle for at most 1/16 of the product at 2 threads (four
     * per thread left ~6 % of prefill waiting in the pool; eight: pp128 +1-14 %, paired,
     * docs/BENCHMARKS.md). Tokens are split too only when there are fewer row blocks than
     * threads. */
    j.row_parts = MOE_MAX(1, MOE_MIN((int64_t)(8 * nth), row_chunks));
    j.tok_parts = j.row_parts >= nth ? 1 : MOE_MAX(1, MOE_MIN(nth / j.row_parts, (n + 3) / 4));
    moe_pool_run_n(pool, gemm_task, &j, (int)(j.row_parts * j.tok_parts));
}
