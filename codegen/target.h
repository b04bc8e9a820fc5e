/* target.h — the GPU targets msac compiles for and PTX emission through
 * LLVM's NVPTX backend.
 *
 * A Codegen holds the LLVM context and target machine for one target. Each
 * kernel is built in its own module (kb_new), then kb_emit_ptx verifies it,
 * checks that every `llvm.*` function it calls is a known intrinsic, runs
 * the O3 pipeline and prints PTX. */
#pragma once
#include <llvm-c/TargetMachine.h>

#include "kb.h"

typedef struct TargetDesc {
    const char *name;     /* "sm_80", "sm_90a" */
    const char *cpu;      /* LLVM CPU name */
    const char *features; /* LLVM features: the PTX ISA version */
    int sm;               /* compute capability x10 */
    int ptx_isa;          /* PTX ISA x10 */
    int smem_max;         /* dynamic shared memory a block may opt in to (bytes) */
} TargetDesc;

/* The supported targets; NULL-named sentinel at the end. */
extern const TargetDesc target_table[];
const TargetDesc *target_lookup(const char *name);

typedef struct Codegen {
    const TargetDesc *target;  /* what we compile for */
    LLVMContextRef ctx;        /* shared by all kernels of one compilation */
    LLVMTargetMachineRef tm;   /* NVPTX target machine */
    char *datalayout;          /* the target's data layout string */
} Codegen;

bool codegen_init(Codegen *cg, const TargetDesc *t, Diag *d);
void codegen_free(Codegen *cg);

/* Finishes kb's kernel (adds the return if the builder is still open),
 * verifies, optimises and prints PTX into *ptx (malloc'd). Frees kb. */
bool kb_emit_ptx(Codegen *cg, KB *kb, char **ptx, Diag *d);
