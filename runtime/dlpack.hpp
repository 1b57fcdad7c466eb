// runtime/ (the top): the C API over core/, and the thread's last-error message.
// DLPack managed tensors for bindings (ferry_dlpack_wrap): the struct of dlpack.h, made
// and freed here, so that the deleter a consumer calls is plain C.
#pragma once

#include <cstdint>

namespace ferry {

// Allocates a DLManagedTensor (the unversioned struct of dlpack.h) over `data`,
// C-contiguous, with a deleter that frees it and nothing else. Throws ferry::Error.
void *dlpack_wrap(void *data, std::int32_t device_type, std::int32_t device_id,
                  std::uint8_t dtype_code, std::uint8_t dtype_bits, std::int32_t ndim,
                  const std::int64_t *shape);

// How many made by dlpack_wrap have not been deleted yet.
std::uint64_t dlpack_live() noexcept;

}  // namespace ferry
