// base/: what every room shares: errors, the clock, names in messages.
// The RLIMIT_MEMLOCK soft limit as text, for messages about pinning that was refused.
#pragma once

#include <sys/resource.h>

#include <string>

namespace ferry {

// "unlimited", "65536 bytes" or "unknown".
inline std::string memlock_limit_text() {
    rlimit limit{};
    if (getrlimit(RLIMIT_MEMLOCK, &limit) != 0) return "unknown";
    if (limit.rlim_cur == RLIM_INFINITY) return "unlimited";
    return std::to_string(limit.rlim_cur) + " bytes";
}

}  // namespace ferry
