/* test_passes.c — textual-IR pass tests (QBE / LLVM FileCheck style, exact).
 *
 * Each tests/passes/NAME.ir holds:
 *     # RUN: pass[,pass...]        passes to run, in order
 *     graph ... { ... }            input IR
 *     # EXPECT:                    (or "# EXPECT-ERROR: text" for a failing pass)
 *     graph ... { ... }            the IR printed after the passes
 * The runner parses the input, verifies it, runs the passes, prints, and
 * compares with the expected text exactly. Run with MSAC_UPDATE=1 to print
 * the actual output instead of failing (for writing a new test). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <dirent.h>
#include <stdlib.h>
#include <string.h>

#include "frontend.h"
#include "passes.h"

#ifndef PASSES_DIR
#error "PASSES_DIR must point at tests/passes/"
#endif

/* Drops '#' comment lines and surrounding blank lines. */
static char *strip(const char *s)
{
    char *out = malloc(strlen(s) + 1);
    size_t n = 0;
    while (*s) {
        const char *e = strchr(s, '\n');
        size_t len = e ? (size_t)(e - s) : strlen(s);
        const char *p = s;
        while (p < s + len && (*p == ' ' || *p == '\t'))
            p++;
        if (p < s + len && *p != '#') {
            memcpy(out + n, s, len);
            n += len;
            out[n++] = '\n';
        }
        s += len + (e != NULL);
    }
    out[n] = 0;
    return out;
}

static void run_file(const char *path)
{
    Diag d = {0};
    char *text = frontend_read_file(path, &d);
    if (!text)
        fail_msg("%s", d.msg);
    char *run = strstr(text, "# RUN:");
    char *exp = strstr(text, "# EXPECT");
    if (!run || !exp)
        fail_msg("%s: needs '# RUN:' and '# EXPECT' lines", path);
    char passes[256];
    sscanf(run + 6, " %255[^\n]", passes);
    bool want_error = !strncmp(exp, "# EXPECT-ERROR:", 15);
    char errtext[512] = "";
    if (want_error)
        sscanf(exp + 15, " %511[^\n]", errtext);
    *exp = 0; /* input is everything before the EXPECT line */
    const char *expected = strchr(exp + 1, '\n');
    Arena *a = arena_new();
    Graph *g = ir_parse(a, text, path, &d);
    if (!g)
        fail_msg("%s:%d:%d: %s", path, d.line, d.col, d.msg);
    if (!ir_verify(g, &d))
        fail_msg("%s: input does not verify: %s", path, d.msg);
    bool ok = true;
    for (char *tok = strtok(passes, ", "); tok && ok; tok = strtok(NULL, ", ")) {
        const PassInfo *pi = pass_lookup(tok);
        if (!pi)
            fail_msg("%s: unknown pass '%s'", path, tok);
        ok = pi->fn(g, &d);
    }
    if (want_error) {
        if (ok)
            fail_msg("%s: expected the passes to fail with '%s'", path, errtext);
        if (!strstr(d.msg, errtext))
            fail_msg("%s: expected error '%s', got '%s'", path, errtext, d.msg);
    } else {
        if (!ok)
            fail_msg("%s: pass failed: %s", path, d.msg);
        char *got = strip(ir_print_str(g, a));
        char *want = strip(expected ? expected : "");
        if (getenv("MSAC_UPDATE") && strcmp(got, want))
            printf("==== %s: actual output\n%s", path, got);
        else if (strcmp(got, want))
            fail_msg("%s: output differs.\n---- expected\n%s---- got\n%s", path, want, got);
        free(got);
        free(want);
    }
    arena_free(a);
    free(text);
}

static void all_pass_tests(void **state)
{
    (void)state;
    DIR *dir = opendir(PASSES_DIR);
    assert_non_null(dir);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(dir))) {
        size_t l = strlen(e->d_name);
        if (l < 4 || strcmp(e->d_name + l - 3, ".ir"))
            continue;
        char path[1024];
        snprintf(path, sizeof path, "%s/%s", PASSES_DIR, e->d_name);
        print_message("pass test %s\n", e->d_name);
        run_file(path);
        n++;
    }
    closedir(dir);
    assert_true(n >= 8); /* the suite must not silently shrink */
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(all_pass_tests)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
