/* plan_buffers.c — buffer planning by liveness.
 *
 * Every computed value that is not a graph output gets a range of the one
 * workspace arena; two values share memory when their lifetimes (from the
 * producing node to the last reader) do not overlap. Sizes are symbolic:
 * values are grouped by the single monomial their size scales with
 * (batch*seq in prefill, batch in decode), packed first-fit within the
 * group in "bytes per unit" (aligned to 128), and the groups are laid end
 * to end. A size that is not a single monomial gets a slot of its own.
 *
 * Results are attributes: ws_off (byte offset) and ws_bytes (size), both
 * symbolic expressions as text; graph outputs get out="<name>" instead. A
 * node whose kernel needs scratch memory says so with scratch="<bytes>"
 * (set by lower); the scratch lives only while that node runs and gets
 * scratch_off. An aux value (OPF_AUX) lives from its producer (src[0]) on. */
#include <stdlib.h>
#include <string.h>

#include "passes.h"

enum { ALIGN = 128 };

typedef struct Slot {
    int node;      /* node id */
    bool scratch;  /* the node's scratch rather than its value */
    int mono;      /* monomial the size scales with, -1 if none */
    int64_t size;  /* coefficient of that monomial, aligned */
    int64_t off;   /* assigned offset, in the same units */
    int start, end;/* lifetime: producer index .. last reader index */
} Slot;

static int single_mono(const SymExpr *e)
{
    int m = -1;
    for (int i = 0; i < MONO_COUNT; i++)
        if (e->c[i]) {
            if (m >= 0)
                return -1;
            m = i;
        }
    return m;
}

bool pass_plan_buffers(Graph *g, Diag *d)
{
    int n = g->nnodes;
    Slot *s = calloc(2 * (size_t)n + 1, sizeof(Slot));
    int *last = calloc((size_t)n + 1, sizeof(int));
    if (!s || !last) {
        free(s);
        free(last);
        return diag_fail(d, "out of memory");
    }
    for (int i = 0; i < n; i++) {
        last[i] = i;
        for (int j = 0; j < g->nodes[i]->nsrc; j++)
            last[g->nodes[i]->src[j]->id] = i;
    }
    int ns = 0;
    for (int i = 0; i < n; i++) {
        Node *v = g->nodes[i];
        if (op_info[v->op].flags & OPF_LEAF)
            continue;
        const char *out = NULL;
        for (int k = 0; k < g->noutputs; k++)
            if (g->outputs[k].node == v)
                out = g->outputs[k].name;
        for (int part = 0; part < 2; part++) { /* the value, then the scratch */
            SymExpr bytes;
            if (part == 0) {
                if (out) {
                    node_set_str(g, v, "out", out);
                    continue;
                }
                if (!node_bytes_expr(v, &bytes)) {
                    free(s);
                    free(last);
                    return diag_fail(d, "%%%s: size is not expressible in batch, seq, ctx", v->name ? v->name : "?");
                }
            } else {
                const char *sc = node_str(v, "scratch", NULL);
                if (!sc)
                    continue;
                if (!sym_parse_expr(sc, &bytes) || bytes.div != 1) {
                    free(s);
                    free(last);
                    return diag_fail(d, "%%%s: bad scratch size '%s'", v->name ? v->name : "?", sc);
                }
            }
            Slot *sl = &s[ns++];
            sl->node = i;
            sl->scratch = part == 1;
            /* an aux value (mhc_coef) is written by its producer's kernel: live from there */
            sl->start = part == 0 && (op_info[v->op].flags & OPF_AUX) ? v->src[0]->id : i;
            sl->end = part ? i : last[i];
            sl->mono = single_mono(&bytes);
            sl->size = sl->mono >= 0 ? (bytes.c[sl->mono] + ALIGN - 1) / ALIGN * ALIGN : 0;
            if (sl->mono < 0) { /* mixed size: its own slot, placed after the groups */
                char buf[128];
                sym_format(bytes, buf, sizeof buf);
                node_set_str(g, v, part ? "scratch_bytes" : "ws_bytes", buf);
            }
        }
    }
    /* First-fit per monomial; slots are in start order already. */
    SymExpr base = sym_const(0);
    for (int m = MONO_COUNT - 1; m >= 0; m--) {
        int64_t top = 0;
        for (int a = 0; a < ns; a++) {
            if (s[a].mono != m)
                continue;
            int64_t off = 0;
            for (bool moved = true; moved;) {
                moved = false;
                for (int b = 0; b < a; b++) {
                    if (s[b].mono != m || s[b].end < s[a].start)
                        continue; /* other group, or dead before a is born */
                    if (off < s[b].off + s[b].size && s[b].off < off + s[a].size) {
                        off = s[b].off + s[b].size;
                        moved = true;
                    }
                }
            }
            s[a].off = off;
            if (off + s[a].size > top)
                top = off + s[a].size;
            Node *v = g->nodes[s[a].node];
            char buf[128];
            sym_format(sym_add(base, sym_mono((Mono)m, off)), buf, sizeof buf);
            node_set_str(g, v, s[a].scratch ? "scratch_off" : "ws_off", buf);
            if (!s[a].scratch) {
                sym_format(sym_mono((Mono)m, s[a].size), buf, sizeof buf);
                node_set_str(g, v, "ws_bytes", buf);
            }
        }
        base = sym_add(base, sym_mono((Mono)m, top));
    }
    for (int a = 0; a < ns; a++) { /* mixed sizes: end to end after the groups */
        if (s[a].mono >= 0)
            continue;
        Node *v = g->nodes[s[a].node];
        SymExpr bytes;
        sym_parse_expr(node_str(v, s[a].scratch ? "scratch_bytes" : "ws_bytes", "0"), &bytes);
        char buf[128];
        sym_format(base, buf, sizeof buf);
        node_set_str(g, v, s[a].scratch ? "scratch_off" : "ws_off", buf);
        base = sym_add(base, bytes);
        base.c[MONO_1] = (base.c[MONO_1] + ALIGN - 1) / ALIGN * ALIGN;
    }
    free(s);
    free(last);
    return true;
}
