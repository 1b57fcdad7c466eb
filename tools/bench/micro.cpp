#include "micro.hpp"

#include <time.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <thread>
#include <vector>

#include "ferry/ferry.h"
#include "runtime.hpp"

namespace bench {
namespace {

constexpr int kGroups = 16;
constexpr std::uint64_t kGroupBytes = 4096;
constexpr int kPasses = 1000;

double thread_cpu_ns() {
    timespec ts{};
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return static_cast<double>(ts.tv_sec) * 1e9 + static_cast<double>(ts.tv_nsec);
}

void check(ferry_status status, const char *call) {
    if (status == FERRY_OK) return;
    std::fprintf(stderr, "ferry-bench (micro): %s failed: %s\n  %s\n", call,
                 ferry_status_string(status), ferry_last_error());
    std::exit(1);
}

// What one clock_gettime of the thread's CPU clock costs (a system call), to subtract.
double clock_cost_ns() {
    const int n = 1000;
    const double start = thread_cpu_ns();
    for (int i = 0; i < n; ++i) thread_cpu_ns();
    return (thread_cpu_ns() - start) / n;
}

void noop(void *) {}

// On sim, the CPU cost of handing work to a stream whose thread has parked: it must be
// woken (a futex wake). A sim stream polls for 50 us after its last task before it parks
// (sim_device.cpp), so the prefetch a pair queues right after a synchronize does not pay
// this; work handed to a stream idle for longer does. A GPU never pays it.
double sim_wake_ns(const Platform &platform) {
    const std::unique_ptr<ferry::Device> device = platform.make_device();
    ferry::Stream stream = device->create_stream();
    double total = 0.0;
    const int n = 500;
    for (int i = 0; i < n; ++i) {
        device->stream_synchronize(stream);
        std::this_thread::sleep_for(std::chrono::milliseconds(1));  // well past its polling
        const double start = thread_cpu_ns();
        device->launch_host(stream, noop, nullptr);
        total += thread_cpu_ns() - start;
    }
    device->destroy_stream(stream);
    return total / n - clock_cost_ns();
}

// A sealed runtime of kGroups tiny groups, acquired in order.
struct Tiny {
    ferry_runtime *rt = nullptr;
    std::vector<ferry_group> groups;
    ferry::Stream stream = nullptr;

    Tiny(const Platform &platform, std::uint64_t budget) {
        ferry_config config;
        ferry_config_init(&config);
        config.backend = platform.cuda() ? FERRY_BACKEND_CUDA : FERRY_BACKEND_SIM;
        config.vram_budget = budget;
        config.name = "ferry-bench-micro";
        check(ferry_create(&config, &rt), "ferry_create");
        groups.resize(kGroups);
        for (int g = 0; g < kGroups; ++g) {
            check(ferry_group_define(rt, ("g" + std::to_string(g)).c_str(), &groups[g]),
                  "ferry_group_define");
            ferry_tensor tensor;
            check(ferry_tensor_define(rt, groups[g], "w", kGroupBytes, FERRY_DTYPE_UNKNOWN, 0, nullptr,
                                      0, &tensor),
                  "ferry_tensor_define");
        }
        check(ferry_schedule_declare(rt, groups.data(), groups.size()), "ferry_schedule_declare");
        check(ferry_plan(rt), "ferry_plan");
        check(ferry_seal(rt), "ferry_seal");
        // On sim, the calling thread is the stream: no hand-off to another thread is timed.
        if (platform.cuda()) stream = ferry_runtime_impl(rt).device().create_stream();
    }
    ~Tiny() {
        if (stream != nullptr) ferry_runtime_impl(rt).device().destroy_stream(stream);
        ferry_destroy(rt);
    }

    // CPU ns per acquire + release, over kPasses passes after two warm-up ones; the misses
    // among them in *misses. Between pairs, untimed, ferry's copies are let finish, so
    // that the pair's time is its own work, not a wait for a copy or a thread wake-up.
    double pair_ns(std::uint64_t *misses) {
        double timed = 0.0;
        auto pass = [&] {
            for (ferry_group g : groups) {
                const double start = thread_cpu_ns();
                check(ferry_acquire(rt, g, stream), "ferry_acquire");
                check(ferry_release(rt, g, stream), "ferry_release");
                timed += thread_cpu_ns() - start;
                check(ferry_synchronize(rt), "ferry_synchronize");
            }
        };
        pass();
        pass();
        const std::uint64_t misses_before = stats().misses;
        timed = 0.0;
        const double clock = clock_cost_ns();
        for (int p = 0; p < kPasses; ++p) pass();
        *misses = stats().misses - misses_before;
        return std::max(0.0, timed / (kPasses * kGroups) - clock);
    }

    ferry_stats stats() {
        ferry_stats s;
        s.struct_size = sizeof s;
        check(ferry_stats_get(rt, &s), "ferry_stats_get");
        return s;
    }
};

}  // namespace

MicroResult run_micro(const Platform &platform) {
    if (!platform.cuda()) Platform::export_sim_options(ferry::SimOptions{});  // instant copies
    MicroResult result;
    {
        Tiny resident(platform, 2 * kGroups * kGroupBytes);
        std::uint64_t misses = 0;
        result.resident_ns = resident.pair_ns(&misses);
        const double start = thread_cpu_ns();
        ferry_phase phase;
        for (int i = 0; i < kPasses * kGroups; ++i) {
            check(ferry_phase_get(resident.rt, &phase), "ferry_phase_get");
        }
        result.api_ns = (thread_cpu_ns() - start) / (kPasses * kGroups);
    }
    {
        Tiny streamed(platform, 2 * kGroupBytes);  // two slots, nothing resident
        result.prefetched_ns = streamed.pair_ns(&result.prefetched_misses);
    }
    if (!platform.cuda()) result.sim_wake_ns = std::max(0.0, sim_wake_ns(platform));
    return result;
}

}  // namespace bench
