// Where the strategies run: the sim backend with its modeled link, or a CUDA device.
// Gives each strategy a fresh device, stand-in compute, and a clock in modeled time (on
// sim, wall time divided by the link's time scale; on cuda, wall time).
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include "device/device.hpp"
#include "options.hpp"

namespace bench {

using Clock = std::chrono::steady_clock;

class Platform {
   public:
    // model_scale: the model's --scale, which the sim's per-call cost follows. Throws
    // ferry::Error when the cuda backend cannot run here.
    Platform(bool cuda, const LinkModel &link, double model_scale);

    bool cuda() const { return cuda_; }
    // The sim device's options: the link, its per-call cost scaled with the model.
    const ferry::SimOptions &sim() const { return sim_; }
    std::unique_ptr<ferry::Device> make_device() const;
    std::string device_name() const { return device_name_; }

    // Enqueues `seconds` (modeled) of compute on `stream`: the busy kernel on cuda, a busy
    // callback on sim. On sim a nullptr stream runs it on the calling thread.
    void compute(ferry::Device &device, ferry::Stream stream, double seconds) const;

    // Modeled seconds since `start`.
    double since(Clock::time_point start) const;

    // Raw peak H2D GB/s: the best of three large pinned copies, in modeled time.
    double measure_peak_h2d(std::uint64_t bytes) const;

    // Sets the FERRY_SIM_* variables so that runtimes created through the C API model the
    // same link (ferry_config has no fields for all of it).
    static void export_sim_options(const ferry::SimOptions &sim);

   private:
    bool cuda_;
    ferry::SimOptions sim_;
    std::string device_name_;
};

// Resident set size of this process, from /proc.
std::uint64_t rss_bytes();
// How much it grew since `before` (0 if it shrank).
std::uint64_t rss_growth_since(std::uint64_t before);

}  // namespace bench
