// codec/: lossless compression of immutable bf16 and f16 tensors, encoded on the CPU and
// decoded on the device (kernels/decode.cu) or on the CPU by the same code
// (kernels/decode_core.hpp, which also describes the format). Uses base/ and kernels/.
//
// Why this code: trained bf16 weights spend 8 bits on an exponent whose entropy is about
// 2.6 bits; sign and mantissa are close to random. A canonical Huffman code of the
// exponent, its lengths capped at 12 bits so that one 4096-entry table decodes each
// symbol in one lookup, reaches within 0.04 bit of that entropy, about 0.67 of bf16 in
// all. A fixed-rate 4-bit code with escapes decodes no faster (a lookup and a shift as
// well, plus the escapes) and cannot go under 0.75. README "Compressed streaming" has the
// measurements.
#pragma once

#include <cstdint>
#include <vector>

#include "kernels/decode_core.hpp"

namespace ferry::codec {

using kernels::codec::Dtype;
using kernels::codec::Status;

// An encoding is kept only when it is at most this fraction of the raw bytes.
constexpr double kDefaultMaxRatio = 0.95;

struct EncodeOptions {
    unsigned threads = 0;                // 0: every hardware thread
    double max_ratio = kDefaultMaxRatio;  // keep the encoding only at or under this ratio
};

// Chunks per block: the unit whose coded size plan_encode bounds, and the grain by which
// write_encoded splits a tensor over threads.
constexpr std::uint64_t kBlockChunks = 16;

// The container a tensor would be encoded into, computed without writing it: the code and
// a bound on the size. Only the write learns each lane's exact bytes (and sums the
// checksum), so that the data is read twice in all (histogram, write), not three times.
// The bound is the exact number of coded bits plus, per chunk, its lane lengths and each
// lane's rounding to bytes: over by at most 0.4% of the raw bytes. `pays` is false when
// the tensor cannot be encoded (not an even number of bytes, empty, too large) or the
// bound is over max_ratio of the raw bytes; the tensor then stays raw.
struct EncodePlan {
    bool pays = false;
    Dtype dtype = kernels::codec::kBf16;
    std::uint64_t raw_bytes = 0;
    std::uint64_t max_encoded_bytes = 0;  // the container's size at most, whether it pays or not
    std::uint8_t lengths[kernels::codec::kSymbols] = {};
    std::vector<std::uint64_t> block_bounds;  // each block's coded bytes at most
};

// Histograms and builds the code, on `options.threads` threads. Reads `bytes` bytes at
// `data`; writes nothing.
EncodePlan plan_encode(const void *data, std::uint64_t bytes, Dtype dtype,
                       const EncodeOptions &options = {});

// Writes the container `plan` describes at `out`, which has room for
// plan.max_encoded_bytes, from the same `data` plan_encode read, on `threads` threads (0:
// every hardware thread). Returns the container's size; bytes past it are unspecified.
std::uint64_t write_encoded(const EncodePlan &plan, const void *data, void *out,
                            unsigned threads = 0);

// plan_encode, then write_encoded into a new buffer; empty when the encoding does not pay.
std::vector<std::uint8_t> encode(const void *data, std::uint64_t bytes, Dtype dtype,
                                 const EncodeOptions &options = {});

// The decoded size of the container at `src`, or 0 when its header is not valid.
std::uint64_t decoded_bytes(const void *src, std::uint64_t src_bytes);

// Decodes the container of `src_bytes` bytes at `src` into `dst_bytes` bytes at `dst`, on
// `threads` threads (0: every hardware thread), with the code the device runs. Returns
// kOk, or what is wrong with the container; with `check` the decoded bytes are also
// compared with the checksum the encoder stored (kChecksumMismatch). Whatever the bytes
// at `src`, it reads only those and writes only the `dst_bytes` at `dst`; after a failure
// their contents are unspecified.
Status decode(const void *src, std::uint64_t src_bytes, void *dst, std::uint64_t dst_bytes,
              unsigned threads = 1, bool check = false);

// "bad chunk table" and so on: the name of a decode status, for messages.
const char *status_name(Status status);

}  // namespace ferry::codec
