/* target.c — targets, the NVPTX target machine, and PTX emission. */
#include "target.h"

#include <llvm-c/Analysis.h>
#include <llvm-c/Target.h>
#include <llvm-c/Transforms/PassBuilder.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

/* PTX ISA 8.0 (CUDA 12.0) is the oldest that has everything we emit for
 * both targets; sm_90a kernels may use wgmma and setmaxnreg. */
const TargetDesc target_table[] = {
    {"sm_80", "sm_80", "+ptx80", 80, 80, 163 * 1024},
    {"sm_90a", "sm_90a", "+ptx80", 90, 80, 227 * 1024},
    {NULL, NULL, NULL, 0, 0, 0},
};

const TargetDesc *target_lookup(const char *name)
{
    for (const TargetDesc *t = target_table; t->name; t++)
        if (!strcmp(t->name, name))
            return t;
    return NULL;
}

static pthread_once_t llvm_once = PTHREAD_ONCE_INIT;
static void llvm_init(void)
{
    LLVMInitializeNVPTXTargetInfo();
    LLVMInitializeNVPTXTarget();
    LLVMInitializeNVPTXTargetMC();
    LLVMInitializeNVPTXAsmPrinter();
}

bool codegen_init(Codegen *cg, const TargetDesc *t, Diag *d)
{
    memset(cg, 0, sizeof *cg);
    pthread_once(&llvm_once, llvm_init);
    const char *triple = "nvptx64-nvidia-cuda";
    LLVMTargetRef lt;
    char *err = NULL;
    if (LLVMGetTargetFromTriple(triple, &lt, &err)) {
        diag_fail(d, "LLVM has no NVPTX target: %s", err ? err : "?");
        LLVMDisposeMessage(err);
        return false;
    }
    cg->target = t;
    cg->ctx = LLVMContextCreate();
    cg->tm = LLVMCreateTargetMachine(lt, triple, t->cpu, t->features, LLVMCodeGenLevelAggressive, LLVMRelocDefault,
                                     LLVMCodeModelDefault);
    if (!cg->tm) {
        LLVMContextDispose(cg->ctx);
        return diag_fail(d, "LLVM cannot create a target machine for %s", t->name);
    }
    LLVMTargetDataRef td = LLVMCreateTargetDataLayout(cg->tm);
    cg->datalayout = LLVMCopyStringRepOfTargetData(td);
    LLVMDisposeTargetData(td);
    return true;
}

void codegen_free(Codegen *cg)
{
    if (cg->tm)
        LLVMDisposeTargetMachine(cg->tm);
    if (cg->datalayout)
        LLVMDisposeMessage(cg->datalayout);
    if (cg->ctx)
        LLVMContextDispose(cg->ctx);
    memset(cg, 0, sizeof *cg);
}

/* Every llvm.* function the kernel calls must be an intrinsic of this LLVM:
 * a renamed one would otherwise become an undefined external in the PTX. */
static bool check_intrinsics(LLVMModuleRef m, Diag *d)
{
    for (LLVMValueRef f = LLVMGetFirstFunction(m); f; f = LLVMGetNextFunction(f)) {
        size_t len;
        const char *name = LLVMGetValueName2(f, &len);
        if (len > 5 && !strncmp(name, "llvm.", 5) && LLVMGetIntrinsicID(f) == 0)
            return diag_fail(d, "internal error: '%s' is not an intrinsic in this LLVM (renamed?)", name);
    }
    return true;
}

bool kb_emit_ptx(Codegen *cg, KB *kb, char **ptx, Diag *d)
{
    bool ok = false;
    char *err = NULL;
    LLVMSetTarget(kb->mod, "nvptx64-nvidia-cuda");
    LLVMSetDataLayout(kb->mod, cg->datalayout);
    if (!LLVMGetBasicBlockTerminator(LLVMGetInsertBlock(kb->b)))
        kb_ret(kb);
    if (LLVMVerifyModule(kb->mod, LLVMReturnStatusAction, &err)) {
        diag_fail(d, "internal error: kernel %s fails LLVM verification: %.800s", LLVMGetValueName(kb->fn), err);
        goto out;
    }
    if (!check_intrinsics(kb->mod, d))
        goto out;
    LLVMPassBuilderOptionsRef opts = LLVMCreatePassBuilderOptions();
    LLVMErrorRef pe = LLVMRunPasses(kb->mod, "default<O3>", cg->tm, opts);
    LLVMDisposePassBuilderOptions(opts);
    if (pe) {
        char *m = LLVMGetErrorMessage(pe);
        diag_fail(d, "internal error: LLVM passes failed: %s", m);
        LLVMDisposeErrorMessage(m);
        goto out;
    }
    LLVMMemoryBufferRef buf;
    if (LLVMTargetMachineEmitToMemoryBuffer(cg->tm, kb->mod, LLVMAssemblyFile, &err, &buf)) {
        diag_fail(d, "internal error: PTX emission failed: %s", err);
        goto out;
    }
    size_t n = LLVMGetBufferSize(buf);
    *ptx = malloc(n + 1);
    if (!*ptx)
        abort();
    memcpy(*ptx, LLVMGetBufferStart(buf), n);
    (*ptx)[n] = 0;
    LLVMDisposeMemoryBuffer(buf);
    ok = true;
out:
    if (err)
        LLVMDisposeMessage(err);
    kb_free(kb);
    return ok;
}
