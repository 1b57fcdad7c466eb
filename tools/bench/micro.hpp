// The micro-benchmark: the cost of ferry's hot path to its caller, per call, on tiny
// groups whose copies are done before the call, so that no call waits (micro.cpp).
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
    // Sim only: prefetched_ns is measured with the sim's threads on the caller's CPU
    // (sim_one_cpu, false if that could not be set), this with them anywhere.
    bool sim_one_cpu = false;
    double prefetched_any_cpu_ns = 0.0;
};

MicroResult run_micro(const Platform &platform);

}  // namespace bench
