// Weights as trained ones look, for the codec's tests: values of a normal distribution
// of small scale (std 0.02: the exponent's entropy is then about 2.6 bits, as in
// all-MiniLM-L6-v2's tensors), rounded down to bf16 or converted to f16, as little-endian
// bytes. The same seed gives the same bytes.
#pragma once

#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

namespace ferry_test {

inline std::vector<std::uint8_t> trained_weights(std::size_t elements, unsigned seed,
                                                 bool f16 = false, float sigma = 0.02f) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> normal(0.0f, sigma);
    std::vector<std::uint8_t> out(elements * 2);
    for (std::size_t i = 0; i < elements; ++i) {
        const float x = normal(rng);
        std::uint16_t v;
        if (f16) {
            const _Float16 h = static_cast<_Float16>(x);
            std::memcpy(&v, &h, 2);
        } else {
            std::uint32_t bits;
            std::memcpy(&bits, &x, 4);
            v = static_cast<std::uint16_t>(bits >> 16);
        }
        std::memcpy(out.data() + 2 * i, &v, 2);
    }
    return out;
}

}  // namespace ferry_test
