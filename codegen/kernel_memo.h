/* kernel_memo.h — launches already emitted, by target and kernel key
 * (tune_space.h): nodes with equal keys get identical launches, so LLVM runs
 * once per distinct kernel. emit_plan keeps one per compile; a caller that
 * compiles many variants of one model (the autotuner, the ptxas test) passes
 * its own in CompileOptions.memo to share it across compiles. */
#pragma once
#include <stdbool.h>


typedef struct KernelMemo KernelMemo;
struct KOut; /* kernels.h */

KernelMemo *kernel_memo_new(void);
void kernel_memo_free(KernelMemo *m); /* NULL is fine */

/* Copies the launches remembered for (target, key) into *ko (with PTX of its
 * own, to free); false when there are none. */
bool kernel_memo_get(const KernelMemo *m, const char *target, const char *key, struct KOut *ko);
/* Whether launches are remembered for (target, key). */
bool kernel_memo_has(const KernelMemo *m, const char *target, const char *key);
/* Remembers a copy of ko's launches for (target, key). */
void kernel_memo_put(KernelMemo *m, const char *target, const char *key, const struct KOut *ko);
