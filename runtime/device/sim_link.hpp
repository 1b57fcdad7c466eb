// device/: the device interface and its backends (sim, cuda); uses base/ and kernels/.
// The sim backend's model of the host<->device link, shared by all of a sim device's
// copies: each direction runs at the rate of the host memory it touches (pinned or
// pageable), concurrent copies of one direction split that rate, and while both
// directions are busy each gets half, as on PCIe. A fluid model: every start and end of
// a copy re-divides the bandwidth among the copies still moving bytes.
//
// Modeled durations are stretched by time_scale in wall time, so a machine whose memcpy
// is slower than the modeled link can still model it faithfully: the sim's own
// overhead stays small next to the stretched durations.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <mutex>
#include <vector>

namespace ferry {

using SimClock = std::chrono::steady_clock;

// Waits until `deadline` more precisely than a plain sleep (which overshoots by the
// thread's timer slack, ~50 us): sleeps most of the way, then spins.
void sim_wait_until(SimClock::time_point deadline);

class SimLink {
   public:
    enum Direction { kH2D = 0, kD2H = 1 };

    // time_scale: wall seconds per modeled second (>= 1 stretches time).
    explicit SimLink(double time_scale) : time_scale_(time_scale) {}

    // One copy crossing the link. Its bytes start moving at begin() and the copy is done
    // when finish() returns: not before its modeled bytes have crossed.
    class Transfer {
        friend class SimLink;
        Direction direction = kH2D;
        double gbps = 0.0;
        double remaining = 0.0;  // bytes still to cross
    };

    // gbps: the rate of this copy alone (0: unlimited, it takes no link time).
    void begin(Transfer &transfer, Direction direction, std::size_t bytes, double gbps);
    void finish(Transfer &transfer);

    // The wall time a modeled duration takes.
    SimClock::duration wall(double modeled_us) const;

   private:
    double rate(const Transfer &transfer) const;  // bytes per wall second now
    void advance(SimClock::time_point now);       // moves every active copy's bytes to now

    const double time_scale_;
    std::mutex mutex_;
    std::condition_variable changed_;
    std::vector<Transfer *> active_;  // copies with bytes left to move
    int moving_[2] = {0, 0};         // active copies per direction
    SimClock::time_point last_ = SimClock::now();
};

}  // namespace ferry
