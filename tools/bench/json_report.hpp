// The benchmark's results as JSON: the same figures as the table.
//   {"strategies": {"writeback": {...}, "sync": {...}, "stream": {...}, "partial": {...},
//    "ferry": {...}}, "verdicts": {...}, "ferry_speedup": {...}, "ferry_model_ms_per_pass",
//    "micro": {...}, "targets": [...], ...}
// Each strategy has exactly: ms_per_pass, passes_per_s, h2d_bytes_per_pass,
// d2h_bytes_per_pass, h2d_gbps, floor_ms, efficiency, vram_peak_bytes, host_rss_bytes,
// host_pinned_bytes.
#pragma once

#include <string>
#include <vector>

#include "report.hpp"

namespace bench {

// Returns false (errno set) when the file cannot be written.
bool write_json(const Run &run, const std::string &path);

// --grid: {"grid": [{"model", "budget", "ferry_ms_per_pass", "ferry_model_ms_per_pass",
// "ferry_floor_ms", "ferry_efficiency", "partial_ms_per_pass", "partial_efficiency",
// "ferry_speedup_over_partial"}, ...], "targets": [...]}.
bool write_grid_json(const std::vector<GridCell> &cells, const std::string &path);

}  // namespace bench
