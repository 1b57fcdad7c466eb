#include "micro.hpp"

#include <sched.h>
#include <time.h>

#include <algorithm>
#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "check.hpp"
#include "ferry/ferry.h"
#include "core/runtime.hpp"

namespace bench {
namespace {

constexpr int kGroups = 16;
constexpr std::uint64_t kGroupBytes = 4096;
constexpr int kPasses = 1000;

// Per-call figures are read from the monotonic clock (vDSO: no system call), on calls
// that never block: their wall time bounds their CPU time from above. The thread's CPU
// clock is a system call, and its cost inside a burst of work varies by more than the
// work itself (0.3 us back to back, 1.5 us between a prefetch's copy submissions here).
double now_ns() {
    timespec ts{};
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return static_cast<double>(ts.tv_sec) * 1e9 + static_cast<double>(ts.tv_nsec);
}

// What one clock read costs, to subtract.
double clock_cost_ns() {
    const int n = 1000;
    const double start = now_ns();
    for (int i = 0; i < n; ++i) now_ns();
    return (now_ns() - start) / n;
}

void noop(void *) {}

// On sim, the cost of handing work to a stream whose thread has parked: it must be
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
        const double start = now_ns();
        device->launch_host(stream, noop, nullptr);
        total += now_ns() - start;
    }
    device->destroy_stream(stream);
    return total / n - clock_cost_ns();
}

// While alive, the calling thread, and the threads it starts, run on the CPU it is on.
// On sim the copy stream is a thread: on a second core it would work on the cache lines
// the caller has just written (the queue, the events) while the caller goes on, and the
// figure would be that traffic between cores, about 1 us, which a GPU taking work from a
// pushbuffer does not cause. On the caller's core it runs when the caller waits.
class OnThisCpu {
   public:
    OnThisCpu() {
        pinned_ = sched_getaffinity(0, sizeof before_, &before_) == 0;
        const int cpu = sched_getcpu();
        if (!pinned_ || cpu < 0) return;
        cpu_set_t one;
        CPU_ZERO(&one);
        CPU_SET(cpu, &one);
        pinned_ = sched_setaffinity(0, sizeof one, &one) == 0;
    }
    ~OnThisCpu() {
        if (pinned_) sched_setaffinity(0, sizeof before_, &before_);
    }
    OnThisCpu(const OnThisCpu &) = delete;
    OnThisCpu &operator=(const OnThisCpu &) = delete;
    bool pinned() const { return pinned_; }

   private:
    cpu_set_t before_{};
    bool pinned_ = false;
};

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

    // ns per acquire + release, over kPasses passes after two warm-up ones; the misses
    // among them in *misses. Between pairs, untimed, ferry's copies are let finish, so
    // that the pair's time is its own work, not a wait for a copy or a thread wake-up.
    double pair_ns(std::uint64_t *misses) {
        double timed = 0.0;
        auto pass = [&] {
            for (ferry_group g : groups) {
                const double start = now_ns();
                check(ferry_acquire(rt, g, stream), "ferry_acquire");
                check(ferry_release(rt, g, stream), "ferry_release");
                timed += now_ns() - start;
                check(ferry_synchronize(rt), "ferry_synchronize");
            }
        };
        pass();
        pass();
        const std::uint64_t misses_before = stats_of(rt).misses;
        timed = 0.0;
        const double clock = clock_cost_ns();
        for (int p = 0; p < kPasses; ++p) pass();
        *misses = stats_of(rt).misses - misses_before;
        return std::max(0.0, timed / (kPasses * kGroups) - clock);
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
        const double start = now_ns();
        ferry_phase phase;
        for (int i = 0; i < kPasses * kGroups; ++i) {
            check(ferry_phase_get(resident.rt, &phase), "ferry_phase_get");
        }
        result.api_ns = (now_ns() - start) / (kPasses * kGroups);
    }
    if (platform.cuda()) {
        Tiny streamed(platform, 2 * kGroupBytes);  // two slots, nothing resident
        result.prefetched_ns = streamed.pair_ns(&result.prefetched_misses);
    } else {
        {
            const OnThisCpu one_cpu;
            Tiny streamed(platform, 2 * kGroupBytes);
            result.prefetched_ns = streamed.pair_ns(&result.prefetched_misses);
            result.sim_one_cpu = one_cpu.pinned();
        }
        Tiny streamed(platform, 2 * kGroupBytes);  // the sim's threads free to run anywhere
        std::uint64_t misses = 0;
        result.prefetched_any_cpu_ns = streamed.pair_ns(&misses);
    }
    if (!platform.cuda()) result.sim_wake_ns = std::max(0.0, sim_wake_ns(platform));
    return result;
}

}  // namespace bench
