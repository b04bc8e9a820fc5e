/* atomic_file.h — write a whole file so that no reader, and no interrupted
 * run, ever sees half of it. Used for plans, the tuning cache, and every
 * file the msac tool writes. */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

/* Writes LEN bytes of DATA to PATH: into PATH.tmp.PID beside it, fsync,
 * rename over PATH, then (best effort) fsync of the directory. On failure
 * PATH is untouched, the temporary is removed, and ERR (if not NULL)
 * receives "cannot create|write|sync|close|rename ...: <strerror>". */
bool file_write_atomic(const char *path, const void *data, size_t len, char *err, size_t errlen);

/* A file composed with stdio in memory, then written with
 * file_write_atomic. Open, fprintf/fwrite to the FILE, then commit (which
 * also frees everything, on success or failure). */
typedef struct {
    FILE *f;    /* the in-memory stream (open_memstream) */
    char *buf;  /* its bytes, valid after fclose [len] */
    size_t len; /* bytes written */
} AtomicStream;

/* NULL when out of memory. */
FILE *atomic_stream_open(AtomicStream *s);
/* Closes the stream and writes its bytes to PATH atomically; false with
 * ERR set if the stream failed (out of memory) or the write did. */
bool atomic_stream_commit(AtomicStream *s, const char *path, char *err, size_t errlen);
