// core/: ferry::Runtime (definition, plan, seal, the pipeline) and what it plans with.
// The compute clock: what the compute-aware planner learns from the first pass. Each
// acquire of a group that no one holds stamps its stream once the group's bytes are in
// place, and its last release stamps it again: the difference is the group's compute.
// Each onload stamps the copy stream around its copy: bytes over time is the link's rate.
// The stamps are the device's own (cuda: events; sim: the stream worker's clock), taken
// only while the clock runs, so the steady state pays one branch per call.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <vector>

#include "device/device.hpp"

namespace ferry {

class ComputeClock {
   public:
    // `seconds_per_ns`: device seconds per nanosecond of the steady clock (sim: 1e-9 over
    // its time scale, so that sim times are modeled ones; cuda: 1e-9).
    ComputeClock(std::size_t groups, double seconds_per_ns);

    bool running() const { return running_; }
    void stop() { running_ = false; }

    // Under the runtime's lock. acquired(): the word that the caller's stream stamps once
    // the group's bytes are in place, or nullptr when this acquire is not timed.
    std::atomic<std::uint64_t> *acquired(std::uint32_t group);
    // The last holder released the group: stamps `stream` if its acquire was timed.
    void released(Device &device, std::uint32_t group, Stream stream);
    // Around one copy of `bytes` on `stream`.
    void copy_begin(Device &device, std::uint64_t bytes, Stream stream);
    void copy_end(Device &device, Stream stream);

    // Folds the stamps that landed into the sums, first asking the device to write those
    // that landed since it last looked (on cuda they land only when polled).
    void collect(Device &device);
    // Whether `group`'s compute has been timed at least once.
    bool timed(std::uint32_t group) const { return count_[group] > 0; }
    // Stamps `stream` into *out (from acquired()) where it stands; never throws.
    static void stamp(Device &device, Stream stream, std::atomic<std::uint64_t> *out) noexcept;
    // Mean seconds of compute per acquire of `group` (0 when never timed).
    double compute_s(std::uint32_t group) const;
    // Bytes per second of the copies timed; 0 when none was.
    double link_bytes_per_s() const;

   private:
    struct Stamp {
        std::atomic<std::uint64_t> begin{0};
        std::atomic<std::uint64_t> end{0};
        bool open = false;  // stamps asked for, not yet folded in
    };
    struct CopyStamp {
        std::uint64_t bytes = 0;
        std::atomic<std::uint64_t> begin{0};
        std::atomic<std::uint64_t> end{0};
    };

    bool running_ = true;
    double seconds_per_ns_;
    std::vector<Stamp> held_;  // per group
    std::vector<bool> pending_end_;  // per group: acquire timed, release not yet
    std::vector<double> sum_s_;
    std::vector<std::uint32_t> count_;
    std::unique_ptr<CopyStamp[]> copies_;
    std::size_t copy_capacity_ = 0, copies_used_ = 0, copies_folded_ = 0;
    double copy_bytes_ = 0.0, copy_s_ = 0.0;
};

}  // namespace ferry
