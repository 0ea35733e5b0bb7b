/* experts.h — grouped expert compute for training: E feed-forward experts applied to rows
 * that are already sorted by expert, one OpenBLAS GEMM per expert and weight matrix
 * (never a loop over tokens), forward and backward. The same code runs the shared expert
 * (E = 1 over all tokens). */
#ifndef MOE_MOE_EXPERTS_H
#define MOE_MOE_EXPERTS_H

#include "core/common.h"
#include "core/threads.h"

typedef enum moe_ffn_act {
    MOE_FFN_SWIGLU = 0,   /* f(h) = down(silu(gate h) ⊙ up h)   (Mixtral, Qwen, DeepSeek) */
    MOE_FFN_GELU = 1,     /* f(h) = down(gelu(up h)), exact erf GELU (Switch/GShard-style MLP) */
} moe_ffn_act;

/* E experts of one shape. gate/up [E, ff, d] (gate unused by GELU), down [E, d, ff],
 * row-major as PyTorch's nn.Linear weights. Gradients use the same struct. */
typedef struct moe_ffn {
    float *gate, *up, *down;
} moe_ffn;

/* What the forward pass keeps for the backward pass, [n × ff] each: A = pre-activation of
 * the gate (SwiGLU) or of up (GELU), U = up pre-activation (SwiGLU), S = σ(A) (SwiGLU) or
 * Φ(A) (GELU, the normal CDF), H = the activation that enters down. */
typedef struct moe_ffn_acts {
    float *A, *U, *S, *H;
} moe_ffn_acts;

/* O [n × d] = f_e(X) (or O += f_e(X) when accumulate_out) for rows off[e] ≤ r < off[e+1]
 * of X [n × d]. */
void moe_experts_forward(float *O, moe_ffn_acts *acts, const float *X, const int64_t *off, int E,
                         const moe_ffn *w, int64_t d, int64_t ff, moe_ffn_act act, bool accumulate_out,
                         moe_pool *pool);

/* Given dO [n × d] = ∂L/∂O: dX [n × d] = ∂L/∂X (overwritten, or added to when
 * accumulate_dx), and g's gradients += ∂L/∂w. dA, dU [n × ff] are scratch. */
void moe_experts_backward(float *dX, moe_ffn *g, float *dA, float *dU, const float *dO,
                          const float *X, const moe_ffn_acts *acts, const int64_t *off, int E,
                          const moe_ffn *w, int64_t d, int64_t ff, moe_ffn_act act,
                          bool accumulate_dx, moe_pool *pool);

/* The elementwise parts, exposed so tests can compare the SIMD and scalar versions.
 * Forward: from A (and U) fill S and H. Backward: from dH (in dA) fill dA and dU. */
void moe_ffn_act_forward_ref(moe_ffn_act act, int64_t n, const float *A, const float *U, float *S, float *H);
void moe_ffn_act_forward(moe_ffn_act act, int64_t n, const float *A, const float *U, float *S, float *H);
void moe_ffn_act_backward(moe_ffn_act act, int64_t n, const float *A, const float *U, const float *S,
                          float *dA_inout, float *dU);

/* Sets OpenBLAS's thread count (the GEMMs' threads; the pool runs the rest). */
void moe_blas_set_threads(int n);

#endif
