/* compile.h — libmsac's compile driver: YAML text → plan.
 *
 *   frontend (models/) → pass pipeline (passes/) → kernels (codegen/k_*.c)
 *   → plan (runtime/plan_format.h)
 *
 * The plan carries the model's unfused graph as text, so the CPU reference
 * can run any plan without the compiler. */
#pragma once
#include <stdio.h>

#include "diag.h"
#include "plan_format.h"
#include "schedule.h"

typedef struct Graph Graph;
typedef struct Node Node;

typedef struct CompileOptions {
    const char *target;       /* "sm_90a" (default) or "sm_80" */
    const char *dump;         /* print the IR after this pass ("all": after every pass), or NULL */
    FILE *dump_out;           /* where dumps go (default stdout) */
    const char *emit_ptx_dir; /* write every kernel's PTX into this directory, or NULL */
    bool progress;            /* one line per stage on stderr */
    /* Called on each lowered program ("prefill", "decode") before buffer
     * planning and code generation: may replace schedule attributes (the
     * autotuner and the schedule tests use this). NULL for none. */
    void (*tweak)(void *user, const char *program, Graph *g);
    void *tweak_user;         /* passed to tweak and on_launch */
    /* Called for each launch as it is added to a program, with the lowered
     * node it implements (the autotuner maps launch times to nodes with
     * it). NULL for none. */
    void (*on_launch)(void *user, const char *program, int launch, const Node *n);
    const ScheduleSet *schedule; /* overrides applied after lowering (before tweak), or NULL */
    /* Kernels emitted by earlier compiles, reused by kernel key (and filled
     * with this compile's); NULL: a fresh one for this compile only. */
    struct KernelMemo *memo;
    /* Tuning cache (codegen/tune_cache.h) and the GPU to take its entries
     * for: each lowered node whose kernel key has an entry for this GPU,
     * target and msac version gets that entry's schedule (before
     * `schedule` and `tweak`); the others keep lower.c's heuristic. NULL:
     * no cache. */
    const struct TuneCache *tuning;
    const struct TuneDevice *tune_device;
    int tune_tokens[2]; /* shape class to pick: prefill batch*seq, decode batch (<= 0: the largest tuned) */
    /* Without decode classes in the tuning cache, also emit "decode@33", the
     * decode program with gemv schedules for LOWER_WIDE_ROWS (33) or more
     * rows (passes.h), which the runtime takes from that batch on. true:
     * one decode program (msac compile --one-decode, msac tune's plans). */
    bool no_batch_classes;
    /* Threads that emit a program's distinct kernels through LLVM at once
     * (codegen/emit_parallel.c); 0: one per online CPU, at most 8; 1: none
     * besides the caller's. The plan is the same for any count. */
    int threads;
} CompileOptions;

void compile_options_init(CompileOptions *o);

/* Compiles the model in `yaml` (contents of `file`). On success *out is a
 * Plan to free with plan_free. Errors are positioned where they can be. */
bool msac_compile(const char *yaml, const char *file, const CompileOptions *o, Plan **out, Diag *d);

/* Compiles a model graph as the frontend builds it (unfused, shapes may be
 * missing). Used by tests that add outputs for intermediate values. The
 * graph is modified (passes run on it). */
bool msac_compile_graph(Graph *model, const CompileOptions *o, Plan **out, Diag *d);
