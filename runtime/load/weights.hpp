// load/: safetensors weights: headers parsed and checked, tensors read into memory.
// A set of safetensors files (one file, or the shards of an index), opened and checked
// once: every header is parsed (nlohmann-json) and every offset, shape and dtype checked
// against its file before a byte of tensor data is read. Immutable once opened; shared
// (shared_ptr) by the ferry_weights handle and by every runtime reading from it at onload.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "ferry/ferry.h"

namespace ferry::load {

// Largest header accepted: real headers are kilobytes to a few MiB (tens of thousands of
// tensors); a length past this is treated as a corrupt file, not allocated.
constexpr std::uint64_t kMaxHeaderBytes = 100ull << 20;

// One open file. Its identity (device, inode, size, mtime) is taken at open; a read that
// finds it changed, or the path now naming another file, throws FERRY_ERROR_FILE_CHANGED.
class WeightFile {
   public:
    // Throws FERRY_ERROR_IO (with errno) when the file cannot be opened or stat'ed.
    explicit WeightFile(std::string path);
    ~WeightFile();
    WeightFile(const WeightFile &) = delete;
    WeightFile &operator=(const WeightFile &) = delete;

    const std::string &path() const { return path_; }
    int fd() const { return fd_; }
    // A second descriptor opened with O_DIRECT, or -1 where the file system refuses it.
    // Opened on first use; thread-safe (reader threads and runtimes share the file).
    int direct_fd();
    std::uint64_t size() const { return size_; }
    // Throws FERRY_ERROR_FILE_CHANGED when the open file's size or mtime changed, or the
    // path now names another file.
    void check_unchanged() const;

   private:
    std::string path_;
    int fd_ = -1;
    std::mutex direct_mutex_;  // guards direct_fd_
    int direct_fd_ = -2;  // -2: not tried yet
    std::uint64_t size_ = 0;
    dev_t dev_ = 0;
    ino_t ino_ = 0;
    std::int64_t mtime_ns_ = 0;
};

// One tensor of the files.
struct FileTensor {
    std::string name;
    std::uint32_t file = 0;           // index into WeightSet::files()
    ferry_dtype dtype = FERRY_DTYPE_UNKNOWN;  // UNKNOWN: a safetensors dtype without an enum
    std::string dtype_name;           // as in the header: "BF16"
    std::uint32_t element_bytes = 0;  // 0 for the sub-byte F4, F6_E2M3, F6_E3M2
    std::vector<std::int64_t> shape;
    std::uint64_t bytes = 0;
    std::uint64_t offset = 0;         // of its first byte, from the start of the file
};

// A parsed header of one file: its tensors in header order, checked. Pure: no I/O, so
// that the fuzz target drives it directly.
struct Header {
    std::uint64_t data_start = 0;     // 8 + header length
    std::vector<FileTensor> tensors;  // file index 0, offsets absolute
};

// Parses the header of a file of `file_bytes` bytes whose first `bytes.size()` bytes are
// given (at least the 8-byte length and the header itself; more is ignored). `file`
// names the file in messages. Throws FERRY_ERROR_FILE_TRUNCATED (header length past the
// end, data past the end), FERRY_ERROR_FILE_FORMAT (not UTF-8, not JSON, not an object
// of tensor entries, header longer than kMaxHeaderBytes, unknown dtype, a shape that is
// not non-negative integers or has more than FERRY_MAX_DIMS dims, data_offsets out of
// range, overlapping, leaving holes or unordered against the data's size, shape x dtype
// not equal to the byte range, a duplicate name).
Header parse_header(const std::string &file, const std::byte *bytes, std::size_t size,
                    std::uint64_t file_bytes);

// The header length a file of `file_bytes` bytes starts with (its first 8 bytes), checked:
// FERRY_ERROR_FILE_TRUNCATED when shorter than 8 bytes or the header runs past the end,
// FERRY_ERROR_FILE_FORMAT when over kMaxHeaderBytes.
std::uint64_t header_length(const std::string &file, const std::byte *first8,
                            std::uint64_t file_bytes);

// The shard files an index (*.safetensors.index.json) names, relative to its folder, in
// first-seen order, and which shard holds each tensor. Pure, for the fuzz target.
// Throws FERRY_ERROR_FILE_FORMAT (not JSON, no "weight_map" object, a shard name that is
// not a plain file name in the folder: empty, absolute, or with "/" or "..").
struct Index {
    std::vector<std::string> shards;
    std::vector<std::pair<std::string, std::uint32_t>> weight_map;  // tensor -> shard
};
Index parse_index(const std::string &file, const std::string &text);

class WeightSet {
   public:
    // Opens a .safetensors file, an index, or a folder (model.safetensors[.index.json],
    // diffusion_pytorch_model.safetensors[.index.json]). Throws FERRY_ERROR_IO (cannot
    // open, a missing shard, a folder with none of those files), the errors of
    // parse_header and parse_index, and FERRY_ERROR_FILE_FORMAT for a name in two files,
    // or an index whose weight_map disagrees with the shards' headers.
    static std::shared_ptr<WeightSet> open(const std::string &path);

    const std::string &path() const { return path_; }
    const std::vector<std::unique_ptr<WeightFile>> &files() const { return files_; }
    WeightFile &file(std::uint32_t index) const { return *files_[index]; }
    // Sorted by name.
    const std::vector<FileTensor> &tensors() const { return tensors_; }
    // nullptr when no tensor has that name.
    const FileTensor *find(const std::string &name) const;

   private:
    std::string path_;
    std::vector<std::unique_ptr<WeightFile>> files_;
    std::vector<FileTensor> tensors_;
};

}  // namespace ferry::load
