/* cli.h — the msac command-line tool's subcommands (thin wrappers over
 * libmsac, libmsacrt and the IR's CPU evaluator). */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

int cli_info(int argc, char **argv);
int cli_run(int argc, char **argv);
int cli_bench(int argc, char **argv);

/* Parses "1,2,3" into a malloc'd array; false on a malformed list. */
bool cli_parse_ints(const char *s, int32_t **out, int *n);

/* Writes a 2-D float32 .npy file (rows × cols); false + errno on failure. */
bool npy_write_f32(const char *path, const float *data, int64_t rows, int64_t cols);
