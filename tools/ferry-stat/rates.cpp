#include "rates.hpp"

namespace ferry_stat {

Rates rates_between(const ferry::Snapshot *before, const ferry::Snapshot &after) {
    Rates r;
    const ferry_stats &b = after.stats;
    std::uint64_t acquires = b.acquires;
    std::uint64_t hits = b.hits + b.resident_hits;
    if (before != nullptr && after.taken_ns > before->taken_ns) {
        const ferry_stats &a = before->stats;
        const double dt = static_cast<double>(after.taken_ns - before->taken_ns) / 1e9;
        r.interval_s = dt;
        r.passes_per_s = static_cast<double>(b.passes - a.passes) / dt;
        r.acquires_per_s = static_cast<double>(b.acquires - a.acquires) / dt;
        r.h2d_bytes_per_s = static_cast<double>(b.bytes_h2d - a.bytes_h2d) / dt;
        r.d2h_bytes_per_s = static_cast<double>(b.bytes_d2h - a.bytes_d2h) / dt;
        r.stall_fraction = static_cast<double>(b.stall_ns - a.stall_ns) / 1e9 / dt;
        if (b.acquires > a.acquires) {  // over the interval when anything happened in it
            acquires = b.acquires - a.acquires;
            hits = (b.hits + b.resident_hits) - (a.hits + a.resident_hits);
        }
    }
    if (acquires > 0) r.hit_rate = static_cast<double>(hits) / static_cast<double>(acquires);
    return r;
}

}  // namespace ferry_stat
