// The pipeline's promises, one per test case, on sim without chaos so counts are exact.
#include <catch2/catch.hpp>
#include <chrono>
#include <future>

#include "runtime.hpp"
#include "sim_model.hpp"

using namespace ferry_test;

namespace {

// n groups of one 64 KiB tensor each; the budget holds `slots` + `resident` groups.
ModelSpec equal_groups(int n, int resident, std::uint32_t slots = 2) {
    ModelSpec spec;
    for (int g = 0; g < n; ++g) spec.groups.push_back({{65536, false}});
    spec.slots_per_class = slots;
    spec.budget = static_cast<std::uint64_t>(65536) * (slots + resident);
    return spec;
}

void run_pass(SimModel &model, void *stream, Failures &failures) {
    for (std::size_t g = 0; g < model.group_count(); ++g) {
        REQUIRE(model.run_group(g, stream, failures) == FERRY_OK);
    }
}

}  // namespace

TEST_CASE("In the steady state every streamed acquire is a prefetch hit, wrapping passes") {
    SimModel model(equal_groups(8, 2));
    Failures failures;
    void *stream = model.create_stream();
    run_pass(model, stream, failures);  // learns the schedule
    model.drain();
    const ferry_stats first = model.stats();
    for (int pass = 0; pass < 5; ++pass) run_pass(model, stream, failures);
    model.drain();
    const ferry_stats after = model.stats();
    REQUIRE(failures.count == 0);
    REQUIRE(after.misses == first.misses);  // no miss after the first pass
    REQUIRE(after.resident_hits - first.resident_hits == 5 * 2);
    REQUIRE(after.hits - first.hits == 5 * 6);
    REQUIRE(after.prefetches_used - first.prefetches_used == 5 * 6);
    REQUIRE(after.prefetches_wasted == 0);
    REQUIRE(after.passes == 6);
    // Exactly the streamed groups are copied each pass: one DMA per group.
    REQUIRE(after.bytes_h2d - first.bytes_h2d == 5 * after.streamed_bytes_per_pass);
    REQUIRE(after.onloads - first.onloads == 5 * 6);
}

TEST_CASE("A declared schedule drives prefetch from the very first pass") {
    ModelSpec spec = equal_groups(6, 0);
    spec.declared_schedule = {5, 4, 3, 2, 1, 0};
    SimModel model(spec);
    Failures failures;
    for (int g = 5; g >= 0; --g) REQUIRE(model.run_group(g, nullptr, failures) == FERRY_OK);
    const ferry_stats stats = model.stats();
    REQUIRE(stats.misses == 1);  // only the very first group
    REQUIRE(stats.hits == 5);
    REQUIRE(failures.count == 0);
}

TEST_CASE("Releasing keeps the bytes: re-acquiring before reuse costs no copy") {
    SimModel model(equal_groups(4, 0, 3));
    Failures failures;
    REQUIRE(model.run_group(0, nullptr, failures) == FERRY_OK);
    const std::uint64_t onloads = model.stats().onloads;
    REQUIRE(model.run_group(0, nullptr, failures) == FERRY_OK);
    REQUIRE(model.stats().onloads == onloads);
    REQUIRE(model.stats().hits >= 1);
}

TEST_CASE("Holding more groups of a class than it has slots fails with NO_FREE_SLOT") {
    SimModel model(equal_groups(4, 0, 2));
    ferry_runtime *rt = model.runtime();
    REQUIRE(ferry_acquire(rt, model.group(0), nullptr) == FERRY_OK);
    REQUIRE(ferry_acquire(rt, model.group(1), nullptr) == FERRY_OK);
    REQUIRE(ferry_acquire(rt, model.group(2), nullptr) == FERRY_ERROR_NO_FREE_SLOT);
    REQUIRE(std::string(ferry_last_error()).find("g2") != std::string::npos);
    // Still usable: release one and the third fits.
    REQUIRE(ferry_release(rt, model.group(0), nullptr) == FERRY_OK);
    REQUIRE(ferry_acquire(rt, model.group(2), nullptr) == FERRY_OK);
    REQUIRE(ferry_release(rt, model.group(1), nullptr) == FERRY_OK);
    REQUIRE(ferry_release(rt, model.group(2), nullptr) == FERRY_OK);
}

TEST_CASE("A group may be held by several holders; its slot is reused after the last") {
    SimModel model(equal_groups(4, 0, 2));
    ferry_runtime *rt = model.runtime();
    void *a = model.create_stream();
    void *b = model.create_stream();
    Failures failures;
    REQUIRE(ferry_acquire(rt, model.group(0), a) == FERRY_OK);
    REQUIRE(ferry_acquire(rt, model.group(0), b) == FERRY_OK);
    REQUIRE(ferry_release(rt, model.group(0), a) == FERRY_OK);
    void *ptr = nullptr;
    REQUIRE(ferry_tensor_device_ptr(rt, model.tensor(0, 0), &ptr) == FERRY_OK);  // b holds it
    REQUIRE(ferry_release(rt, model.group(0), b) == FERRY_OK);
    REQUIRE(ferry_release(rt, model.group(0), b) == FERRY_ERROR_NOT_ACQUIRED);
    for (int pass = 0; pass < 3; ++pass) run_pass(model, a, failures);
    model.drain();
    REQUIRE(failures.count == 0);
}

TEST_CASE("Synchronous mode copies on the caller's stream and never prefetches") {
    ModelSpec spec = equal_groups(6, 1);
    spec.synchronous = true;
    SimModel model(spec);
    Failures failures;
    void *stream = model.create_stream();
    for (int pass = 0; pass < 3; ++pass) run_pass(model, stream, failures);
    model.drain();
    const ferry_stats stats = model.stats();
    REQUIRE(failures.count == 0);
    REQUIRE(stats.prefetches_issued == 0);
    REQUIRE(stats.bytes_d2h == 0);
    REQUIRE(stats.misses + stats.hits + stats.resident_hits == stats.acquires);
    REQUIRE(stats.misses >= 3 * 4);
}

TEST_CASE("Mutable tensors are written back only on eviction and synchronize") {
    ModelSpec spec;
    for (int g = 0; g < 5; ++g) spec.groups.push_back({{8192, false}, {512, true}});
    spec.budget = 2 * (8192 + 4096 + 512);  // two slots, nothing resident
    SimModel model(spec);
    Failures failures;
    REQUIRE(model.run_group(0, nullptr, failures) == FERRY_OK);
    REQUIRE(model.stats().writebacks == 0);  // still in its slot: nothing written back
    for (int g = 1; g < 5; ++g) REQUIRE(model.run_group(g, nullptr, failures) == FERRY_OK);
    const ferry_stats evicted = model.stats();
    REQUIRE(evicted.writebacks >= 3);
    REQUIRE(evicted.bytes_d2h == evicted.writebacks * 512);  // the mutable tensor only
    REQUIRE(ferry_synchronize(model.runtime()) == FERRY_OK);
    REQUIRE(model.host_versions_current(failures));
    for (int pass = 0; pass < 4; ++pass) {
        for (int g = 0; g < 5; ++g) REQUIRE(model.run_group(g, nullptr, failures) == FERRY_OK);
    }
    REQUIRE(ferry_synchronize(model.runtime()) == FERRY_OK);
    REQUIRE(model.host_versions_current(failures));
    REQUIRE(failures.count == 0);
}

TEST_CASE("Synchronize refuses while a group with mutable tensors is acquired") {
    ModelSpec spec;
    for (int g = 0; g < 3; ++g) spec.groups.push_back({{4096, false}, {256, true}});
    spec.budget = 1 << 20;
    SimModel model(spec);
    ferry_runtime *rt = model.runtime();
    REQUIRE(ferry_acquire(rt, model.group(1), nullptr) == FERRY_OK);
    REQUIRE(ferry_synchronize(rt) == FERRY_ERROR_GROUP_BUSY);
    REQUIRE(ferry_release(rt, model.group(1), nullptr) == FERRY_OK);
    REQUIRE(ferry_synchronize(rt) == FERRY_OK);
}

TEST_CASE("VRAM in use never exceeds the budget and the slab is one reservation") {
    ModelSpec spec = equal_groups(10, 3, 3);
    spec.budget += 1000;  // not a multiple of anything
    SimModel model(spec);
    Failures failures;
    for (int pass = 0; pass < 3; ++pass) run_pass(model, nullptr, failures);
    const ferry_stats stats = model.stats();
    REQUIRE(stats.slab_bytes <= spec.budget);
    REQUIRE(stats.slab_used_peak_bytes <= stats.slab_bytes);
    REQUIRE(stats.slab_bytes == stats.slab_resident_bytes + stats.slab_streaming_bytes);
    REQUIRE(stats.resident_groups == 3);
    REQUIRE(stats.streaming_slots == 3);
}

TEST_CASE("Acquire and release never wait on the host, even while compute is stalled") {
    ModelSpec spec = equal_groups(8, 1);
    for (auto &group : spec.groups) group.push_back({256, true});  // the mutable path too
    spec.budget = 3 * (65536 + 4096 + 256);
    SimModel model(spec);
    void *stream = model.create_stream();
    Failures failures;

    // The compute stream blocks on a gate before any of the passes' work.
    struct Gate {
        std::shared_future<void> open;
        static void wait(void *self) { static_cast<Gate *>(self)->open.wait(); }
    };
    std::promise<void> open;
    Gate gate{open.get_future().share()};
    ferry_runtime_impl(model.runtime()).device().launch_host(stream, &Gate::wait, &gate);

    auto driver = std::async(std::launch::async, [&] {
        for (int pass = 0; pass < 3; ++pass) {
            for (std::size_t g = 0; g < model.group_count(); ++g) {
                if (model.run_group(g, stream, failures) != FERRY_OK) failures.add(ferry_last_error());
            }
        }
    });
    // Three whole passes are submitted while nothing has computed yet.
    const bool submitted = driver.wait_for(std::chrono::seconds(30)) == std::future_status::ready;
    open.set_value();
    driver.wait();
    model.drain();
    REQUIRE(submitted);
    INFO("first failure: " << failures.first);
    REQUIRE(failures.count == 0);
    REQUIRE(ferry_synchronize(model.runtime()) == FERRY_OK);
    REQUIRE(model.host_versions_current(failures));
}
