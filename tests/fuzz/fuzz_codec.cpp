// libFuzzer target: the codec's decoder (kernels/decode_core.hpp through codec::decode, the
// CPU reference of the device kernel) on untrusted bytes, and its encoder on any data. The
// first byte picks what the rest is:
//
//   - even: a container. decoded_bytes() reads its header; the decode runs into exactly
//     that many bytes (capped at 4 MiB) and into a wrong size, with and without the
//     checksum. Any status is a correct answer; a crash, a sanitizer report (a read or
//     write out of bounds) or a checked decode that says kOk with bytes other than the
//     checksum's is a bug.
//   - odd: data, bf16 or f16 by the second byte. It is encoded (kept whatever the ratio),
//     decoded on one thread and on three, and must come back bit for bit.
//
// The seeds (tests/fuzz/corpus-codec/, written by ferry-fuzz-codec-seeds) are valid
// containers of both dtypes and several lengths, and a few broken ones.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "codec/codec.hpp"
#include "kernels/checksum_ref.hpp"

namespace {

namespace k = ferry::kernels::codec;

[[noreturn]] void violated(const char *what) {
    std::fprintf(stderr, "ferry fuzz codec: invariant violated: %s\n", what);
    std::abort();
}

constexpr std::uint64_t kMaxDecoded = 4u << 20;

void decode_container(const std::uint8_t *data, std::size_t size) {
    // An exact-size copy, so that ASan sees any read past the container's end.
    std::vector<std::uint8_t> src(size);
    if (size != 0) std::memcpy(src.data(), data, size);
    const std::uint64_t decoded = ferry::codec::decoded_bytes(src.data(), src.size());
    std::vector<std::uint8_t> dst(decoded <= kMaxDecoded ? decoded : 64);
    for (const bool check : {false, true}) {
        const auto status = ferry::codec::decode(src.data(), src.size(), dst.data(), dst.size(),
                                                 1, check);
        if (status == k::kOk && check &&
            ferry::kernels::checksum_ref(dst.data(), dst.size()) !=
                k::load_le(src.data() + k::kAtChecksum, 8))
            violated("a checked decode said ok with other bytes than the checksum's");
        if (status == k::kOk && decoded != dst.size()) violated("decoded into the wrong size");
    }
    std::vector<std::uint8_t> small(dst.size() / 2);
    if (!dst.empty() &&
        ferry::codec::decode(src.data(), src.size(), small.data(), small.size()) == k::kOk)
        violated("a decode into half the size said ok");
}

void round_trip(const std::uint8_t *data, std::size_t size) {
    if (size < 2) return;
    const k::Dtype dtype = data[0] % 2 ? k::kF16 : k::kBf16;
    std::vector<std::uint8_t> raw((size - 1) / 2 * 2);
    if (raw.empty()) return;
    std::memcpy(raw.data(), data + 1, raw.size());
    ferry::codec::EncodeOptions keep;
    keep.threads = 1;
    keep.max_ratio = 1e12;
    const auto coded = ferry::codec::encode(raw.data(), raw.size(), dtype, keep);
    if (coded.empty()) violated("an even number of bytes was not encoded");
    for (const unsigned threads : {1u, 3u}) {
        std::vector<std::uint8_t> back(raw.size());
        if (ferry::codec::decode(coded.data(), coded.size(), back.data(), back.size(), threads,
                                 true) != k::kOk)
            violated("a fresh container did not decode");
        if (back != raw) violated("decoded bytes differ from the encoded ones");
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t *data, std::size_t size) {
    if (size == 0) return 0;
    if (data[0] % 2 == 0) decode_container(data + 1, size - 1);
    else round_trip(data + 1, size - 1);
    return 0;
}
