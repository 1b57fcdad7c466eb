// From what the strategies measured to what the benchmark reports: each pass's floor,
// the efficiency against it, what bounds each strategy, ferry's speed-up over the others,
// and the targets. Printing the table lives here too; JSON in json_report.cpp.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "decode_rate.hpp"
#include "micro.hpp"
#include "options.hpp"
#include "strategies.hpp"

namespace bench {

struct Figures {
    Measured measured;
    double ms_per_pass = 0.0;
    double passes_per_s = 0.0;
    double h2d_gbps = 0.0;      // achieved: bytes H2D per pass over the time of a pass
    double floor_ms = 0.0;      // max(compute, H2D bytes / raw peak)
    double efficiency = 0.0;    // floor / measured
    std::string bound;          // "link", "compute" or "overhead"
    std::string verdict;        // one line
    double ferry_speedup = 0.0; // this strategy's time over ferry's; 0 without ferry
};

// The floor of one pass and the efficiency of a measured one.
double floor_seconds(double compute_s, std::uint64_t h2d_bytes, double peak_gbps);
double efficiency(double floor_s, double measured_s);

Figures figures(const Measured &measured, double compute_s, double peak_gbps);

// Fills ferry_speedup when ferry is among them.
void add_speedups(std::vector<Figures> &all);

// The targets, each a line with its measured value and whether it was met.
struct Target {
    std::string name;
    double value = 0.0;
    double limit = 0.0;
    bool met = false;
};

struct Run {
    std::string model_line;    // "qwen-image at 1/64: 61 groups, ..."
    std::string model_name;
    double scale = 1.0;
    std::uint64_t groups = 0;
    std::uint64_t tensors = 0;
    int passes = 0;
    LinkModel link;            // sim: the modeled link
    std::string backend;       // "sim" or "cuda"
    std::string device;
    std::uint64_t model_bytes = 0;
    std::uint64_t budget = 0;
    double compute_ms_per_pass = 0.0;
    double peak_gbps = 0.0;
    std::uint64_t peak_copy_bytes = 0;
    std::string link_line;     // sim only: the modeled link
    std::vector<Figures> strategies;
    MicroResult micro;
    DecodeRate decode;         // with ferry-z: the device's decode on its own
    std::vector<Target> targets;
};

std::vector<Target> targets(const Run &run, std::uint64_t largest_group,
                            std::uint32_t slots_per_class);

void print_table(const Run &run);

// ferry-z against ferry (--compress); `present` is false without both.
struct CompressionFigures {
    bool present = false;
    double stream_ratio = 0.0;     // compressed bytes copied over the raw bytes they decode to
    double host_ratio = 0.0;       // compressed images over raw images in the host store
    double bytes_vs_ferry = 0.0;   // ferry-z's H2D bytes per pass over ferry's
    double time_vs_ferry = 0.0;    // ferry-z's pass time over ferry's
    double break_even_gbps = 0.0;  // decode throughput at which ferry-z only ties: link / (1 - r)
    double decode_gbps = 0.0;      // sim: the modeled decode throughput; 0 on cuda
    // Encoding at seal against pinning at plan, in ferry-z's run (wall time).
    double encode_gbps = 0.0;      // raw bytes of the compressed groups per second
    unsigned encode_threads = 0;   // the encoder's threads: every hardware thread
    double pin_gbps = 0.0;         // model bytes pinned per second
    double encode_vs_pin = 0.0;    // encode seconds over pin seconds
};
CompressionFigures compression_figures(const Run &run);

// --grid: one model at one budget, ferry against partial.
struct GridCell {
    std::string model;
    std::string budget;           // "50%"
    double ferry_ms = 0.0;
    double ferry_floor_ms = 0.0;
    double ferry_efficiency = 0.0;
    double ferry_model_ms = 0.0;  // the plan's pass in the planner's model
    double partial_ms = 0.0;
    double partial_efficiency = 0.0;
    double speedup = 0.0;         // partial's time over ferry's
};
GridCell grid_cell(const Run &run, const std::string &budget);
// The grid's targets: ferry >= 0.95 of its floor everywhere, >= 1.15x partial on
// qwen-image at 50%, and never slower than partial (to within 1%, the timing noise).
std::vector<Target> grid_targets(const std::vector<GridCell> &cells);
void print_grid(const std::vector<GridCell> &cells, int passes);

}  // namespace bench
