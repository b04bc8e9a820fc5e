/* kb.c — the kernel builder (see kb.h). */
#include "kb.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "nvvm.h"

KB *kb_new(LLVMContextRef ctx, const char *entry, const KParamKind *params, int nparams, int max_threads)
{
    assert(nparams <= KB_MAX_PARAMS);
    KB *kb = calloc(1, sizeof *kb);
    if (!kb)
        abort();
    kb->ctx = ctx;
    kb->mod = LLVMModuleCreateWithNameInContext(entry, ctx);
    kb->b = LLVMCreateBuilderInContext(ctx);
    kb->t_void = LLVMVoidTypeInContext(ctx);
    kb->i1 = LLVMInt1TypeInContext(ctx);
    kb->i8 = LLVMInt8TypeInContext(ctx);
    kb->i16 = LLVMInt16TypeInContext(ctx);
    kb->i32 = LLVMInt32TypeInContext(ctx);
    kb->i64 = LLVMInt64TypeInContext(ctx);
    kb->f32 = LLVMFloatTypeInContext(ctx);
    kb->bf16 = LLVMBFloatTypeInContext(ctx);
    kb->pg = LLVMPointerTypeInContext(ctx, 1);
    kb->ps = LLVMPointerTypeInContext(ctx, 3);
    T pt[KB_MAX_PARAMS];
    for (int i = 0; i < nparams; i++) {
        kb->pkind[i] = params[i];
        pt[i] = params[i] == KP_PTR ? kb->pg : params[i] == KP_I32 ? kb->i32 : params[i] == KP_I64 ? kb->i64 : kb->f32;
    }
    kb->nparams = nparams;
    kb->fn = LLVMAddFunction(kb->mod, entry, LLVMFunctionType(kb->t_void, pt, (unsigned)nparams, 0));
    LLVMSetFunctionCallConv(kb->fn, LLVMPTXKernelCallConv);
    char buf[16];
    snprintf(buf, sizeof buf, "%d", max_threads);
    LLVMAddTargetDependentFunctionAttr(kb->fn, "nvvm.maxntid", buf);
    unsigned noalias = LLVMGetEnumAttributeKindForName("noalias", 7);
    for (int i = 0; i < nparams; i++)
        if (params[i] == KP_PTR) /* distinct plan buffers never overlap */
            LLVMAddAttributeAtIndex(kb->fn, (unsigned)i + 1, LLVMCreateEnumAttribute(ctx, noalias, 0));
    kb->entry = LLVMAppendBasicBlockInContext(ctx, kb->fn, "entry");
    LLVMBasicBlockRef body = LLVMAppendBasicBlockInContext(ctx, kb->fn, "body");
    LLVMPositionBuilderAtEnd(kb->b, kb->entry);
    LLVMBuildBr(kb->b, body);
    LLVMPositionBuilderAtEnd(kb->b, body);
    V sm = LLVMAddGlobalInAddressSpace(kb->mod, LLVMArrayType2(kb->i8, 0), "smem", 3);
    LLVMSetLinkage(sm, LLVMExternalLinkage);
    LLVMSetAlignment(sm, 16);
    kb->smem = sm;
    return kb;
}

void kb_free(KB *kb)
{
    if (!kb)
        return;
    LLVMDisposeBuilder(kb->b);
    if (kb->mod)
        LLVMDisposeModule(kb->mod);
    free(kb);
}

V kb_param(KB *kb, int i)
{
    assert(i >= 0 && i < kb->nparams);
    return LLVMGetParam(kb->fn, (unsigned)i);
}

/* ---- constants and variables ---- */
V kb_i32(KB *kb, int64_t v) { return LLVMConstInt(kb->i32, (unsigned long long)v, 1); }
V kb_i64(KB *kb, int64_t v) { return LLVMConstInt(kb->i64, (unsigned long long)v, 1); }
V kb_f32(KB *kb, double v) { return LLVMConstReal(kb->f32, v); }

KVar kb_var(KB *kb, T ty, V init)
{
    LLVMBasicBlockRef cur = LLVMGetInsertBlock(kb->b);
    LLVMPositionBuilderBefore(kb->b, LLVMGetBasicBlockTerminator(kb->entry));
    V a = LLVMBuildAlloca(kb->b, ty, "");
    LLVMPositionBuilderAtEnd(kb->b, cur);
    KVar v = {a, ty};
    if (init)
        kb_set(kb, v, init);
    return v;
}

V kb_get(KB *kb, KVar v) { return LLVMBuildLoad2(kb->b, v.ty, v.ptr, ""); }
void kb_set(KB *kb, KVar v, V x) { LLVMBuildStore(kb->b, x, v.ptr); }

/* ---- arithmetic ---- */
static bool is_float(V a)
{
    LLVMTypeKind k = LLVMGetTypeKind(LLVMTypeOf(a));
    if (k == LLVMVectorTypeKind)
        k = LLVMGetTypeKind(LLVMGetElementType(LLVMTypeOf(a)));
    return k == LLVMFloatTypeKind || k == LLVMBFloatTypeKind || k == LLVMDoubleTypeKind;
}

V kb_add(KB *kb, V a, V b) { return is_float(a) ? LLVMBuildFAdd(kb->b, a, b, "") : LLVMBuildAdd(kb->b, a, b, ""); }
V kb_sub(KB *kb, V a, V b) { return is_float(a) ? LLVMBuildFSub(kb->b, a, b, "") : LLVMBuildSub(kb->b, a, b, ""); }
V kb_mul(KB *kb, V a, V b) { return is_float(a) ? LLVMBuildFMul(kb->b, a, b, "") : LLVMBuildMul(kb->b, a, b, ""); }
V kb_div(KB *kb, V a, V b) { return is_float(a) ? LLVMBuildFDiv(kb->b, a, b, "") : LLVMBuildSDiv(kb->b, a, b, ""); }
V kb_rem(KB *kb, V a, V b) { return LLVMBuildSRem(kb->b, a, b, ""); }
V kb_neg(KB *kb, V a) { return is_float(a) ? LLVMBuildFNeg(kb->b, a, "") : LLVMBuildNeg(kb->b, a, ""); }

static V cmp(KB *kb, LLVMIntPredicate ip, LLVMRealPredicate rp, V a, V b)
{
    return is_float(a) ? LLVMBuildFCmp(kb->b, rp, a, b, "") : LLVMBuildICmp(kb->b, ip, a, b, "");
}
V kb_lt(KB *kb, V a, V b) { return cmp(kb, LLVMIntSLT, LLVMRealOLT, a, b); }
V kb_le(KB *kb, V a, V b) { return cmp(kb, LLVMIntSLE, LLVMRealOLE, a, b); }
V kb_gt(KB *kb, V a, V b) { return cmp(kb, LLVMIntSGT, LLVMRealOGT, a, b); }
V kb_ge(KB *kb, V a, V b) { return cmp(kb, LLVMIntSGE, LLVMRealOGE, a, b); }
V kb_eq(KB *kb, V a, V b) { return cmp(kb, LLVMIntEQ, LLVMRealOEQ, a, b); }
V kb_ne(KB *kb, V a, V b) { return cmp(kb, LLVMIntNE, LLVMRealUNE, a, b); }
V kb_and(KB *kb, V a, V b) { return LLVMBuildAnd(kb->b, a, b, ""); }
V kb_or(KB *kb, V a, V b) { return LLVMBuildOr(kb->b, a, b, ""); }
V kb_xor(KB *kb, V a, V b) { return LLVMBuildXor(kb->b, a, b, ""); }
V kb_shl(KB *kb, V a, V b) { return LLVMBuildShl(kb->b, a, b, ""); }
V kb_shr(KB *kb, V a, V b) { return LLVMBuildLShr(kb->b, a, b, ""); }
V kb_select(KB *kb, V c, V a, V b) { return LLVMBuildSelect(kb->b, c, a, b, ""); }
V kb_min(KB *kb, V a, V b) { return kb_select(kb, kb_lt(kb, a, b), a, b); }
V kb_max(KB *kb, V a, V b) { return kb_select(kb, kb_gt(kb, a, b), a, b); }
V kb_to_f32(KB *kb, V i) { return LLVMBuildSIToFP(kb->b, i, kb->f32, ""); }
V kb_to_i64(KB *kb, V i) { return LLVMBuildSExt(kb->b, i, kb->i64, ""); }
V kb_bf16_to_f32(KB *kb, V x) { return LLVMBuildFPExt(kb->b, x, kb->f32, ""); }
V kb_f32_to_bf16(KB *kb, V x) { return LLVMBuildFPTrunc(kb->b, x, kb->bf16, ""); }
V kb_bitcast(KB *kb, V x, T ty) { return LLVMBuildBitCast(kb->b, x, ty, ""); }

V kb_pack_bf16x2(KB *kb, V lo, V hi)
{
    V l = LLVMBuildZExt(kb->b, kb_bitcast(kb, kb_f32_to_bf16(kb, lo), kb->i16), kb->i32, "");
    V h = LLVMBuildZExt(kb->b, kb_bitcast(kb, kb_f32_to_bf16(kb, hi), kb->i16), kb->i32, "");
    return kb_or(kb, l, kb_shl(kb, h, kb_i32(kb, 16)));
}

V kb_fma(KB *kb, V a, V b, V c) { return nvvm_call(kb, "llvm.fma.f32", kb->f32, (V[]){a, b, c}, 3); }

V kb_exp(KB *kb, V x) { return nvvm_ex2(kb, kb_mul(kb, x, kb_f32(kb, 1.4426950408889634))); }
V kb_log(KB *kb, V x) { return kb_mul(kb, nvvm_lg2(kb, x), kb_f32(kb, 0.6931471805599453)); }
V kb_rsqrt(KB *kb, V x) { return nvvm_rsqrt(kb, x); }
V kb_rcp(KB *kb, V x) { return nvvm_rcp(kb, x); }
/* 1 / (1 + 2^(-x·log2 e)): ex2.approx and rcp.approx, two MUFU ops, ~2 ulp. (tanh.approx
 * would be one op, but its 2^-11 error is large next to sigmoid's tail.) */
V kb_sigmoid(KB *kb, V x) { return kb_rcp(kb, kb_add(kb, kb_f32(kb, 1.0), kb_exp(kb, kb_neg(kb, x)))); }
V kb_silu(KB *kb, V x) { return kb_mul(kb, x, kb_sigmoid(kb, x)); }

V kb_softplus(KB *kb, V x)
{
    V sp = kb_log(kb, kb_add(kb, kb_f32(kb, 1.0), kb_exp(kb, kb_min(kb, x, kb_f32(kb, 20.0)))));
    return kb_select(kb, kb_gt(kb, x, kb_f32(kb, 20.0)), x, sp);
}

/* ---- memory ---- */
V kb_gep(KB *kb, T elem, V ptr, V idx) { return LLVMBuildGEP2(kb->b, elem, ptr, &idx, 1, ""); }
V kb_load(KB *kb, T ty, V ptr) { return LLVMBuildLoad2(kb->b, ty, ptr, ""); }
void kb_store(KB *kb, V val, V ptr) { LLVMBuildStore(kb->b, val, ptr); }

V kb_load_vec(KB *kb, T elem, int n, V ptr, unsigned align)
{
    V l = LLVMBuildLoad2(kb->b, LLVMVectorType(elem, (unsigned)n), ptr, "");
    LLVMSetAlignment(l, align);
    return l;
}

void kb_store_vec(KB *kb, V vec, V ptr, unsigned align)
{
    V s = LLVMBuildStore(kb->b, vec, ptr);
    LLVMSetAlignment(s, align);
}

V kb_extract(KB *kb, V vec, int i) { return LLVMBuildExtractElement(kb->b, vec, kb_i32(kb, i), ""); }
V kb_smem(KB *kb, V byte_off) { return kb_gep(kb, kb->i8, kb->smem, byte_off); }

V kb_table_f64(KB *kb, const double *vals, int n)
{
    T f64 = LLVMDoubleTypeInContext(kb->ctx);
    V *c = malloc(sizeof(V) * (size_t)(n ? n : 1));
    if (!c)
        abort();
    for (int i = 0; i < n; i++)
        c[i] = LLVMConstReal(f64, vals[i]);
    T at = LLVMArrayType2(f64, (uint64_t)n);
    V g = LLVMAddGlobalInAddressSpace(kb->mod, at, "table", 1);
    LLVMSetInitializer(g, LLVMConstArray2(f64, c, (uint64_t)n));
    LLVMSetGlobalConstant(g, 1);
    LLVMSetLinkage(g, LLVMInternalLinkage);
    free(c);
    return g;
}

/* ---- control flow ---- */
static KFrame *push(KB *kb)
{
    assert(kb->depth < KB_MAX_DEPTH);
    KFrame *f = &kb->stack[kb->depth++];
    memset(f, 0, sizeof *f);
    return f;
}

void kb_if(KB *kb, V cond)
{
    KFrame *f = push(kb);
    f->kind = 0;
    LLVMBasicBlockRef then = LLVMAppendBasicBlockInContext(kb->ctx, kb->fn, "then");
    f->a = LLVMAppendBasicBlockInContext(kb->ctx, kb->fn, "else");
    f->b = LLVMAppendBasicBlockInContext(kb->ctx, kb->fn, "join");
    LLVMBuildCondBr(kb->b, cond, then, f->a);
    LLVMPositionBuilderAtEnd(kb->b, then);
}

void kb_else(KB *kb)
{
    KFrame *f = &kb->stack[kb->depth - 1];
    assert(kb->depth > 0 && f->kind == 0 && !f->has_else);
    f->has_else = true;
    LLVMBuildBr(kb->b, f->b);
    LLVMPositionBuilderAtEnd(kb->b, f->a);
}

void kb_endif(KB *kb)
{
    assert(kb->depth > 0 && kb->stack[kb->depth - 1].kind == 0);
    KFrame *f = &kb->stack[--kb->depth];
    LLVMBuildBr(kb->b, f->b);
    if (!f->has_else) {
        LLVMPositionBuilderAtEnd(kb->b, f->a);
        LLVMBuildBr(kb->b, f->b);
    }
    LLVMPositionBuilderAtEnd(kb->b, f->b);
}

KVar kb_for(KB *kb, V start, V end, V step)
{
    KFrame *f = push(kb);
    f->kind = 1;
    f->iv = kb_var(kb, kb->i32, start);
    f->step = step;
    f->a = LLVMAppendBasicBlockInContext(kb->ctx, kb->fn, "loop");
    LLVMBasicBlockRef body = LLVMAppendBasicBlockInContext(kb->ctx, kb->fn, "body");
    f->b = LLVMAppendBasicBlockInContext(kb->ctx, kb->fn, "exit");
    LLVMBuildBr(kb->b, f->a);
    LLVMPositionBuilderAtEnd(kb->b, f->a);
    LLVMBuildCondBr(kb->b, kb_lt(kb, kb_get(kb, f->iv), end), body, f->b);
    LLVMPositionBuilderAtEnd(kb->b, body);
    return f->iv;
}

void kb_endfor(KB *kb)
{
    assert(kb->depth > 0 && kb->stack[kb->depth - 1].kind == 1);
    KFrame *f = &kb->stack[--kb->depth];
    kb_set(kb, f->iv, kb_add(kb, kb_get(kb, f->iv), f->step));
    LLVMBuildBr(kb->b, f->a);
    LLVMPositionBuilderAtEnd(kb->b, f->b);
}

void kb_ret(KB *kb)
{
    assert(kb->depth == 0);
    LLVMBuildRetVoid(kb->b);
}
