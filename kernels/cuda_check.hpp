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

}  // namespace ferry

#define FERRY_CUDA_TRY_AS(status, call)                                              \
    do {                                                                             \
        const cudaError_t ferry_cuda_err_ = (call);                                  \
        if (ferry_cuda_err_ != cudaSuccess)                                          \
            ::ferry::throw_cuda_error((status), #call, ferry_cuda_err_, __FILE__,   \
                                      __LINE__);                                     \
    } while (0)

#define FERRY_CUDA_TRY(call) FERRY_CUDA_TRY_AS(FERRY_ERROR_DEVICE, call)
