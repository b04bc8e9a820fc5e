/* replay.c — main() of a fuzz target outside libFuzzer: runs every file
 * named on the command line, and every file inside the directories named
 * (sorted by name, files starting with '.' skipped), through
 * LLVMFuzzerTestOneInput. A crash, a sanitizer report or a fuzz_fail abort
 * fails the run; so does finding no input at all, or a path that cannot be
 * read. Prints one line: "replayed N inputs".
 * Usage: replay_TARGET PATH...   (meson: the target's corpus and crashes dirs) */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fuzz.h"

/* Reads a whole file; NULL with errno set on failure. */
static uint8_t *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    uint8_t *buf = NULL;
    size_t n = 0, cap = 0;
    for (;;) {
        if (n == cap) {
            cap = cap ? cap * 2 : 65536;
            uint8_t *nb = realloc(buf, cap);
            if (!nb) {
                free(buf);
                fclose(f);
                errno = ENOMEM;
                return NULL;
            }
            buf = nb;
        }
        size_t k = fread(buf + n, 1, cap - n, f);
        n += k;
        if (k == 0)
            break;
    }
    int bad = ferror(f);
    fclose(f);
    if (bad) {
        free(buf);
        errno = EIO;
        return NULL;
    }
    *len = n;
    return buf;
}

/* Runs one file through the target: a copy of exactly its size, so a read
 * past the end is caught by AddressSanitizer. Returns 0 or -1 (unreadable). */
static int run_file(const char *path)
{
    size_t len = 0;
    uint8_t *data = slurp(path, &len);
    if (!data) {
        fprintf(stderr, "replay: cannot read %s: %s\n", path, strerror(errno));
        return -1;
    }
    uint8_t *exact = malloc(len ? len : 1);
    if (!exact) {
        free(data);
        fprintf(stderr, "replay: out of memory for %s\n", path);
        return -1;
    }
    memcpy(exact, data, len);
    free(data);
    LLVMFuzzerTestOneInput(exact, len);
    free(exact);
    return 0;
}

static int cmp_names(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* Runs every regular file in dir; adds the count to *n. */
static int run_dir(const char *dir, int *n)
{
    DIR *d = opendir(dir);
    if (!d) {
        fprintf(stderr, "replay: cannot open %s: %s\n", dir, strerror(errno));
        return -1;
    }
    char **names = NULL;
    size_t count = 0, cap = 0;
    int rc = 0;
    for (struct dirent *e; (e = readdir(d));) {
        if (e->d_name[0] == '.')
            continue;
        if (count == cap) {
            cap = cap ? cap * 2 : 64;
            char **nn = realloc(names, cap * sizeof *names);
            if (!nn) {
                rc = -1;
                break;
            }
            names = nn;
        }
        if (!(names[count] = strdup(e->d_name))) {
            rc = -1;
            break;
        }
        count++;
    }
    closedir(d);
    if (rc == 0 && count)
        qsort(names, count, sizeof *names, cmp_names);
    for (size_t i = 0; i < count; i++) {
        if (rc == 0) {
            size_t plen = strlen(dir) + strlen(names[i]) + 2;
            char *path = malloc(plen);
            struct stat sb;
            if (!path) {
                rc = -1;
            } else {
                snprintf(path, plen, "%s/%s", dir, names[i]);
                if (stat(path, &sb) == 0 && S_ISREG(sb.st_mode)) {
                    if (run_file(path) != 0)
                        rc = -1;
                    else
                        (*n)++;
                }
                free(path);
            }
        }
        free(names[i]);
    }
    free(names);
    if (rc)
        fprintf(stderr, "replay: failed while reading %s\n", dir);
    return rc;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s FILE|DIR...\n", argv[0]);
        return 2;
    }
    int n = 0;
    for (int i = 1; i < argc; i++) {
        struct stat sb;
        if (stat(argv[i], &sb) != 0) {
            fprintf(stderr, "replay: %s: %s\n", argv[i], strerror(errno));
            return 1;
        }
        if (S_ISDIR(sb.st_mode) ? run_dir(argv[i], &n) != 0 : run_file(argv[i]) != 0)
            return 1;
        if (!S_ISDIR(sb.st_mode))
            n++;
    }
    printf("replayed %d inputs\n", n);
    if (n == 0) {
        fprintf(stderr, "replay: no input found\n");
        return 1;
    }
    return 0;
}
