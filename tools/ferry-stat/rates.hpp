// Rates between two snapshots of one runtime: what changed, over the time between them.
#pragma once

#include "observe/stats_reader.hpp"

namespace ferry_stat {

struct Rates {
    double interval_s = 0.0;     // 0: one snapshot only, no rates
    double passes_per_s = 0.0;
    double acquires_per_s = 0.0;
    double h2d_bytes_per_s = 0.0;
    double d2h_bytes_per_s = 0.0;
    double stall_fraction = 0.0;  // stall time per second of wall time (all streams)
    double hit_rate = -1.0;       // (resident hits + hits) / acquires; -1: no acquire yet
};

// `before` may be null (no earlier snapshot): then only the cumulative hit rate is known.
Rates rates_between(const ferry::Snapshot *before, const ferry::Snapshot &after);

}  // namespace ferry_stat
