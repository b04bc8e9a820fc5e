/* k_gemm.h — the tensor-core GEMM emitter, shared by the `gemm` template
 * (a matmul node) and the MoE template's grouped expert GEMMs (k_moe.c). */
#pragma once
#include "kernels.h"

typedef enum {
    GEMM_PLAIN,    /* out[M, N] = P(A)[M, K] · W^T (+ residual) */
    GEMM_MOE_GU,   /* grouped: H[p, N] = A[perm[p] / topk, K] · W[e]^T, p over expert e's rows */
    GEMM_MOE_DOWN, /* grouped: Y[perm[p], N] = selw[perm[p]] · (P(H)[p, K] · W[e]^T) */
} GemmMode;

typedef struct GemmShape {
    int bm, bn, bk, wm, wn, stages; /* schedule */
    int64_t N, K;                   /* static sizes (K: the reduction, after the prologue) */
    DType out;                      /* output dtype */
    bool residual;                  /* add a residual in the epilogue (GEMM_PLAIN) */
    int mhc;                        /* streams n of the mHC epilogue (GEMM_PLAIN, f32 out [M, n·N]); 0: none */
    bool swiglu;                    /* A is [rows, 2K] = gate | up; the operand is bf16(silu(gate)·up) */
    GemmMode mode;                  /* plain or one of the grouped MoE GEMMs */
    int64_t experts;                /* E (grouped) */
    int64_t topk;                   /* assignments per token (GEMM_MOE_GU: token = perm[p] / topk) */
} GemmShape;

/* Checks the schedule; false with a message when the emitter refuses it. */
bool gemm_check(const GemmShape *s, Diag *d);
/* Dynamic shared memory of a GemmShape's kernel, bytes. */
unsigned gemm_smem(const GemmShape *s);
/* Records a GemmShape's schedule (bm, bn, bk, wm, wn, stages) among l's plan parameters. */
void gemm_launch_params(KLaunch *l, const GemmShape *s);
/* Emits the kernel. Parameters: plain: A, W, out, [residual | xs, coef (mhc)], M (i32);
 * grouped: A, W, out, offsets (i32 [E+1]), perm (i32 [rows]), [selw (f32
 * [rows]), GEMM_MOE_DOWN]. Grid: (ceil(N/bn), row tiles): plain
 * ceil(M/bm); grouped ceil(rows/bm) + E, blocks past the experts' tiles
 * return at once. */
bool gemm_emit(Codegen *cg, const GemmShape *s, const char *entry, char **ptx, Diag *d);
