// The host store pinned in many small chunks on cuda: group images that do not fall on
// chunk boundaries, one larger than a chunk, still reach the device byte for byte. The
// CUDA runtime may refuse (or mishandle) one copy whose host range spans two
// cudaHostRegister ranges, so no onload may be such a copy; this proves it on a GPU.
#include <cstdint>
#include <string>
#include <vector>

#include "../api_fixture.hpp"
#include "helpers.hpp"

namespace {

using ferry_test::RuntimeGuard;
using ferry_test::stats_of;

constexpr std::uint64_t kChunk = 1 << 20;  // FERRY_PIN_CHUNK for these tests

// Odd sizes, so that no image starts or ends on a chunk boundary; groups 1 and 4 are
// larger than a chunk. About 5 MiB in all: more than three chunks.
const std::vector<std::vector<std::uint64_t>> kSizes = {
    {300001, 411113},    // 0.68 MiB
    {1200007, 500003},   // 1.62 MiB, more than a chunk
    {123457},            // 0.12 MiB
    {700001, 250013},    // 0.91 MiB
    {999999, 333331},    // 1.27 MiB, more than a chunk
    {450001},            // 0.43 MiB
};

std::uint64_t total_bytes() {
    std::uint64_t bytes = 0;
    for (const auto &group : kSizes)
        for (const std::uint64_t b : group) bytes += b;
    return bytes;
}

void count_chunks(void *user, std::uint64_t, std::uint64_t, std::uint64_t) {
    ++*static_cast<int *>(user);
}

}  // namespace

TEST_CASE("a model of more than three small pin chunks, images across chunk boundaries, "
          "streams every byte right on cuda") {
    const bool synchronous = GENERATE(false, true);
    INFO((synchronous ? "synchronous" : "asynchronous") << " runtime");
    ferry_test::ScopedEnv chunk("FERRY_PIN_CHUNK", std::to_string(kChunk).c_str());
    // Room for the largest group twice and some residents, not for the whole model.
    RuntimeGuard runtime{
        ferry_test::make_cuda_runtime(total_bytes() * 7 / 10, synchronous, "pin-chunks")};
    ferry_runtime *rt = runtime.handle;
    int chunks = 0;
    REQUIRE_FERRY(ferry_pin_progress_set(rt, &count_chunks, &chunks));
    const ferry_test::TestModel model = ferry_test::build_model(rt, kSizes);

    const ferry_stats planned = stats_of(rt);
    INFO(planned.resident_groups << " of " << planned.groups << " groups resident, "
         << planned.host_pinned_bytes << " bytes pinned in " << chunks << " steps");
    REQUIRE(planned.host_pageable_bytes == 0);
    REQUIRE(planned.host_pinned_bytes > 3 * kChunk);
    REQUIRE(chunks >= 2);                              // pinned in several registrations
    REQUIRE(planned.resident_groups < planned.groups);  // some groups stream
    const std::uint64_t onloads_at_seal = planned.onloads;
    std::uint64_t image_bytes = 0;
    for (const ferry_group group : model.groups) {
        std::uint64_t bytes = 0;
        REQUIRE_FERRY(ferry_group_info(rt, group, nullptr, nullptr, &bytes));
        image_bytes += bytes;
    }

    ferry_test::CudaStream compute;
    const int passes = 2;
    for (int pass = 0; pass < passes; ++pass) {
        for (std::size_t g = 0; g < model.groups.size(); ++g) {
            REQUIRE_FERRY(ferry_acquire(rt, model.groups[g], compute.stream));
            REQUIRE_CUDA(cudaStreamSynchronize(compute.stream));
            const std::string wrong = ferry_test::wrong_tensors(rt, model, g);
            INFO("pass " << pass << ":" << wrong);
            CHECK(wrong.empty());
            REQUIRE_FERRY(ferry_release(rt, model.groups[g], compute.stream));
        }
    }
    REQUIRE_FERRY(ferry_synchronize(rt));
    REQUIRE_CUDA(cudaStreamSynchronize(compute.stream));

    const ferry_stats stats = stats_of(rt);
    CHECK(stats.acquires == passes * model.groups.size());
    CHECK(stats.releases == stats.acquires);
    CHECK(stats.hits + stats.misses + stats.resident_hits == stats.acquires);
    CHECK(stats.model_bytes == model.bytes);
    // Residents (and resident heads) were copied at seal, every streamed group (or tail) in
    // the first pass at least: each byte of every image at least once.
    CHECK(onloads_at_seal >= stats.resident_groups);
    CHECK(stats.onloads >= stats.groups);
    CHECK(stats.bytes_h2d >= image_bytes);
    CHECK(stats.bytes_d2h == 0);
    CHECK(stats.slab_bytes <= stats.vram_budget);
}
