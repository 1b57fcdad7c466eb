#include "codec/codec.hpp"

#include <algorithm>
#include <atomic>
#include <cstring>
#include <memory>
#include <mutex>
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

// The threads to work on `bytes` with, `asked` (0: every hardware thread): one for a
// tensor under 1 MiB, where starting threads would cost more than they save.
unsigned threads_for(std::uint64_t bytes, unsigned asked) {
    if (bytes < (1u << 20)) return 1;
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

// Lanes in the scratch a chunk is coded into: room for a lane's longest stream and for
// the 8-byte store LaneWriter makes past its end.
constexpr std::uint32_t kLaneStride = k::kMaxLaneBytes + 8;

// One lane's bit stream being written, MSB first. Each append stores the pending bits (at
// most 7 + 48) as 8 bytes at `out` and moves past the whole bytes among them: no branch on
// when a byte fills, which the processor would mispredict as often as not.
struct LaneWriter {
    std::uint64_t acc = 0;  // the pending bits are the low `have`; higher bits are stale
    unsigned have = 0;      // under 8 between appends
    std::uint8_t *out = nullptr;

    void store() {
        const std::uint64_t word = __builtin_bswap64(acc << (64 - have));  // have >= 1
        std::memcpy(out, &word, 8);
        out += have >> 3;
        have &= 7;
    }
    // `entry` is a symbol's code << 4 | its length.
    void put(std::uint32_t entry) {
        acc = (acc << (entry & 0xF)) | (entry >> 4);
        have += entry & 0xF;
        store();
    }
    // `first` and `second` are each two symbols' codes, the first above the second, << 5 |
    // their lengths' sum: four symbols, 48 bits at most.
    void put4(std::uint32_t first, std::uint32_t second) {
        acc = (acc << (first & 0x1F)) | (first >> 5);
        acc = (acc << (second & 0x1F)) | (second >> 5);
        have += (first & 0x1F) + (second & 0x1F);
        store();
    }
    // The stream's end: a partial last byte is already stored, zero-padded.
    std::uint8_t *finish() const { return out + (have != 0); }
};

// Writes a chunk's record at `record` (its kLanes lane lengths, then the lanes' streams in
// lane order) from its `count` symbols. `packed[s]` is symbol s's code << 4 | its length;
// `pairs[a | b << 8]` is the code of a followed by b, << 5 | their lengths' sum, for the
// symbols the tensor uses: a lane codes four of its symbols per step, with two lookups and
// one store. Four lanes are coded side by side into `scratch` (kLanes x kLaneStride), each
// lane's stream a chain of shifts that would otherwise wait on the one before; the streams
// are then moved together behind the lane lengths. Returns the record's end.
std::uint8_t *write_chunk(const std::uint8_t *symbols, std::uint32_t count,
                          const std::uint32_t *packed, const std::uint32_t *pairs,
                          std::uint8_t *scratch, std::uint8_t *record) {
    std::uint8_t *ends[k::kLanes];
    for (std::uint32_t lane = 0; lane < k::kLanes; lane += 4) {
        LaneWriter w0, w1, w2, w3;
        w0.out = scratch + lane * kLaneStride;
        w1.out = w0.out + kLaneStride;
        w2.out = w1.out + kLaneStride;
        w3.out = w2.out + kLaneStride;
        std::uint32_t i = lane;
        for (; i + 3 * k::kLanes + 3 < count; i += 4 * k::kLanes) {
            // Through a pointer and size_t indices, so that each symbol is one load at a
            // constant displacement: four writers leave few registers for index arithmetic.
            const std::uint8_t *at = symbols + i;
            auto pair = [at, pairs](std::size_t j) {
                return pairs[std::size_t{at[j]} | std::size_t{at[j + k::kLanes]} << 8];
            };
            constexpr std::size_t kNext = 2 * k::kLanes;
            w0.put4(pair(0), pair(kNext));
            w1.put4(pair(1), pair(1 + kNext));
            w2.put4(pair(2), pair(2 + kNext));
            w3.put4(pair(3), pair(3 + kNext));
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
        const std::uint8_t *start = scratch + lane * kLaneStride;
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
    const unsigned threads = threads_for(bytes, options.threads);
    const std::uint64_t chunks = k::chunks_for(elements);
    const std::uint64_t blocks = (chunks + kBlockChunks - 1) / kBlockChunks;
    constexpr std::uint64_t kBlockElems = kBlockChunks * k::kChunkElems;

    // The histogram of each block, kept for its bound.
    std::vector<std::uint32_t> block_hists(blocks * 256);
    parallel_for(elements, kBlockElems, threads, [&](std::uint64_t begin, std::uint64_t end) {
        // Four histograms, so that a run of one symbol does not wait on its own increments.
        std::uint32_t local[4][256] = {};
        std::uint8_t symbols[k::kChunkElems];
        for (std::uint64_t block_at = begin; block_at < end; block_at += kBlockElems) {
            const std::uint64_t block_end = std::min(end, block_at + kBlockElems);
            for (std::uint64_t at = block_at; at < block_end; at += k::kChunkElems) {
                const auto count = static_cast<std::uint32_t>(
                    std::min<std::uint64_t>(block_end - at, k::kChunkElems));
                split(dtype, p + 2 * at, count, symbols);
                std::uint32_t i = 0;
                for (; i + 4 <= count; i += 4) {
                    local[0][symbols[i]]++;
                    local[1][symbols[i + 1]]++;
                    local[2][symbols[i + 2]]++;
                    local[3][symbols[i + 3]]++;
                }
                for (; i < count; ++i) local[0][symbols[i]]++;
            }
            std::uint32_t *hist = &block_hists[block_at / kBlockElems * 256];
            for (int s = 0; s < 256; ++s) {
                hist[s] = local[0][s] + local[1][s] + local[2][s] + local[3][s];
                local[0][s] = local[1][s] = local[2][s] = local[3][s] = 0;
            }
        }
    });
    std::uint64_t hist[256] = {};
    for (std::uint64_t b = 0; b < blocks; ++b)
        for (int s = 0; s < 256; ++s) hist[s] += block_hists[b * 256 + s];
    code_lengths(hist, plan.lengths);

    // Each block's bound: its coded bits, and per chunk its lane lengths and at most 7 bits
    // of padding per lane.
    plan.block_bounds.resize(blocks);
    std::uint64_t coded = 0;
    for (std::uint64_t b = 0; b < blocks; ++b) {
        std::uint64_t bits = 0;
        for (int s = 0; s < 256; ++s) bits += std::uint64_t{block_hists[b * 256 + s]} * plan.lengths[s];
        const std::uint64_t block_chunks = std::min(kBlockChunks, chunks - b * kBlockChunks);
        plan.block_bounds[b] = block_chunks * k::kLanes + (bits + 7 * k::kLanes * block_chunks) / 8;
        coded += plan.block_bounds[b];
    }
    plan.max_encoded_bytes = k::kHeaderBytes + 8 * (chunks + 1) + elements + coded;
    plan.pays = static_cast<double>(plan.max_encoded_bytes) <=
                options.max_ratio * static_cast<double>(bytes);
    return plan;
}

std::uint64_t write_encoded(const EncodePlan &plan, const void *data, void *out_bytes,
                            unsigned threads) {
    const auto *p = static_cast<const std::uint8_t *>(data);
    auto *out = static_cast<std::uint8_t *>(out_bytes);
    const std::uint64_t elements = plan.raw_bytes / 2;
    const std::uint64_t chunks = k::chunks_for(elements);
    const Dtype dtype = plan.dtype;
    threads = threads_for(plan.raw_bytes, threads);
    std::uint8_t *const raw = out + k::kHeaderBytes + 8 * (chunks + 1);
    std::uint8_t *const coded = raw + elements;

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

    // Each range of blocks is coded from where the bounds of the blocks before it end;
    // then the ranges are moved together, their chunk offsets with them. The checksum is
    // summed here, of each chunk while it is in L1, rather than in plan_encode's pass,
    // where its multiplies waited on the histogram's loads and stores. A range covers whole
    // 8-byte words; the tail word (zero-padded) goes to the last one.
    std::vector<std::uint64_t> bound_at(plan.block_bounds.size() + 1, 0);
    for (std::size_t b = 0; b < plan.block_bounds.size(); ++b)
        bound_at[b + 1] = bound_at[b] + plan.block_bounds[b];
    struct Range {
        std::uint64_t first_chunk, start, end;  // start and end: in the coded part
        std::uint64_t checksum;                 // of the range's elements
    };
    std::vector<Range> ranges;
    ranges.reserve(threads);  // one per part at most: push_back below cannot throw
    std::mutex ranges_mutex;
    std::vector<std::uint64_t> offsets(chunks + 1);
    parallel_for(chunks, kBlockChunks, threads, [&](std::uint64_t begin, std::uint64_t end) {
        std::uint8_t symbols[k::kChunkElems];
        std::uint8_t scratch[k::kLanes * kLaneStride];
        const std::uint64_t start = bound_at[begin / kBlockChunks];
        std::uint8_t *record = coded + start;
        std::uint64_t sum = 0;
        for (std::uint64_t c = begin; c < end; ++c) {
            const std::uint64_t first = c * k::kChunkElems;
            const std::uint32_t count =
                static_cast<std::uint32_t>(std::min<std::uint64_t>(elements - first, k::kChunkElems));
            split(dtype, p + 2 * first, count, symbols, raw + first);
            for (std::uint64_t w = first / 4; w < (first + count) / 4; ++w) {
                std::uint64_t word;
                std::memcpy(&word, p + 8 * w, 8);
                sum += kernels::checksum_term(word, w);
            }
            offsets[c] = static_cast<std::uint64_t>(record - coded);
            record = write_chunk(symbols, count, packed, pairs, scratch, record);
        }
        if (end == chunks && elements % 4 != 0) {
            std::uint64_t word = 0;
            std::memcpy(&word, p + 8 * (elements / 4), plan.raw_bytes % 8);
            sum += kernels::checksum_term(word, elements / 4);
        }
        const Range range{begin, start, static_cast<std::uint64_t>(record - coded), sum};
        std::lock_guard<std::mutex> lock(ranges_mutex);
        ranges.push_back(range);
    });
    std::sort(ranges.begin(), ranges.end(),
              [](const Range &a, const Range &b) { return a.first_chunk < b.first_chunk; });
    std::uint64_t coded_bytes = 0, checksum = 0;
    for (std::size_t r = 0; r < ranges.size(); ++r) {
        const Range &range = ranges[r];
        checksum += range.checksum;
        const std::uint64_t shift = range.start - coded_bytes;
        if (shift != 0) {
            std::memmove(coded + coded_bytes, coded + range.start, range.end - range.start);
            const std::uint64_t last = r + 1 < ranges.size() ? ranges[r + 1].first_chunk : chunks;
            for (std::uint64_t c = range.first_chunk; c < last; ++c) offsets[c] -= shift;
        }
        coded_bytes += range.end - range.start;
    }
    offsets[chunks] = coded_bytes;

    std::memset(out, 0, k::kHeaderFixedBytes);
    store_le(out + k::kAtMagic, k::kMagic, 4);
    store_le(out + k::kAtVersion, k::kVersion, 2);
    out[k::kAtDtype] = dtype;
    out[k::kAtMaxBits] = k::kMaxCodeBits;
    store_le(out + k::kAtElements, elements, 8);
    store_le(out + k::kAtChunks, chunks, 8);
    store_le(out + k::kAtCodedBytes, coded_bytes, 8);
    store_le(out + k::kAtChecksum, checksum, 8);
    std::memcpy(out + k::kAtLengths, plan.lengths, k::kSymbols);
    std::uint8_t *const table_at = out + k::kHeaderBytes;
    for (std::uint64_t c = 0; c <= chunks; ++c) store_le(table_at + 8 * c, offsets[c], 8);
    return static_cast<std::uint64_t>(coded + coded_bytes - out);
}

std::vector<std::uint8_t> encode(const void *data, std::uint64_t bytes, Dtype dtype,
                                 const EncodeOptions &options) {
    const EncodePlan plan = plan_encode(data, bytes, dtype, options);
    if (!plan.pays) return {};
    std::vector<std::uint8_t> out(plan.max_encoded_bytes);
    out.resize(write_encoded(plan, data, out.data(), options.threads));
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
    threads = threads_for(dst_bytes, threads);
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
