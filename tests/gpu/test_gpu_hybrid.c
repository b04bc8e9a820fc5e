/* test_gpu_hybrid.c — the scan-informed extras on the GPU against the CPU
 * reference: adaptive top-k and the local window in the indexer's selection
 * (prefill index_topk, decode index_score + index_select), the hybrid layer's
 * gate (hybrid_mix, residual folded in), on ragged sizes; decode steps
 * against the reference and against prefill; the scan-informed-hybrid model
 * at a small size.
 *
 * Selections. Every GPU row must be well formed whatever the scores: strictly
 * ascending, -1 only at the tail, never a future position, and, with a window
 * W, holding every position of [t-W+1, t]. A row whose set differs from the
 * reference's is counted as a boundary when the reference's own scores put it
 * at one (the GPU's scores and softmax sums are fp32 in another order):
 *   - near ties: each position in one set and not the other scores within
 *     1 % of the row's largest |score| of the reference's last pick kept;
 *   - (adaptive) a mass boundary: the running mass just before or at the
 *     cut is within 1e-3 of p (fp64, of the reference's fp32 scores);
 * anything else is an error (bound 0). The values after the selection are
 * compared on the rows selected identically (at most 10 % left out, as in
 * test_gpu_mla.c; 25 % where the indexer is a Mamba2 scan, whose q carries
 * the GPU's bf16 rounding into every score). Bounds: attention outputs and logits 2e-2. Exits 77
 * without a GPU. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "compile.h"
#include "gpu_common.h"
#include "schedule.h"

#define MLA "heads: 2\n  q_lora_rank: 32\n  kv_lora_rank: 64\n  qk_nope_head_dim: 16\n  qk_rope_head_dim: 16\n" \
            "  v_head_dim: 32\n"
enum { CPU_CTX = 4096 }; /* cpu_run's ctx: the scores' row stride */

typedef struct SelCfg {
    int64_t K;         /* top_k */
    int64_t W;         /* window */
    double p;          /* adaptive mass (1: plain) */
    const char *q, *k; /* dot indexer: its q and k values (listed before sel), or NULL */
    double scale;      /* dot indexer: the score scale */
} SelCfg;

typedef struct SelStats {
    int64_t rows, differ, boundary, hard; /* rows checked; of them set differs; explained; not explained */
} SelStats;

static int cmp_pick(const void *a, const void *b) /* {score, index} doubles: score desc, index asc */
{
    const double *x = a, *y = b;
    if (x[0] != y[0])
        return x[0] > y[0] ? -1 : 1;
    return (x[1] > y[1]) - (x[1] < y[1]);
}

/* Checks one GPU row g against the reference row ref (both `width` wide) for
 * query position t; sc: the reference's scores of this query (s <= t).
 * tol: how far the GPU's scores may be from the reference's (0 when the
 * indexer's inputs are the reference's up to rounding inside the layer).
 * Returns whether the sets are equal; counts into st. */
static bool check_row(const float *g, const float *ref, const float *sc, int64_t width, int64_t t, const SelCfg *c,
                      double tol, SelStats *st, const char *label)
{
    st->rows++;
    int64_t valid = 0;
    for (int64_t i = 0; i < width; i++) {
        if (g[i] < 0) {
            if (g[i] != -1)
                fail_msg("%s query %lld: slot %lld holds %g", label, (long long)t, (long long)i, g[i]);
            continue;
        }
        if (valid != i)
            fail_msg("%s query %lld: position %g after a -1 (slot %lld)", label, (long long)t, g[i], (long long)i);
        if (g[i] > (float)t)
            fail_msg("%s query %lld selects position %g, after itself", label, (long long)t, g[i]);
        if (i > 0 && g[i] <= g[i - 1])
            fail_msg("%s query %lld: slots %lld, %lld not ascending (%g, %g)", label, (long long)t, (long long)i - 1,
                     (long long)i, g[i - 1], g[i]);
        valid++;
    }
    for (int64_t s = t - c->W + 1 > 0 ? t - c->W + 1 : 0; s <= t && c->W; s++) {
        bool in = false;
        for (int64_t i = 0; i < valid && !in; i++)
            in = g[i] == (float)s;
        if (!in)
            fail_msg("%s query %lld: window position %lld missing", label, (long long)t, (long long)s);
    }
    if (!memcmp(g, ref, sizeof(float) * (size_t)width))
        return true;
    st->differ++;
    /* where the reference's cut lies, from its scores */
    int64_t n = t + 1, m = n < c->K ? n : c->K, cut = m;
    double *pk = malloc(sizeof(double) * 2 * (size_t)n), big = 0, z = 0, run = 0, before = 0;
    for (int64_t s = 0; s < n; s++) {
        pk[2 * s] = sc[s], pk[2 * s + 1] = (double)s;
        big = fmax(big, fabs(sc[s]));
    }
    qsort(pk, (size_t)n, 2 * sizeof(double), cmp_pick);
    bool mass_edge = false;
    if (c->p < 1) {
        for (int64_t s = 0; s < n; s++)
            z += exp(sc[s] - pk[0]);
        for (int64_t i = 0; i < m; i++) {
            before = run;
            run += exp(pk[2 * i] - pk[0]);
            if (run >= c->p * z) {
                cut = i + 1;
                break;
            }
        }
        mass_edge = fabs(run / z - c->p) <= 1e-3 || fabs(before / z - c->p) <= 1e-3;
    }
    /* near ties: every position in one set and not the other (window positions
     * are in both) scores within 1 % of big of the reference's last pick kept */
    double cut_score = cut > 0 ? pk[2 * (cut - 1)] : 0;
    bool tie = true;
    for (int pass = 0; pass < 2; pass++) { /* GPU's extra picks, then the reference's missing ones */
        const float *a = pass ? ref : g, *o = pass ? g : ref;
        for (int64_t i = 0; i < width && a[i] >= 0; i++) {
            bool in = false;
            for (int64_t j = 0; j < width && o[j] >= 0 && !in; j++)
                in = o[j] == a[i];
            if (!in && fabs(sc[(int64_t)a[i]] - cut_score) > 1e-2 * big + 2 * tol)
                tie = false;
        }
    }
    free(pk);
    if (tie || mass_edge) {
        st->boundary++;
        return false;
    }
    st->hard++;
    if (st->hard <= 5) {
        fprintf(stderr, "    %s query %lld: GPU", label, (long long)t);
        for (int64_t i = 0; i < width; i++)
            fprintf(stderr, " %g", g[i]);
        fprintf(stderr, " | ref");
        for (int64_t i = 0; i < width; i++)
            fprintf(stderr, " %g", ref[i]);
        fprintf(stderr, "\n");
    }
    return false;
}

/* Runs a prefill of batch × seq then `steps` decode steps on the GPU and the
 * CPU; compares the selection `sel` (rows classified as above, scores from
 * `scores`, the unfused graph's index_scores) and then each other value of
 * `values` with its bound, on the rows selected identically. The sparse
 * layer must be the last attention: no later layer reads a left-out row. */
static void run_case(const char *yaml, const char *const *values, const double *bounds, const char *sel,
                     const char *scores, const SelCfg *c, int batch, int seq, int steps, double max_left_out)
{
    GpuModel m;
    gpu_model_open(&m, yaml, values, batch, seq, seq + steps + 1, NULL);
    Node *sn = graph_find(m.graph, scores); /* a CPU-only output: the plan is already compiled */
    assert_non_null(sn);
    graph_add_output(m.graph, sn, scores);
    int32_t *tok = malloc(sizeof(int32_t) * (size_t)(batch * seq));
    fill_tokens(tok, batch * seq, m.vocab, 5);
    SelStats total = {0};
    double kmax = 0, dkmax = 0; /* over every key row so far: |k|, |k_gpu − k_ref| (the cache holds them all) */
    for (int step = -1; step < steps; step++) {
        int s = step < 0 ? seq : 1;
        int32_t one[64];
        if (step >= 0)
            fill_tokens(one, batch, m.vocab, 200 + (uint64_t)step);
        int64_t pos0[64];
        for (int b = 0; b < batch; b++)
            pos0[b] = m.cpu_pos[b];
        check_ok(step < 0 ? msac_session_prefill(m.sess, batch, seq, tok, NULL)
                          : msac_session_decode(m.sess, batch, one, NULL));
        const char *names[17];
        int nv = 0;
        for (; values[nv]; nv++)
            names[nv] = values[nv];
        names[nv] = scores, names[nv + 1] = NULL;
        float *ref[17] = {0};
        cpu_run(&m, batch, s, step < 0 ? tok : one, names, ref);
        float *sc = ref[nv];
        bool *same = calloc((size_t)(batch * s), sizeof(bool)), sel_done = false;
        double *qn = calloc((size_t)(batch * s), sizeof(double)), *dq = calloc((size_t)(batch * s), sizeof(double));
        for (int i = 0; values[i]; i++) {
            int64_t w = value_width(&m, values[i]), n = (int64_t)batch * s * w;
            float *g = malloc(sizeof(float) * (size_t)n);
            check_ok(msac_session_read_output(m.sess, values[i], g, (size_t)n));
            char label[128];
            snprintf(label, sizeof label, "%s %s %s", m.graph->name, step < 0 ? "prefill" : "decode", values[i]);
            if (c->q && (!strcmp(values[i], c->q) || !strcmp(values[i], c->k))) {
                /* the indexer's inputs: per-row norms of the reference and of the GPU's difference */
                bool isq = !strcmp(values[i], c->q);
                for (int r = 0; r < batch * s; r++) {
                    double nn = 0, dd = 0;
                    for (int64_t j = 0; j < w; j++) {
                        double e = (double)g[r * w + j] - ref[i][r * w + j];
                        nn += (double)ref[i][r * w + j] * ref[i][r * w + j], dd += e * e;
                    }
                    if (isq)
                        qn[r] = sqrt(nn), dq[r] = sqrt(dd);
                    else
                        kmax = fmax(kmax, sqrt(nn)), dkmax = fmax(dkmax, sqrt(dd));
                }
                expect_close(label, g, ref[i], n, bounds[i]);
            } else if (!strcmp(values[i], sel)) {
                sel_done = true;
                assert_int_equal(w, c->K + c->W);
                SelStats st = {0};
                for (int b = 0; b < batch; b++)
                    for (int t = 0; t < s; t++) {
                        int64_t r = (int64_t)b * s + t;
                        /* |Δ(q·k)| <= |Δq||k| + |q||Δk| + |Δq||Δk| for every key s of this row */
                        double tol = c->q ? c->scale * (dq[r] * kmax + qn[r] * dkmax + dq[r] * dkmax) : 0;
                        same[r] = check_row(g + r * w, ref[i] + r * w, sc + r * CPU_CTX, w, pos0[b] + t, c, tol,
                                            &st, label);
                    }
                fprintf(stderr,
                        "  %-44s %lld of %lld rows select differently: %lld at a near tie or mass boundary, "
                        "%lld otherwise (bound 0)\n",
                        label, (long long)st.differ, (long long)st.rows, (long long)st.boundary, (long long)st.hard);
                if (st.hard)
                    fail_msg("%s: %lld rows select differently away from any boundary", label, (long long)st.hard);
                total.rows += st.rows, total.differ += st.differ, total.boundary += st.boundary;
            } else if (!sel_done) {
                expect_close(label, g, ref[i], n, bounds[i]);
            } else {
                int64_t kept = 0;
                for (int r = 0; r < batch * s; r++)
                    if (same[r]) {
                        memmove(g + kept * w, g + (int64_t)r * w, sizeof(float) * (size_t)w);
                        memmove(ref[i] + kept * w, ref[i] + (int64_t)r * w, sizeof(float) * (size_t)w);
                        kept++;
                    }
                if (kept < batch * s)
                    fprintf(stderr, "  %-44s %lld of %d rows (the rest selected at a boundary)\n", label,
                            (long long)kept, batch * s);
                if (kept == 0 || (batch * s >= 10 && (double)kept < (1 - max_left_out) * batch * s))
                    fail_msg("%s: too many rows selected differently (%lld of %d kept)", label, (long long)kept,
                             batch * s);
                expect_close(label, g, ref[i], kept * w, bounds[i]);
            }
            free(g);
            free(ref[i]);
        }
        free(same);
        free(qn);
        free(dq);
        free(sc);
    }
    fprintf(stderr, "  %-44s all calls: %lld of %lld rows differ, all at boundaries\n", m.graph->name,
            (long long)total.differ, (long long)total.rows);
    free(tok);
    gpu_model_close(&m);
}

/* Adaptive top-k alone (lightning indexer, k 13 of up to 73 candidates): the
 * seeded weights give near-uniform index scores, so a small p cuts at about
 * p·(t+1) picks, inside the k. */
static void adaptive_lightning(void **state)
{
    (void)state;
    const char *const v[] = {"l0.idx.sel", "l0.o_lat", "l0.res", "logits", NULL}; /* l0.res: o_proj + residual */
    const double bnd[] = {0, 2e-2, 2e-2, 2e-2};
    SelCfg c = {.K = 13, .W = 0, .p = 0.08};
    run_case("name: adaptive\nvocab_size: 300\nd_model: 64\nsparse_mla:\n  " MLA
             "  indexer: {kind: lightning, dim: 32, heads: 3, top_k: 13, adaptive_p: 0.08}\nlayers:\n"
             "  - kind: sparse_mla\n",
             v, bnd, "l0.idx.sel", "l0.idx.scores", &c, 2, 70, 3, 0.1);
}

/* The window alone, and both with k > 32 (the adaptive pass walks the
 * selection in several warp-wide chunks); a mamba2 layer before, the hybrid
 * layer last: its gate, SSM path and attention path against the reference. */
static void window_hybrid(void **state)
{
    (void)state;
    const char *const v[] = {"l1.idx.sel", "l1.o_lat", "l1.ssm.out", "l1.out", "l1.res", "logits", NULL};
    const double bnd[] = {0, 2e-2, 2e-2, 2e-2, 2e-2, 2e-2};
    SelCfg c = {.K = 6, .W = 5, .p = 1.0};
    run_case("name: window\nvocab_size: 300\nd_model: 64\nmamba2: {d_state: 16, headdim: 16, chunk_size: 16}\n"
             "hybrid:\n  " MLA "  ssm: {d_state: 16, headdim: 16, expand: 1, chunk_size: 16}\n"
             "  indexer: {kind: lightning, dim: 32, heads: 2, top_k: 6, window: 5}\n"
             "layers:\n  - kind: mamba2\n  - kind: hybrid\n",
             v, bnd, "l1.idx.sel", "l1.idx.scores", &c, 2, 45, 3, 0.1);
    const char *const v0[] = {"l0.idx.sel", "l0.o_lat", "l0.ssm.out", "l0.out", "l0.res", "logits", NULL};
    SelCfg c2 = {.K = 40, .W = 9, .p = 0.3};
    run_case("name: both\nvocab_size: 300\nd_model: 64\n"
             "hybrid:\n  " MLA "  ssm: {d_state: 16, headdim: 16, chunk_size: 16}\n"
             "  indexer: {kind: lightning, dim: 16, heads: 2, top_k: 40, adaptive_p: 0.3, window: 9}\n"
             "layers:\n  - kind: hybrid\n",
             v0, bnd, "l0.idx.sel", "l0.idx.scores", &c2, 1, 131, 3, 0.1);
}

/* GPU decode of step t equals GPU prefill at position t: the hybrid layer
 * with an adaptive, windowed indexer. */
static void hybrid_decode_equals_prefill(void **state)
{
    (void)state;
    expect_model_decode_equals_prefill(
        "name: hy\nvocab_size: 300\nd_model: 64\nhybrid:\n  " MLA "  ssm: {d_state: 16, headdim: 16, chunk_size: 16}\n"
        "  indexer: {kind: lightning, dim: 32, heads: 3, top_k: 7, adaptive_p: 0.23, window: 4}\n"
        "layers:\n  - kind: hybrid\n",
        2, 30, 5, 9, "hybrid decode");
}

/* models/scan-informed-hybrid.yaml at a small size: mamba2 layers and hybrid
 * layers with a mamba2 indexer (adaptive top-k + window). The last layer's
 * indexer reads inputs that carry three layers of GPU rounding (and the
 * first hybrid layer's boundary picks), so its scores differ from the
 * reference's by more than rounding inside the layer: a differing pick is a
 * near tie within 1 % of big plus twice the score error that the measured
 * differences of its q and k allow (|Δq||k| + |q||Δk| + |Δq||Δk|, times the
 * scale). On the H100, the 1 % rule alone left 3 of 154 prefill rows
 * unexplained. */
static void scan_informed_small(void **state)
{
    (void)state;
    const char *const v[] = {"l3.idx.q", "l3.idx.k", "l3.idx.sel", "l3.res", "logits", NULL};
    const double bnd[] = {2e-2, 2e-2, 0, 2e-2, 2e-2};
    SelCfg c = {16, 8, 0.9, "l3.idx.q", "l3.idx.k", 0.25}; /* scale 1/sqrt(dim 16) */
    run_case("name: scan-informed-hybrid-small\nvocab_size: 512\nd_model: 64\n"
             "mamba2: {d_state: 16, headdim: 16, expand: 2, chunk_size: 16}\n"
             "hybrid:\n  " MLA "  ssm: {d_state: 16, headdim: 16, expand: 1, chunk_size: 16}\n"
             "  indexer: {kind: mamba2, dim: 16, top_k: 16, adaptive_p: 0.9, window: 8, d_state: 16, headdim: 16,"
             " expand: 1, chunk_size: 16}\n"
             "layers:\n  - {kind: mamba2}\n  - {kind: hybrid}\n  - {kind: mamba2}\n  - {kind: hybrid}\n",
             v, bnd, "l3.idx.sel", "l3.idx.scores", &c, 2, 77, 3, 0.25);
}

/* Sessions of `yaml` compiled with the index_topk schedule `spec` (NULL:
 * the defaults): a ragged prefill of lens[b] tokens per row (rows at
 * their own positions), then `steps` decode steps; returns every decode
 * step's `sel` rows (steps × B × width, malloc'd) and the width. */
enum { AG_B = 4 };
static float *decode_selections(const char *yaml, const char *spec, const int lens[AG_B], int steps, const char *sel,
                                int64_t *width)
{
    ScheduleSet set = {0};
    Diag d = {0};
    CompileOptions o;
    compile_options_init(&o);
    if (spec) {
        assert_true(schedule_parse(&set, spec, &d));
        o.schedule = &set;
    }
    gpu_set_compile_options(&o);
    const char *const extra[] = {sel, NULL};
    int max = 0, total = 0;
    for (int b = 0; b < AG_B; b++)
        max = lens[b] > max ? lens[b] : max, total += lens[b];
    GpuModel m;
    gpu_model_open(&m, yaml, extra, AG_B, max, max + steps + 1, NULL);
    gpu_set_compile_options(NULL);
    int32_t *tok = malloc(sizeof(int32_t) * (size_t)total);
    float *last = malloc(sizeof(float) * (size_t)(AG_B * m.vocab));
    fill_tokens(tok, total, m.vocab, 11);
    check_ok(msac_session_prefill_ragged(m.sess, AG_B, lens, tok, last));
    *width = value_width(&m, sel);
    float *out = malloc(sizeof(float) * (size_t)(steps * AG_B * *width));
    for (int k = 0; k < steps; k++) {
        int32_t one[AG_B];
        fill_tokens(one, AG_B, m.vocab, 300 + (uint64_t)k);
        check_ok(msac_session_decode(m.sess, AG_B, one, NULL));
        check_ok(msac_session_read_output(m.sess, sel, out + (int64_t)k * AG_B * *width, (size_t)(AG_B * *width)));
    }
    free(tok);
    free(last);
    gpu_model_close(&m);
    return out;
}

/* The decode selects at up to 1600 keys per query (lightning indexer, k 64)
 * agree exactly with select 0 (the default: the keys in shared memory, 4
 * radix passes; checked against the reference by the tests above) on the
 * same keys: select 2 (index_score2's top-bit histogram, the threshold bin's
 * keys ranked in shared memory), cands 8 (the bin refined by the next 11
 * bits of its keys first), cands 1 (refined to whole keys), select 1 (the
 * select's own histogram pass), select 3 (the keys split over 4, 8 or 1
 * blocks a query, k_index_seg.c; cands 8: segments overflow, T's keys
 * ranked over the whole row; the adaptive plan falls back to select 0).
 * Rows at ragged positions 1600, 1100, 700
 * and 40 (below k: all of them, then -1); plain, and adaptive p 0.5 with a
 * window of 16. The scores (not reproducible bit for bit on the CPU at this
 * many near ties) are the same in each plan: index_score2 does not depend
 * on the select's schedule. */
static void select_schedules_agree(void **state)
{
    (void)state;
    static const int lens[AG_B] = {1600, 1100, 40, 700};
    enum { STEPS = 3 };
    const char *yamls[] = {"name: sel_large\nvocab_size: 300\nd_model: 64\nsparse_mla:\n  " MLA
                           "  indexer: {kind: lightning, dim: 32, heads: 3, top_k: 64}\nlayers:\n  - kind: sparse_mla\n",
                           "name: sel_large_aw\nvocab_size: 300\nd_model: 64\nsparse_mla:\n  " MLA
                           "  indexer: {kind: lightning, dim: 32, heads: 3, top_k: 64, adaptive_p: 0.5, window: 16}\n"
                           "layers:\n  - kind: sparse_mla\n"};
    const char *specs[] = {"index_topk:select=2",         "index_topk:select=2,cands=8",
                           "index_topk:select=2,cands=1", "index_topk:select=1",
                           "index_topk:select=3",         "index_topk:select=3,segs=8",
                           "index_topk:select=3,segs=1",  "index_topk:select=3,cands=8"};
    enum { NSPECS = sizeof specs / sizeof specs[0] };
    for (int y = 0; y < 2; y++) {
        int64_t w, w2;
        float *ref = decode_selections(yamls[y], "index_topk:select=0", lens, STEPS, "l0.idx.sel", &w);
        for (int k = 0; k < STEPS; k++) /* the reference rows are full: k picks, or all n below k */
            for (int b = 0; b < AG_B; b++) {
                const float *r = ref + ((int64_t)k * AG_B + b) * w;
                int64_t n = lens[b] + k + 1, valid = 0;
                while (valid < w && r[valid] >= 0)
                    valid++;
                if (y == 0 && valid != (n < 64 ? n : 64))
                    fail_msg("select 0 step %d row %d: %lld picks of %lld keys", k, b, (long long)valid, (long long)n);
            }
        for (int sp = 0; sp < NSPECS; sp++) {
            float *got = decode_selections(yamls[y], specs[sp], lens, STEPS, "l0.idx.sel", &w2);
            assert_int_equal(w, w2);
            int bad = 0;
            for (int64_t r = 0; r < STEPS * AG_B; r++)
                if (memcmp(got + r * w, ref + r * w, sizeof(float) * (size_t)w)) {
                    if (++bad <= 3) {
                        fprintf(stderr, "    step %lld row %lld differs at slot", (long long)(r / AG_B), (long long)(r % AG_B));
                        for (int64_t i = 0; i < w; i++)
                            if (got[r * w + i] != ref[r * w + i]) {
                                fprintf(stderr, " %lld (%g vs %g)", (long long)i, got[r * w + i], ref[r * w + i]);
                                break;
                            }
                        fprintf(stderr, "\n");
                    }
                }
            fprintf(stderr, "  %s, schedule %s: %d of %d decode rows differ from select 0 (bound 0)\n",
                    y ? "adaptive + window" : "plain", specs[sp], bad, STEPS * AG_B);
            if (bad)
                fail_msg("schedule %s: %d decode selections differ from select 0", specs[sp], bad);
            free(got);
        }
        free(ref);
    }
}

int main(void)
{
    gpu_device();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(adaptive_lightning),
        cmocka_unit_test(window_hybrid),
        cmocka_unit_test(hybrid_decode_equals_prefill),
        cmocka_unit_test(scan_informed_small),
        cmocka_unit_test(select_schedules_agree),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
