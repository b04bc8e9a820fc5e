/* passes.h — the passes over the tensor IR and the pipeline that runs them.
 *
 * Each pass is `bool pass_x(Graph *, Diag *)`, one per file, mutating the
 * graph in place and returning false (with a message) only on a user-visible
 * problem. The pipeline (pipeline.c) is one explicit list. */
#pragma once
#include "ir.h"

typedef bool (*PassFn)(Graph *g, Diag *d);

bool pass_infer_shapes(Graph *g, Diag *d);  /* fill shapes from the op rules */
bool pass_verify(Graph *g, Diag *d);        /* ir_verify as a pass */
bool pass_dce(Graph *g, Diag *d);           /* drop values nothing uses (effects stay) */
bool pass_decode(Graph *g, Diag *d);        /* specialise to one token: seq := 1 */
bool pass_fuse_scan(Graph *g, Diag *d);     /* conv1d+silu+softplus+ssd+gated norm → mamba2_mixer */
/* fuse-scan's Mamba1 rule (fuse_scan_mamba1.c): conv1d+silu → mamba1_conv, the scan → mamba1_mixer. */
void fuse_scan_mamba1(Graph *g);
bool pass_fuse_epilogue(Graph *g, Diag *d); /* add(matmul(x,w), r) → matmul(x,w,r) */
bool pass_fuse_prologue(Graph *g, Diag *d); /* decode: norms into the following matmul's prologue */
bool pass_fuse_index(Graph *g, Diag *d);    /* topk(index_scores) → index_topk (streaming) */
bool pass_fuse_mhc(Graph *g, Diag *d);      /* rmsnorm(mhc_pre | mhc_collapse) → one mhc kernel */
bool pass_lower(Graph *g, Diag *d);         /* pick a kernel template and schedule per node */

/* Decode runs at this many sequences or more (more than two 16-row gemv
 * tiles) take gemv schedules for many rows: without tuned decode classes
 * the compiler adds a program "decode@33" (compile.c) whose gemvs are
 * lowered for them. H100, decode steps with the two schedules (ms, narrow
 * / wide): mamba2-130m b32 1.059 / 1.083, b48 1.555 / 1.458, b64 1.921 /
 * 1.702; mamba-130m b32 0.878 / 0.967, b48 1.131 / 0.914. */
enum { LOWER_WIDE_ROWS = 33 };
/* gemv's schedule (wn, wk) for a decode matmul node run on about `rows` rows. */
void lower_gemv_schedule(Graph *g, Node *n, int rows);
/* The most key splits lower lets a decode mla_attn use: it sizes the node's
 * scratch for this many ([batch][splits][heads][rank + 2] f32); the kernel
 * (codegen/k_mla_decode.c) refuses more. */
#define MLA_DECODE_MAX_SPLITS 16
/* The same for a decode attn ([batch][splits][heads][head_dim + 2] f32;
 * codegen/k_attn.c). */
#define ATTN_DECODE_MAX_SPLITS 16
/* The segment states a prefill mamba2_scan's scratch holds beyond one per
 * (sequence, head): lower sizes it for batch·heads + this many; the
 * sequence-parallel scan (codegen/k_mamba2_seg.c) uses no more. */
#define MAMBA2_SEG_SPARE 256
/* A decode index_topk's select 3 (codegen/k_index_seg.c) splits each
 * query's keys into at most INDEX_SEG_MAX segments, each keeping at most
 * INDEX_SEG_CANDS keys of the threshold bin; lower sizes the node's scratch
 * for the keys ([batch, ctx] u32) plus INDEX_SEG_AREA bytes per query (the
 * bin, its rank, and per segment two counts and the candidates). */
#define INDEX_SEG_MAX 8
#define INDEX_SEG_CANDS 2048
#define INDEX_SEG_AREA (4 * (4 + INDEX_SEG_MAX * (4 + INDEX_SEG_CANDS)))
bool pass_plan_buffers(Graph *g, Diag *d);  /* workspace offsets by liveness */

typedef struct PassInfo {
    const char *name; /* as in --dump=after-NAME */
    PassFn fn;        /* the pass */
} PassInfo;

/* Every pass by name (for tests and tools that run one pass). */
const PassInfo *pass_lookup(const char *name);
extern const PassInfo pass_table[];
extern const int pass_count;

/* The compile pipeline. The model graph goes through the common passes;
 * then one copy per program (prefill, decode) goes through the program
 * passes (decode first specialises to seq = 1). `dump` is called after each
 * pass with the program name ("model", "prefill", "decode"). */
typedef struct Programs {
    Graph *model;   /* the verified, unfused graph: the CPU reference */
    Graph *prefill; /* lowered, buffer-planned prefill graph */
    Graph *decode;  /* lowered, buffer-planned decode graph */
} Programs;

typedef struct PipelineHooks {
    /* After each pass, with the program name ("model", "prefill", "decode"). */
    void (*dump)(void *user, const char *program, const char *pass, const Graph *g);
    void *dump_user;
    /* After `lower`, before `plan-buffers`: may change schedule attributes. */
    void (*tweak)(void *user, const char *program, Graph *g);
    void *tweak_user;
} PipelineHooks;

bool pipeline_run(Arena *a, Graph *model, Programs *out, const PipelineHooks *hooks, Diag *d);
