// Handle misuse is detected: zero, garbage, wrong kind, another runtime's, a destroyed
// runtime's, and a NULL or destroyed-looking runtime pointer.
#include <catch2/catch.hpp>

#include "api_fixture.hpp"

using namespace ferry_test;

TEST_CASE("A zero or garbage handle is INVALID_HANDLE") {
    ferry_runtime *rt = make_sim_runtime(1 << 20);
    ferry_tensor tensor{};
    REQUIRE_FERRY_ERROR(ferry_tensor_define(rt, ferry_group{0}, "w", 8, FERRY_DTYPE_UNKNOWN, 0,
                                            nullptr, 0, &tensor),
                        FERRY_ERROR_INVALID_HANDLE, "ferry_tensor_define", "zero");
    REQUIRE_FERRY_ERROR(ferry_tensor_define(rt, ferry_group{0x1234567}, "w", 8,
                                            FERRY_DTYPE_UNKNOWN, 0, nullptr, 0, &tensor),
                        FERRY_ERROR_INVALID_HANDLE, "ferry_tensor_define", "not a group");
    ferry_group group = define_group(rt, "g");
    ferry_group out_of_range{group.id + 5};
    REQUIRE_FERRY_ERROR(ferry_tensor_define(rt, out_of_range, "w", 8, FERRY_DTYPE_UNKNOWN, 0,
                                            nullptr, 0, &tensor),
                        FERRY_ERROR_INVALID_HANDLE, "ferry_tensor_define", "not a group");
    REQUIRE(ferry_destroy(rt) == FERRY_OK);
}

TEST_CASE("A tensor handle used as a group handle is INVALID_HANDLE") {
    ferry_runtime *rt = make_sim_runtime(1 << 20);
    ferry_group group = define_group(rt, "g");
    ferry_tensor tensor = define_bytes(rt, group, "w", 64);
    REQUIRE(ferry_plan(rt) == FERRY_OK);
    REQUIRE(ferry_seal(rt) == FERRY_OK);
    REQUIRE_FERRY_ERROR(ferry_acquire(rt, ferry_group{tensor.id}, nullptr),
                        FERRY_ERROR_INVALID_HANDLE, "ferry_acquire", "group");
    void *ptr = nullptr;
    REQUIRE_FERRY_ERROR(ferry_tensor_device_ptr(rt, ferry_tensor{group.id}, &ptr),
                        FERRY_ERROR_INVALID_HANDLE, "ferry_tensor_device_ptr", "tensor");
    REQUIRE(ferry_acquire(rt, group, nullptr) == FERRY_OK);
    REQUIRE(ferry_release(rt, group, nullptr) == FERRY_OK);
    REQUIRE(ferry_destroy(rt) == FERRY_OK);
}

TEST_CASE("A handle of another live runtime is FOREIGN_HANDLE") {
    ferry_runtime *a = make_sim_runtime(1 << 20);
    ferry_runtime *b = make_sim_runtime(1 << 20);
    ferry_group group_a = define_group(a, "g");
    define_group(b, "g");
    ferry_tensor tensor{};
    REQUIRE_FERRY_ERROR(ferry_tensor_define(b, group_a, "w", 8, FERRY_DTYPE_UNKNOWN, 0, nullptr,
                                            0, &tensor),
                        FERRY_ERROR_FOREIGN_HANDLE, "ferry_tensor_define", "another runtime");
    REQUIRE(ferry_destroy(a) == FERRY_OK);
    REQUIRE(ferry_destroy(b) == FERRY_OK);
}

TEST_CASE("A handle of a destroyed runtime is STALE_HANDLE") {
    ferry_runtime *old = make_sim_runtime(1 << 20);
    ferry_group stale = define_group(old, "g");
    REQUIRE(ferry_destroy(old) == FERRY_OK);
    ferry_runtime *rt = make_sim_runtime(1 << 20);
    define_group(rt, "g");
    ferry_tensor tensor{};
    REQUIRE_FERRY_ERROR(ferry_tensor_define(rt, stale, "w", 8, FERRY_DTYPE_UNKNOWN, 0, nullptr,
                                            0, &tensor),
                        FERRY_ERROR_STALE_HANDLE, "ferry_tensor_define", "destroyed");
    REQUIRE(ferry_destroy(rt) == FERRY_OK);
}

TEST_CASE("A NULL runtime is INVALID_HANDLE, and destroying NULL is a no-op") {
    ferry_group group{};
    REQUIRE_FERRY_ERROR(ferry_group_define(nullptr, "g", &group), FERRY_ERROR_INVALID_HANDLE,
                        "ferry_group_define", "NULL");
    REQUIRE(ferry_destroy(nullptr) == FERRY_OK);
}
