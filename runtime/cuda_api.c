/* cuda_api.c — loading the CUDA driver with dlopen/dlsym into a CudaApi
 * table (the IREE way), and CUresult -> msac_status.
 *
 * libcuda is never dlclose'd: the driver starts threads and registers
 * handlers that can outlive a context, and unloading it under them is
 * unsafe. dlopen reference-counts, so opening devices repeatedly loads it
 * once. */
#include "cuda_api.h"

#include <dlfcn.h>
#include <stdio.h>
#include <string.h>

/* Each table entry's signature must be the one cuda.h declares for the
 * symbol it is loaded from. */
#if defined(__GNUC__)
#define CU_SYM(field, sym, params)                                                                   \
    _Static_assert(__builtin_types_compatible_p(__typeof__(&sym), CuFn_##field),                     \
                   "signature of " #field " differs from " #sym " in cuda.h");
#define CU_SYM_ALT(field, sym, alt, params) CU_SYM(field, sym, params)
#include "cuda_syms.def"
#undef CU_SYM
#undef CU_SYM_ALT
#endif

/* Symbol names and where each goes in the table. */
static const struct {
    const char *name;   /* exported symbol */
    const char *alt;    /* older name tried when `name` is missing, or NULL */
    size_t offset;      /* offsetof(CudaApi, field) */
} cu_syms[] = {
#define CU_SYM(field, sym, params) {#sym, NULL, offsetof(CudaApi, field)},
#define CU_SYM_ALT(field, sym, alt, params) {#sym, #alt, offsetof(CudaApi, field)},
#include "cuda_syms.def"
#undef CU_SYM
#undef CU_SYM_ALT
};

static const char *const lib_names[] = {"libcuda.so.1", "libcuda.so"};

msac_status cuda_api_load(CudaApi *api)
{
    memset(api, 0, sizeof *api);
    char first_err[256] = "";
    for (size_t i = 0; i < sizeof lib_names / sizeof lib_names[0] && !api->lib; i++) {
        api->lib = dlopen(lib_names[i], RTLD_NOW | RTLD_LOCAL);
        if (!api->lib && i == 0) {
            const char *e = dlerror();
            snprintf(first_err, sizeof first_err, "%s", e ? e : "");
        }
    }
    if (!api->lib) {
        if (!first_err[0] || strstr(first_err, "No such file"))
            return status_make(MSAC_ERR_NO_DRIVER,
                               "no CUDA driver: libcuda.so.1 not found (is an NVIDIA driver installed?)");
        return status_make(MSAC_ERR_NO_DRIVER, "no CUDA driver: cannot load libcuda.so.1: %s", first_err);
    }
    for (size_t i = 0; i < sizeof cu_syms / sizeof cu_syms[0]; i++) {
        void *fn = dlsym(api->lib, cu_syms[i].name);
        if (!fn && cu_syms[i].alt)
            fn = dlsym(api->lib, cu_syms[i].alt);
        if (!fn) {
            api->lib = NULL; /* see the file comment: the library stays loaded */
            return status_make(MSAC_ERR_NO_DRIVER,
                               "no usable CUDA driver: libcuda lacks %s (the NVIDIA driver is too old; update it)",
                               cu_syms[i].name);
        }
        /* POSIX guarantees data and function pointers convert; copy the
         * bits rather than cast (ISO C has no such conversion). */
        memcpy((char *)api + cu_syms[i].offset, &fn, sizeof fn);
    }
    return NULL;
}

void cuda_result_text(const CudaApi *api, CUresult r, char *buf, size_t n)
{
    const char *name = NULL, *desc = NULL;
    if (api->GetErrorName && api->GetErrorName(r, &name) != CUDA_SUCCESS)
        name = NULL;
    if (api->GetErrorString && api->GetErrorString(r, &desc) != CUDA_SUCCESS)
        desc = NULL;
    if (name)
        snprintf(buf, n, "%s: %s", name, desc ? desc : "(no description)");
    else
        snprintf(buf, n, "CUresult %d (unknown to this driver)", (int)r);
}

msac_code cuda_code(CUresult r) { return r == CUDA_ERROR_OUT_OF_MEMORY ? MSAC_ERR_OUT_OF_MEMORY : MSAC_ERR_CUDA; }

msac_status cuda_error(const CudaApi *api, CUresult r, const char *fmt, ...)
{
    char ctx[512], text[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ctx, sizeof ctx, fmt, ap);
    va_end(ap);
    cuda_result_text(api, r, text, sizeof text);
    return status_make(cuda_code(r), "%s: %s", ctx, text);
}
