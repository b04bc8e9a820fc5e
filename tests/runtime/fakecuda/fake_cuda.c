/* fake_cuda.c — a stand-in libcuda.so.1 for the GPU-free runtime tests: it
 * exports every entry point in runtime/cuda_syms.def, with "device memory"
 * in host memory, so a session can be created and run on any machine.
 *
 * Behaviour is read from the environment at each call, so one test can
 * walk through the failures a real machine shows:
 *   FAKE_CUDA_INIT   CUresult cuInit returns (default 0; 100 = no device)
 *   FAKE_CUDA_COUNT  devices present (default 1)
 *   FAKE_CUDA_CC     compute capability as major*10+minor (default 90)
 *   FAKE_CUDA_MEM    bytes of device memory (default 1 GiB); allocations
 *                    beyond it fail with CUDA_ERROR_OUT_OF_MEMORY
 * Kernels do nothing unless the test installs a launch hook
 * (fake_cuda_set_hook, found with dlsym), which gets the entry name, the
 * grid and the kernel parameters and may play the kernel on the host.
 * Stream capture is refused, so decode runs as plain launches. Streams and
 * events are synchronous: every copy and launch completes in the call. */
#include <cuda.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#pragma GCC diagnostic ignored "-Wunused-parameter"

/* The hook a test installs: entry name, grid (x, y, z), kernelParams. */
typedef void (*FakeHook)(const char *entry, const unsigned grid[3], void **params, void *user);

/* A loaded "module": the functions looked up in it. */
typedef struct FakeModule {
    int nfuncs;           /* entries resolved so far */
    char *funcs[64];      /* [nfuncs] entry names; a CUfunction is &funcs[i] */
} FakeModule;

static FakeHook hook;       /* installed launch hook, NULL for none */
static void *hook_user;     /* its user pointer */
static size_t mem_used;     /* bytes handed out by cuMemAlloc and not freed */
static char stream_token, event_token; /* addresses that serve as handles */

__attribute__((visibility("default"))) void fake_cuda_set_hook(FakeHook h, void *user)
{
    hook = h;
    hook_user = user;
}

/* Size of each allocation, kept just before it. */
enum { HDR = 256 };

static long env_long(const char *name, long dflt)
{
    const char *v = getenv(name);
    return v && *v ? strtol(v, NULL, 0) : dflt;
}

static size_t mem_total(void) { return (size_t)env_long("FAKE_CUDA_MEM", 1l << 30); }

CUresult CUDAAPI cuInit(unsigned int flags) { return (CUresult)env_long("FAKE_CUDA_INIT", 0); }
CUresult CUDAAPI cuDriverGetVersion(int *version)
{
    *version = 13000;
    return CUDA_SUCCESS;
}

static const struct {
    CUresult r;        /* code */
    const char *name;  /* its enum name */
    const char *text;  /* its description */
} errors[] = {
    {CUDA_SUCCESS, "CUDA_SUCCESS", "no error"},
    {CUDA_ERROR_INVALID_VALUE, "CUDA_ERROR_INVALID_VALUE", "invalid argument"},
    {CUDA_ERROR_OUT_OF_MEMORY, "CUDA_ERROR_OUT_OF_MEMORY", "out of memory"},
    {CUDA_ERROR_SYSTEM_DRIVER_MISMATCH, "CUDA_ERROR_SYSTEM_DRIVER_MISMATCH",
     "system has unsupported display driver / cuda driver combination"},
    {CUDA_ERROR_NO_DEVICE, "CUDA_ERROR_NO_DEVICE", "no CUDA-capable device is detected"},
    {CUDA_ERROR_NOT_SUPPORTED, "CUDA_ERROR_NOT_SUPPORTED", "operation not supported"},
};

static int error_index(CUresult r)
{
    for (size_t i = 0; i < sizeof errors / sizeof errors[0]; i++)
        if (errors[i].r == r)
            return (int)i;
    return -1;
}

CUresult CUDAAPI cuGetErrorName(CUresult error, const char **str)
{
    int i = error_index(error);
    *str = i < 0 ? NULL : errors[i].name;
    return i < 0 ? CUDA_ERROR_INVALID_VALUE : CUDA_SUCCESS;
}

CUresult CUDAAPI cuGetErrorString(CUresult error, const char **str)
{
    int i = error_index(error);
    *str = i < 0 ? NULL : errors[i].text;
    return i < 0 ? CUDA_ERROR_INVALID_VALUE : CUDA_SUCCESS;
}

CUresult CUDAAPI cuDeviceGetCount(int *count)
{
    *count = (int)env_long("FAKE_CUDA_COUNT", 1);
    return CUDA_SUCCESS;
}

CUresult CUDAAPI cuDeviceGet(CUdevice *device, int ordinal)
{
    *device = ordinal;
    return CUDA_SUCCESS;
}

CUresult CUDAAPI cuDeviceGetName(char *name, int len, CUdevice dev)
{
    snprintf(name, (size_t)len, "Fake GPU %d", dev);
    return CUDA_SUCCESS;
}

CUresult CUDAAPI cuDeviceGetAttribute(int *value, CUdevice_attribute attrib, CUdevice dev)
{
    long cc = env_long("FAKE_CUDA_CC", 90);
    switch (attrib) {
    case CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR: *value = (int)(cc / 10); break;
    case CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR: *value = (int)(cc % 10); break;
    case CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT: *value = 4; break;
    default: *value = 0; break;
    }
    return CUDA_SUCCESS;
}

CUresult CUDAAPI cuDeviceTotalMem_v2(size_t *bytes, CUdevice dev)
{
    *bytes = mem_total();
    return CUDA_SUCCESS;
}

CUresult CUDAAPI cuDevicePrimaryCtxRetain(CUcontext *ctx, CUdevice dev)
{
    *ctx = (CUcontext)&stream_token;
    return CUDA_SUCCESS;
}
CUresult CUDAAPI cuDevicePrimaryCtxRelease_v2(CUdevice dev) { return CUDA_SUCCESS; }
CUresult CUDAAPI cuCtxSetCurrent(CUcontext ctx) { return CUDA_SUCCESS; }
CUresult CUDAAPI cuCtxSynchronize(void) { return CUDA_SUCCESS; }

CUresult CUDAAPI cuModuleLoadDataEx(CUmodule *module, const void *image, unsigned int nopts, CUjit_option *opts,
                                    void **values)
{
    FakeModule *m = calloc(1, sizeof *m);
    if (!m)
        return CUDA_ERROR_OUT_OF_MEMORY;
    *module = (CUmodule)m;
    return CUDA_SUCCESS;
}

CUresult CUDAAPI cuModuleUnload(CUmodule module)
{
    FakeModule *m = (FakeModule *)module;
    for (int i = 0; i < m->nfuncs; i++)
        free(m->funcs[i]);
    free(m);
    return CUDA_SUCCESS;
}

CUresult CUDAAPI cuModuleGetFunction(CUfunction *func, CUmodule module, const char *name)
{
    FakeModule *m = (FakeModule *)module;
    if (m->nfuncs == 64 || !(m->funcs[m->nfuncs] = strdup(name)))
        return CUDA_ERROR_OUT_OF_MEMORY;
    *func = (CUfunction)&m->funcs[m->nfuncs++];
    return CUDA_SUCCESS;
}

CUresult CUDAAPI cuFuncSetAttribute(CUfunction func, CUfunction_attribute attrib, int value) { return CUDA_SUCCESS; }

static CUresult launch(CUfunction f, unsigned gx, unsigned gy, unsigned gz, void **params)
{
    const unsigned grid[3] = {gx, gy, gz};
    if (hook)
        hook(*(char **)f, grid, params, hook_user);
    return CUDA_SUCCESS;
}

CUresult CUDAAPI cuLaunchKernel(CUfunction f, unsigned int gx, unsigned int gy, unsigned int gz, unsigned int bx,
                                unsigned int by, unsigned int bz, unsigned int smem, CUstream stream, void **params,
                                void **extra)
{
    return launch(f, gx, gy, gz, params);
}

CUresult CUDAAPI cuLaunchKernelEx(const CUlaunchConfig *config, CUfunction f, void **params, void **extra)
{
    return launch(f, config->gridDimX, config->gridDimY, config->gridDimZ, params);
}

CUresult CUDAAPI cuMemAlloc_v2(CUdeviceptr *dptr, size_t bytes)
{
    if (bytes > mem_total() - mem_used)
        return CUDA_ERROR_OUT_OF_MEMORY;
    char *p = aligned_alloc(HDR, HDR + ((bytes + HDR - 1) / HDR) * HDR);
    if (!p)
        return CUDA_ERROR_OUT_OF_MEMORY;
    memcpy(p, &bytes, sizeof bytes);
    mem_used += bytes;
    *dptr = (CUdeviceptr)(uintptr_t)(p + HDR);
    return CUDA_SUCCESS;
}

CUresult CUDAAPI cuMemFree_v2(CUdeviceptr dptr)
{
    char *p = (char *)(uintptr_t)dptr - HDR;
    size_t bytes;
    memcpy(&bytes, p, sizeof bytes);
    mem_used -= bytes;
    free(p);
    return CUDA_SUCCESS;
}

CUresult CUDAAPI cuMemGetInfo_v2(size_t *free_bytes, size_t *total_bytes)
{
    *total_bytes = mem_total();
    *free_bytes = *total_bytes - mem_used;
    return CUDA_SUCCESS;
}

CUresult CUDAAPI cuMemcpyHtoD_v2(CUdeviceptr dst, const void *src, size_t bytes)
{
    memcpy((void *)(uintptr_t)dst, src, bytes);
    return CUDA_SUCCESS;
}
CUresult CUDAAPI cuMemcpyDtoH_v2(void *dst, CUdeviceptr src, size_t bytes)
{
    memcpy(dst, (const void *)(uintptr_t)src, bytes);
    return CUDA_SUCCESS;
}
CUresult CUDAAPI cuMemcpyHtoDAsync_v2(CUdeviceptr dst, const void *src, size_t bytes, CUstream stream)
{
    return cuMemcpyHtoD_v2(dst, src, bytes);
}
CUresult CUDAAPI cuMemcpyDtoHAsync_v2(void *dst, CUdeviceptr src, size_t bytes, CUstream stream)
{
    return cuMemcpyDtoH_v2(dst, src, bytes);
}
CUresult CUDAAPI cuMemcpyDtoDAsync_v2(CUdeviceptr dst, CUdeviceptr src, size_t bytes, CUstream stream)
{
    memmove((void *)(uintptr_t)dst, (const void *)(uintptr_t)src, bytes);
    return CUDA_SUCCESS;
}
CUresult CUDAAPI cuMemsetD8_v2(CUdeviceptr dst, unsigned char value, size_t n)
{
    memset((void *)(uintptr_t)dst, value, n);
    return CUDA_SUCCESS;
}
CUresult CUDAAPI cuMemsetD8Async(CUdeviceptr dst, unsigned char value, size_t n, CUstream stream)
{
    return cuMemsetD8_v2(dst, value, n);
}

CUresult CUDAAPI cuStreamCreate(CUstream *stream, unsigned int flags)
{
    *stream = (CUstream)&stream_token;
    return CUDA_SUCCESS;
}
CUresult CUDAAPI cuStreamDestroy_v2(CUstream stream) { return CUDA_SUCCESS; }
CUresult CUDAAPI cuStreamSynchronize(CUstream stream) { return CUDA_SUCCESS; }
CUresult CUDAAPI cuStreamBeginCapture_v2(CUstream stream, CUstreamCaptureMode mode) { return CUDA_ERROR_NOT_SUPPORTED; }
CUresult CUDAAPI cuStreamEndCapture(CUstream stream, CUgraph *graph) { return CUDA_ERROR_NOT_SUPPORTED; }

CUresult CUDAAPI cuEventCreate(CUevent *event, unsigned int flags)
{
    *event = (CUevent)&event_token;
    return CUDA_SUCCESS;
}
CUresult CUDAAPI cuEventRecord(CUevent event, CUstream stream) { return CUDA_SUCCESS; }
CUresult CUDAAPI cuEventSynchronize(CUevent event) { return CUDA_SUCCESS; }
CUresult CUDAAPI cuEventElapsedTime_v2(float *ms, CUevent start, CUevent end)
{
    *ms = 0.25f;
    return CUDA_SUCCESS;
}
CUresult CUDAAPI cuEventDestroy_v2(CUevent event) { return CUDA_SUCCESS; }

CUresult CUDAAPI cuGraphInstantiateWithFlags(CUgraphExec *exec, CUgraph graph, unsigned long long flags)
{
    return CUDA_ERROR_NOT_SUPPORTED;
}
CUresult CUDAAPI cuGraphLaunch(CUgraphExec exec, CUstream stream) { return CUDA_ERROR_NOT_SUPPORTED; }
CUresult CUDAAPI cuGraphExecDestroy(CUgraphExec exec) { return CUDA_SUCCESS; }
CUresult CUDAAPI cuGraphDestroy(CUgraph graph) { return CUDA_SUCCESS; }
