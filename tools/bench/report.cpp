#include "report.hpp"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <thread>

#include "device/device.hpp"

namespace bench {
namespace {

// Below this share of its floor, a strategy is bound by its own overhead.
constexpr double kBoundByFloor = 0.8;

double mib(std::uint64_t bytes) { return static_cast<double>(bytes) / (1 << 20); }

}  // namespace

double floor_seconds(double compute_s, std::uint64_t h2d_bytes, double peak_gbps) {
    return std::max(compute_s, static_cast<double>(h2d_bytes) / (peak_gbps * 1e9));
}

double efficiency(double floor_s, double measured_s) {
    return measured_s > 0.0 ? floor_s / measured_s : 0.0;
}

Figures figures(const Measured &measured, double compute_s, double peak_gbps) {
    Figures f;
    f.measured = measured;
    const double s = measured.seconds_per_pass;
    f.ms_per_pass = s * 1e3;
    f.passes_per_s = s > 0.0 ? 1.0 / s : 0.0;
    f.h2d_gbps = s > 0.0 ? static_cast<double>(measured.h2d_bytes_per_pass) / s / 1e9 : 0.0;
    const double link_s = static_cast<double>(measured.h2d_bytes_per_pass) / (peak_gbps * 1e9);
    const double floor_s = floor_seconds(compute_s, measured.h2d_bytes_per_pass, peak_gbps);
    f.floor_ms = floor_s * 1e3;
    f.efficiency = efficiency(floor_s, s);
    char line[256];
    if (f.efficiency >= kBoundByFloor) {
        f.bound = link_s >= compute_s ? "link" : "compute";
        std::snprintf(line, sizeof line, "%s-bound: at %.0f%% of its floor", f.bound.c_str(),
                      100.0 * f.efficiency);
    } else {
        f.bound = "overhead";
        std::snprintf(line, sizeof line, "overhead-bound: at %.0f%% of its floor; the rest is %s",
                      100.0 * f.efficiency, measured.overhead.c_str());
    }
    f.verdict = line;
    return f;
}

void add_speedups(std::vector<Figures> &all) {
    const auto ferry = std::find_if(all.begin(), all.end(),
                                    [](const Figures &f) { return f.measured.name == "ferry"; });
    if (ferry == all.end() || ferry->ms_per_pass <= 0.0) return;
    const double ferry_ms = ferry->ms_per_pass;
    for (Figures &f : all) f.ferry_speedup = f.ms_per_pass / ferry_ms;
}

CompressionFigures compression_figures(const Run &run) {
    CompressionFigures c;
    const Figures *ferry = nullptr, *z = nullptr;
    for (const Figures &f : run.strategies) {
        if (f.measured.name == "ferry") ferry = &f;
        if (f.measured.name == "ferry-z") z = &f;
    }
    if (ferry == nullptr || z == nullptr || ferry->measured.h2d_bytes_per_pass == 0 ||
        ferry->ms_per_pass <= 0.0) {
        return c;
    }
    c.present = true;
    const Measured &m = z->measured;
    if (m.decoded_bytes_per_pass > 0) {
        c.stream_ratio = static_cast<double>(m.compressed_bytes_per_pass) /
                         static_cast<double>(m.decoded_bytes_per_pass);
    }
    c.host_ratio = m.host_ratio;
    c.bytes_vs_ferry = static_cast<double>(m.h2d_bytes_per_pass) /
                       static_cast<double>(ferry->measured.h2d_bytes_per_pass);
    c.time_vs_ferry = z->ms_per_pass / ferry->ms_per_pass;
    const double r = c.stream_ratio > 0.0 ? c.stream_ratio : c.host_ratio;
    c.break_even_gbps = r > 0.0 && r < 1.0 ? run.peak_gbps / (1.0 - r) : 0.0;
    if (m.encode_s > 0.0 && m.host_pin_s > 0.0) {
        c.encode_gbps = static_cast<double>(m.encoded_raw_bytes) / m.encode_s * 1e-9;
        c.encode_threads = std::max(1u, std::thread::hardware_concurrency());
        c.pin_gbps = static_cast<double>(m.host_pinned_bytes) / m.host_pin_s * 1e-9;
        c.encode_vs_pin = m.encode_s / m.host_pin_s;
    }
    if (run.backend == "sim") {
        const char *env = std::getenv("FERRY_SIM_DECODE_GBPS");
        c.decode_gbps = env != nullptr && *env != '\0' ? std::atof(env)
                                                        : ferry::kDefaultSimDecodeGbps;
    }
    return c;
}

std::vector<Target> targets(const Run &run, std::uint64_t largest_group,
                            std::uint32_t slots_per_class) {
    auto find = [&](const char *name) -> const Figures * {
        for (const Figures &f : run.strategies) {
            if (f.measured.name == name) return &f;
        }
        return nullptr;
    };
    std::vector<Target> out;
    const Figures *ferry = find("ferry");
    if (ferry == nullptr) return out;
    out.push_back({"ferry efficiency >= 0.95", ferry->efficiency, 0.95, ferry->efficiency >= 0.95});
    if (const CompressionFigures c = compression_figures(run); c.present) {
        out.push_back({"ferry-z streams <= 0.72 x ferry's bytes per pass", c.bytes_vs_ferry, 0.72,
                       c.bytes_vs_ferry <= 0.72});
        if (ferry->bound == "compute") {
            out.push_back({"ferry-z no slower than ferry when compute-bound, to within 2%",
                           c.time_vs_ferry, 1.02, c.time_vs_ferry <= 1.02});
        } else {
            out.push_back({"ferry-z pass time <= 0.78 x ferry's when link-bound", c.time_vs_ferry,
                           0.78, c.time_vs_ferry <= 0.78});
        }
        if (run.decode.gbps > 0.0 && run.backend == "cuda") {
            const double times = run.decode.gbps / run.peak_gbps;
            out.push_back({"the device decodes >= 4x faster than the link (x link)", times, 4.0,
                           times >= 4.0});
        }
        if (run.decode.gbps > 0.0) {
            out.push_back({"the device's decode returns every byte (1: yes)",
                           run.decode.bitwise ? 1.0 : 0.0, 1.0, run.decode.bitwise});
        }
        if (c.encode_vs_pin > 0.0) {
            out.push_back({"ferry-z encodes at seal in no longer than it pins at plan",
                           c.encode_vs_pin, 1.0, c.encode_vs_pin <= 1.0});
        }
    }
    if (run.backend == "cuda") {
        const double share = ferry->h2d_gbps / run.peak_gbps;
        out.push_back({"ferry's achieved H2D >= 90% of the raw pinned peak", share, 0.9,
                       share >= 0.9});
    }
    if (const Figures *w = find("writeback")) {
        out.push_back({"ferry >= 10x faster than writeback", w->ferry_speedup, 10.0,
                       w->ferry_speedup >= 10.0});
    }
    if (const Figures *p = find("partial")) {
        out.push_back({"ferry at least as fast as partial (to within 1%)", p->ferry_speedup, 0.99,
                       p->ferry_speedup >= 0.99});
    }
    if (const Figures *s = find("stream")) {
        out.push_back({"ferry >= 1.6x faster than stream", s->ferry_speedup, 1.6,
                       s->ferry_speedup >= 1.6});
    }
    // What the budget cannot hold, plus the streaming slots it must set aside.
    const double model = static_cast<double>(run.model_bytes);
    const double limit =
        (model - static_cast<double>(std::min(run.budget, run.model_bytes)) +
         static_cast<double>(slots_per_class) * static_cast<double>(largest_group)) / model;
    const double streamed = static_cast<double>(ferry->measured.h2d_bytes_per_pass) / model;
    out.push_back({"ferry streams <= the model less the budget, plus " +
                       std::to_string(slots_per_class) + " slots of its largest group (share)",
                   streamed, limit, streamed <= limit + 1e-9});
    const double hot_path = run.micro.prefetched_ns;
    out.push_back({"acquire+release of a prefetched group < 2 us (ns)", hot_path, 2000.0,
                   hot_path < 2000.0});
    return out;
}

void print_table(const Run &run) {
    std::printf("ferry-bench: %s\n", run.model_line.c_str());
    const std::string device = run.device == run.backend ? "" : " (" + run.device + ")";
    std::printf("  on %s%s; VRAM budget %.1f MiB (%.0f%% of the model)\n", run.backend.c_str(),
                device.c_str(), mib(run.budget),
                100.0 * static_cast<double>(run.budget) / static_cast<double>(run.model_bytes));
    std::printf("  compute %.2f ms per pass; raw peak H2D %.2f GB/s (pinned copy of %.0f MiB)\n",
                run.compute_ms_per_pass, run.peak_gbps, mib(run.peak_copy_bytes));
    if (!run.link_line.empty()) std::printf("  %s\n", run.link_line.c_str());
    std::printf("\n  %-9s %9s %8s %9s %9s %8s %9s %5s %9s %9s %9s %7s\n", "strategy", "ms/pass",
                "passes/s", "H2D MiB", "D2H MiB", "H2D GB/s", "floor ms", "eff.", "VRAM MiB",
                "RSS MiB", "pin MiB", "ferry x");
    for (const Figures &f : run.strategies) {
        const Measured &m = f.measured;
        std::printf("  %-9s %9.2f %8.2f %9.1f %9.1f %8.2f %9.2f %5.2f %9.1f %9.1f %9.1f %7.2f\n",
                    m.name.c_str(), f.ms_per_pass, f.passes_per_s, mib(m.h2d_bytes_per_pass),
                    mib(m.d2h_bytes_per_pass), f.h2d_gbps, f.floor_ms, f.efficiency,
                    mib(m.vram_peak_bytes), mib(m.host_rss_bytes), mib(m.host_pinned_bytes),
                    f.ferry_speedup);
    }
    std::printf("  (H2D and D2H: MiB per pass; ferry x: how many times faster ferry is)\n\n");
    for (const Figures &f : run.strategies) {
        std::printf("  %-9s %s\n", f.measured.name.c_str(), f.verdict.c_str());
    }
    for (const Figures &f : run.strategies) {
        if (f.measured.modeled_seconds_per_pass <= 0.0) continue;
        const double model_ms = f.measured.modeled_seconds_per_pass * 1e3;
        std::printf("  %-9s plan modeled at %.2f ms per pass (measured %+.1f%%)\n",
                    f.measured.name.c_str(), model_ms, 100.0 * (f.ms_per_pass / model_ms - 1.0));
    }
    if (const CompressionFigures c = compression_figures(run); c.present) {
        const Figures *z = nullptr;
        for (const Figures &f : run.strategies) {
            if (f.measured.name == "ferry-z") z = &f;
        }
        std::printf("\n  ferry-z: host store %.3f of raw; per pass %.1f MiB copied compressed for "
                    "%.1f MiB decoded (%.3f);\n  %.3f x ferry's H2D bytes, %.3f x its pass time. "
                    "Compression pays while decode runs faster than\n  link / (1 - %.3f) = "
                    "%.0f GB/s",
                    c.host_ratio, mib(z->measured.compressed_bytes_per_pass),
                    mib(z->measured.decoded_bytes_per_pass), c.stream_ratio, c.bytes_vs_ferry,
                    c.time_vs_ferry, c.stream_ratio, c.break_even_gbps);
        if (c.decode_gbps > 0.0) {
            std::printf(" (sim decode modeled at %.0f GB/s, FERRY_SIM_DECODE_GBPS)", c.decode_gbps);
        }
        std::printf(".\n");
        if (run.decode.gbps > 0.0) {
            std::printf("  Decode on the device alone: %.0f GB/s of raw bytes (%.0f MiB, ratio %.3f%s), "
                        "%.1f x the link.\n",
                        run.decode.gbps, run.decode.raw_bytes / 1048576.0, run.decode.ratio,
                        run.backend == "sim" ? "; sim: the modeled rate" : "",
                        run.decode.gbps / run.peak_gbps);
        }
        if (c.encode_gbps > 0.0) {
            std::printf("  Encoding at seal: %.2f GB/s on %u threads (%.2f GB/s per thread); pinning "
                        "the store at plan: %.2f GB/s;\n  encode / pin time %.2f.\n",
                        c.encode_gbps, c.encode_threads, c.encode_gbps / c.encode_threads,
                        c.pin_gbps, c.encode_vs_pin);
        }
    }
    const MicroResult &micro = run.micro;
    std::printf("\n  acquire+release, per call: resident group %.0f ns, prefetched group %.0f ns"
                "%s; C API round trip %.0f ns\n",
                micro.resident_ns, micro.prefetched_ns,
                micro.prefetched_misses > 0 ? " (with misses)" : "", micro.api_ns);
    if (run.backend == "sim") {
        std::printf("  (sim: prefetched pairs timed with the sim's copy thread %s, as a GPU\n"
                    "  takes work without a CPU core of its own; with that thread free to run "
                    "beside the caller,\n"
                    "  %.0f ns. Waking a parked sim thread costs %.0f ns, in neither figure: it "
                    "polls briefly before it parks.)\n",
                    micro.sim_one_cpu ? "on the caller's CPU"
                                      : "anywhere (pinning it to the caller's CPU failed)",
                    micro.prefetched_any_cpu_ns, micro.sim_wake_ns);
    }
    if (!run.targets.empty()) std::printf("\n  targets:\n");
    for (const Target &t : run.targets) {
        std::printf("    %-6s %s: %.3g (limit %.3g)\n", t.met ? "met" : "MISSED", t.name.c_str(),
                    t.value, t.limit);
    }
}

GridCell grid_cell(const Run &run, const std::string &budget) {
    GridCell cell;
    cell.model = run.model_name;
    cell.budget = budget;
    for (const Figures &f : run.strategies) {
        if (f.measured.name == "ferry") {
            cell.ferry_ms = f.ms_per_pass;
            cell.ferry_floor_ms = f.floor_ms;
            cell.ferry_efficiency = f.efficiency;
            cell.ferry_model_ms = f.measured.modeled_seconds_per_pass * 1e3;
        } else if (f.measured.name == "partial") {
            cell.partial_ms = f.ms_per_pass;
            cell.partial_efficiency = f.efficiency;
            cell.speedup = f.ferry_speedup;
        }
    }
    return cell;
}

std::vector<Target> grid_targets(const std::vector<GridCell> &cells) {
    std::vector<Target> out;
    double worst_efficiency = 1.0, worst_speedup = 1e9;
    std::string worst_efficiency_at, worst_speedup_at;
    for (const GridCell &c : cells) {
        const std::string at = c.model + " at " + c.budget;
        if (c.ferry_efficiency < worst_efficiency || worst_efficiency_at.empty()) {
            worst_efficiency = c.ferry_efficiency;
            worst_efficiency_at = at;
        }
        if (c.speedup < worst_speedup) {
            worst_speedup = c.speedup;
            worst_speedup_at = at;
        }
        if (c.model == "qwen-image" && c.budget == "50%") {
            out.push_back({"ferry >= 1.15x faster than partial on qwen-image at 50%", c.speedup,
                           1.15, c.speedup >= 1.15});
        }
    }
    if (cells.empty()) return out;
    out.insert(out.begin(), {"ferry efficiency >= 0.95 everywhere (lowest: " +
                                 worst_efficiency_at + ")",
                             worst_efficiency, 0.95, worst_efficiency >= 0.95});
    out.push_back({"ferry never slower than partial, to within 1% (lowest: " + worst_speedup_at +
                       ")",
                   worst_speedup, 0.99, worst_speedup >= 0.99});
    return out;
}

void print_grid(const std::vector<GridCell> &cells, int passes) {
    std::printf("\n  ferry against partial (whole blocks resident largest first, the rest per\n"
                "  tensor on two copy streams), %d timed passes each:\n\n", passes);
    std::printf("  %-10s %6s %9s %9s %9s %5s %9s %5s %9s\n", "model", "budget", "ferry ms",
                "model ms", "floor ms", "eff.", "partial", "eff.", "ferry x");
    for (const GridCell &c : cells) {
        std::printf("  %-10s %6s %9.3f %9.3f %9.3f %5.2f %9.3f %5.2f %9.2f\n", c.model.c_str(),
                    c.budget.c_str(), c.ferry_ms, c.ferry_model_ms, c.ferry_floor_ms,
                    c.ferry_efficiency, c.partial_ms, c.partial_efficiency, c.speedup);
    }
    std::printf("  (eff.: floor / measured; ferry x: partial's time over ferry's; model ms: "
                "ferry's plan in its planner's pass-time model)\n\n  grid targets:\n");
    for (const Target &t : grid_targets(cells)) {
        std::printf("    %-6s %s: %.3g (limit %.3g)\n", t.met ? "met" : "MISSED", t.name.c_str(),
                    t.value, t.limit);
    }
}

}  // namespace bench
