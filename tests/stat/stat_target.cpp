// A process for the ferry-stat tests to look at: a sim runtime that publishes stats.
//
//   stat_target NAME hold    runs 5 passes, prints its own ferry_stats_get as one JSON
//                            line, then idles until stdin closes
//   stat_target NAME loop    prints "ready" after a pass, then runs passes until stdin
//                            closes
//   stat_target NAME trace PATH
//                            traces 20 passes on two compute streams over a slow link,
//                            dumps the trace to PATH and exits
#include <poll.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "ferry/ferry.h"
#include "core/runtime.hpp"
#include "observe/stats_layout.hpp"

namespace {

constexpr int kGroups = 12;
constexpr std::uint64_t kGroupBytes = 1 << 20;

void check(ferry_status status, const char *call) {
    if (status == FERRY_OK) return;
    std::fprintf(stderr, "stat_target: %s: %s: %s\n", call, ferry_status_string(status),
                 ferry_last_error());
    std::exit(1);
}

bool stdin_closed() {
    pollfd fd{STDIN_FILENO, POLLIN, 0};
    if (poll(&fd, 1, 0) <= 0) return false;
    char byte;
    return read(STDIN_FILENO, &byte, 1) <= 0;
}

// Sim compute: the stream's worker is busy for 1 ms, as a GPU kernel would be.
void busy(void *) {
    const auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(1);
    while (std::chrono::steady_clock::now() < until) {
    }
}

}  // namespace

int main(int argc, char **argv) {
    if (argc < 3) {
        std::fprintf(stderr, "usage: stat_target NAME hold|loop|trace [PATH]\n");
        return 2;
    }
    const std::string mode = argv[2];
    const bool tracing = mode == "trace";
    if (tracing && argc < 4) {
        std::fprintf(stderr, "stat_target: trace needs a PATH\n");
        return 2;
    }
    ferry_config config;
    ferry_config_init(&config);
    config.backend = FERRY_BACKEND_SIM;
    config.name = argv[1];
    config.vram_budget = 6 * kGroupBytes;
    config.publish_stats = tracing ? 0 : 1;
    config.sim_h2d_gbps = tracing ? 1.0 : 0.0;  // 1 MiB: ~1 ms, as long as compute
    ferry_runtime *rt = nullptr;
    check(ferry_create(&config, &rt), "ferry_create");
    std::vector<ferry_group> groups(kGroups);
    for (int g = 0; g < kGroups; ++g) {
        ferry_tensor tensor;
        check(ferry_group_define(rt, ("block." + std::to_string(g)).c_str(), &groups[g]),
              "ferry_group_define");
        check(ferry_tensor_define(rt, groups[g], "w", kGroupBytes, FERRY_DTYPE_UNKNOWN, 0,
                                  nullptr, 0, &tensor),
              "ferry_tensor_define");
    }
    check(ferry_plan(rt), "ferry_plan");
    check(ferry_seal(rt), "ferry_seal");

    ferry::Device &device = ferry_runtime_impl(rt).device();
    std::vector<ferry::Stream> streams;
    if (tracing) {
        streams = {device.create_stream(), device.create_stream()};
        check(ferry_trace_start(rt, 0), "ferry_trace_start");
    }
    auto pass = [&] {
        for (int g = 0; g < kGroups; ++g) {
            ferry::Stream stream = tracing ? streams[g % 2] : nullptr;
            check(ferry_acquire(rt, groups[g], stream), "ferry_acquire");
            if (tracing) device.launch_host(stream, busy, nullptr);
            check(ferry_release(rt, groups[g], stream), "ferry_release");
            // One stream at a time, so the copy overlaps compute but compute doesn't.
            if (tracing) device.stream_synchronize(stream);
        }
    };

    if (mode == "hold") {
        for (int i = 0; i < 5; ++i) pass();
        ferry_stats stats;
        stats.struct_size = sizeof stats;
        check(ferry_stats_get(rt, &stats), "ferry_stats_get");
        std::printf("{");
        for (std::size_t i = 0; i < ferry::shm::kStatWords; ++i) {
            const ferry::shm::StatField &field = ferry::shm::kStatFields[i];
            std::printf("%s\"%s\":%llu", i ? "," : "", field.name,
                        static_cast<unsigned long long>(stats.*field.member));
        }
        std::printf("}\n");
        std::fflush(stdout);
        while (!stdin_closed()) usleep(20000);
    } else if (mode == "loop") {
        pass();
        std::printf("ready\n");
        std::fflush(stdout);
        while (!stdin_closed()) {
            pass();
            usleep(2000);
        }
    } else if (tracing) {
        for (int i = 0; i < 20; ++i) pass();
        for (ferry::Stream stream : streams) device.stream_synchronize(stream);
        check(ferry_synchronize(rt), "ferry_synchronize");
        check(ferry_trace_dump(rt, argv[3]), "ferry_trace_dump");
        for (ferry::Stream stream : streams) device.destroy_stream(stream);
    } else {
        std::fprintf(stderr, "stat_target: unknown mode '%s'\n", mode.c_str());
        return 2;
    }
    check(ferry_destroy(rt), "ferry_destroy");
    return 0;
}
