// observe/: what ferry tells the outside: timings, the stats segment, the trace.
// The reader side of the stats segment (stats_layout.hpp), for ferry-stat and the tests:
// finds segments in /dev/shm, tells live from stale, and takes consistent snapshots.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "ferry/ferry.h"

namespace ferry {

enum class SegmentState {
    kOk,
    kNotFound,          // no such segment (or it vanished: its runtime was destroyed)
    kPermissionDenied,  // another user's runtime: segments are mode 0600
    kIncompatible,      // not a ferry segment, or another layout version
    kStale,             // its process is gone (killed before destroy)
    kUnsettled,         // being created, or written without pause for 2 s: try again
};

const char *segment_state_name(SegmentState state);

struct GroupSnapshot {
    std::string name;
    std::uint64_t image_bytes = 0;
    bool resident = false;
    std::uint64_t resident_bytes = 0;  // a split group's head; image_bytes when resident
    std::int64_t size_class = -1;
    std::uint64_t onloads = 0;
    std::uint64_t timed_onloads = 0;
    std::uint64_t last_onload_ns = 0;
    std::uint64_t total_onload_ns = 0;
};

struct Snapshot {
    std::string segment;  // name in /dev/shm, e.g. "ferry.4242.model"
    long pid = 0;
    std::string name;
    ferry_backend backend = FERRY_BACKEND_SIM;
    int device = -1;
    std::string device_name;
    std::uint64_t vram_budget = 0;
    std::uint64_t created_unix_ns = 0;
    ferry_phase phase = FERRY_PHASE_DEFINE;
    ferry_stats stats{};
    std::vector<GroupSnapshot> groups;
    std::uint64_t taken_ns = 0;  // the reader's steady clock when the snapshot was taken
};

struct ReadResult {
    SegmentState state = SegmentState::kNotFound;
    std::string message;  // why, when state is not kOk
    Snapshot snapshot;    // valid when state is kOk
};

// Names of every ferry.* segment in /dev/shm, sorted.
std::vector<std::string> list_segments();

// The pid in a segment name "ferry.<pid>.<name>", or 0.
long segment_pid(const std::string &segment);

// Whether the process with this pid exists and (when start is not 0) started at `start`.
bool process_alive(long pid, std::uint64_t start);

// Opens, checks and snapshots one segment (name without the leading '/').
ReadResult read_segment(const std::string &segment);

// Removes a segment; false (with why) when it cannot.
bool remove_segment(const std::string &segment, std::string *why);

}  // namespace ferry
