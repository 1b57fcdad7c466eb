// observe/: what ferry tells the outside: timings, the stats segment, the trace.
// Trace: a bounded ring of timeline events, dumped as Chrome trace-event JSON (Perfetto
// and chrome://tracing open it). One track per stream: ferry's copy stream, and each
// compute stream that acquired a group. When the ring is full the oldest events are
// overwritten and counted as dropped. Recording allocates nothing.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "ferry/ferry.h"

namespace ferry {

struct TraceEvent {
    enum Kind : std::uint8_t {
        kOnload,     // span, copy track: a group's host-to-device copy
        kWriteback,  // span, copy track: a mutable tensor's device-to-host copy
        kWait,       // span, compute track: the stream waited for a group's copy
        kHold,       // span, compute track: from the group's acquire to its release
        kAcquire,    // instant: the host called acquire
        kRelease,    // instant: the host called release
        kDiskRead,   // span, copy track: the host read a disk-tier image's bytes from its
                     // files into the staging ring, before their host-to-device copy
        kDecode,     // span, decode track: a compressed image decoded into its slot
    };
    Kind kind = kAcquire;
    std::uint32_t group = 0;
    std::uint32_t track = 0;
    std::uint64_t ts_ns = 0;      // steady clock
    std::uint64_t dur_ns = 0;     // spans
    std::uint64_t bytes = 0;      // copies
    std::uint64_t issued_ns = 0;  // copies: when the host issued them
};

class Trace {
   public:
    static constexpr std::uint32_t kDefaultCapacity = FERRY_TRACE_DEFAULT_EVENTS;

    // Starts (or restarts, clearing) recording into a ring of `capacity` events.
    void start(std::uint32_t capacity);
    void stop() { recording_ = false; }
    bool recording() const { return recording_; }
    bool started() const { return !ring_.empty(); }

    void add(const TraceEvent &event);

    // Writes the events, sorted per track by time. Throws Error when the file cannot be
    // written. `tracks` names tracks by index; `groups` names groups by index.
    void dump(const std::string &path, long pid, const std::string &process,
              const std::vector<std::string> &tracks,
              const std::vector<std::string> &groups) const;

   private:
    std::vector<TraceEvent> ring_;
    std::uint64_t added_ = 0;
    std::uint64_t origin_ns_ = 0;
    bool recording_ = false;
};

}  // namespace ferry
