// host/: the host side: the model's one pinned copy, and staging for pageable bytes.
// The host store: one arena holding every group's image, mapped once at plan time and
// pinned in chunks up to a cap. This is the model's only host copy, so host RAM stays
// about 1.0 x model bytes.
//
// Every chunk is its own registration (cudaHostRegister), and CUDA rejects a copy whose
// host range spans two registrations, or a registration and pageable memory (or stages
// it as a slow synchronous copy). So chunks end only at image ends, and so does the
// pinned prefix: no copy of an image, or of a part of one, spans two.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "device/device.hpp"
#include "ferry/ferry.h"

namespace ferry {

// How much of the store is pinned, and how that is reported.
struct PinPolicy {
    std::uint64_t cap_bytes = 0;      // most bytes pinned; 0: default_pinned_cap()
    std::uint64_t chunk_bytes = 256ull << 20;  // pinned per step, reported per step
    bool pageable_fallback = false;   // past the cap (or when refused): keep the rest pageable
    ferry_pin_progress_fn progress = nullptr;
    void *progress_user = nullptr;
};

// 3/4 of physical RAM: pinned pages cannot be swapped, so pinning close to all of RAM
// starves the rest of the system.
std::uint64_t default_pinned_cap();


class HostStore {
   public:
    // `image_ends`: the end offset of each image, ascending and page-aligned, the last
    // the store's size. A chunk holds the images that fit in policy.chunk_bytes, and at
    // least one. Throws Error(FERRY_ERROR_OUT_OF_HOST_MEMORY) when the bytes cannot be
    // mapped, or cannot all be pinned and the policy does not allow pageable bytes.
    HostStore(Device &device, const std::vector<std::size_t> &image_ends,
              const PinPolicy &policy);
    // The same over bytes mapped by the caller (a SharedStore's map()), which keeps them
    // mapped for the store's life and unmaps them itself.
    HostStore(Device &device, const std::vector<std::size_t> &image_ends,
              const PinPolicy &policy, std::byte *mapped);
    ~HostStore();
    HostStore(const HostStore &) = delete;
    HostStore &operator=(const HostStore &) = delete;

    std::byte *base() const { return base_; }
    // [0, pinned_bytes()) is pinned, the rest pageable.
    std::size_t pinned_bytes() const { return pinned_bytes_; }
    std::size_t pageable_bytes() const { return bytes_ - pinned_bytes_; }
    // The end offset of each pinned chunk (each one registration), ascending.
    const std::vector<std::size_t> &chunk_ends() const { return chunk_ends_; }

    // Makes [offset, offset + bytes) read-only; both must be page-aligned. A later write
    // there faults, which is how a bug that writes frozen weights is caught at once.
    void protect_read_only(std::size_t offset, std::size_t bytes);
    // Undoes every protect_read_only (noexcept: used on error paths and at the end).
    void make_writable() noexcept;

    static std::size_t page_size();

   private:
    void pin_chunks(const std::vector<std::size_t> &image_ends, const PinPolicy &policy);
    void release() noexcept;

    void check_and_pin(const std::vector<std::size_t> &image_ends, const PinPolicy &policy);

    Device &device_;
    std::byte *base_ = nullptr;
    bool external_ = false;  // mapped by the caller: not unmapped here
    std::size_t bytes_ = 0;
    std::size_t pinned_bytes_ = 0;
    std::vector<std::size_t> chunk_ends_;  // pinned chunks [previous end, end)
};

}  // namespace ferry
