/* k_mla_decode.h — the tensor-core path of the mla_attn template
 * (k_mla_decode.c): decode steps split over keys, and prefill with splits 1. */
#pragma once
#include "kernels.h"
#include "passes.h" /* MLA_DECODE_MAX_SPLITS */
#include "target.h"

/* Whether an mla_attn node's shape and schedule (heads ≤ 16, rank a
 * multiple of 64 up to 2048, rope a multiple of 8, q_pe 16-byte aligned,
 * splits 1..16) fit the kernel and its shared memory fits the target. */
bool mla_decode_tc_fits(const Node *n, const TargetDesc *t);

/* Emits mla_decode (partials per key split into the scratch) and
 * mla_combine (merged, bf16 out) for an mla_attn node that fits, or with
 * splits 1 mla_decode alone writing the output (the only form for prefill);
 * the cache-append launch is emitted before, by k_mla_attn, which passes
 * the attention's cost (mla_decode adds its partials' bytes). */
bool k_mla_decode_tc(Codegen *cg, const Node *n, SymExpr flops, SymExpr bytes, KOut *out, Diag *d);

/* Key slot i of query row r (shared by the SIMT and tensor-core attention):
 * dense (K == 0) slot i is cache position i, always a key; sparse, the
 * selection's entry sel[r·K + i], a key when 0 ≤ j ≤ p and j < ctx (else
 * position 0 is returned and *valid is false). */
V mla_key_pos(KB *kb, V selp, int64_t K, V r, V i, V p, V ctx, V *valid);
