// FERRY_CUDA_TRY: turns a failed CUDA runtime call into ferry::Error naming the call, the
// CUDA error's name and string, and file:line. Shared by the cuda backend and kernels/.
#pragma once

#include <cuda_runtime.h>

#include <string>

#include "../runtime/base/error.hpp"

namespace ferry {

// Throws Error(status, "<call> failed: <cudaErrorName> (<string>) at <file>:<line><detail>").
[[noreturn]] inline void throw_cuda_error(ferry_status status, const char *call,
                                          cudaError_t err, const char *file, int line,
                                          const std::string &detail = std::string()) {
    // Clear a non-sticky error, so that the next unrelated call does not report it again.
    cudaGetLastError();
    throw Error(status, std::string(call) + " failed: " + cudaGetErrorName(err) + " (" +
                            cudaGetErrorString(err) + ") at " + file + ":" +
                            std::to_string(line) + detail);
}

// Launches `kernel` through cudaLaunchKernel, whose return value is this launch's own
// error: a <<<>>> launch can only be checked with cudaGetLastError(), which would report
// and clear an error the caller has not read yet. Throws Error(FERRY_ERROR_DEVICE).
template <typename T>
struct exactly {  // keeps the arguments from deducing the kernel's parameter types
    using type = T;
};

template <typename... Params>
void launch_kernel(const char *name, void (*kernel)(Params...), dim3 grid, dim3 block,
                   cudaStream_t stream, typename exactly<Params>::type... args) {
    void *arguments[] = {static_cast<void *>(&args)...};
    const cudaError_t err = cudaLaunchKernel(reinterpret_cast<const void *>(kernel), grid,
                                             block, arguments, 0, stream);
    if (err != cudaSuccess) throw_cuda_error(FERRY_ERROR_DEVICE, name, err, __FILE__, __LINE__);
}

}  // namespace ferry

#define FERRY_CUDA_TRY_AS(status, call)                                              \
    do {                                                                             \
        const cudaError_t ferry_cuda_err_ = (call);                                  \
        if (ferry_cuda_err_ != cudaSuccess)                                          \
            ::ferry::throw_cuda_error((status), #call, ferry_cuda_err_, __FILE__,   \
                                      __LINE__);                                     \
    } while (0)

#define FERRY_CUDA_TRY(call) FERRY_CUDA_TRY_AS(FERRY_ERROR_DEVICE, call)
