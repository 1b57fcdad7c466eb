#include <cub/block/block_reduce.cuh>

#include "checksum.hpp"
#include "checksum_ref.hpp"
#include "cuda_check.hpp"

namespace ferry::kernels {
namespace {

constexpr int kThreads = 256;
// Enough resident threads for any current GPU; each walks the range grid-stride.
constexpr std::uint64_t kMaxBlocks = 1024;

using Result = unsigned long long;  // the type atomicAdd takes
static_assert(sizeof(Result) == sizeof(std::uint64_t), "atomicAdd on 64-bit words");

// Word `index` of the range as checksum_ref() reads it: little-endian, zero-padded.
__device__ std::uint64_t load_word(const unsigned char *data, std::uint64_t bytes,
                                   std::uint64_t index, bool aligned) {
    const std::uint64_t offset = index * 8;
    if (aligned && offset + 8 <= bytes)
        return reinterpret_cast<const std::uint64_t *>(data)[index];
    const std::uint64_t count = bytes - offset < 8 ? bytes - offset : 8;
    std::uint64_t word = 0;
    for (std::uint64_t b = 0; b < count; ++b)
        word |= static_cast<std::uint64_t>(data[offset + b]) << (8 * b);
    return word;
}

__global__ void zero_kernel(Result *result) { *result = 0; }

// Each block sums its terms with CUB and adds the block's sum to *result: addition modulo
// 2^64 is exact, so the order in which blocks land does not matter.
__global__ void checksum_kernel(const unsigned char *data, std::uint64_t bytes,
                                Result *result) {
    using BlockReduce = cub::BlockReduce<std::uint64_t, kThreads>;
    __shared__ typename BlockReduce::TempStorage temp;
    const bool aligned = reinterpret_cast<std::uintptr_t>(data) % 8 == 0;
    const std::uint64_t words = (bytes + 7) / 8;
    const std::uint64_t stride = static_cast<std::uint64_t>(gridDim.x) * blockDim.x;
    std::uint64_t sum = 0;
    for (std::uint64_t i = static_cast<std::uint64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
         i < words; i += stride)
        sum += checksum_term(load_word(data, bytes, i, aligned), i);
    const std::uint64_t block_sum = BlockReduce(temp).Sum(sum);
    if (threadIdx.x == 0) atomicAdd(result, static_cast<Result>(block_sum));
}

}  // namespace

void launch_checksum(const void *data, std::uint64_t bytes, std::uint64_t *result,
                     void *stream) {
    const auto cuda_stream = static_cast<cudaStream_t>(stream);
    auto *out = reinterpret_cast<Result *>(result);
    launch_kernel("checksum zero_kernel launch", zero_kernel, 1, 1, cuda_stream, out);
    if (bytes == 0) return;
    const std::uint64_t words = (bytes + 7) / 8;
    const std::uint64_t wanted = (words + kThreads - 1) / kThreads;
    const auto blocks = static_cast<unsigned>(wanted < kMaxBlocks ? wanted : kMaxBlocks);
    launch_kernel("checksum_kernel launch", checksum_kernel, blocks, kThreads, cuda_stream,
                  static_cast<const unsigned char *>(data), bytes, out);
}

}  // namespace ferry::kernels
