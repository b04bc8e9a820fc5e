/* cuda_api.h — the CUDA driver API as a table of function pointers loaded
 * at run time with dlopen("libcuda.so.1") + dlsym, so libmsacrt links and
 * runs (and reports clearly) on machines without an NVIDIA driver. cuda.h
 * is included for its types only; nothing links against libcuda.
 *
 * Also: struct msac_device, and turning a CUresult into an msac_status. */
#pragma once
#include <cuda.h>

#include "rt_internal.h"

/* One function-pointer type per entry point: CuFn_MemAlloc, ... */
#define CU_SYM(field, sym, params) typedef CUresult(CUDAAPI *CuFn_##field) params;
#define CU_SYM_ALT(field, sym, alt, params) CU_SYM(field, sym, params)
#include "cuda_syms.def"
#undef CU_SYM
#undef CU_SYM_ALT

/* The driver entry points (see cuda_syms.def), all non-NULL once loaded. */
typedef struct CudaApi {
    void *lib; /* dlopen handle of libcuda (kept open for the process: see cuda_api.c) */
#define CU_SYM(field, sym, params) CuFn_##field field;
#define CU_SYM_ALT(field, sym, alt, params) CU_SYM(field, sym, params)
#include "cuda_syms.def"
#undef CU_SYM
#undef CU_SYM_ALT
} CudaApi;

/* dlopens libcuda and resolves every symbol. MSAC_ERR_NO_DRIVER when the
 * library or a symbol is missing. Does not call cuInit. */
msac_status cuda_api_load(CudaApi *api);

/* "CUDA_ERROR_INVALID_PTX: a PTX JIT compilation failed" (or the number if
 * the driver does not know it). */
void cuda_result_text(const CudaApi *api, CUresult r, char *buf, size_t n);
/* MSAC_ERR_OUT_OF_MEMORY for CUDA_ERROR_OUT_OF_MEMORY, else MSAC_ERR_CUDA. */
msac_code cuda_code(CUresult r);
/* Status "<context>: <CUresult name>: <description>"; fmt is the context,
 * e.g. "cuModuleLoadDataEx(kernel %s)". */
msac_status cuda_error(const CudaApi *api, CUresult r, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* An open device: its driver table and retained primary context. */
struct msac_device {
    CudaApi cu;            /* driver entry points */
    CUdevice dev;          /* the device handle */
    CUcontext ctx;         /* its primary context, retained until close */
    msac_device_info info; /* name, compute capability, SMs, driver, memory */
};
