/* kernels.h — what a kernel template produces: launches of PTX kernels whose
 * arguments refer to the IR node's operands and result.
 *
 * codegen/emit_plan.c maps KA_SRC / KA_OUT to plan buffers; grid sizes and
 * integer arguments are symbolic in batch, seq, ctx. */
#pragma once
#include "ir.h"
#include "target.h"

enum { KL_MAX_ARGS = 32, KL_MAX_PARAMS = 16, KL_MAX_LAUNCHES = 8 };

typedef enum {
    KA_SRC, /* pointer to the value of node->src[src] (+ off bytes) */
    KA_OUT, /* pointer to the node's own value (+ off bytes) */
    KA_I32, /* 32-bit integer: the value of `val` */
    KA_F32, /* float `f` */
    KA_SCRATCH, /* pointer to the node's scratch (attr scratch_off) (+ off bytes) */
    KA_AUX, /* pointer to the value of the node's aux result: the OPF_AUX node whose src[0] it is */
    KA_STATE, /* pointer to the node's own persistent state "<node>.<name>", `val` bytes per sequence (a
               * plan state buffer: kept across calls, zeroed at session creation and by reset) */
} KArgKind;

typedef struct KArg {
    KArgKind kind; /* what it is */
    int src;       /* operand index (KA_SRC) */
    SymExpr val;   /* byte offset (KA_SRC/KA_OUT) or value (KA_I32) */
    float f;       /* KA_F32 */
    const char *name; /* KA_STATE: the state's name after "<node>." (static string) */
} KArg;

typedef struct KParam {
    const char *key; /* schedule parameter name */
    int64_t value;   /* its value */
} KParam;

typedef struct KLaunch {
    char name[96];          /* kernel instance name (template + schedule + shape) */
    char *ptx;              /* PTX text (malloc'd) */
    unsigned block;         /* threads per block (1-D blocks) */
    unsigned smem;          /* dynamic shared memory bytes */
    SymExpr grid[3];        /* blocks in x, y, z */
    SymExpr flops;          /* cost model: floating-point operations */
    SymExpr bytes;          /* cost model: fewest bytes moved through device memory */
    int nargs;              /* arguments, in kernel-parameter order */
    KArg args[KL_MAX_ARGS];
    int nparams;            /* schedule parameters (recorded in the plan) */
    KParam params[KL_MAX_PARAMS];
} KLaunch;

typedef struct KOut {
    int n;                           /* launches produced */
    KLaunch l[KL_MAX_LAUNCHES];      /* in execution order */
} KOut;

typedef bool (*KernelEmitFn)(Codegen *cg, const Node *n, KOut *out, Diag *d);

#define KERNEL(name, fn, space) bool fn(Codegen *cg, const Node *n, KOut *out, Diag *d);
#include "kernels.def"
#undef KERNEL

/* The emitter for kernel template `name`, or NULL. */
KernelEmitFn kernel_lookup(const char *name);
/* The tuning space of kernel template `name` (kernels.def grammar), or NULL
 * for an unknown template. */
const char *kernel_tune_space(const char *name);

/* Helpers for emitters. */
KLaunch *kout_add(KOut *o, const char *name, unsigned block, unsigned smem);
void kl_arg_src(KLaunch *l, int src);
void kl_arg_out(KLaunch *l);
void kl_arg_i32(KLaunch *l, SymExpr v);
void kl_arg_scratch(KLaunch *l);
/* The node's scratch + off bytes (symbolic: regions sized by the rows). */
void kl_arg_scratch_at(KLaunch *l, SymExpr off);
void kl_arg_f32(KLaunch *l, float f);
/* The node's aux result (an OPF_AUX node with src[0] = this node, e.g. mhc_coef). */
void kl_arg_aux(KLaunch *l);
/* The node's persistent state "<node>.<name>" of `bytes` per sequence (KA_STATE). */
void kl_arg_state(KLaunch *l, const char *name, int64_t bytes);
void kl_param(KLaunch *l, const char *key, int64_t v);
/* Whether a kernel for n uses programmatic dependent launch: one-token
 * (decode) nodes on targets that have griddepcontrol (sm_90). */
bool kl_use_pdl(const Codegen *cg, const Node *n);
/* Emits a kernel copying `nparts` row sets (src_i [rows, w_i] → cache_i
 * [B, ctx, w_i]) at each sequence's position (k_mla.c; the latent caches
 * and the indexer's k cache). Args: src_0, cache_0, ..., pos, rows, seq, ctx. */
bool emit_cache_append(Codegen *cg, const char *entry, int nparts, const int64_t *w, char **ptx, Diag *d);

/* Rows of a node: product of all dims but the last, as a SymExpr. */
SymExpr node_rows_expr(const Node *n);
/* The largest vocabulary the sampler kernel takes (its per-warp u32
 * histogram halves cannot overflow up to this); plans of larger models get
 * no "sample" program (the runtime's sampling calls then say so). */
#define K_SAMPLE_MAX_VOCAB (1 << 20)
/* The sampler kernel (k_sample.c) for a vocabulary of `vocab`: fills l's
 * name, block, shared memory, grid (batch), cost and PTX; its arguments
 * (logits, sampling records, tokens, seq) are bound by emit_plan's program
 * "sample". */
bool k_sample_emit(Codegen *cg, int64_t vocab, KLaunch *l, Diag *d);
