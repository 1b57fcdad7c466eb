#include "json_report.hpp"

#include <cmath>
#include <cstdio>
#include <fstream>
#include <sstream>

#include "ferry/ferry.h"
#include "base/names.hpp"

namespace bench {
namespace {

using ferry::json_string;

std::string number(double value) {
    if (!std::isfinite(value)) return "null";
    char text[32];
    std::snprintf(text, sizeof text, "%.6g", value);
    return text;
}

std::string number(std::uint64_t value) { return std::to_string(value); }

// Writes "key": value pairs, comma-separated, one per line.
class Object {
   public:
    Object(std::ostringstream &out, int indent) : out_(out), indent_(indent) { out_ << "{"; }
    Object &field(const std::string &key, const std::string &raw_value) {
        out_ << (first_ ? "\n" : ",\n") << std::string(indent_ + 2, ' ') << json_string(key) << ": "
             << raw_value;
        first_ = false;
        return *this;
    }
    void close() { out_ << "\n" << std::string(indent_, ' ') << "}"; }

   private:
    std::ostringstream &out_;
    int indent_;
    bool first_ = true;
};

std::string strategy(const Figures &f) {
    std::ostringstream out;
    Object o(out, 4);
    const Measured &m = f.measured;
    o.field("ms_per_pass", number(f.ms_per_pass))
        .field("passes_per_s", number(f.passes_per_s))
        .field("h2d_bytes_per_pass", number(m.h2d_bytes_per_pass))
        .field("d2h_bytes_per_pass", number(m.d2h_bytes_per_pass))
        .field("h2d_gbps", number(f.h2d_gbps))
        .field("floor_ms", number(f.floor_ms))
        .field("efficiency", number(f.efficiency))
        .field("vram_peak_bytes", number(m.vram_peak_bytes))
        .field("host_rss_bytes", number(m.host_rss_bytes))
        .field("host_pinned_bytes", number(m.host_pinned_bytes));
    if (m.name == "ferry-z") {
        o.field("compressed_bytes_per_pass", number(m.compressed_bytes_per_pass))
            .field("decoded_bytes_per_pass", number(m.decoded_bytes_per_pass))
            .field("host_compressed_ratio", number(m.host_ratio));
    }
    o.close();
    return out.str();
}

std::string targets_json(const std::vector<Target> &all) {
    std::ostringstream targets;
    targets << "[";
    for (std::size_t i = 0; i < all.size(); ++i) {
        const Target &t = all[i];
        targets << (i ? ",\n    " : "\n    ") << "{\"name\": " << json_string(t.name)
                << ", \"value\": " << number(t.value) << ", \"limit\": " << number(t.limit)
                << ", \"met\": " << (t.met ? "true" : "false") << "}";
    }
    targets << (all.empty() ? "]" : "\n  ]");
    return targets.str();
}

bool write_file(const std::string &path, const std::string &text) {
    std::ofstream file(path);
    file << text;
    return static_cast<bool>(file.flush());
}

}  // namespace

bool write_json(const Run &run, const std::string &path) {
    std::ostringstream out;
    Object top(out, 0);
    top.field("ferry_version", json_string(ferry_version()))
        .field("backend", json_string(run.backend))
        .field("device", json_string(run.device));
    {
        std::ostringstream model;
        Object o(model, 2);
        o.field("name", json_string(run.model_name))
            .field("scale", number(run.scale))
            .field("groups", number(run.groups))
            .field("tensors", number(run.tensors))
            .field("bytes", number(run.model_bytes));
        o.close();
        top.field("model", model.str());
    }
    top.field("budget_bytes", number(run.budget))
        .field("passes", number(static_cast<std::uint64_t>(run.passes)))
        .field("compute_ms_per_pass", number(run.compute_ms_per_pass))
        .field("raw_peak_h2d_gbps", number(run.peak_gbps));
    if (run.backend == "sim") {
        std::ostringstream link;
        Object o(link, 2);
        o.field("pinned_gbps", number(run.link.pinned_gbps))
            .field("pageable_h2d_gbps", number(run.link.pageable_h2d_gbps))
            .field("pageable_d2h_gbps", number(run.link.pageable_d2h_gbps))
            .field("latency_us_full_size", number(run.link.latency_us))
            .field("time_scale", number(run.link.time_scale));
        o.close();
        top.field("sim_link", link.str());
    }
    std::ostringstream strategies, verdicts, speedups;
    Object s(strategies, 2), v(verdicts, 2), x(speedups, 2);
    for (const Figures &f : run.strategies) {
        s.field(f.measured.name, strategy(f));
        v.field(f.measured.name, json_string(f.verdict));
        if (f.ferry_speedup > 0.0) x.field(f.measured.name, number(f.ferry_speedup));
    }
    s.close();
    v.close();
    x.close();
    top.field("strategies", strategies.str())
        .field("verdicts", verdicts.str())
        .field("ferry_speedup", speedups.str());
    for (const Figures &f : run.strategies) {
        if (f.measured.modeled_seconds_per_pass > 0.0) {
            top.field(f.measured.name + "_model_ms_per_pass",
                      number(f.measured.modeled_seconds_per_pass * 1e3));
        }
    }
    {
        std::ostringstream micro;
        Object o(micro, 2);
        o.field("acquire_release_resident_ns", number(run.micro.resident_ns))
            .field("acquire_release_prefetched_ns", number(run.micro.prefetched_ns))
            .field("prefetched_misses", number(run.micro.prefetched_misses))
            .field("sim_thread_wake_ns", number(run.micro.sim_wake_ns))
            .field("sim_copy_thread_on_callers_cpu", run.micro.sim_one_cpu ? "true" : "false")
            .field("acquire_release_prefetched_any_cpu_ns",
                   number(run.micro.prefetched_any_cpu_ns))
            .field("c_api_round_trip_ns", number(run.micro.api_ns));
        o.close();
        top.field("micro", micro.str());
    }
    if (const CompressionFigures c = compression_figures(run); c.present) {
        std::ostringstream z;
        Object o(z, 2);
        o.field("stream_ratio", number(c.stream_ratio))
            .field("host_ratio", number(c.host_ratio))
            .field("bytes_vs_ferry", number(c.bytes_vs_ferry))
            .field("time_vs_ferry", number(c.time_vs_ferry))
            .field("break_even_decode_gbps", number(c.break_even_gbps))
            .field("sim_decode_gbps", number(c.decode_gbps))
            .field("encode_gbps", number(c.encode_gbps))
            .field("encode_threads", number(static_cast<std::uint64_t>(c.encode_threads)))
            .field("pin_gbps", number(c.pin_gbps))
            .field("encode_vs_pin", number(c.encode_vs_pin))
            .field("device_decode_gbps", number(run.decode.gbps))
            .field("device_decode_bitwise", run.decode.bitwise ? "true" : "false");
        o.close();
        top.field("compression", z.str());
    }
    top.field("targets", targets_json(run.targets));
    top.close();
    out << "\n";
    return write_file(path, out.str());
}

bool write_grid_json(const std::vector<GridCell> &cells, const std::string &path) {
    std::ostringstream out;
    Object top(out, 0);
    std::ostringstream grid;
    grid << "[";
    for (std::size_t i = 0; i < cells.size(); ++i) {
        const GridCell &c = cells[i];
        std::ostringstream cell;
        Object o(cell, 4);
        o.field("model", json_string(c.model))
            .field("budget", json_string(c.budget))
            .field("ferry_ms_per_pass", number(c.ferry_ms))
            .field("ferry_model_ms_per_pass", number(c.ferry_model_ms))
            .field("ferry_floor_ms", number(c.ferry_floor_ms))
            .field("ferry_efficiency", number(c.ferry_efficiency))
            .field("partial_ms_per_pass", number(c.partial_ms))
            .field("partial_efficiency", number(c.partial_efficiency))
            .field("ferry_speedup_over_partial", number(c.speedup));
        o.close();
        grid << (i ? ",\n    " : "\n    ") << cell.str();
    }
    grid << (cells.empty() ? "]" : "\n  ]");
    top.field("ferry_version", json_string(ferry_version()))
        .field("grid", grid.str())
        .field("targets", targets_json(grid_targets(cells)));
    top.close();
    out << "\n";
    return write_file(path, out.str());
}

}  // namespace bench
