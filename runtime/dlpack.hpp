// runtime/ (the top): the C API over core/, and the thread's last-error message.
// DLPack managed tensors for bindings (ferry_dlpack_wrap): the struct of dlpack.h, made
// and freed here, so that the deleter a consumer calls is plain C.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>

namespace ferry {
namespace dlpack {

// The layout of dlpack.h (DLPack 0.5 and later; DLManagedTensor is unversioned).
struct DLDevice {
    std::int32_t device_type;
    std::int32_t device_id;
};

struct DLDataType {
    std::uint8_t code;
    std::uint8_t bits;
    std::uint16_t lanes;
};

struct DLTensor {
    void *data;
    DLDevice device;
    std::int32_t ndim;
    DLDataType dtype;
    std::int64_t *shape;
    std::int64_t *strides;
    std::uint64_t byte_offset;
};

struct DLManagedTensor {
    DLTensor dl_tensor;
    void *manager_ctx;
    void (*deleter)(DLManagedTensor *self);
};

}  // namespace dlpack

// Live managed tensors of one runtime, shared by the runtime and each tensor, so that a
// deleter run after the runtime was destroyed still has a count to decrement.
using ViewCount = std::shared_ptr<std::atomic<std::uint64_t>>;

// Allocates a DLManagedTensor (the unversioned struct of dlpack.h) over `data`,
// C-contiguous, with a deleter that frees it and nothing else. It counts in `owner`
// (may be null) until deleted. Throws ferry::Error.
void *dlpack_wrap(ViewCount owner, void *data, std::int32_t device_type,
                  std::int32_t device_id, std::uint8_t dtype_code, std::uint8_t dtype_bits,
                  std::int32_t ndim, const std::int64_t *shape);

// How many made by dlpack_wrap have not been deleted yet.
std::uint64_t dlpack_live() noexcept;

}  // namespace ferry
