/* print.c — the textual IR printer (the inverse of parse.c). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ir.h"

static void print_ref(const Node *n, FILE *out)
{
    if (n->name)
        fprintf(out, "%%%s", n->name);
    else
        fprintf(out, "%%%d", n->id);
}

/* Floats always show a '.', an exponent, or inf/nan so they re-parse as floats. */
static void print_float(double v, FILE *out)
{
    if (isinf(v)) {
        fputs(v < 0 ? "-inf" : "inf", out);
        return;
    }
    if (isnan(v)) {
        fputs("nan", out);
        return;
    }
    char buf[64];
    snprintf(buf, sizeof buf, "%.9g", v);
    char *plus = strchr(buf, '+'); /* "1e+20" -> "1e20": the parser reads numbers as words, and '+' ends a word */
    if (plus)
        memmove(plus, plus + 1, strlen(plus));
    fputs(buf, out);
    if (!strpbrk(buf, ".e"))
        fputs(".0", out);
}

static void print_string(const char *s, FILE *out)
{
    fputc('"', out);
    for (; *s; s++) {
        if (*s == '"' || *s == '\\')
            fputc('\\', out);
        fputc(*s, out);
    }
    fputc('"', out);
}

static void print_node(const Node *n, FILE *out)
{
    fputs("  ", out);
    print_ref(n, out);
    fprintf(out, " = %s %s [", op_info[n->op].name, dtype_name(n->dtype));
    for (int i = 0; i < n->ndim; i++) {
        if (i)
            fputs(", ", out);
        if (n->dim[i].sym)
            fputs(sym_name(n->dim[i].sym), out);
        else
            fprintf(out, "%lld", (long long)n->dim[i].n);
    }
    fputc(']', out);
    for (int i = 0; i < n->nsrc; i++) {
        fputs(i ? ", " : " ", out);
        print_ref(n->src[i], out);
    }
    if (n->ext) {
        fputc(' ', out);
        print_string(n->ext, out);
    }
    if (n->nattr) {
        fputs(" {", out);
        for (int i = 0; i < n->nattr; i++) {
            const Attr *a = &n->attr[i];
            fprintf(out, "%s%s=", i ? ", " : "", a->key);
            if (a->kind == ATTR_INT)
                fprintf(out, "%lld", (long long)a->i);
            else if (a->kind == ATTR_FLOAT)
                print_float(a->f, out);
            else
                print_string(a->s, out);
        }
        fputc('}', out);
    }
    fputc('\n', out);
}

void ir_print(const Graph *g, FILE *out)
{
    fprintf(out, "graph %s {\n", g->name);
    for (int i = 0; i < g->nnodes; i++)
        if (!g->nodes[i]->dead)
            print_node(g->nodes[i], out);
    for (int i = 0; i < g->noutputs; i++) {
        fputs("  output ", out);
        print_ref(g->outputs[i].node, out);
        fputc(' ', out);
        print_string(g->outputs[i].name, out);
        fputc('\n', out);
    }
    fputs("}\n", out);
}

char *ir_print_str(const Graph *g, Arena *a)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (!f)
        return NULL;
    ir_print(g, f);
    fclose(f);
    char *s = arena_strndup(a, buf, len);
    free(buf);
    return s;
}
