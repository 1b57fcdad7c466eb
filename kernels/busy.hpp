// A calibrated busy kernel: stands in for compute in benchmarks and in ordering tests.
// A plain C++ header, so that code compiled without nvcc can launch it.
#pragma once

#include <cstdint>

namespace ferry::kernels {

// Enqueues on `stream` (a cudaStream_t; nullptr is the legacy default stream) a kernel
// that keeps one small block of the calling thread's current device busy until
// `nanoseconds` of wall time have passed, as measured by the device's global timer.
// Returns without waiting. Throws ferry::Error(FERRY_ERROR_DEVICE) when the launch fails.
void launch_busy(void *stream, std::uint64_t nanoseconds);

}  // namespace ferry::kernels
