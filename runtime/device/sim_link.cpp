// device/: the device interface and its backends (sim, cuda); uses base/ and kernels/.
// The sim link's fluid model (sim_link.hpp).
#include "device/sim_link.hpp"

#include <sys/prctl.h>

#include <algorithm>
#include <thread>

namespace ferry {
namespace {

// The last stretch of a wait is spun: a sleeping thread wakes up to tens of microseconds
// late, which the shortest modeled copies would feel.
constexpr auto kSpin = std::chrono::microseconds(40);
constexpr double kDoneBytes = 0.5;  // a copy with less left has finished (rounding)

// A thread's timer slack (default 50 us) delays every timed wake-up; 1 ns makes sleeps
// end when asked. Set once per thread that waits on the model.
void tighten_timer_slack() {
    thread_local const int result = prctl(PR_SET_TIMERSLACK, 1UL, 0UL, 0UL, 0UL);
    (void)result;  // without it, waits are only less precise
}

double seconds(SimClock::duration d) { return std::chrono::duration<double>(d).count(); }

SimClock::duration from_seconds(double s) {
    return std::chrono::duration_cast<SimClock::duration>(std::chrono::duration<double>(s));
}

void spin_until(SimClock::time_point deadline) {
    while (SimClock::now() < deadline) std::this_thread::yield();
}

}  // namespace

void sim_wait_until(SimClock::time_point deadline) {
    tighten_timer_slack();
    if (deadline - SimClock::now() > kSpin) std::this_thread::sleep_until(deadline - kSpin);
    spin_until(deadline);
}

SimClock::duration SimLink::wall(double modeled_us) const {
    return from_seconds(modeled_us * 1e-6 * time_scale_);
}

double SimLink::rate(const Transfer &transfer) const {
    const int other = transfer.direction == kH2D ? kD2H : kH2D;
    const double shared = moving_[other] > 0 ? 0.5 : 1.0;
    return transfer.gbps * 1e9 / time_scale_ / moving_[transfer.direction] * shared;
}

void SimLink::advance(SimClock::time_point now) {
    // Piecewise: rates change whenever a copy finishes, so step from one finish to the next.
    while (last_ < now && !active_.empty()) {
        double step = seconds(now - last_);
        for (const Transfer *t : active_) step = std::min(step, t->remaining / rate(*t));
        for (Transfer *t : active_) t->remaining -= step * rate(*t);
        last_ = std::min(now, last_ + from_seconds(step));
        bool finished = false;
        for (Transfer *t : active_) {
            if (t->remaining >= kDoneBytes) continue;
            t->remaining = 0.0;
            --moving_[t->direction];
            finished = true;
        }
        if (!finished) continue;
        active_.erase(std::remove_if(active_.begin(), active_.end(),
                                     [](const Transfer *t) { return t->remaining <= 0.0; }),
                      active_.end());
        changed_.notify_all();  // the others' share just grew
    }
    last_ = now;
}

void SimLink::begin(Transfer &transfer, Direction direction, std::size_t bytes, double gbps) {
    transfer.direction = direction;
    transfer.gbps = gbps;
    transfer.remaining = 0.0;
    if (gbps <= 0.0 || bytes == 0) return;  // unlimited: takes no link time
    std::lock_guard<std::mutex> lock(mutex_);
    advance(SimClock::now());
    transfer.remaining = static_cast<double>(bytes);
    active_.push_back(&transfer);
    ++moving_[direction];
    changed_.notify_all();  // the others' share just shrank
}

void SimLink::finish(Transfer &transfer) {
    tighten_timer_slack();
    std::unique_lock<std::mutex> lock(mutex_);
    for (;;) {
        const SimClock::time_point now = SimClock::now();
        advance(now);
        if (transfer.remaining <= 0.0) return;
        // Until the next copy finishes, every rate stays as it is.
        double next = transfer.remaining / rate(transfer);
        for (const Transfer *t : active_) next = std::min(next, t->remaining / rate(*t));
        const SimClock::time_point event = now + from_seconds(next);
        if (event - now > kSpin) {
            changed_.wait_until(lock, event - kSpin);
        } else {
            lock.unlock();
            spin_until(event);
            lock.lock();
        }
    }
}

}  // namespace ferry
