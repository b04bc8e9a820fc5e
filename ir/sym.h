/* sym.h — the symbolic sizes batch, seq, ctx and polynomial expressions of them.
 *
 * Every size that depends on the call (buffer bytes, grid sizes, offsets) is
 * a SymExpr: ceil((c0 + c1*batch + c2*seq + c3*ctx + c4*batch*seq +
 * c5*batch*ctx) / div). The plan file stores the same form. */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum { SYM_NONE, SYM_BATCH, SYM_SEQ, SYM_CTX, SYM_COUNT } Sym;

const char *sym_name(Sym s); /* "batch", "seq", "ctx" */
bool sym_parse(const char *s, Sym *out);

/* Monomials of a SymExpr, in storage order. */
typedef enum { MONO_1, MONO_B, MONO_S, MONO_C, MONO_BS, MONO_BC, MONO_COUNT } Mono;

typedef struct SymExpr {
    int64_t c[MONO_COUNT]; /* coefficient of each monomial */
    int64_t div;           /* ceil-divisor, >= 1 */
} SymExpr;

SymExpr sym_const(int64_t v);
SymExpr sym_mono(Mono m, int64_t coef);
SymExpr sym_add(SymExpr a, SymExpr b); /* both must have div 1 */
SymExpr sym_scale(SymExpr a, int64_t k); /* div must be 1 */
SymExpr sym_ceildiv(SymExpr a, int64_t d); /* div must be 1 */
bool sym_is_const(SymExpr a);
/* Multiplies a product of dims: returns false if the result is not
 * expressible (e.g. seq*ctx). symbols[i] is SYM_NONE for static factors. */
bool sym_mul_mono(SymExpr *acc, Sym s);
int64_t sym_eval(SymExpr a, int64_t batch, int64_t seq, int64_t ctx);
/* Formats as e.g. "768*batch*seq+64" or "(batch*seq+127)/128"-style
 * "ceil(batch*seq/128)". Returns bytes written (snprintf semantics). */
int sym_format(SymExpr a, char *buf, size_t n);
bool sym_parse_expr(const char *s, SymExpr *out);
