// Writes the seed corpus of ferry-fuzz-codec (tests/fuzz/corpus-codec/): containers of
// bf16 and f16 tensors of several lengths (one element, a partial lane, a partial chunk,
// two chunks; trained-like, constant, every bit pattern's start), broken copies of them
// (a flipped bit in each part, a truncation), and raw data for the round-trip half.
//
//     build/tests/ferry-fuzz-codec-seeds tests/fuzz/corpus-codec
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "../trained_weights.hpp"
#include "codec/codec.hpp"

namespace {

namespace k = ferry::kernels::codec;

void write(const std::string &dir, const std::string &name, std::uint8_t mode,
           const std::vector<std::uint8_t> &body) {
    std::vector<std::uint8_t> bytes{mode};
    bytes.insert(bytes.end(), body.begin(), body.end());
    const std::string path = dir + "/seed-" + name + ".bin";
    std::FILE *f = std::fopen(path.c_str(), "wb");
    if (f == nullptr || std::fwrite(bytes.data(), 1, bytes.size(), f) != bytes.size()) {
        std::perror(path.c_str());
        std::exit(1);
    }
    std::fclose(f);
}

}  // namespace

int main(int argc, char **argv) {
    if (argc != 2) {
        std::fprintf(stderr, "usage: ferry-fuzz-codec-seeds DIR\n");
        return 2;
    }
    const std::string dir = argv[1];
    ferry::codec::EncodeOptions keep;
    keep.threads = 1;
    keep.max_ratio = 1e12;
    for (const auto dtype : {k::kBf16, k::kF16}) {
        const std::string d = dtype == k::kBf16 ? "bf16" : "f16";
        for (const std::size_t count : {1u, 45u, 1000u, 4500u}) {
            const auto raw = ferry_test::trained_weights(count, static_cast<unsigned>(count));
            const auto coded = ferry::codec::encode(raw.data(), raw.size(), dtype, keep);
            const std::string name = d + "-" + std::to_string(count);
            write(dir, name, 0, coded);
            if (count == 4500) {
                write(dir, name + "-raw", dtype == k::kBf16 ? 1 : 3, raw);
                auto flip = coded;
                flip[k::kAtLengths + 120] ^= 1;
                write(dir, name + "-flip-lengths", 0, flip);
                flip = coded;
                flip[k::kHeaderBytes + 9] ^= 4;
                write(dir, name + "-flip-offsets", 0, flip);
                flip = coded;
                flip[flip.size() - 100] ^= 0x10;
                write(dir, name + "-flip-bits", 0, flip);
                write(dir, name + "-truncated", 0,
                      std::vector<std::uint8_t>(coded.begin(), coded.end() - 7));
            }
        }
        std::vector<std::uint8_t> constant(3000, 0x3F);
        write(dir, d + "-constant", 0, ferry::codec::encode(constant.data(), constant.size(), dtype, keep));
        std::vector<std::uint8_t> patterns(2 * 2048);
        for (std::size_t i = 0; i < 2048; ++i) {
            patterns[2 * i] = static_cast<std::uint8_t>(i * 37);
            patterns[2 * i + 1] = static_cast<std::uint8_t>(i * 37 >> 8);
        }
        write(dir, d + "-patterns", 0, ferry::codec::encode(patterns.data(), patterns.size(), dtype, keep));
    }
    return 0;
}
