// The decoder's CPU reference: decode_core.hpp's functions driven chunk by chunk, lane by
// lane, as decode.cu's warps drive them. The sim backend decodes with it, and so does
// codec::decode (runtime/codec/), which runs it on several threads. Needs no CUDA.
#pragma once

#include <cstdint>
#include <cstring>

#include "decode.hpp"
#include "decode_core.hpp"

namespace ferry::kernels::codec {

// What every decoder does before its chunks: the header checked against the container's
// and the destination's sizes, the code book, the 4096-entry decode table.
inline Status prepare(const std::uint8_t *src, std::uint64_t src_bytes, std::uint64_t dst_bytes,
                      Layout *layout, std::uint16_t *table) {
    Status status = parse_layout(src, src_bytes, layout);
    if (status != kOk) return status;
    if (layout->elements * 2 != dst_bytes) return kSizeMismatch;
    CodeBook book;
    status = build_codebook(src + kAtLengths, &book);
    if (status != kOk) return status;
    for (std::uint32_t i = 0; i < kTableSize; ++i) table[i] = table_entry(book, i);
    return kOk;
}

// Chunks [begin, end) of the container at `src` into `out` (2-byte aligned, the whole
// tensor's elements). Stops at the first chunk it cannot trust, which it leaves unwritten.
inline Status decode_chunks_ref(const std::uint8_t *src, const Layout &l,
                                const std::uint16_t *table, std::uint16_t *out,
                                std::uint64_t begin, std::uint64_t end) {
    for (std::uint64_t c = begin; c < end; ++c) {
        std::uint64_t start = 0, stop = 0;
        Status status = chunk_record(src, l, c, &start, &stop);
        if (status != kOk) return status;
        std::uint64_t total = 0;
        for (std::uint32_t lane = 0; lane < kLanes; ++lane) {
            if (src[start + lane] > kMaxLaneBytes) return kBadChunkTable;
            total += src[start + lane];
        }
        if (kLanes + total != stop - start) return kBadChunkTable;
        std::uint64_t at = start + kLanes;
        for (std::uint32_t lane = 0; lane < kLanes; ++lane) {
            const std::uint64_t e = c * kChunkElems + lane;
            const std::uint32_t len = src[start + lane];
            status = decode_lane(src + at, len, table, src + l.raw_at + e, out + e,
                                 lane_elements(l, c, lane), l.dtype);
            if (status != kOk) return status;
            at += len;
        }
    }
    return kOk;
}

// What launch_decode does, on the calling thread: the `count` jobs from the image at
// `image` into the slot at `slot` (2-byte aligned). The first failing job's status and
// index go to *result (zeroed first), and decoding goes on with the next job, as the
// kernel's other blocks do.
inline void decode_jobs_ref(const DecodeJob *jobs, std::uint32_t count,
                            const std::uint8_t *image, std::uint8_t *slot,
                            DecodeResult *result) {
    result->status = kOk;
    result->job = 0;
    std::uint16_t table[kTableSize];
    for (std::uint32_t i = 0; i < count; ++i) {
        const DecodeJob &job = jobs[i];
        Status status = kOk;
        if (job.coded == 0) {
            if (job.src_bytes == job.dst_bytes)
                std::memcpy(slot + job.dst_offset, image + job.src_offset, job.dst_bytes);
            else
                status = kSizeMismatch;
        } else {
            Layout layout;
            status = prepare(image + job.src_offset, job.src_bytes, job.dst_bytes, &layout, table);
            if (status == kOk)
                status = decode_chunks_ref(image + job.src_offset, layout, table,
                                           reinterpret_cast<std::uint16_t *>(slot + job.dst_offset),
                                           0, layout.chunks);
        }
        if (status != kOk && result->status == kOk) {
            result->status = status;
            result->job = i;
        }
    }
}

}  // namespace ferry::kernels::codec
