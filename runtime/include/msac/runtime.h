/* msac/runtime.h — the msac runtime: load a compiled plan (.msac), bind
 * weights, and run prefill and decode steps on an NVIDIA GPU.
 *
 * The runtime links against libc and libdl only: the CUDA driver (libcuda) is
 * loaded with dlopen when a device is opened, so a program using this library
 * starts and reports cleanly on a machine without a GPU.
 *
 * Errors. Every call that can fail returns an msac_status: NULL means
 * success; otherwise it is a heap object carrying a code and a readable
 * message, which the caller owns and frees with msac_status_free(). No call
 * aborts on a user error (bad file, bad plan, no GPU, out of memory).
 *
 * Ownership. Objects are created by *_load / *_open / *_create and freed by
 * the matching *_free / *_close / *_destroy. A session keeps a reference to
 * its device and plan: free those only after the session is destroyed.
 * Out-parameters are named out_* and written only on success.
 *
 * Thread safety. msac_plan and msac_weights are immutable once loaded and may
 * be shared between threads. An msac_device may be shared; an msac_session
 * must be used by one thread at a time (calls on different sessions may run
 * concurrently). */
#ifndef MSAC_RUNTIME_H
#define MSAC_RUNTIME_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- status ---- */
typedef enum msac_code {
    MSAC_OK = 0,
    MSAC_ERR_INVALID_ARGUMENT = 1, /* a bad argument: null pointer, batch too large, token out of range */
    MSAC_ERR_IO = 2,               /* a file could not be opened or read */
    MSAC_ERR_BAD_PLAN = 3,         /* plan truncated, corrupt, wrong magic/version/checksum */
    MSAC_ERR_WRONG_TARGET = 4,     /* plan compiled for a GPU this device is not */
    MSAC_ERR_NO_DRIVER = 5,        /* libcuda could not be loaded or initialised */
    MSAC_ERR_NO_DEVICE = 6,        /* no CUDA device (or not the ordinal asked for) */
    MSAC_ERR_OUT_OF_MEMORY = 7,    /* device or host allocation failed */
    MSAC_ERR_BAD_WEIGHTS = 8,      /* checkpoint missing a tensor, wrong shape or dtype, corrupt */
    MSAC_ERR_CUDA = 9,             /* any other CUDA driver error (message has the CUresult name) */
    MSAC_ERR_UNSUPPORTED = 10,     /* a feature this plan or build does not have */
} msac_code;

typedef struct msac_status_s *msac_status;

msac_code msac_status_code(msac_status st);          /* MSAC_OK for NULL */
const char *msac_status_message(msac_status st);     /* "" for NULL; valid until freed */
void msac_status_free(msac_status st);               /* NULL is fine */
const char *msac_code_name(msac_code code);          /* "MSAC_ERR_BAD_PLAN" etc. */

/* ---- plans ---- */
typedef struct msac_plan msac_plan;

/* Reads and validates a plan file: magic, format version, checksum and
 * every index and size inside it are checked before the plan is returned. */
msac_status msac_plan_load(const char *path, msac_plan **out_plan);
msac_status msac_plan_load_memory(const void *data, size_t size, msac_plan **out_plan);
void msac_plan_free(msac_plan *plan);

typedef struct msac_plan_info {
    const char *model;        /* model name from the YAML */
    const char *msac_version; /* version of the compiler that wrote it */
    const char *target;       /* "sm_80", "sm_90a" */
    int ptx_isa;              /* PTX ISA version x10 (e.g. 80 for 8.0) */
    uint64_t options_hash;    /* hash of the compile options */
    int64_t vocab_size;       /* logits per token */
    int num_kernels;          /* kernels in the plan */
    int num_programs;         /* launch programs (prefill, decode) */
    int num_buffers;          /* buffers in the buffer plan */
    int num_weights;          /* weights in the weight table */
} msac_plan_info;

void msac_plan_get_info(const msac_plan *plan, msac_plan_info *out_info);
/* Meta value by key ("model", "vocab_size", "d_model", ...), NULL if absent. */
const char *msac_plan_meta(const msac_plan *plan, const char *key);
/* The CPU-reference graph (textual IR) embedded in the plan. */
const char *msac_plan_graph_text(const msac_plan *plan);

typedef struct msac_kernel_info {
    const char *name;    /* kernel instance name (template + schedule) */
    const char *entry;   /* PTX entry point */
    unsigned block[3];   /* threads per block */
    unsigned smem_bytes; /* dynamic shared memory */
    size_t ptx_bytes;    /* size of its PTX text */
    const char *params;  /* tunables as "key=value,key=value" */
} msac_kernel_info;
int msac_plan_kernel_info(const msac_plan *plan, int index, msac_kernel_info *out_info); /* 0 ok, -1 range */
const char *msac_plan_kernel_ptx(const msac_plan *plan, int index);

typedef struct msac_program_info {
    const char *name; /* "prefill", "decode" */
    int num_launches; /* kernel launches per call */
} msac_program_info;
int msac_plan_program_info(const msac_plan *plan, int index, msac_program_info *out_info);
/* Launch j of program i: kernel index and grid as text ("ceil(batch*seq/4)", ...). */
int msac_plan_launch_info(const msac_plan *plan, int program, int launch, int *out_kernel, char *grid_text,
                          size_t grid_text_size);

/* Number of launches of program "prefill" or "decode" (any program name of
 * the plan), or -1 when plan or program is NULL or the plan has no such
 * program. */
int msac_plan_program_launches(const msac_plan *plan, const char *program);
/* Launch `launch` of `program`: its kernel index and the plan's cost model
 * for it evaluated at (batch, seq, ctx): the floating-point operations it
 * does and the fewest bytes it must move through device memory (both 0 when
 * the plan has no model for that kernel). Each out-parameter may be NULL.
 * MSAC_ERR_INVALID_ARGUMENT for a NULL plan or program, an unknown program,
 * a launch out of range or a size below 1; MSAC_ERR_BAD_PLAN when the cost
 * expressions overflow or come out negative. */
msac_status msac_plan_launch_cost(const msac_plan *plan, const char *program, int launch, int batch, int seq,
                                  int ctx, int *out_kernel, double *out_flops, double *out_bytes);

typedef enum msac_buffer_kind {
    MSAC_BUF_WEIGHT = 0,
    MSAC_BUF_STATE = 1,     /* persists across calls, zeroed by reset */
    MSAC_BUF_INPUT = 2,     /* tokens, pos */
    MSAC_BUF_OUTPUT = 3,    /* logits */
    MSAC_BUF_WORKSPACE = 4, /* intermediate, packed into one arena by liveness */
} msac_buffer_kind;

typedef struct msac_buffer_info {
    const char *name;      /* value or binding name */
    msac_buffer_kind kind; /* role */
    const char *dtype;     /* "f32", "bf16", "i32" */
    char bytes[96];        /* size as an expression of batch, seq, ctx */
    char offset[96];       /* workspace offset expression ("" otherwise) */
} msac_buffer_info;
int msac_plan_buffer_info(const msac_plan *plan, int index, msac_buffer_info *out_info);

typedef struct msac_weight_info {
    const char *name;       /* checkpoint tensor name */
    const char *dtype;      /* storage dtype */
    int ndim;               /* rank */
    int64_t dims[4];        /* shape */
    const char *init;       /* seeded init used when no checkpoint is given ("normal(0.02)") */
} msac_weight_info;
int msac_plan_weight_info(const msac_plan *plan, int index, msac_weight_info *out_info);

/* Bytes of device memory a session of this plan needs for the given limits
 * (weights + states + workspace + I/O). */
msac_status msac_plan_memory_required(const msac_plan *plan, int max_batch, int max_seq, int max_ctx,
                                      uint64_t *out_bytes);

/* ---- weights ---- */
typedef struct msac_weights msac_weights;

/* Opens a safetensors checkpoint (memory-mapped; nothing is read yet). */
msac_status msac_weights_open(const char *path, msac_weights **out_weights);
void msac_weights_close(msac_weights *w);

/* Host values of weight `index` as fp32 (bf16 weights are the exact bf16
 * values): from the checkpoint when `w` is non-NULL (the tensor is checked
 * for presence, shape and dtype), else from the seeded init. `out` holds the
 * weight's element count. This is what the device receives too. */
msac_status msac_plan_weight_values(const msac_plan *plan, int index, const msac_weights *w, uint64_t seed,
                                    float *out);

/* ---- devices ---- */
typedef struct msac_device msac_device;

typedef struct msac_device_info {
    char name[128];      /* "NVIDIA H100 80GB HBM3" */
    int cc_major;        /* compute capability */
    int cc_minor;
    int sm_count;        /* multiprocessors */
    int driver_version;  /* e.g. 13000 */
    uint64_t total_mem;  /* bytes */
} msac_device_info;

/* Loads libcuda, initialises it and opens device `ordinal`. Fails with
 * MSAC_ERR_NO_DRIVER / MSAC_ERR_NO_DEVICE on machines without a GPU. */
msac_status msac_device_open(int ordinal, msac_device **out_device);
void msac_device_get_info(const msac_device *dev, msac_device_info *out_info);
void msac_device_close(msac_device *dev);

/* ---- sessions ---- */
typedef struct msac_session msac_session;

typedef struct msac_session_options {
    int max_batch;            /* sequences served at once (default 1) */
    int max_seq;              /* most tokens per prefill call per sequence (default 2048) */
    int max_ctx;              /* longest context a sequence may reach (default 4096) */
    const msac_weights *weights; /* checkpoint, or NULL for the seeded init */
    uint64_t seed;            /* seed of the init when weights is NULL (default 0) */
    int use_graphs;           /* capture decode steps as CUDA graphs (default 1) */
} msac_session_options;

void msac_session_options_init(msac_session_options *opts);

/* Allocates device buffers, uploads weights, loads the plan's kernels. */
msac_status msac_session_create(msac_device *dev, const msac_plan *plan, const msac_session_options *opts,
                                msac_session **out_session);
void msac_session_destroy(msac_session *s);

/* Zeroes every recurrent state and cache; positions restart at 0. */
msac_status msac_session_reset(msac_session *s);

/* Runs `seq` tokens per sequence for `batch` sequences (tokens: batch×seq,
 * row-major), continuing from each sequence's current position. Writes the
 * logits of every position (batch×seq×vocab floats) when out_logits is
 * non-NULL. */
msac_status msac_session_prefill(msac_session *s, int batch, int seq, const int32_t *tokens, float *out_logits);

/* One token per sequence (tokens: batch), logits batch×vocab. */
msac_status msac_session_decode(msac_session *s, int batch, const int32_t *tokens, float *out_logits);

/* Copies the output buffer `name` — "logits" or any other graph output the
 * plan has (a state's name works too) — as fp32 into out[0..n): the first n
 * elements, i.e. the rows of the last prefill/decode call in row-major
 * [batch, seq, ...] order (bf16 and i32 values are converted). Fails with
 * MSAC_ERR_INVALID_ARGUMENT for an unknown name, before any call, or when n
 * is more than the buffer holds at the last call's sizes. */
msac_status msac_session_read_output(msac_session *s, const char *name, float *out, size_t n);

/* Current position (tokens consumed) of sequence `row`. */
int64_t msac_session_position(const msac_session *s, int row);

/* Device time of the last prefill/decode call, in milliseconds (CUDA events). */
float msac_session_last_ms(const msac_session *s);

/* Times program "prefill" or "decode" at (batch, seq) (seq must be 1 for
 * decode): `warmup` untimed runs, then `iters` timed runs (iters >= 1).
 *
 * Two timed phases of `iters` runs each. Whole runs: each run alone between
 * two CUDA events, exactly as msac_session_prefill / msac_session_decode
 * issue it (for decode: replayed as the session's CUDA graph for this batch
 * when graphs are enabled); *out_total_ms gets the median. Per launch: each
 * run issued as plain launches with an event before every launch and one
 * after the last, behind a short spin kernel that holds the stream while the
 * run is enqueued (so a launch's time is its device time, not the host's
 * launch rate); out_launch_ms[j] (an array of msac_plan_program_launches
 * floats, or NULL) gets the median time of launch j. Each mark costs device
 * time too (about 1.3 µs from one mark to the next with nothing between them
 * on an H100), so launches of a few µs read high and the sum of the launch
 * medians can exceed the total; for long launches it is below the total by
 * the gaps between launches.
 *
 * Inputs: the tokens currently in the session's token buffer are reused
 * (call prefill/decode once before, or the tokens are zero); every sequence
 * runs at position 0 and the session's positions are not advanced.
 * Recurrent state IS modified: call msac_session_reset afterwards before
 * real use. MSAC_ERR_INVALID_ARGUMENT for a NULL session, program or
 * out_total_ms, an unknown program name, sizes outside the session's limits
 * (seq above max_ctx too), seq != 1 for decode, warmup < 0 or iters < 1;
 * MSAC_ERR_UNSUPPORTED when the plan has no such program. */
msac_status msac_session_bench(msac_session *s, const char *program, int batch, int seq, int warmup, int iters,
                               float *out_launch_ms, float *out_total_ms);

#ifdef __cplusplus
}
#endif
#endif
