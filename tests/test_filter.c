/* test_filter.c — linked into the GPU test binaries: MSAC_TEST_FILTER runs
 * only the cmocka tests whose names match it, MSAC_TEST_SKIP skips those
 * that match (cmocka patterns: '*' and '?'). tools/gpu-sanitize uses them
 * to keep its slowest tools off the large-model cases and to run the tests
 * that provoke driver errors on purpose apart from the rest. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdlib.h>

__attribute__((constructor)) static void test_filters_from_env(void)
{
    const char *only = getenv("MSAC_TEST_FILTER"), *skip = getenv("MSAC_TEST_SKIP");
    if (only && *only)
        cmocka_set_test_filter(only);
    if (skip && *skip)
        cmocka_set_skip_filter(skip);
}
