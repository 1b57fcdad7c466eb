// Shared by the cuda backend's tests: checks that name the failed call, test patterns, the
// runtime's counters, and a small model built through the C API.
#pragma once

#include <cuda_runtime.h>

#include <catch2/catch.hpp>
#include <cstdint>
#include <cstring>
#include <string>
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

// A runtime destroyed at the end of its scope, even when a REQUIRE fails.
struct RuntimeGuard {
    ferry_runtime *handle = nullptr;
    explicit RuntimeGuard(ferry_runtime *runtime) : handle(runtime) {}
    ~RuntimeGuard() { ferry_destroy(handle); }
    RuntimeGuard(const RuntimeGuard &) = delete;
    RuntimeGuard &operator=(const RuntimeGuard &) = delete;
};

// A stream of the test's own: non-blocking (like a framework's compute stream) unless
// asked otherwise.
struct CudaStream {
    cudaStream_t stream = nullptr;
    explicit CudaStream(unsigned flags = cudaStreamNonBlocking) {
        REQUIRE_CUDA(cudaStreamCreateWithFlags(&stream, flags));
    }
    ~CudaStream() { cudaStreamDestroy(stream); }
    CudaStream(const CudaStream &) = delete;
    CudaStream &operator=(const CudaStream &) = delete;
};

// A cuda runtime on device 0 holding at most `budget` bytes of VRAM.
inline ferry_runtime *make_cuda_runtime(std::uint64_t budget, bool synchronous = false,
                                        const char *name = "cuda-test") {
    ferry_config config;
    ferry_config_init(&config);
    config.backend = FERRY_BACKEND_CUDA;
    config.device = 0;
    config.vram_budget = budget;
    config.synchronous = synchronous ? 1 : 0;
    config.name = name;
    ferry_runtime *runtime = nullptr;
    REQUIRE_FERRY(ferry_create(&config, &runtime));
    return runtime;
}

struct ModelTensor {
    ferry_tensor handle;
    std::size_t group;
    std::uint64_t bytes;
    std::uint64_t seed;  // its bytes are pattern(bytes, seed)
};

struct TestModel {
    std::vector<ferry_group> groups;
    std::vector<ModelTensor> tensors;
    std::uint64_t bytes = 0;  // sum of tensor bytes
};

// Writes `bytes` into a tensor's host bytes: by ferry_tensor_copy_in, or straight through
// its host pointer (both ways a framework loads a model).
inline void fill_tensor(ferry_runtime *rt, ferry_tensor tensor,
                        const std::vector<unsigned char> &bytes, bool through_host_ptr) {
    if (!through_host_ptr) {
        REQUIRE_FERRY(ferry_tensor_copy_in(rt, tensor, 0, bytes.data(), bytes.size()));
        return;
    }
    void *host = nullptr;
    REQUIRE_FERRY(ferry_tensor_host_ptr(rt, tensor, &host));
    std::memcpy(host, bytes.data(), bytes.size());
}
// Defines one group ("g0", "g1", ...) per entry of `sizes`, with one immutable tensor per
// size, then plans, fills every tensor with its pattern (copy-in and host pointer,
// alternately) and seals.
inline TestModel build_model(ferry_runtime *rt,
                             const std::vector<std::vector<std::uint64_t>> &sizes) {
    TestModel model;
    for (std::size_t g = 0; g < sizes.size(); ++g) {
        ferry_group group{};
        REQUIRE_FERRY(ferry_group_define(rt, ("g" + std::to_string(g)).c_str(), &group));
        model.groups.push_back(group);
        for (std::size_t t = 0; t < sizes[g].size(); ++t) {
            ModelTensor tensor{};
            REQUIRE_FERRY(ferry_tensor_define(rt, group, ("t" + std::to_string(t)).c_str(),
                                              sizes[g][t], FERRY_DTYPE_UNKNOWN, 0, nullptr, 0,
                                              &tensor.handle));
            tensor.group = g;
            tensor.bytes = sizes[g][t];
            tensor.seed = 1000 + model.tensors.size();
            model.tensors.push_back(tensor);
            model.bytes += tensor.bytes;
        }
    }
    REQUIRE_FERRY(ferry_plan(rt));
    for (std::size_t i = 0; i < model.tensors.size(); ++i) {
        const ModelTensor &tensor = model.tensors[i];
        fill_tensor(rt, tensor.handle, pattern(tensor.bytes, tensor.seed), i % 2 == 1);
    }
    REQUIRE_FERRY(ferry_seal(rt));
    return model;
}

// Reads every tensor of group `g` back from the device (cudaMemcpy, after the caller has
// synchronized the stream it acquired the group on) and compares every byte with its
// pattern. Returns a description of each wrong tensor; empty when all are right.
inline std::string wrong_tensors(ferry_runtime *rt, const TestModel &model, std::size_t g) {
    std::string wrong;
    for (std::size_t i = 0; i < model.tensors.size(); ++i) {
        const ModelTensor &tensor = model.tensors[i];
        if (tensor.group != g) continue;
        void *device = nullptr;
        REQUIRE_FERRY(ferry_tensor_device_ptr(rt, tensor.handle, &device));
        std::vector<unsigned char> back(tensor.bytes);
        REQUIRE_CUDA(cudaMemcpy(back.data(), device, back.size(), cudaMemcpyDeviceToHost));
        const std::vector<unsigned char> expected = pattern(tensor.bytes, tensor.seed);
        for (std::size_t b = 0; b < back.size(); ++b) {
            if (back[b] == expected[b]) continue;
            std::size_t count = 0;
            for (std::size_t c = b; c < back.size(); ++c) count += back[c] != expected[c];
            wrong += " group " + std::to_string(g) + " tensor #" + std::to_string(i) +
                     ": byte " + std::to_string(b) + " of " + std::to_string(back.size()) +
                     " is the first of " + std::to_string(count) + " wrong;";
            break;
        }
    }
    return wrong;
}

}  // namespace ferry_test
