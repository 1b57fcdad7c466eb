// The codec (codec/codec.hpp, kernels/decode_core.hpp): lossless on every bf16 and f16 bit
// pattern, raw where it does not pay, any length, the same bytes on any number of threads,
// and never fooled or pushed out of bounds by a corrupt container.
#include <algorithm>
#include <catch2/catch.hpp>
#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "codec/codec.hpp"
#include "kernels/checksum_ref.hpp"
#include "trained_weights.hpp"

namespace {

namespace k = ferry::kernels::codec;
using ferry::codec::decode;
using ferry::codec::encode;
using ferry::codec::EncodeOptions;

EncodeOptions always_keep(unsigned threads = 1) {
    EncodeOptions options;
    options.threads = threads;
    options.max_ratio = 1e12;  // keep every encoding, to test the decoder on it
    return options;
}

std::vector<std::uint8_t> bytes_of(const std::vector<std::uint16_t> &values) {
    std::vector<std::uint8_t> out(values.size() * 2);
    std::memcpy(out.data(), values.data(), out.size());
    return out;
}

// Encodes (kept whatever the ratio), decodes with the checksum checked, compares.
void require_round_trip(const std::vector<std::uint8_t> &raw, k::Dtype dtype,
                        unsigned threads = 1) {
    const auto coded = encode(raw.data(), raw.size(), dtype, always_keep(threads));
    REQUIRE(!coded.empty());
    REQUIRE(ferry::codec::decoded_bytes(coded.data(), coded.size()) == raw.size());
    std::vector<std::uint8_t> back(raw.size(), 0xA5);
    REQUIRE(decode(coded.data(), coded.size(), back.data(), back.size(), threads, true) == k::kOk);
    REQUIRE(back == raw);
}

std::vector<std::uint8_t> normal_bf16(std::size_t count, float sigma, unsigned seed) {
    return ferry_test::trained_weights(count, seed, false, sigma);
}

std::vector<std::uint8_t> every_pattern(unsigned seed) {
    std::vector<std::uint16_t> values(65536);
    for (std::uint32_t i = 0; i < 65536; ++i) values[i] = static_cast<std::uint16_t>(i);
    if (seed != 0) std::shuffle(values.begin(), values.end(), std::mt19937(seed));
    return bytes_of(values);
}

}  // namespace

TEST_CASE("every one of the 65,536 bf16 bit patterns round-trips, in order and shuffled",
          "[codec]") {
    require_round_trip(every_pattern(0), k::kBf16);
    require_round_trip(every_pattern(7), k::kBf16);
}

TEST_CASE("every one of the 65,536 f16 bit patterns round-trips, NaNs and subnormals included",
          "[codec]") {
    require_round_trip(every_pattern(0), k::kF16);
    require_round_trip(every_pattern(11), k::kF16);
}

TEST_CASE("every bit pattern round-trips inside trained-like weights, with skewed codes",
          "[codec]") {
    // Mostly normal weights, so the code is short for common exponents and long (up to the
    // 12-bit cap) for the rest; every pattern appears once among them.
    auto raw = normal_bf16(1 << 20, 0.02f, 3);
    const auto all = every_pattern(5);
    std::memcpy(raw.data() + 100000, all.data(), all.size());
    require_round_trip(raw, k::kBf16, 2);
    require_round_trip(raw, k::kF16, 2);
}

TEST_CASE("code lengths over 12 bits are limited: a Fibonacci histogram still round-trips",
          "[codec]") {
    std::vector<std::uint16_t> values;
    std::uint64_t a = 1, b = 1;
    for (int s = 0; s < 24; ++s) {  // symbol s appears fib(s) times: Huffman depth 23
        for (std::uint64_t n = 0; n < a; ++n)
            values.push_back(static_cast<std::uint16_t>((s << 7) | (n & 0x7F)));
        const std::uint64_t c = a + b;
        a = b;
        b = c;
    }
    const auto raw = bytes_of(values);
    const auto coded = encode(raw.data(), raw.size(), k::kBf16, always_keep());
    REQUIRE(!coded.empty());
    for (std::uint32_t s = 0; s < 256; ++s) REQUIRE(coded[k::kAtLengths + s] <= k::kMaxCodeBits);
    require_round_trip(raw, k::kBf16);
}

TEST_CASE("random bytes do not pay and stay raw", "[codec]") {
    std::mt19937 rng(1);
    std::vector<std::uint8_t> raw(1 << 18);
    for (auto &b : raw) b = static_cast<std::uint8_t>(rng());
    for (const auto dtype : {k::kBf16, k::kF16}) {
        const auto plan = ferry::codec::plan_encode(raw.data(), raw.size(), dtype);
        CHECK(!plan.pays);
        CHECK(plan.max_encoded_bytes > raw.size() * 0.95);
        CHECK(encode(raw.data(), raw.size(), dtype).empty());
    }
}

TEST_CASE("constant tensors compress to a bit per exponent and round-trip", "[codec]") {
    for (const std::uint16_t value : {0x0000, 0x3F80, 0x7FC0, 0xFFFF}) {
        const std::vector<std::uint8_t> raw = bytes_of(std::vector<std::uint16_t>(100003, value));
        const auto coded = encode(raw.data(), raw.size(), k::kBf16);
        REQUIRE(!coded.empty());
        CHECK(static_cast<double>(coded.size()) / raw.size() < 0.57);
        require_round_trip(raw, k::kBf16);
        require_round_trip(raw, k::kF16);
    }
}

TEST_CASE("odd lengths round-trip: partial chunks and partial lanes", "[codec]") {
    for (const std::size_t count : {1u, 2u, 3u, 31u, 32u, 33u, 4095u, 4096u, 4097u, 8191u,
                                    12345u, 131073u}) {
        INFO("elements: " << count);
        const auto raw = normal_bf16(count, 0.05f, static_cast<unsigned>(count));
        require_round_trip(raw, k::kBf16);
        require_round_trip(raw, k::kF16);
    }
}

TEST_CASE("an odd number of bytes, an empty tensor or another dtype is not encoded", "[codec]") {
    const std::vector<std::uint8_t> raw(1001, 0);
    CHECK(!ferry::codec::plan_encode(raw.data(), raw.size(), k::kBf16).pays);
    CHECK(!ferry::codec::plan_encode(raw.data(), 0, k::kBf16).pays);
    CHECK(!ferry::codec::plan_encode(raw.data(), 1000, static_cast<k::Dtype>(9)).pays);
}

TEST_CASE("trained-like bf16 weights compress under 0.72 of raw", "[codec]") {
    const auto raw = normal_bf16(1 << 20, 0.02f, 9);
    const auto coded = encode(raw.data(), raw.size(), k::kBf16);
    REQUIRE(!coded.empty());
    CHECK(static_cast<double>(coded.size()) / raw.size() < 0.72);
}

// Several threads code ranges of blocks apart, from the blocks' bounds, then move them
// together: the result must not tell.
TEST_CASE("the encoding is the same bytes on one thread or several", "[codec]") {
    const auto raw = normal_bf16((3 << 20) + 12345, 0.02f, 4);  // 49 blocks, the last partial
    for (const auto dtype : {k::kBf16, k::kF16}) {
        const auto one = encode(raw.data(), raw.size(), dtype, always_keep(1));
        for (const unsigned threads : {2u, 3u, 4u, 7u, 64u}) {
            INFO(threads << " threads, dtype " << int(dtype));
            REQUIRE(encode(raw.data(), raw.size(), dtype, always_keep(threads)) == one);
        }
        std::vector<std::uint8_t> back(raw.size());
        REQUIRE(decode(one.data(), one.size(), back.data(), back.size(), 3, true) == k::kOk);
        REQUIRE(back == raw);
    }
}

TEST_CASE("the plan's size bound is never under the container and within 0.4% of raw",
          "[codec]") {
    for (const float sigma : {0.02f, 1.0f, 1e-30f}) {
        for (const std::size_t count : {1u, 4097u, 700001u}) {
            INFO("sigma " << sigma << ", " << count << " elements");
            const auto raw = normal_bf16(count, sigma, 5);
            const auto plan = ferry::codec::plan_encode(raw.data(), raw.size(), k::kBf16);
            const auto coded = encode(raw.data(), raw.size(), k::kBf16, always_keep());
            CHECK(plan.max_encoded_bytes >= coded.size());
            CHECK(plan.max_encoded_bytes - coded.size() <= 32 * k::chunks_for(count));
        }
    }
}

TEST_CASE("the header's checksum is checksum_ref of the raw bytes", "[codec]") {
    for (const std::size_t count : {5u, 4097u, 700001u}) {
        const auto raw = normal_bf16(count, 0.1f, 2);
        const auto coded = encode(raw.data(), raw.size(), k::kBf16, always_keep(2));
        CHECK(k::load_le(coded.data() + k::kAtChecksum, 8) ==
              ferry::kernels::checksum_ref(raw.data(), raw.size()));
    }
}

TEST_CASE("a decode into an odd address or the wrong size", "[codec]") {
    const auto raw = normal_bf16(5000, 0.02f, 6);
    const auto coded = encode(raw.data(), raw.size(), k::kBf16, always_keep());
    std::vector<std::uint8_t> back(raw.size() + 1);
    REQUIRE(decode(coded.data(), coded.size(), back.data() + 1, raw.size(), 1, true) == k::kOk);
    REQUIRE(std::memcmp(back.data() + 1, raw.data(), raw.size()) == 0);
    CHECK(decode(coded.data(), coded.size(), back.data(), raw.size() - 2) == k::kSizeMismatch);
    CHECK(decode(coded.data(), coded.size(), back.data(), raw.size() + 1) == k::kSizeMismatch);
}

TEST_CASE("every single flipped bit of a container is caught when the checksum is checked",
          "[codec]") {
    const auto raw = normal_bf16(4500, 0.02f, 8);  // two chunks, the second partial
    auto coded = encode(raw.data(), raw.size(), k::kBf16, always_keep());
    REQUIRE(!coded.empty());
    std::vector<std::uint8_t> back(raw.size());
    std::size_t by_structure = 0;
    for (std::size_t bit = 0; bit < coded.size() * 8; ++bit) {
        coded[bit / 8] ^= static_cast<std::uint8_t>(1u << (bit % 8));
        const auto status = decode(coded.data(), coded.size(), back.data(), back.size(), 1, true);
        coded[bit / 8] ^= static_cast<std::uint8_t>(1u << (bit % 8));
        if (status == k::kOk) FAIL("a flip of bit " << bit << " decoded without complaint");
        by_structure += status != k::kChecksumMismatch;
    }
    // Flips of the fixed header (less its checksum) break the structure itself, without the
    // checksum; those of the raw part (sign and mantissa) only the checksum can catch.
    CHECK(by_structure >= (k::kHeaderFixedBytes - 8) * 8);
}

TEST_CASE("every truncation of a container is rejected", "[codec]") {
    const auto raw = normal_bf16(9000, 0.02f, 10);
    const auto coded = encode(raw.data(), raw.size(), k::kBf16, always_keep());
    std::vector<std::uint8_t> back(raw.size());
    for (std::size_t size = 0; size < coded.size(); ++size) {
        std::vector<std::uint8_t> cut(coded.begin(), coded.begin() + size);  // exact bounds for ASan
        CHECK(decode(cut.data(), cut.size(), back.data(), back.size()) != k::kOk);
    }
}

TEST_CASE("random garbage behind a valid header never decodes cleanly", "[codec]") {
    const auto raw = normal_bf16(20000, 0.02f, 12);
    auto coded = encode(raw.data(), raw.size(), k::kBf16, always_keep());
    std::mt19937 rng(13);
    std::vector<std::uint8_t> back(raw.size());
    const std::size_t coded_at = coded.size() - k::load_le(coded.data() + k::kAtCodedBytes, 8);
    for (int trial = 0; trial < 200; ++trial) {
        auto broken = coded;
        for (std::size_t i = coded_at; i < broken.size(); ++i)
            broken[i] = static_cast<std::uint8_t>(rng());
        CHECK(decode(broken.data(), broken.size(), back.data(), back.size(), 1, true) != k::kOk);
    }
}

TEST_CASE("each decode status has its own name", "[codec]") {
    std::vector<std::string> names;
    for (std::uint32_t s = 0; s <= k::kChecksumMismatch; ++s)
        names.push_back(ferry::codec::status_name(static_cast<k::Status>(s)));
    std::sort(names.begin(), names.end());
    CHECK(std::unique(names.begin(), names.end()) == names.end());
}

// The format is what decoders on devices and files of other builds read: a change to the
// encoder that changes the bytes it writes must be a decision (a new kVersion), not an
// accident. Inputs of integers only (no floating-point library in the way): exponents
// 118..130 around 124, random sign and mantissa; the hashes are those of version 1.
TEST_CASE("A fixed input encodes to the same container bytes as the format's first encoder",
          "[codec]") {
    auto splitmix = [](std::uint64_t x) {
        x += 0x9E3779B97F4A7C15ull;
        x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
        x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
        return x ^ (x >> 31);
    };
    struct Golden {
        std::uint32_t elements;
        ferry::codec::Dtype dtype;
        std::size_t size;
        std::uint64_t fnv;
    };
    const Golden goldens[] = {
        {100000, ferry::kernels::codec::kBf16, 137801, 0x704a96341c5d6f08ull},
        {100000, ferry::kernels::codec::kF16, 138460, 0x4806fe691d81eb85ull},
        {4096 * 7 + 33, ferry::kernels::codec::kBf16, 39854, 0x188326f17dba8d76ull},
        {4096 * 7 + 33, ferry::kernels::codec::kF16, 40052, 0xa5cd1497ae16178eull},
    };
    for (const Golden &g : goldens) {
        std::vector<std::uint16_t> v(g.elements);
        for (std::uint32_t i = 0; i < g.elements; ++i) {
            const std::uint64_t h = splitmix(i);
            const auto exponent = static_cast<unsigned>(118 + __builtin_popcountll(h & 0xFFF));
            v[i] = static_cast<std::uint16_t>(((h >> 20) & 1) << 15 | exponent << 7 | ((h >> 8) & 0x7F));
        }
        for (unsigned threads : {1u, 4u}) {
            ferry::codec::EncodeOptions options;
            options.threads = threads;
            const std::vector<std::uint8_t> c =
                ferry::codec::encode(v.data(), v.size() * 2, g.dtype, options);
            std::uint64_t fnv = 1469598103934665603ull;
            for (const std::uint8_t b : c) fnv = (fnv ^ b) * 1099511628211ull;
            INFO(g.elements << " elements, dtype " << int(g.dtype) << ", " << threads << " threads");
            CHECK(c.size() == g.size);
            CHECK(fnv == g.fnv);
        }
    }
}
