/* tune_cache.h — the tuning cache: a JSON file of the best schedule found per
 * kernel, per GPU, per shape class. Written by `msac tune`, read by `msac compile`.
 *
 * The file (a user may read, delete or ship it):
 *
 *   {
 *     "msac_tuning_cache": 1,
 *     "entries": [
 *       {"gpu": "NVIDIA H100 80GB HBM3", "sm_count": 132, "driver": 13000, "msac": "0.1.0", "target": "sm_90a",
 *        "kernel": "gemm", "key": "0123456789abcdef", "desc": "gemm_n3352_k768_bf16_128x128x64_w2x4_s3",
 *        "program": "prefill", "batch": 1, "seq": 2048, "ctx": 0,
 *        "schedule": "bm=128,bn=256,bk=64,wm=2,wn=4,stages=3", "default_schedule": "bm=128,bn=128,bk=64,wm=2,wn=4,stages=3",
 *        "best_us": 123.4, "default_us": 150.2, "tried": 20, "rejected": 2}
 *     ]
 *   }
 *
 * Every entry field is required, with its JSON type: strings for gpu, msac,
 * target, kernel, key, desc, program, schedule, default_schedule (each must
 * fit its TuneEntry buffer); integers for sm_count, driver, batch, seq, ctx,
 * tried, rejected; numbers for best_us, default_us. key is 16 lowercase hex
 * digits, program "prefill" or "decode", sm_count, batch and seq >= 1, the
 * other integers and the times >= 0. Members the reader does not know are
 * ignored. Entries with the same identity (see tune_cache_put): the later one
 * wins. Entry indices in messages count from 0. */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

/* The version in "msac_tuning_cache". */
#define TUNE_CACHE_VERSION 1

typedef struct TuneDevice {
    char name[128];   /* GPU name, "NVIDIA H100 80GB HBM3" */
    int sm_count;     /* multiprocessors */
    int driver;       /* CUDA driver version, e.g. 13000 */
} TuneDevice;

typedef struct TuneEntry {
    TuneDevice dev;     /* the GPU it was tuned on */
    char msac[16];      /* msac version that tuned it ("0.1.0") */
    char target[16];    /* plan target, "sm_90a" */
    char kernel[32];    /* kernel template, "gemm" */
    char key[17];       /* kernel key: 16 lowercase hex digits (a hash of everything that fixes the kernel but its schedule) */
    char desc[128];     /* readable: the default variant's kernel instance name */
    char program[16];   /* "prefill" or "decode" */
    int batch, seq;     /* shape class it was timed at (seq = 1 for decode) */
    int ctx;            /* decode: context position it was timed at; 0 for prefill */
    char schedule[160]; /* best variant, "bm=128,bn=256,bk=64,wm=2,wn=4,stages=3" (key=value list) */
    char default_schedule[160]; /* the heuristic's schedule, same form */
    double best_us;     /* best variant's time: median µs, summed over the node's launches */
    double default_us;  /* the default schedule's time, same measure */
    int tried;          /* candidates checked and timed */
    int rejected;       /* candidates refused (invalid schedule, wrong output, failed launch) */
} TuneEntry;

/* Owns its entries; not thread-safe. */
typedef struct TuneCache {
    int n;          /* entries */
    int cap;        /* capacity of e */
    TuneEntry *e;   /* [n], malloc'd */
} TuneCache;

/* Reads a cache file. A missing file is an empty cache (true). A file that is not a valid cache
 * gives false with "PATH: at byte N: ..." (JSON syntax) or "PATH: entry I: field 'F' ..." in err
 * ("cannot read PATH: <strerror>" when it cannot be read, "PATH: not an msac tuning cache
 * (version V)" when "msac_tuning_cache" is missing or not 1).
 * *c must be zeroed or freed before; on false it is left empty. */
bool tune_cache_load(const char *path, TuneCache *c, char *err, size_t errlen);
/* Writes the cache (pretty JSON, one entry per object, stable field order) atomically
 * (atomic_file.h: its messages, "cannot create PATH.tmp.PID: ..." and the like). Times are
 * written so that they read back equal. False also for a time that is not finite. */
bool tune_cache_save(const char *path, const TuneCache *c, char *err, size_t errlen);
/* Adds e, replacing an entry with the same identity (dev name+sm_count+driver, msac, target, key, program, batch, seq, ctx).
 * A replaced entry keeps its place; a new one goes last. Aborts when out of memory. */
void tune_cache_put(TuneCache *c, const TuneEntry *e);
/* The entry to use for kernel `key` compiled for `target` on device dev with this msac version:
 * entries with all of those equal; among them the one whose batch*seq is nearest to `tokens` in |log2| (ties: the larger),
 * or the largest batch*seq when tokens <= 0. NULL if none. Equal batch*seq: the first in the cache. */
const TuneEntry *tune_cache_find(const TuneCache *c, const TuneDevice *dev, const char *msac, const char *target, const char *key, int tokens);
/* The GPUs the cache has entries for, distinct (up to max), in order of first appearance; returns how many. */
int tune_cache_devices(const TuneCache *c, TuneDevice *out, int max);
/* `msac tune --show`: a readable table, one line per entry: GPU (name/SMs/driver), target, program, shape (b×s, ctx),
 * kernel desc, default schedule -> best schedule, default µs, best µs, speed-up (default/best, 2 decimals), tried/rejected. */
void tune_cache_print(FILE *f, const TuneCache *c);
/* Frees the entries and zeroes *c. */
void tune_cache_free(TuneCache *c);
