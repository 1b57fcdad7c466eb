// core/: ferry::Runtime (definition, plan, seal, the pipeline) and what it plans with.
// The runtime's observability entry points: the trace API, and what the Observer learns
// at plan. The Observer (observer.cpp) does the work.
#include <string>
#include <vector>

#include "base/error.hpp"
#include "core/runtime.hpp"

namespace ferry {

ObserverOptions observer_options(const RuntimeOptions &options) {
    ObserverOptions out;
    out.name = options.name;
    out.publish_stats = options.publish_stats;
    out.trace_path = options.trace_path;
    out.trace_events = options.trace_events;
    out.device = options.device;
    out.vram_budget = options.vram_budget;
    return out;
}

void Runtime::observe_plan() {
    std::vector<std::string> names;
    std::vector<std::uint64_t> bytes;
    std::vector<std::uint64_t> resident_bytes;
    std::vector<int> size_class;
    for (std::uint32_t g = 0; g < groups_.size(); ++g) {
        names.push_back(groups_[g].name);
        bytes.push_back(groups_[g].image_bytes);
        resident_bytes.push_back(resident_bytes_of(g));
        size_class.push_back(state_[g].size_class);
    }
    observer_->planned(names, bytes, resident_bytes, size_class, copy_stream_);
    observer_->publish(stats_, phase_);
}

void Runtime::trace_start(std::uint32_t capacity) {
    std::lock_guard<std::mutex> lock(mutex_);
    FERRY_EXPECTS(capacity <= (1u << 26), FERRY_ERROR_INVALID_ARGUMENT,
                  "trace capacity " + std::to_string(capacity) + " exceeds 2^26 events");
    observer_->trace_start(capacity);
}

void Runtime::trace_stop() {
    std::lock_guard<std::mutex> lock(mutex_);
    observer_->trace_stop();
}

void Runtime::trace_dump(const char *path) {
    std::lock_guard<std::mutex> lock(mutex_);
    FERRY_EXPECTS(path != nullptr && *path != '\0', FERRY_ERROR_INVALID_ARGUMENT,
                  "path is NULL or empty");
    observer_->collect(stats_);
    observer_->trace_dump(path);
}

std::string Runtime::stats_segment_name() {
    std::lock_guard<std::mutex> lock(mutex_);
    return observer_->segment_name();
}

}  // namespace ferry
