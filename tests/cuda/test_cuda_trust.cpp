// Trust features on the cuda backend: the checksum device call, verify mode catching a
// write into frozen weights, and pinning the host store in chunks.
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "../api_fixture.hpp"
#include "checksum_ref.hpp"
#include "device/device.hpp"
#include "helpers.hpp"

namespace {

using ferry_test::pattern;
using ferry_test::stats_of;

ferry_runtime *cuda_runtime(int verify) {
    ferry_config config;
    ferry_config_init(&config);
    config.backend = FERRY_BACKEND_CUDA;
    config.vram_budget = 64ull << 20;
    config.verify = verify;
    ferry_runtime *rt = nullptr;
    REQUIRE_FERRY(ferry_create(&config, &rt));
    return rt;
}

void count_chunks(void *user, std::uint64_t, std::uint64_t, std::uint64_t) {
    ++*static_cast<int *>(user);
}

}  // namespace

TEST_CASE("the checksum device call lands checksum_ref in a result word on a stream") {
    std::unique_ptr<ferry::Device> device = ferry::make_cuda_device(0);
    const std::size_t bytes = 3 * 1000 * 1000 + 5;
    const std::vector<unsigned char> data = pattern(bytes, 11);
    void *dev = device->reserve(bytes);
    ferry::Stream stream = device->create_stream();
    std::uint64_t *words = device->alloc_checksum_results(4);
    REQUIRE_CUDA(cudaMemcpy(dev, data.data(), bytes, cudaMemcpyHostToDevice));
    device->checksum(dev, bytes, words + 2, stream);
    device->checksum(static_cast<unsigned char *>(dev) + 1, 77, words + 3, stream);
    device->stream_synchronize(stream);
    CHECK(words[2] == ferry::kernels::checksum_ref(data.data(), bytes));
    CHECK(words[3] == ferry::kernels::checksum_ref(data.data() + 1, 77));
    device->free_checksum_results(words);
    device->destroy_stream(stream);
    device->unreserve(dev);
}

TEST_CASE("verify mode on cuda names the tensor a kernel wrote into") {
    ferry_runtime *rt = cuda_runtime(1);
    ferry_group group;
    ferry_tensor frozen;
    REQUIRE_FERRY(ferry_group_define(rt, "block", &group));
    REQUIRE_FERRY(ferry_tensor_define(rt, group, "weight", 1 << 20, FERRY_DTYPE_UNKNOWN, 0,
                                      nullptr, 0, &frozen));
    REQUIRE_FERRY(ferry_plan(rt));
    const std::vector<unsigned char> data = pattern(1 << 20, 3);
    REQUIRE_FERRY(ferry_tensor_copy_in(rt, frozen, 0, data.data(), data.size()));
    REQUIRE_FERRY(ferry_seal(rt));
    for (int pass = 0; pass < 3; ++pass) {  // clean passes find nothing
        REQUIRE_FERRY(ferry_acquire(rt, group, nullptr));
        REQUIRE_FERRY(ferry_release(rt, group, nullptr));
    }
    REQUIRE_FERRY(ferry_synchronize(rt));
    REQUIRE_FERRY(ferry_acquire(rt, group, nullptr));
    void *ptr = nullptr;
    REQUIRE_FERRY(ferry_tensor_device_ptr(rt, frozen, &ptr));
    REQUIRE_CUDA(cudaMemsetAsync(static_cast<char *>(ptr) + 4096, 0x5a, 1, nullptr));
    REQUIRE_FERRY(ferry_release(rt, group, nullptr));
    REQUIRE(ferry_synchronize(rt) == FERRY_ERROR_VERIFY_FAILED);
    REQUIRE(std::string(ferry_last_error()).find("tensor 'weight'") != std::string::npos);
    const ferry_stats stats = stats_of(rt);
    REQUIRE(stats.verify_checks == 4);
    REQUIRE(stats.verify_failures == 1);
    REQUIRE_FERRY(ferry_destroy(rt));
}

TEST_CASE("the host store is pinned chunk by chunk on cuda, progress reported") {
    ferry_runtime *rt = nullptr;
    {
        ferry_test::ScopedEnv chunk("FERRY_PIN_CHUNK", "1048576");
        rt = cuda_runtime(0);
    }
    int chunks = 0;
    REQUIRE_FERRY(ferry_pin_progress_set(rt, &count_chunks, &chunks));
    // Eight 1 MiB images: a chunk each (chunks end only at image ends).
    for (int g = 0; g < 8; ++g) {
        ferry_group group;
        ferry_tensor tensor;
        const std::string name = "block." + std::to_string(g);
        REQUIRE_FERRY(ferry_group_define(rt, name.c_str(), &group));
        REQUIRE_FERRY(ferry_tensor_define(rt, group, "weight", 1 << 20, FERRY_DTYPE_UNKNOWN, 0,
                                          nullptr, 0, &tensor));
    }
    REQUIRE_FERRY(ferry_plan(rt));
    REQUIRE(chunks == 8);
    const ferry_stats stats = stats_of(rt);
    REQUIRE(stats.host_pinned_bytes == 8u << 20);
    REQUIRE(stats.host_pageable_bytes == 0);
    REQUIRE_FERRY(ferry_destroy(rt));
}
