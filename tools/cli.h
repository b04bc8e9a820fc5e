/* cli.h — the msac command-line tool's subcommands (thin wrappers over
 * libmsac, libmsacrt and the IR's CPU evaluator). */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

int cli_info(int argc, char **argv);
int cli_run(int argc, char **argv);
int cli_bench(int argc, char **argv);
int cli_tune(int argc, char **argv);
int cli_import(int argc, char **argv);

/* The tuning cache msac tune writes and msac compile reads by default:
 * $MSAC_TUNING_CACHE, else $XDG_CACHE_HOME/msac/tuning.json, else
 * ~/.cache/msac/tuning.json (buf holds the path built). */
const char *cli_default_tuning_cache(char *buf, size_t len);
typedef struct TuneCache TuneCache;
typedef struct TuneDevice TuneDevice;
typedef struct CompileOptions CompileOptions;
/* Loads the tuning cache at path (NULL: the default above) into *cache and,
 * when it holds entries for this GPU (its only GPU, else GPU 0's), points
 * o->tuning and o->tune_device at them (*tdev). With `progress`, says on
 * stderr which entries it used. False, after a message prefixed `who`,
 * when the file cannot be read; *cache is the caller's to free. */
bool cli_use_tuning(const char *who, const char *path, bool progress, TuneCache *cache, TuneDevice *tdev,
                    CompileOptions *o);
typedef struct msac_plan msac_plan;
typedef struct msac_device msac_device;
/* One line on whether plan's schedules were tuned for dev
 * (msac_plan_tuned_for); with quiet_unless_other, only the warning that
 * they were tuned for another GPU. */
void cli_print_tuning(FILE *f, const msac_plan *plan, const msac_device *dev, bool quiet_unless_other);
/* Whether path names a model YAML (.yaml / .yml) rather than a plan. */
bool cli_is_yaml(const char *path);
/* Fills n tokens below vocab with a fixed pseudo-random sequence (an LCG):
 * the prompts of msac bench and msac tune. */
void cli_fill_tokens(int32_t *t, size_t n, int64_t vocab);

/* Parses a whole decimal number in [lo, hi], nothing else in s. */
bool cli_parse_int(const char *s, int lo, int hi, int *out);
/* Parses a whole decimal number >= 0 that fits 64 bits, nothing else in s. */
bool cli_parse_u64(const char *s, uint64_t *out);
/* Parses "1,2,3" into a malloc'd array; false on a malformed list. */
bool cli_parse_ints(const char *s, int32_t **out, int *n);

/* Writes a 2-D float32 .npy file (rows × cols) atomically (atomic_file.h);
 * false with the reason in err on failure. */
bool npy_write_f32(const char *path, const float *data, int64_t rows, int64_t cols, char *err, size_t errlen);
