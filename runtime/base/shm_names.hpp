// base/: what every room shares: errors, the clock, names in messages.
// The POSIX shared memory segments of one kind: the stats segments (observe/) and the
// shared host stores (host/) are both found by their name's prefix in /dev/shm.
#pragma once

#include <dirent.h>

#include <algorithm>
#include <string>
#include <vector>

namespace ferry {

// The names in /dev/shm that start with `prefix` and are longer than it, sorted.
inline std::vector<std::string> shm_names_with_prefix(const std::string &prefix) {
    std::vector<std::string> out;
    DIR *dir = opendir("/dev/shm");
    if (dir == nullptr) return out;
    while (const dirent *entry = readdir(dir)) {
        const std::string name = entry->d_name;
        if (name.size() > prefix.size() && name.compare(0, prefix.size(), prefix) == 0) {
            out.push_back(name);
        }
    }
    closedir(dir);
    std::sort(out.begin(), out.end());
    return out;
}

}  // namespace ferry
