// ferry-stat: shows live ferry runtimes from outside their process, like nvidia-smi does
// for the GPU. Runtimes publish with config.publish_stats = 1 or FERRY_STATS=1.
//
//     ferry-stat                      every live runtime, one line each
//     ferry-stat PID[/NAME]           one process's runtimes (or one of them) in detail
//     --watch [SECONDS]               refresh every SECONDS (default 1) in place, like top
//     --json | --prometheus           one JSON document | Prometheus text exposition
//     --remove-stale [PID]            remove segments whose process is gone
//
// Rates come from two snapshots --interval seconds apart (0.5 s by default; the refresh
// period with --watch).
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "host_shares.hpp"
#include "render.hpp"
#include "observe/stats_reader.hpp"

namespace {

using ferry::SegmentState;
using ferry_stat::Problem;
using ferry_stat::Shown;

enum Exit {
    kExitOk = 0,
    kExitNoSuchRuntime = 1,
    kExitUsage = 2,
    kExitPermissionDenied = 3,
    kExitIncompatible = 4,
    kExitStale = 5,
};

constexpr const char *kUsage =
    "usage: ferry-stat [PID[/NAME]] [--watch [SECONDS]] [--count N] [--interval SECONDS]\n"
    "                  [--json | --prometheus]\n"
    "       ferry-stat --remove-stale [PID]\n"
    "Shows ferry runtimes that publish stats (config.publish_stats = 1 or FERRY_STATS=1).\n"
    "  PID[/NAME]          one process's runtimes, or its runtime NAME, in detail\n"
    "  --watch [SECONDS]   refresh every SECONDS (default 1) until interrupted\n"
    "  --count N           with --watch: stop after N refreshes\n"
    "  --interval SECONDS  time between the two snapshots rates come from (default 0.5)\n"
    "  --json              one JSON document (with --watch: one per line)\n"
    "  --prometheus        Prometheus text exposition, ferry_-prefixed metrics\n"
    "  --remove-stale      remove segments left by processes that are gone, and shared\n"
    "                      host stores whose runtimes are all gone\n"
    "exit codes: 0 ok, 1 no such runtime, 2 bad usage, 3 permission denied,\n"
    "            4 incompatible layout version, 5 stale (the process is gone)\n";

struct Options {
    long pid = 0;  // 0: every runtime
    std::string name;
    bool json = false;
    bool prometheus = false;
    bool watch = false;
    bool remove_stale = false;
    double interval_s = 0.5;
    long count = 0;  // with --watch; 0: until interrupted
};

[[noreturn]] void usage_error(const std::string &problem) {
    std::fprintf(stderr, "ferry-stat: %s\n%s", problem.c_str(), kUsage);
    std::exit(kExitUsage);
}

bool parse_number(const char *text, double min, double max, double *out) {
    char *end = nullptr;
    const double value = std::strtod(text, &end);
    if (end == text || *end != '\0' || !(value >= min && value <= max)) return false;
    *out = value;
    return true;
}

void parse_target(const std::string &text, Options &o) {
    const std::size_t slash = text.find('/');
    const std::string pid = text.substr(0, slash);
    double value = 0;
    if (pid.empty() || pid.find_first_not_of("0123456789") != std::string::npos ||
        !parse_number(pid.c_str(), 1, 4194304, &value)) {
        usage_error("'" + text + "' is not PID or PID/NAME (PID a process id)");
    }
    o.pid = static_cast<long>(value);
    if (slash != std::string::npos) {
        o.name = text.substr(slash + 1);
        if (o.name.empty()) usage_error("'" + text + "': NAME after '/' is empty");
    }
}

Options parse(int argc, char **argv) {
    Options o;
    bool interval_given = false;
    bool target_given = false;
    for (int i = 1; i < argc; ++i) {
        const std::string arg = argv[i];
        double value = 0;
        if (arg == "-h" || arg == "--help") {
            std::fputs(kUsage, stdout);
            std::exit(kExitOk);
        } else if (arg == "--json") {
            o.json = true;
        } else if (arg == "--prometheus") {
            o.prometheus = true;
        } else if (arg == "--remove-stale") {
            o.remove_stale = true;
        } else if (arg == "--watch") {
            o.watch = true;
            if (i + 1 < argc && parse_number(argv[i + 1], 0.05, 86400, &value)) {
                o.interval_s = value;
                interval_given = true;
                ++i;
            } else if (!interval_given) {
                o.interval_s = 1.0;
            }
        } else if (arg == "--interval") {
            if (i + 1 >= argc || !parse_number(argv[i + 1], 0, 86400, &value)) {
                usage_error("--interval needs seconds in [0, 86400]");
            }
            o.interval_s = value;
            interval_given = true;
            ++i;
        } else if (arg == "--count") {
            if (i + 1 >= argc || !parse_number(argv[i + 1], 1, 1e9, &value)) {
                usage_error("--count needs a number of refreshes >= 1");
            }
            o.count = static_cast<long>(value);
            ++i;
        } else if (!arg.empty() && arg[0] == '-') {
            usage_error("unknown option " + arg);
        } else if (target_given) {
            usage_error("more than one PID[/NAME]: " + arg);
        } else {
            parse_target(arg, o);
            target_given = true;
        }
    }
    if (o.json && o.prometheus) usage_error("--json and --prometheus exclude each other");
    if (o.count != 0 && !o.watch) usage_error("--count goes with --watch");
    if (o.remove_stale && (o.watch || o.json || o.prometheus || !o.name.empty())) {
        usage_error("--remove-stale takes at most a PID");
    }
    if (o.watch && o.interval_s <= 0) usage_error("--watch needs a refresh period > 0");
    return o;
}

int exit_code(SegmentState state) {
    switch (state) {
        case SegmentState::kOk: return kExitOk;
        case SegmentState::kPermissionDenied: return kExitPermissionDenied;
        case SegmentState::kIncompatible: return kExitIncompatible;
        case SegmentState::kStale: return kExitStale;
        case SegmentState::kNotFound:
        case SegmentState::kUnsettled: return kExitNoSuchRuntime;
    }
    return kExitNoSuchRuntime;
}

// Segments of the target: "ferry.<pid>.<name>" or "ferry.<pid>.<name>.<n>".
bool segment_matches(const Options &o, const std::string &segment) {
    if (o.pid == 0) return true;
    if (ferry::segment_pid(segment) != o.pid) return false;
    if (o.name.empty()) return true;
    const std::string base = "ferry." + std::to_string(o.pid) + "." + o.name;
    return segment.rfind(base, 0) == 0;
}

// One snapshot of every matching runtime; unreadable ones become problems.
void snapshot_all(const Options &o, std::map<std::string, ferry::Snapshot> &shown,
                  std::vector<Problem> &problems) {
    for (const std::string &segment : ferry::list_segments()) {
        if (!segment_matches(o, segment)) continue;
        ferry::ReadResult read = ferry::read_segment(segment);
        if (read.state == SegmentState::kOk) {
            if (!o.name.empty() && read.snapshot.name != o.name) continue;
            shown[segment] = std::move(read.snapshot);
        } else if (read.state != SegmentState::kNotFound &&
                   read.state != SegmentState::kUnsettled) {
            problems.push_back({segment, ferry::segment_pid(segment), read.state, read.message});
        }
    }
}

std::vector<Shown> with_rates(const std::map<std::string, ferry::Snapshot> &before,
                              const std::map<std::string, ferry::Snapshot> &after) {
    std::vector<Shown> out;
    for (const auto &[segment, snapshot] : after) {
        const auto earlier = before.find(segment);
        const ferry::Snapshot *base = earlier == before.end() ? nullptr : &earlier->second;
        out.push_back({snapshot, ferry_stat::rates_between(base, snapshot)});
    }
    return out;
}

std::string render(const Options &o, const std::vector<Shown> &shown,
                   const std::vector<Problem> &problems) {
    if (o.json) {  // the shared host stores as one more key of the document
        std::string text = ferry_stat::render_json(shown, problems);
        const std::size_t end = text.rfind('}');
        return text.substr(0, end) + ",\n" + ferry_stat::host_shares_json(shown) + "}\n";
    }
    if (o.prometheus) return ferry_stat::render_prometheus(shown);
    if (o.pid != 0) return ferry_stat::render_detail(shown);
    return ferry_stat::render_table(shown, problems) + ferry_stat::render_host_shares(shown);
}

std::string target_text(const Options &o) {
    return std::to_string(o.pid) + (o.name.empty() ? "" : "/" + o.name);
}

// Exit code and message when a target was asked for and cannot be shown whole.
int report_target(const Options &o, const std::vector<Shown> &shown,
                  const std::vector<Problem> &problems) {
    if (o.pid == 0) return kExitOk;
    for (const Problem &p : problems) std::fprintf(stderr, "ferry-stat: %s\n", p.message.c_str());
    if (!problems.empty()) return exit_code(problems.front().state);
    if (!shown.empty()) return kExitOk;
    const bool alive = ferry::process_alive(o.pid, 0);
    std::fprintf(stderr, "ferry-stat: no such runtime: %s: %s\n", target_text(o).c_str(),
                 alive ? "that process publishes no ferry runtime of that name (publishing "
                         "is opt-in: config.publish_stats = 1 or FERRY_STATS=1)"
                       : "no such process");
    return kExitNoSuchRuntime;
}

int remove_stale(const Options &o) {
    int code = kExitOk;
    int removed = 0;
    for (const std::string &segment : ferry::list_segments()) {
        if (!segment_matches(o, segment)) continue;
        const ferry::ReadResult read = ferry::read_segment(segment);
        if (read.state != SegmentState::kStale) continue;
        std::string why;
        if (ferry::remove_segment(segment, &why)) {
            std::printf("removed /dev/shm/%s (process %ld is gone)\n", segment.c_str(),
                        ferry::segment_pid(segment));
            ++removed;
        } else {
            std::fprintf(stderr, "ferry-stat: cannot remove /dev/shm/%s: %s\n", segment.c_str(),
                         why.c_str());
            code = kExitPermissionDenied;
        }
    }
    bool failed = false;
    removed += ferry_stat::remove_stale_host_shares(o.pid, &failed);  // shared host stores
    if (failed) code = kExitPermissionDenied;
    if (removed == 0 && code == kExitOk) std::printf("no stale segments\n");
    return code;
}

volatile sig_atomic_t g_interrupted = 0;

void sleep_for(double seconds) {
    const auto until = std::chrono::steady_clock::now() +
                       std::chrono::microseconds(static_cast<long long>(seconds * 1e6));
    while (!g_interrupted && std::chrono::steady_clock::now() < until) {
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
}

int watch(const Options &o) {
    signal(SIGINT, [](int) { g_interrupted = 1; });
    signal(SIGTERM, [](int) { g_interrupted = 1; });
    const bool clear = isatty(STDOUT_FILENO) && !o.json && !o.prometheus;
    std::map<std::string, ferry::Snapshot> before;
    std::vector<Problem> ignored;
    snapshot_all(o, before, ignored);
    for (long frame = 0; !g_interrupted && (o.count == 0 || frame < o.count); ++frame) {
        sleep_for(o.interval_s);
        if (g_interrupted) break;
        std::map<std::string, ferry::Snapshot> after;
        std::vector<Problem> problems;
        snapshot_all(o, after, problems);
        const std::vector<Shown> shown = with_rates(before, after);
        if (o.pid != 0 && (shown.empty() || !problems.empty())) {
            return report_target(o, shown, problems);
        }
        std::string text = render(o, shown, problems);
        if (o.json) {  // one document per line
            std::string line;
            for (const char c : text) {
                if (c != '\n') line += c;
            }
            text = line + "\n";
        }
        if (clear) std::fputs("\033[H\033[J", stdout);
        if (!o.json && !o.prometheus) {
            std::printf("ferry-stat, every %.1f s (Ctrl-C quits)\n", o.interval_s);
        }
        std::fputs(text.c_str(), stdout);
        std::fflush(stdout);
        before = std::move(after);
    }
    return kExitOk;
}

}  // namespace

int main(int argc, char **argv) {
    const Options o = parse(argc, argv);
    if (o.remove_stale) return remove_stale(o);
    if (o.watch) return watch(o);

    std::map<std::string, ferry::Snapshot> before;
    std::map<std::string, ferry::Snapshot> after;
    std::vector<Problem> problems;
    snapshot_all(o, before, problems);
    if (o.interval_s > 0 && !before.empty()) {
        sleep_for(o.interval_s);
        std::vector<Problem> later;  // reported once, from the first look
        snapshot_all(o, after, later);
    } else {
        after = before;
        before.clear();
    }
    const std::vector<Shown> shown = with_rates(before, after);
    const int code = report_target(o, shown, problems);
    if (o.pid != 0 && shown.empty()) return code;
    if (o.pid == 0 && shown.empty() && problems.empty() && !o.json && !o.prometheus) {
        std::printf("no live ferry runtimes publish stats (start one with FERRY_STATS=1)\n");
        std::fputs(ferry_stat::render_host_shares(shown).c_str(), stdout);
        return kExitOk;
    }
    std::fputs(render(o, shown, problems).c_str(), stdout);
    return code;
}
