/* msac/runtime.h — the msac runtime: load a compiled plan (.msac), bind
 * weights, and run prefill and decode steps on an NVIDIA GPU.
 *
 * Building against it: `cc app.c $(pkg-config --cflags --libs msacrt)`
 * (examples/embed.c is a complete program). The runtime links against
 * libc, libdl and libm only: the CUDA driver (libcuda.so.1) is loaded with
 * dlopen when a device is opened, so a program using this library starts
 * and reports cleanly on a machine without a GPU.
 *
 * A typical program:
 *     msac_plan_load        the compiled plan (msac compile MODEL.yaml -o PLAN)
 *     msac_device_open      GPU 0 (MSAC_ERR_NO_DRIVER / _NO_DEVICE without one)
 *     msac_weights_open     a safetensors checkpoint (optional: seeded init otherwise)
 *     msac_session_create   weights uploaded, states and workspace allocated
 *     msac_session_prefill  the prompt (or msac_session_prefill_ragged for
 *                           prompts of different lengths), then
 *     msac_session_decode   one token per sequence per step
 * (or msac_session_generate: prefill, sampling on the GPU, decode steps,
 * stop tokens and max tokens in one call; docs/sampling.md)
 * and the matching _destroy / _close / _free calls in reverse order.
 *
 * Errors. Every call that can fail returns an msac_status: NULL means
 * success; otherwise it is a heap object carrying a code (msac_code) and a
 * readable message, which the caller owns and frees with msac_status_free().
 * No call aborts on a user error (bad file, bad plan, no GPU, out of
 * memory). The codes each call can return are listed with the call; any
 * call that allocates host memory can also return MSAC_ERR_OUT_OF_MEMORY,
 * and any call that talks to the GPU can return MSAC_ERR_CUDA (the message
 * names the driver call and its CUresult). Calls that return int use 0 for
 * success and -1 for an index out of range or a NULL plan.
 *
 * Ownership. Objects are created by *_load / *_open / *_create and freed by
 * the matching *_free / *_close / *_destroy, each of which accepts NULL. A
 * session keeps a reference to its device and plan: free those only after
 * the session is destroyed. A checkpoint (msac_weights) is only read while
 * msac_session_create runs and may be closed right after. Strings and
 * arrays returned by the info accessors belong to the plan and stay valid
 * until msac_plan_free. Caller buffers (tokens, logits) are only used
 * during the call. Out-parameters are named out_* and written only on
 * success.
 *
 * Thread safety. Statuses are independent heap objects. msac_plan and
 * msac_weights are immutable once loaded and may be used from any number
 * of threads at once. An msac_device may be shared: sessions on the same
 * device may be created, used and destroyed from different threads
 * concurrently (each call makes the device's context current on the
 * calling thread). An msac_session must be used by one thread at a time
 * (external locking if several threads share one); calls on different
 * sessions may run concurrently. Closing a device or freeing a plan while
 * another thread still uses it is the caller's error.
 *
 * Calls are synchronous: when prefill / decode / read_output return, the
 * GPU work is finished and the host buffers are written. */
#ifndef MSAC_RUNTIME_H
#define MSAC_RUNTIME_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- status ---- */
/* The values are stable (part of the ABI; bindings may hard-code them). */
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
const char *msac_status_message(msac_status st);     /* "" for NULL; owned by st, valid until it is freed */
void msac_status_free(msac_status st);               /* NULL is fine */
const char *msac_code_name(msac_code code);          /* "MSAC_ERR_BAD_PLAN" etc.; static; "MSAC_ERR_UNKNOWN" otherwise */

/* ---- plans ---- */
typedef struct msac_plan msac_plan;

/* Reads and validates a plan file: magic, format version, checksum and
 * every index and size inside it are checked before the plan is returned.
 * The plan is owned by the caller (msac_plan_free).
 * Errors: MSAC_ERR_INVALID_ARGUMENT (NULL path or out_plan), MSAC_ERR_IO
 * (cannot open or read, not a regular file), MSAC_ERR_BAD_PLAN (truncated,
 * corrupt, wrong magic, format version or checksum, a bad index or size;
 * the message starts with the path), MSAC_ERR_OUT_OF_MEMORY. */
msac_status msac_plan_load(const char *path, msac_plan **out_plan);
/* The same from `size` bytes at `data` (copied: data may be freed after the
 * call). Errors as msac_plan_load, without MSAC_ERR_IO. */
msac_status msac_plan_load_memory(const void *data, size_t size, msac_plan **out_plan);
/* Frees a plan; every session made from it must be destroyed first. */
void msac_plan_free(msac_plan *plan);

/* The accessors below never fail and never allocate. A NULL plan gives -1
 * or NULL where an int or a pointer is returned; msac_plan_get_info needs a
 * plan. */

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

/* Bytes of device memory msac_session_create allocates for these limits
 * (the session options of the same names), exactly: weights + states +
 * inputs and outputs + the workspace arena, each 256-byte aligned, in one
 * allocation. Call it before creating a session to see whether it fits
 * (`msac info --memory BATCH CTX PLAN` prints it with a breakdown).
 * Errors: MSAC_ERR_INVALID_ARGUMENT (NULL plan or out_bytes, a limit
 * below 1), MSAC_ERR_BAD_PLAN (a buffer size negative or overflowing at
 * these limits), MSAC_ERR_OUT_OF_MEMORY (more than 2^64 bytes). */
msac_status msac_plan_memory_required(const msac_plan *plan, int max_batch, int max_seq, int max_ctx,
                                      uint64_t *out_bytes);

/* Where msac_plan_memory_required's bytes go, at the same limits. */
typedef struct msac_memory_info {
    uint64_t weights;   /* device copies of the weights (independent of the limits) */
    uint64_t states;    /* per-sequence states and caches, at max_batch (and max_ctx) */
    uint64_t inputs;    /* tokens and positions, at max_batch × max_seq */
    uint64_t outputs;   /* logits and other outputs, at max_batch × max_seq */
    uint64_t workspace; /* the workspace arena: intermediates of the largest call, at max_batch × max_seq */
    uint64_t padding;   /* alignment between the regions */
    uint64_t total;     /* the sum: what msac_plan_memory_required returns */
    uint64_t per_sequence_states; /* states / max_batch: what each more sequence adds to states */
} msac_memory_info;

/* The breakdown of msac_plan_memory_required. Errors as that call. */
msac_status msac_plan_memory_info(const msac_plan *plan, int max_batch, int max_seq, int max_ctx,
                                  msac_memory_info *out_info);

/* ---- weights ---- */
typedef struct msac_weights msac_weights;

/* Opens a safetensors checkpoint: the file is memory-mapped and its header
 * checked (every tensor's dtype, shape and byte range); tensor data is read
 * when a session is created from it. Owned by the caller
 * (msac_weights_close), which may close it as soon as the sessions that use
 * it have been created.
 * Errors: MSAC_ERR_INVALID_ARGUMENT (NULL path or out_weights), MSAC_ERR_IO
 * (cannot open, read or map), MSAC_ERR_BAD_WEIGHTS (not a safetensors file:
 * truncated, malformed header JSON, a bad shape, a byte range outside the
 * file or not matching dtype × shape, a name twice),
 * MSAC_ERR_OUT_OF_MEMORY. Tensor dtypes are checked when read: F32, BF16
 * and F16 are accepted. */
msac_status msac_weights_open(const char *path, msac_weights **out_weights);
void msac_weights_close(msac_weights *w);

/* Host values of weight `index` as fp32 (bf16 weights are the exact bf16
 * values): from the checkpoint when `w` is non-NULL (the tensor is checked
 * for presence, shape and dtype), else from the seeded init. `out` holds the
 * weight's element count. This is what the device receives too.
 * Errors: MSAC_ERR_INVALID_ARGUMENT (NULL plan or out, index out of range),
 * MSAC_ERR_BAD_WEIGHTS (tensor missing from the checkpoint, wrong shape, a
 * dtype other than F32 / BF16 / F16), MSAC_ERR_UNSUPPORTED (a plan weight
 * dtype other than f32 / bf16). */
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

/* Loads libcuda (dlopen, never unloaded), initialises it and retains the
 * primary context of device `ordinal`. Owned by the caller
 * (msac_device_close, after every session on it is destroyed). Opening the
 * same ordinal twice gives two handles on the same context.
 * Errors: MSAC_ERR_INVALID_ARGUMENT (NULL out_device), MSAC_ERR_NO_DRIVER
 * (libcuda.so.1 not found, lacking an entry point the runtime needs, the
 * toolkit's stub library, or cuInit failing for another reason; the
 * message says which), MSAC_ERR_NO_DEVICE (cuInit finds no device, or
 * `ordinal` is not below the device count), MSAC_ERR_CUDA. */
msac_status msac_device_open(int ordinal, msac_device **out_device);
/* Name, compute capability, SMs, driver version, memory (dev non-NULL). */
void msac_device_get_info(const msac_device *dev, msac_device_info *out_info);
/* Whether the plan's schedules were tuned for this GPU: msac compile with a
 * tuning cache records "tuned_for" = "NAME/SMs/driver" in the plan. 1: tuned
 * for this device (name, SM count and driver equal); 0: tuned for another
 * one (the plan runs, at that GPU's best schedules: re-run msac tune here and
 * recompile); -1: not tuned (lower.c's heuristics), or a NULL argument. */
int msac_plan_tuned_for(const msac_plan *plan, const msac_device *dev);
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
    /* Copy the weights device-to-device from this live session instead of
     * uploading them (it is only read, during msac_session_create): same
     * msac_device handle, and a plan whose weight table is identical
     * (names, dtypes, shapes; e.g. another compile of the same model, as
     * msac tune makes). Overrides weights and seed. NULL (default): upload. */
    const struct msac_session *weights_from;
} msac_session_options;

/* Fills *opts with the defaults above. */
void msac_session_options_init(msac_session_options *opts);

/* A session: one plan on one device, with its own device memory (weights,
 * per-sequence states, I/O, workspace: msac_plan_memory_required bytes in
 * one allocation), stream and positions. Rows 0..max_batch-1 are
 * independent sequences; a call with batch b uses rows 0..b-1.
 *
 * Creates it: checks the plan's target against the device, loads every
 * kernel's PTX, allocates and zeroes the device memory, uploads the weights
 * (opts->weights or the seeded init; opts NULL = defaults). Owned by the
 * caller (msac_session_destroy). On failure nothing is left allocated.
 * Errors: MSAC_ERR_INVALID_ARGUMENT (NULL dev, plan or out_session, a limit
 * below 1), MSAC_ERR_WRONG_TARGET (the plan was compiled for another GPU:
 * "plan is for sm_90a, device NVIDIA A100 is sm_80"; recompile with
 * --target), MSAC_ERR_BAD_PLAN (no vocab_size, no tokens input or logits
 * output, I/O buffers too small, bad sizes), MSAC_ERR_UNSUPPORTED (an input
 * this runtime cannot bind), MSAC_ERR_OUT_OF_MEMORY (the device allocation
 * failed; the message gives the bytes asked for at these limits and the
 * bytes free: lower max_batch / max_seq / max_ctx), MSAC_ERR_BAD_WEIGHTS
 * (a tensor missing from the checkpoint or of the wrong shape),
 * MSAC_ERR_INVALID_ARGUMENT also for a weights_from session on another
 * device handle or with another weight table (the message names the first
 * weight that differs), MSAC_ERR_CUDA (e.g. the PTX does not load: the
 * message has the JIT log). */
msac_status msac_session_create(msac_device *dev, const msac_plan *plan, const msac_session_options *opts,
                                msac_session **out_session);
/* Waits for the session's work, releases its device memory, graphs,
 * modules and stream. NULL is fine. */
void msac_session_destroy(msac_session *s);

/* Zeroes every recurrent state and cache; positions restart at 0.
 * Errors: MSAC_ERR_INVALID_ARGUMENT (NULL s), MSAC_ERR_CUDA. */
msac_status msac_session_reset(msac_session *s);

/* Runs `seq` tokens per sequence for `batch` sequences (tokens: batch×seq,
 * row-major), continuing from each sequence's current position. Writes the
 * logits of every position (batch×seq×vocab floats) when out_logits is
 * non-NULL. Every sequence takes the same number of tokens: for prompts of
 * different lengths use msac_session_prefill_ragged.
 * Errors: MSAC_ERR_INVALID_ARGUMENT (NULL s or tokens, batch outside
 * 1..max_batch, seq outside 1..max_seq, a token outside [0, vocab), a
 * sequence that would pass max_ctx; nothing runs and no position moves),
 * MSAC_ERR_UNSUPPORTED (the plan has no prefill program), MSAC_ERR_BAD_PLAN
 * (a launch's grid or argument out of range at these sizes), MSAC_ERR_CUDA
 * (a launch or copy failed: reset or destroy the session). */
msac_status msac_session_prefill(msac_session *s, int batch, int seq, const int32_t *tokens, float *out_logits);

/* Prefills `batch` sequences of different lengths in one call: sequence r
 * (session row r) takes lengths[r] >= 0 tokens from its own current
 * position. `tokens` holds the sequences back to back (sum of lengths
 * int32 values: lengths[0] tokens of row 0, then lengths[1] of row 1, ...),
 * so it is one flat array (ctypes: (c_int * batch), (c_int32 * total)).
 * A length may exceed max_seq (up to max_ctx minus the row's position); a
 * length of 0 leaves the row untouched. out_last_logits (batch×vocab
 * floats, or NULL) gets, per sequence, the logits of its last token; rows
 * of length 0 are not written. Results equal separate prefills of each
 * sequence. All lengths 0 is a valid call that does nothing.
 *
 * Cost: the plan's kernels take one length for every row of a call, so
 * this runs several ordinary prefill calls (fused variable-length kernels
 * are later work). Each call takes a contiguous range of unfinished rows
 * for the fewest tokens any of them has left (at most max_seq): the first
 * one runs the shared part of all the lengths at full width, the rest
 * finish the longer sequences on fewer rows. With every length <= max_seq
 * there are at most `batch` calls (one per distinct end when the rows are
 * sorted by length); each is synchronised before the next. Prefer sorting
 * rows by length and batching equal lengths with msac_session_prefill.
 * msac_session_last_ms is the sum of the calls' device times. Afterwards
 * msac_session_read_output refuses outputs (each call overwrote them;
 * states are readable) until the next prefill or decode.
 * Errors: MSAC_ERR_INVALID_ARGUMENT (NULL s or lengths, tokens NULL with a
 * length > 0, batch outside 1..max_batch, a negative length, a token
 * outside [0, vocab), a sequence that would pass max_ctx; checked before
 * anything runs), MSAC_ERR_UNSUPPORTED (no prefill program, or a plan whose
 * states are not laid out per sequence), MSAC_ERR_BAD_PLAN, MSAC_ERR_CUDA.
 * After a CUDA error, rows whose calls completed have advanced (see
 * msac_session_position); reset the session before reusing it. */
msac_status msac_session_prefill_ragged(msac_session *s, int batch, const int *lengths, const int32_t *tokens,
                                        float *out_last_logits);

/* One token per sequence (tokens: batch), logits batch×vocab, each row
 * from its own position (rows may be at different positions, e.g. after a
 * ragged prefill). Decode steps run as CUDA graphs when use_graphs is set
 * (the default): the first step at each batch size captures the plan's
 * decode launches into a graph, later steps at that size replay it with
 * one cuGraphLaunch; if the driver refuses capture, that size runs as plain
 * launches (same results).
 * Errors: as msac_session_prefill (seq is 1; MSAC_ERR_UNSUPPORTED when the
 * plan has no decode program). */
msac_status msac_session_decode(msac_session *s, int batch, const int32_t *tokens, float *out_logits);

/* Copies the output buffer `name` — "logits" or any other graph output the
 * plan has (a state's name works too) — as fp32 into out[0..n): the first n
 * elements, i.e. the rows of the last prefill/decode call in row-major
 * [batch, seq, ...] order (bf16 and i32 values are converted); for a state,
 * rows 0..max_batch-1. Fails with MSAC_ERR_INVALID_ARGUMENT for a NULL
 * argument, an unknown name, before any call, for an output after a ragged
 * prefill, or when n is more than the buffer holds at the last call's
 * sizes; MSAC_ERR_CUDA when the copy fails. */
msac_status msac_session_read_output(msac_session *s, const char *name, float *out, size_t n);

/* Current position (tokens consumed) of sequence `row`; -1 for a NULL
 * session or a row outside 0..max_batch-1. */
int64_t msac_session_position(const msac_session *s, int row);

/* Device time of the last prefill/decode call, in milliseconds (CUDA
 * events); 0 for NULL or before any call. */
float msac_session_last_ms(const msac_session *s);

/* The plan program a call runs: for "decode" at `batch`, the "decode@N"
 * variant with the largest N <= batch when the plan has any (compiled from a
 * tuning cache with several decode batch classes), else "decode"; for
 * "prefill", "prefill". NULL for a NULL session, another name, a batch
 * outside 1..max_batch or a plan without that program. Owned by the plan. */
const char *msac_session_program_for(const msac_session *s, const char *program, int batch);

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

/* The same with every sequence at `position` instead of 0 (position + seq <=
 * max_ctx): what a decode step at a long context costs — attention over
 * position+1 cached rows, whatever they hold. */
msac_status msac_session_bench_at(msac_session *s, const char *program, int batch, int seq, int position, int warmup,
                                  int iters, float *out_launch_ms, float *out_total_ms);

/* Fills the session's per-token caches (every state whose size grows with
 * the context: attention k/v and latent caches, indexer key caches) with
 * pseudo-random values uniform in [-1, 1), the same for the same seed;
 * recurrent states (SSM and conv states) are left as they are. For timing
 * a decode step at a long context on rows that differ: in a zeroed cache
 * every indexer score ties, so top-k selects the first rows. The contents
 * are not a valid context for any prompt: msac_session_reset before real
 * use. MSAC_ERR_INVALID_ARGUMENT for a NULL session; MSAC_ERR_OUT_OF_MEMORY
 * when the 16 MB host or device staging block cannot be allocated. */
msac_status msac_session_fill_caches(msac_session *s, uint64_t seed);

/* ---- sampling and generation ----
 *
 * The sampler (docs/sampling.md defines it exactly): per sequence, logits
 * of the vocabulary → temperature → top-k → top-p → one token drawn with a
 * counter-based RNG (Philox4x32-10) keyed by (seed, stream, step), where
 * step is the position the new token takes in its sequence (the tokens the
 * sequence has consumed when it is drawn). Every weight and sum is an exact
 * integer, so the GPU kernel (in every plan msac compile writes, program
 * "sample") and msac_sample_cpu below pick the same token from the same
 * logits, bit for bit. */
typedef struct msac_sampling {
    float temperature; /* >= 0 and finite; 0 = greedy: the highest logit, ties to the lower token id */
    int32_t top_k;     /* >= 0; keep the k highest logits (ties to the lower id); 0 = no cut */
    float top_p;       /* in (0, 1]: keep the fewest highest-probability tokens whose mass reaches p; 1 = no cut */
    uint64_t seed;     /* RNG key */
    uint64_t stream;   /* RNG stream: the sequence's index (msac run uses the prompt's index) */
} msac_sampling;

/* Fills *p with greedy decoding: temperature 0, top_k 0, top_p 1, seed 0, stream 0. */
void msac_sampling_init(msac_sampling *p);

/* NULL when *p is valid; else MSAC_ERR_INVALID_ARGUMENT with a message
 * naming the field ("temperature -1 is negative ..."). */
msac_status msac_sampling_check(const msac_sampling *p);

/* The CPU sampler: the token that `p` picks from logits[0..vocab) at `step`
 * into *out_token. The reference the GPU kernel is tested against; msac run
 * --device cpu uses it. Errors: MSAC_ERR_INVALID_ARGUMENT (NULL argument,
 * vocab outside 1..2^31-1, parameters that msac_sampling_check refuses),
 * MSAC_ERR_OUT_OF_MEMORY. */
msac_status msac_sample_cpu(const float *logits, int64_t vocab, const msac_sampling *p, uint64_t step,
                            int32_t *out_token);

/* Philox4x32-10 (Salmon et al., SC'11; Random123's philox4x32 with 10
 * rounds): out = philox(counter ctr, key key). The sampler's RNG. */
void msac_philox4x32_10(const uint32_t ctr[4], const uint32_t key[2], uint32_t out[4]);

/* Decode step + sampling on the GPU: as msac_session_decode (tokens: batch,
 * one per sequence), then the plan's "sample" kernel draws one token per
 * sequence from its logits with params[r] (an array of `batch`, one per
 * sequence) at step = the sequence's position after the call; only the
 * `batch` tokens are copied back, into out_tokens. Runs right after the
 * decode step (its CUDA graph when graphs are on). Errors: as
 * msac_session_decode; MSAC_ERR_INVALID_ARGUMENT also for NULL params or
 * out_tokens or a parameter msac_sampling_check refuses (the message names
 * the sequence; nothing runs); MSAC_ERR_UNSUPPORTED for a plan without a
 * "sample" program (compiled before sampling existed: recompile). */
msac_status msac_session_decode_sample(msac_session *s, int batch, const int32_t *tokens, const msac_sampling *params,
                                       int32_t *out_tokens);

/* A ragged prefill (as msac_session_prefill_ragged) followed by sampling on
 * the GPU: out_tokens[r] is the token drawn from the logits of sequence r's
 * last prompt token with params[r], at step = its position after the call;
 * -1 for a sequence of length 0. Errors: as msac_session_prefill_ragged and
 * msac_session_decode_sample. */
msac_status msac_session_prefill_sample(msac_session *s, int batch, const int *lengths, const int32_t *tokens,
                                        const msac_sampling *params, int32_t *out_tokens);

typedef struct msac_generate_options {
    int max_new_tokens;          /* >= 1: the most tokens generated per sequence (default 16) */
    const int32_t *stop_tokens;  /* [num_stop] token ids that end a sequence (NULL when num_stop is 0) */
    int num_stop;                /* >= 0 (default 0) */
} msac_generate_options;

/* Fills *o with the defaults above. */
void msac_generate_options_init(msac_generate_options *o);

typedef struct msac_generate_stats {
    double prefill_ms;  /* host wall time of the prefill + first sampling */
    double decode_ms;   /* host wall time of the decode steps */
    int decode_steps;   /* batched decode steps run */
} msac_generate_stats;

/* Generation for `batch` prompts of different lengths (lengths[r] >= 1
 * tokens of sequence r, back to back in `prompts`, as for
 * msac_session_prefill_ragged), each continuing from its row's position:
 * a ragged prefill with sampling, then batched decode steps with sampling
 * (both on the GPU, params[r] per sequence), until every sequence has
 * max_new_tokens tokens or has produced a stop token (which is kept as its
 * last token). A stopped sequence produces no more tokens while the batch
 * goes on for the others: each step decodes rows 0..(the last unfinished
 * row), so a stopped row below it is still fed (its last token) and its
 * position moves; its outputs are dropped. out_tokens (batch ×
 * max_new_tokens, row-major) gets sequence r's tokens in its first
 * out_counts[r] entries (the rest are set to -1); out_stats may be NULL.
 * Errors: MSAC_ERR_INVALID_ARGUMENT (NULL s, lengths, prompts, params,
 * opts, out_tokens or out_counts; batch outside 1..max_batch; a length
 * below 1; max_new_tokens < 1; num_stop < 0 or stop tokens NULL with
 * num_stop > 0; a stop token or prompt token outside the vocabulary; bad
 * sampling parameters; a sequence whose prompt plus max_new_tokens - 1
 * would pass max_ctx), MSAC_ERR_UNSUPPORTED (no prefill, decode or sample
 * program), and the errors of the calls it makes. */
msac_status msac_session_generate(msac_session *s, int batch, const int *lengths, const int32_t *prompts,
                                  const msac_sampling *params, const msac_generate_options *opts,
                                  int32_t *out_tokens, int *out_counts, msac_generate_stats *out_stats);

#ifdef __cplusplus
}
#endif
#endif
