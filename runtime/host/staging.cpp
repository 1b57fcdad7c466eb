// host/: the host side: the model's one pinned copy, and staging for pageable bytes.
// The staging ring (staging.hpp).
#include "host/staging.hpp"

#include <algorithm>
#include <cstring>

#include "device/device.hpp"

namespace ferry {

StagingRing::StagingRing(Device &device) : device_(device) {
    try {
        for (std::size_t i = 0; i < kBuffers; ++i) {
            Buffer buffer;
            buffer.data = static_cast<std::byte *>(device_.alloc_pinned(kBufferBytes));
            buffers_.push_back(buffer);
            buffers_.back().free = device_.create_event();
        }
    } catch (...) {
        release();
        throw;
    }
}

StagingRing::~StagingRing() { release(); }

void StagingRing::release() noexcept {
    for (Buffer &buffer : buffers_) {
        if (buffer.free != nullptr) device_.destroy_event(buffer.free);
        device_.free_pinned(buffer.data, kBufferBytes);
    }
    buffers_.clear();
}

void StagingRing::copy_h2d(std::byte *dst, const std::byte *src, std::size_t bytes,
                           Stream stream) {
    fill_h2d(
        dst, bytes, stream,
        [](void *user, std::byte *buffer, std::size_t offset, std::size_t n) {
            std::memcpy(buffer, static_cast<const std::byte *>(user) + offset, n);
        },
        const_cast<std::byte *>(src));
}

void StagingRing::fill_h2d(std::byte *dst, std::size_t bytes, Stream stream, Fill fill,
                           void *user) {
    for (std::size_t done = 0; done < bytes;) {
        Buffer &buffer = buffers_[next_++ % buffers_.size()];
        device_.event_synchronize(buffer.free);
        const std::size_t n = std::min(bytes - done, kBufferBytes);
        fill(user, buffer.data, done, n);
        device_.copy_h2d(dst + done, buffer.data, n, stream);
        device_.record(buffer.free, stream);
        done += n;
    }
}

}  // namespace ferry
