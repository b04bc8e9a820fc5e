/* fuzz_safetensors.c — fuzz target: the safetensors reader.
 *
 * The input is a whole .safetensors file. It is put in a memory file
 * (memfd) and opened through /proc/self/fd with msac_weights_open, exactly
 * as a checkpoint on disk is (mmap, header length, JSON header, every
 * entry's dtype, shape and byte range checked). An opened checkpoint must
 * find each of its tensors by name and convert every F32/BF16/F16 tensor
 * to fp32 within its byte range; then the weights of the runtime tests'
 * fixture plan ("embed.weight" bf16 [32, 8] and
 * "backbone.layers.0.mixer.conv1d.weight" f32 [16, 4]) are looked up in it
 * as a session does: missing tensors, wrong shapes and dtypes must come
 * back as statuses with messages. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "fuzz.h"
#include "plan_fixture.h"
#include "rt_internal.h"
#include "safetensors.h"

static void check_status(msac_status st, const char *what)
{
    if (!st)
        return;
    if (!msac_status_message(st)[0])
        fuzz_fail("%s: an error status without a message", what);
    msac_code c = msac_status_code(st);
    if (c != MSAC_ERR_BAD_WEIGHTS && c != MSAC_ERR_IO && c != MSAC_ERR_OUT_OF_MEMORY)
        fuzz_fail("%s: unexpected %s: %s", what, msac_code_name(c), msac_status_message(st));
    msac_status_free(st);
}

static void against_plan(const msac_weights *w)
{
    static msac_plan *plan;
    if (!plan) {
        Plan *p = fixture_plan();
        plan = fixture_load(p); /* kept for the whole run: built once */
        plan_free(p);
    }
    float out[256]; /* the fixture's largest weight has 256 elements */
    for (int i = 0; i < 2; i++)
        check_status(msac_plan_weight_values(plan, i, w, 1, out), "msac_plan_weight_values");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int fd = memfd_create("fuzz.safetensors", MFD_CLOEXEC);
    if (fd < 0)
        fuzz_fail("memfd_create failed");
    for (size_t off = 0; off < size;) {
        ssize_t k = write(fd, data + off, size - off);
        if (k <= 0)
            fuzz_fail("cannot write the memory file");
        off += (size_t)k;
    }
    char path[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    msac_weights *w = NULL;
    msac_status st = msac_weights_open(path, &w);
    close(fd); /* the mapping stays valid */
    if (st) {
        check_status(st, "msac_weights_open");
        return 0;
    }
    for (size_t i = 0; i < w->ntensors; i++) {
        const StTensor *t = &w->tensors[i];
        if (st_find(w, t->name) != t)
            fuzz_fail("tensor \"%s\" is not found by name", t->name);
        if (t->begin > t->end || t->end > w->data_len)
            fuzz_fail("tensor \"%s\" has bytes [%llu, %llu) outside the %llu-byte data section", t->name,
                      (unsigned long long)t->begin, (unsigned long long)t->end, (unsigned long long)w->data_len);
        if (strcmp(t->dtype, "F32") && strcmp(t->dtype, "BF16") && strcmp(t->dtype, "F16"))
            continue;
        float *out = malloc((size_t)t->numel * sizeof *out + 1);
        if (!out)
            continue;
        check_status(st_read_f32(w, t, out), "st_read_f32");
        free(out);
    }
    against_plan(w);
    msac_weights_close(w);
    return 0;
}
