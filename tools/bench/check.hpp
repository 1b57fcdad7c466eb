// What ferry-bench does when a C API call it relies on fails: there is no figure to report,
// so it prints the call, the status and the library's message, and exits with status 1.
#pragma once

#include <cstdio>
#include <cstdlib>

#include "ferry/ferry.h"

namespace bench {

inline void check(ferry_status status, const char *call) {
    if (status == FERRY_OK) return;
    std::fprintf(stderr, "ferry-bench: %s failed: %s\n  %s\n", call, ferry_status_string(status),
                 ferry_last_error());
    std::exit(1);
}

// The runtime's stats, all fields this build knows.
inline ferry_stats stats_of(ferry_runtime *rt) {
    ferry_stats stats;
    stats.struct_size = sizeof stats;
    check(ferry_stats_get(rt, &stats), "ferry_stats_get");
    return stats;
}

}  // namespace bench
