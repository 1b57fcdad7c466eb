// host/: the host side: the model's one pinned copy, and staging for pageable bytes.
// The staging ring: with pageable_fallback, the host store's bytes past the pinned cap
// are copied to the device through a few small pinned buffers, so that the DMA itself
// always reads pinned memory. Each buffer is refilled once its previous copy has read it;
// that host wait, and the CPU copy into the buffer, are the price of pageable bytes.
// A buffer may also be filled by a function (fill_h2d), for bytes read from files.
#pragma once

#include <cstddef>
#include <vector>

#include "device/device.hpp"

namespace ferry {

class StagingRing {
   public:
    static constexpr std::size_t kBuffers = 2;
    static constexpr std::size_t kBufferBytes = 4u << 20;

    explicit StagingRing(Device &device);
    ~StagingRing();
    StagingRing(const StagingRing &) = delete;
    StagingRing &operator=(const StagingRing &) = delete;

    // Copies `bytes` of pageable host memory at `src` to `dst` on `stream`, through the
    // ring. The host bytes must be current when this is called.
    void copy_h2d(std::byte *dst, const std::byte *src, std::size_t bytes, Stream stream);

    // Writes bytes [offset, offset + n) of a source into `buffer` (n <= kBufferBytes).
    // May throw: the copy stops there, having issued the buffers filled before.
    using Fill = void (*)(void *user, std::byte *buffer, std::size_t offset, std::size_t n);
    // copy_h2d() for a source that is not in memory (the disk tier): each buffer of the
    // ring is filled by `fill`, then copied to `dst` on `stream`.
    void fill_h2d(std::byte *dst, std::size_t bytes, Stream stream, Fill fill, void *user);

   private:
    void release() noexcept;

    struct Buffer {
        std::byte *data = nullptr;
        Event free = nullptr;  // recorded after the last copy that read the buffer
    };

    Device &device_;
    std::vector<Buffer> buffers_;
    std::size_t next_ = 0;
};

}  // namespace ferry
