/* nvvm.c — NVVM intrinsics (see nvvm.h). */
#include <assert.h>

#include "nvvm.h"

V nvvm_call(KB *kb, const char *name, T ret, V *args, int nargs)
{
    T pt[16];
    for (int i = 0; i < nargs; i++)
        pt[i] = LLVMTypeOf(args[i]);
    T fty = LLVMFunctionType(ret, pt, (unsigned)nargs, 0);
    V f = LLVMGetNamedFunction(kb->mod, name);
    if (!f)
        f = LLVMAddFunction(kb->mod, name, fty);
    return LLVMBuildCall2(kb->b, fty, f, args, (unsigned)nargs, "");
}

static V sreg(KB *kb, const char *name) { return nvvm_call(kb, name, kb->i32, NULL, 0); }

V nvvm_tid_x(KB *kb) { return sreg(kb, "llvm.nvvm.read.ptx.sreg.tid.x"); }
V nvvm_ctaid_x(KB *kb) { return sreg(kb, "llvm.nvvm.read.ptx.sreg.ctaid.x"); }
V nvvm_ctaid_y(KB *kb) { return sreg(kb, "llvm.nvvm.read.ptx.sreg.ctaid.y"); }
V nvvm_ctaid_z(KB *kb) { return sreg(kb, "llvm.nvvm.read.ptx.sreg.ctaid.z"); }
V nvvm_nctaid_x(KB *kb) { return sreg(kb, "llvm.nvvm.read.ptx.sreg.nctaid.x"); }
V nvvm_nctaid_y(KB *kb) { return sreg(kb, "llvm.nvvm.read.ptx.sreg.nctaid.y"); }
V nvvm_nsmid(KB *kb) { return sreg(kb, "llvm.nvvm.read.ptx.sreg.nsmid"); }
V nvvm_lane(KB *kb) { return kb_and(kb, nvvm_tid_x(kb), kb_i32(kb, 31)); }
V nvvm_warp(KB *kb) { return kb_shr(kb, nvvm_tid_x(kb), kb_i32(kb, 5)); }

void nvvm_bar_sync(KB *kb)
{
    nvvm_call(kb, "llvm.nvvm.barrier.cta.sync.aligned.all", kb->t_void, (V[]){kb_i32(kb, 0)}, 1);
}

V nvvm_shfl_xor(KB *kb, V x, int mask)
{
    return nvvm_call(kb, "llvm.nvvm.shfl.sync.bfly.f32", kb->f32,
                     (V[]){kb_i32(kb, -1), x, kb_i32(kb, mask), kb_i32(kb, 31)}, 4);
}

V nvvm_shfl_idx(KB *kb, V x, V lane)
{
    return nvvm_call(kb, "llvm.nvvm.shfl.sync.idx.f32", kb->f32, (V[]){kb_i32(kb, -1), x, lane, kb_i32(kb, 31)}, 4);
}

V nvvm_warp_sum(KB *kb, V x)
{
    for (int m = 16; m >= 1; m /= 2)
        x = kb_add(kb, x, nvvm_shfl_xor(kb, x, m));
    return x;
}

V nvvm_warp_max(KB *kb, V x)
{
    for (int m = 16; m >= 1; m /= 2)
        x = kb_max(kb, x, nvvm_shfl_xor(kb, x, m));
    return x;
}

V nvvm_ballot(KB *kb, V pred)
{
    return nvvm_call(kb, "llvm.nvvm.vote.ballot.sync", kb->i32, (V[]){kb_i32(kb, -1), pred}, 2);
}

V nvvm_popc(KB *kb, V x) { return nvvm_call(kb, "llvm.ctpop.i32", kb->i32, &x, 1); }

V nvvm_lanemask_lt(KB *kb) { return sreg(kb, "llvm.nvvm.read.ptx.sreg.lanemask.lt"); }

V nvvm_ex2(KB *kb, V x) { return nvvm_call(kb, "llvm.nvvm.ex2.approx.f32", kb->f32, &x, 1); }
V nvvm_ex2_ftz(KB *kb, V x) { return nvvm_call(kb, "llvm.nvvm.ex2.approx.ftz.f32", kb->f32, &x, 1); }
V nvvm_lg2(KB *kb, V x) { return nvvm_call(kb, "llvm.nvvm.lg2.approx.f", kb->f32, &x, 1); }
V nvvm_rsqrt(KB *kb, V x) { return nvvm_call(kb, "llvm.nvvm.rsqrt.approx.f", kb->f32, &x, 1); }
V nvvm_rcp(KB *kb, V x) { return nvvm_call(kb, "llvm.nvvm.rcp.approx.ftz.f", kb->f32, &x, 1); }

V nvvm_tanh(KB *kb, V x)
{
    T fty = LLVMFunctionType(kb->f32, &kb->f32, 1, 0);
    const char asm_text[] = "tanh.approx.f32 $0, $1;", cons[] = "=f,f";
    V fn = LLVMGetInlineAsm(fty, asm_text, sizeof asm_text - 1, cons, sizeof cons - 1, 0, 0, LLVMInlineAsmDialectATT, 0);
    return LLVMBuildCall2(kb->b, fty, fn, &x, 1, "");
}

void nvvm_prefetch_l2(KB *kb, V gptr)
{
    T i64 = kb->i64, fty = LLVMFunctionType(kb->t_void, &i64, 1, 0);
    const char asm_text[] = "prefetch.global.L2 [$0];", cons[] = "l";
    V fn = LLVMGetInlineAsm(fty, asm_text, sizeof asm_text - 1, cons, sizeof cons - 1, 1, 0, LLVMInlineAsmDialectATT, 0);
    V a = LLVMBuildPtrToInt(kb->b, gptr, i64, "");
    LLVMBuildCall2(kb->b, fty, fn, &a, 1, "");
}

V nvvm_sin(KB *kb, V x) { return nvvm_call(kb, "llvm.nvvm.sin.approx.f", kb->f32, &x, 1); }
V nvvm_cos(KB *kb, V x) { return nvvm_call(kb, "llvm.nvvm.cos.approx.f", kb->f32, &x, 1); }

void nvvm_griddep_wait(KB *kb) { nvvm_call(kb, "llvm.nvvm.griddepcontrol.wait", kb->t_void, NULL, 0); }
void nvvm_griddep_launch(KB *kb) { nvvm_call(kb, "llvm.nvvm.griddepcontrol.launch.dependents", kb->t_void, NULL, 0); }

void nvvm_pdl_sync(KB *kb)
{
    nvvm_griddep_wait(kb);
    nvvm_griddep_launch(kb);
}

void nvvm_prefetch_l1(KB *kb, V gptr) { nvvm_call(kb, "llvm.nvvm.prefetch.global.L1", kb->t_void, &gptr, 1); }

void nvvm_prefetch_span_l1(KB *kb, V base, V first, int64_t count, V tid, int nthreads)
{
    assert(count > 0);
    int64_t lines = (count * 4 + 127) / 128 + 1; /* + 1: `first` need not start a line */
    KVar i = kb_for(kb, tid, kb_i32(kb, (int)lines), kb_i32(kb, nthreads));
    {
        V e = kb_min(kb, kb_mul(kb, kb_get(kb, i), kb_i32(kb, 32)), kb_i32(kb, (int)(count - 1))); /* 32 f32 a line */
        nvvm_prefetch_l1(kb, kb_gep(kb, kb->f32, base, kb_to_i64(kb, kb_add(kb, first, e))));
    }
    kb_endfor(kb);
}

void nvvm_ldmatrix_x4(KB *kb, V sptr, bool trans, V out[4])
{
    T i32 = kb->i32;
    T st = LLVMStructTypeInContext(kb->ctx, (T[]){i32, i32, i32, i32}, 4, 0);
    V r = nvvm_call(kb,
                    trans ? "llvm.nvvm.ldmatrix.sync.aligned.m8n8.x4.trans.b16.p3"
                          : "llvm.nvvm.ldmatrix.sync.aligned.m8n8.x4.b16.p3",
                    st, &sptr, 1);
    for (unsigned i = 0; i < 4; i++)
        out[i] = LLVMBuildExtractValue(kb->b, r, i, "");
}

void nvvm_ldmatrix_x2(KB *kb, V sptr, bool trans, V out[2])
{
    T i32 = kb->i32;
    T st = LLVMStructTypeInContext(kb->ctx, (T[]){i32, i32}, 2, 0);
    V r = nvvm_call(kb,
                    trans ? "llvm.nvvm.ldmatrix.sync.aligned.m8n8.x2.trans.b16.p3"
                          : "llvm.nvvm.ldmatrix.sync.aligned.m8n8.x2.b16.p3",
                    st, &sptr, 1);
    for (unsigned i = 0; i < 2; i++)
        out[i] = LLVMBuildExtractValue(kb->b, r, i, "");
}

void nvvm_mma_bf16(KB *kb, const V a[4], const V b[2], const V c[4], V d[4])
{
    T f = kb->f32;
    T st = LLVMStructTypeInContext(kb->ctx, (T[]){f, f, f, f}, 4, 0);
    V args[10] = {a[0], a[1], a[2], a[3], b[0], b[1], c[0], c[1], c[2], c[3]};
    V r = nvvm_call(kb, "llvm.nvvm.mma.m16n8k16.row.col.bf16", st, args, 10);
    for (unsigned i = 0; i < 4; i++)
        d[i] = LLVMBuildExtractValue(kb->b, r, i, "");
}

void nvvm_cp_async16(KB *kb, V sptr, V gptr, V src_bytes)
{
    nvvm_call(kb, "llvm.nvvm.cp.async.cg.shared.global.16.s", kb->t_void, (V[]){sptr, gptr, src_bytes}, 3);
}

void nvvm_cp_async4(KB *kb, V sptr, V gptr, V src_bytes)
{
    nvvm_call(kb, "llvm.nvvm.cp.async.ca.shared.global.4.s", kb->t_void, (V[]){sptr, gptr, src_bytes}, 3);
}

void nvvm_cp_async_commit(KB *kb) { nvvm_call(kb, "llvm.nvvm.cp.async.commit.group", kb->t_void, NULL, 0); }

void nvvm_cp_async_wait(KB *kb, int n)
{
    nvvm_call(kb, "llvm.nvvm.cp.async.wait.group", kb->t_void, (V[]){kb_i32(kb, n)}, 1);
}
