/* fuzz.h — what the fuzz targets in tests/fuzz share.
 *
 * Each target defines LLVMFuzzerTestOneInput: under libFuzzer (meson
 * -Dfuzz=true, clang) it is driven by the fuzzer; in every other build it
 * is linked with replay.c, whose main() runs the saved corpus and crash
 * inputs through it. A target returns 0 for any input the code under test
 * handles correctly (accepted or refused with a message) and calls
 * fuzz_fail — which aborts, so both libFuzzer and the replay report it —
 * when an invariant is broken (e.g. a refusal without a message, or a
 * printed graph that does not parse back). */
#pragma once
#include <stddef.h>
#include <stdio.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Prints "fuzz: <message>" to stderr and aborts. */
_Noreturn void fuzz_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* The input as a NUL-terminated string (malloc'd), NULL when out of memory. */
char *fuzz_text(const uint8_t *data, size_t size);
/* /dev/null, opened once: where targets print the messages they check. */
FILE *fuzz_sink(void);
