/* rt_internal.h — declarations shared by the runtime's source files and its
 * unit tests, never installed: the status constructor, the msac_plan wrapper
 * around a decoded Plan, dtype and bf16 helpers, the device-memory layout of
 * a session, and the pure (driver-free) pieces of a call: argument checks,
 * per-call buffer addresses and kernel parameters. */
#pragma once
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "msac/runtime.h"
#include "plan_format.h"

/* ---- status ---- */

/* An error status. Heap statuses hold their message in the same allocation;
 * the one static status (host out of memory) is never freed. */
struct msac_status_s {
    msac_code code;      /* never MSAC_OK */
    bool heap;           /* false only for the static out-of-memory status */
    const char *message; /* NUL-terminated, owned by the status */
};

/* Builds an error status with a printf-style message. Returns the static
 * out-of-memory status when the message cannot be allocated. */
msac_status status_make(msac_code code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
msac_status status_makev(msac_code code, const char *fmt, va_list ap);
/* The preallocated "out of memory (host)" status. */
msac_status status_oom(void);

/* Returns the status of `expr` from the enclosing function if it failed. */
#define RT_RETURN_IF_ERROR(expr)        \
    do {                                \
        msac_status rt_st_ = (expr);    \
        if (rt_st_)                     \
            return rt_st_;              \
    } while (0)

/* ---- plans ---- */

/* A loaded plan: the decoded Plan plus the text the info accessors return. */
struct msac_plan {
    Plan *p;              /* decoded and validated plan (owns its strings) */
    char **kernel_params; /* [nkernels] tunables as "key=value,key=value" */
    char **weight_init;   /* [nweights] seeded init as text, "normal(0.02)" */
    int64_t vocab_size;   /* meta "vocab_size", 0 when the plan has none */
};

const char *rt_dtype_name(uint32_t dtype); /* "f32", "bf16", "i32", "?" */
size_t rt_dtype_size(uint32_t dtype);      /* bytes per element, 0 if unknown */
uint64_t rt_weight_numel(const PlanWeight *w); /* product of dims (validated by plan_read) */
int64_t rt_kernel_param(const PlanKernel *k, const char *key, int64_t dflt); /* tunable value, dflt if absent */

/* ---- bf16 ---- */
uint16_t rt_bf16_from_f32(float x); /* round to nearest even; NaN stays a quiet NaN */
float rt_f32_from_bf16(uint16_t b); /* exact */
float rt_bf16_round(float x);       /* x rounded to the nearest bf16, as fp32 */
/* Draw k of the counter-based stream `key` (splitmix64 at position k, the seeded
 * init's stream, weights.c), as a double uniform in (0, 1) with 53 bits. */
double rt_uniform_at(uint64_t key, uint64_t k);
/* dst[i] = rt_bf16_from_f32(src[i]) for i < n. */
void rt_bf16_from_f32_array(const float *src, uint16_t *dst, size_t n);

/* ---- device memory layout of a session ---- */

/* Alignment of every region inside the session's single device allocation. */
#define RT_ALIGN 256u

/* Where each buffer lives inside one device allocation, for given limits.
 * Offsets are relative to the allocation's base. */
typedef struct RtLayout {
    uint64_t total;       /* bytes of the whole allocation */
    uint64_t *weight_off; /* [nweights] offset of each weight's device copy */
    uint64_t *weight_bytes; /* [nweights] numel * dtype size */
    uint64_t *buf_off;    /* [nbuffers] offset (workspace buffers: the arena's offset) */
    uint64_t *buf_size;   /* [nbuffers] bytes reserved at the limits (workspace: 0, per call) */
    uint64_t arena_off;   /* workspace arena: offset */
    uint64_t arena_size;  /* workspace arena: max over workspace buffers of offset + bytes */
} RtLayout;

/* Computes the layout at batch = max_batch, seq = max_seq, ctx = max_ctx.
 * Fails with MSAC_ERR_INVALID_ARGUMENT for bad limits and MSAC_ERR_BAD_PLAN
 * for negative or overflowing sizes. rt_layout_free(NULL-filled) is safe. */
msac_status rt_layout_compute(const msac_plan *plan, int max_batch, int max_seq, int max_ctx, RtLayout *out);
void rt_layout_free(RtLayout *l);

/* ---- one call: checks, buffer addresses, kernel parameters ---- */

/* Checks the sizes of a call against the session limits: batch in
 * 1..max_batch, seq in 1..max_seq and positions[r] + seq <= max_ctx for
 * every row (positions NULL: every row at 0). `what` names the call. */
msac_status rt_check_sizes(const char *what, int max_batch, int max_seq, int max_ctx, const int64_t *positions,
                           int batch, int seq);

/* Checks a prefill/decode call against the session limits: batch in
 * 1..max_batch, seq in 1..max_seq, tokens non-NULL and in [0, vocab), and
 * positions[r] + seq <= max_ctx for every row. `what` names the call. */
msac_status rt_check_call(const char *what, int64_t vocab, int max_batch, int max_seq, int max_ctx,
                          const int64_t *positions, int batch, int seq, const int32_t *tokens);

/* Device address and usable size of every buffer for a call of (batch, seq,
 * ctx): fixed regions for weights, states and I/O; base + arena + offset for
 * workspace buffers, whose range is checked to lie inside the arena.
 * bufptr and bufsize have nbuffers entries. */
msac_status rt_call_buffers(const Plan *p, const RtLayout *l, uint64_t base, int64_t batch, int64_t seq,
                            int64_t ctx, uint64_t *bufptr, uint64_t *bufsize);

/* Bytes of one sequence's row of every state buffer into out_row_bytes
 * (nbuffers entries; 0 for buffers that are not states), with ctx at the
 * session's max_ctx. A state must be laid out per sequence, [batch, ...]
 * row-major, for a call to run on rows other than 0..batch-1: its size
 * c*batch + k*batch*ctx (no other term, divisor 1), and every launch
 * argument into it at a constant offset inside the first row. Otherwise
 * MSAC_ERR_UNSUPPORTED naming the buffer (MSAC_ERR_BAD_PLAN on overflow). */
msac_status rt_state_rows(const Plan *p, int64_t max_ctx, uint64_t *out_row_bytes);

/* Moves every state buffer of a call, as rt_call_buffers addressed it, to
 * start at sequence `row`: bufptr += row * row_bytes, bufsize shrinks by as
 * much, so that rows 0..b-1 of the call are the session's rows row..row+b-1.
 * Inputs, outputs, weights and workspace are per call and stay. */
msac_status rt_call_shift_rows(const Plan *p, const uint64_t *row_bytes, int row, uint64_t *bufptr,
                               uint64_t *bufsize);

/* Checks a ragged prefill (msac_session_prefill_ragged) against the limits:
 * batch in 1..max_batch, lengths non-NULL, every length >= 0 and
 * positions[r] + lengths[r] <= max_ctx, tokens (sum of lengths, back to
 * back) non-NULL when any length is > 0 and each in [0, vocab). Stores the
 * sum of the lengths in *out_total. */
msac_status rt_check_ragged(const char *what, int64_t vocab, int max_batch, int max_ctx, const int64_t *positions,
                            int batch, const int *lengths, const int32_t *tokens, int64_t *out_total);

/* One internal call of a ragged prefill: rows row..row+batch-1 of the
 * session each take their next `seq` tokens. */
typedef struct RtRaggedStep {
    int row;   /* first session row of the call */
    int batch; /* rows in the call */
    int seq;   /* tokens per row, 1..max_seq */
} RtRaggedStep;

/* The next call of a ragged prefill, given each row's length and the
 * tokens it has consumed so far (done[r] <= lengths[r]): the first
 * unfinished row and the unfinished rows right after it, for the fewest
 * tokens any of them has left (at most max_seq). False when every row is
 * done. Rows are independent, so any order is correct; this one puts the
 * shared part of the lengths into one wide call first. */
bool rt_ragged_next(int batch, const int *lengths, const int *done, int max_seq, RtRaggedStep *out);

/* The value of one kernel parameter. */
typedef union RtArgValue {
    uint64_t ptr; /* PARG_BUF: device address (a CUdeviceptr) */
    int32_t i32;  /* PARG_I32 */
    int64_t i64;  /* PARG_I64 */
    float f32;    /* PARG_F32 */
} RtArgValue;

/* Everything cuLaunchKernel needs beyond the kernel's own configuration.
 * params points into vals: do not copy a built RtLaunch. */
typedef struct RtLaunch {
    unsigned grid[3];               /* blocks in x, y, z; a 0 means "skip this launch" */
    unsigned nargs;                 /* parameters */
    RtArgValue vals[PLAN_MAX_ARGS]; /* [nargs] parameter values */
    void *params[PLAN_MAX_ARGS];    /* [nargs] kernelParams: &vals[i] */
} RtLaunch;

/* Evaluates launch `l` for a call of (batch, seq, ctx): grid sizes
 * (checked against the CUDA limits) and parameters (buffer offsets checked
 * against the buffer, i32 values against the i32 range). */
msac_status rt_launch_args(const Plan *p, const PlanLaunch *l, const uint64_t *bufptr, const uint64_t *bufsize,
                           int64_t batch, int64_t seq, int64_t ctx, RtLaunch *out);

/* Checks that a plan compiled for `target` ("sm_90a", "sm_80") runs on a
 * device of compute capability cc_major.cc_minor: "sm_XYa" needs exactly
 * X.Y, "sm_XY" needs at least X.Y. MSAC_ERR_WRONG_TARGET otherwise. */
msac_status rt_check_target(const char *target, const char *dev_name, int cc_major, int cc_minor);

/* Decode graphs a session holds: captured (CUDA graph replayed) and failed
 * (capture refused, plain launches used), over all batch sizes. For tests. */
void rt_session_graph_counts(const msac_session *s, int *out_captured, int *out_failed);

/* ---- sampling (sample.c) ---- */

/* The 64-bit draw of the sampler for p at `step`: Philox4x32-10 of counter
 * (step, stream) under key seed, words 1:0. */
uint64_t rt_sample_random(const msac_sampling *p, uint64_t step);
/* The device record (sample_math.h, 10 u32 words) of p at `step`; p valid. */
void rt_sample_pack(const msac_sampling *p, uint64_t step, uint32_t out[10]);
