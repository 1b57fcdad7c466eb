// core/: ferry::Runtime (definition, plan, seal, the pipeline) and what it plans with.
// The compute clock (compute_clock.hpp).
#include "core/compute_clock.hpp"

namespace ferry {
namespace {

bool landed(std::uint64_t t) { return t != 0 && t != kTimestampLost; }

}  // namespace

// A stamp that cannot be taken leaves its interval untimed; it never fails the call.
void ComputeClock::stamp(Device &device, Stream stream, std::atomic<std::uint64_t> *out) noexcept {
    try {
        device.timestamp(stream, out);
    } catch (...) {
        out->store(kTimestampLost, std::memory_order_release);
    }
}

ComputeClock::ComputeClock(std::size_t groups, double seconds_per_ns)
    : seconds_per_ns_(seconds_per_ns),
      held_(groups),
      pending_end_(groups, false),
      sum_s_(groups, 0.0),
      count_(groups, 0),
      copy_capacity_(4 * groups + 16) {
    copies_ = std::make_unique<CopyStamp[]>(copy_capacity_);
}

std::atomic<std::uint64_t> *ComputeClock::acquired(std::uint32_t group) {
    Stamp &s = held_[group];
    if (!running_ || s.open) return nullptr;  // the last interval has not landed yet
    s.begin.store(0, std::memory_order_relaxed);
    s.end.store(0, std::memory_order_relaxed);
    s.open = true;
    pending_end_[group] = true;
    return &s.begin;
}

void ComputeClock::released(Device &device, std::uint32_t group, Stream stream) {
    if (!pending_end_[group]) return;
    pending_end_[group] = false;
    stamp(device, stream, &held_[group].end);
}

void ComputeClock::copy_begin(Device &device, std::uint64_t bytes, Stream stream) {
    if (!running_ || copies_used_ == copy_capacity_) return;
    CopyStamp &c = copies_[copies_used_];
    c.bytes = bytes;
    stamp(device, stream, &c.begin);
}

void ComputeClock::copy_end(Device &device, Stream stream) {
    if (!running_ || copies_used_ == copy_capacity_) return;
    stamp(device, stream, &copies_[copies_used_++].end);
}

void ComputeClock::collect(Device &device) {
    device.poll_timestamps();
    for (std::size_t g = 0; g < held_.size(); ++g) {
        Stamp &s = held_[g];
        if (!s.open || pending_end_[g]) continue;
        const std::uint64_t begin = s.begin.load(std::memory_order_acquire);
        const std::uint64_t end = s.end.load(std::memory_order_acquire);
        if (begin == kTimestampLost || end == kTimestampLost) {
            s.open = false;
        } else if (landed(begin) && landed(end)) {
            s.open = false;
            if (end >= begin) {
                sum_s_[g] += static_cast<double>(end - begin) * seconds_per_ns_;
                ++count_[g];
            }
        }
    }
    while (copies_folded_ < copies_used_) {
        const CopyStamp &c = copies_[copies_folded_];
        const std::uint64_t begin = c.begin.load(std::memory_order_acquire);
        const std::uint64_t end = c.end.load(std::memory_order_acquire);
        if (!(landed(begin) || begin == kTimestampLost) ||
            !(landed(end) || end == kTimestampLost)) {
            break;  // in order: the copy stream runs them one after another
        }
        if (landed(begin) && landed(end) && end > begin) {
            copy_bytes_ += static_cast<double>(c.bytes);
            copy_s_ += static_cast<double>(end - begin) * seconds_per_ns_;
        }
        ++copies_folded_;
    }
}

double ComputeClock::compute_s(std::uint32_t group) const {
    return count_[group] > 0 ? sum_s_[group] / count_[group] : 0.0;
}

double ComputeClock::link_bytes_per_s() const {
    return copy_s_ > 0.0 ? copy_bytes_ / copy_s_ : 0.0;
}

}  // namespace ferry
