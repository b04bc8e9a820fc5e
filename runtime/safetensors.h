/* safetensors.h — the runtime's view of a safetensors checkpoint: the
 * memory-mapped file, its validated tensor table, and conversion of a
 * tensor to fp32. Internal to the runtime. */
#pragma once
#include <stddef.h>
#include <stdint.h>

#include "rt_internal.h"

/* Largest tensor rank accepted in a checkpoint. */
#define ST_MAX_DIMS 8

/* One entry of the header. */
typedef struct StTensor {
    char *name;                 /* tensor name (malloc'd) */
    char dtype[16];             /* dtype as written: "F32", "BF16", "I64", ... */
    size_t itemsize;            /* bytes per element; 0 for a dtype this reader does not know */
    int ndim;                   /* rank, 0..ST_MAX_DIMS */
    int64_t shape[ST_MAX_DIMS]; /* [ndim] dims, each >= 0 */
    uint64_t numel;             /* product of shape */
    uint64_t begin, end;        /* byte range inside the data section, begin <= end <= data_len */
} StTensor;

struct msac_weights {
    char *path;              /* as given to msac_weights_open, for messages */
    uint8_t *map;            /* the whole file, mapped read-only */
    size_t map_len;          /* its size */
    const uint8_t *data;     /* data section: map + 8 + header length */
    uint64_t data_len;       /* bytes in the data section */
    StTensor *tensors;       /* [ntensors] sorted by name, names unique */
    size_t ntensors;
};

/* The tensor called `name`, NULL if absent. */
const StTensor *st_find(const msac_weights *w, const char *name);
/* Converts tensor t (F32, BF16 or F16) to fp32 into out[t->numel].
 * MSAC_ERR_BAD_WEIGHTS for other dtypes. */
msac_status st_read_f32(const msac_weights *w, const StTensor *t, float *out);
/* "[4, 1, 8]" */
void st_format_shape(const int64_t *dims, int ndim, char *buf, size_t n);
