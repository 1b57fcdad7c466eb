// observe/: what ferry tells the outside: timings, the stats segment, the trace.
// The stats segment's reader (stats_reader.hpp).
#include "observe/stats_reader.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <thread>
#include <utility>

#include "base/clock.hpp"
#include "base/process.hpp"
#include "base/shm_names.hpp"
#include "observe/stats_layout.hpp"
#include "observe/stats_segment.hpp"

namespace ferry {
namespace {

struct Mapping {
    void *at = MAP_FAILED;
    std::size_t bytes = 0;
    ~Mapping() {
        if (at != MAP_FAILED) munmap(at, bytes);
    }
};

struct Fd {
    int fd = -1;
    ~Fd() {
        if (fd >= 0) close(fd);
    }
};

std::string bounded(const char *text, std::size_t size) {
    return std::string(text, strnlen(text, size));
}

ReadResult failure(SegmentState state, std::string message) {
    ReadResult out;
    out.state = state;
    out.message = std::move(message);
    return out;
}

ReadResult stale(const std::string &segment, long pid) {
    return failure(SegmentState::kStale,
                   segment + ": process " + std::to_string(pid) +
                       " is gone but its segment remains (it ended without ferry_destroy); "
                       "ferry-stat --remove-stale removes it");
}

// One seqlock read; false when a write was in progress or the table outgrew the mapping.
bool try_snapshot(const shm::Header &h, std::size_t mapped, Snapshot &out) {
    const std::uint64_t s1 = h.seq.load(std::memory_order_acquire);
    if (s1 & 1) return false;
    const std::uint64_t phase = h.phase.load(std::memory_order_acquire);
    const std::uint64_t count = h.group_count.load(std::memory_order_acquire);
    std::uint64_t words[shm::kStatWords];
    for (std::size_t i = 0; i < shm::kStatWords; ++i) {
        words[i] = h.stats[i].load(std::memory_order_acquire);
    }
    if (h.groups_offset + count * sizeof(shm::GroupEntry) > mapped) return false;
    const auto *table = reinterpret_cast<const shm::GroupEntry *>(
        reinterpret_cast<const char *>(&h) + h.groups_offset);
    out.groups.resize(count);
    for (std::uint64_t g = 0; g < count; ++g) {
        const shm::GroupEntry &e = table[g];
        GroupSnapshot &row = out.groups[g];
        row.name = bounded(e.name, sizeof e.name);
        row.image_bytes = e.image_bytes.load(std::memory_order_acquire);
        row.resident = e.resident.load(std::memory_order_acquire) != 0;
        row.resident_bytes = e.resident_bytes.load(std::memory_order_acquire);
        row.size_class = static_cast<std::int64_t>(e.size_class.load(std::memory_order_acquire));
        row.onloads = e.onloads.load(std::memory_order_acquire);
        row.timed_onloads = e.timed_onloads.load(std::memory_order_acquire);
        row.last_onload_ns = e.last_onload_ns.load(std::memory_order_acquire);
        row.total_onload_ns = e.total_onload_ns.load(std::memory_order_acquire);
    }
    if (h.seq.load(std::memory_order_relaxed) != s1) return false;
    out.phase = static_cast<ferry_phase>(phase);
    out.stats = ferry_stats{};
    out.stats.struct_size = sizeof(ferry_stats);
    out.stats.backend = h.backend;
    out.stats.phase = static_cast<std::uint32_t>(phase);
    for (std::size_t i = 0; i < shm::kStatWords; ++i) {
        out.stats.*shm::kStatFields[i].member = words[i];
    }
    return true;
}

}  // namespace

const char *segment_state_name(SegmentState state) {
    switch (state) {
        case SegmentState::kOk: return "ok";
        case SegmentState::kNotFound: return "not found";
        case SegmentState::kPermissionDenied: return "permission denied";
        case SegmentState::kIncompatible: return "incompatible";
        case SegmentState::kStale: return "stale";
        case SegmentState::kUnsettled: return "unsettled";
    }
    return "?";
}

std::vector<std::string> list_segments() {
    std::vector<std::string> out;
    for (std::string &name : shm_names_with_prefix(shm::kPrefix)) {
        if (segment_pid(name) > 0) out.push_back(std::move(name));
    }
    return out;
}

long segment_pid(const std::string &segment) {
    const std::size_t start = std::strlen(shm::kPrefix);
    if (segment.rfind(shm::kPrefix, 0) != 0) return 0;
    const std::size_t dot = segment.find('.', start);
    if (dot == std::string::npos || dot == start) return 0;
    long pid = 0;
    for (std::size_t i = start; i < dot; ++i) {
        if (segment[i] < '0' || segment[i] > '9' || pid > 1'000'000'000L) return 0;
        pid = pid * 10 + (segment[i] - '0');
    }
    return pid;
}

bool process_alive(long pid, std::uint64_t start) { return process_is_alive(pid, start); }

ReadResult read_segment(const std::string &segment) {
    const long name_pid = segment_pid(segment);
    Fd fd;
    fd.fd = shm_open(("/" + segment).c_str(), O_RDONLY, 0);
    if (fd.fd < 0) {
        const int err = errno;
        if (err == ENOENT) return failure(SegmentState::kNotFound, segment + ": no such segment");
        if (!process_alive(name_pid, 0)) return stale(segment, name_pid);
        if (err == EACCES) {
            struct stat info {};
            const std::string path = "/dev/shm/" + segment;
            const std::string owner = stat(path.c_str(), &info) == 0
                                          ? " (owned by uid " + std::to_string(info.st_uid) + ")"
                                          : "";
            return failure(SegmentState::kPermissionDenied,
                           segment + ": permission denied" + owner +
                               ": runtimes publish owner-only (mode 0600); run as that user");
        }
        return failure(SegmentState::kIncompatible, segment + ": " + std::strerror(err));
    }
    struct stat info {};
    if (fstat(fd.fd, &info) != 0) {
        return failure(SegmentState::kIncompatible, segment + ": fstat: " + std::strerror(errno));
    }
    Mapping map;
    for (int attempt = 0;; ++attempt) {
        map.bytes = static_cast<std::size_t>(info.st_size);
        if (map.bytes < sizeof(shm::Header)) {
            if (!process_alive(name_pid, 0)) return stale(segment, name_pid);
            if (map.bytes >= sizeof(std::uint64_t) + 2 * sizeof(std::uint32_t)) break;
            if (attempt > 50) {
                return failure(SegmentState::kIncompatible,
                               segment + ": " + std::to_string(map.bytes) +
                                   " bytes is too small for a ferry stats segment");
            }
            std::this_thread::sleep_for(std::chrono::milliseconds(2));
            fstat(fd.fd, &info);
            continue;
        }
        break;
    }
    map.at = mmap(nullptr, map.bytes, PROT_READ, MAP_SHARED, fd.fd, 0);
    if (map.at == MAP_FAILED) {
        return failure(SegmentState::kIncompatible, segment + ": mmap: " + std::strerror(errno));
    }
    const auto &h = *static_cast<const shm::Header *>(map.at);
    const std::uint64_t magic = h.magic.load(std::memory_order_acquire);
    if (magic == 0) {
        if (!process_alive(name_pid, 0)) return stale(segment, name_pid);
        return failure(SegmentState::kUnsettled, segment + ": still being created");
    }
    if (magic != shm::kMagic) {
        return failure(SegmentState::kIncompatible, segment + ": not a ferry stats segment");
    }
    if (h.layout_version != shm::kLayoutVersion || map.bytes < sizeof(shm::Header) ||
        h.struct_size != sizeof(shm::Header) || h.group_entry_size != sizeof(shm::GroupEntry) ||
        h.stat_words != shm::kStatWords) {
        return failure(SegmentState::kIncompatible,
                       segment + ": layout version " + std::to_string(h.layout_version) +
                           " (header " + std::to_string(h.struct_size) +
                           " bytes); this ferry-stat reads version " +
                           std::to_string(shm::kLayoutVersion) + " (header " +
                           std::to_string(sizeof(shm::Header)) +
                           " bytes): use the ferry-stat of the runtime's ferry version");
    }
    if (!process_alive(h.pid, h.process_start)) return stale(segment, static_cast<long>(h.pid));

    ReadResult out;
    Snapshot &s = out.snapshot;
    const std::uint64_t give_up = steady_now_ns() + 2'000'000'000;
    while (!try_snapshot(h, map.bytes, s)) {
        fstat(fd.fd, &info);
        if (static_cast<std::size_t>(info.st_size) > map.bytes) {  // the table grew at plan
            return read_segment(segment);
        }
        if (steady_now_ns() > give_up) {
            return failure(SegmentState::kUnsettled,
                           segment + ": no consistent snapshot in 2 s: the runtime never "
                                     "stopped writing");
        }
        std::this_thread::yield();
    }
    s.taken_ns = steady_now_ns();
    s.segment = segment;
    s.pid = static_cast<long>(h.pid);
    s.name = bounded(h.name, sizeof h.name);
    s.backend = static_cast<ferry_backend>(h.backend);
    s.device = h.device;
    s.device_name = bounded(h.device_name, sizeof h.device_name);
    s.vram_budget = h.vram_budget;
    s.created_unix_ns = h.created_unix_ns;
    out.state = SegmentState::kOk;
    return out;
}

bool remove_segment(const std::string &segment, std::string *why) {
    if (shm_unlink(("/" + segment).c_str()) == 0) return true;
    if (why != nullptr) *why = std::strerror(errno);
    return false;
}

}  // namespace ferry
