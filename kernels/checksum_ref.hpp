// The checksum of a byte range: computed on the device by kernels::launch_checksum
// (checksum.hpp) and on the host by checksum_ref() below, bit-identically. This header
// needs no CUDA, so sim and the tests can use it anywhere.
//
// The range is read as little-endian 64-bit words, the last one zero-padded. Each word is
// mixed with its index and the results are summed modulo 2^64: a sum, so that a parallel
// reduction in any order agrees; mixed with the index, so that swapped words change it.
#pragma once

#include <cstdint>
#include <cstring>

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "ferry's checksum reads words little-endian and assumes a little-endian host"
#endif

#if defined(__CUDACC__)
#define FERRY_KERNELS_HOST_DEVICE __host__ __device__
#else
#define FERRY_KERNELS_HOST_DEVICE
#endif

namespace ferry::kernels {

// Word `index`'s term: splitmix64's finalizer applied to the word offset by its index.
FERRY_KERNELS_HOST_DEVICE inline std::uint64_t checksum_term(std::uint64_t word,
                                                             std::uint64_t index) {
    std::uint64_t z = word + (index + 1) * 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

inline std::uint64_t checksum_ref(const void *data, std::uint64_t bytes) {
    const auto *p = static_cast<const unsigned char *>(data);
    const std::uint64_t words = bytes / 8;
    std::uint64_t sum = 0;
    for (std::uint64_t i = 0; i < words; ++i) {
        std::uint64_t word;
        std::memcpy(&word, p + i * 8, 8);
        sum += checksum_term(word, i);
    }
    if (bytes % 8 != 0) {
        std::uint64_t word = 0;
        std::memcpy(&word, p + words * 8, bytes % 8);
        sum += checksum_term(word, words);
    }
    return sum;
}

}  // namespace ferry::kernels
