/* builder.h — small helpers the layer expansions use to emit IR. */
#pragma once
#include "ir.h"

typedef struct Builder {
    Graph *g;      /* graph being built */
    char prefix[64]; /* value-name prefix of the current layer, e.g. "l3." */
} Builder;

/* Weight: `ext` is its checkpoint name; init is one of "normal" (a = std),
 * "uniform" (a..b), "ones", "zeros", "log_uniform" (log U(a,b)), "dt_bias"
 * (softplus^-1 of log-uniform dt in a..b). */
Node *b_weight(Builder *b, const char *name, const char *ext, DType dt, int ndim, const int64_t *dims,
               const char *init, double a, double bb);
/* Persistent state [batch, dims...], f32. */
Node *b_state(Builder *b, const char *name, const char *ext, int ndim, const int64_t *dims);
/* Compute node; name gets the layer prefix; shape is inferred later. */
Node *b_op(Builder *b, Op op, DType dt, const char *name, int nsrc, Node *const *src);
/* Last-dim slice [begin, end). */
Node *b_slice(Builder *b, const char *name, Node *x, int64_t begin, int64_t end);
