// The checksum kernel: checksum_ref() (checksum_ref.hpp) of a device range, computed on a
// stream. A plain C++ header, so that code compiled without nvcc can launch it.
#pragma once

#include <cstdint>

namespace ferry::kernels {

// Enqueues on `stream` (a cudaStream_t; nullptr is the legacy default stream) of the
// calling thread's current device the checksum of `bytes` bytes at `data`, which the
// device must be able to read (device memory, or mapped pinned memory). When the work is
// done, *result (device-writable, 8-byte aligned) holds checksum_ref(data, bytes). Any
// alignment of `data` and any `bytes`, 0 included, is fine. Returns without waiting.
// Throws ferry::Error(FERRY_ERROR_DEVICE) when a launch fails.
void launch_checksum(const void *data, std::uint64_t bytes, std::uint64_t *result,
                     void *stream);

}  // namespace ferry::kernels
