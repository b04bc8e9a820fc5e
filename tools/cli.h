/* cli.h — the msac command-line tool's subcommands (thin wrappers over
 * libmsac, libmsacrt and the IR's CPU evaluator). */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

int cli_info(int argc, char **argv);
int cli_run(int argc, char **argv);
int cli_bench(int argc, char **argv);

/* Parses a whole decimal number in [lo, hi], nothing else in s. */
bool cli_parse_int(const char *s, int lo, int hi, int *out);
/* Parses a whole decimal number >= 0 that fits 64 bits, nothing else in s. */
bool cli_parse_u64(const char *s, uint64_t *out);
/* Parses "1,2,3" into a malloc'd array; false on a malformed list. */
bool cli_parse_ints(const char *s, int32_t **out, int *n);

/* Writes a 2-D float32 .npy file (rows × cols) atomically (atomic_file.h);
 * false with the reason in err on failure. */
bool npy_write_f32(const char *path, const float *data, int64_t rows, int64_t cols, char *err, size_t errlen);
