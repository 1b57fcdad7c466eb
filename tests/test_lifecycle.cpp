// The lifecycle end to end through the C API on sim: define, plan, load, seal, passes,
// synchronize, destroy, with the figures stats must show at each step.
#include <catch2/catch.hpp>
#include <cstring>
#include <vector>

#include "api_fixture.hpp"
#include "core/runtime.hpp"

using namespace ferry_test;

TEST_CASE("A model larger than the budget streams correctly, pass after pass") {
    constexpr int kGroups = 9;
    constexpr std::uint64_t kBytes = 40000;
    ferry_runtime *rt = make_sim_runtime(4 * 40192);  // two slots + two resident groups
    std::vector<ferry_group> groups;
    std::vector<ferry_tensor> tensors;
    for (int g = 0; g < kGroups; ++g) {
        const std::string name = "block." + std::to_string(g);
        groups.push_back(define_group(rt, name.c_str()));
        const int64_t shape[2] = {100, 200};
        ferry_tensor tensor{};
        REQUIRE(ferry_tensor_define(rt, groups.back(), "weight", kBytes, FERRY_DTYPE_BF16, 2,
                                    shape, 0, &tensor) == FERRY_OK);
        tensors.push_back(tensor);
    }
    ferry_stats stats;
    stats.struct_size = sizeof stats;
    REQUIRE(ferry_stats_get(rt, &stats) == FERRY_OK);
    REQUIRE(stats.phase == FERRY_PHASE_DEFINE);
    REQUIRE(stats.model_bytes == kGroups * kBytes);
    REQUIRE(stats.host_pinned_bytes == 0);  // nothing allocated before plan

    REQUIRE(ferry_plan(rt) == FERRY_OK);
    for (int g = 0; g < kGroups; ++g) {
        std::vector<unsigned char> bytes(kBytes, static_cast<unsigned char>(g + 1));
        REQUIRE(ferry_tensor_copy_in(rt, tensors[g], 0, bytes.data(), kBytes) == FERRY_OK);
    }
    REQUIRE(ferry_seal(rt) == FERRY_OK);
    REQUIRE(ferry_stats_get(rt, &stats) == FERRY_OK);
    REQUIRE(stats.resident_groups == 2);
    REQUIRE(stats.onloads == 2);  // the resident ones, at seal
    REQUIRE(stats.streamed_bytes_per_pass == 7 * 40192);

    for (int pass = 0; pass < 4; ++pass) {
        for (int g = 0; g < kGroups; ++g) {
            REQUIRE(ferry_acquire(rt, groups[g], nullptr) == FERRY_OK);
            unsigned char *device = nullptr;
            REQUIRE(ferry_tensor_device_ptr(rt, tensors[g], reinterpret_cast<void **>(&device)) ==
                    FERRY_OK);
            REQUIRE(device[0] == g + 1);
            REQUIRE(device[kBytes - 1] == g + 1);
            REQUIRE(reinterpret_cast<std::uintptr_t>(device) % 256 == 0);
            REQUIRE(ferry_release(rt, groups[g], nullptr) == FERRY_OK);
        }
    }
    REQUIRE(ferry_synchronize(rt) == FERRY_OK);
    REQUIRE(ferry_stats_get(rt, &stats) == FERRY_OK);
    REQUIRE(stats.passes == 4);
    REQUIRE(stats.acquires == 4 * kGroups);
    REQUIRE(stats.resident_hits == 4 * 2);
    REQUIRE(stats.bytes_d2h == 0);
    REQUIRE(stats.slab_bytes <= 4 * 40192);
    REQUIRE(stats.backend == FERRY_BACKEND_SIM);

    int32_t resident = -1;
    int32_t size_class = -2;
    std::uint64_t image = 0;
    REQUIRE(ferry_group_info(rt, groups[0], &resident, &size_class, &image) == FERRY_OK);
    REQUIRE(image == 40192);
    REQUIRE((resident == 1) == (size_class == -1));
    REQUIRE(ferry_destroy(rt) == FERRY_OK);
}

TEST_CASE("Destroy succeeds with a group still acquired and a dirty mutable tensor, leaking nothing") {
    ferry_runtime *rt = make_sim_runtime(1 << 16);
    ferry_group group = define_group(rt, "g");
    ferry_tensor tensor = define_bytes(rt, group, "state", 64, FERRY_TENSOR_MUTABLE);
    ferry_group other = define_group(rt, "h");
    define_bytes(rt, other, "w", 20000);
    REQUIRE(ferry_plan(rt) == FERRY_OK);
    REQUIRE(ferry_seal(rt) == FERRY_OK);
    REQUIRE(ferry_acquire(rt, group, nullptr) == FERRY_OK);
    void *device = nullptr;
    REQUIRE(ferry_tensor_device_ptr(rt, tensor, &device) == FERRY_OK);
    std::memset(device, 3, 64);
    REQUIRE(ferry_release(rt, group, nullptr) == FERRY_OK);
    REQUIRE(ferry_acquire(rt, other, nullptr) == FERRY_OK);  // left acquired on purpose
    REQUIRE(ferry_destroy(rt) == FERRY_OK);                   // ASan: nothing leaks
}

TEST_CASE("The sim environment knobs are read at create") {
    ferry::RuntimeOptions options;
    ferry_runtime *rt = nullptr;
    {
        const ScopedEnv chaos("FERRY_SIM_CHAOS", "1");
        const ScopedEnv latency("FERRY_SIM_LATENCY_US", "5");
        ferry_config config;
        ferry_config_init(&config);
        config.vram_budget = 1 << 20;
        options = ferry::resolve_options(config);
        rt = make_sim_runtime(1 << 20);
    }
    CHECK(options.sim.chaos);
    CHECK(options.sim.latency_us == 5.0);
    // And a runtime made with them still hands out the right bytes.
    ferry_group group = define_group(rt, "g");
    ferry_tensor tensor = define_bytes(rt, group, "w", 4096);
    REQUIRE(ferry_plan(rt) == FERRY_OK);
    std::vector<unsigned char> bytes(4096, 0x11);
    REQUIRE(ferry_tensor_copy_in(rt, tensor, 0, bytes.data(), bytes.size()) == FERRY_OK);
    REQUIRE(ferry_seal(rt) == FERRY_OK);
    REQUIRE(ferry_acquire(rt, group, nullptr) == FERRY_OK);
    unsigned char *device = nullptr;
    REQUIRE(ferry_tensor_device_ptr(rt, tensor, reinterpret_cast<void **>(&device)) == FERRY_OK);
    REQUIRE(std::memcmp(device, bytes.data(), bytes.size()) == 0);
    REQUIRE(ferry_release(rt, group, nullptr) == FERRY_OK);
    REQUIRE(ferry_destroy(rt) == FERRY_OK);
}

TEST_CASE("Resident groups of equal size are spread evenly through the pass") {
    // 12 equal groups, room for 4 resident beside the two streaming slots.
    ferry_runtime *rt = make_sim_runtime(6 * 4096);
    std::vector<ferry_group> groups;
    for (int g = 0; g < 12; ++g) {
        groups.push_back(define_group(rt, ("block." + std::to_string(g)).c_str()));
        define_bytes(rt, groups.back(), "w", 4096);
    }
    REQUIRE(ferry_plan(rt) == FERRY_OK);
    std::vector<int> resident;
    for (int g = 0; g < 12; ++g) {
        int32_t is_resident = 0;
        REQUIRE(ferry_group_info(rt, groups[g], &is_resident, nullptr, nullptr) == FERRY_OK);
        if (is_resident) resident.push_back(g);
    }
    // One in three, so the link keeps copying while each resident group computes.
    REQUIRE(resident == std::vector<int>{1, 4, 7, 10});
    REQUIRE(ferry_destroy(rt) == FERRY_OK);
}

TEST_CASE("A preferred group stays resident through the runtime's own placement") {
    // Four groups of one 64 KiB tensor (none can be split), a budget of two slots and one
    // resident group. Whichever equal group the planner keeps, the preferred one is kept.
    for (int preferred = 0; preferred < 4; ++preferred) {
        ferry_runtime *rt = make_sim_runtime(3 * 65536);
        std::vector<ferry_group> groups;
        for (int g = 0; g < 4; ++g) {
            groups.push_back(define_group(rt, ("g" + std::to_string(g)).c_str()));
            define_bytes(rt, groups.back(), "w", 65536);
        }
        REQUIRE(ferry_group_prefer_resident(rt, groups[preferred]) == FERRY_OK);
        REQUIRE(ferry_plan(rt) == FERRY_OK);
        for (int g = 0; g < 4; ++g) {
            int32_t resident = -1;
            REQUIRE(ferry_group_info(rt, groups[g], &resident, nullptr, nullptr) == FERRY_OK);
            INFO("preferred " << preferred << ", group " << g);
            CHECK(resident == (g == preferred ? 1 : 0));
        }
        REQUIRE(ferry_destroy(rt) == FERRY_OK);
    }
}
