/* k_slice.c — a copy of columns [begin, end) of every row (where a slice is
 * not fused into its consumer). Args: x, out, rows (i32). Grid: rows. */
#include "kernels.h"
#include "nvvm.h"

bool k_slice(Codegen *cg, const Node *n, KOut *out, Diag *d)
{
    const Node *x = n->src[0];
    int64_t C = x->dim[x->ndim - 1].n, b0 = node_int(n, "begin", 0), w = node_int(n, "end", 0) - b0;
    KB *kb = kb_new(cg->ctx, "slice", (KParamKind[]){KP_PTR, KP_PTR, KP_I32}, 3, 128);
    T et = dtype_size(n->dtype) == 2 ? kb->i16 : kb->i32; /* raw element bits */
    V xp = kb_param(kb, 0), op = kb_param(kb, 1), rows = kb_param(kb, 2);
    V r = nvvm_ctaid_x(kb);
    kb_if(kb, kb_lt(kb, r, rows));
    KVar c = kb_for(kb, nvvm_tid_x(kb), kb_i32(kb, w), kb_i32(kb, 128));
    {
        V cv = kb_get(kb, c);
        V src = kb_add(kb, kb_mul(kb, kb_to_i64(kb, r), kb_i64(kb, C)), kb_to_i64(kb, kb_add(kb, cv, kb_i32(kb, b0))));
        V dst = kb_add(kb, kb_mul(kb, kb_to_i64(kb, r), kb_i64(kb, w)), kb_to_i64(kb, cv));
        kb_store(kb, kb_load(kb, et, kb_gep(kb, et, xp, src)), kb_gep(kb, et, op, dst));
    }
    kb_endfor(kb);
    kb_endif(kb);
    char name[64];
    snprintf(name, sizeof name, "slice_c%lld_%lld_%lld_%s", (long long)C, (long long)b0, (long long)(b0 + w),
             dtype_name(n->dtype));
    KLaunch *l = kout_add(out, name, 128, 0);
    SymExpr rows_e = node_rows_expr(n);
    l->grid[0] = rows_e;
    l->bytes = sym_scale(rows_e, 2 * w * (int64_t)dtype_size(n->dtype));
    kl_arg_src(l, 0);
    kl_arg_out(l);
    kl_arg_i32(l, rows_e);
    return kb_emit_ptx(cg, kb, &l->ptx, d);
}
