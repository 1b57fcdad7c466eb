// base/: what every room shares: errors, the clock, names in messages.
// The one clock of ferry's observability: steady_clock (CLOCK_MONOTONIC on Linux, the
// same in every process), in nanoseconds.
#pragma once

#include <chrono>
#include <cstdint>

namespace ferry {

inline std::uint64_t steady_now_ns() {
    return static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                          std::chrono::steady_clock::now().time_since_epoch())
                                          .count());
}

}  // namespace ferry
