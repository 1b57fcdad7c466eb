// observe/: what ferry tells the outside: timings, the stats segment, the trace.
// Observer: what ferry tells the outside about its work (DESIGN.md "Observability").
//
// - Stall time and per-group copy times, from timestamps the device takes as each stream
//   reaches a point (sim: the worker's clock; cuda: events). A timed interval is a Span
//   in a fixed ring; collect() folds the completed ones into the stats.
// - The stats segment (publish_stats or FERRY_STATS=1) that ferry-stat reads.
// - The trace ring (ferry_trace_start or FERRY_TRACE=<path>).
// - Profiler ranges (NVTX on cuda) around onloads and writebacks, named by group.
//
// Every member is called under the runtime's lock, except wait(), which takes none.
// Nothing on the acquire/release path allocates.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "device/device.hpp"
#include "ferry/ferry.h"
#include "observe/stats_segment.hpp"
#include "observe/trace.hpp"

namespace ferry {

struct ObserverOptions {
    std::string name;
    bool publish_stats = false;
    std::string trace_path;  // FERRY_TRACE: trace from create, dumped at destroy
    std::uint32_t trace_events = 0;
    int device = 0;
    std::uint64_t vram_budget = 0;
};

class Observer {
   public:
    struct Span;
    // What acquire() hands to wait(), which runs outside the lock.
    struct Token {
        Span *wait = nullptr;
        Span *hold = nullptr;
    };

    Observer(Device &device, const ObserverOptions &options);
    ~Observer();
    Observer(const Observer &) = delete;
    Observer &operator=(const Observer &) = delete;

    // At plan: the groups, their placement (size class -1: resident; resident_bytes: what
    // stays on the device, a split group's head) and the copy stream.
    void planned(const std::vector<std::string> &names, const std::vector<std::uint64_t> &bytes,
                 const std::vector<std::uint64_t> &resident_bytes,
                 const std::vector<int> &size_class, Stream copy_stream);

    // The device copies, timed, counted per group and wrapped in a profiler range.
    void copy_h2d(std::uint32_t group, void *dst, const void *src, std::size_t bytes,
                  Stream stream);
    void copy_d2h(std::uint32_t group, void *dst, const void *src, std::size_t bytes,
                  Stream stream);

    // Device::decode of a compressed image into `bytes` raw bytes at `dst`, timed: a
    // "decode" span on the stream's track (the decode stream: set_decode_stream).
    void decode(std::uint32_t group, void *table, const void *image, void *dst,
                std::uint64_t bytes, kernels::DecodeResult *result, Stream stream);
    void set_decode_stream(Stream stream) { decode_stream_ = stream; }

    // A disk-tier read of `bytes` file bytes for the group's onload, timed on the host
    // ([begin_ns, end_ns), steady clock): a span on the copy stream's track.
    void disk_read(std::uint32_t group, std::uint64_t bytes, std::uint64_t begin_ns,
                   std::uint64_t end_ns);

    // End of acquire, under the lock: folds in completed spans, traces, publishes.
    Token acquired(std::uint32_t group, Stream stream, bool waits, ferry_stats &stats,
                   ferry_phase phase);
    // After the lock: makes `stream` wait for `ready` (may be null), timing the wait.
    void wait(const Token &token, Stream stream, Event ready);
    // End of release; `last` when no holder is left.
    void released(std::uint32_t group, Stream stream, bool last, ferry_stats &stats,
                  ferry_phase phase);

    // Folds completed spans into stats (stall_ns) and the group table.
    void collect(ferry_stats &stats);
    void publish(const ferry_stats &stats, ferry_phase phase);
    void refresh(ferry_stats &stats, ferry_phase phase) {  // both: for ferry_stats_get
        collect(stats);
        publish(stats, phase);
    }

    void trace_start(std::uint32_t capacity);
    void trace_stop();
    void trace_dump(const std::string &path);
    // At destroy, after the device is idle: the FERRY_TRACE dump.
    void finish(ferry_stats &stats);

    // "/ferry.<pid>.<name>", or empty when not publishing.
    std::string segment_name() const;

   private:
    Span *claim(int kind, std::uint32_t group, Stream stream, std::uint64_t bytes);
    void consume(Span &span, ferry_stats &stats);
    std::uint32_t track_of(Stream stream);
    void touch(std::uint32_t group);
    void copy(int kind, std::uint32_t group, void *dst, const void *src, std::size_t bytes,
              Stream stream);

    Device &device_;
    ObserverOptions options_;
    std::unique_ptr<StatsSegment> segment_;
    Trace trace_;

    std::vector<Span> spans_;  // ring
    std::uint64_t head_ = 0;   // next to claim
    std::uint64_t tail_ = 0;   // oldest not consumed

    std::vector<std::string> group_names_;
    std::vector<std::string> onload_labels_, writeback_labels_;  // profiler range names
    std::vector<GroupRow> rows_;
    std::vector<std::uint32_t> changed_rows_;  // since the last publish
    std::vector<bool> row_changed_;
    std::vector<Span *> holds_;  // open hold span per group, while tracing

    static constexpr std::size_t kMaxTracks = 64;
    std::array<Stream, kMaxTracks> tracks_{};  // [0]: the copy stream
    std::size_t track_count_ = 1;
    Stream decode_stream_ = nullptr;  // named in the trace
};

}  // namespace ferry
