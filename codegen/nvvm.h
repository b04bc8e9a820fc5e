/* nvvm.h — every NVVM intrinsic and inline-PTX instruction msac emits, in
 * one place (their names change across LLVM versions; target.c checks at
 * emission that each `llvm.*` declaration is an intrinsic this LLVM knows).
 *
 * Thread indices, barriers, warp shuffles, fast math, ldmatrix, mma.sync
 * bf16 (m16n8k16, fp32 accumulate), cp.async. */
#pragma once
#include "kb.h"

/* Calls (declaring on first use) the function `name` returning ret. */
V nvvm_call(KB *kb, const char *name, T ret, V *args, int nargs);

V nvvm_tid_x(KB *kb);
V nvvm_ctaid_x(KB *kb);
V nvvm_ctaid_y(KB *kb);
V nvvm_ctaid_z(KB *kb);
V nvvm_nctaid_x(KB *kb);
V nvvm_nctaid_y(KB *kb);
V nvvm_nsmid(KB *kb);       /* %nsmid: SM identifiers (the SM count, or a little more) */
V nvvm_lane(KB *kb);       /* tid.x % 32 */
V nvvm_warp(KB *kb);       /* tid.x / 32 */
void nvvm_bar_sync(KB *kb); /* bar.sync 0 (__syncthreads) */

V nvvm_shfl_xor(KB *kb, V x, int mask);  /* f32 butterfly over the full warp */
V nvvm_shfl_idx(KB *kb, V x, V lane);    /* f32 broadcast from lane */
V nvvm_warp_sum(KB *kb, V x);            /* f32 sum over the warp, result in every lane */
V nvvm_warp_max(KB *kb, V x);

V nvvm_ballot(KB *kb, V pred); /* i32 mask of the lanes whose i1 pred is set (full warp) */
V nvvm_popc(KB *kb, V x);      /* set bits of an i32 */
V nvvm_lanemask_lt(KB *kb);    /* i32 mask of the lanes below this one */
V nvvm_ex2(KB *kb, V x);   /* 2^x, ex2.approx.f32 */
V nvvm_ex2_ftz(KB *kb, V x); /* 2^x, ex2.approx.ftz.f32: one MUFU op (subnormal inputs and results flushed to 0) */
V nvvm_lg2(KB *kb, V x);   /* log2 x, lg2.approx.f32 */
V nvvm_rsqrt(KB *kb, V x); /* rsqrt.approx.f32 */
V nvvm_rcp(KB *kb, V x);   /* 1/x, rcp.approx.ftz.f32 */
V nvvm_tanh(KB *kb, V x);  /* tanh.approx.f32 (inline PTX: LLVM has no intrinsic) */
/* prefetch.global.L2: the line holding global address gptr into L2 (no register waits on it). */
void nvvm_prefetch_l2(KB *kb, V gptr);
V nvvm_sin(KB *kb, V x);   /* sin.approx.f32: |error| ~ 2^-21 on [-pi, pi] */
V nvvm_cos(KB *kb, V x);   /* cos.approx.f32 */
/* griddepcontrol (sm_90): wait for the grid this one depends on / let dependents launch. */
void nvvm_griddep_wait(KB *kb);
void nvvm_griddep_launch(KB *kb);
/* The PDL handshake of msac's kernels: wait for the predecessor grid, then let
 * the successor launch. Before it a kernel may only read weights and state a
 * kernel before its predecessor wrote, and write nothing: the predecessor may
 * still be reading buffers the workspace plan shares. */
void nvvm_pdl_sync(KB *kb);
/* prefetch.global.L1: bring the 128-byte line of gptr (a global pointer) into
 * this SM's L1 (and L2). For what a kernel reads right after nvvm_pdl_sync:
 * issued before it, the line's DRAM latency overlaps the wait. */
void nvvm_prefetch_l1(KB *kb, V gptr);
/* Prefetch to L1 the lines of the f32 span base[first .. first + count),
 * spread over the block's threads (thread tid of nthreads issues every
 * nthreads-th line). Only for data that nothing writes during this kernel
 * nor its predecessor (weights, state of an earlier step). */
void nvvm_prefetch_span_l1(KB *kb, V base, V first, int64_t count, V tid, int nthreads);

/* ldmatrix.sync.aligned.m8n8.x4(.trans).shared.b16: four 8x8 b16 matrices;
 * lane l supplies the address of row l%8 of matrix l/8. out[4] = i32 regs. */
void nvvm_ldmatrix_x4(KB *kb, V sptr, bool trans, V out[4]);
void nvvm_ldmatrix_x2(KB *kb, V sptr, bool trans, V out[2]);

/* mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32: d = a*b + c.
 * a[4], b[2]: i32 (bf16x2); c[4], d[4]: f32. */
void nvvm_mma_bf16(KB *kb, const V a[4], const V b[2], const V c[4], V d[4]);

/* cp.async.cg.shared.global 16 bytes; src_bytes < 16 zero-fills the rest. */
void nvvm_cp_async16(KB *kb, V sptr, V gptr, V src_bytes);
/* cp.async.ca.shared.global 4 bytes (for rows only 4-byte aligned). */
void nvvm_cp_async4(KB *kb, V sptr, V gptr, V src_bytes);
void nvvm_cp_async_commit(KB *kb);
void nvvm_cp_async_wait(KB *kb, int n); /* wait until at most n groups pending */
