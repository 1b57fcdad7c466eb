// ferry-bench: one model, five offloading strategies, side by side (strategies.hpp),
// with the figures users of offloading ask for: throughput, bytes moved, VRAM, host RAM,
// and how close each pass comes to its physical floor.
#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "base/error.hpp"
#include "json_report.hpp"
#include "micro.hpp"
#include "options.hpp"
#include "platform.hpp"
#include "presets.hpp"
#include "report.hpp"
#include "strategies.hpp"

namespace {

using namespace bench;

bool use_cuda(const std::string &backend) {
    if (backend == "sim") return false;
#if FERRY_BENCH_CUDA
    if (backend == "cuda") return true;
    return ferry::cuda_device_available();
#else
    if (backend == "cuda") {
        std::fprintf(stderr, "ferry-bench: this build has no cuda backend (-Dcuda=disabled)\n");
        std::exit(1);
    }
    return false;
#endif
}

std::string scale_text(double scale) {
    char text[32];
    const double inverse = 1.0 / scale;
    if (scale < 1.0 && std::fabs(inverse - std::round(inverse)) < 1e-9) {
        std::snprintf(text, sizeof text, "1/%.0f", inverse);
    } else {
        std::snprintf(text, sizeof text, "%g", scale);
    }
    return text;
}

std::string model_line(const Model &model, double scale, int blocks_per_group) {
    char text[256];
    std::snprintf(text, sizeof text,
                  "%s at scale %s: %zu groups (%d block%s each), %llu tensors, %.1f MiB, "
                  "%.3g TFLOP per pass",
                  model.name.c_str(), scale_text(scale).c_str(), model.groups.size(),
                  blocks_per_group, blocks_per_group == 1 ? "" : "s",
                  static_cast<unsigned long long>(model.tensors),
                  static_cast<double>(model.bytes) / (1 << 20), model.flops / 1e12);
    return text;
}

std::string link_line(const LinkModel &link) {
    char text[384];
    std::snprintf(text, sizeof text,
                  "sim link: pinned %g GB/s each way, pageable H2D %g GB/s, D2H into fresh "
                  "pageable memory %g GB/s,\n  H2D and D2H share it; %g us per copy call at full "
                  "size. Times are modeled: the run takes %gx longer in wall time.",
                  link.pinned_gbps, link.pageable_h2d_gbps, link.pageable_d2h_gbps,
                  link.latency_us, link.time_scale);
    return text;
}

Measured run_strategy(const std::string &name, const RunSpec &spec) {
    std::fprintf(stderr, "ferry-bench: running %s...\n", name.c_str());
    if (name == "writeback") return run_writeback(spec);
    if (name == "sync") return run_sync(spec);
    if (name == "stream") return run_stream(spec);
    if (name == "partial") return run_partial(spec);
    if (name == "ferry-z") return run_ferry(spec, true);
    return run_ferry(spec);
}

// One model at one budget under options.strategies; the micro-benchmark too when asked.
Run measure(const Options &options, bool cuda, bool micro) {
    ModelChoice choice = options.model;
    if (!options.scale_given) choice.scale = cuda ? 1.0 : 1.0 / 256;
    const Model model = build_model(choice);
    const std::uint64_t budget = parse_budget(options.budget, model.bytes);
    const Platform platform(cuda, options.link, choice.scale);

    RunSpec spec;
    spec.model = &model;
    spec.platform = &platform;
    spec.passes = options.passes;
    spec.budget = budget;
    spec.slots_per_class = options.slots_per_class;
    double compute_s = 0.0;
    for (const GroupSpec &group : model.groups) {
        spec.compute_s.push_back(options.compute_ms >= 0.0 ? options.compute_ms / 1e3
                                                           : group.flops / (options.tflops * 1e12));
        compute_s += spec.compute_s.back();
    }

    Run run;
    run.model_line = model_line(model, choice.scale, choice.blocks_per_group);
    run.model_name = model.name;
    run.scale = choice.scale;
    run.groups = model.groups.size();
    run.tensors = model.tensors;
    run.passes = options.passes;
    run.link = options.link;
    run.backend = cuda ? "cuda" : "sim";
    run.device = platform.device_name();
    run.model_bytes = model.bytes;
    run.budget = budget;
    run.compute_ms_per_pass = compute_s * 1e3;
    if (!cuda) run.link_line = link_line(options.link);
    run.peak_copy_bytes = std::min<std::uint64_t>(model.bytes, cuda ? 1ull << 30 : 256ull << 20);
    run.peak_gbps = platform.measure_peak_h2d(run.peak_copy_bytes);

    spec.link_gbps = run.peak_gbps;
    for (const std::string &name : options.strategies) {
        run.strategies.push_back(figures(run_strategy(name, spec), compute_s, run.peak_gbps));
    }
    add_speedups(run.strategies);
    if (std::find(options.strategies.begin(), options.strategies.end(), "ferry-z") !=
        options.strategies.end()) {
        run.decode = measure_decode_rate(platform, cuda ? 512ull << 20 : 16ull << 20);
    }
    if (micro) {
        std::fprintf(stderr, "ferry-bench: running the acquire+release micro-benchmark...\n");
        run.micro = run_micro(platform);
    }
    run.targets = targets(run, model.largest_group_bytes(), options.slots_per_class);
    return run;
}

int run_grid(const Options &options, bool cuda) {
    std::vector<GridCell> cells;
    for (const char *preset : {"qwen-image", "flux", "wan14b"}) {
        for (const char *budget : {"25%", "50%", "75%"}) {
            Options cell = options;
            cell.model.preset = preset;
            cell.budget = budget;
            cell.strategies = {"partial", "ferry"};
            cells.push_back(grid_cell(measure(cell, cuda, false), budget));
        }
    }
    print_grid(cells, options.passes);
    if (!options.json.empty()) {
        if (!write_grid_json(cells, options.json)) {
            std::fprintf(stderr, "ferry-bench: cannot write %s: %s\n", options.json.c_str(),
                         std::strerror(errno));
            return 1;
        }
        std::printf("  JSON written to %s\n", options.json.c_str());
    }
    return 0;
}

int run(const Options &options) {
    const bool cuda = use_cuda(options.backend);
    if (options.grid) return run_grid(options, cuda);
    const Run run = measure(options, cuda, true);
    print_table(run);
    std::printf("\n  other models: ferry-bench --model flux|wan14b, or --model custom --groups N "
                "--group-mb X --tensors-per-group T; all three at 25/50/75%%: --grid "
                "(--help for every flag)\n");
    if (!options.json.empty()) {
        if (!write_json(run, options.json)) {
            std::fprintf(stderr, "ferry-bench: cannot write %s: %s\n", options.json.c_str(),
                         std::strerror(errno));
            return 1;
        }
        std::printf("  JSON written to %s\n", options.json.c_str());
    }
    return 0;
}

}  // namespace

int main(int argc, char **argv) {
    const bench::Options options = bench::parse_options(argc, argv);
    try {
        return run(options);
    } catch (const ferry::Error &e) {
        std::fprintf(stderr, "ferry-bench: %s (%s)\n", e.what(), ferry_status_string(e.status()));
        return 1;
    }
}
