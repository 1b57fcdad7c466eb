// The micro-benchmark: CPU cost of ferry's hot path, per call, measured as the calling
// thread's CPU time (waits do not count), on tiny groups so the copies stay out of it.
#pragma once

#include "platform.hpp"

namespace bench {

struct MicroResult {
    double resident_ns = 0.0;    // acquire + release of a resident group
    double prefetched_ns = 0.0;  // acquire + release of a group prefetched into a slot
    double api_ns = 0.0;         // one C API round trip (ferry_phase_get)
    std::uint64_t prefetched_misses = 0;  // should be 0: each acquire found its group there
    double sim_wake_ns = 0.0;    // sim only: waking a parked sim stream thread, which
                                 // prefetched_ns does not include (see micro.cpp)
};

MicroResult run_micro(const Platform &platform);

}  // namespace bench
