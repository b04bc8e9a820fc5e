/* k_rmsnorm.c — RMSNorm: out[r,:] = x[r,:] * rsqrt(mean(x[r,:]^2) + eps) * w.
 *
 * One warp per row, `rows` rows per block. Each lane holds its slice of the
 * row in registers between the sum of squares and the scaling (rows of up to
 * 2048 f32 / 4096 bf16 elements), so x is read once.
 * Args: x (f32|bf16 [rows, D]), w (f32 [D]), out (bf16|f32 [rows, D]), nrows (i32).
 * Grid: ceil(rows / rows_per_block). */
#include "kernels.h"
#include "nvvm.h"

enum { MAX_REGS = 64 }; /* elements a lane may hold */

/* Loads element e of a row (f32 or bf16 storage) as f32. */
static V load_elem(KB *kb, DType dt, V base, V idx)
{
    if (dt == DT_BF16)
        return kb_bf16_to_f32(kb, kb_load(kb, kb->bf16, kb_gep(kb, kb->bf16, base, idx)));
    return kb_load(kb, kb->f32, kb_gep(kb, kb->f32, base, idx));
}

static void store_elem(KB *kb, DType dt, V base, V idx, V v)
{
    if (dt == DT_BF16)
        kb_store(kb, kb_f32_to_bf16(kb, v), kb_gep(kb, kb->bf16, base, idx));
    else
        kb_store(kb, v, kb_gep(kb, kb->f32, base, idx));
}

bool k_rmsnorm(Codegen *cg, const Node *n, KOut *out, Diag *d)
{
    const Node *x = n->src[0];
    int64_t D = n->dim[n->ndim - 1].n;
    int rows = (int)node_int(n, "rows", 4);
    float eps = (float)node_float(n, "eps", 1e-5);
    if (n->dim[n->ndim - 1].sym || rows < 1 || rows > 32)
        return diag_fail(d, "rmsnorm kernel: static last dim and 1..32 rows per block required");
    int per_lane = (int)((D + 31) / 32);
    bool in_regs = per_lane <= MAX_REGS;
    KB *kb = kb_new(cg->ctx, "rmsnorm", (KParamKind[]){KP_PTR, KP_PTR, KP_PTR, KP_I32}, 4, 32 * rows);
    V xp = kb_param(kb, 0), wp = kb_param(kb, 1), op = kb_param(kb, 2), nrows = kb_param(kb, 3);
    V lane = nvvm_lane(kb);
    V row = kb_add(kb, kb_mul(kb, nvvm_ctaid_x(kb), kb_i32(kb, rows)), nvvm_warp(kb));
    kb_if(kb, kb_lt(kb, row, nrows));
    {
        V off = kb_mul(kb, kb_to_i64(kb, row), kb_i64(kb, D));
        V xr = kb_gep(kb, x->dtype == DT_BF16 ? kb->bf16 : kb->f32, xp, off);
        V orow = kb_gep(kb, n->dtype == DT_BF16 ? kb->bf16 : kb->f32, op, off);
        V vals[MAX_REGS];
        V ss = kb_f32(kb, 0);
        if (in_regs) {
            /* element j*32 + lane: consecutive lanes read consecutive elements */
            for (int j = 0; j < per_lane; j++) {
                V idx = kb_add(kb, kb_i32(kb, j * 32), lane);
                KVar v = kb_var(kb, kb->f32, kb_f32(kb, 0));
                if ((j + 1) * 32 > D) {
                    kb_if(kb, kb_lt(kb, idx, kb_i32(kb, D)));
                    kb_set(kb, v, load_elem(kb, x->dtype, xr, idx));
                    kb_endif(kb);
                } else {
                    kb_set(kb, v, load_elem(kb, x->dtype, xr, idx));
                }
                vals[j] = kb_get(kb, v);
                ss = kb_fma(kb, vals[j], vals[j], ss);
            }
        } else {
            KVar acc = kb_var(kb, kb->f32, kb_f32(kb, 0));
            KVar i = kb_for(kb, lane, kb_i32(kb, D), kb_i32(kb, 32));
            V v = load_elem(kb, x->dtype, xr, kb_get(kb, i));
            kb_set(kb, acc, kb_fma(kb, v, v, kb_get(kb, acc)));
            kb_endfor(kb);
            ss = kb_get(kb, acc);
        }
        ss = nvvm_warp_sum(kb, ss);
        V inv = kb_rsqrt(kb, kb_add(kb, kb_mul(kb, ss, kb_f32(kb, 1.0 / (double)D)), kb_f32(kb, eps)));
        if (in_regs) {
            for (int j = 0; j < per_lane; j++) {
                V idx = kb_add(kb, kb_i32(kb, j * 32), lane);
                bool guard = (j + 1) * 32 > D;
                if (guard)
                    kb_if(kb, kb_lt(kb, idx, kb_i32(kb, D)));
                V w = kb_load(kb, kb->f32, kb_gep(kb, kb->f32, wp, idx));
                store_elem(kb, n->dtype, orow, idx, kb_mul(kb, kb_mul(kb, vals[j], inv), w));
                if (guard)
                    kb_endif(kb);
            }
        } else {
            KVar i = kb_for(kb, lane, kb_i32(kb, D), kb_i32(kb, 32));
            V idx = kb_get(kb, i);
            V w = kb_load(kb, kb->f32, kb_gep(kb, kb->f32, wp, idx));
            store_elem(kb, n->dtype, orow, idx, kb_mul(kb, kb_mul(kb, load_elem(kb, x->dtype, xr, idx), inv), w));
            kb_endfor(kb);
        }
    }
    kb_endif(kb);
    char name[64];
    snprintf(name, sizeof name, "rmsnorm_d%lld_%s_%s", (long long)D, dtype_name(x->dtype), dtype_name(n->dtype));
    KLaunch *l = kout_add(out, name, (unsigned)(32 * rows), 0);
    kl_param(l, "rows", rows);
    SymExpr nr = node_rows_expr(n);
    l->grid[0] = sym_ceildiv(nr, rows);
    l->flops = sym_scale(nr, 4 * D);
    l->bytes = sym_add(sym_scale(nr, D * (int64_t)(dtype_size(x->dtype) + dtype_size(n->dtype))), sym_const(4 * D));
    kl_arg_src(l, 0);
    kl_arg_src(l, 1);
    kl_arg_out(l);
    kl_arg_i32(l, nr);
    return kb_emit_ptx(cg, kb, &l->ptx, d);
}
