/* test_ir.c — IR: textual round trip, parser errors, verifier rejections,
 * symbolic expressions. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <string.h>

#include "ir.h"

static const char *const small =
    "graph g {\n"
    "  %tokens = input i32 [batch, seq] \"tokens\"\n"
    "  %emb = weight bf16 [16, 8] \"emb.weight\" {init=\"normal\", std=0.02}\n"
    "  %x = embed f32 [batch, seq, 8] %emb, %tokens\n"
    "  %nw = weight f32 [8] \"norm.weight\" {init=\"ones\"}\n"
    "  %h = rmsnorm bf16 [batch, seq, 8] %x, %nw {eps=1e-05}\n"
    "  %w = weight bf16 [4, 8] \"w\" {init=\"normal\", std=0.5}\n"
    "  %3 = matmul f32 [batch, seq, 4] %h, %w\n"
    "  %s = slice f32 [batch, seq, 2] %3 {begin=1, end=3}\n"
    "  output %s \"out\"\n"
    "}\n";

static Graph *parse(Arena *a, const char *text, Diag *d)
{
    memset(d, 0, sizeof *d);
    return ir_parse(a, text, "t.ir", d);
}

static void roundtrip_exact(void **state)
{
    (void)state;
    Arena *a = arena_new();
    Diag d;
    Graph *g = parse(a, small, &d);
    assert_non_null(g);
    assert_true(ir_verify(g, &d));
    char *s1 = ir_print_str(g, a);
    /* unnamed %3 is printed by its id, which is its position: 6 */
    assert_non_null(strstr(s1, "%6 = matmul"));
    Graph *g2 = parse(a, s1, &d);
    assert_non_null(g2);
    assert_string_equal(s1, ir_print_str(g2, a));
    arena_free(a);
}

static void roundtrip_attrs(void **state)
{
    (void)state;
    Arena *a = arena_new();
    Diag d;
    const char *t = "graph g {\n"
                    "  %t = input i32 [batch, seq] \"tokens\"\n"
                    "  %e = weight bf16 [4, 8] \"e\" {init=\"normal\", std=0.02, big=-123456789012, inf=inf, "
                    "neg=-inf, f=3.0, q=\"a \\\"quoted\\\" str\"}\n"
                    "  %x = embed f32 [batch, seq, 8] %e, %t\n"
                    "  output %x \"x\"\n"
                    "}\n";
    Graph *g = parse(a, t, &d);
    assert_non_null(g);
    Node *e = graph_find(g, "e");
    assert_int_equal(node_int(e, "big", 0), -123456789012LL);
    assert_true(node_float(e, "inf", 0) > 1e300);
    assert_true(node_float(e, "neg", 0) < -1e300);
    assert_int_equal(node_attr(e, "f")->kind, ATTR_FLOAT);
    assert_string_equal(node_str(e, "q", ""), "a \"quoted\" str");
    char *s1 = ir_print_str(g, a);
    assert_string_equal(s1, ir_print_str(parse(a, s1, &d), a));
    arena_free(a);
}

/* Parser errors: message and position. */
static void expect_parse_error(const char *text, int line, int col, const char *msg)
{
    Arena *a = arena_new();
    Diag d;
    assert_null(parse(a, text, &d));
    if (!strstr(d.msg, msg))
        fail_msg("expected '%s' in '%s'", msg, d.msg);
    assert_int_equal(d.line, line);
    assert_int_equal(d.col, col);
    arena_free(a);
}

static void parse_errors(void **state)
{
    (void)state;
    expect_parse_error("grph g {}", 1, 5, "expected 'graph'");
    expect_parse_error("graph g {\n  %x = frob f32 [1] %y\n}", 2, 8, "unknown op 'frob'");
    expect_parse_error("graph g {\n  %x = input f16 [1] \"x\"\n}", 2, 14, "unknown dtype 'f16'");
    expect_parse_error("graph g {\n  %x = silu f32 [4] %nope\n}", 2, 21, "undefined value %nope");
    expect_parse_error("graph g {\n  %t = input i32 [batch] \"t\"\n  %t = input i32 [batch] \"u\"\n}", 3, 3,
                       "defined twice");
    expect_parse_error("graph g {\n  %t = input i32 [batch, sek] \"t\"\n}", 2, 26, "bad dimension 'sek'");
    expect_parse_error("graph g {\n  %t = input i32 [batch] \"t\" {a=1, a=2}\n}", 2, 36, "given twice");
    expect_parse_error("graph g {\n  %t = input i32 [batch] \"t\n}", 2, 28, "unterminated string");
    expect_parse_error("graph g {\n  %t = input i32 [batch] \"t\"\n", 3, 1, "missing '}'");
    expect_parse_error("graph g {\n  output %z \"z\"\n}", 2, 10, "undefined value %z");
}

/* Verifier: each malformed graph is rejected with its reason. */
static void expect_verify_error(const char *body, const char *msg)
{
    char text[2048];
    snprintf(text, sizeof text,
             "graph g {\n"
             "  %%tokens = input i32 [batch, seq] \"tokens\"\n"
             "  %%emb = weight bf16 [16, 8] \"emb\" {init=\"ones\"}\n"
             "  %%w = weight bf16 [4, 8] \"w\" {init=\"ones\"}\n"
             "%s}\n",
             body);
    Arena *a = arena_new();
    Diag d;
    Graph *g = parse(a, text, &d);
    if (!g)
        fail_msg("parse failed: %s", d.msg);
    assert_false(ir_verify(g, &d));
    if (!strstr(d.msg, msg))
        fail_msg("expected '%s' in '%s'", msg, d.msg);
    arena_free(a);
}

static void verify_errors(void **state)
{
    (void)state;
    expect_verify_error("  %x = embed f32 [batch, seq, 8] %emb\n  output %x \"x\"\n", "has 1 operands, takes 2..3");
    expect_verify_error("  %x = embed f32 [batch, seq, 9] %emb, %tokens\n  output %x \"x\"\n",
                        "declared shape differs");
    expect_verify_error("  %x = embed f32 [batch, seq, 8] %emb, %emb\n  output %x \"x\"\n", "operand 1 must be i32");
    expect_verify_error("  %x = embed f32 [batch, seq, 8] %emb, %tokens\n"
                        "  %y = matmul f32 [batch, seq, 4] %x, %w\n  output %y \"y\"\n",
                        "operand 0 must be bf16");
    expect_verify_error("  %x = embed f32 [batch, seq, 8] %emb, %tokens\n", "has no outputs");
    expect_verify_error("  %x = embed f32 [batch, seq, 8] %emb, %tokens \"ext\"\n  output %x \"x\"\n",
                        "only input, weight and state take an external name");
    expect_verify_error("  %s = state f32 [4, 2] \"st\"\n  output %s \"s\"\n", "first dim must be batch");
    expect_verify_error("  %x = embed f32 [batch, seq, 8] %emb, %tokens\n"
                        "  %y = slice f32 [batch, seq, 2] %x {begin=7, end=9}\n  output %y \"y\"\n",
                        "need 0 <= begin < end <= 8");
    expect_verify_error("  %x = embed f32 [batch, seq, 8] %emb, %tokens\n"
                        "  %n = weight f32 [8] \"n\" {init=\"ones\"}\n"
                        "  %y = rmsnorm bf16 [batch, seq, 8] %x, %n\n  output %y \"y\"\n",
                        "needs attribute eps > 0");
    /* embed's optional norm weight (embed_norm): f32 [D] and an eps */
    expect_verify_error("  %n = weight f32 [8] \"n\" {init=\"ones\"}\n"
                        "  %x = embed f32 [batch, seq, 8] %emb, %tokens, %n\n  output %x \"x\"\n",
                        "embed: a norm weight needs attribute eps > 0");
    expect_verify_error("  %n = weight f32 [4] \"n\" {init=\"ones\"}\n"
                        "  %x = embed f32 [batch, seq, 8] %emb, %tokens, %n {eps=1e-5}\n  output %x \"x\"\n",
                        "operand 2 dim 0 is 4, expected 8");
    /* moe without a residual (attr residual=0): the bias, if any, moves up to src 4 */
    const char *moe_srcs = "  %x = embed f32 [batch, seq, 8] %emb, %tokens\n"
                           "  %h = weight bf16 [2, 3, 8] \"h\" {init=\"ones\"}\n"
                           "  %lg = weight f32 [2, 3, 4] \"lg\" {init=\"ones\"}\n"
                           "  %wgu = weight bf16 [4, 16, 8] \"wgu\" {init=\"ones\"}\n"
                           "  %wd = weight bf16 [4, 8, 8] \"wd\" {init=\"ones\"}\n"
                           "  %r = weight f32 [2, 3, 8] \"r\" {init=\"ones\"}\n"
                           "  %bias = weight f32 [4] \"bias\" {init=\"ones\"}\n";
    char body[2048];
    snprintf(body, sizeof body, "%s  %%y = moe f32 [2, 3, 8] %%h, %%lg, %%wgu, %%wd, %%r, %%bias {experts=4, topk=2, "
             "dff=8, score=\"softmax\", residual=0}\n  output %%y \"y\"\n", moe_srcs);
    expect_verify_error(body, "moe: 6 operands do not fit residual=0");
    snprintf(body, sizeof body, "%s  %%y = moe f32 [2, 3, 8] %%h, %%lg, %%wgu, %%wd, %%r {experts=4, topk=2, "
             "dff=8, score=\"softmax\", residual=0}\n  output %%y \"y\"\n", moe_srcs);
    expect_verify_error(body, "moe: operand 4 must have rank 1, has 3");
    snprintf(body, sizeof body, "%s  %%y = moe f32 [2, 3, 8] %%h, %%lg, %%wgu, %%wd {experts=4, topk=2, "
             "dff=8, score=\"softmax\"}\n  output %%y \"y\"\n", moe_srcs);
    expect_verify_error(body, "moe: 4 operands do not fit residual=1");
}

/* Inputs the fuzzer found (tests/fuzz/crashes/ir): each is refused with its
 * message, or now round-trips. */
static void hostile_text(void **state)
{
    (void)state;
    /* a backslash ending the input or the line escapes nothing: no read past the end */
    expect_parse_error("graph g {\n  %t = input i32 [batch] \"t\\", 2, 29, "unterminated string");
    expect_parse_error("graph g {\n  %t = input i32 [batch] \"t\\\n\"\n}", 2, 29, "unterminated string");
    /* sizes are capped so that the shape rules' products cannot overflow */
    expect_verify_error("  %x = input i32 [batch, seq, 4] \"x\"\n"
                        "  %y = ssd f32 [batch, seq, 4] %x, %x, %x, %x, %x, %x, %x {heads=4611686018427387904, "
                        "headdim=4, dstate=1, groups=1, chunk=1}\n  output %y \"y\"\n",
                        "ssd: attribute heads=4611686018427387904 is larger than 16777216");
    /* an integer attribute given as a float outside int64 (or NaN) reads as the default */
    Arena *a = arena_new();
    Diag d;
    Graph *g = parse(a,
                     "graph g {\n  %t = input i32 [batch] \"t\" {i=inf, n=nan, b=1e300, m=-1e300, f=3.5, "
                     "e=100000000000000000000.0}\n  output %t \"t\"\n}\n",
                     &d);
    assert_non_null(g);
    Node *t = graph_find(g, "t");
    assert_int_equal(node_int(t, "i", 7), 7);
    assert_int_equal(node_int(t, "n", 7), 7);
    assert_int_equal(node_int(t, "b", 7), 7);
    assert_int_equal(node_int(t, "m", 7), 7);
    assert_int_equal(node_int(t, "f", 7), 3);
    /* 1e20 prints without '+' in its exponent, so it parses back */
    char *s1 = ir_print_str(g, a);
    assert_non_null(strstr(s1, "e=1e20"));
    Graph *g2 = parse(a, s1, &d);
    if (!g2)
        fail_msg("printed IR does not parse: %s\n%s", d.msg, s1);
    assert_string_equal(s1, ir_print_str(g2, a));
    arena_free(a);
}

/* A node whose operand comes later in the list breaks topological order. */
static void verify_order(void **state)
{
    (void)state;
    Arena *a = arena_new();
    Diag d;
    Graph *g = parse(a, small, &d);
    assert_non_null(g);
    Node *x = graph_find(g, "x"), *h = graph_find(g, "h");
    g->nodes[x->id] = h;
    g->nodes[h->id] = x;
    int t = x->id;
    x->id = h->id;
    h->id = t;
    assert_false(ir_verify(g, &d));
    assert_non_null(strstr(d.msg, "not defined before its use"));
    arena_free(a);
}

static void symexpr(void **state)
{
    (void)state;
    char buf[128];
    SymExpr e = sym_add(sym_mono(MONO_BS, 768), sym_const(64));
    sym_format(e, buf, sizeof buf);
    assert_string_equal(buf, "768*batch*seq+64");
    assert_int_equal(sym_eval(e, 2, 3, 0), 768 * 6 + 64);
    SymExpr c = sym_ceildiv(sym_mono(MONO_BS, 1), 128);
    sym_format(c, buf, sizeof buf);
    assert_string_equal(buf, "ceil(batch*seq/128)");
    assert_int_equal(sym_eval(c, 1, 129, 0), 2);
    assert_int_equal(sym_eval(c, 1, 128, 0), 1);
    SymExpr p;
    assert_true(sym_parse_expr("ceil(batch*seq/128)", &p));
    assert_memory_equal(&p, &c, sizeof p);
    assert_true(sym_parse_expr("3*batch*ctx - 2*seq + 5", &p));
    assert_int_equal(sym_eval(p, 2, 10, 7), 3 * 14 - 20 + 5);
    assert_false(sym_parse_expr("seq*ctx", &p)); /* not a representable monomial */
    assert_false(sym_parse_expr("batch+", &p));
    SymExpr m = sym_const(4);
    assert_true(sym_mul_mono(&m, SYM_BATCH));
    assert_true(sym_mul_mono(&m, SYM_SEQ));
    assert_false(sym_mul_mono(&m, SYM_CTX));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(roundtrip_exact), cmocka_unit_test(roundtrip_attrs), cmocka_unit_test(parse_errors),
        cmocka_unit_test(verify_errors),   cmocka_unit_test(hostile_text),   cmocka_unit_test(verify_order),    cmocka_unit_test(symexpr),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
