/* test_gpu_mamba2.c — the Mamba2 path on the GPU against the CPU reference.
 *
 * Every kernel is checked through the values it produces inside a real
 * model (each is made a graph output, so it gets a buffer of its own):
 * embed, rmsnorm, the in_proj GEMM, the fused mixer (scan + norm + conv
 * ring), the out_proj GEMM with its residual epilogue, the LM head — on
 * shapes where seq is not a multiple of the scan chunk or the GEMM tile.
 *
 * Error bounds (normalised: ||gpu - ref|| / ||ref||): the GPU and the
 * reference store bf16 at the same points, so the difference comes from
 * fp32 summation order and the rounding flips it causes downstream:
 *   embed: exact (a copy);  bf16 values: 1e-2;  mixer output, logits: 2e-2.
 *
 * The tensor-core scan splits sequences into segments (k_mamba2_seg.c): the
 * default (segs 0) picks the count per call from batch·heads, so the small
 * shapes here already run several segments; the seg_* tests fix the count
 * with a schedule override (1 = the single-walk scan, 2..16) and check
 * prefill, prefill in pieces, ragged prefill and decode after each; stages1
 * does the same with one stage of staged rows (stages=1), which the small
 * shapes here never get by default (lower.c gives it to more than 66 heads). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "compile.h"
#include "gpu_common.h"
#include "kernel_memo.h"
#include "schedule.h"
#include "tune_cache.h"
#include "tune_space.h"

static const char *const tiny_yaml =
    "name: tiny\nvocab_size: 256\nd_model: 64\ntie_embeddings: false\n"
    "mamba2: {d_state: 16, headdim: 16, expand: 2, ngroups: 2, d_conv: 4, chunk_size: 16}\n"
    "layers:\n  - kind: mamba2\n    repeat: 2\n";

static const char *const values[] = {"x0", "l0.h", "l0.zxbcdt", "l0.g", "l0.res", "l1.g", "l1.res", "logits", NULL};
static const double bounds[] = {1e-7, 1e-2, 1e-2, 2e-2, 1e-2, 2e-2, 1e-2, 2e-2};

/* Prefill, then decode steps: every value against the CPU (gpu_common). */
static void run_prefill_decode(const char *yaml, const char *target, int batch, int seq, int steps)
{
    expect_prefill_decode(yaml, target, values, bounds, batch, seq, steps);
}

/* A session of up to `hi` sequences runs program `phi` at batch hi and
 * `plo` at batch lo; prefill (seq tokens) and two decode steps at each
 * batch against the CPU. */
static void expect_decode_programs(const char *yaml, int seq, int lo, const char *plo, int hi, const char *phi)
{
    GpuModel m;
    gpu_model_open(&m, yaml, NULL, hi, 8, 16, NULL);
    assert_string_equal(msac_session_program_for(m.sess, "decode", lo), plo);
    assert_string_equal(msac_session_program_for(m.sess, "decode", hi), phi);
    gpu_model_close(&m);
    run_prefill_decode(yaml, NULL, lo, seq, 2);
    run_prefill_decode(yaml, NULL, hi, seq, 2);
}

/* The decode kernels' keys (gemv, mamba2_step), distinct. */
typedef struct DecodeKeys {
    int n;            /* keys */
    char key[16][17]; /* kernel_key_hash */
    char kernel[16][16]; /* template */
} DecodeKeys;

static void collect_decode_keys(void *user, const char *program, Graph *g)
{
    DecodeKeys *k = user;
    if (strcmp(program, "decode"))
        return;
    for (int i = 0; i < g->nnodes; i++) {
        const char *t = node_str(g->nodes[i], "kernel", "");
        if (strcmp(t, "gemv") && strcmp(t, "mamba2_step"))
            continue;
        char h[17];
        kernel_key_hash(g->nodes[i], h);
        bool seen = false;
        for (int j = 0; j < k->n; j++)
            seen |= !strcmp(k->key[j], h);
        if (!seen && k->n < 16) {
            strcpy(k->key[k->n], h);
            snprintf(k->kernel[k->n++], sizeof k->kernel[0], "%s", t);
        }
    }
}

/* Per-batch decode programs on the GPU: a tuning cache with decode entries
 * at batch 1 and 4 (other gemv and mamba2_step schedules than the defaults)
 * gives a plan with "decode" and "decode@2"; decode at batch 1 and at
 * batch 4 (which runs decode@2) against the CPU reference. */
static void decode_variants(void **state)
{
    (void)state;
    DecodeKeys k = {0};
    CompileOptions o;
    compile_options_init(&o);
    o.tweak = collect_decode_keys;
    o.tweak_user = &k;
    Plan *p = NULL;
    Diag d = {0};
    if (!msac_compile(tiny_yaml, "tiny.yaml", &o, &p, &d))
        fail_msg("%s", d.msg);
    plan_free(p);
    assert_true(k.n >= 3);
    TuneDevice dev = {"any GPU", 1, 1};
    TuneCache c = {0};
    for (int i = 0; i < k.n; i++)
        for (int b = 0; b < 2; b++) {
            bool gemv = !strcmp(k.kernel[i], "gemv");
            TuneEntry e = {.dev = dev, .msac = MSAC_VERSION, .target = "sm_90a", .program = "decode",
                           .batch = b ? 4 : 1, .seq = 1, .ctx = 64, .best_us = 1, .default_us = 1, .tried = 1};
            snprintf(e.kernel, sizeof e.kernel, "%s", k.kernel[i]);
            snprintf(e.key, sizeof e.key, "%s", k.key[i]);
            snprintf(e.schedule, sizeof e.schedule, "%s",
                     gemv ? (b ? "wn=4,wk=1" : "wn=2,wk=2") : (b ? "psplit=2" : "psplit=1"));
            tune_cache_put(&c, &e);
        }
    compile_options_init(&o);
    o.tuning = &c;
    o.tune_device = &dev;
    gpu_set_compile_options(&o);
    expect_decode_programs(tiny_yaml, 20, 1, "decode", 4, "decode@2");
    gpu_set_compile_options(NULL);
    tune_cache_free(&c);
}

/* The default decode@33 program (gemvs lowered for many rows, passes.h):
 * d_model 256 and a vocabulary of 4096 make in_proj, out_proj and the LM
 * head wider there; decode at batch 40 runs it, at batch 4 the base
 * program; both against the CPU reference. */
static void wide_decode_program(void **state)
{
    (void)state;
    static const char *const yaml = "name: wide\nvocab_size: 4096\nd_model: 256\ntie_embeddings: false\n"
                                    "mamba2: {d_state: 16, headdim: 32, expand: 2, ngroups: 1, chunk_size: 16}\n"
                                    "layers:\n  - kind: mamba2\n    repeat: 2\n";
    expect_decode_programs(yaml, 6, 4, "decode", 40, "decode@33");
}

static void tiny_ragged(void **state)
{
    (void)state;
    run_prefill_decode(tiny_yaml, NULL, 2, 37, 5); /* 37: not a multiple of 16 (chunk) or 128 (tile) */
}

static void tiny_long(void **state)
{
    (void)state;
    run_prefill_decode(tiny_yaml, NULL, 3, 301, 2); /* 19 scan chunks, 3 GEMM row tiles */
}

static void tiny_sm80_plan(void **state)
{
    (void)state;
    run_prefill_decode(tiny_yaml, "sm_80", 1, 50, 2); /* the sm_80 PTX, JIT-compiled for this GPU */
}

static void norm_before_gate_one_group(void **state)
{
    (void)state;
    run_prefill_decode("name: nbg\nvocab_size: 300\nd_model: 96\ntie_embeddings: true\n"
                       "mamba2: {d_state: 32, headdim: 32, expand: 2, ngroups: 1, chunk_size: 64, "
                       "norm_before_gate: true}\nlayers:\n  - kind: mamba2\n    repeat: 2\n",
                       NULL, 2, 70, 3);
}

static void odd_sizes(void **state)
{
    (void)state;
    /* d_inner 80, 5 heads: in_proj N = 197 (odd), K = 40 (not a multiple of the 32-wide K tile) */
    run_prefill_decode("name: odd\nvocab_size: 1001\nd_model: 40\n"
                       "mamba2: {d_state: 16, headdim: 16, chunk_size: 8}\nlayers:\n  - kind: mamba2\n"
                       "    repeat: 2\n",
                       NULL, 2, 33, 3);
}

/* The tensor-core scan's shapes: headdim 64 and 128, d_state 64, two groups,
 * 4-byte-aligned zxbcdt rows (4 heads), sequences that end mid-chunk. */
static void tc_scan_shapes(void **state)
{
    (void)state;
    run_prefill_decode("name: tc64\nvocab_size: 512\nd_model: 128\ntie_embeddings: false\n"
                       "mamba2: {d_state: 64, headdim: 64, expand: 2, ngroups: 2, chunk_size: 64}\n"
                       "layers:\n  - kind: mamba2\n    repeat: 2\n",
                       NULL, 2, 150, 3);
    run_prefill_decode("name: tc128\nvocab_size: 512\nd_model: 128\n"
                       "mamba2: {d_state: 64, headdim: 128, expand: 2, ngroups: 1, chunk_size: 256}\n"
                       "layers:\n  - kind: mamba2\n    repeat: 2\n",
                       NULL, 3, 77, 2);
}

/* Tensor-core scan shapes for the segment tests: headdim 64 with d_state 128
 * (the benchmark's head), and headdim 128 with d_state 64 in two groups. */
static const char *const seg_yaml[2] = {
    "name: seg64\nvocab_size: 512\nd_model: 128\ntie_embeddings: false\n"
    "mamba2: {d_state: 128, headdim: 64, expand: 2, ngroups: 1, chunk_size: 256}\n"
    "layers:\n  - kind: mamba2\n    repeat: 2\n",
    "name: seg128\nvocab_size: 512\nd_model: 128\n"
    "mamba2: {d_state: 64, headdim: 128, expand: 2, ngroups: 2, chunk_size: 64}\n"
    "layers:\n  - kind: mamba2\n    repeat: 2\n",
};

/* Compile options with a mamba2_scan schedule `spec` ("segs=4,stages=1"; kept
 * alive until use_scan(NULL)); the kernels are memoised across these compiles. */
static void use_scan(const char *spec)
{
    static CompileOptions o;
    static ScheduleSet s;
    static KernelMemo *memo;
    if (!spec) {
        gpu_set_compile_options(NULL);
        kernel_memo_free(memo);
        memo = NULL;
        return;
    }
    if (!memo)
        memo = kernel_memo_new();
    compile_options_init(&o);
    o.memo = memo;
    memset(&s, 0, sizeof s);
    char full[96];
    snprintf(full, sizeof full, "mamba2_scan:%s", spec);
    Diag d = {0};
    if (!schedule_parse(&s, full, &d))
        fail_msg("%s", d.msg);
    o.schedule = &s;
    gpu_set_compile_options(&o);
}

/* The segments per sequence fixed (use_segs(-1): back to the defaults). */
static void use_segs(int segs)
{
    char spec[32];
    snprintf(spec, sizeof spec, "segs=%d", segs);
    use_scan(segs < 0 ? NULL : spec);
}

/* Whether the plan has the segment-state launch (segs != 1) and its scans carry
 * "_s<segs>", and "_st1" exactly when they have one stage. */
static void expect_seg_kernels(const GpuModel *m, int segs, int stages)
{
    msac_plan_info pi;
    msac_plan_get_info(m->plan, &pi);
    char want[16];
    snprintf(want, sizeof want, "_s%d%s", segs, stages == 1 ? "_st1" : "");
    int seg_state = 0, scans = 0;
    for (int i = 0; i < pi.num_kernels; i++) {
        msac_kernel_info k;
        assert_int_equal(msac_plan_kernel_info(m->plan, i, &k), 0);
        seg_state += !strncmp(k.name, "mamba2_seg_state", 16);
        if (!strncmp(k.name, "mamba2_scan_tc", 14)) {
            scans++;
            assert_non_null(strstr(k.name, want));
            assert_int_equal(strstr(k.name, "_st1") != NULL, stages == 1);
        }
    }
    assert_true(scans > 0);
    assert_int_equal(seg_state > 0, segs != 1);
}

/* Prefill then decode against the CPU with a fixed segment count: 300
 * tokens are 5 chunks (the last of 44), split 1+1+1+2 by 4 segments, one
 * chunk each by 16 (clamped to 5); 64 tokens are one chunk (one segment). */
static void seg_prefill_decode(void **state)
{
    (void)state;
    static const int segs[] = {1, 2, 4, 16};
    for (int y = 0; y < 2; y++)
        for (size_t i = 0; i < sizeof segs / sizeof segs[0]; i++) {
            fprintf(stderr, "%s segs=%d\n", y ? "seg128" : "seg64", segs[i]);
            use_segs(segs[i]);
            GpuModel m;
            gpu_model_open(&m, seg_yaml[y], NULL, 1, 8, 8, NULL);
            expect_seg_kernels(&m, segs[i], 2);
            gpu_model_close(&m);
            run_prefill_decode(seg_yaml[y], NULL, 3, 300, 2);
            if (i == 2)
                run_prefill_decode(seg_yaml[y], NULL, 2, 64, 1);
        }
    use_segs(-1);
}

/* A prefill in three calls (130, 257 and 64 tokens: each call's segments start
 * from the state and conv ring the previous call left), then decode steps,
 * every call against the CPU, which continues from its own positions. */
static void chunked_prefill_with(const char *spec)
{
    enum { B = 2, STEPS = 2 };
    static const int calls[] = {130, 257, 64};
    use_scan(spec);
    GpuModel m;
    gpu_model_open(&m, seg_yaml[0], values, B, 257, 130 + 257 + 64 + STEPS + 1, NULL);
    int32_t tok[B * 257];
    float *ref[16];
    char what[128];
    for (int c = 0; c < 3; c++) {
        fill_tokens(tok, B * calls[c], m.vocab, 50 + (uint64_t)c);
        check_ok(msac_session_prefill(m.sess, B, calls[c], tok, NULL));
        cpu_run(&m, B, calls[c], tok, values, ref);
        snprintf(what, sizeof what, "%s: prefill call %d (%d tokens)", spec, c, calls[c]);
        compare_values(&m, what, B * calls[c], values, bounds, ref);
        for (int i = 0; values[i]; i++)
            free(ref[i]);
    }
    for (int s = 0; s < STEPS; s++) {
        fill_tokens(tok, B, m.vocab, 2000 + (uint64_t)s);
        check_ok(msac_session_decode(m.sess, B, tok, NULL));
        cpu_run(&m, B, 1, tok, values, ref);
        snprintf(what, sizeof what, "%s: decode step %d", spec, s);
        compare_values(&m, what, B, values, bounds, ref);
        for (int i = 0; values[i]; i++)
            free(ref[i]);
    }
    gpu_model_close(&m);
    use_scan(NULL);
}

static void seg_chunked_prefill(void **state)
{
    (void)state;
    chunked_prefill_with("segs=4");
}

/* Ragged prefills (rows of different lengths, one of length 0, calls split
 * by max_seq 200) with 4 segments, then decode steps with every row at its
 * own position: each row's last logits and decode logits against the CPU
 * run on that row alone. */
static void ragged_with(const char *spec)
{
    enum { B = 3, CALLS = 2, STEPS = 2, MAXSEQ = 200 };
    static const int lens[CALLS][B] = {{300, 77, 0}, {65, 190, 129}};
    use_scan(spec);
    GpuModel m;
    gpu_model_open(&m, seg_yaml[0], NULL, B, MAXSEQ, 512, NULL);
    const int64_t V = m.vocab;
    int32_t *tok[CALLS][B];
    float *last[CALLS];
    for (int c = 0; c < CALLS; c++) {
        int total = 0;
        for (int r = 0; r < B; r++) {
            tok[c][r] = malloc(sizeof(int32_t) * (size_t)(lens[c][r] + 1));
            fill_tokens(tok[c][r], lens[c][r], V, 300 + 10 * (uint64_t)c + (uint64_t)r);
            total += lens[c][r];
        }
        int32_t *packed = malloc(sizeof(int32_t) * (size_t)total), *p = packed;
        for (int r = 0; r < B; r++) {
            memcpy(p, tok[c][r], sizeof(int32_t) * (size_t)lens[c][r]);
            p += lens[c][r];
        }
        last[c] = malloc(sizeof(float) * (size_t)(B * V));
        check_ok(msac_session_prefill_ragged(m.sess, B, lens[c], packed, last[c]));
        free(packed);
    }
    int32_t dtok[STEPS][B];
    float *dec[STEPS];
    for (int k = 0; k < STEPS; k++) {
        fill_tokens(dtok[k], B, V, 700 + (uint64_t)k);
        dec[k] = malloc(sizeof(float) * (size_t)(B * V));
        check_ok(msac_session_decode(m.sess, B, dtok[k], dec[k]));
    }
    const char *const logits[] = {"logits", NULL};
    for (int r = 0; r < B; r++) { /* the CPU on row r alone, as batch 1 */
        eval_store_reset_states(m.store);
        m.cpu_pos[0] = 0;
        char label[128];
        float *ref;
        for (int c = 0; c < CALLS; c++) {
            if (!lens[c][r])
                continue;
            cpu_run(&m, 1, lens[c][r], tok[c][r], logits, &ref);
            snprintf(label, sizeof label, "%s ragged: row %d call %d (%d tokens) last logits", spec, r, c, lens[c][r]);
            expect_close(label, last[c] + r * V, ref + (int64_t)(lens[c][r] - 1) * V, V, 2e-2);
            free(ref);
        }
        for (int k = 0; k < STEPS; k++) {
            cpu_run(&m, 1, 1, &dtok[k][r], logits, &ref);
            snprintf(label, sizeof label, "%s ragged: row %d decode step %d", spec, r, k);
            expect_close(label, dec[k] + r * V, ref, V, 2e-2);
            free(ref);
        }
    }
    for (int c = 0; c < CALLS; c++) {
        free(last[c]);
        for (int r = 0; r < B; r++)
            free(tok[c][r]);
    }
    for (int k = 0; k < STEPS; k++)
        free(dec[k]);
    gpu_model_close(&m);
    use_scan(NULL);
}

static void seg_ragged(void **state)
{
    (void)state;
    ragged_with("segs=4");
}

/* The one-stage scan (stages=1: the next chunk's rows fetched into the one
 * stage after their last read, two blocks an SM on sm_90a), on both segment
 * shapes: the single walk and 4 segments (300 tokens: 5 chunks, the last of
 * 44), prefill then decode; 64 tokens (one chunk, nothing to prefetch) and
 * 129 (a chunk of one row); prefill in three calls; ragged rows. */
static void stages1(void **state)
{
    (void)state;
    static const char *const specs[] = {"segs=1,stages=1", "segs=4,stages=1"};
    for (int y = 0; y < 2; y++)
        for (int i = 0; i < 2; i++) {
            fprintf(stderr, "%s %s\n", y ? "seg128" : "seg64", specs[i]);
            use_scan(specs[i]);
            GpuModel m;
            gpu_model_open(&m, seg_yaml[y], NULL, 1, 8, 8, NULL);
            expect_seg_kernels(&m, i ? 4 : 1, 1);
            gpu_model_close(&m);
            run_prefill_decode(seg_yaml[y], NULL, 3, 300, 2);
            run_prefill_decode(seg_yaml[y], NULL, 2, 64, 1);
            run_prefill_decode(seg_yaml[y], NULL, 2, 129, 1);
            use_scan(NULL);
        }
    chunked_prefill_with("segs=1,stages=1");
    chunked_prefill_with("segs=4,stages=1");
    ragged_with("segs=1,stages=1");
    ragged_with("segs=4,stages=1");
}

/* Decode of step t equals prefill at position t (GPU against itself), and a
 * second prefill continues where the first stopped. */
static void decode_equals_prefill(void **state)
{
    (void)state;
    expect_decode_and_split_prefill_match(tiny_yaml);
}

/* The shipped 130M architecture (seeded weights): logits against the CPU. */
static void mamba2_130m(void **state)
{
    (void)state;
    char *yaml = gpu_read_model("mamba2-130m.yaml");
    const char *const out[] = {"l0.g", "l23.res", "logits", NULL};
    GpuModel m;
    gpu_model_open(&m, yaml, out, 1, 67, 80, NULL);
    int32_t tok[67];
    fill_tokens(tok, 67, m.vocab, 3);
    check_ok(msac_session_prefill(m.sess, 1, 67, tok, NULL));
    float *ref[3];
    cpu_run(&m, 1, 67, tok, out, ref);
    double bnd[3] = {2e-2, 2e-2, 3e-2};
    compare_values(&m, "mamba2-130m prefill", 67, out, bnd, ref);
    for (int i = 0; i < 3; i++)
        free(ref[i]);
    gpu_model_close(&m);
    free(yaml);
}

int main(void)
{
    gpu_device(); /* exits 77 without a GPU */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(wide_decode_program), cmocka_unit_test(tiny_ragged),          cmocka_unit_test(tiny_long),
        cmocka_unit_test(decode_variants),      cmocka_unit_test(tiny_sm80_plan),
        cmocka_unit_test(norm_before_gate_one_group),
        cmocka_unit_test(odd_sizes),            cmocka_unit_test(tc_scan_shapes),
        cmocka_unit_test(decode_equals_prefill),
        cmocka_unit_test(seg_prefill_decode),   cmocka_unit_test(seg_chunked_prefill),
        cmocka_unit_test(seg_ragged),           cmocka_unit_test(stages1),
        cmocka_unit_test(mamba2_130m),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
