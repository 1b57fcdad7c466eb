// The decoder of ferry's compressed tensors, shared by the CUDA kernel (decode.cu) and the
// CPU reference (runtime/codec/), so that sim decodes real bytes with the same code the
// device runs. Every function is __host__ __device__ under nvcc and plain C++ elsewhere;
// none allocates, throws or reads a byte it has not bounds-checked.
//
// The format (one container per tensor, little-endian; runtime/codec/codec.hpp encodes):
//
//   [header: kHeaderBytes][chunk offsets: (chunks + 1) x u64][raw: elements bytes][coded]
//
// A bf16 or f16 element is split in two bytes. The *symbol* is entropy-coded: bf16's
// exponent (bits 14..7), f16's high byte (sign, exponent, two mantissa bits). The *raw*
// byte is stored as is, in element order: bf16's sign and 7 mantissa bits, f16's low byte.
// Symbols are coded with one canonical Huffman code per tensor, its lengths limited to
// kMaxCodeBits so that one 4096-entry table decodes any code with a single lookup.
//
// Elements are cut into chunks of kChunkElems; each chunk decodes on its own (one warp on
// the device). Within a chunk, lane j of kLanes owns elements j, j + 32, j + 64, ...: its
// symbols form one bit stream (MSB first, padded to a byte), so that the 32 lanes of a
// warp decode side by side and write 32 neighbouring elements per step. A chunk's record
// in `coded`, at offsets[c], is kLanes length bytes (each lane's stream in bytes) followed
// by the lanes' streams in lane order; offsets[chunks] == coded bytes.
#pragma once

#include <cstdint>

#if defined(__CUDACC__)
#define FERRY_CODEC_HD __host__ __device__
#else
#define FERRY_CODEC_HD
#endif

namespace ferry::kernels::codec {

constexpr std::uint32_t kMagic = 0x315A5246u;  // "FRZ1"
constexpr std::uint32_t kVersion = 1;
constexpr std::uint32_t kLanes = 32;
constexpr std::uint32_t kPerLane = 128;                       // elements per lane per chunk
constexpr std::uint32_t kChunkElems = kLanes * kPerLane;      // 4096
constexpr std::uint32_t kMaxCodeBits = 12;
constexpr std::uint32_t kTableSize = 1u << kMaxCodeBits;      // 4096 entries of u16
constexpr std::uint32_t kMaxLaneBytes = (kPerLane * kMaxCodeBits + 7) / 8;  // 192
constexpr std::uint64_t kMaxElements = 1ull << 40;
constexpr std::uint32_t kSymbols = 256;

// The header: fixed fields, then the code length of each of the 256 symbols (0: unused).
constexpr std::uint64_t kHeaderFixedBytes = 64;
constexpr std::uint64_t kHeaderBytes = kHeaderFixedBytes + kSymbols;
// Byte offsets of the header's fields.
constexpr std::uint32_t kAtMagic = 0;       // u32
constexpr std::uint32_t kAtVersion = 4;     // u16
constexpr std::uint32_t kAtDtype = 6;       // u8: a Dtype
constexpr std::uint32_t kAtMaxBits = 7;     // u8: kMaxCodeBits
constexpr std::uint32_t kAtElements = 8;    // u64
constexpr std::uint32_t kAtChunks = 16;     // u64
constexpr std::uint32_t kAtCodedBytes = 24;  // u64
constexpr std::uint32_t kAtChecksum = 32;   // u64: kernels::checksum_ref of the decoded bytes
constexpr std::uint32_t kAtLengths = 64;    // u8[256]; bytes 40..63 are reserved, zero

enum Dtype : std::uint8_t { kBf16 = 1, kF16 = 2 };

// What a decode found wrong; 0 is none. The names are in runtime/codec/codec.cpp.
enum Status : std::uint32_t {
    kOk = 0,
    kTruncated = 1,        // the container is shorter than its header
    kBadMagic = 2,         // not a ferry container, or another version
    kBadHeader = 3,        // a header field out of range or inconsistent with the size
    kBadCode = 4,          // the code lengths are no prefix code
    kBadChunkTable = 5,    // a chunk's offsets or lane lengths disagree with the data
    kBadBits = 6,          // a lane's bits do not decode to exactly its elements
    kSizeMismatch = 7,     // the destination is not the decoded size
    kChecksumMismatch = 8  // decoded, but not the bytes that were encoded
};

FERRY_CODEC_HD inline std::uint64_t load_le(const std::uint8_t *p, unsigned bytes) {
    std::uint64_t value = 0;
    for (unsigned i = 0; i < bytes; ++i) value |= static_cast<std::uint64_t>(p[i]) << (8 * i);
    return value;
}

// Where a container's parts lie, from its header, checked against its size.
struct Layout {
    std::uint64_t elements;
    std::uint64_t chunks;
    std::uint64_t coded_bytes;
    std::uint64_t checksum;
    std::uint64_t offsets_at;  // byte offset of the chunk offsets
    std::uint64_t raw_at;
    std::uint64_t coded_at;
    std::uint64_t total;       // == the container's size
    std::uint8_t dtype;
};

FERRY_CODEC_HD inline std::uint64_t chunks_for(std::uint64_t elements) {
    return (elements + kChunkElems - 1) / kChunkElems;
}

// Reads and checks the header of `bytes` bytes at `src`. Every size is bounded before any
// sum, so nothing overflows: elements < 2^40 and coded_bytes <= bytes.
FERRY_CODEC_HD inline Status parse_layout(const std::uint8_t *src, std::uint64_t bytes,
                                          Layout *out) {
    if (bytes < kHeaderBytes) return kTruncated;
    if (load_le(src + kAtMagic, 4) != kMagic || load_le(src + kAtVersion, 2) != kVersion)
        return kBadMagic;
    Layout l{};
    l.dtype = src[kAtDtype];
    l.elements = load_le(src + kAtElements, 8);
    l.chunks = load_le(src + kAtChunks, 8);
    l.coded_bytes = load_le(src + kAtCodedBytes, 8);
    l.checksum = load_le(src + kAtChecksum, 8);
    if ((l.dtype != kBf16 && l.dtype != kF16) || src[kAtMaxBits] != kMaxCodeBits ||
        l.elements == 0 || l.elements > kMaxElements || l.chunks != chunks_for(l.elements) ||
        l.coded_bytes > bytes)
        return kBadHeader;
    l.offsets_at = kHeaderBytes;
    l.raw_at = l.offsets_at + 8 * (l.chunks + 1);
    l.coded_at = l.raw_at + l.elements;
    l.total = l.coded_at + l.coded_bytes;
    if (l.total != bytes) return kBadHeader;
    for (std::uint32_t at = kAtChecksum + 8; at < kAtLengths; ++at)
        if (src[at] != 0) return kBadHeader;  // reserved: zero
    // The lane length bytes alone take kLanes per chunk.
    if (l.coded_bytes < l.chunks * kLanes) return kBadHeader;
    *out = l;
    return kOk;
}

// The canonical code of a set of lengths: codes of one length are consecutive, shorter
// codes first, and within a length the symbols in increasing order.
struct CodeBook {
    std::uint32_t first[kMaxCodeBits + 1];  // first code of each length
    std::uint32_t count[kMaxCodeBits + 1];  // symbols of each length
    std::uint32_t index[kMaxCodeBits + 1];  // where each length's symbols start in sorted
    std::uint8_t sorted[kSymbols];          // symbols by (length, symbol)
};

// Builds the code book of the 256 lengths at `lengths`. kBadCode when a length exceeds
// kMaxCodeBits, no symbol has a code, or the lengths overfill the code space (Kraft's sum
// over 1): such lengths are no prefix code. An incomplete code is fine (one symbol, say);
// the table marks its unused entries and the decoder rejects them.
FERRY_CODEC_HD inline Status build_codebook(const std::uint8_t *lengths, CodeBook *book) {
    std::uint32_t kraft = 0;
    for (std::uint32_t n = 0; n <= kMaxCodeBits; ++n) book->count[n] = 0;
    for (std::uint32_t s = 0; s < kSymbols; ++s) {
        const std::uint32_t n = lengths[s];
        if (n > kMaxCodeBits) return kBadCode;
        if (n == 0) continue;
        ++book->count[n];
        kraft += 1u << (kMaxCodeBits - n);
    }
    if (kraft == 0 || kraft > kTableSize) return kBadCode;
    std::uint32_t code = 0, at = 0;
    for (std::uint32_t n = 1; n <= kMaxCodeBits; ++n) {
        book->first[n] = code;
        book->index[n] = at;
        code = (code + book->count[n]) << 1;
        at += book->count[n];
    }
    book->first[0] = book->count[0] = book->index[0] = 0;
    std::uint32_t fill[kMaxCodeBits + 1];
    for (std::uint32_t n = 0; n <= kMaxCodeBits; ++n) fill[n] = book->index[n];
    for (std::uint32_t s = 0; s < kSymbols; ++s)
        if (lengths[s] != 0) book->sorted[fill[lengths[s]]++] = static_cast<std::uint8_t>(s);
    return kOk;
}

// Entry `at` of the decode table: the symbol whose code prefixes the kMaxCodeBits-bit
// value `at`, as (length << 8) | symbol; 0 (length 0) where no code does.
FERRY_CODEC_HD inline std::uint16_t table_entry(const CodeBook &book, std::uint32_t at) {
    for (std::uint32_t n = 1; n <= kMaxCodeBits; ++n) {
        const std::uint32_t prefix = at >> (kMaxCodeBits - n);
        const std::uint32_t k = prefix - book.first[n];  // wraps when prefix < first
        if (prefix >= book.first[n] && k < book.count[n])
            return static_cast<std::uint16_t>((n << 8) | book.sorted[book.index[n] + k]);
    }
    return 0;
}

// The element of a symbol and a raw byte, as its two little-endian bytes.
FERRY_CODEC_HD inline std::uint16_t join(std::uint8_t dtype, std::uint32_t symbol,
                                         std::uint32_t raw) {
    if (dtype == kBf16)
        return static_cast<std::uint16_t>(((raw & 0x80u) << 8) | (symbol << 7) | (raw & 0x7Fu));
    return static_cast<std::uint16_t>((symbol << 8) | raw);
}

// How many elements of chunk `chunk` lane `lane` owns.
FERRY_CODEC_HD inline std::uint32_t lane_elements(const Layout &l, std::uint64_t chunk,
                                                  std::uint32_t lane) {
    const std::uint64_t base = chunk * kChunkElems;
    const std::uint64_t in_chunk =
        l.elements - base < kChunkElems ? l.elements - base : kChunkElems;
    return in_chunk > lane ? static_cast<std::uint32_t>((in_chunk - lane + kLanes - 1) / kLanes)
                           : 0;
}

// Chunk `chunk`'s record: where it starts in the container and where it ends, checked
// against the coded part. The lane lengths are checked by the caller against end - start.
FERRY_CODEC_HD inline Status chunk_record(const std::uint8_t *src, const Layout &l,
                                          std::uint64_t chunk, std::uint64_t *start,
                                          std::uint64_t *end) {
    const std::uint64_t a = load_le(src + l.offsets_at + 8 * chunk, 8);
    const std::uint64_t b = load_le(src + l.offsets_at + 8 * (chunk + 1), 8);
    if (a > b || b > l.coded_bytes || b - a < kLanes) return kBadChunkTable;
    if (chunk + 1 == l.chunks && b != l.coded_bytes) return kBadChunkTable;
    *start = l.coded_at + a;
    *end = l.coded_at + b;
    return kOk;
}

// Decodes one lane: `count` elements from the `bytes`-byte stream at `bits`, raw bytes at
// raw[k * kLanes] and outputs at dst[k * kLanes] (both already offset to the lane's first
// element). The stream must decode to exactly `count` symbols, use all its bytes and pad
// with zero bits: any other stream is corrupt, and the decoder never reads past `bytes` nor writes past
// `count` elements whatever the bits say.
FERRY_CODEC_HD inline Status decode_lane(const std::uint8_t *bits, std::uint32_t bytes,
                                         const std::uint16_t *table, const std::uint8_t *raw,
                                         std::uint16_t *dst, std::uint32_t count,
                                         std::uint8_t dtype) {
    std::uint64_t acc = 0;  // valid bits left-aligned
    std::uint32_t have = 0, pos = 0;
    for (std::uint32_t k = 0; k < count; ++k) {
        while (have <= 56 && pos < bytes) {
            acc |= static_cast<std::uint64_t>(bits[pos++]) << (56 - have);
            have += 8;
        }
        const std::uint16_t entry = table[acc >> (64 - kMaxCodeBits)];
        const std::uint32_t n = entry >> 8;
        if (n == 0 || n > have) return kBadBits;
        acc <<= n;
        have -= n;
        dst[static_cast<std::uint64_t>(k) * kLanes] =
            join(dtype, entry & 0xFFu, raw[static_cast<std::uint64_t>(k) * kLanes]);
    }
    // All bytes read, fewer than 8 bits of padding left, and those zero.
    return pos == bytes && have < 8 && acc == 0 ? kOk : kBadBits;
}

}  // namespace ferry::kernels::codec
