// tools/bench/launch_floor.cu — the floor under a decode step made of many
// small dependent launches (issue 3, mamba2-130m decode at batch 1), measured
// on the GPU machine with nothing but the synchronisation itself:
//
//   graph      N empty kernels (grid 132 × 128 threads) in one CUDA graph,
//              one after another, as msac's decode program runs them
//   graph+pdl  the same with programmatic dependent launch: each kernel
//              executes griddepcontrol.wait then launch_dependents, as
//              msac's PDL kernels do
//   barriers   one persistent kernel (one block per SM) passing N grid-wide
//              barriers (a release atomic per block, an acquire spin), what a
//              single-launch decode step would pay instead
//
// Each reports the median over 200 runs of the whole sequence, and the time
// per launch or per barrier. It does no memory traffic: a real step adds its
// data movement on top of these figures.
//
// Build and run on the GPU machine (nvcc is there; not part of the build):
//   nvcc -O2 -arch=sm_90 -o /tmp/launch_floor tools/bench/launch_floor.cu
//   /tmp/launch_floor 74
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cuda_runtime.h>
#include <vector>

#define CK(x)                                                                                     \
    do {                                                                                          \
        cudaError_t e_ = (x);                                                                     \
        if (e_ != cudaSuccess) {                                                                  \
            fprintf(stderr, "launch_floor: %s: %s (line %d)\n", #x, cudaGetErrorString(e_), __LINE__); \
            exit(1);                                                                              \
        }                                                                                         \
    } while (0)

__global__ void empty_kernel(int *sink)
{
    if (sink && threadIdx.x == 1024) // never: keeps the kernel from being optimised away
        *sink = 1;
}

__global__ void pdl_kernel(int *sink)
{
    asm volatile("griddepcontrol.wait;" ::: "memory");
    asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
    if (sink && threadIdx.x == 1024)
        *sink = 1;
}

// n grid barriers; *count starts at 0 and counts arrivals (generation g ends
// when it reaches (g + 1) · gridDim.x).
__global__ void barrier_kernel(unsigned *count, int n)
{
    for (int g = 0; g < n; g++) {
        __syncthreads();
        if (threadIdx.x == 0) {
            unsigned target = (unsigned)(g + 1) * gridDim.x, v;
            asm volatile("red.release.gpu.global.add.u32 [%0], 1;" ::"l"(count) : "memory");
            do
                asm volatile("ld.acquire.gpu.global.u32 %0, [%1];" : "=r"(v) : "l"(count) : "memory");
            while (v < target);
        }
        __syncthreads();
    }
}

static float median(std::vector<float> v)
{
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
}

static cudaGraphExec_t chain(cudaStream_t st, int n, bool pdl, int sms)
{
    cudaGraph_t g;
    CK(cudaStreamBeginCapture(st, cudaStreamCaptureModeGlobal));
    for (int i = 0; i < n; i++) {
        cudaLaunchConfig_t cfg = {};
        cfg.gridDim = dim3(sms);
        cfg.blockDim = dim3(128);
        cfg.stream = st;
        cudaLaunchAttribute attr = {};
        attr.id = cudaLaunchAttributeProgrammaticStreamSerialization;
        attr.val.programmaticStreamSerializationAllowed = 1;
        cfg.attrs = &attr;
        cfg.numAttrs = pdl ? 1 : 0;
        CK(cudaLaunchKernelEx(&cfg, pdl ? pdl_kernel : empty_kernel, (int *)nullptr));
    }
    CK(cudaStreamEndCapture(st, &g));
    cudaGraphExec_t e;
    CK(cudaGraphInstantiate(&e, g, 0));
    CK(cudaGraphDestroy(g));
    return e;
}

template <class F> static float time_it(cudaStream_t st, F run)
{
    cudaEvent_t a, b;
    CK(cudaEventCreate(&a));
    CK(cudaEventCreate(&b));
    for (int i = 0; i < 20; i++)
        run();
    std::vector<float> ms;
    for (int i = 0; i < 200; i++) {
        CK(cudaEventRecord(a, st));
        run();
        CK(cudaEventRecord(b, st));
        CK(cudaEventSynchronize(b));
        float t;
        CK(cudaEventElapsedTime(&t, a, b));
        ms.push_back(t);
    }
    CK(cudaEventDestroy(a));
    CK(cudaEventDestroy(b));
    return median(ms) * 1000.0f; // µs
}

int main(int argc, char **argv)
{
    int n = argc > 1 ? atoi(argv[1]) : 74;
    if (n < 1) {
        fprintf(stderr, "usage: launch_floor [N launches/barriers, default 74]\n");
        return 2;
    }
    cudaDeviceProp prop;
    CK(cudaGetDeviceProperties(&prop, 0));
    int sms = prop.multiProcessorCount;
    cudaStream_t st;
    CK(cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking));
    printf("device %s, %d SMs; %d dependent steps, grid %d x 128 threads\n", prop.name, sms, n, sms);

    for (int pdl = 0; pdl < 2; pdl++) {
        cudaGraphExec_t e = chain(st, n, pdl, sms);
        float us = time_it(st, [&] { CK(cudaGraphLaunch(e, st)); });
        printf("%-10s %8.1f us  %6.2f us per launch\n", pdl ? "graph+pdl" : "graph", us, us / n);
        CK(cudaGraphExecDestroy(e));
    }
    unsigned *count;
    CK(cudaMalloc(&count, sizeof *count));
    float us = time_it(st, [&] {
        CK(cudaMemsetAsync(count, 0, sizeof *count, st));
        barrier_kernel<<<sms, 128, 0, st>>>(count, n);
        CK(cudaGetLastError());
    });
    float base = time_it(st, [&] {
        CK(cudaMemsetAsync(count, 0, sizeof *count, st));
        barrier_kernel<<<sms, 128, 0, st>>>(count, 0);
        CK(cudaGetLastError());
    });
    printf("%-10s %8.1f us  %6.2f us per barrier (one launch with no barrier: %.1f us)\n", "barriers", us,
           (us - base) / n, base);
    CK(cudaFree(count));
    CK(cudaStreamDestroy(st));
    return 0;
}
