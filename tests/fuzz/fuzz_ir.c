/* fuzz_ir.c — fuzz target: the textual IR parser and the verifier.
 *
 * The input is IR text. ir_parse either refuses it with a positioned
 * message or returns a graph; ir_verify then runs every op's shape rule on
 * it. A graph that verifies must survive a print round trip: its printed
 * form parses and verifies again, and prints identically. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "ir.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    FILE *sink = fuzz_sink();
    char *text = fuzz_text(data, size);
    if (!text)
        return 0;
    Arena *a = arena_new();
    Diag d = {0};
    Graph *g = ir_parse(a, text, "fuzz.ir", &d);
    if (!g) {
        if (!d.msg[0] || d.line < 1)
            fuzz_fail("ir_parse refused the text without a positioned message (\"%s\")", d.msg);
        diag_print(&d, text, sink);
    } else if (!ir_verify(g, &d)) {
        if (!d.msg[0])
            fuzz_fail("ir_verify refused a graph without a message");
    } else {
        char *p1 = ir_print_str(g, a);
        if (!p1)
            fuzz_fail("ir_print_str failed");
        Diag d2 = {0};
        Graph *g2 = ir_parse(a, p1, "printed.ir", &d2);
        if (!g2)
            fuzz_fail("printed IR does not parse: printed.ir:%d:%d: %s\n%s", d2.line, d2.col, d2.msg, p1);
        if (!ir_verify(g2, &d2))
            fuzz_fail("printed IR does not verify: %s\n%s", d2.msg, p1);
        char *p2 = ir_print_str(g2, a);
        if (!p2 || strcmp(p1, p2))
            fuzz_fail("printing is not stable:\n%s\n--- printed again:\n%s", p1, p2 ? p2 : "(null)");
    }
    arena_free(a);
    free(text);
    return 0;
}
