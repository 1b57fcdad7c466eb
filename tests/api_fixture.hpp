// Small helpers for tests that drive the C API by hand.
#pragma once

#include <catch2/catch.hpp>
#include <cstdlib>
#include <optional>
#include <string>

#include "backend.hpp"
#include "ferry/ferry.h"

namespace ferry_test {

// A runtime on `backend`: test_backend() for tests that hold on every backend.
inline ferry_runtime *make_runtime(std::uint64_t budget, std::uint32_t slots = 2,
                                   ferry_backend backend = test_backend()) {
    ferry_config config;
    ferry_config_init(&config);
    config.backend = backend;
    config.vram_budget = budget;
    config.slots_per_class = slots;
    config.name = "test";
    ferry_runtime *rt = nullptr;
    REQUIRE(ferry_create(&config, &rt) == FERRY_OK);
    return rt;
}

// A runtime on sim whatever FERRY_BACKEND says, for tests that read its device memory
// from the host or rely on the sim otherwise.
inline ferry_runtime *make_sim_runtime(std::uint64_t budget, std::uint32_t slots = 2) {
    return make_runtime(budget, slots, FERRY_BACKEND_SIM);
}

inline ferry_group define_group(ferry_runtime *rt, const char *name) {
    ferry_group group{};
    REQUIRE(ferry_group_define(rt, name, &group) == FERRY_OK);
    return group;
}

inline ferry_tensor define_bytes(ferry_runtime *rt, ferry_group group, const char *name,
                                 std::uint64_t bytes, std::uint32_t flags = 0) {
    ferry_tensor tensor{};
    REQUIRE(ferry_tensor_define(rt, group, name, bytes, FERRY_DTYPE_UNKNOWN, 0, nullptr, flags,
                                &tensor) == FERRY_OK);
    return tensor;
}

// An environment variable set for one scope and put back as it was at its end (unset, or
// its old value: FERRY_BACKEND=cuda must outlive a test that sets it), even when a REQUIRE
// fails, so that a failing test does not leave it to the tests after it.
struct ScopedEnv {
    const char *name;
    std::optional<std::string> before;
    ScopedEnv(const char *n, const char *value) : name(n) {
        if (const char *old = std::getenv(n)) before = old;
        setenv(n, value, 1);
    }
    ~ScopedEnv() {
        if (before) {
            setenv(name, before->c_str(), 1);
        } else {
            unsetenv(name);
        }
    }
    ScopedEnv(const ScopedEnv &) = delete;
    ScopedEnv &operator=(const ScopedEnv &) = delete;
};

// The call failed with `status`, and the message names the call and contains `needle`.
#define REQUIRE_FERRY_ERROR(expr, status, call, needle)                         \
    do {                                                                        \
        REQUIRE((expr) == (status));                                            \
        const std::string message_ = ferry_last_error();                        \
        INFO("message: " << message_);                                          \
        REQUIRE(message_.rfind(call, 0) == 0);                                  \
        REQUIRE(message_.find(needle) != std::string::npos);                    \
    } while (0)

}  // namespace ferry_test
