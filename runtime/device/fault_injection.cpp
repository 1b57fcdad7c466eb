// device/: the device interface and its backends (sim, cuda); uses base/ and kernels/.
// Fault injection (fault_injection.hpp): the process-wide injector.
#include "device/fault_injection.hpp"

namespace ferry {

const char *fault_name(Fault fault) {
    switch (fault) {
        case Fault::pin: return "pin";
        case Fault::reserve: return "reserve";
        case Fault::copy_submit: return "copy-submit";
        case Fault::event_record: return "event-record";
        case Fault::event_wait: return "event-wait";
        case Fault::copy_error: return "copy-error";
        case Fault::encode: return "encode";
        case Fault::count: break;
    }
    return "?";
}

FaultInjector &FaultInjector::instance() {
    static FaultInjector injector;
    return injector;
}

void FaultInjector::arm(Fault fault, std::uint32_t skip, std::uint32_t times) {
    std::lock_guard<std::mutex> lock(mutex_);
    points_[static_cast<int>(fault)] = Point{skip, times, 0};
    armed_.store(true, std::memory_order_relaxed);
}

void FaultInjector::disarm() noexcept {
    std::lock_guard<std::mutex> lock(mutex_);
    for (Point &point : points_) point = Point{};
    armed_.store(false, std::memory_order_relaxed);
}

std::uint32_t FaultInjector::fired(Fault fault) const {
    std::lock_guard<std::mutex> lock(mutex_);
    return points_[static_cast<int>(fault)].fired;
}

bool FaultInjector::fire_armed(Fault fault) noexcept {
    std::lock_guard<std::mutex> lock(mutex_);
    Point &point = points_[static_cast<int>(fault)];
    if (point.times == 0) return false;
    if (point.skip > 0) {
        --point.skip;
        return false;
    }
    --point.times;
    ++point.fired;
    return true;
}

}  // namespace ferry
