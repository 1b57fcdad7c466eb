// observe/: what ferry tells the outside: timings, the stats segment, the trace.
// StatsSegment: the writer side of the stats segment (stats_layout.hpp). A runtime with
// publish_stats (or FERRY_STATS=1) owns one: created at ferry_create, mode 0600, resized
// at plan to hold the group table, unlinked at destroy.
//
// publish() is a seqlock write: `seq` made odd, the counters stored, `seq` made even, so
// a reader in another process never sees a torn snapshot. The counters are release
// stores (plain moves on x86) rather than relaxed stores plus fences, which ThreadSanitizer
// cannot check. Only one thread writes at a time (the runtime's lock).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "ferry/ferry.h"
#include "observe/stats_layout.hpp"

namespace ferry {

struct SegmentIdentity {
    std::string name;
    ferry_backend backend = FERRY_BACKEND_SIM;
    int device = -1;
    std::string device_name;
    std::uint64_t vram_budget = 0;
};

struct GroupRow {  // a group's published timing, kept by the Observer
    std::uint64_t onloads = 0;
    std::uint64_t timed_onloads = 0;
    std::uint64_t last_onload_ns = 0;
    std::uint64_t total_onload_ns = 0;
};

class StatsSegment {
   public:
    // Creates /dev/shm/ferry.<pid>.<name> (a suffix .2, .3, ... when the process already
    // has a runtime of that name). Throws Error when shared memory cannot be created.
    explicit StatsSegment(const SegmentIdentity &identity);
    ~StatsSegment();
    StatsSegment(const StatsSegment &) = delete;
    StatsSegment &operator=(const StatsSegment &) = delete;

    // The shm_open name, e.g. "/ferry.4242.sim-model".
    const std::string &name() const { return name_; }

    // At plan: grows the segment to hold the group table and fills its fixed columns.
    void set_groups(const std::vector<std::string> &names,
                    const std::vector<std::uint64_t> &image_bytes,
                    const std::vector<std::uint64_t> &resident_bytes,
                    const std::vector<int> &size_class);

    // Seqlock write of the counters, the phase and the given rows of the group table.
    void publish(const ferry_stats &stats, ferry_phase phase, const std::vector<GroupRow> &rows,
                 const std::vector<std::uint32_t> &changed_rows);

    // The process's start time as /proc/self/stat gives it (clock ticks since boot).
    static std::uint64_t process_start(long pid);

   private:
    void map(std::size_t bytes);

    std::string name_;
    int fd_ = -1;
    std::size_t mapped_bytes_ = 0;
    shm::Header *header_ = nullptr;
    shm::GroupEntry *groups_ = nullptr;
};

}  // namespace ferry
