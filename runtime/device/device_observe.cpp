// device/: the device interface and its backends (sim, cuda); uses base/ and kernels/.
// The Device interface's default observability: timestamps from a host callback on the
// stream, which on sim runs on the stream's worker thread as it reaches that point.
#include "base/clock.hpp"
#include "device/device.hpp"

namespace ferry {

void Device::timestamp(Stream stream, std::atomic<std::uint64_t> *out) {
    launch_host(
        stream,
        [](void *user) {
            static_cast<std::atomic<std::uint64_t> *>(user)->store(steady_now_ns(),
                                                                   std::memory_order_release);
        },
        out);
}

}  // namespace ferry
