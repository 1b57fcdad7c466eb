// The decode kernel: a group's compressed image, already in device memory, decoded into
// its slot on a stream (decode_core.hpp holds the format and the code it shares with the
// CPU reference). A plain C++ header, so that code compiled without nvcc can launch it.
#pragma once

#include <cstdint>

#include "decode_core.hpp"

namespace ferry::kernels {

// One piece of an image: `src_bytes` bytes at src_offset of the compressed image become
// `dst_bytes` bytes at dst_offset of the slot. Coded pieces hold one container
// (decode_core.hpp); raw pieces are copied as they are (src_bytes == dst_bytes). Offsets,
// so that one table serves every slot a group streams into; dst_offset is even.
struct DecodeJob {
    std::uint64_t src_offset;
    std::uint64_t src_bytes;
    std::uint64_t dst_offset;
    std::uint64_t dst_bytes;
    std::uint64_t first_block;  // the kernel's first block for it: see decode_blocks
    std::uint32_t coded;        // 1: a container; 0: a raw copy
    std::uint32_t reserved;
};

// What the kernel found wrong: the first failing job's index and its codec::Status
// (0: none). Device memory, zeroed by launch_decode before the kernel runs.
struct DecodeResult {
    std::uint32_t status;
    std::uint32_t job;
};

// The kernel's blocks: 8 warps; each warp decodes 4 chunks, or each block copies 128 KiB.
constexpr std::uint32_t kDecodeWarps = 8;
constexpr std::uint32_t kDecodeChunksPerBlock = kDecodeWarps * 4;
constexpr std::uint64_t kDecodeRawBlockBytes = 128 * 1024;

// Blocks the kernel needs for `job`: its first_block is the sum over the jobs before it.
inline std::uint64_t decode_blocks(const DecodeJob &job) {
    if (job.coded == 0) return (job.dst_bytes + kDecodeRawBlockBytes - 1) / kDecodeRawBlockBytes;
    const std::uint64_t chunks = codec::chunks_for(job.dst_bytes / 2);
    return (chunks + kDecodeChunksPerBlock - 1) / kDecodeChunksPerBlock;
}

// Sets each job's first_block and returns the blocks of all `count` jobs.
inline std::uint64_t assign_blocks(DecodeJob *jobs, std::uint32_t count) {
    std::uint64_t blocks = 0;
    for (std::uint32_t i = 0; i < count; ++i) {
        jobs[i].first_block = blocks;
        blocks += decode_blocks(jobs[i]);
    }
    return blocks;
}

// Enqueues on `stream` (a cudaStream_t) the decode of the `count` jobs whose table is at
// `jobs_device` (device memory, from assign_blocks, total_blocks its result), from the
// image at `src` into the slot at `dst` (both device memory), and writes what it found
// into *result (device memory). The caller has checked that every job lies inside the
// image and the slot; a corrupt container then never makes the kernel read or write
// outside its job's ranges: the chunks it cannot trust are left unwritten and *result
// names the job. Returns without waiting; throws ferry::Error(FERRY_ERROR_DEVICE) when a
// launch fails.
void launch_decode(const DecodeJob *jobs_device, std::uint32_t count,
                   std::uint64_t total_blocks, const std::uint8_t *src, std::uint8_t *dst,
                   DecodeResult *result, void *stream);

}  // namespace ferry::kernels
