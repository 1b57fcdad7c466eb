// The benchmark's results as JSON: the same figures as the table.
//   {"strategies": {"writeback": {...}, "sync": {...}, "stream": {...}, "ferry": {...}},
//    "verdicts": {...}, "ferry_speedup": {...}, "micro": {...}, "targets": [...], ...}
// Each strategy has exactly: ms_per_pass, passes_per_s, h2d_bytes_per_pass,
// d2h_bytes_per_pass, h2d_gbps, floor_ms, efficiency, vram_peak_bytes, host_rss_bytes,
// host_pinned_bytes.
#pragma once

#include <string>

#include "report.hpp"

namespace bench {

// Returns false (errno set) when the file cannot be written.
bool write_json(const Run &run, const std::string &path);

}  // namespace bench
