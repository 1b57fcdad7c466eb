#include "render.hpp"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <sstream>

#include "base/names.hpp"
#include "observe/stats_layout.hpp"

namespace ferry_stat {
namespace {

using ferry::json_string;
using ferry::phase_name;

std::string format(const char *fmt, double value) {
    char text[64];
    std::snprintf(text, sizeof text, fmt, value);
    return text;
}

std::string bytes_text(double bytes) {
    const char *units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    int unit = 0;
    while (bytes >= 1024.0 && unit < 4) {
        bytes /= 1024.0;
        ++unit;
    }
    return unit == 0 ? format("%.0f B", bytes) : format("%.1f ", bytes) + units[unit];
}

const char *backend_name(ferry_backend backend) {
    return backend == FERRY_BACKEND_CUDA ? "cuda" : backend == FERRY_BACKEND_SIM ? "sim" : "?";
}

std::string percent(double fraction) {
    return fraction < 0 ? "-" : format("%.1f%%", fraction * 100.0);
}

double uptime_s(const ferry::Snapshot &s) {
    const auto now = std::chrono::duration_cast<std::chrono::nanoseconds>(
                         std::chrono::system_clock::now().time_since_epoch())
                         .count();
    return static_cast<double>(now - static_cast<std::int64_t>(s.created_unix_ns)) / 1e9;
}

double mean_onload_ms(const ferry::GroupSnapshot &g) {
    return g.timed_onloads == 0 ? 0.0
                                : static_cast<double>(g.total_onload_ns) /
                                      static_cast<double>(g.timed_onloads) / 1e6;
}

// JSON has no NaN or infinity; every rate here is finite.
std::string json_number(double value) { return format("%.6g", value); }

std::string prometheus_label(const std::string &text) {
    std::string out;
    for (const char c : text) {
        if (c == '\\' || c == '"') out += '\\';
        if (c == '\n') {
            out += "\\n";
            continue;
        }
        out += c;
    }
    return out;
}

}  // namespace

std::string render_table(const std::vector<Shown> &shown, const std::vector<Problem> &problems) {
    std::ostringstream out;
    char line[256];
    std::snprintf(line, sizeof line, "%-8s %-20s %-5s %10s %-8s %9s %9s %8s %8s\n", "PID",
                  "NAME", "BACK", "BUDGET", "PHASE", "PASSES/S", "H2D GB/s", "HIT", "STALL");
    out << line;
    for (const Shown &s : shown) {
        const ferry::Snapshot &snap = s.snapshot;
        std::snprintf(line, sizeof line, "%-8ld %-20.20s %-5s %10s %-8s %9.2f %9.2f %8s %8s\n",
                      snap.pid, snap.name.c_str(), backend_name(snap.backend),
                      bytes_text(static_cast<double>(snap.vram_budget)).c_str(),
                      phase_name(snap.phase), s.rates.passes_per_s,
                      s.rates.h2d_bytes_per_s / 1e9, percent(s.rates.hit_rate).c_str(),
                      percent(s.rates.stall_fraction).c_str());
        out << line;
    }
    for (const Problem &p : problems) {
        std::snprintf(line, sizeof line, "%-8ld %-20.20s %s\n", p.pid, p.segment.c_str(),
                      p.message.c_str());
        out << line;
    }
    return out.str();
}

std::string render_detail(const std::vector<Shown> &shown) {
    std::ostringstream out;
    for (const Shown &s : shown) {
        const ferry::Snapshot &snap = s.snapshot;
        const ferry_stats &st = snap.stats;
        const Rates &r = s.rates;
        out << "ferry runtime '" << snap.name << "': pid " << snap.pid << ", "
            << backend_name(snap.backend) << " (" << snap.device_name << "), phase "
            << phase_name(snap.phase) << ", up " << format("%.1f", uptime_s(snap)) << " s\n";
        if (r.interval_s > 0) {
            out << "  rates over " << format("%.1f", r.interval_s) << " s   "
                << format("%.2f", r.passes_per_s) << " passes/s, "
                << format("%.2f", r.h2d_bytes_per_s / 1e9) << " GB/s H2D, "
                << format("%.2f", r.d2h_bytes_per_s / 1e9) << " GB/s D2H, "
                << format("%.0f", r.acquires_per_s) << " acquires/s, stall "
                << percent(r.stall_fraction) << " of the time\n";
        }
        out << "  traffic          " << bytes_text(static_cast<double>(st.bytes_h2d)) << " H2D, "
            << bytes_text(static_cast<double>(st.bytes_d2h)) << " D2H; " << st.onloads
            << " onloads, " << st.writebacks << " writebacks (" << st.writebacks_skipped
            << " skipped)\n";
        out << "  acquires         " << st.acquires << " = " << st.resident_hits << " resident + "
            << st.hits << " hits + " << st.misses << " misses (hit rate "
            << percent(r.hit_rate) << "); " << st.releases << " releases; " << st.passes
            << " passes\n";
        out << "  prefetch         " << st.prefetches_issued << " issued, " << st.prefetches_used
            << " used, " << st.prefetches_wasted << " wasted\n";
        out << "  stall            " << format("%.3f", static_cast<double>(st.stall_ns) / 1e6)
            << " ms waiting for copies in total\n";
        out << "  VRAM             budget " << bytes_text(static_cast<double>(st.vram_budget))
            << "; slab " << bytes_text(static_cast<double>(st.slab_bytes)) << " (resident "
            << bytes_text(static_cast<double>(st.slab_resident_bytes)) << ", streaming "
            << bytes_text(static_cast<double>(st.slab_streaming_bytes)) << "); in use "
            << bytes_text(static_cast<double>(st.slab_used_bytes)) << ", peak "
            << bytes_text(static_cast<double>(st.slab_used_peak_bytes));
        if (st.slab_staging_bytes > 0) {
            out << "; compressed staging "
                << bytes_text(static_cast<double>(st.slab_staging_bytes));
        }
        out << "\n";
        if (st.compressed_groups > 0) {
            const double ratio = static_cast<double>(st.host_compressed_bytes) /
                                 static_cast<double>(std::max<std::uint64_t>(
                                     1, st.host_compressed_raw_bytes));
            out << "  compressed       " << st.compressed_groups << " groups, "
                << bytes_text(static_cast<double>(st.host_compressed_bytes)) << " for "
                << bytes_text(static_cast<double>(st.host_compressed_raw_bytes)) << " raw (ratio "
                << format("%.3f", ratio) << "); " << st.decodes << " decodes, "
                << bytes_text(static_cast<double>(st.bytes_h2d_compressed)) << " H2D into "
                << bytes_text(static_cast<double>(st.bytes_decoded)) << " decoded; encoded in "
                << format("%.1f", st.encode_ns * 1e-6) << " ms at seal\n";
        }
        out << "  host             pinned " << bytes_text(static_cast<double>(st.host_pinned_bytes))
            << " (peak " << bytes_text(static_cast<double>(st.host_pinned_peak_bytes))
            << "), pageable " << bytes_text(static_cast<double>(st.host_pageable_bytes))
            << "; pinned in " << format("%.1f", st.host_pin_ns * 1e-6) << " ms";
        if (st.host_disk_bytes > 0) {
            out << ", of which disk tier " << bytes_text(static_cast<double>(st.host_disk_bytes))
                << " (" << bytes_text(static_cast<double>(st.bytes_disk_read)) << " read)";
        }
        out << "\n";
        const auto split = std::count_if(
            snap.groups.begin(), snap.groups.end(),
            [](const ferry::GroupSnapshot &g) { return !g.resident && g.resident_bytes > 0; });
        out << "  plan             " << st.groups << " groups: " << st.resident_groups
            << " resident, " << (st.groups - st.resident_groups) << " streamed ("
            << split << " split: head resident, tail streamed) in " << st.size_classes << " size class(es), " << st.streaming_slots << " slots; "
            << bytes_text(static_cast<double>(st.streamed_bytes_per_pass)) << " per pass\n";
        if (!snap.groups.empty()) {
            char line[256];
            std::snprintf(line, sizeof line, "  %-24s %10s %10s %-9s %8s %9s %9s\n", "GROUP",
                          "BYTES", "RESIDENT", "PLACE", "ONLOADS", "LAST ms", "MEAN ms");
            out << line;
            for (const ferry::GroupSnapshot &g : snap.groups) {
                // A split group keeps a head resident and streams its tail.
                const std::string place = g.resident ? "resident"
                                          : g.resident_bytes > 0
                                              ? "split " + std::to_string(g.size_class)
                                              : "class " + std::to_string(g.size_class);
                const std::string bytes = bytes_text(static_cast<double>(g.image_bytes));
                const std::string resident = bytes_text(static_cast<double>(g.resident_bytes));
                std::snprintf(line, sizeof line,
                              "  %-24.24s %10s %10s %-9s %8llu %9.3f %9.3f\n", g.name.c_str(),
                              bytes.c_str(), resident.c_str(), place.c_str(),
                              static_cast<unsigned long long>(g.onloads),
                              static_cast<double>(g.last_onload_ns) / 1e6, mean_onload_ms(g));
                out << line;
            }
        }
    }
    return out.str();
}

std::string render_json(const std::vector<Shown> &shown, const std::vector<Problem> &problems) {
    std::ostringstream out;
    out << "{\"layout_version\":" << ferry::shm::kLayoutVersion << ",\"runtimes\":[";
    for (std::size_t i = 0; i < shown.size(); ++i) {
        const ferry::Snapshot &snap = shown[i].snapshot;
        const Rates &r = shown[i].rates;
        out << (i ? "," : "") << "\n{\"pid\":" << snap.pid << ",\"name\":" << json_string(snap.name)
            << ",\"segment\":" << json_string(snap.segment) << ",\"backend\":\""
            << backend_name(snap.backend) << "\",\"device\":" << snap.device
            << ",\"device_name\":" << json_string(snap.device_name)
            << ",\"phase\":\"" << phase_name(snap.phase) << "\",\"created_unix_ns\":"
            << snap.created_unix_ns << ",\n \"stats\":{";
        bool first = true;
        for (const ferry::shm::StatField &field : ferry::shm::kStatFields) {
            out << (first ? "" : ",") << "\"" << field.name << "\":" << snap.stats.*field.member;
            first = false;
        }
        out << "},\n \"rates\":{\"interval_s\":" << json_number(r.interval_s)
            << ",\"passes_per_s\":" << json_number(r.passes_per_s)
            << ",\"acquires_per_s\":" << json_number(r.acquires_per_s)
            << ",\"h2d_bytes_per_s\":" << json_number(r.h2d_bytes_per_s)
            << ",\"d2h_bytes_per_s\":" << json_number(r.d2h_bytes_per_s)
            << ",\"stall_fraction\":" << json_number(r.stall_fraction) << ",\"hit_rate\":"
            << (r.hit_rate < 0 ? std::string("null") : json_number(r.hit_rate))
            << "},\n \"groups\":[";
        for (std::size_t g = 0; g < snap.groups.size(); ++g) {
            const ferry::GroupSnapshot &row = snap.groups[g];
            out << (g ? "," : "") << "\n  {\"name\":" << json_string(row.name)
                << ",\"image_bytes\":" << row.image_bytes
                << ",\"resident\":" << (row.resident ? "true" : "false")
                << ",\"resident_bytes\":" << row.resident_bytes
                << ",\"size_class\":" << row.size_class << ",\"onloads\":" << row.onloads
                << ",\"timed_onloads\":" << row.timed_onloads
                << ",\"last_onload_ns\":" << row.last_onload_ns
                << ",\"mean_onload_ns\":" << json_number(mean_onload_ms(row) * 1e6) << "}";
        }
        out << "]}";
    }
    out << "],\n\"problems\":[";
    for (std::size_t i = 0; i < problems.size(); ++i) {
        const Problem &p = problems[i];
        out << (i ? "," : "") << "\n{\"segment\":" << json_string(p.segment) << ",\"pid\":" << p.pid
            << ",\"state\":\"" << ferry::segment_state_name(p.state)
            << "\",\"message\":" << json_string(p.message) << "}";
    }
    out << "]}\n";
    return out.str();
}

std::string render_prometheus(const std::vector<Shown> &shown) {
    std::ostringstream out;
    auto labels = [](const ferry::Snapshot &s) {
        return "pid=\"" + std::to_string(s.pid) + "\",name=\"" + prometheus_label(s.name) + "\"";
    };
    out << "# HELP ferry_runtime_info A live ferry runtime publishing stats.\n"
        << "# TYPE ferry_runtime_info gauge\n";
    for (const Shown &s : shown) {
        out << "ferry_runtime_info{" << labels(s.snapshot) << ",backend=\""
            << backend_name(s.snapshot.backend) << "\",device=\""
            << prometheus_label(s.snapshot.device_name) << "\",phase=\""
            << phase_name(s.snapshot.phase) << "\"} 1\n";
    }
    for (const ferry::shm::StatField &field : ferry::shm::kStatFields) {
        const std::string metric =
            std::string("ferry_") + field.name + (field.counter ? "_total" : "");
        out << "# HELP " << metric << " ferry_stats." << field.name << "\n# TYPE " << metric
            << (field.counter ? " counter\n" : " gauge\n");
        for (const Shown &s : shown) {
            out << metric << "{" << labels(s.snapshot) << "} " << s.snapshot.stats.*field.member
                << "\n";
        }
    }
    struct GroupMetric {
        const char *name;
        const char *type;
        double (*value)(const ferry::GroupSnapshot &);
    };
    const GroupMetric group_metrics[] = {
        {"ferry_group_image_bytes", "gauge",
         [](const ferry::GroupSnapshot &g) { return static_cast<double>(g.image_bytes); }},
        {"ferry_group_resident_bytes", "gauge",
         [](const ferry::GroupSnapshot &g) { return static_cast<double>(g.resident_bytes); }},
        {"ferry_group_onloads_total", "counter",
         [](const ferry::GroupSnapshot &g) { return static_cast<double>(g.onloads); }},
        {"ferry_group_last_onload_seconds", "gauge",
         [](const ferry::GroupSnapshot &g) { return static_cast<double>(g.last_onload_ns) / 1e9; }},
        {"ferry_group_mean_onload_seconds", "gauge",
         [](const ferry::GroupSnapshot &g) { return mean_onload_ms(g) / 1e3; }},
    };
    for (const GroupMetric &m : group_metrics) {
        out << "# HELP " << m.name << " Per group of a ferry runtime.\n# TYPE " << m.name << " "
            << m.type << "\n";
        for (const Shown &s : shown) {
            for (const ferry::GroupSnapshot &g : s.snapshot.groups) {
                out << m.name << "{" << labels(s.snapshot) << ",group=\""
                    << prometheus_label(g.name) << "\",resident=\"" << (g.resident ? "1" : "0")
                    << "\"} " << format("%.9g", m.value(g)) << "\n";
            }
        }
    }
    return out.str();
}

}  // namespace ferry_stat
