// The pipeline's promises, one per test case, on the tests' backend (sim without chaos, or
// cuda), where the counts depend only on the order of calls, so they are exact.
#include <catch2/catch.hpp>
#include <chrono>
#include <future>
#include <set>
#include <thread>

#include "api_fixture.hpp"
#include "core/runtime.hpp"
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

// Blocks a stream until opened, so a test can hold work in flight deterministically.
struct Gate {
    std::promise<void> opener;
    std::shared_future<void> open = opener.get_future().share();
    static void wait(void *self) { static_cast<Gate *>(self)->open.wait(); }
    void block(SimModel &model, void *stream) {
        ferry_runtime_impl(model.runtime()).device().launch_host(stream, &Gate::wait, this);
    }
};

// Ten groups of four 64 KiB tensors at half the model, under chaos: the planner splits them.
ModelSpec split_groups() {
    ModelSpec spec;
    for (int g = 0; g < 10; ++g) spec.groups.push_back(std::vector<TensorSpec>(4, {65536, false}));
    spec.budget = 1280 * 1024;
    spec.chaos = true;
    return spec;
}

void run_pass(SimModel &model, void *stream, Failures &failures) {
    for (std::size_t g = 0; g < model.group_count(); ++g) {
        REQUIRE(model.run_group(g, stream, failures) == FERRY_OK);
    }
}

}  // namespace

TEST_CASE("The checker sees one wrong byte a kernel wrote, and names group, tensor and byte") {
    ModelSpec spec;
    for (int g = 0; g < 4; ++g) spec.groups.push_back({{65536, false}, {65536, false}});
    spec.budget = 4 * 65536;  // two groups at a time
    SimModel model(spec);
    void *stream = model.create_stream();
    Failures failures;
    REQUIRE(model.run_group(2, stream, failures) == FERRY_OK);  // right bytes: no failure
    REQUIRE(ferry_acquire(model.runtime(), model.group(1), stream) == FERRY_OK);
    model.corrupt_first_byte(1, 1, stream);
    REQUIRE(model.run_group(1, stream, failures) == FERRY_OK);
    REQUIRE(ferry_release(model.runtime(), model.group(1), stream) == FERRY_OK);
    model.drain();
    INFO("first failure: " << failures.first);
    REQUIRE(failures.checked == 2);
    REQUIRE(failures.bytes_checked == 4 * 65536);
    REQUIRE(failures.count == 1);
    REQUIRE(failures.first.rfind("group 1 tensor 1: byte 0 ", 0) == 0);
}

TEST_CASE("In the steady state every streamed acquire is a prefetch hit, wrapping passes") {
    // The placement this test counts is the byte plan's: a re-plan by the compute timed
    // on the first pass (which a slow build, under TSan, can make worth it) would move it.
    ferry_test::ScopedEnv byte_plan("FERRY_COMPUTE_PLAN", "0");
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
    REQUIRE(failures.checked == 6 * 8);  // every check ran
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
    model.drain();
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
    model.drain();
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
    // The placement this test counts is the byte plan's: a re-plan by the compute timed
    // on the first pass (which a slow build, under TSan, can make worth it) would move it.
    ferry_test::ScopedEnv byte_plan("FERRY_COMPUTE_PLAN", "0");
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
    Gate gate;
    gate.block(model, stream);

    auto driver = std::async(std::launch::async, [&] {
        for (int pass = 0; pass < 3; ++pass) {
            for (std::size_t g = 0; g < model.group_count(); ++g) {
                if (model.run_group(g, stream, failures) != FERRY_OK) failures.add(ferry_last_error());
            }
        }
    });
    // Three whole passes are submitted while nothing has computed yet.
    const bool submitted = driver.wait_for(std::chrono::seconds(30)) == std::future_status::ready;
    gate.opener.set_value();
    driver.wait();
    model.drain();
    REQUIRE(submitted);
    INFO("first failure: " << failures.first);
    REQUIRE(failures.count == 0);
    REQUIRE(ferry_synchronize(model.runtime()) == FERRY_OK);
    REQUIRE(model.host_versions_current(failures));
}

TEST_CASE("A slot is reused only after every holder's work, on every stream, is done") {
    ModelSpec spec = equal_groups(4, 0, 2);
    spec.declared_schedule = {0, 1, 2, 3};  // group 2 is prefetched into group 0's slot
    SimModel model(spec);
    void *slow = model.create_stream();
    void *fast = model.create_stream();
    Failures failures;
    Gate gate;
    gate.block(model, slow);
    // Group 0 is read on the stalled stream, then again (a hit) on the fast one, whose
    // release comes last; acquiring group 1 prefetches group 2 into group 0's slot.
    REQUIRE(model.run_group(0, slow, failures) == FERRY_OK);
    REQUIRE(model.run_group(0, fast, failures) == FERRY_OK);
    REQUIRE(model.run_group(1, fast, failures) == FERRY_OK);
    const ferry_stats before_open = model.stats();
    // Time for a copy that wrongly waited only on the fast stream to land; a right one
    // is still waiting for the slow stream.
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    gate.opener.set_value();
    model.drain();
    INFO("first failure: " << failures.first);
    REQUIRE(failures.count == 0);  // the slow stream's check saw group 0, not its successor
    REQUIRE(before_open.prefetches_issued == 2);  // groups 1 and 2
}

TEST_CASE("A learned schedule that misses groups is learned again") {
    SimModel model(equal_groups(8, 0, 2));
    Failures failures;
    // A warm-up over two groups, then full passes: the first "pass" learned is 4 5 0 1 2 3.
    for (int g = 4; g < 6; ++g) REQUIRE(model.run_group(g, nullptr, failures) == FERRY_OK);
    for (int pass = 0; pass < 4; ++pass) run_pass(model, nullptr, failures);
    const ferry_stats learned = model.stats();
    for (int pass = 0; pass < 3; ++pass) run_pass(model, nullptr, failures);
    model.drain();
    const ferry_stats after = model.stats();
    REQUIRE(failures.count == 0);
    REQUIRE(after.misses == learned.misses);  // the full pass is what prefetch follows now
    REQUIRE(after.hits - learned.hits == 3 * 8);
}

// Sim-only: it is about the sim's own check of streams (on cuda a bad stream is undefined).
TEST_CASE("The sim backend refuses a stream it did not create", "[sim-only]") {
    SimModel model(equal_groups(3, 0, 2));
    int not_a_stream = 0;
    REQUIRE(ferry_acquire(model.runtime(), model.group(0), &not_a_stream) ==
            FERRY_ERROR_INVALID_ARGUMENT);
    REQUIRE(std::string(ferry_last_error()).find("not a sim stream") != std::string::npos);
    Failures failures;
    run_pass(model, nullptr, failures);  // still usable, nothing held
    model.drain();
    REQUIRE(failures.count == 0);
}

TEST_CASE("Synchronize waits for writebacks that evictions queued on callers' streams") {
    ModelSpec spec;
    spec.groups.push_back({{8192, false}, {256, true}});  // 8448-byte image
    spec.groups.push_back({{8448, false}});
    spec.groups.push_back({{8448, false}});
    spec.budget = 2 * 8448;
    spec.synchronous = true;  // copies and writebacks on the caller's stream
    SimModel model(spec);
    void *stalled = model.create_stream();
    Failures failures;
    REQUIRE(model.run_group(0, nullptr, failures) == FERRY_OK);  // mutable, now dirty
    REQUIRE(model.run_group(1, nullptr, failures) == FERRY_OK);
    Gate gate;
    gate.block(model, stalled);
    REQUIRE(model.run_group(2, stalled, failures) == FERRY_OK);  // evicts group 0
    std::thread opener([&] {
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
        gate.opener.set_value();
    });
    REQUIRE(ferry_synchronize(model.runtime()) == FERRY_OK);
    const bool current = model.host_versions_current(failures);  // before joining anything
    opener.join();
    model.drain();
    INFO("first failure: " << failures.first);
    REQUIRE(current);
    REQUIRE(model.stats().writebacks == 1);
}

TEST_CASE("Split groups keep a resident head and stream only their tail, under chaos") {
    // The placement this test counts is the byte plan's: a re-plan by the compute timed
    // on the first pass (which a slow build, under TSan, can make worth it) would move it.
    ferry_test::ScopedEnv byte_plan("FERRY_COMPUTE_PLAN", "0");
    // split_groups(): whole groups would leave three resident and stream 7 x 256 KiB.
    // Split, tails are at most three tensors (the slots shrink to 192 KiB), and 1664 KiB
    // must stream: 8 tails of three tensors and one of two; the tenth group stays resident.
    constexpr std::uint64_t KiB = 1024;
    const ModelSpec spec = split_groups();
    SimModel model(spec);
    Failures failures;
    void *stream = model.create_stream();

    const ferry_stats planned = model.stats();
    REQUIRE(planned.streamed_bytes_per_pass == 1664 * KiB);
    REQUIRE(planned.slab_streaming_bytes == 2 * 192 * KiB);
    REQUIRE(planned.slab_resident_bytes == 2560 * KiB - 1664 * KiB);
    REQUIRE(planned.slab_used_bytes == planned.slab_resident_bytes);  // heads count as used
    REQUIRE(planned.slab_bytes <= spec.budget);
    REQUIRE(planned.onloads == 1 + 9);  // at seal: the resident group and the heads, once
    REQUIRE(planned.bytes_h2d == planned.slab_resident_bytes);
    std::uint64_t resident_sum = 0;
    for (std::size_t g = 0; g < 10; ++g) {
        std::uint64_t bytes = 0;
        REQUIRE(ferry_group_resident_bytes(model.runtime(), model.group(g), &bytes) == FERRY_OK);
        // A head of one or two tensors, or the resident group.
        CHECK((bytes == 64 * KiB || bytes == 128 * KiB || bytes == 256 * KiB));
        resident_sum += bytes;
    }
    REQUIRE(resident_sum == planned.slab_resident_bytes);

    // Per tensor, every device address it had while acquired, over several passes.
    std::vector<std::vector<std::set<void *>>> addresses(10, std::vector<std::set<void *>>(4));
    run_pass(model, stream, failures);  // learns the schedule
    model.drain();
    const ferry_stats first = model.stats();
    for (int pass = 0; pass < 4; ++pass) {
        for (std::size_t g = 0; g < 10; ++g) {
            REQUIRE(ferry_acquire(model.runtime(), model.group(g), stream) == FERRY_OK);
            for (std::size_t t = 0; t < 4; ++t) {
                void *ptr = nullptr;
                REQUIRE(ferry_tensor_device_ptr(model.runtime(), model.tensor(g, t), &ptr) ==
                        FERRY_OK);
                addresses[g][t].insert(ptr);
            }
            REQUIRE(ferry_release(model.runtime(), model.group(g), stream) == FERRY_OK);
            REQUIRE(model.run_group(g, stream, failures) == FERRY_OK);  // checks every byte
        }
    }
    model.drain();
    const ferry_stats after = model.stats();
    INFO(failures.first);
    REQUIRE(failures.count == 0);
    // Only the tails move, once a pass (each group runs twice a pass here, the second a
    // hit on bytes still in the slot).
    REQUIRE(after.bytes_h2d - first.bytes_h2d == 4 * planned.streamed_bytes_per_pass);
    std::size_t fixed = 0, moving = 0;
    for (const auto &group : addresses) {
        for (const auto &tensor : group) (tensor.size() == 1 ? fixed : moving) += 1;
    }
    // The resident group's 4 tensors and the heads' 8 + 2 stay put; the tails' 24 + 2
    // tensors alternate between the two slots, as 9 groups cycle through 2.
    REQUIRE(fixed == 4 + 8 + 2);
    REQUIRE(moving == 24 + 2);
}

TEST_CASE("Split groups under verify mode, past the pinned cap, under chaos: every byte right") {
    // As above, with the host store pinned only up to the middle of group 3's image: heads
    // and tails beyond it go through the staging ring. Verify checksums every frozen
    // tensor, head and tail, at each release.
    constexpr std::uint64_t KiB = 1024;
    // The split counted below is the byte plan's: a re-plan by the compute timed on the
    // first pass (which a loaded machine can make worth it) would move it.
    ferry_test::ScopedEnv byte_plan("FERRY_COMPUTE_PLAN", "0");
    ModelSpec spec = split_groups();
    spec.verify = true;
    spec.pinned_cap = 3 * 256 * KiB + 100 * KiB;
    spec.pageable_fallback = true;
    SimModel model(spec);
    Failures failures;
    void *stream = model.create_stream();
    for (int pass = 0; pass < 4; ++pass) run_pass(model, stream, failures);
    model.drain();
    REQUIRE(ferry_synchronize(model.runtime()) == FERRY_OK);
    const ferry_stats stats = model.stats();
    INFO(failures.first);
    REQUIRE(failures.count == 0);
    CHECK(stats.host_pageable_bytes > 0);
    CHECK(stats.verify_checks >= 4 * 10);
    CHECK(stats.verify_failures == 0);
    CHECK(stats.streamed_bytes_per_pass == 1664 * KiB);  // split as above
}
