#include "codec/codec.hpp"

#include <algorithm>
#include <atomic>
#include <cstring>
#include <memory>
#include <system_error>
#include <thread>
#include <utility>

#include "kernels/checksum_ref.hpp"
#include "kernels/decode_ref.hpp"

namespace ferry::codec {
namespace {

// The encoder reads elements as native 16-bit words; the store and the format are
// little-endian.
static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "the encoder assumes a little-endian host");

namespace k = kernels::codec;

unsigned thread_count(unsigned asked) {
    if (asked != 0) return asked;
    const unsigned hw = std::thread::hardware_concurrency();
    return hw == 0 ? 1 : hw;
}

// Runs fn(begin, end) over [0, count) cut into at most `threads` ranges, each a multiple
// of `grain` except the last; the calling thread runs the first range, and any range no
// thread could be started for. fn must not throw.
template <typename Fn>
void parallel_for(std::uint64_t count, std::uint64_t grain, unsigned threads, Fn fn) {
    const std::uint64_t units = (count + grain - 1) / grain;
    const std::uint64_t parts = std::min<std::uint64_t>(std::max(threads, 1u), units);
    if (parts <= 1) {
        if (count != 0) fn(std::uint64_t{0}, count);
        return;
    }
    std::vector<std::thread> workers;
    workers.reserve(parts - 1);
    auto range = [&](std::uint64_t p) {
        const std::uint64_t begin = std::min(count, units * p / parts * grain);
        const std::uint64_t end = std::min(count, units * (p + 1) / parts * grain);
        return std::make_pair(begin, end);
    };
    std::uint64_t started = 1;
    try {
        for (; started < parts; ++started) {
            const auto part = range(started);  // not a structured binding: C++17 cannot capture one
            workers.emplace_back([part, &fn] { fn(part.first, part.second); });
        }
    } catch (const std::system_error &) {
        // No more threads: this one runs the ranges left, below.
    }
    for (std::uint64_t p = started; p < parts; ++p) fn(range(p).first, range(p).second);
    const auto [begin, end] = range(0);
    fn(begin, end);
    for (auto &worker : workers) worker.join();
}

// Huffman code lengths of the symbols counted in `hist`, then limited to kMaxCodeBits:
// lengths over the limit are cut to it, the code space this overfills is paid back by
// lengthening the rarest symbols still under it, and space left over shortens the most
// frequent symbols again. One used symbol gets a 1-bit code.
void code_lengths(const std::uint64_t *hist, std::uint8_t *out) {
    std::vector<std::pair<std::uint64_t, int>> used;
    for (int s = 0; s < 256; ++s)
        if (hist[s] != 0) used.emplace_back(hist[s], s);
    std::memset(out, 0, k::kSymbols);
    if (used.empty()) return;
    if (used.size() == 1) {
        out[used[0].second] = 1;
        return;
    }
    std::sort(used.begin(), used.end());
    // Two-queue Huffman: leaves 0..n-1 by weight, internal nodes n.. in creation order.
    const std::size_t n = used.size();
    std::vector<std::uint64_t> weight(2 * n - 1);
    std::vector<std::size_t> parent(2 * n - 1, 0);
    for (std::size_t i = 0; i < n; ++i) weight[i] = used[i].first;
    std::size_t leaf = 0, inner = n, next = n;
    auto take = [&] {
        if (leaf < n && (inner >= next || weight[leaf] <= weight[inner])) return leaf++;
        return inner++;
    };
    for (; next < 2 * n - 1; ++next) {
        const std::size_t a = take(), b = take();
        weight[next] = weight[a] + weight[b];
        parent[a] = parent[b] = next;
    }
    std::vector<unsigned> depth(2 * n - 1, 0);
    for (std::size_t i = 2 * n - 2; i-- > 0;) depth[i] = depth[parent[i]] + 1;
    constexpr unsigned kMax = k::kMaxCodeBits;
    std::vector<unsigned> len(n);
    std::uint32_t kraft = 0;  // in units of 2^-kMax
    for (std::size_t i = 0; i < n; ++i) {
        len[i] = std::min(depth[i], kMax);
        kraft += 1u << (kMax - len[i]);
    }
    // used[] is by increasing weight: the rarest symbols come first.
    while (kraft > k::kTableSize) {
        std::size_t pick = n;
        for (std::size_t i = 0; i < n; ++i)
            if (len[i] < kMax && (pick == n || len[i] > len[pick])) pick = i;
        kraft -= 1u << (kMax - len[pick] - 1);
        ++len[pick];
    }
    for (bool shortened = true; shortened;) {
        shortened = false;
        for (std::size_t i = n; i-- > 0;) {
            if (len[i] > 1 && kraft + (1u << (kMax - len[i])) <= k::kTableSize) {
                kraft += 1u << (kMax - len[i]);
                --len[i];
                shortened = true;
            }
        }
    }
    for (std::size_t i = 0; i < n; ++i) out[used[i].second] = static_cast<std::uint8_t>(len[i]);
}

// The canonical codes of `lengths` (as build_codebook assigns them).
void canonical_codes(const std::uint8_t *lengths, std::uint16_t *codes) {
    k::CodeBook book;
    k::build_codebook(lengths, &book);
    std::uint32_t next[k::kMaxCodeBits + 1];
    for (std::uint32_t n = 0; n <= k::kMaxCodeBits; ++n) next[n] = book.first[n];
    for (std::uint32_t s = 0; s < k::kSymbols; ++s)
        codes[s] = lengths[s] == 0 ? 0 : static_cast<std::uint16_t>(next[lengths[s]]++);
}

void store_le(std::uint8_t *p, std::uint64_t value, unsigned bytes) {
    for (unsigned i = 0; i < bytes; ++i) p[i] = static_cast<std::uint8_t>(value >> (8 * i));
}

// Splits `count` elements at `p` into their symbols and, unless `raw` is null, their raw
// bytes, each contiguous, so that what reads symbols lane by lane reads them from L1.
// Whole chunks take a loop with a constant trip count, which the compiler vectorizes
// (__restrict: at -O2 it will not add a run-time check that the arrays do not overlap).
template <Dtype D, bool kRaw>
void split_elements_of(const std::uint8_t *__restrict p, std::uint32_t count,
                       std::uint8_t *__restrict symbols, std::uint8_t *__restrict raw) {
    for (std::uint32_t i = 0; i < count; ++i) {
        std::uint16_t x;
        std::memcpy(&x, p + 2 * i, 2);
        symbols[i] = static_cast<std::uint8_t>(D == k::kBf16 ? x >> 7 : x >> 8);
        if (kRaw)
            raw[i] = static_cast<std::uint8_t>(D == k::kBf16 ? ((x >> 8) & 0x80) | (x & 0x7F) : x);
    }
}

template <Dtype D, bool kRaw>
void split_of(const std::uint8_t *p, std::uint32_t count, std::uint8_t *symbols,
              std::uint8_t *raw) {
    if (count == k::kChunkElems)
        split_elements_of<D, kRaw>(p, k::kChunkElems, symbols, raw);
    else
        split_elements_of<D, kRaw>(p, count, symbols, raw);
}

void split(Dtype dtype, const std::uint8_t *p, std::uint32_t count, std::uint8_t *symbols,
           std::uint8_t *raw = nullptr) {
    if (dtype == k::kBf16)
        raw ? split_of<k::kBf16, true>(p, count, symbols, raw)
            : split_of<k::kBf16, false>(p, count, symbols, raw);
    else
        raw ? split_of<k::kF16, true>(p, count, symbols, raw)
            : split_of<k::kF16, false>(p, count, symbols, raw);
}

// One lane's bit stream being written, MSB first. Bits gather in a 64-bit word and leave
// it 32 at a time: at most 24 bits come in at once (two 12-bit codes), so the word never
// holds more than 55.
struct LaneWriter {
    std::uint64_t acc = 0;  // the pending bits are the low `have`; higher bits are stale
    unsigned have = 0;
    std::uint8_t *out = nullptr;

    // Appends `length` bits, `code` (which has no higher bits set).
    void put_bits(std::uint32_t code, unsigned length) {
        acc = (acc << length) | code;
        have += length;
        if (have >= 32) {
            have -= 32;
            const auto word = static_cast<std::uint32_t>(acc >> have);
            out[0] = static_cast<std::uint8_t>(word >> 24);
            out[1] = static_cast<std::uint8_t>(word >> 16);
            out[2] = static_cast<std::uint8_t>(word >> 8);
            out[3] = static_cast<std::uint8_t>(word);
            out += 4;
        }
    }
    // `entry` is a symbol's code << 4 | its length.
    void put(std::uint32_t entry) { put_bits(entry >> 4, entry & 0xF); }
    // `entry` is two symbols' codes, the first above the second, << 5 | their lengths.
    void put2(std::uint32_t entry) { put_bits(entry >> 5, entry & 0x1F); }
    // Writes what is pending, zero-padded to a byte; returns the stream's end.
    std::uint8_t *finish() {
        for (; have >= 8; have -= 8) *out++ = static_cast<std::uint8_t>(acc >> (have - 8));
        if (have != 0) *out++ = static_cast<std::uint8_t>(acc << (8 - have));
        return out;
    }
};

// Writes a chunk's record at `record` (its kLanes lane lengths, then the lanes' streams in
// lane order) from its `count` symbols. `packed[s]` is symbol s's code << 4 | its length;
// `pairs[a | b << 8]` is the code of a followed by b, << 5 | their lengths' sum, for the
// symbols the tensor uses: a lane codes two of its symbols per step, half the dependent
// shifts. Four lanes are coded side by side into `scratch` (kLanes x kMaxLaneBytes), each
// lane's stream a chain of shifts that would otherwise wait on the one before; the
// streams are then moved together behind the lane lengths. Returns the record's end.
std::uint8_t *write_chunk(const std::uint8_t *symbols, std::uint32_t count,
                          const std::uint32_t *packed, const std::uint32_t *pairs,
                          std::uint8_t *scratch, std::uint8_t *record) {
    std::uint8_t *ends[k::kLanes];
    for (std::uint32_t lane = 0; lane < k::kLanes; lane += 4) {
        LaneWriter w0, w1, w2, w3;
        w0.out = scratch + lane * k::kMaxLaneBytes;
        w1.out = w0.out + k::kMaxLaneBytes;
        w2.out = w1.out + k::kMaxLaneBytes;
        w3.out = w2.out + k::kMaxLaneBytes;
        std::uint32_t i = lane;
        for (; i + 32 + 3 < count; i += 2 * k::kLanes) {
            w0.put2(pairs[symbols[i] | symbols[i + 32] << 8]);
            w1.put2(pairs[symbols[i + 1] | symbols[i + 33] << 8]);
            w2.put2(pairs[symbols[i + 2] | symbols[i + 34] << 8]);
            w3.put2(pairs[symbols[i + 3] | symbols[i + 35] << 8]);
        }
        for (; i + 3 < count; i += k::kLanes) {
            w0.put(packed[symbols[i]]);
            w1.put(packed[symbols[i + 1]]);
            w2.put(packed[symbols[i + 2]]);
            w3.put(packed[symbols[i + 3]]);
        }
        if (i < count) w0.put(packed[symbols[i]]);
        if (i + 1 < count) w1.put(packed[symbols[i + 1]]);
        if (i + 2 < count) w2.put(packed[symbols[i + 2]]);
        ends[lane] = w0.finish();
        ends[lane + 1] = w1.finish();
        ends[lane + 2] = w2.finish();
        ends[lane + 3] = w3.finish();
    }
    std::uint8_t *stream = record + k::kLanes;
    for (std::uint32_t lane = 0; lane < k::kLanes; ++lane) {
        const std::uint8_t *start = scratch + lane * k::kMaxLaneBytes;
        const auto bytes = static_cast<std::size_t>(ends[lane] - start);
        record[lane] = static_cast<std::uint8_t>(bytes);
        std::memcpy(stream, start, bytes);
        stream += bytes;
    }
    return stream;
}

}  // namespace

EncodePlan plan_encode(const void *data, std::uint64_t bytes, Dtype dtype,
                       const EncodeOptions &options) {
    EncodePlan plan;
    plan.dtype = dtype;
    plan.raw_bytes = bytes;
    const std::uint64_t elements = bytes / 2;
    if ((dtype != k::kBf16 && dtype != k::kF16) || bytes % 2 != 0 || elements == 0 ||
        elements > k::kMaxElements)
        return plan;
    const auto *p = static_cast<const std::uint8_t *>(data);
    // Small tensors on one thread: starting threads would cost more than they save.
    const unsigned threads = bytes < (1u << 20) ? 1 : thread_count(options.threads);

    // Histogram and checksum in one pass, a chunk at a time so that the checksum reads it
    // from L1. Ranges are multiples of the grain, so each covers whole 8-byte words; the
    // tail word (zero-padded) goes to the last range.
    std::vector<std::uint64_t> hists(static_cast<std::size_t>(threads) * 256, 0);
    std::vector<std::uint64_t> sums(threads, 0);
    std::atomic<unsigned> slot{0};
    parallel_for(elements, 1 << 16, threads, [&](std::uint64_t begin, std::uint64_t end) {
        const unsigned me = slot.fetch_add(1);
        std::uint64_t *hist = &hists[static_cast<std::size_t>(me) * 256];
        // Four histograms, so that a run of one symbol does not wait on its own increments;
        // 32-bit, emptied into `hist` every kFlush chunks, long before they could overflow.
        constexpr std::uint64_t kFlush = 256;
        std::uint32_t local[4][256] = {};
        std::uint8_t symbols[k::kChunkElems];
        std::uint64_t sum = 0;
        std::uint64_t chunk = 0;
        for (std::uint64_t at = begin; at < end; at += k::kChunkElems, ++chunk) {
            const auto count =
                static_cast<std::uint32_t>(std::min<std::uint64_t>(end - at, k::kChunkElems));
            split(dtype, p + 2 * at, count, symbols);
            std::uint32_t i = 0;
            for (; i + 4 <= count; i += 4) {
                local[0][symbols[i]]++;
                local[1][symbols[i + 1]]++;
                local[2][symbols[i + 2]]++;
                local[3][symbols[i + 3]]++;
            }
            for (; i < count; ++i) local[0][symbols[i]]++;
            for (std::uint64_t w = at / 4; w < (at + count) / 4; ++w) {
                std::uint64_t word;
                std::memcpy(&word, p + 8 * w, 8);
                sum += kernels::checksum_term(word, w);
            }
            if ((chunk + 1) % kFlush == 0 || at + count == end) {
                for (int s = 0; s < 256; ++s) {
                    hist[s] += std::uint64_t{local[0][s]} + local[1][s] + local[2][s] + local[3][s];
                    local[0][s] = local[1][s] = local[2][s] = local[3][s] = 0;
                }
            }
        }
        if (end == elements && elements % 4 != 0) {
            std::uint64_t word = 0;
            std::memcpy(&word, p + 8 * (elements / 4), bytes % 8);
            sum += kernels::checksum_term(word, elements / 4);
        }
        sums[me] = sum;
    });
    std::uint64_t hist[256] = {};
    for (unsigned t = 0; t < threads; ++t)
        for (int s = 0; s < 256; ++s) hist[s] += hists[static_cast<std::size_t>(t) * 256 + s];
    for (const std::uint64_t sum : sums) plan.checksum += sum;
    code_lengths(hist, plan.lengths);

    // Each chunk's size: its lane lengths, then each lane's bits rounded up to bytes.
    const std::uint64_t chunks = k::chunks_for(elements);
    plan.chunk_offsets.assign(chunks + 1, 0);
    parallel_for(chunks, 16, threads, [&](std::uint64_t begin, std::uint64_t end) {
        std::uint8_t symbols[k::kChunkElems];
        for (std::uint64_t c = begin; c < end; ++c) {
            const std::uint64_t first = c * k::kChunkElems;
            const std::uint32_t count =
                static_cast<std::uint32_t>(std::min<std::uint64_t>(elements - first, k::kChunkElems));
            split(dtype, p + 2 * first, count, symbols);
            std::uint32_t bits[k::kLanes] = {};
            std::uint32_t i = 0;
            for (; i + k::kLanes <= count; i += k::kLanes)
                for (std::uint32_t lane = 0; lane < k::kLanes; ++lane)
                    bits[lane] += plan.lengths[symbols[i + lane]];
            for (std::uint32_t lane = 0; i + lane < count; ++lane)
                bits[lane] += plan.lengths[symbols[i + lane]];
            std::uint64_t size = k::kLanes;
            for (const std::uint32_t b : bits) size += (b + 7) / 8;
            plan.chunk_offsets[c + 1] = size;
        }
    });
    for (std::uint64_t c = 0; c < chunks; ++c) plan.chunk_offsets[c + 1] += plan.chunk_offsets[c];
    plan.encoded_bytes = k::kHeaderBytes + 8 * (chunks + 1) + elements + plan.chunk_offsets[chunks];
    plan.pays = static_cast<double>(plan.encoded_bytes) <=
                options.max_ratio * static_cast<double>(bytes);
    return plan;
}

void write_encoded(const EncodePlan &plan, const void *data, void *out_bytes,
                   unsigned threads) {
    const auto *p = static_cast<const std::uint8_t *>(data);
    auto *out = static_cast<std::uint8_t *>(out_bytes);
    const std::uint64_t elements = plan.raw_bytes / 2;
    const std::uint64_t chunks = plan.chunk_offsets.size() - 1;
    const Dtype dtype = plan.dtype;
    threads = plan.raw_bytes < (1u << 20) ? 1 : thread_count(threads);

    std::memset(out, 0, k::kHeaderFixedBytes);
    store_le(out + k::kAtMagic, k::kMagic, 4);
    store_le(out + k::kAtVersion, k::kVersion, 2);
    out[k::kAtDtype] = dtype;
    out[k::kAtMaxBits] = k::kMaxCodeBits;
    store_le(out + k::kAtElements, elements, 8);
    store_le(out + k::kAtChunks, chunks, 8);
    store_le(out + k::kAtCodedBytes, plan.chunk_offsets[chunks], 8);
    store_le(out + k::kAtChecksum, plan.checksum, 8);
    std::memcpy(out + k::kAtLengths, plan.lengths, k::kSymbols);
    std::uint8_t *offsets = out + k::kHeaderBytes;
    for (std::uint64_t c = 0; c <= chunks; ++c) store_le(offsets + 8 * c, plan.chunk_offsets[c], 8);
    std::uint8_t *raw = offsets + 8 * (chunks + 1);
    std::uint8_t *coded = raw + elements;

    // One word per symbol: its code above its length, so a lane step does one lookup.
    std::uint16_t codes[k::kSymbols];
    canonical_codes(plan.lengths, codes);
    std::uint32_t packed[k::kSymbols];
    for (std::uint32_t s = 0; s < k::kSymbols; ++s)
        packed[s] = (static_cast<std::uint32_t>(codes[s]) << 4) | plan.lengths[s];
    // 256 KiB, of which only the pairs of symbols the tensor uses are filled (and read):
    // one per thread, kept, so that a thread encoding many small tensors faults it in once.
    thread_local std::unique_ptr<std::uint32_t[]> table;
    if (table == nullptr) table.reset(new std::uint32_t[1 << 16]);
    std::uint32_t *const pairs = table.get();  // the workers below read this thread's
    {
        std::uint32_t used[k::kSymbols], n = 0;
        for (std::uint32_t s = 0; s < k::kSymbols; ++s) {
            if (plan.lengths[s] != 0) used[n++] = s;
        }
        for (std::uint32_t a = 0; a < n; ++a) {
            for (std::uint32_t b = 0; b < n; ++b) {
                const std::uint32_t s1 = used[a], s2 = used[b];
                const std::uint32_t l1 = plan.lengths[s1], l2 = plan.lengths[s2];
                pairs[s1 | s2 << 8] =
                    ((static_cast<std::uint32_t>(codes[s1]) << l2 | codes[s2]) << 5) | (l1 + l2);
            }
        }
    }
    parallel_for(chunks, 16, threads, [&](std::uint64_t begin, std::uint64_t end) {
        std::uint8_t symbols[k::kChunkElems];
        std::uint8_t scratch[k::kLanes * k::kMaxLaneBytes];
        for (std::uint64_t c = begin; c < end; ++c) {
            const std::uint64_t first = c * k::kChunkElems;
            const std::uint32_t count =
                static_cast<std::uint32_t>(std::min<std::uint64_t>(elements - first, k::kChunkElems));
            split(dtype, p + 2 * first, count, symbols, raw + first);
            write_chunk(symbols, count, packed, pairs, scratch, coded + plan.chunk_offsets[c]);
        }
    });
}

std::vector<std::uint8_t> encode(const void *data, std::uint64_t bytes, Dtype dtype,
                                 const EncodeOptions &options) {
    const EncodePlan plan = plan_encode(data, bytes, dtype, options);
    if (!plan.pays) return {};
    std::vector<std::uint8_t> out(plan.encoded_bytes);
    write_encoded(plan, data, out.data(), options.threads);
    return out;
}

std::uint64_t decoded_bytes(const void *src, std::uint64_t src_bytes) {
    k::Layout layout;
    if (k::parse_layout(static_cast<const std::uint8_t *>(src), src_bytes, &layout) != k::kOk)
        return 0;
    return layout.elements * 2;
}

Status decode(const void *src_bytes_ptr, std::uint64_t src_bytes, void *dst,
              std::uint64_t dst_bytes, unsigned threads, bool check) {
    const auto *src = static_cast<const std::uint8_t *>(src_bytes_ptr);
    k::Layout l;
    std::vector<std::uint16_t> table(k::kTableSize);
    Status status = k::prepare(src, src_bytes, dst_bytes, &l, table.data());
    if (status != k::kOk) return status;

    // The core writes 16-bit elements: an odd destination gets them through a bounce buffer.
    std::vector<std::uint16_t> bounce;
    std::uint16_t *out = nullptr;
    if (reinterpret_cast<std::uintptr_t>(dst) % alignof(std::uint16_t) == 0) {
        out = static_cast<std::uint16_t *>(dst);
    } else {
        bounce.resize(l.elements);
        out = bounce.data();
    }
    std::atomic<std::uint32_t> first_error{k::kOk};
    threads = dst_bytes < (1u << 20) ? 1 : thread_count(threads);
    parallel_for(l.chunks, 16, threads, [&](std::uint64_t begin, std::uint64_t end) {
        const std::uint32_t s = k::decode_chunks_ref(src, l, table.data(), out, begin, end);
        std::uint32_t none = k::kOk;
        if (s != k::kOk) first_error.compare_exchange_strong(none, s);
    });
    status = static_cast<Status>(first_error.load());
    if (status != k::kOk) return status;
    if (!bounce.empty()) std::memcpy(dst, bounce.data(), dst_bytes);
    if (check && kernels::checksum_ref(dst, dst_bytes) != l.checksum) return k::kChecksumMismatch;
    return k::kOk;
}

const char *status_name(Status status) {
    switch (status) {
        case k::kOk: return "ok";
        case k::kTruncated: return "truncated container";
        case k::kBadMagic: return "not a ferry container (magic or version)";
        case k::kBadHeader: return "bad container header";
        case k::kBadCode: return "bad code lengths";
        case k::kBadChunkTable: return "bad chunk table";
        case k::kBadBits: return "corrupt coded bits";
        case k::kSizeMismatch: return "decoded size mismatch";
        case k::kChecksumMismatch: return "checksum mismatch after decode";
    }
    return "unknown codec status";
}

}  // namespace ferry::codec
