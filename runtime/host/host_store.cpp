// host/: the host side: the model's one pinned copy, and staging for pageable bytes.
// The host store (host_store.hpp): mapping, pinning in chunks, read-only images.
#include "host/host_store.hpp"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <string>

#include "base/error.hpp"
#include "base/memlock.hpp"

namespace ferry {

std::uint64_t default_pinned_cap() {
    const long pages = sysconf(_SC_PHYS_PAGES);
    if (pages <= 0) return UINT64_MAX;
    return static_cast<std::uint64_t>(pages) / 4 * 3 * HostStore::page_size();
}

HostStore::HostStore(Device &device, const std::vector<std::size_t> &image_ends,
                     const PinPolicy &policy)
    : device_(device), bytes_(image_ends.empty() ? 0 : image_ends.back()) {
    check_and_pin(image_ends, policy);
}

HostStore::HostStore(Device &device, const std::vector<std::size_t> &image_ends,
                     const PinPolicy &policy, std::byte *mapped)
    : device_(device), base_(mapped), external_(true),
      bytes_(image_ends.empty() ? 0 : image_ends.back()) {
    check_and_pin(image_ends, policy);
}

void HostStore::check_and_pin(const std::vector<std::size_t> &image_ends,
                              const PinPolicy &policy) {
    const std::size_t bytes = bytes_;
    // Every end page-aligned: two registrations that shared a page would overlap, which
    // cudaHostRegister refuses (cudaErrorHostMemoryAlreadyRegistered).
    FERRY_EXPECTS(bytes > 0 && std::is_sorted(image_ends.begin(), image_ends.end()) &&
                      image_ends.front() > 0 &&
                      std::all_of(image_ends.begin(), image_ends.end(),
                                  [](std::size_t end) { return end % page_size() == 0; }),
                  FERRY_ERROR_INTERNAL, "host store: image ends must be page-aligned and "
                  "ascend from > 0");
    const std::uint64_t cap = policy.cap_bytes != 0 ? policy.cap_bytes : default_pinned_cap();
    FERRY_EXPECTS(bytes <= cap || policy.pageable_fallback, FERRY_ERROR_OUT_OF_HOST_MEMORY,
            "the host store needs " + std::to_string(bytes) +
                " pinned bytes, more than the pinned cap of " + std::to_string(cap) +
                " bytes (config.pinned_cap_bytes or FERRY_PINNED_CAP; default 3/4 of RAM; "
                "RLIMIT_MEMLOCK is " + memlock_limit_text() +
                "). Raise the cap, or set config.pageable_fallback = 1 to keep the rest "
                "pageable (slower copies)");
    if (base_ == nullptr) {
        void *ptr = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                         -1, 0);
        FERRY_EXPECTS(ptr != MAP_FAILED, FERRY_ERROR_OUT_OF_HOST_MEMORY,
                "mmap of " + std::to_string(bytes) + " bytes for the host store failed: " +
                    std::strerror(errno));
        base_ = static_cast<std::byte *>(ptr);
    }
    try {
        PinPolicy capped = policy;
        capped.cap_bytes = cap;
        pin_chunks(image_ends, capped);
    } catch (...) {
        release();
        throw;
    }
}

HostStore::~HostStore() { release(); }

void HostStore::release() noexcept {
    if (base_ == nullptr) return;
    make_writable();  // before the backend unpins
    std::size_t start = 0;
    for (std::size_t end : chunk_ends_) {
        device_.unpin(base_ + start, end - start);
        start = end;
    }
    chunk_ends_.clear();
    if (!external_) munmap(base_, bytes_);
    base_ = nullptr;
}

// Pins chunk by chunk from the start, so progress can be reported and a refusal is met
// after one chunk, not after minutes of pinning. Each chunk ends at an image end: the
// last that fits in chunk_bytes, or the next one when a single image is larger. The
// pinned prefix ends at the last image end within the cap; images past it are pageable.
void HostStore::pin_chunks(const std::vector<std::size_t> &image_ends, const PinPolicy &policy) {
    const std::uint64_t chunk = std::max<std::uint64_t>(policy.chunk_bytes, 1);
    const auto within_cap = std::upper_bound(image_ends.begin(), image_ends.end(),
                                             std::min<std::uint64_t>(bytes_, policy.cap_bytes));
    auto next = image_ends.begin();  // the first image end past pinned_bytes_
    while (next != within_cap) {
        auto end = next;  // the chunk ends at *end
        while (end + 1 != within_cap && *(end + 1) - pinned_bytes_ <= chunk) ++end;
        const std::size_t length = *end - pinned_bytes_;
        next = end + 1;
        try {
            device_.pin(base_ + pinned_bytes_, length);
        } catch (const Error &error) {
            if (!policy.pageable_fallback) {
                throw Error(error.status(),
                            "pinning the host store failed after " +
                                std::to_string(pinned_bytes_) + " of " +
                                std::to_string(bytes_) + " bytes (RLIMIT_MEMLOCK is " +
                                memlock_limit_text() + "; config.pageable_fallback = 1 "
                                "keeps the rest pageable): " + error.what());
            }
            break;  // the rest stays pageable, reported in stats
        }
        pinned_bytes_ += length;
        chunk_ends_.push_back(pinned_bytes_);
        if (policy.progress != nullptr) {
            policy.progress(policy.progress_user, pinned_bytes_, 0, bytes_);
        }
    }
    if (pinned_bytes_ < bytes_ && policy.progress != nullptr) {
        policy.progress(policy.progress_user, pinned_bytes_, bytes_ - pinned_bytes_, bytes_);
    }
}

void HostStore::protect_read_only(std::size_t offset, std::size_t bytes) {
    if (bytes == 0) return;
    const int rc = mprotect(base_ + offset, bytes, PROT_READ);
    FERRY_EXPECTS(rc == 0, FERRY_ERROR_INTERNAL,
            "mprotect of " + std::to_string(bytes) + " host bytes at offset " +
                std::to_string(offset) + " failed: " + std::strerror(errno));
}

void HostStore::make_writable() noexcept {
    if (base_ != nullptr) mprotect(base_, bytes_, PROT_READ | PROT_WRITE);
}

std::size_t HostStore::page_size() {
    static const std::size_t size = static_cast<std::size_t>(sysconf(_SC_PAGESIZE));
    return size;
}

}  // namespace ferry
