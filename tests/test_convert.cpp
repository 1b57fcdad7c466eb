// Float conversion (load/convert.hpp) against references computed on values: widening
// is checked on every BF16 and F16 bit pattern, narrowing against the nearest
// representable value found by search, ties to even.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "load/convert.hpp"

namespace {

using ferry::load::convert;

float f32_of(std::uint32_t bits) {
    float f;
    std::memcpy(&f, &bits, 4);
    return f;
}

std::uint32_t bits_of(float f) {
    std::uint32_t bits;
    std::memcpy(&bits, &f, 4);
    return bits;
}

// The value of an F16 pattern, by its definition.
double f16_value(std::uint16_t h) {
    const int sign = (h & 0x8000) ? -1 : 1;
    const int exponent = (h >> 10) & 0x1f;
    const int mantissa = h & 0x3ff;
    if (exponent == 0x1f) {
        return mantissa == 0 ? sign * std::numeric_limits<double>::infinity()
                             : std::numeric_limits<double>::quiet_NaN();
    }
    if (exponent == 0) return sign * std::ldexp(mantissa, -24);
    return sign * std::ldexp(1024 + mantissa, exponent - 25);
}

// The value of a BF16 pattern, by its definition.
double bf16_value(std::uint16_t h) {
    const int sign = (h & 0x8000) ? -1 : 1;
    const int exponent = (h >> 7) & 0xff;
    const int mantissa = h & 0x7f;
    if (exponent == 0xff) {
        return mantissa == 0 ? sign * std::numeric_limits<double>::infinity()
                             : std::numeric_limits<double>::quiet_NaN();
    }
    if (exponent == 0) return sign * std::ldexp(mantissa, -133);
    return sign * std::ldexp(128 + mantissa, exponent - 134);
}

// Round-to-nearest-even of a finite x among the non-negative finite patterns of a format
// (ascending in value up to `max_finite`), by binary search; past half an ulp above the
// largest finite value, infinity (`inf`).
template <typename Value>
std::uint16_t nearest(double x, Value value, std::uint16_t max_finite, std::uint16_t inf) {
    const std::uint16_t sign = std::signbit(x) ? 0x8000 : 0;
    const double a = std::fabs(x);
    std::uint32_t lo = 0, hi = max_finite;  // largest pattern with value <= a
    if (a >= value(max_finite)) {
        lo = max_finite;
    } else {
        while (lo < hi) {
            const std::uint32_t mid = (lo + hi + 1) / 2;
            if (value(static_cast<std::uint16_t>(mid)) <= a) lo = mid;
            else hi = mid - 1;
        }
    }
    const double below = value(static_cast<std::uint16_t>(lo));
    const double above = lo == max_finite
                             ? 2 * value(max_finite) - value(static_cast<std::uint16_t>(max_finite - 1))
                             : value(static_cast<std::uint16_t>(lo + 1));
    std::uint32_t pick = lo;
    if (a - below > above - a || (a - below == above - a && (lo & 1) != 0)) pick = lo + 1;
    if (pick > max_finite) return static_cast<std::uint16_t>(sign | inf);
    return static_cast<std::uint16_t>(sign | pick);
}

std::uint16_t to16(ferry_dtype to, float f) {
    std::uint16_t out;
    convert(FERRY_DTYPE_F32, to, &f, &out, 1);
    return out;
}

void check_narrowing(float f) {
    const std::uint16_t bf16 = to16(FERRY_DTYPE_BF16, f);
    const std::uint16_t f16 = to16(FERRY_DTYPE_F16, f);
    if (std::isnan(f)) {
        CHECK(std::isnan(bf16_value(bf16)));
        CHECK(std::isnan(f16_value(f16)));
        CHECK((bf16 & 0x0040) != 0);  // quiet
        CHECK((f16 & 0x0200) != 0);
        CHECK(((bf16 >> 15) != 0) == std::signbit(f));
        CHECK(((f16 >> 15) != 0) == std::signbit(f));
        return;
    }
    if (std::isinf(f)) {
        CHECK(bf16 == (std::signbit(f) ? 0xff80 : 0x7f80));
        CHECK(f16 == (std::signbit(f) ? 0xfc00 : 0x7c00));
        return;
    }
    INFO("f32 bits " << std::hex << bits_of(f));
    CHECK(bf16 == nearest(f, bf16_value, 0x7f7f, 0x7f80));
    CHECK(f16 == nearest(f, f16_value, 0x7bff, 0x7c00));
}

}  // namespace

TEST_CASE("widening BF16 and F16 to F32 is exact for every bit pattern", "[convert]") {
    std::vector<std::uint16_t> all(65536);
    for (std::uint32_t i = 0; i < 65536; ++i) all[i] = static_cast<std::uint16_t>(i);
    std::vector<float> from_bf16(65536), from_f16(65536);
    convert(FERRY_DTYPE_BF16, FERRY_DTYPE_F32, all.data(), from_bf16.data(), all.size());
    convert(FERRY_DTYPE_F16, FERRY_DTYPE_F32, all.data(), from_f16.data(), all.size());
    for (std::uint32_t i = 0; i < 65536; ++i) {
        const auto h = static_cast<std::uint16_t>(i);
        for (const auto &[got, want] : {std::pair<float, double>{from_bf16[i], bf16_value(h)},
                                        std::pair<float, double>{from_f16[i], f16_value(h)}}) {
            INFO("pattern " << std::hex << i);
            if (std::isnan(want)) {
                REQUIRE(std::isnan(got));
                REQUIRE(std::signbit(got) == ((i & 0x8000) != 0));
                REQUIRE((bits_of(got) & 0x00400000u) != 0);  // quiet
            } else {
                REQUIRE(static_cast<double>(got) == want);
                REQUIRE(std::signbit(got) == ((i & 0x8000) != 0));  // -0 stays -0
            }
        }
    }
}

TEST_CASE("every non-NaN BF16 and F16 pattern survives a round trip through F32", "[convert]") {
    for (ferry_dtype dtype : {FERRY_DTYPE_BF16, FERRY_DTYPE_F16}) {
        std::vector<std::uint16_t> all(65536), back(65536);
        std::vector<float> wide(65536);
        for (std::uint32_t i = 0; i < 65536; ++i) all[i] = static_cast<std::uint16_t>(i);
        convert(dtype, FERRY_DTYPE_F32, all.data(), wide.data(), all.size());
        convert(FERRY_DTYPE_F32, dtype, wide.data(), back.data(), all.size());
        for (std::uint32_t i = 0; i < 65536; ++i) {
            if (std::isnan(wide[i])) continue;
            INFO("dtype " << dtype << " pattern " << std::hex << i);
            REQUIRE(back[i] == all[i]);
        }
    }
}

TEST_CASE("BF16 and F16 convert to each other through their exact F32 value", "[convert]") {
    std::vector<std::uint16_t> all(65536), out(65536), reference(65536);
    std::vector<float> wide(65536);
    for (std::uint32_t i = 0; i < 65536; ++i) all[i] = static_cast<std::uint16_t>(i);
    for (const auto &[from, to] : {std::pair{FERRY_DTYPE_BF16, FERRY_DTYPE_F16},
                                   std::pair{FERRY_DTYPE_F16, FERRY_DTYPE_BF16}}) {
        convert(from, to, all.data(), out.data(), all.size());
        convert(from, FERRY_DTYPE_F32, all.data(), wide.data(), all.size());
        convert(FERRY_DTYPE_F32, to, wide.data(), reference.data(), all.size());
        CHECK(out == reference);
    }
}

TEST_CASE("narrowing F32 rounds to nearest even at ties, limits and subnormals", "[convert]") {
    std::vector<float> edges = {0.0f, -0.0f, 1.0f, -1.0f, 65504.0f, 65519.99f, 65520.0f,
                                -65520.0f, 65536.0f, 1e10f,
                                std::numeric_limits<float>::max(),
                                std::numeric_limits<float>::lowest(),
                                std::numeric_limits<float>::min(),
                                std::numeric_limits<float>::denorm_min(),
                                std::numeric_limits<float>::infinity(),
                                -std::numeric_limits<float>::infinity(),
                                std::numeric_limits<float>::quiet_NaN(),
                                -std::numeric_limits<float>::quiet_NaN(),
                                f32_of(0x7f800001u), f32_of(0xff800001u),  // signaling
                                std::ldexp(1.0f, -14), std::ldexp(1.0f, -24),
                                std::ldexp(1.0f, -25), std::ldexp(1.5f, -25),
                                std::ldexp(1.0f, -26), std::ldexp(3.0f, -25),
                                std::ldexp(1023.5f, -24), std::ldexp(2047.0f, -25)};
    // Ties: exactly half-way between neighbours, both with an even and an odd low bit.
    for (std::uint32_t base : {0x3f800000u, 0x3f810000u, 0x42c80000u, 0x7f7e0000u}) {
        edges.push_back(f32_of(base | 0x8000u));   // BF16 tie
        edges.push_back(f32_of(base | 0x8001u));   // just past it
        edges.push_back(f32_of(base | 0x7fffu));   // just before it
        edges.push_back(f32_of(base | 0x1000u));   // F16 tie (13 low bits)
        edges.push_back(f32_of(base | 0x3000u));
    }
    // The largest BF16, and half-way past it (rounds to infinity).
    edges.push_back(f32_of(0x7f7f7fffu));
    edges.push_back(f32_of(0x7f7f8000u));
    for (float f : edges) check_narrowing(f);
}

TEST_CASE("narrowing F32 matches the nearest value on a million sampled patterns", "[convert]") {
    std::mt19937_64 rng(42);
    std::vector<float> sample;
    for (int i = 0; i < 1000000; ++i) {
        std::uint32_t bits = static_cast<std::uint32_t>(rng());
        // Half of them in F16's range, where most of its rounding cases lie.
        if (i % 2 == 0) bits = (bits & 0x807fffffu) | ((102u + (bits >> 23) % 42) << 23);
        sample.push_back(f32_of(bits));
    }
    std::vector<std::uint16_t> bf16(sample.size()), f16(sample.size());
    convert(FERRY_DTYPE_F32, FERRY_DTYPE_BF16, sample.data(), bf16.data(), sample.size());
    convert(FERRY_DTYPE_F32, FERRY_DTYPE_F16, sample.data(), f16.data(), sample.size());
    std::size_t bad = 0;
    for (std::size_t i = 0; i < sample.size(); ++i) {
        const float f = sample[i];
        if (std::isnan(f) || std::isinf(f)) continue;
        if (bf16[i] != nearest(f, bf16_value, 0x7f7f, 0x7f80)) ++bad;
        if (f16[i] != nearest(f, f16_value, 0x7bff, 0x7c00)) ++bad;
    }
    CHECK(bad == 0);
}

TEST_CASE("only F32, BF16 and F16 are convertible", "[convert]") {
    CHECK(ferry::load::is_convertible(FERRY_DTYPE_F32));
    CHECK(ferry::load::is_convertible(FERRY_DTYPE_BF16));
    CHECK(ferry::load::is_convertible(FERRY_DTYPE_F16));
    CHECK_FALSE(ferry::load::is_convertible(FERRY_DTYPE_F64));
    CHECK_FALSE(ferry::load::is_convertible(FERRY_DTYPE_I8));
    CHECK_FALSE(ferry::load::is_convertible(FERRY_DTYPE_UNKNOWN));
}
