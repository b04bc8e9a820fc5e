/* ops.c — the op table, generated from ops.def. Each op NAME must define
 * infer_NAME (ir/infer.c) and ref_NAME (ir/ref_*.c): a missing one is a
 * link error, so no op exists without its semantics and its reference. */
#include "ir.h"

#define OP(name, lo, hi, flags, kernel, doc)                                 \
    bool infer_##name(const Node *n, int *ndim, Dim *dim, Diag *d);          \
    void ref_##name(EvalCtx *ctx, const Node *n);
#include "ops.def"
#undef OP

const OpInfo op_info[OP_COUNT] = {
#define OP(name, lo, hi, flags, kernel, doc) \
    [OP_##name] = {#name, lo, hi, flags, kernel, doc, infer_##name, ref_##name},
#include "ops.def"
#undef OP
};
