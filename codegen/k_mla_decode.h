/* k_mla_decode.h — the tensor-core, key-split decode path of the mla_attn
 * template (k_mla_decode.c). */
#pragma once
#include "kernels.h"
#include "target.h"

/* The most key splits a decode node may use: passes/lower.c sizes the node's
 * scratch for this many ([rows][splits][heads][rank + 2] f32). */
#define MLA_DECODE_MAX_SPLITS 16

/* Whether a one-token mla_attn node's shape and schedule (heads ≤ 16, rank a
 * multiple of 64 up to 2048, rope a multiple of 8, q_pe 16-byte aligned,
 * splits 1..16) fit the kernel and its shared memory fits the target. */
bool mla_decode_tc_fits(const Node *n, const TargetDesc *t);

/* Emits mla_decode (partials per key split into the scratch) and
 * mla_combine (merged, bf16 out) for a one-token mla_attn node that fits;
 * the cache-append launch is emitted before, by k_mla_attn. */
bool k_mla_decode_tc(Codegen *cg, const Node *n, KOut *out, Diag *d);
