// core/: ferry::Runtime (definition, plan, seal, the pipeline) and what it plans with.
#include "core/options.hpp"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <string>

#include "base/error.hpp"
#include "host/segment_header.hpp"

namespace ferry {
namespace {

// Environment overrides. A set but malformed variable is an error, never ignored.
double env_double(const char *variable, double fallback, double min, double max) {
    const char *text = std::getenv(variable);
    if (text == nullptr || *text == '\0') return fallback;
    char *end = nullptr;
    const double value = std::strtod(text, &end);
    FERRY_EXPECTS(end != text && *end == '\0' && std::isfinite(value) && value >= min && value <= max,
            FERRY_ERROR_INVALID_ARGUMENT,
            std::string("environment variable ") + variable + "='" + text +
                "' is not a number in [" + std::to_string(min) + ", " + std::to_string(max) +
                "]");
    return value;
}

void check_sim_value(double value, const char *field, double max) {
    FERRY_EXPECTS(std::isfinite(value) && value >= 0.0 && value <= max, FERRY_ERROR_INVALID_ARGUMENT,
            std::string("config.") + field + " must be in [0, " + std::to_string(max) +
                "], got " + std::to_string(value));
}

}  // namespace

void check_name(const char *name, const char *what) {
    FERRY_EXPECTS(name != nullptr, FERRY_ERROR_INVALID_ARGUMENT, std::string(what) + " name is NULL");
    const std::size_t length = std::strlen(name);
    FERRY_EXPECTS(length > 0 && length <= kMaxNameBytes, FERRY_ERROR_INVALID_ARGUMENT,
            std::string(what) + " name must be 1.." + std::to_string(kMaxNameBytes) +
                " bytes, got " + std::to_string(length));
}

RuntimeOptions resolve_options(const ferry_config &caller) {
    // An older caller's struct is shorter: read what it has over our defaults.
    constexpr std::size_t kMinimum = offsetof(ferry_config, vram_budget) + sizeof(uint64_t);
    FERRY_EXPECTS(caller.struct_size >= kMinimum && caller.struct_size <= (1u << 16),
            FERRY_ERROR_INVALID_ARGUMENT,
            "config.struct_size is " + std::to_string(caller.struct_size) +
                ": call ferry_config_init() first");
    ferry_config config;
    ferry_config_init(&config);
    std::memcpy(&config, &caller, std::min(caller.struct_size, sizeof(config)));

    RuntimeOptions options;
    // Read as an integer: a C caller may store any int in the enum field.
    std::int32_t backend = 0;
    static_assert(sizeof backend == sizeof config.backend, "ferry_backend is an int");
    std::memcpy(&backend, &config.backend, sizeof backend);
    FERRY_EXPECTS(backend == FERRY_BACKEND_AUTO || backend == FERRY_BACKEND_CUDA ||
                backend == FERRY_BACKEND_SIM,
            FERRY_ERROR_INVALID_ARGUMENT,
            "config.backend " + std::to_string(backend) + " is not a ferry_backend");
    options.backend = static_cast<ferry_backend>(backend);
    // The environment picks a backend only for callers that left the choice to ferry: a
    // program that asks for sim explicitly (it reads device memory from the host) keeps it.
    const char *env = std::getenv("FERRY_BACKEND");
    if (options.backend == FERRY_BACKEND_AUTO && env != nullptr && *env != '\0') {
        const std::string value = env;
        if (value == "auto") options.backend = FERRY_BACKEND_AUTO;
        else if (value == "cuda") options.backend = FERRY_BACKEND_CUDA;
        else if (value == "sim") options.backend = FERRY_BACKEND_SIM;
        else
            throw Error(FERRY_ERROR_INVALID_ARGUMENT,
                        "environment variable FERRY_BACKEND='" + value +
                            "' is not auto, cuda or sim");
    }
    FERRY_EXPECTS(config.device >= 0, FERRY_ERROR_INVALID_ARGUMENT,
            "config.device must be >= 0, got " + std::to_string(config.device));
    options.device = config.device;
    FERRY_EXPECTS(config.vram_budget > 0, FERRY_ERROR_INVALID_ARGUMENT,
            "config.vram_budget is 0: give the VRAM bytes ferry may hold");
    options.vram_budget = config.vram_budget;
    FERRY_EXPECTS(config.slots_per_class >= 2 && config.slots_per_class <= 64,
            FERRY_ERROR_INVALID_ARGUMENT,
            "config.slots_per_class must be 2..64 (prefetch depth + 1), got " +
                std::to_string(config.slots_per_class));
    options.slots_per_class = config.slots_per_class;
    options.synchronous = config.synchronous != 0;
    if (config.name != nullptr) {
        check_name(config.name, "runtime");
        options.name = config.name;
    }
    check_sim_value(config.sim_h2d_gbps, "sim_h2d_gbps", 1e6);
    check_sim_value(config.sim_d2h_gbps, "sim_d2h_gbps", 1e6);
    check_sim_value(config.sim_latency_us, "sim_latency_us", 1e6);
    options.sim.h2d_gbps = env_double("FERRY_SIM_H2D_GBPS", config.sim_h2d_gbps, 0, 1e6);
    options.sim.d2h_gbps = env_double("FERRY_SIM_D2H_GBPS", config.sim_d2h_gbps, 0, 1e6);
    options.sim.latency_us = env_double("FERRY_SIM_LATENCY_US", config.sim_latency_us, 0, 1e6);
    // No config fields for these (the struct's layout is fixed): environment only.
    options.sim.pageable_h2d_gbps = env_double("FERRY_SIM_PAGEABLE_H2D_GBPS", 0, 0, 1e6);
    options.sim.pageable_d2h_gbps = env_double("FERRY_SIM_PAGEABLE_D2H_GBPS", 0, 0, 1e6);
    options.sim.time_scale = env_double("FERRY_SIM_TIME_SCALE", 1, 1e-3, 1e6);
    options.sim.decode_gbps =
        env_double("FERRY_SIM_DECODE_GBPS", kDefaultSimDecodeGbps, 0, 1e6);
    options.sim.chaos = env_double("FERRY_SIM_CHAOS", config.sim_chaos != 0 ? 1 : 0, 0, 1) != 0;
    options.sim.seed = config.sim_seed;
    if (const char *seed = std::getenv("FERRY_SIM_SEED"); seed != nullptr && *seed != '\0') {
        char *end = nullptr;
        errno = 0;
        options.sim.seed = std::strtoull(seed, &end, 0);
        FERRY_EXPECTS(end != seed && *end == '\0' && errno == 0 && *seed != '-',
                      FERRY_ERROR_INVALID_ARGUMENT,
                      std::string("environment variable FERRY_SIM_SEED='") + seed +
                          "' is not an unsigned 64-bit integer");
    }
    options.publish_stats =
        env_double("FERRY_STATS", config.publish_stats != 0 ? 1 : 0, 0, 1) != 0;
    if (const char *trace = std::getenv("FERRY_TRACE"); trace != nullptr) options.trace_path = trace;
    options.trace_events =
        static_cast<std::uint32_t>(env_double("FERRY_TRACE_EVENTS", 0, 0, 1 << 26));
    // Trust: verify mode and pinned-memory limits (ferry.h, "Verify mode", "Pinned memory").
    options.verify = env_double("FERRY_VERIFY", config.verify != 0 ? 1 : 0, 0, 1) != 0;
    options.pin.cap_bytes = static_cast<std::uint64_t>(
        env_double("FERRY_PINNED_CAP", static_cast<double>(config.pinned_cap_bytes), 0, 9.0e15));
    options.pin.chunk_bytes = static_cast<std::uint64_t>(env_double(
        "FERRY_PIN_CHUNK", static_cast<double>(options.pin.chunk_bytes), 4096, 9.0e15));
    options.pin.pageable_fallback = config.pageable_fallback != 0;
    // Compute-aware planning (core/replan.cpp): on unless FERRY_COMPUTE_PLAN=0.
    options.compute_plan = env_double("FERRY_COMPUTE_PLAN", 1, 0, 1) != 0;
    // The shared host store: a name checked now, so that a bad one fails at create.
    if (config.host_share != nullptr) options.host_share = config.host_share;
    if (const char *share = std::getenv("FERRY_HOST_SHARE"); share != nullptr && *share != '\0') {
        options.host_share = share;
    }
    if (!options.host_share.empty()) hostshm::segment_name(options.host_share);
    if (config.host_share_timeout_ms != 0) {
        options.host_share_timeout_ns = config.host_share_timeout_ms * 1'000'000ull;
    }
    options.host_share_timeout_ns = static_cast<std::uint64_t>(
        env_double("FERRY_HOST_SHARE_TIMEOUT",
                   static_cast<double>(options.host_share_timeout_ns) / 1e9, 0.001, 1e7) *
        1e9);
    // A loader that finds huge pages slow to get (fresh memory on some VMs) may keep 4 KiB.
    options.host_share_huge = env_double("FERRY_HOST_SHARE_HUGE", 1, 0, 1) != 0;
    // Compressed streaming (core/compressed_images.cpp).
    options.compress = env_double("FERRY_COMPRESS", config.compress != 0 ? 1 : 0, 0, 1) != 0;
    return options;
}

}  // namespace ferry
