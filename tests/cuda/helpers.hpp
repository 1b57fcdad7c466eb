// Shared by the cuda backend's tests: checks that name the failed call, test patterns, and
// the runtime's counters.
#pragma once

#include <cuda_runtime.h>

#include <catch2/catch.hpp>
#include <cstdint>
#include <vector>

#include "ferry/ferry.h"

#define REQUIRE_CUDA(call)                                                               \
    do {                                                                                 \
        const cudaError_t require_cuda_err_ = (call);                                    \
        INFO(#call << ": " << cudaGetErrorName(require_cuda_err_) << " ("               \
                   << cudaGetErrorString(require_cuda_err_) << ")");                     \
        REQUIRE(require_cuda_err_ == cudaSuccess);                                       \
    } while (0)

#define REQUIRE_FERRY(call)                                                              \
    do {                                                                                 \
        const ferry_status require_ferry_status_ = (call);                               \
        INFO(#call << ": " << ferry_status_string(require_ferry_status_) << ": "         \
                   << ferry_last_error());                                               \
        REQUIRE(require_ferry_status_ == FERRY_OK);                                      \
    } while (0)

namespace ferry_test {

// Deterministic bytes that differ with the seed and with the position.
inline void fill_pattern(unsigned char *data, std::size_t bytes, std::uint64_t seed) {
    std::uint64_t state = seed * 0x9E3779B97F4A7C15ull + 1;
    for (std::size_t i = 0; i < bytes; ++i) {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        data[i] = static_cast<unsigned char>(state >> 24);
    }
}

inline std::vector<unsigned char> pattern(std::size_t bytes, std::uint64_t seed) {
    std::vector<unsigned char> data(bytes);
    fill_pattern(data.data(), bytes, seed);
    return data;
}

// The runtime's counters, through the public call.
inline ferry_stats stats_of(ferry_runtime *rt) {
    ferry_stats stats{};
    stats.struct_size = sizeof(stats);
    REQUIRE_FERRY(ferry_stats_get(rt, &stats));
    return stats;
}

}  // namespace ferry_test
