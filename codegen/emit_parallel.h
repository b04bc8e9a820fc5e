/* emit_parallel.h — a program's distinct kernels emitted on several threads
 * into the kernel memo before emit_plan walks the program (emit_parallel.c). */
#pragma once
#include "ir.h"
#include "kernel_memo.h"
#include "target.h"

/* The thread count `threads` asks for: itself when > 0, else one per online
 * CPU, at most EMIT_MAX_THREADS. */
enum { EMIT_MAX_THREADS = 8 };
int emit_thread_count(int threads);

/* Emits, on up to `threads` threads (each its own LLVM context and target
 * machine), the kernels of g's nodes whose kernel keys are not in memo yet,
 * one per distinct key, and remembers them in memo in node order. Fewer than
 * two such kernels, or threads < 2: nothing (the caller's walk emits them).
 * A node whose emitter fails is left out of the memo: the walk emits it
 * again and reports the error where it occurs. */
void emit_parallel(const TargetDesc *t, KernelMemo *memo, const Graph *g, int threads);
