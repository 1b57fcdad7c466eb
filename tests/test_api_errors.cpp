// Every status is provoked through the C API; each comes with a message naming the call
// and the cause, and the runtime stays usable afterwards. On the tests' backend.
#include <catch2/catch.hpp>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "api_fixture.hpp"
#include "core/runtime.hpp"
#include "device/device.hpp"
#include "sim_model.hpp"

using namespace ferry_test;

namespace {

// Finishes a runtime left in DEFINE with one small group and runs one pass, proving it
// still works after an error.
void still_usable(ferry_runtime *rt, ferry_group group, ferry_tensor tensor) {
    REQUIRE(ferry_plan(rt) == FERRY_OK);
    const unsigned char byte = 0x5a;
    REQUIRE(ferry_tensor_copy_in(rt, tensor, 0, &byte, 1) == FERRY_OK);
    REQUIRE(ferry_seal(rt) == FERRY_OK);
    REQUIRE(ferry_acquire(rt, group, nullptr) == FERRY_OK);
    void *device = nullptr;
    REQUIRE(ferry_tensor_device_ptr(rt, tensor, &device) == FERRY_OK);
    REQUIRE(read_device(rt, device, 1) == std::vector<unsigned char>{0x5a});
    REQUIRE(ferry_release(rt, group, nullptr) == FERRY_OK);
    REQUIRE(ferry_destroy(rt) == FERRY_OK);
}

}  // namespace

TEST_CASE("Status strings are distinct and unknown values are named so") {
    std::vector<std::string> seen;
    for (int s = FERRY_OK; s <= FERRY_ERROR_STREAM_CAPTURING; ++s) {
        const std::string text = ferry_status_string(static_cast<ferry_status>(s));
        REQUIRE(!text.empty());
        REQUIRE(std::find(seen.begin(), seen.end(), text) == seen.end());
        seen.push_back(text);
    }
    REQUIRE(std::string(ferry_status_string(static_cast<ferry_status>(999))) ==
            "unknown status");
}

TEST_CASE("Status values are pinned") {
    REQUIRE(FERRY_OK == 0);
    REQUIRE(FERRY_ERROR_INVALID_ARGUMENT == 1);
    REQUIRE(FERRY_ERROR_WRONG_PHASE == 5);
    REQUIRE(FERRY_ERROR_BUDGET_TOO_SMALL == 8);
    REQUIRE(FERRY_ERROR_NO_FREE_SLOT == 11);
    REQUIRE(FERRY_ERROR_INTERNAL == 19);
}

TEST_CASE("The version macros and the run-time version agree") {
    REQUIRE(ferry_version_number() == FERRY_VERSION_NUMBER);
    const std::string expected = std::to_string(FERRY_VERSION_MAJOR) + "." +
                                 std::to_string(FERRY_VERSION_MINOR) + "." +
                                 std::to_string(FERRY_VERSION_PATCH);
    REQUIRE(std::string(ferry_version()) == expected);
}

TEST_CASE("Bad configurations are refused, each naming the field") {
    ferry_config config;
    ferry_config_init(&config);
    config.backend = test_backend();
    ferry_runtime *rt = nullptr;
    REQUIRE_FERRY_ERROR(ferry_create(&config, &rt), FERRY_ERROR_INVALID_ARGUMENT, "ferry_create",
                        "vram_budget");
    REQUIRE(rt == nullptr);
    config.vram_budget = 1 << 20;
    config.slots_per_class = 1;
    REQUIRE_FERRY_ERROR(ferry_create(&config, &rt), FERRY_ERROR_INVALID_ARGUMENT, "ferry_create",
                        "slots_per_class");
    config.slots_per_class = 2;
    config.backend = static_cast<ferry_backend>(7);
    REQUIRE_FERRY_ERROR(ferry_create(&config, &rt), FERRY_ERROR_INVALID_ARGUMENT, "ferry_create",
                        "backend");
    config.backend = test_backend();
    config.sim_h2d_gbps = -1;  // checked on every backend
    REQUIRE_FERRY_ERROR(ferry_create(&config, &rt), FERRY_ERROR_INVALID_ARGUMENT, "ferry_create",
                        "sim_h2d_gbps");
    config.sim_h2d_gbps = 0;
    config.struct_size = 3;
    REQUIRE_FERRY_ERROR(ferry_create(&config, &rt), FERRY_ERROR_INVALID_ARGUMENT, "ferry_create",
                        "ferry_config_init");
    REQUIRE_FERRY_ERROR(ferry_create(nullptr, &rt), FERRY_ERROR_INVALID_ARGUMENT, "ferry_create",
                        "config");
}

TEST_CASE("A malformed environment override is an error, not ignored") {
    ferry_config config;
    ferry_config_init(&config);
    config.backend = test_backend();
    config.vram_budget = 1 << 20;
    ferry_runtime *rt = nullptr;
    {
        const ScopedEnv h2d("FERRY_SIM_H2D_GBPS", "fast");
        REQUIRE_FERRY_ERROR(ferry_create(&config, &rt), FERRY_ERROR_INVALID_ARGUMENT,
                            "ferry_create", "FERRY_SIM_H2D_GBPS");
    }
    REQUIRE(ferry_create(&config, &rt) == FERRY_OK);
    REQUIRE(ferry_destroy(rt) == FERRY_OK);
}

TEST_CASE("Asking for cuda where it cannot run is BACKEND_UNAVAILABLE") {
    ferry_config config;
    ferry_config_init(&config);
    config.backend = FERRY_BACKEND_CUDA;
    config.vram_budget = 1 << 20;
    config.device = 4096;  // no machine has this ordinal
    ferry_runtime *rt = nullptr;
    REQUIRE(ferry_create(&config, &rt) == FERRY_ERROR_BACKEND_UNAVAILABLE);
    REQUIRE(std::strlen(ferry_last_error()) > 0);
}

TEST_CASE("Definition errors: names, sizes, shapes, flags") {
    ferry_runtime *rt = make_runtime(1 << 20);
    ferry_group group = define_group(rt, "block.0");
    ferry_group out{};
    REQUIRE_FERRY_ERROR(ferry_group_define(rt, "block.0", &out), FERRY_ERROR_DUPLICATE_NAME,
                        "ferry_group_define", "block.0");
    REQUIRE_FERRY_ERROR(ferry_group_define(rt, "", &out), FERRY_ERROR_INVALID_ARGUMENT,
                        "ferry_group_define", "name");
    REQUIRE_FERRY_ERROR(ferry_group_define(rt, nullptr, &out), FERRY_ERROR_INVALID_ARGUMENT,
                        "ferry_group_define", "NULL");

    ferry_tensor tensor{};
    REQUIRE_FERRY_ERROR(ferry_tensor_define(rt, group, "w", 0, FERRY_DTYPE_UNKNOWN, 0, nullptr,
                                            0, &tensor),
                        FERRY_ERROR_INVALID_SIZE, "ferry_tensor_define", "bytes is 0");
    REQUIRE_FERRY_ERROR(ferry_tensor_define(rt, group, "w", (1 << 20) + 1, FERRY_DTYPE_UNKNOWN,
                                            0, nullptr, 0, &tensor),
                        FERRY_ERROR_SIZE_TOO_LARGE, "ferry_tensor_define", "budget");
    const int64_t shape[2] = {3, 4};
    REQUIRE_FERRY_ERROR(ferry_tensor_define(rt, group, "w", 20, FERRY_DTYPE_BF16, 2, shape, 0,
                                            &tensor),
                        FERRY_ERROR_INVALID_SIZE, "ferry_tensor_define", "12 elements");
    REQUIRE_FERRY_ERROR(ferry_tensor_define(rt, group, "w", 24, FERRY_DTYPE_BF16, 2, shape, 8,
                                            &tensor),
                        FERRY_ERROR_INVALID_ARGUMENT, "ferry_tensor_define", "flags");
    REQUIRE_FERRY_ERROR(ferry_tensor_define(rt, group, "w", 24, FERRY_DTYPE_BF16, 9, shape, 0,
                                            &tensor),
                        FERRY_ERROR_INVALID_ARGUMENT, "ferry_tensor_define", "ndim");
    const int64_t huge[2] = {INT64_MAX, 4};
    REQUIRE_FERRY_ERROR(ferry_tensor_define(rt, group, "w", 24, FERRY_DTYPE_U8, 2, huge, 0,
                                            &tensor),
                        FERRY_ERROR_INVALID_SIZE, "ferry_tensor_define", "overflows");
    REQUIRE(ferry_tensor_define(rt, group, "w", 24, FERRY_DTYPE_BF16, 2, shape, 0, &tensor) ==
            FERRY_OK);
    REQUIRE_FERRY_ERROR(ferry_tensor_define(rt, group, "w", 24, FERRY_DTYPE_BF16, 2, shape, 0,
                                            &tensor),
                        FERRY_ERROR_DUPLICATE_NAME, "ferry_tensor_define", "'w'");
    still_usable(rt, group, tensor);
}

TEST_CASE("Calls in the wrong phase are WRONG_PHASE and change nothing") {
    ferry_runtime *rt = make_runtime(1 << 20);
    ferry_group group = define_group(rt, "g");
    ferry_tensor tensor = define_bytes(rt, group, "w", 1000);
    void *ptr = nullptr;
    const unsigned char byte = 1;
    REQUIRE_FERRY_ERROR(ferry_seal(rt), FERRY_ERROR_WRONG_PHASE, "ferry_seal", "DEFINE");
    REQUIRE_FERRY_ERROR(ferry_acquire(rt, group, nullptr), FERRY_ERROR_WRONG_PHASE,
                        "ferry_acquire", "SEALED");
    REQUIRE_FERRY_ERROR(ferry_tensor_host_ptr(rt, tensor, &ptr), FERRY_ERROR_WRONG_PHASE,
                        "ferry_tensor_host_ptr", "DEFINE");
    std::uint64_t resident_bytes = 0;
    REQUIRE_FERRY_ERROR(ferry_group_resident_bytes(rt, group, &resident_bytes),
                        FERRY_ERROR_WRONG_PHASE, "ferry_group_resident_bytes", "DEFINE");
    REQUIRE_FERRY_ERROR(ferry_tensor_copy_in(rt, tensor, 0, &byte, 1), FERRY_ERROR_WRONG_PHASE,
                        "ferry_tensor_copy_in", "DEFINE");
    REQUIRE(ferry_plan(rt) == FERRY_OK);
    ferry_group late{};
    REQUIRE_FERRY_ERROR(ferry_group_define(rt, "late", &late), FERRY_ERROR_WRONG_PHASE,
                        "ferry_group_define", "PLANNED");
    REQUIRE_FERRY_ERROR(ferry_plan(rt), FERRY_ERROR_WRONG_PHASE, "ferry_plan", "PLANNED");
    REQUIRE_FERRY_ERROR(ferry_group_prefer_resident(rt, group), FERRY_ERROR_WRONG_PHASE,
                        "ferry_group_prefer_resident", "PLANNED");
    REQUIRE_FERRY_ERROR(ferry_release(rt, group, nullptr), FERRY_ERROR_WRONG_PHASE,
                        "ferry_release", "PLANNED");
    REQUIRE(ferry_seal(rt) == FERRY_OK);
    REQUIRE_FERRY_ERROR(ferry_tensor_copy_in(rt, tensor, 0, &byte, 1), FERRY_ERROR_WRONG_PHASE,
                        "ferry_tensor_copy_in", "SEALED");
    REQUIRE_FERRY_ERROR(ferry_schedule_declare(rt, &group, 1), FERRY_ERROR_WRONG_PHASE,
                        "ferry_schedule_declare", "SEALED");
    ferry_phase phase;
    REQUIRE(ferry_phase_get(rt, &phase) == FERRY_OK);
    REQUIRE(phase == FERRY_PHASE_SEALED);
    REQUIRE(ferry_acquire(rt, group, nullptr) == FERRY_OK);
    REQUIRE(ferry_release(rt, group, nullptr) == FERRY_OK);
    REQUIRE(ferry_destroy(rt) == FERRY_OK);
}

TEST_CASE("Planning nothing, or an empty group, is EMPTY") {
    ferry_runtime *rt = make_runtime(1 << 20);
    REQUIRE_FERRY_ERROR(ferry_plan(rt), FERRY_ERROR_EMPTY, "ferry_plan", "no groups");
    ferry_group group = define_group(rt, "hollow");
    REQUIRE_FERRY_ERROR(ferry_plan(rt), FERRY_ERROR_EMPTY, "ferry_plan", "'hollow'");
    ferry_tensor tensor = define_bytes(rt, group, "w", 64);
    still_usable(rt, group, tensor);
}

TEST_CASE("A budget that cannot hold the largest group twice is BUDGET_TOO_SMALL") {
    ferry_runtime *rt = make_runtime(10000);
    ferry_group a = define_group(rt, "a");
    define_bytes(rt, a, "w", 6000);
    ferry_group b = define_group(rt, "b");
    define_bytes(rt, b, "w", 6000);
    REQUIRE_FERRY_ERROR(ferry_plan(rt), FERRY_ERROR_BUDGET_TOO_SMALL, "ferry_plan",
                        "at least");
    ferry_phase phase;
    REQUIRE(ferry_phase_get(rt, &phase) == FERRY_OK);
    REQUIRE(phase == FERRY_PHASE_DEFINE);  // nothing changed: still definable
    ferry_group c = define_group(rt, "c");
    REQUIRE(ferry_destroy(rt) == FERRY_OK);
    (void)c;
}

TEST_CASE("Copy-in past a tensor's end is OUT_OF_RANGE and writes nothing") {
    ferry_runtime *rt = make_runtime(1 << 20);
    ferry_group group = define_group(rt, "g");
    ferry_tensor tensor = define_bytes(rt, group, "w", 100);
    REQUIRE(ferry_plan(rt) == FERRY_OK);
    unsigned char *host = nullptr;
    REQUIRE(ferry_tensor_host_ptr(rt, tensor, reinterpret_cast<void **>(&host)) == FERRY_OK);
    std::memset(host, 7, 100);
    const std::vector<unsigned char> src(200, 9);
    REQUIRE_FERRY_ERROR(ferry_tensor_copy_in(rt, tensor, 50, src.data(), 51),
                        FERRY_ERROR_OUT_OF_RANGE, "ferry_tensor_copy_in", "100 bytes");
    REQUIRE_FERRY_ERROR(ferry_tensor_copy_in(rt, tensor, UINT64_MAX, src.data(), 2),
                        FERRY_ERROR_OUT_OF_RANGE, "ferry_tensor_copy_in", "offset");
    REQUIRE(host[50] == 7);
    REQUIRE(ferry_tensor_copy_in(rt, tensor, 50, src.data(), 50) == FERRY_OK);
    REQUIRE(host[99] == 9);
    REQUIRE(host[49] == 7);
    REQUIRE(ferry_destroy(rt) == FERRY_OK);
}

TEST_CASE("Double release and device pointers of unacquired groups are NOT_ACQUIRED") {
    ferry_runtime *rt = make_runtime(1 << 20);
    ferry_group group = define_group(rt, "g");
    ferry_tensor tensor = define_bytes(rt, group, "w", 100);
    REQUIRE(ferry_plan(rt) == FERRY_OK);
    REQUIRE(ferry_seal(rt) == FERRY_OK);
    void *ptr = nullptr;
    REQUIRE_FERRY_ERROR(ferry_tensor_device_ptr(rt, tensor, &ptr), FERRY_ERROR_NOT_ACQUIRED,
                        "ferry_tensor_device_ptr", "'g'");
    REQUIRE(ferry_acquire(rt, group, nullptr) == FERRY_OK);
    REQUIRE(ferry_release(rt, group, nullptr) == FERRY_OK);
    REQUIRE_FERRY_ERROR(ferry_release(rt, group, nullptr), FERRY_ERROR_NOT_ACQUIRED,
                        "ferry_release", "'g'");
    REQUIRE(ferry_acquire(rt, group, nullptr) == FERRY_OK);  // usable
    REQUIRE(ferry_tensor_device_ptr(rt, tensor, &ptr) == FERRY_OK);
    REQUIRE(ferry_release(rt, group, nullptr) == FERRY_OK);
    REQUIRE(ferry_destroy(rt) == FERRY_OK);
}

TEST_CASE("NULL out-pointers and stats of a bad size are INVALID_ARGUMENT") {
    ferry_runtime *rt = make_runtime(1 << 20);
    REQUIRE_FERRY_ERROR(ferry_group_define(rt, "g", nullptr), FERRY_ERROR_INVALID_ARGUMENT,
                        "ferry_group_define", "out");
    ferry_group group = define_group(rt, "g");
    define_bytes(rt, group, "w", 1000);
    REQUIRE(ferry_plan(rt) == FERRY_OK);
    REQUIRE_FERRY_ERROR(ferry_group_resident_bytes(rt, group, nullptr),
                        FERRY_ERROR_INVALID_ARGUMENT, "ferry_group_resident_bytes", "out");
    ferry_stats stats;
    stats.struct_size = 1;
    REQUIRE_FERRY_ERROR(ferry_stats_get(rt, &stats), FERRY_ERROR_INVALID_ARGUMENT,
                        "ferry_stats_get", "struct_size");
    REQUIRE(ferry_destroy(rt) == FERRY_OK);
}

TEST_CASE("A success clears the thread's last error") {
    ferry_runtime *rt = make_runtime(1 << 20);
    REQUIRE(ferry_seal(rt) == FERRY_ERROR_WRONG_PHASE);
    REQUIRE(std::strlen(ferry_last_error()) > 0);
    ferry_phase phase;
    REQUIRE(ferry_phase_get(rt, &phase) == FERRY_OK);
    REQUIRE(std::string(ferry_last_error()).empty());
    REQUIRE(ferry_destroy(rt) == FERRY_OK);
}

TEST_CASE("An older caller's smaller stats struct is filled only up to its size") {
    ferry_runtime *rt = make_runtime(1 << 20);
    struct {
        ferry_stats stats;
        unsigned char guard[64];
    } buffer;
    std::memset(&buffer, 0xEE, sizeof buffer);
    buffer.stats.struct_size = offsetof(ferry_stats, bytes_d2h);
    REQUIRE(ferry_stats_get(rt, &buffer.stats) == FERRY_OK);
    REQUIRE(buffer.stats.struct_size == offsetof(ferry_stats, bytes_d2h));
    REQUIRE(buffer.stats.bytes_h2d == 0);
    const auto *raw = reinterpret_cast<const unsigned char *>(&buffer.stats);
    REQUIRE(raw[offsetof(ferry_stats, bytes_d2h)] == 0xEE);  // untouched
    REQUIRE(ferry_destroy(rt) == FERRY_OK);
}

TEST_CASE("FERRY_BACKEND picks the backend only for a config that left it to ferry") {
    ferry_config config;
    ferry_config_init(&config);
    config.vram_budget = 1 << 20;
    ferry_runtime *rt = nullptr;
    {
        const ScopedEnv backend("FERRY_BACKEND", "sim");
        REQUIRE(ferry_create(&config, &rt) == FERRY_OK);  // AUTO: the environment decides
        ferry_stats stats;
        stats.struct_size = sizeof stats;
        REQUIRE(ferry_stats_get(rt, &stats) == FERRY_OK);
        REQUIRE(stats.backend == FERRY_BACKEND_SIM);
        REQUIRE(ferry_destroy(rt) == FERRY_OK);
        config.backend = FERRY_BACKEND_CUDA;
        config.device = 4096;
        REQUIRE(ferry_create(&config, &rt) == FERRY_ERROR_BACKEND_UNAVAILABLE);  // asked: kept
    }
    const ScopedEnv backend("FERRY_BACKEND", "gpu");
    config.backend = FERRY_BACKEND_AUTO;
    REQUIRE_FERRY_ERROR(ferry_create(&config, &rt), FERRY_ERROR_INVALID_ARGUMENT, "ferry_create",
                        "FERRY_BACKEND");
}

TEST_CASE("Acquire and release on a stream capturing a graph fail with STREAM_CAPTURING, "
          "changing nothing", "[sim-only]") {
    ferry_runtime *rt = make_sim_runtime(1 << 20);
    const ferry_group first = define_group(rt, "a");
    define_bytes(rt, first, "w", 4096);
    const ferry_group second = define_group(rt, "b");
    define_bytes(rt, second, "w", 4096);
    REQUIRE(ferry_plan(rt) == FERRY_OK);
    REQUIRE(ferry_seal(rt) == FERRY_OK);
    ferry::Device &device = ferry_runtime_impl(rt).device();
    void *stream = device.create_stream();

    ferry::sim_set_capturing(device, stream, true);
    REQUIRE_FERRY_ERROR(ferry_acquire(rt, first, stream), FERRY_ERROR_STREAM_CAPTURING,
                        "ferry_acquire", "capturing a CUDA graph");
    ferry_stats stats{};
    stats.struct_size = sizeof stats;
    REQUIRE(ferry_stats_get(rt, &stats) == FERRY_OK);
    REQUIRE(stats.acquires == 0);
    ferry::sim_set_capturing(device, stream, false);

    REQUIRE(ferry_acquire(rt, first, stream) == FERRY_OK);
    ferry::sim_set_capturing(device, stream, true);
    REQUIRE_FERRY_ERROR(ferry_release(rt, first, stream), FERRY_ERROR_STREAM_CAPTURING,
                        "ferry_release", "capturing a CUDA graph");
    REQUIRE(ferry_acquire(rt, second, nullptr) == FERRY_OK);  // other streams go on
    REQUIRE(ferry_release(rt, second, nullptr) == FERRY_OK);
    ferry::sim_set_capturing(device, stream, false);
    REQUIRE(ferry_release(rt, first, stream) == FERRY_OK);  // it was still held
    REQUIRE(ferry_release(rt, first, stream) == FERRY_ERROR_NOT_ACQUIRED);

    device.stream_synchronize(stream);
    device.destroy_stream(stream);
    REQUIRE(ferry_destroy(rt) == FERRY_OK);
}
