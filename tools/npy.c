/* npy.c — a minimal NumPy .npy writer (format 1.0, little-endian float32). */
#include <stdio.h>
#include <string.h>

#include "atomic_file.h"
#include "cli.h"

bool npy_write_f32(const char *path, const float *data, int64_t rows, int64_t cols, char *err, size_t errlen)
{
    char hdr[128];
    int n = snprintf(hdr, sizeof hdr, "{'descr': '<f4', 'fortran_order': False, 'shape': (%lld, %lld), }",
                     (long long)rows, (long long)cols);
    int total = 10 + n + 1; /* magic(6) version(2) len(2) + dict + '\n' */
    int pad = (64 - total % 64) % 64;
    AtomicStream out;
    FILE *f = atomic_stream_open(&out);
    if (!f)
        return snprintf(err, errlen, "out of memory writing %s", path), false;
    unsigned short hl = (unsigned short)(n + pad + 1);
    fwrite("\x93NUMPY\x01\x00", 1, 8, f);
    fputc(hl & 0xff, f);
    fputc(hl >> 8, f);
    fwrite(hdr, 1, (size_t)n, f);
    for (int i = 0; i < pad; i++)
        fputc(' ', f);
    fputc('\n', f);
    fwrite(data, sizeof(float), (size_t)(rows * cols), f);
    return atomic_stream_commit(&out, path, err, errlen);
}
