// Device::decode (device.hpp): a compressed image, copied to the device, decoded into a
// slot by the backend's decode (cuda: kernels/decode.cu; sim: kernels/decode_ref.hpp, the
// same code) on a stream, bit for bit; a corrupt piece named in the result without a byte
// written outside its range; on sim, the decode takes its modeled time.
#include <catch2/catch.hpp>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <memory>
#include <random>
#include <vector>

#include "backend.hpp"
#include "codec/codec.hpp"
#include "device/device.hpp"
#include "trained_weights.hpp"

using namespace ferry_test;

namespace {

namespace k = ferry::kernels::codec;
using ferry::kernels::DecodeJob;
using ferry::kernels::DecodeResult;

constexpr unsigned char kGuard = 0x5C;

std::unique_ptr<ferry::Device> test_device(const ferry::SimOptions &options = {}) {
    if (test_backend() == FERRY_BACKEND_CUDA) return ferry::make_cuda_device(0);
    return ferry::make_sim_device(options);
}

std::uint64_t align(std::uint64_t n) { return (n + 255) / 256 * 256; }

// A group of three tensors: bf16 and f16 weights (coded), random bytes (raw). The slot
// keeps a 256-byte guard after each tensor.
struct Image {
    std::vector<std::vector<std::uint8_t>> raw;
    std::vector<std::uint8_t> bytes;  // the compressed image
    std::vector<DecodeJob> jobs;
    std::uint64_t slot_bytes = 0;
};

Image make_image() {
    Image image;
    image.raw.push_back(ferry_test::trained_weights(300001, 1));
    image.raw.push_back(ferry_test::trained_weights(70000, 2, true));
    std::vector<std::uint8_t> noise(12345);
    std::mt19937 rng(3);
    for (auto &b : noise) b = static_cast<std::uint8_t>(rng());
    image.raw.push_back(noise);
    const k::Dtype dtypes[] = {k::kBf16, k::kF16, k::kBf16};
    for (std::size_t t = 0; t < image.raw.size(); ++t) {
        const auto &raw = image.raw[t];
        auto coded = ferry::codec::encode(raw.data(), raw.size(), dtypes[t]);
        DecodeJob job{};
        job.src_offset = image.bytes.size();
        job.dst_offset = image.slot_bytes;
        job.dst_bytes = raw.size();
        job.coded = coded.empty() ? 0 : 1;
        const auto &piece = coded.empty() ? raw : coded;
        job.src_bytes = piece.size();
        image.bytes.insert(image.bytes.end(), piece.begin(), piece.end());
        image.bytes.resize(align(image.bytes.size()));
        image.slot_bytes = align(image.slot_bytes + raw.size()) + 256;
        image.jobs.push_back(job);
    }
    ferry::kernels::assign_blocks(image.jobs.data(), static_cast<std::uint32_t>(image.jobs.size()));
    return image;
}

// Uploads the image, decodes it into a guarded slot on a stream, brings the slot back.
std::vector<std::uint8_t> run_decode(ferry::Device &device, const Image &image,
                                     DecodeResult &result_out) {
    void *pinned = device.alloc_pinned(align(image.bytes.size()) + align(image.slot_bytes));
    auto *host_image = static_cast<std::uint8_t *>(pinned);
    auto *host_slot = host_image + align(image.bytes.size());
    std::memcpy(host_image, image.bytes.data(), image.bytes.size());
    std::memset(host_slot, kGuard, image.slot_bytes);
    void *dev_image = device.reserve(image.bytes.size());
    void *dev_slot = device.reserve(image.slot_bytes);
    void *table = device.create_decode_table(image.jobs.data(),
                                             static_cast<std::uint32_t>(image.jobs.size()));
    DecodeResult *result = device.alloc_decode_results(1);
    ferry::Stream stream = device.create_stream();
    device.copy_h2d(dev_slot, host_slot, image.slot_bytes, stream);
    device.copy_h2d(dev_image, host_image, image.bytes.size(), stream);
    device.decode(table, dev_image, dev_slot, result, stream);
    device.copy_d2h(host_slot, dev_slot, image.slot_bytes, stream);
    device.stream_synchronize(stream);
    result_out = *result;
    std::vector<std::uint8_t> slot(host_slot, host_slot + image.slot_bytes);
    device.destroy_stream(stream);
    device.free_decode_results(result);
    device.destroy_decode_table(table);
    device.unreserve(dev_slot);
    device.unreserve(dev_image);
    device.free_pinned(pinned, align(image.bytes.size()) + align(image.slot_bytes));
    return slot;
}

bool guards_intact(const Image &image, const std::vector<std::uint8_t> &slot) {
    std::uint64_t at = 0;
    for (const auto &job : image.jobs) {
        for (; at < job.dst_offset; ++at)
            if (slot[at] != kGuard) return false;
        at = job.dst_offset + job.dst_bytes;
    }
    for (; at < slot.size(); ++at)
        if (slot[at] != kGuard) return false;
    return true;
}

}  // namespace

TEST_CASE("a device decodes an image of coded and raw pieces into its slot, bit for bit",
          "[codec]") {
    const Image image = make_image();
    REQUIRE(image.jobs[0].coded == 1);
    REQUIRE(image.jobs[1].coded == 1);
    REQUIRE(image.jobs[2].coded == 0);  // random bytes stay raw
    auto device = test_device();
    DecodeResult result{};
    const auto slot = run_decode(*device, image, result);
    CHECK(result.status == k::kOk);
    for (std::size_t t = 0; t < image.raw.size(); ++t) {
        INFO("tensor " << t);
        CHECK(std::memcmp(slot.data() + image.jobs[t].dst_offset, image.raw[t].data(),
                          image.raw[t].size()) == 0);
    }
    CHECK(guards_intact(image, slot));
}

TEST_CASE("a corrupt piece is named in the result and nothing outside the pieces is written",
          "[codec]") {
    Image image = make_image();
    // A chunk offset of the f16 tensor pointing past its coded part.
    image.bytes[image.jobs[1].src_offset + k::kHeaderBytes + 8 * 3 + 5] ^= 0x40;
    auto device = test_device();
    DecodeResult result{};
    const auto slot = run_decode(*device, image, result);
    CHECK(result.status == k::kBadChunkTable);
    CHECK(result.job == 1);
    CHECK(std::memcmp(slot.data() + image.jobs[0].dst_offset, image.raw[0].data(),
                      image.raw[0].size()) == 0);
    CHECK(std::memcmp(slot.data() + image.jobs[2].dst_offset, image.raw[2].data(),
                      image.raw[2].size()) == 0);
    CHECK(guards_intact(image, slot));
}

TEST_CASE("a broken header is named too", "[codec]") {
    Image image = make_image();
    image.bytes[image.jobs[0].src_offset + k::kAtElements] ^= 1;  // disagrees with its chunks
    auto device = test_device();
    DecodeResult result{};
    const auto slot = run_decode(*device, image, result);
    CHECK(result.status == k::kBadHeader);
    CHECK(result.job == 0);
    CHECK(guards_intact(image, slot));
}

TEST_CASE("the sim's decode lasts the decoded bytes at the modeled decode throughput",
          "[codec][sim-only]") {
    if (test_backend() != FERRY_BACKEND_SIM) return;
    const Image image = make_image();
    std::uint64_t decoded = 0;
    for (const auto &job : image.jobs) decoded += job.dst_bytes;
    ferry::SimOptions options;
    options.decode_gbps = 0.1;  // 100 MB/s: the image's 0.75 MB take 7.5 ms
    auto device = test_device(options);
    DecodeResult result{};
    const auto start = std::chrono::steady_clock::now();
    run_decode(*device, image, result);
    const double ms =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
    CHECK(result.status == k::kOk);
    CHECK(ms >= decoded / 0.1e9 * 1e3);
}
