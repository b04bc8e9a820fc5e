/* tune_space.h — a kernel template's tuning space (the third column of
 * kernels.def) applied to one lowered node: the candidate schedules the
 * autotuner tries, and the node's kernel key (what fixes its code). */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ir.h"

enum { TUNE_MAX_SETS = 8, TUNE_MAX_CANDS = 512 };

typedef struct TuneCand {
    int n;                  /* attributes it sets */
    struct {
        char key[16];       /* schedule attribute */
        int64_t value;      /* its value */
    } set[TUNE_MAX_SETS];   /* [n], axis by axis in the space's order */
    char text[160];         /* the same as "k=v,k=v" (schedule_parse's value list) */
} TuneCand;

/* The candidates of node n (lowered: has a "kernel" attribute): the product
 * of the axes of its template's space that apply to n (those setting at
 * least one attribute n already has). Returns how many (0: nothing to tune),
 * or -1 with d set for an unknown template, a malformed space (a bug in
 * kernels.def) or more than max candidates. */
int tune_candidates(const Node *n, TuneCand *out, int max, Diag *d);

/* Whether template `kernel`'s space sets attribute `key` (a schedule key). */
bool tune_space_has_key(const char *kernel, const char *key);

/* Sets c's attributes on n. */
void tune_apply(Graph *g, Node *n, const TuneCand *c);

/* Sets the attributes of a "k=v,k=v" schedule text on n; false (n
 * unchanged) when it is malformed or names an attribute that is not one of
 * n's template's schedule keys. */
bool tune_apply_text(Graph *g, Node *n, const char *text);

/* n's current values of the schedule keys its template's space names, as
 * "k=v,k=v" in n's attribute order ("" when none). */
void tune_schedule_text(const Node *n, char *buf, size_t len);

/* The kernel key of lowered node n: its template, op, dtype and shape, every
 * attribute (the schedule's too unless without_schedule), and its operands'
 * ops, dtypes and shapes — everything a kernel emitter reads. Nodes with
 * equal keys get identical launches (emit_plan relies on this to emit each
 * distinct kernel once); without the schedule it identifies what the
 * autotuner tunes. malloc'd. */
char *kernel_key(const Node *n, bool without_schedule);

/* 16 lowercase hex digits of a 64-bit FNV-1a hash of kernel_key(n, true):
 * the tuning cache's "key". buf holds at least 17 bytes. */
void kernel_key_hash(const Node *n, char *buf);
