// observe/: what ferry tells the outside: timings, the stats segment, the trace.
// The trace ring and its Chrome trace-event JSON (trace.hpp).
#include "observe/trace.hpp"

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>

#include "base/clock.hpp"
#include "base/error.hpp"
#include "base/names.hpp"

namespace ferry {
namespace {

std::string micros(std::int64_t ns) {
    char text[32];
    std::snprintf(text, sizeof text, "%.3f", static_cast<double>(ns) / 1e3);
    return text;
}

const char *kind_name(TraceEvent::Kind kind) {
    switch (kind) {
        case TraceEvent::kOnload: return "onload";
        case TraceEvent::kWriteback: return "writeback";
        case TraceEvent::kWait: return "wait";
        case TraceEvent::kHold: return "compute";
        case TraceEvent::kAcquire: return "acquire";
        case TraceEvent::kRelease: return "release";
        case TraceEvent::kDiskRead: return "disk read";
        case TraceEvent::kDecode: return "decode";
    }
    return "?";
}

}  // namespace

void Trace::start(std::uint32_t capacity) {
    ring_.assign(capacity == 0 ? kDefaultCapacity : capacity, TraceEvent{});
    added_ = 0;
    origin_ns_ = steady_now_ns();
    recording_ = true;
}

void Trace::add(const TraceEvent &event) {
    if (!recording_ || event.ts_ns < origin_ns_) return;
    ring_[added_++ % ring_.size()] = event;
}

void Trace::dump(const std::string &path, long pid, const std::string &process,
                 const std::vector<std::string> &tracks,
                 const std::vector<std::string> &groups) const {
    const std::uint64_t kept = std::min<std::uint64_t>(added_, ring_.size());
    std::vector<TraceEvent> events(ring_.begin(),
                                   ring_.begin() + static_cast<std::ptrdiff_t>(kept));
    std::sort(events.begin(), events.end(), [](const TraceEvent &a, const TraceEvent &b) {
        return a.track != b.track ? a.track < b.track : a.ts_ns < b.ts_ns;
    });
    std::ostringstream out;
    const std::string ids = "\"pid\":" + std::to_string(pid) + ",\"tid\":";
    out << "{\"displayTimeUnit\":\"ns\",\"otherData\":{\"dropped_events\":" << (added_ - kept)
        << ",\"capacity\":" << ring_.size() << "},\"traceEvents\":[\n";
    out << "{\"name\":\"process_name\",\"ph\":\"M\"," << ids << "0,\"args\":{\"name\":"
        << json_string(process) << "}}";
    for (std::size_t t = 0; t < tracks.size(); ++t) {
        out << ",\n{\"name\":\"thread_name\",\"ph\":\"M\"," << ids << t
            << ",\"args\":{\"name\":" << json_string(tracks[t]) << "}}";
        out << ",\n{\"name\":\"thread_sort_index\",\"ph\":\"M\"," << ids << t
            << ",\"args\":{\"sort_index\":" << t << "}}";
    }
    for (const TraceEvent &e : events) {
        const std::string group = e.group < groups.size() ? groups[e.group] : "?";
        const bool span = e.kind <= TraceEvent::kHold || e.kind == TraceEvent::kDiskRead ||
                          e.kind == TraceEvent::kDecode;
        out << ",\n{\"name\":" << json_string(std::string(kind_name(e.kind)) + " " + group)
            << ",\"cat\":\"" << kind_name(e.kind) << "\",\"ph\":\"" << (span ? "X" : "i") << "\","
            << ids << e.track << ",\"ts\":"
            << micros(static_cast<std::int64_t>(e.ts_ns - origin_ns_));
        if (span) out << ",\"dur\":" << micros(static_cast<std::int64_t>(e.dur_ns));
        else out << ",\"s\":\"t\"";
        out << ",\"args\":{\"group\":" << json_string(group);
        if (e.bytes != 0) out << ",\"bytes\":" << e.bytes;
        if (e.issued_ns != 0) {
            out << ",\"issued_us\":"
                << micros(static_cast<std::int64_t>(e.issued_ns) -
                          static_cast<std::int64_t>(origin_ns_));
        }
        out << "}}";
    }
    out << "\n]}\n";
    std::ofstream file(path, std::ios::binary | std::ios::trunc);
    const std::string text = out.str();
    file.write(text.data(), static_cast<std::streamsize>(text.size()));
    file.close();
    FERRY_EXPECTS(file.good(), FERRY_ERROR_INVALID_ARGUMENT,
                  "could not write the trace to '" + path + "': " + std::strerror(errno));
}

}  // namespace ferry
