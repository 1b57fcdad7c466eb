// The host store: one pinned arena holding every group's image, allocated once at plan
// time. This is the model's only host copy, so host RAM stays about 1.0 x model bytes.
#pragma once

#include <cstddef>
#include <cstdint>

#include "device.hpp"

namespace ferry {

class HostStore {
   public:
    HostStore(Device &device, std::size_t bytes);
    ~HostStore();
    HostStore(const HostStore &) = delete;
    HostStore &operator=(const HostStore &) = delete;

    std::byte *base() const { return base_; }
    std::size_t bytes() const { return bytes_; }

    // Makes [offset, offset + bytes) read-only; both must be page-aligned. A later write
    // there faults, which is how a bug that writes frozen weights is caught at once.
    void protect_read_only(std::size_t offset, std::size_t bytes);
    // Undoes every protect_read_only (noexcept: used on error paths and at the end).
    void make_writable() noexcept;

    static std::size_t page_size();

   private:
    Device &device_;
    std::byte *base_ = nullptr;
    std::size_t bytes_ = 0;
};

}  // namespace ferry
