// observe/: what ferry tells the outside: timings, the stats segment, the trace.
// The Observer (observer.hpp).
#include "observe/observer.hpp"

#include <unistd.h>

#include <cstdio>

#include "base/clock.hpp"
#include "base/error.hpp"

namespace ferry {
namespace {

constexpr std::size_t kSpanRing = 1024;

enum SpanKind { kCopyH2D, kCopyD2H, kWait, kHold, kDecode };

// A timestamp that cannot be taken leaves its span untimed; it never fails the call.
void stamp(Device &device, Stream stream, std::atomic<std::uint64_t> *out) noexcept {
    try {
        device.timestamp(stream, out);
    } catch (...) {
        out->store(kTimestampLost, std::memory_order_release);
    }
}

}  // namespace

struct Observer::Span {
    int kind = kCopyH2D;
    std::uint32_t group = 0;
    std::uint32_t track = 0;
    std::uint64_t bytes = 0;
    std::uint64_t issued_ns = 0;
    bool open = false;  // claimed, not yet consumed
    std::atomic<std::uint64_t> begin{0};  // set by the device when the stream gets there
    std::atomic<std::uint64_t> end{0};
};

Observer::Observer(Device &device, const ObserverOptions &options)
    : device_(device), options_(options), spans_(kSpanRing) {
    if (options_.publish_stats) {
        SegmentIdentity identity;
        identity.name = options_.name;
        identity.backend = device_.backend();
        identity.device = identity.backend == FERRY_BACKEND_CUDA ? options_.device : -1;
        identity.device_name = device_.name();
        identity.vram_budget = options_.vram_budget;
        segment_ = std::make_unique<StatsSegment>(identity);
    }
    if (!options_.trace_path.empty()) trace_.start(options_.trace_events);
}

Observer::~Observer() = default;

std::string Observer::segment_name() const { return segment_ ? segment_->name() : ""; }

void Observer::planned(const std::vector<std::string> &names,
                       const std::vector<std::uint64_t> &bytes,
                       const std::vector<std::uint64_t> &resident_bytes,
                       const std::vector<int> &size_class, Stream copy_stream) {
    // A re-plan (core/replan.cpp) plans the same groups again: their labels, published
    // counters and holds carry on, and only the placement below is new.
    const bool replan = !group_names_.empty() && group_names_ == names;
    if (!replan) {
        group_names_ = names;
        onload_labels_.clear();
        writeback_labels_.clear();
        for (const std::string &name : names) {
            onload_labels_.push_back("ferry onload " + name);
            writeback_labels_.push_back("ferry writeback " + name);
        }
        rows_.assign(names.size(), GroupRow{});
        row_changed_.assign(names.size(), false);
        changed_rows_.reserve(names.size());
        holds_.assign(names.size(), nullptr);
    }
    tracks_[0] = copy_stream;
    if (segment_) segment_->set_groups(names, bytes, resident_bytes, size_class);
}

std::uint32_t Observer::track_of(Stream stream) {
    for (std::size_t t = 0; t < track_count_; ++t) {
        if (tracks_[t] == stream) return static_cast<std::uint32_t>(t);
    }
    if (track_count_ == kMaxTracks) return kMaxTracks - 1;  // the last track takes the rest
    tracks_[track_count_] = stream;
    return static_cast<std::uint32_t>(track_count_++);
}

void Observer::touch(std::uint32_t group) {
    if (row_changed_[group]) return;
    row_changed_[group] = true;
    changed_rows_.push_back(group);
}

Observer::Span *Observer::claim(int kind, std::uint32_t group, Stream stream,
                                std::uint64_t bytes) {
    // Device timestamps cost the hot path a stream operation each: taken only while
    // someone looks (a published segment or a recording trace).
    if (segment_ == nullptr && !trace_.recording()) return nullptr;
    while (tail_ < head_ && !spans_[tail_ % spans_.size()].open) ++tail_;
    if (head_ - tail_ == spans_.size()) return nullptr;  // ring full: this one goes untimed
    Span &span = spans_[head_++ % spans_.size()];
    span.kind = kind;
    span.group = group;
    span.track = track_of(stream);
    span.bytes = bytes;
    span.issued_ns = trace_.recording() ? steady_now_ns() : 0;
    span.begin.store(0, std::memory_order_relaxed);
    span.end.store(0, std::memory_order_relaxed);
    span.open = true;
    return &span;
}

void Observer::copy(int kind, std::uint32_t group, void *dst, const void *src,
                    std::size_t bytes, Stream stream) {
    Span *span = claim(kind, group, stream, bytes);
    const bool h2d = kind == kCopyH2D;
    device_.range_push((h2d ? onload_labels_ : writeback_labels_)[group].c_str());
    if (span != nullptr) stamp(device_, stream, &span->begin);
    try {
        if (h2d) device_.copy_h2d(dst, src, bytes, stream);
        else device_.copy_d2h(dst, src, bytes, stream);
    } catch (...) {
        device_.range_pop();
        if (span != nullptr) span->end.store(kTimestampLost, std::memory_order_release);
        throw;
    }
    if (span != nullptr) stamp(device_, stream, &span->end);
    device_.range_pop();
    if (h2d) {
        ++rows_[group].onloads;
        touch(group);
    }
}

void Observer::copy_h2d(std::uint32_t group, void *dst, const void *src, std::size_t bytes,
                        Stream stream) {
    copy(kCopyH2D, group, dst, src, bytes, stream);
}

void Observer::copy_d2h(std::uint32_t group, void *dst, const void *src, std::size_t bytes,
                        Stream stream) {
    copy(kCopyD2H, group, dst, src, bytes, stream);
}

void Observer::decode(std::uint32_t group, void *table, const void *image, void *dst,
                      std::uint64_t bytes, kernels::DecodeResult *result, Stream stream) {
    Span *span = claim(kDecode, group, stream, bytes);
    if (span != nullptr) stamp(device_, stream, &span->begin);
    try {
        device_.decode(table, image, dst, result, stream);
    } catch (...) {
        if (span != nullptr) span->end.store(kTimestampLost, std::memory_order_release);
        throw;
    }
    if (span != nullptr) stamp(device_, stream, &span->end);
}

void Observer::disk_read(std::uint32_t group, std::uint64_t bytes, std::uint64_t begin_ns,
                         std::uint64_t end_ns) {
    if (!trace_.recording()) return;
    trace_.add({TraceEvent::kDiskRead, group, 0, begin_ns, end_ns > begin_ns ? end_ns - begin_ns : 0,
                bytes, begin_ns});
}

Observer::Token Observer::acquired(std::uint32_t group, Stream stream, bool waits,
                                   ferry_stats &stats, ferry_phase phase) {
    collect(stats);
    Token token;
    if (waits) token.wait = claim(kWait, group, stream, 0);
    if (trace_.recording()) {
        trace_.add({TraceEvent::kAcquire, group, track_of(stream), steady_now_ns(), 0, 0, 0});
        if (holds_[group] == nullptr) {
            token.hold = claim(kHold, group, stream, 0);
            holds_[group] = token.hold;
        }
    }
    publish(stats, phase);
    return token;
}

void Observer::wait(const Token &token, Stream stream, Event ready) {
    if (token.wait != nullptr) stamp(device_, stream, &token.wait->begin);
    try {
        if (ready != nullptr) device_.stream_wait(stream, ready);
    } catch (...) {  // the spans must still complete, untimed
        constexpr auto lost = kTimestampLost;
        if (token.wait != nullptr) token.wait->end.store(lost, std::memory_order_release);
        if (token.hold != nullptr) token.hold->begin.store(lost, std::memory_order_release);
        throw;
    }
    if (token.wait != nullptr) stamp(device_, stream, &token.wait->end);
    if (token.hold != nullptr) stamp(device_, stream, &token.hold->begin);
}

void Observer::released(std::uint32_t group, Stream stream, bool last, ferry_stats &stats,
                        ferry_phase phase) {
    if (trace_.recording()) {
        trace_.add({TraceEvent::kRelease, group, track_of(stream), steady_now_ns(), 0, 0, 0});
    }
    if (last && holds_[group] != nullptr) {
        stamp(device_, stream, &holds_[group]->end);
        holds_[group] = nullptr;
    }
    publish(stats, phase);
}

void Observer::consume(Span &span, ferry_stats &stats) {
    const std::uint64_t begin = span.begin.load(std::memory_order_acquire);
    const std::uint64_t end = span.end.load(std::memory_order_acquire);
    span.open = false;
    if (begin == kTimestampLost || end == kTimestampLost) return;
    const std::uint64_t dur = end > begin ? end - begin : 0;
    TraceEvent event{TraceEvent::kOnload, span.group, span.track, begin, dur, span.bytes,
                     span.issued_ns};
    switch (span.kind) {
        case kWait:
            stats.stall_ns += dur;
            event.kind = TraceEvent::kWait;
            break;
        case kCopyH2D: {
            GroupRow &row = rows_[span.group];
            ++row.timed_onloads;
            row.last_onload_ns = dur;
            row.total_onload_ns += dur;
            touch(span.group);
            break;
        }
        case kCopyD2H: event.kind = TraceEvent::kWriteback; break;
        case kHold: event.kind = TraceEvent::kHold; break;
        case kDecode: event.kind = TraceEvent::kDecode; break;
    }
    trace_.add(event);
}

void Observer::collect(ferry_stats &stats) {
    if (tail_ == head_) return;  // no span open: no timestamp pending on the device
    device_.poll_timestamps();
    for (std::uint64_t at = tail_; at < head_; ++at) {
        Span &span = spans_[at % spans_.size()];
        if (span.open && span.begin.load(std::memory_order_acquire) != 0 &&
            span.end.load(std::memory_order_acquire) != 0) {
            consume(span, stats);
        }
    }
    while (tail_ < head_ && !spans_[tail_ % spans_.size()].open) ++tail_;
}

void Observer::publish(const ferry_stats &stats, ferry_phase phase) {
    if (!segment_) return;
    segment_->publish(stats, phase, rows_, changed_rows_);
    for (std::uint32_t g : changed_rows_) row_changed_[g] = false;
    changed_rows_.clear();
}

void Observer::trace_start(std::uint32_t capacity) {
    // Holds of the last trace close when their begin arrives; no release will end them.
    for (Span *&hold : holds_) {
        if (hold != nullptr) hold->end.store(kTimestampLost, std::memory_order_relaxed);
        hold = nullptr;
    }
    trace_.start(capacity);
}

void Observer::trace_stop() { trace_.stop(); }

void Observer::trace_dump(const std::string &path) {
    FERRY_EXPECTS(trace_.started(), FERRY_ERROR_WRONG_PHASE,
                  "no trace was started: call ferry_trace_start first");
    std::vector<std::string> tracks;
    for (std::size_t t = 0; t < track_count_; ++t) {
        char text[64];
        if (t == 0) std::snprintf(text, sizeof text, "copy stream");
        else if (tracks_[t] == nullptr) std::snprintf(text, sizeof text, "default stream");
        else if (tracks_[t] == decode_stream_) std::snprintf(text, sizeof text, "decode stream");
        else std::snprintf(text, sizeof text, "stream %p", tracks_[t]);
        tracks.push_back(text);
    }
    const std::string process = "ferry '" + options_.name + "' (" + device_.name() + ")";
    trace_.dump(path, static_cast<long>(getpid()), process, tracks, group_names_);
}

void Observer::finish(ferry_stats &stats) {
    collect(stats);
    if (options_.trace_path.empty()) return;
    try {
        trace_dump(options_.trace_path);
    } catch (const std::exception &error) {
        // Destroy cannot fail; the caller asked for this file through the environment.
        std::fprintf(stderr, "ferry: FERRY_TRACE: %s\n", error.what());
    }
}

}  // namespace ferry
