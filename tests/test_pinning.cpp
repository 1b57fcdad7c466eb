// Pinned-memory limits: the host store is pinned in chunks with progress reported, up to
// a cap; past it, plan fails with a clear message or, when allowed, keeps the rest
// pageable and says so in stats. Tested on sim by lowering the cap.
#include <catch2/catch.hpp>
#include <chrono>
#include <cstdlib>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "api_fixture.hpp"
#include "device/fault_injection.hpp"
#include "core/runtime.hpp"
#include "sim_model.hpp"

using namespace ferry_test;

namespace {

constexpr std::uint64_t kStoreBytes = 16 * 65536;  // 16 groups of one 64 KiB page-run

ModelSpec sixteen_groups(std::uint64_t cap, bool fallback) {
    ModelSpec spec;
    for (int g = 0; g < 16; ++g) spec.groups.push_back({{65536, false}});
    spec.budget = 6 * 65536;
    spec.pinned_cap = cap;
    spec.pageable_fallback = fallback;
    return spec;
}

struct Progress {
    std::vector<std::uint64_t> pinned;
    std::uint64_t pageable = 0;
    std::uint64_t total = 0;
    static void record(void *user, std::uint64_t pinned, std::uint64_t pageable,
                       std::uint64_t total) {
        auto *p = static_cast<Progress *>(user);
        p->pinned.push_back(pinned);
        p->pageable = pageable;
        p->total = total;
    }
};

ferry_runtime *define_sixteen(std::uint64_t cap, bool fallback) {
    ferry_config config;
    ferry_config_init(&config);
    config.backend = FERRY_BACKEND_SIM;
    config.vram_budget = 6 * 65536;
    config.pinned_cap_bytes = cap;
    config.pageable_fallback = fallback ? 1 : 0;
    ferry_runtime *rt = nullptr;
    REQUIRE(ferry_create(&config, &rt) == FERRY_OK);
    for (int g = 0; g < 16; ++g) {
        const ferry_group group = define_group(rt, ("g" + std::to_string(g)).c_str());
        define_bytes(rt, group, "w", 65536);
    }
    return rt;
}

}  // namespace

TEST_CASE("A host store over the pinned cap fails plan with a message naming the cap",
          "[pinning]") {
    ferry_runtime *rt = define_sixteen(kStoreBytes / 2, false);
    REQUIRE_FERRY_ERROR(ferry_plan(rt), FERRY_ERROR_OUT_OF_HOST_MEMORY, "ferry_plan",
                        "pinned cap of " + std::to_string(kStoreBytes / 2));
    REQUIRE(std::string(ferry_last_error()).find("RLIMIT_MEMLOCK") != std::string::npos);
    REQUIRE(std::string(ferry_last_error()).find("pageable_fallback") != std::string::npos);
    ferry_phase phase;
    REQUIRE(ferry_phase_get(rt, &phase) == FERRY_OK);
    REQUIRE(phase == FERRY_PHASE_DEFINE);
    REQUIRE(ferry_destroy(rt) == FERRY_OK);
}

TEST_CASE("With pageable fallback the bytes past the cap stay pageable and are reported",
          "[pinning]") {
    SimModel model(sixteen_groups(kStoreBytes / 4, true));
    ferry_stats stats = model.stats();
    REQUIRE(stats.host_pinned_bytes == kStoreBytes / 4);
    REQUIRE(stats.host_pageable_bytes == kStoreBytes - kStoreBytes / 4);
    // Every byte still arrives right, pinned or not.
    std::mt19937_64 rng(5);
    Failures failures;
    void *stream = model.create_stream();
    for (int pass = 0; pass < 5; ++pass) {
        for (std::size_t g = 0; g < model.group_count(); ++g) {
            REQUIRE(model.run_group(g, stream, failures) == FERRY_OK);
        }
    }
    model.drain();
    INFO(failures.first);
    REQUIRE(failures.count == 0);
}

TEST_CASE("Pinning goes chunk by chunk and reports progress to the callback", "[pinning]") {
    ScopedEnv chunk("FERRY_PIN_CHUNK", "131072");
    ferry_runtime *rt = define_sixteen(0, false);
    Progress progress;
    REQUIRE(ferry_pin_progress_set(rt, &Progress::record, &progress) == FERRY_OK);
    REQUIRE(ferry_plan(rt) == FERRY_OK);
    REQUIRE(progress.pinned.size() == kStoreBytes / 131072);
    for (std::size_t i = 0; i < progress.pinned.size(); ++i) {
        REQUIRE(progress.pinned[i] == (i + 1) * 131072);
    }
    REQUIRE(progress.total == kStoreBytes);
    REQUIRE(progress.pageable == 0);
    REQUIRE_FERRY_ERROR(ferry_pin_progress_set(rt, nullptr, nullptr), FERRY_ERROR_WRONG_PHASE,
                        "ferry_pin_progress_set", "DEFINE");
    REQUIRE(ferry_destroy(rt) == FERRY_OK);
}

TEST_CASE("Refused pinning names RLIMIT_MEMLOCK, or falls back to pageable when allowed",
          "[pinning]") {
    ScopedEnv chunk("FERRY_PIN_CHUNK", "262144");
    {
        ferry_runtime *rt = define_sixteen(0, false);
        ferry::ScopedFault refuse(ferry::Fault::pin, /*skip=*/1);
        REQUIRE_FERRY_ERROR(ferry_plan(rt), FERRY_ERROR_OUT_OF_HOST_MEMORY, "ferry_plan",
                            "after 262144 of " + std::to_string(kStoreBytes) + " bytes");
        REQUIRE(std::string(ferry_last_error()).find("RLIMIT_MEMLOCK is") != std::string::npos);
        REQUIRE(ferry_destroy(rt) == FERRY_OK);
    }
    ferry_runtime *rt = define_sixteen(0, true);
    Progress progress;
    REQUIRE(ferry_pin_progress_set(rt, &Progress::record, &progress) == FERRY_OK);
    {
        // The staging ring's two buffers, two chunks of the store, then every pin refused,
        // as a memlock limit would.
        ferry::ScopedFault refuse(ferry::Fault::pin, /*skip=*/4, /*times=*/1000);
        REQUIRE(ferry_plan(rt) == FERRY_OK);
    }
    ferry_stats stats;
    stats.struct_size = sizeof stats;
    REQUIRE(ferry_stats_get(rt, &stats) == FERRY_OK);
    REQUIRE(stats.host_pinned_bytes == 2 * 262144);
    REQUIRE(stats.host_pageable_bytes == kStoreBytes - 2 * 262144);
    REQUIRE(progress.pageable == stats.host_pageable_bytes);
    REQUIRE(ferry_destroy(rt) == FERRY_OK);
}

TEST_CASE("FERRY_PINNED_CAP overrides the config, and a malformed value is an error",
          "[pinning]") {
    {
        ScopedEnv cap("FERRY_PINNED_CAP", "65536");
        ferry_runtime *rt = define_sixteen(0, false);
        REQUIRE_FERRY_ERROR(ferry_plan(rt), FERRY_ERROR_OUT_OF_HOST_MEMORY, "ferry_plan",
                            "pinned cap of 65536");
        REQUIRE(ferry_destroy(rt) == FERRY_OK);
    }
    ScopedEnv cap("FERRY_PINNED_CAP", "lots");
    ferry_config config;
    ferry_config_init(&config);
    config.backend = FERRY_BACKEND_SIM;
    config.vram_budget = 1 << 20;
    ferry_runtime *rt = nullptr;
    REQUIRE_FERRY_ERROR(ferry_create(&config, &rt), FERRY_ERROR_INVALID_ARGUMENT, "ferry_create",
                        "FERRY_PINNED_CAP");
}

TEST_CASE("By default the whole store is pinned and nothing is pageable", "[pinning]") {
    SimModel model(sixteen_groups(0, false));
    const ferry_stats stats = model.stats();
    REQUIRE(stats.host_pinned_bytes == kStoreBytes);
    REQUIRE(stats.host_pageable_bytes == 0);
}

TEST_CASE("Under chaos, bytes past the cap arrive right through the staging ring, mutable "
          "updates included",
          "[pinning]") {
    std::mt19937_64 rng(77);
    ModelSpec spec;
    for (int g = 0; g < 10; ++g) {
        spec.groups.push_back({{20000 + rng() % 9000, false}, {1 + rng() % 5000, true}});
    }
    spec.budget = 4 * 40960;
    spec.chaos = true;
    spec.pinned_cap = 65536;  // most of the store is pageable
    spec.pageable_fallback = true;
    SimModel model(spec);
    REQUIRE(model.stats().host_pageable_bytes > model.stats().host_pinned_bytes);
    Failures failures;
    run_passes(model, 15, 2, failures, rng);
    model.drain();
    REQUIRE(ferry_synchronize(model.runtime()) == FERRY_OK);
    model.host_versions_current(failures);
    INFO(failures.first);
    REQUIRE(failures.count == 0);
    REQUIRE(model.stats().writebacks > 0);
}

namespace {
void sleep_100ms(void *) { std::this_thread::sleep_for(std::chrono::milliseconds(100)); }
}  // namespace

TEST_CASE("A group copied through the staging ring waits for its own pending writeback",
          "[pinning]") {
    ModelSpec spec;
    for (int g = 0; g < 3; ++g) spec.groups.push_back({{100000, true}});
    spec.budget = 2 * 102400;  // two slots, nothing resident: every acquire evicts
    spec.pinned_cap = 4096;
    spec.pageable_fallback = true;
    SimModel model(spec);
    Failures failures;
    void *stream = model.create_stream();
    // Compute is slow, so g0's writeback (queued when g2 evicts it) is still waiting for
    // it when g0 comes back and its host bytes are staged.
    ferry_runtime_impl(model.runtime()).device().launch_host(stream, sleep_100ms, nullptr);
    for (std::size_t g : {0, 1, 2, 0}) REQUIRE(model.run_group(g, stream, failures) == FERRY_OK);
    model.drain();
    INFO(failures.first);
    REQUIRE(failures.count == 0);
}
