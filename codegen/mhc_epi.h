/* mhc_epi.h — the mHC stream update as the epilogue of a block's last
 * kernel (fuse-mhc: attr epilogue="mhc" on matmul, moe, hybrid_mix): with
 * o = F's output of row r, N = its width and n streams,
 *
 *     out[r, i·N + c] = H_post[r, i]·o[r, c] + Σ_j H_res[r, i, j]·xs[r, j·N + c]
 *
 * coef[r] = (H_post [n], H_res [n, n] row-major) f32, written by the
 * block's mhc_pre kernel (mhc_coef). A kernel loads a row's coefficients
 * once (mhc_epi_coef) and then updates each element of o it holds
 * (mhc_epi_update: the n streams at c in, the n updated ones out), so the
 * update costs no pass over the streams besides this kernel's own. */
#pragma once
#include "kb.h"
#include "ir.h"

enum { MHC_EPI_MAX_STREAMS = 8, MHC_EPI_MAX_COEF = MHC_EPI_MAX_STREAMS + MHC_EPI_MAX_STREAMS * MHC_EPI_MAX_STREAMS };
enum { MHC_EPI_TAG = 8 }; /* bytes of a kernel-name tag: "_mhcN" and its NUL */

/* n's streams when it has the mhc epilogue (attr streams), else 0. */
int mhc_epi_streams(const Node *n);
/* Row `row` (i32)'s n + n² coefficients of coef (f32 [rows, n + n²]) into hc[] (f32 values). */
void mhc_epi_coef(KB *kb, int ns, V coef, V row, V hc[MHC_EPI_MAX_COEF]);
/* The update of one element of o: v = o[r, c] (f32), sbase = r·n·N + c (i64); reads xs[sbase + j·N]
 * for every stream j and writes out[sbase + i·N] for every stream i. */
void mhc_epi_update(KB *kb, int ns, int64_t N, const V hc[MHC_EPI_MAX_COEF], V v, V xs, V out, V sbase);
/* Cost per row of o (width N): bytes of the n streams in and out and the coefficients; flops of the update. */
int64_t mhc_epi_bytes(int ns, int64_t N);
int64_t mhc_epi_flops(int ns, int64_t N);
/* The kernel-name tag of the epilogue: "_mhcN" for n streams, "" for 0; written into buf, returned. */
const char *mhc_epi_tag(int ns, char buf[MHC_EPI_TAG]);
