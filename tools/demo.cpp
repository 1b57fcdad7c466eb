// ferry-demo: the main job for now. A synthetic model (60 equal groups by default) is
// streamed through a VRAM budget of about a third of its size, pass after pass, with
// stand-in compute on a compute stream; then the figures a user of offloading asks for:
// passes/s, bytes streamed per pass, achieved H2D GB/s against the link, hits and
// misses, VRAM and host bytes.
//
// On sim the link is modeled and compute is a host callback busy on a sim compute stream.
// The default link is 2.5 GB/s, PCIe Gen4's pinned 25 GB/s at a tenth of the speed, with
// compute slowed alike: this machine's memcpy must stay well under the modeled copy time
// for the model to hold. On cuda compute is the calibrated busy kernel and the link's
// peak is measured with one large pinned copy.
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "error.hpp"
#include "ferry/ferry.h"
#include "runtime.hpp"
#if FERRY_DEMO_CUDA
#include "busy.hpp"
#endif

namespace {

using Clock = std::chrono::steady_clock;

struct Options {
    std::string backend = "sim";
    int groups = 60;
    double group_mb = 4.0;
    int tensors_per_group = 8;
    double budget_fraction = 1.0 / 3.0;
    int passes = 20;
    double compute_ms = 1.0;  // per group
    double h2d_gbps = 2.5;    // sim link
    double latency_us = 2.3;   // sim cost of one copy call
    std::uint32_t slots_per_class = 2;
};

[[noreturn]] void usage(const char *problem) {
    std::fprintf(stderr,
                 "ferry-demo: %s\n"
                 "usage: ferry-demo [--backend sim|cuda] [--groups N] [--group-mb X]\n"
                 "                  [--tensors-per-group T] [--budget-fraction F] [--passes P]\n"
                 "                  [--compute-ms X] [--h2d-gbps X] [--latency-us X]\n"
                 "                  [--slots-per-class S]\n",
                 problem);
    std::exit(2);
}

double number(const char *flag, const char *text, double min, double max) {
    char *end = nullptr;
    const double value = std::strtod(text, &end);
    if (end == text || *end != '\0' || !(value >= min && value <= max)) {
        usage((std::string(flag) + " needs a number in [" + std::to_string(min) + ", " +
               std::to_string(max) + "], got '" + text + "'")
                  .c_str());
    }
    return value;
}

Options parse(int argc, char **argv) {
    Options o;
    for (int i = 1; i < argc; ++i) {
        const std::string flag = argv[i];
        if (flag == "--help" || flag == "-h") usage("streams a synthetic model through ferry");
        if (i + 1 >= argc) usage((flag + " needs a value").c_str());
        const char *value = argv[++i];
        if (flag == "--backend") {
            o.backend = value;
            if (o.backend != "sim" && o.backend != "cuda") usage("--backend is sim or cuda");
        } else if (flag == "--groups") {
            o.groups = static_cast<int>(number("--groups", value, 1, 100000));
        } else if (flag == "--group-mb") {
            o.group_mb = number("--group-mb", value, 0.001, 1e6);
        } else if (flag == "--tensors-per-group") {
            o.tensors_per_group = static_cast<int>(number("--tensors-per-group", value, 1, 4096));
        } else if (flag == "--budget-fraction") {
            o.budget_fraction = number("--budget-fraction", value, 0.001, 10);
        } else if (flag == "--passes") {
            o.passes = static_cast<int>(number("--passes", value, 2, 1e6));
        } else if (flag == "--compute-ms") {
            o.compute_ms = number("--compute-ms", value, 0, 1e5);
        } else if (flag == "--h2d-gbps") {
            o.h2d_gbps = number("--h2d-gbps", value, 0.001, 1e5);
        } else if (flag == "--latency-us") {
            o.latency_us = number("--latency-us", value, 0, 1e6);
        } else if (flag == "--slots-per-class") {
            o.slots_per_class = static_cast<std::uint32_t>(number("--slots-per-class", value, 2, 64));
        } else {
            usage(("unknown flag " + flag).c_str());
        }
    }
    return o;
}

void check(ferry_status status, const char *call) {
    if (status == FERRY_OK) return;
    std::fprintf(stderr, "ferry-demo: %s failed: %s\n  %s\n", call, ferry_status_string(status),
                 ferry_last_error());
    std::exit(1);
}

// Resident set size of this process, from /proc.
std::uint64_t rss_bytes() {
    std::ifstream statm("/proc/self/statm");
    std::uint64_t pages = 0;
    std::uint64_t resident = 0;
    statm >> pages >> resident;
    return resident * static_cast<std::uint64_t>(sysconf(_SC_PAGESIZE));
}

std::uint64_t peak_rss_bytes() {
    rusage usage{};
    getrusage(RUSAGE_SELF, &usage);
    return static_cast<std::uint64_t>(usage.ru_maxrss) * 1024;
}

// Sim compute: the stream's worker thread is busy for the given time, as a GPU would be.
void busy_host(void *user) {
    const auto until = Clock::now() + std::chrono::nanoseconds(reinterpret_cast<std::uintptr_t>(user));
    while (Clock::now() < until) {
    }
}

// Raw peak H2D GB/s of the backend: one large pinned copy, timed by the host.
double measure_peak_h2d(ferry::Device &device, std::size_t bytes) {
    void *host = device.alloc_pinned(bytes);
    void *dev = device.reserve(bytes);
    std::memset(host, 1, bytes);
    ferry::Stream stream = device.create_stream();
    device.copy_h2d(dev, host, bytes, stream);  // warm-up
    device.stream_synchronize(stream);
    const auto start = Clock::now();
    device.copy_h2d(dev, host, bytes, stream);
    device.stream_synchronize(stream);
    const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
    device.destroy_stream(stream);
    device.unreserve(dev);
    device.free_pinned(host, bytes);
    return static_cast<double>(bytes) / seconds / 1e9;
}

std::string mib(std::uint64_t bytes) {
    char text[32];
    std::snprintf(text, sizeof text, "%.1f MiB", static_cast<double>(bytes) / (1 << 20));
    return text;
}

}  // namespace

int main(int argc, char **argv) {
    const Options o = parse(argc, argv);
#if !FERRY_DEMO_CUDA
    if (o.backend == "cuda") {
        std::fprintf(stderr, "ferry-demo: this build has no cuda backend (-Dcuda=disabled)\n");
        return 1;
    }
#endif
    const std::uint64_t tensor_bytes = std::max<std::uint64_t>(
        1, static_cast<std::uint64_t>(o.group_mb * 1e6 / o.tensors_per_group) / 2 * 2);
    const std::uint64_t model_bytes = tensor_bytes * o.tensors_per_group * o.groups;
    const std::uint64_t rss_before = rss_bytes();

    ferry_config config;
    ferry_config_init(&config);
    config.backend = o.backend == "cuda" ? FERRY_BACKEND_CUDA : FERRY_BACKEND_SIM;
    config.vram_budget = static_cast<std::uint64_t>(static_cast<double>(model_bytes) * o.budget_fraction);
    config.slots_per_class = o.slots_per_class;
    config.name = "ferry-demo";
    config.sim_h2d_gbps = o.h2d_gbps;
    config.sim_latency_us = o.latency_us;
    ferry_runtime *rt = nullptr;
    check(ferry_create(&config, &rt), "ferry_create");
    ferry::Device &device = ferry_runtime_impl(rt).device();

    std::vector<ferry_group> groups(o.groups);
    std::vector<std::vector<ferry_tensor>> tensors(o.groups);
    for (int g = 0; g < o.groups; ++g) {
        check(ferry_group_define(rt, ("block." + std::to_string(g)).c_str(), &groups[g]),
              "ferry_group_define");
        for (int t = 0; t < o.tensors_per_group; ++t) {
            const int64_t shape[1] = {static_cast<int64_t>(tensor_bytes / 2)};
            ferry_tensor tensor;
            check(ferry_tensor_define(rt, groups[g], ("w" + std::to_string(t)).c_str(),
                                      tensor_bytes, FERRY_DTYPE_BF16, 1, shape, 0, &tensor),
                  "ferry_tensor_define");
            tensors[g].push_back(tensor);
        }
    }
    const auto plan_start = Clock::now();
    check(ferry_plan(rt), "ferry_plan");
    for (int g = 0; g < o.groups; ++g) {
        for (ferry_tensor tensor : tensors[g]) {
            void *host = nullptr;
            check(ferry_tensor_host_ptr(rt, tensor, &host), "ferry_tensor_host_ptr");
            std::memset(host, g & 0xff, tensor_bytes);
        }
    }
    check(ferry_seal(rt), "ferry_seal");
    const double load_s = std::chrono::duration<double>(Clock::now() - plan_start).count();

    ferry::Stream compute = device.create_stream();
    const auto compute_ns = static_cast<std::uint64_t>(o.compute_ms * 1e6);
    auto run_pass = [&] {
        for (int g = 0; g < o.groups; ++g) {
            check(ferry_acquire(rt, groups[g], compute), "ferry_acquire");
#if FERRY_DEMO_CUDA
            if (o.backend == "cuda") {
                ferry::kernels::launch_busy(compute, compute_ns);
            } else
#endif
            {
                device.launch_host(compute, busy_host,
                                   reinterpret_cast<void *>(static_cast<std::uintptr_t>(compute_ns)));
            }
            check(ferry_release(rt, groups[g], compute), "ferry_release");
        }
    };
    run_pass();  // learns the schedule; not timed
    device.stream_synchronize(compute);
    ferry_stats before;
    before.struct_size = sizeof before;
    check(ferry_stats_get(rt, &before), "ferry_stats_get");
    const auto start = Clock::now();
    for (int pass = 1; pass < o.passes; ++pass) run_pass();
    device.stream_synchronize(compute);
    const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
    ferry_stats after;
    after.struct_size = sizeof after;
    check(ferry_stats_get(rt, &after), "ferry_stats_get");

    const int timed = o.passes - 1;
    const double ms_per_pass = seconds * 1e3 / timed;
    const double h2d_per_pass = static_cast<double>(after.bytes_h2d - before.bytes_h2d) / timed;
    const double achieved_gbps = h2d_per_pass / (ms_per_pass * 1e6);
    const double peak_gbps =
        o.backend == "cuda" ? measure_peak_h2d(device, std::min<std::uint64_t>(model_bytes, 256u << 20))
                            : o.h2d_gbps;
    const double compute_pass_ms = o.compute_ms * o.groups;
    const double link_pass_ms = h2d_per_pass / (peak_gbps * 1e6);
    const double floor_ms = std::max(compute_pass_ms, link_pass_ms);
    const std::uint64_t streamed_acquires = (after.hits - before.hits) + (after.misses - before.misses);

    std::printf("ferry-demo: %d groups x %s on %s (%s)\n", o.groups,
                mib(tensor_bytes * o.tensors_per_group).c_str(), o.backend.c_str(),
                device.name().c_str());
    std::printf("  model              %s in %d tensors\n", mib(model_bytes).c_str(),
                o.groups * o.tensors_per_group);
    std::printf("  VRAM budget        %s (%.0f%% of the model)\n", mib(config.vram_budget).c_str(),
                100.0 * o.budget_fraction);
    std::printf("  plan               %llu resident groups, %llu streamed in %llu slots; "
                "load+seal %.2f s\n",
                (unsigned long long)after.resident_groups,
                (unsigned long long)(after.groups - after.resident_groups),
                (unsigned long long)after.streaming_slots, load_s);
    std::printf("  throughput         %.2f passes/s, %.2f ms per pass (%d timed passes)\n",
                timed / seconds, ms_per_pass, timed);
    std::printf("  streamed per pass  %s H2D, %s D2H\n", mib(static_cast<std::uint64_t>(h2d_per_pass)).c_str(),
                mib((after.bytes_d2h - before.bytes_d2h) / timed).c_str());
    std::printf("  H2D                %.2f GB/s achieved of %.2f GB/s %s\n", achieved_gbps,
                peak_gbps, o.backend == "cuda" ? "measured peak" : "modeled link");
    std::printf("  floor              %.2f ms per pass = max(compute %.2f ms, link %.2f ms); "
                "efficiency %.0f%%\n",
                floor_ms, compute_pass_ms, link_pass_ms, 100.0 * floor_ms / ms_per_pass);
    std::printf("  acquires           %llu resident, %llu hits, %llu misses; prefetches %llu "
                "issued, %llu used, %llu wasted\n",
                (unsigned long long)(after.resident_hits - before.resident_hits),
                (unsigned long long)(after.hits - before.hits),
                (unsigned long long)(after.misses - before.misses),
                (unsigned long long)(after.prefetches_issued - before.prefetches_issued),
                (unsigned long long)(after.prefetches_used - before.prefetches_used),
                (unsigned long long)(after.prefetches_wasted - before.prefetches_wasted));
    std::printf("  VRAM               slab %s reserved, peak in use %s\n",
                mib(after.slab_bytes).c_str(), mib(after.slab_used_peak_bytes).c_str());
    std::printf("  host               pinned %s (%.2f x model); process RSS +%s, peak %s%s\n",
                mib(after.host_pinned_bytes).c_str(),
                static_cast<double>(after.host_pinned_bytes) / static_cast<double>(model_bytes),
                mib(rss_bytes() - std::min(rss_bytes(), rss_before)).c_str(),
                mib(peak_rss_bytes()).c_str(),
                o.backend == "sim" ? " (sim: includes the slab, which lives in host memory)" : "");

    device.destroy_stream(compute);
    check(ferry_destroy(rt), "ferry_destroy");
    if (streamed_acquires > 0 && after.misses != before.misses) {
        std::printf("  note: %llu misses in the steady state: prefetch did not keep up\n",
                    (unsigned long long)(after.misses - before.misses));
    }
    return 0;
}
