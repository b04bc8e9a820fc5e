/* kb.h — the kernel builder: a thin layer over the LLVM C API that kernel
 * templates (codegen/k_*.c) are written in.
 *
 * It gives structured control flow (kb_if / kb_for with explicit ends),
 * mutable variables (allocas that LLVM's mem2reg turns into registers),
 * type-dispatched arithmetic, and memory access with explicit address
 * spaces: global (1) for kernel arguments, shared (3) for the block's
 * dynamic shared memory. GPU intrinsics are in nvvm.h; module creation and
 * PTX emission in target.h. A C loop around kb_* calls unrolls at
 * generation time: that is how register arrays are indexed with constants. */
#pragma once
#include <llvm-c/Core.h>
#include <stdbool.h>
#include <stdint.h>

#include "diag.h"

typedef LLVMValueRef V;
typedef LLVMTypeRef T;

enum { KB_MAX_DEPTH = 32, KB_MAX_PARAMS = 64 };

typedef enum { KP_PTR, KP_I32, KP_F32, KP_I64 } KParamKind;

typedef struct KVar {
    V ptr; /* the alloca */
    T ty;  /* its element type */
} KVar;

typedef struct KFrame {
    int kind;                /* 0 = if, 1 = for */
    LLVMBasicBlockRef a, b;  /* if: else block, join block; for: head block, exit block */
    KVar iv;                 /* for: induction variable */
    V step;                  /* for: step */
    bool has_else;           /* if: kb_else was called */
} KFrame;

typedef struct KB {
    LLVMContextRef ctx;       /* owned by the Codegen */
    LLVMModuleRef mod;        /* this kernel's module */
    LLVMBuilderRef b;         /* insertion point */
    V fn;                     /* the kernel function */
    LLVMBasicBlockRef entry;  /* allocas go here */
    V smem;                   /* dynamic shared memory base, ptr addrspace(3) */
    int nparams;              /* kernel parameters */
    KParamKind pkind[KB_MAX_PARAMS]; /* their kinds */
    KFrame stack[KB_MAX_DEPTH]; /* open if/for constructs */
    int depth;                /* entries in stack */
    /* types */
    T t_void, i1, i8, i16, i32, i64, f32, bf16, pg, ps;
} KB;

/* Starts a kernel `entry` with the given parameters; max_threads becomes
 * the PTX .maxntid (the block size the kernel is launched with). */
KB *kb_new(LLVMContextRef ctx, const char *entry, const KParamKind *params, int nparams, int max_threads);
void kb_free(KB *kb); /* disposes the module too */
V kb_param(KB *kb, int i);

/* ---- constants and variables ---- */
V kb_i32(KB *kb, int64_t v);
V kb_i64(KB *kb, int64_t v);
V kb_f32(KB *kb, double v);
KVar kb_var(KB *kb, T ty, V init);
V kb_get(KB *kb, KVar v);
void kb_set(KB *kb, KVar v, V x);

/* ---- arithmetic: integer or float by operand type; comparisons signed/ordered ---- */
V kb_add(KB *kb, V a, V b);
V kb_sub(KB *kb, V a, V b);
V kb_mul(KB *kb, V a, V b);
V kb_div(KB *kb, V a, V b);
V kb_rem(KB *kb, V a, V b);
V kb_neg(KB *kb, V a);
V kb_lt(KB *kb, V a, V b);
V kb_le(KB *kb, V a, V b);
V kb_gt(KB *kb, V a, V b);
V kb_ge(KB *kb, V a, V b);
V kb_eq(KB *kb, V a, V b);
V kb_ne(KB *kb, V a, V b);
V kb_and(KB *kb, V a, V b);
V kb_or(KB *kb, V a, V b);
V kb_xor(KB *kb, V a, V b);
V kb_shl(KB *kb, V a, V b);
V kb_shr(KB *kb, V a, V b);
V kb_min(KB *kb, V a, V b);
V kb_max(KB *kb, V a, V b);
V kb_select(KB *kb, V c, V a, V b);
V kb_fma(KB *kb, V a, V b, V c);
V kb_to_f32(KB *kb, V i);       /* signed int → f32 */
V kb_to_i64(KB *kb, V i);       /* sign-extend */
V kb_bf16_to_f32(KB *kb, V x);  /* bfloat → float */
V kb_f32_to_bf16(KB *kb, V x);  /* float → bfloat, round to nearest even */
V kb_pack_bf16x2(KB *kb, V lo, V hi); /* two floats → i32 holding two bf16 (lo in bits 0..15) */
V kb_bitcast(KB *kb, V x, T ty);

/* Fast math built from PTX approximations (ex2.approx, lg2.approx, rcp). */
V kb_exp(KB *kb, V x);
V kb_log(KB *kb, V x);
V kb_rsqrt(KB *kb, V x);
V kb_rcp(KB *kb, V x);
V kb_sigmoid(KB *kb, V x);
V kb_silu(KB *kb, V x);
V kb_softplus(KB *kb, V x); /* x > 20 ? x : log(1 + exp(x)), as torch */

/* ---- memory ---- */
V kb_gep(KB *kb, T elem, V ptr, V idx);   /* &ptr[idx] */
V kb_load(KB *kb, T ty, V ptr);
void kb_store(KB *kb, V val, V ptr);
V kb_load_vec(KB *kb, T elem, int n, V ptr, unsigned align); /* <n x elem> */
void kb_store_vec(KB *kb, V vec, V ptr, unsigned align);
V kb_extract(KB *kb, V vec, int i);
V kb_smem(KB *kb, V byte_off);            /* i8 pointer into dynamic shared memory */
/* A read-only table of n doubles in global memory; returns its address. */
V kb_table_f64(KB *kb, const double *vals, int n);

/* ---- control flow ---- */
void kb_if(KB *kb, V cond);
void kb_else(KB *kb);
void kb_endif(KB *kb);
/* for (iv = start; iv < end; iv += step) — i32; read iv with kb_get. */
KVar kb_for(KB *kb, V start, V end, V step);
void kb_endfor(KB *kb);
void kb_ret(KB *kb);
