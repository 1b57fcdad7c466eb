// device/: the device interface and its backends (sim, cuda); uses base/ and kernels/.
// Fault injection: tests arm a fault, and the next matching device call fails as the real
// device would. The sim backend consults it at every point below; the cuda backend where a
// failure can be forced before calling CUDA (pin, reserve, copy submission, events).
//
// Process-wide, so that a test can arm a fault before the runtime that will meet it
// exists. When nothing is armed, fire() is one relaxed atomic load.
#pragma once

#include <atomic>
#include <cstdint>
#include <mutex>

namespace ferry {

enum class Fault : int {
    pin = 0,        // pinning (page-locking, registering) host memory is refused
    reserve,        // the VRAM reservation fails
    copy_submit,    // submitting an async copy fails
    event_record,   // recording an event fails
    event_wait,     // making a stream wait on an event fails
    copy_error,     // a copy is accepted, then completes with an error (sim only)
    encode,         // not a device call: encoding a tensor at seal runs out of host memory
                    // (core/compressed_images.cpp), on any backend
    count
};

const char *fault_name(Fault fault);

class FaultInjector {
   public:
    static FaultInjector &instance();

    // The (skip + 1)-th next call at `fault` fails, and the `times - 1` after it.
    void arm(Fault fault, std::uint32_t skip = 0, std::uint32_t times = 1);
    void disarm() noexcept;
    // Calls that failed at `fault` since it was last armed.
    std::uint32_t fired(Fault fault) const;

    // True when the calling device call must fail.
    bool fire(Fault fault) noexcept {
        return armed_.load(std::memory_order_relaxed) && fire_armed(fault);
    }

   private:
    struct Point {
        std::uint32_t skip = 0;
        std::uint32_t times = 0;
        std::uint32_t fired = 0;
    };
    bool fire_armed(Fault fault) noexcept;

    std::atomic<bool> armed_{false};
    mutable std::mutex mutex_;
    Point points_[static_cast<int>(Fault::count)];
};

// Disarms every fault when a test scope ends, however it ends.
class ScopedFault {
   public:
    ScopedFault(Fault fault, std::uint32_t skip = 0, std::uint32_t times = 1) {
        FaultInjector::instance().arm(fault, skip, times);
    }
    ~ScopedFault() { FaultInjector::instance().disarm(); }
    ScopedFault(const ScopedFault &) = delete;
    ScopedFault &operator=(const ScopedFault &) = delete;
};

}  // namespace ferry
