/* ir.h — the tensor IR: dtypes, dims, attributes, nodes, graphs, op table.
 *
 * A graph is a list of nodes in topological order; the node *is* the tensor
 * it produces (ggml style): dtype, shape, op, srcs, attrs. Everything lives
 * in the graph's arena. The textual form (ir/print.c, ir/parse.c) is:
 *
 *   graph tiny {
 *     %tok = input i32 [batch, seq] "tokens"
 *     %emb = weight bf16 [256, 64] "embeddings.weight" {init="normal", std=0.02}
 *     %x = embed f32 [batch, seq, 64] %emb, %tok
 *     output %x "hidden"
 *   }
 */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "arena.h"
#include "diag.h"
#include "sym.h"

enum { IR_MAX_DIMS = 4, IR_MAX_SRC = 12 };

/* ---- dtypes ---- */
typedef enum { DT_F32, DT_BF16, DT_I32, DT_COUNT } DType;

const char *dtype_name(DType t);        /* "f32", "bf16", "i32" */
size_t dtype_size(DType t);             /* bytes per element */
bool dtype_parse(const char *s, DType *out);

/* ---- dims: static sizes or the symbols batch, seq, ctx ---- */
typedef struct Dim {
    Sym sym;   /* SYM_NONE for a static dim, else the symbol */
    int64_t n; /* the size when static; 0 when symbolic */
} Dim;

static inline Dim dim_n(int64_t n) { return (Dim){SYM_NONE, n}; }
static inline Dim dim_sym(Sym s) { return (Dim){s, 0}; }
static inline bool dim_eq(Dim a, Dim b) { return a.sym == b.sym && a.n == b.n; }

/* ---- attributes ---- */
typedef enum { ATTR_INT, ATTR_FLOAT, ATTR_STR } AttrKind;

typedef struct Attr {
    const char *key; /* identifier, e.g. "eps" */
    AttrKind kind;   /* which of the fields below holds the value */
    int64_t i;       /* ATTR_INT */
    double f;        /* ATTR_FLOAT */
    const char *s;   /* ATTR_STR (arena string) */
} Attr;

/* ---- the op table (ops.def) ---- */
enum {
    OPF_LEAF = 1u << 0,
    OPF_EFFECT = 1u << 1,
    OPF_ELEMWISE = 1u << 2,
    OPF_FUSED = 1u << 3,
    OPF_AUX = 1u << 4,
};

typedef enum {
#define OP(name, lo, hi, flags, kernel, doc) OP_##name,
#include "ops.def"
#undef OP
    OP_COUNT
} Op;

typedef struct Node Node;
typedef struct Graph Graph;
typedef struct EvalCtx EvalCtx;

typedef struct OpInfo {
    const char *name;   /* op name as written in textual IR */
    int nsrc_min;       /* fewest srcs */
    int nsrc_max;       /* most srcs */
    unsigned flags;     /* OPF_* */
    const char *kernel; /* kernel template that implements it, "-" if none */
    const char *doc;    /* one-line semantics */
    /* Checks srcs and attrs; computes the output shape into ndim/dim and the
     * dtypes it accepts. Returns false with a message on a malformed node. */
    bool (*infer)(const Node *n, int *ndim, Dim *dim, Diag *d);
    /* CPU reference: computes n's value from its srcs' values in ctx. */
    void (*ref)(EvalCtx *ctx, const Node *n);
} OpInfo;

extern const OpInfo op_info[OP_COUNT];
bool op_parse(const char *s, Op *out);

/* ---- nodes and graphs ---- */
struct Node {
    int id;                   /* index in graph->nodes (renumbered by graph_compact) */
    Op op;                    /* what it computes */
    DType dtype;              /* element type of the value */
    int ndim;                 /* rank, 0..IR_MAX_DIMS */
    Dim dim[IR_MAX_DIMS];     /* shape, outermost first */
    int nsrc;                 /* number of srcs */
    Node *src[IR_MAX_SRC];    /* operands, all earlier in the graph */
    int nattr;                /* number of attributes */
    Attr *attr;               /* attributes [nattr], in print order */
    const char *name;         /* value name printed as %name, or NULL for %id */
    const char *ext;          /* external name: input/weight/state binding, or NULL */
    bool dead;                /* removed; dropped by graph_compact */
};

typedef struct Output {
    Node *node;       /* the value */
    const char *name; /* external name, e.g. "logits" */
} Output;

struct Graph {
    Arena *arena;     /* owns everything below */
    const char *name; /* graph name */
    int nnodes;       /* live + dead nodes in nodes[] */
    int cap;          /* capacity of nodes[] */
    Node **nodes;     /* topological order */
    int noutputs;     /* number of outputs */
    Output *outputs;  /* [noutputs] */
};

Graph *graph_new(Arena *a, const char *name);
/* Appends a node; srcs must already be in g. Shape left empty (ndim = -1
 * means "to be inferred"). */
Node *graph_add(Graph *g, Op op, DType dt, int nsrc, Node *const *src);
void graph_add_output(Graph *g, Node *n, const char *name);
/* Drops dead nodes and renumbers ids. */
void graph_compact(Graph *g);
/* Deep copy into arena a (node order, names and attrs preserved). */
Graph *graph_clone(Arena *a, const Graph *g);
/* Number of live uses of n (as a src or an output). */
int graph_uses(const Graph *g, const Node *n);
/* Replaces every use of `from` by `to` (srcs and outputs). */
void graph_replace_uses(Graph *g, Node *from, Node *to);
/* Moves n (already in g) to just before `before`, renumbering ids. */
void graph_move_before(Graph *g, Node *n, Node *before);
/* Finds a live node by value name, or NULL. */
Node *graph_find(const Graph *g, const char *name);

void node_set_shape(Node *n, int ndim, const Dim *dim);
bool node_same_shape(const Node *a, const Node *b);
/* Whether some dim of n is the symbol s (e.g. SYM_SEQ: not a one-token decode value). */
bool node_has_sym(const Node *n, Sym s);

/* Attribute access. Getters return dflt when absent; a float getter accepts
 * an int attr. Setters replace an existing key. */
const Attr *node_attr(const Node *n, const char *key);
int64_t node_int(const Node *n, const char *key, int64_t dflt);
double node_float(const Node *n, const char *key, double dflt);
const char *node_str(const Node *n, const char *key, const char *dflt);
void node_set_int(Graph *g, Node *n, const char *key, int64_t v);
void node_set_float(Graph *g, Node *n, const char *key, double v);
void node_set_str(Graph *g, Node *n, const char *key, const char *v);

/* Number of elements with symbols bound to values (batch, seq, ctx). */
int64_t node_numel(const Node *n, const int64_t symval[SYM_COUNT]);
/* Size in bytes as a symbolic expression (product of dims × dtype size). */
bool node_bytes_expr(const Node *n, SymExpr *out);

/* A matmul's prologue operands: whether attr prologue is set, and whether
 * it takes a norm weight as the last src (rmsnorm, gated_rmsnorm; not swiglu). */
bool matmul_has_norm_w(const Node *n);
/* Residual operands of a matmul (0 or 1; negative when malformed). */
int matmul_nres(const Node *n);
/* Whether a node (matmul, moe, hybrid_mix) has the mHC stream update as its
 * epilogue (attr epilogue="mhc", fuse-mhc): its last two srcs are then the
 * streams xs and the coefficients (a matmul's sit before its optional norm
 * weight), and its output the updated streams. */
bool node_mhc_epilogue(const Node *n);
/* Where a moe op's optional operands sit: its residual is src 4 unless attr
 * residual=0; the selection bias (if any) follows; xs, coef of the mhc
 * epilogue come last. -1 when absent. */
int moe_residual_src(const Node *n);
int moe_bias_src(const Node *n);
/* A hybrid_mix's residual operand (src 5, before xs, coef of an mhc epilogue), or -1. */
int hybrid_mix_res_src(const Node *n);

/* ---- text ---- */
void ir_print(const Graph *g, FILE *out);
char *ir_print_str(const Graph *g, Arena *a);
/* Parses one graph; errors carry file:line:col. */
Graph *ir_parse(Arena *a, const char *text, const char *file, Diag *d);

/* ---- checks ---- */
/* Structural and type checks of every node (op arity, src order, inferred
 * shape == declared shape, outputs present). */
bool ir_verify(const Graph *g, Diag *d);
