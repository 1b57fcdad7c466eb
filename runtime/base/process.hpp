// base/: what every room shares: errors, the clock, names in messages.
// Processes by pid: their start time, and whether they are still alive. The stats
// segment (observe/) and the shared host store (host/) both tell a live owner from a
// dead one this way, a start time telling a reused pid from the process that was.
#pragma once

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <string>

namespace ferry {

// The text of /proc/<pid>/stat; empty when it cannot be read. Read with read(2), not a
// stream: a process that exits while it is read makes read fail (ESRCH), which
// std::filebuf reports by throwing.
inline std::string process_stat_text(long pid) {
    const std::string path = "/proc/" + std::to_string(pid) + "/stat";
    const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return {};
    std::string text;
    char buffer[512];
    for (;;) {
        const ssize_t n = read(fd, buffer, sizeof buffer);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) text.clear();  // gone while read: as if it never was
        if (n <= 0) break;
        text.append(buffer, static_cast<std::size_t>(n));
    }
    close(fd);
    return text;
}

// Field 22 of a /proc/<pid>/stat text, the start time (clock ticks since boot); 0 when the
// text is not one.
inline std::uint64_t stat_start_ticks(const std::string &text) {
    // Field 2 (comm) may hold spaces: count fields after its closing parenthesis.
    const std::size_t close = text.rfind(')');
    if (close == std::string::npos) return 0;
    std::size_t at = close + 2;
    for (int field = 3; field < 22 && at < text.size(); ++field) {
        at = text.find(' ', at);
        if (at == std::string::npos) return 0;
        ++at;
    }
    return std::strtoull(text.c_str() + at, nullptr, 10);
}

// The process's start time as /proc/<pid>/stat gives it; 0 when the process does not
// exist.
inline std::uint64_t process_start_ticks(long pid) {
    return stat_start_ticks(process_stat_text(pid));
}

// Whether the process with this pid exists and (when start is not 0) started at `start`.
// A zombie (killed, not yet reaped) counts as gone.
inline bool process_is_alive(long pid, std::uint64_t start) {
    if (pid <= 0) return false;
    // EPERM: it exists, as another user's process.
    if (kill(static_cast<pid_t>(pid), 0) != 0 && errno == ESRCH) return false;
    const std::string text = process_stat_text(pid);
    const std::size_t close = text.rfind(')');
    if (close != std::string::npos && close + 2 < text.size() && text[close + 2] == 'Z') {
        return false;
    }
    return start == 0 || stat_start_ticks(text) == start;  // the same reading of the file
}

}  // namespace ferry
