// runtime/ (the top): the C API over core/, and the thread's last-error message.
// DLPack managed tensors for bindings (dlpack.hpp).
#include "dlpack.hpp"

#include <atomic>
#include <cstddef>
#include <new>
#include <string>

#include "base/error.hpp"
#include "ferry/ferry.h"

namespace {

using namespace ferry::dlpack;  // DLManagedTensor, DLTensor, DLDevice, DLDataType

// One allocation: the managed tensor first (what the consumer holds), then its shape.
struct Block {
    DLManagedTensor managed;
    std::int64_t shape[FERRY_MAX_DIMS];
    ferry::ViewCount owner;  // the runtime's count, or null
};
static_assert(offsetof(Block, managed) == 0, "a DLManagedTensor * is a Block *");

std::atomic<std::uint64_t> g_live{0};

extern "C" void delete_block(DLManagedTensor *self) {
    auto *block = reinterpret_cast<Block *>(self);
    if (block->owner) block->owner->fetch_sub(1, std::memory_order_acq_rel);
    delete block;
    g_live.fetch_sub(1, std::memory_order_relaxed);
}

}  // namespace

namespace ferry {

void *dlpack_wrap(ViewCount owner, void *data, std::int32_t device_type,
                  std::int32_t device_id, std::uint8_t dtype_code, std::uint8_t dtype_bits,
                  std::int32_t ndim, const std::int64_t *shape) {
    FERRY_EXPECTS(ndim >= 0 && ndim <= FERRY_MAX_DIMS, FERRY_ERROR_INVALID_ARGUMENT,
                  "ndim " + std::to_string(ndim) + " is not in 0.." +
                      std::to_string(FERRY_MAX_DIMS));
    FERRY_EXPECTS(ndim == 0 || shape != nullptr, FERRY_ERROR_INVALID_ARGUMENT,
                  "shape is NULL");
    for (std::int32_t i = 0; i < ndim; ++i) {
        FERRY_EXPECTS(shape[i] >= 0, FERRY_ERROR_INVALID_ARGUMENT,
                      "shape[" + std::to_string(i) + "] is negative");
    }
    FERRY_EXPECTS(dtype_bits > 0, FERRY_ERROR_INVALID_ARGUMENT, "dtype_bits is 0");
    auto *block = new Block{};
    for (std::int32_t i = 0; i < ndim; ++i) block->shape[i] = shape[i];
    DLTensor &t = block->managed.dl_tensor;
    t.data = data;
    t.device = DLDevice{device_type, device_id};
    t.ndim = ndim;
    t.dtype = DLDataType{dtype_code, dtype_bits, 1};
    t.shape = block->shape;
    t.strides = nullptr;  // compact row-major
    t.byte_offset = 0;
    block->managed.manager_ctx = nullptr;
    block->managed.deleter = delete_block;
    if (owner) owner->fetch_add(1, std::memory_order_acq_rel);
    block->owner = std::move(owner);
    g_live.fetch_add(1, std::memory_order_relaxed);
    return &block->managed;
}

std::uint64_t dlpack_live() noexcept { return g_live.load(std::memory_order_relaxed); }

}  // namespace ferry
