// ferry-bench's command line. A bad flag prints what is wrong and the usage, and exits
// with status 2.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "presets.hpp"

namespace bench {

// The sim's link, from figures measured on PCIe Gen4 (A100-class) machines.
struct LinkModel {
    double pinned_gbps = 25.0;        // H2D and D2H from page-locked memory
    double pageable_h2d_gbps = 12.5;  // H2D from ordinary malloc'd memory
    double pageable_d2h_gbps = 1.6;   // D2H into freshly allocated pageable memory
    double latency_us = 2.3;          // each copy call, at full size (scaled with the model)
    double time_scale = 40.0;         // wall seconds per modeled second
};

// The sim decodes on one CPU core (about 0.5 GB/s of raw bytes) and then waits out its
// modeled time: the time scale must stretch the modeled decode (250 GB/s by default) past
// the CPU's, or the CPU's time would count. 1000 gives 0.25 GB/s of wall time.
constexpr double kCompressTimeScale = 1000.0;

struct Options {
    std::string backend = "auto";  // auto: cuda when built and a GPU is visible
    ModelChoice model;
    bool scale_given = false;      // else 1/256 on sim, 1 on cuda
    std::string budget = "50%";    // bytes, or a percentage of the model
    int passes = 3;                // timed, after one warm-up pass
    std::uint32_t slots_per_class = 2;
    double compute_ms = -1.0;      // per group; < 0: from --tflops
    double tflops = 186.0;         // A100 bf16 at ~60% of its peak
    std::vector<std::string> strategies = {"writeback", "sync", "stream", "partial", "ferry"};
    bool grid = false;             // --grid: the 3 x 3 grid of ferry against partial
    // --compress: adds ferry-z (ferry with config.compress, trained-like bf16 weights) and
    // raises the sim's default time scale to kCompressTimeScale.
    bool compress = false;
    std::string json;              // empty: no JSON file
    LinkModel link;
};

Options parse_options(int argc, char **argv);

// "1/64", "0.25" or "1": a factor in (0, 1]. Returns a negative value when malformed.
double parse_scale(const std::string &text);

// "50%" of model_bytes, or a byte count. Returns 0 when malformed.
std::uint64_t parse_budget(const std::string &text, std::uint64_t model_bytes);

}  // namespace bench
