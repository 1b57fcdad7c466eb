// load/: safetensors weights: headers parsed and checked, tensors read into memory.
// Float conversion (convert.hpp), on bit patterns: no floating-point arithmetic, so the
// results do not depend on the rounding mode or on flush-to-zero.
#include "load/convert.hpp"

#include <cstring>

#include "base/dtype.hpp"
#include "base/error.hpp"

namespace ferry::load {
namespace {

std::uint32_t f32_bits(const std::byte *p) {
    std::uint32_t bits;
    std::memcpy(&bits, p, 4);
    return bits;
}

std::uint16_t u16_bits(const std::byte *p) {
    std::uint16_t bits;
    std::memcpy(&bits, p, 2);
    return bits;
}

// F32 to BF16: round to nearest even on the low 16 bits; a carry into the exponent gives
// the next binade or infinity. NaN: the high half, made quiet.
std::uint16_t f32_to_bf16(std::uint32_t x) {
    if ((x & 0x7fffffffu) > 0x7f800000u) return static_cast<std::uint16_t>((x >> 16) | 0x0040u);
    return static_cast<std::uint16_t>((x + 0x7fffu + ((x >> 16) & 1u)) >> 16);
}

std::uint32_t bf16_to_f32(std::uint16_t h) {
    std::uint32_t bits = static_cast<std::uint32_t>(h) << 16;
    if ((bits & 0x7fffffffu) > 0x7f800000u) bits |= 0x00400000u;  // quiet
    return bits;
}

// F32 to F16, round to nearest even. 65520 (half-way past 65504, the largest finite F16)
// and above go to infinity; below 2^-14 the result is subnormal, rounded in units of 2^-24.
std::uint16_t f32_to_f16(std::uint32_t x) {
    const std::uint32_t sign = (x >> 16) & 0x8000u;
    const std::uint32_t abs = x & 0x7fffffffu;
    if (abs > 0x7f800000u) {  // NaN: quiet, the payload's high bits kept
        return static_cast<std::uint16_t>(sign | 0x7e00u | ((abs >> 13) & 0x3ffu));
    }
    if (abs >= 0x477ff000u) return static_cast<std::uint16_t>(sign | 0x7c00u);  // inf
    if (abs >= 0x38800000u) {  // normal: rebias the exponent by 127 - 15
        const std::uint32_t rounded = abs + 0xfffu + ((abs >> 13) & 1u);
        return static_cast<std::uint16_t>(sign | ((rounded - 0x38000000u) >> 13));
    }
    const std::uint32_t exponent = abs >> 23;
    if (exponent < 102) return static_cast<std::uint16_t>(sign);  // below 2^-25: zero
    const std::uint32_t mantissa = (abs & 0x7fffffu) | 0x800000u;
    const std::uint32_t shift = 126 - exponent;  // 14..24
    std::uint32_t q = mantissa >> shift;
    const std::uint32_t rest = mantissa & ((1u << shift) - 1);
    const std::uint32_t half = 1u << (shift - 1);
    if (rest > half || (rest == half && (q & 1u) != 0)) ++q;  // may reach 0x400: 2^-14
    return static_cast<std::uint16_t>(sign | q);
}

std::uint32_t f16_to_f32(std::uint16_t h) {
    const std::uint32_t sign = static_cast<std::uint32_t>(h & 0x8000u) << 16;
    const std::uint32_t exponent = (h >> 10) & 0x1fu;
    const std::uint32_t mantissa = h & 0x3ffu;
    if (exponent == 0x1f) {
        if (mantissa == 0) return sign | 0x7f800000u;
        return sign | 0x7fc00000u | (mantissa << 13);
    }
    if (exponent != 0) return sign | ((exponent + 112) << 23) | (mantissa << 13);
    if (mantissa == 0) return sign;
    // Subnormal: mantissa x 2^-24, normalized around its highest set bit p.
    int p = 9;
    while ((mantissa >> p) == 0) --p;
    const std::uint32_t f32_exponent = static_cast<std::uint32_t>(p + 103);
    return sign | (f32_exponent << 23) | ((mantissa << (23 - p)) & 0x7fffffu);
}

std::uint32_t to_f32(ferry_dtype from, const std::byte *p) {
    switch (from) {
        case FERRY_DTYPE_F32: return f32_bits(p);
        case FERRY_DTYPE_BF16: return bf16_to_f32(u16_bits(p));
        default: return f16_to_f32(u16_bits(p));
    }
}

}  // namespace

bool is_convertible(ferry_dtype dtype) {
    return dtype == FERRY_DTYPE_F32 || dtype == FERRY_DTYPE_BF16 || dtype == FERRY_DTYPE_F16;
}

void convert(ferry_dtype from, ferry_dtype to, const void *src, void *dst, std::size_t count) {
    FERRY_EXPECTS(is_convertible(from) && is_convertible(to) && from != to,
                  FERRY_ERROR_INTERNAL,
                  "convert: dtypes " + std::to_string(from) + " -> " + std::to_string(to) +
                      " are not a float conversion");
    const auto *in = static_cast<const std::byte *>(src);
    auto *out = static_cast<std::byte *>(dst);
    const std::size_t in_bytes = dtype_bytes(from);
    // One loop per pair, so that each is a simple loop over bit patterns.
    if (to == FERRY_DTYPE_F32) {
        for (std::size_t i = 0; i < count; ++i) {
            const std::uint32_t bits = to_f32(from, in + i * in_bytes);
            std::memcpy(out + 4 * i, &bits, 4);
        }
        return;
    }
    const bool to_bf16 = to == FERRY_DTYPE_BF16;
    for (std::size_t i = 0; i < count; ++i) {
        const std::uint32_t bits = to_f32(from, in + i * in_bytes);
        const std::uint16_t narrow = to_bf16 ? f32_to_bf16(bits) : f32_to_f16(bits);
        std::memcpy(out + 2 * i, &narrow, 2);
    }
}

}  // namespace ferry::load
