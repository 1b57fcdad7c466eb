// core/: ferry::Runtime (definition, plan, seal, the pipeline) and what it plans with.
// RuntimeOptions: a runtime's settings, resolved once at ferry_create from the caller's
// ferry_config and the FERRY_* environment overrides.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "device/device.hpp"
#include "ferry/ferry.h"
#include "host/host_store.hpp"

namespace ferry {

constexpr std::size_t kMaxNameBytes = 255;

struct RuntimeOptions {
    ferry_backend backend = FERRY_BACKEND_AUTO;
    int device = 0;
    std::uint64_t vram_budget = 0;
    std::uint32_t slots_per_class = 2;
    bool synchronous = false;
    // FERRY_COMPUTE_PLAN: time the first pass and re-plan by compute (core/replan.cpp).
    bool compute_plan = true;
    // config.compress / FERRY_COMPRESS: compressed images (core/compressed_images.cpp).
    bool compress = false;
    std::string name = "ferry";
    SimOptions sim;
    bool publish_stats = false;      // FERRY_STATS
    std::string trace_path;          // FERRY_TRACE
    std::uint32_t trace_events = 0;  // FERRY_TRACE_EVENTS; 0: the default
    // Trust (runtime_verify.cpp, host/host_store.cpp).
    bool verify = false;
    PinPolicy pin;
    // The shared host store (host/shared_store.hpp): its name, empty for a private store.
    std::string host_share;                           // FERRY_HOST_SHARE
    std::uint64_t host_share_timeout_ns = 1800'000'000'000ull;  // FERRY_HOST_SHARE_TIMEOUT
    bool host_share_huge = true;                                // FERRY_HOST_SHARE_HUGE
};

// Reads a caller's ferry_config (of any struct_size) and the FERRY_* environment
// overrides; throws Error naming the bad field or variable.
RuntimeOptions resolve_options(const ferry_config &config);

// Throws Error(FERRY_ERROR_INVALID_ARGUMENT) unless `name` is 1..kMaxNameBytes bytes;
// `what` names its owner in the message ("group", "tensor", "runtime").
void check_name(const char *name, const char *what);

}  // namespace ferry
