// load/: safetensors weights: headers parsed and checked, tensors read into memory.
// The reader: file byte ranges into memory with positional reads (pread), on a small pool
// of threads, one job per tensor, large requests; dtype conversion in the same pass
// (convert.hpp), through each thread's bounded buffer, never a second model-sized one.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <vector>

#include "ferry/ferry.h"
#include "load/weights.hpp"

namespace ferry::load {

// One tensor's bytes from a file to memory: `bytes` file bytes of dtype `from` at
// `offset`, written to `dst` as dtype `to` (from == to, or both F32/BF16/F16).
struct ReadJob {
    WeightFile *file = nullptr;
    std::uint64_t offset = 0;
    std::uint64_t bytes = 0;
    ferry_dtype from = FERRY_DTYPE_UNKNOWN;
    ferry_dtype to = FERRY_DTYPE_UNKNOWN;
    std::byte *dst = nullptr;
};

struct ReadOptions {
    std::uint32_t threads = 0;  // 0: up to 4, by cores
    bool direct = false;        // O_DIRECT where the file system allows it
    // Called on the calling thread as bytes complete (file bytes done, file bytes total).
    std::function<void(std::uint64_t, std::uint64_t)> progress;
};

struct ReadResult {
    std::uint64_t bytes_read = 0;    // file bytes
    std::uint64_t direct_bytes = 0;  // of which with O_DIRECT
    std::uint32_t threads = 0;
};

// Runs every job; returns when all are done. On the first failure the rest are skipped
// and its Error is rethrown on the calling thread: FERRY_ERROR_IO (read error, short
// read: the message names the file and the offset), FERRY_ERROR_FILE_CHANGED (each file
// is checked once its last job is done).
ReadResult read_all(const std::vector<ReadJob> &jobs, const ReadOptions &options);

// One job on the calling thread (the disk tier at onload), with `buffer` of at least
// kChunkBytes as its scratch (for conversion and O_DIRECT alignment). The file is checked
// for changes first.
constexpr std::size_t kChunkBytes = 4u << 20;
void read_one(const ReadJob &job, bool direct, std::byte *buffer);

}  // namespace ferry::load
