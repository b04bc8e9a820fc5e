/* fuzz_frontend.c — fuzz target: the YAML model frontend.
 *
 * The input is a model file. frontend_load_text must either refuse it with
 * a message (which is then printed with its caret line, exercising
 * diag_print on hostile text) or return a graph that the shape rules and
 * the verifier accept: a model the frontend lets through must never fail
 * later with an internal error. It then goes through the whole pass
 * pipeline of `msac compile` (fusion, decode specialisation, lowering,
 * buffer planning; everything but codegen), which may refuse it only with
 * a message. Large accepted models (thousands of layers) skip the O(n^2)
 * verifier and the pipeline to keep each run fast. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "frontend.h"
#include "fuzz.h"
#include "passes.h"

enum { VERIFY_MAX_NODES = 4000 };

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    FILE *sink = fuzz_sink();
    char *text = fuzz_text(data, size);
    if (!text)
        return 0;
    Arena *a = arena_new();
    Diag d = {0};
    Graph *g = frontend_load_text(a, text, "fuzz.yaml", &d);
    if (!g) {
        if (!d.msg[0])
            fuzz_fail("frontend refused a model without a message");
        diag_print(&d, d.file ? text : NULL, sink);
    } else if (g->nnodes <= VERIFY_MAX_NODES) {
        if (!pass_infer_shapes(g, &d) || !pass_verify(g, &d))
            fuzz_fail("the frontend accepted a model whose graph does not verify: %s", d.msg);
        Programs progs;
        Diag dp = {0};
        if (!pipeline_run(a, g, &progs, NULL, &dp) && !dp.msg[0])
            fuzz_fail("the pass pipeline refused a model without a message");
    }
    arena_free(a);
    free(text);
    return 0;
}
