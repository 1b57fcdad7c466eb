#include "cuda_check.hpp"
#include "decode.hpp"
#include "decode_core.hpp"

namespace ferry::kernels {
namespace {

using namespace codec;

constexpr unsigned kThreads = kDecodeWarps * 32;
constexpr unsigned kFullMask = 0xFFFFFFFFu;

__device__ void report(DecodeResult *result, std::uint32_t status, std::uint32_t job) {
    if (atomicCAS(&result->status, 0u, status) == 0u) result->job = job;
}

// Block b belongs to the last job whose first_block <= b; within it, a coded job's block
// decodes kDecodeChunksPerBlock chunks (warp w: chunks w, w + 8, ...) and a raw job's block
// copies kDecodeRawBlockBytes bytes.
__global__ void decode_kernel(const DecodeJob *jobs, std::uint32_t count,
                              const std::uint8_t *image, std::uint8_t *slot,
                              DecodeResult *result) {
    __shared__ std::uint16_t table[kTableSize];
    __shared__ CodeBook book;
    __shared__ Layout layout;
    __shared__ std::uint32_t job_index;
    __shared__ std::uint32_t block_ok;
    const std::uint64_t block = blockIdx.x;
    if (threadIdx.x == 0) {
        std::uint32_t lo = 0, hi = count;
        while (hi - lo > 1) {
            const std::uint32_t mid = lo + (hi - lo) / 2;
            if (jobs[mid].first_block <= block) lo = mid; else hi = mid;
        }
        job_index = lo;
        const DecodeJob &job = jobs[lo];
        std::uint32_t status = kOk;
        if (job.coded != 0) {
            status = parse_layout(image + job.src_offset, job.src_bytes, &layout);
            if (status == kOk && layout.elements * 2 != job.dst_bytes) status = kSizeMismatch;
            if (status == kOk)
                status = build_codebook(image + job.src_offset + kAtLengths, &book);
        } else if (job.src_bytes != job.dst_bytes) {
            status = kSizeMismatch;
        }
        // Every block of a job finds the same header fault; its first block reports it.
        if (status != kOk && block == job.first_block) report(result, status, lo);
        block_ok = status == kOk;
    }
    __syncthreads();
    if (block_ok == 0) return;
    const DecodeJob job = jobs[job_index];
    const std::uint8_t *const src = image + job.src_offset;
    std::uint8_t *const dst = slot + job.dst_offset;
    const std::uint64_t local = block - job.first_block;
    if (job.coded == 0) {
        const std::uint64_t begin = local * kDecodeRawBlockBytes;
        const std::uint64_t left = job.dst_bytes - begin;
        const std::uint64_t end = begin + (left < kDecodeRawBlockBytes ? left : kDecodeRawBlockBytes);
        const bool aligned = (reinterpret_cast<std::uintptr_t>(src) |
                              reinterpret_cast<std::uintptr_t>(dst)) % 16 == 0;
        std::uint64_t at = begin;
        if (aligned) {
            const auto *s = reinterpret_cast<const uint4 *>(src);
            auto *d = reinterpret_cast<uint4 *>(dst);
            for (std::uint64_t i = begin / 16 + threadIdx.x; i < end / 16; i += blockDim.x)
                d[i] = s[i];
            at = end / 16 * 16;
        }
        for (std::uint64_t i = at + threadIdx.x; i < end; i += blockDim.x) dst[i] = src[i];
        return;
    }
    for (unsigned i = threadIdx.x; i < kTableSize; i += blockDim.x) table[i] = table_entry(book, i);
    __syncthreads();
    const unsigned warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    for (unsigned k = warp; k < kDecodeChunksPerBlock; k += kDecodeWarps) {
        const std::uint64_t chunk = local * kDecodeChunksPerBlock + k;
        if (chunk >= layout.chunks) break;
        std::uint64_t start = 0, end = 0;
        std::uint32_t status = chunk_record(src, layout, chunk, &start, &end);
        const std::uint32_t len = status == kOk ? src[start + lane] : 0;
        std::uint32_t inclusive = len;
        for (unsigned d = 1; d < 32; d <<= 1) {
            const std::uint32_t v = __shfl_up_sync(kFullMask, inclusive, d);
            if (lane >= d) inclusive += v;
        }
        const std::uint32_t total = __shfl_sync(kFullMask, inclusive, 31);
        if (status == kOk && (len > kMaxLaneBytes || kLanes + total != end - start))
            status = kBadChunkTable;
        if (__any_sync(kFullMask, status != kOk)) {
            if (lane == 0) report(result, kBadChunkTable, job_index);
            continue;
        }
        const std::uint64_t first = chunk * kChunkElems + lane;
        status = decode_lane(src + start + kLanes + (inclusive - len), len, table,
                             src + layout.raw_at + first,
                             reinterpret_cast<std::uint16_t *>(dst) + first,
                             lane_elements(layout, chunk, lane), layout.dtype);
        if (status != kOk) report(result, status, job_index);
    }
}

}  // namespace

void launch_decode(const DecodeJob *jobs_device, std::uint32_t count,
                   std::uint64_t total_blocks, const std::uint8_t *src, std::uint8_t *dst,
                   DecodeResult *result, void *stream) {
    const auto cuda_stream = static_cast<cudaStream_t>(stream);
    FERRY_CUDA_TRY(cudaMemsetAsync(result, 0, sizeof *result, cuda_stream));
    if (count == 0 || total_blocks == 0) return;
    FERRY_EXPECTS(total_blocks < (1ull << 31), FERRY_ERROR_INVALID_SIZE,
                  "launch_decode: " + std::to_string(total_blocks) + " blocks are too many");
    launch_kernel("decode_kernel launch", decode_kernel, static_cast<unsigned>(total_blocks),
                  kThreads, cuda_stream, jobs_device, count, src, dst, result);
}

}  // namespace ferry::kernels
