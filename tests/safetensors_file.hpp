// Safetensors files for tests: written here byte by byte (8-byte little-endian header
// length, the JSON header padded with spaces to 8 bytes, then the tensors' bytes in
// order), and scratch folders that remove themselves.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace ferry_test {

struct FileEntry {
    std::string name;
    std::string dtype;                 // "F32", "BF16", "U8", ...
    std::vector<std::int64_t> shape;
    std::vector<unsigned char> bytes;  // shape x dtype's size of them
};

// Writes `entries` in order; returns the offset of each entry's first byte in the file.
std::vector<std::uint64_t> write_safetensors(const std::string &path,
                                             const std::vector<FileEntry> &entries);

// `count` bytes, the same for the same seed.
std::vector<unsigned char> random_bytes(std::size_t count, std::uint64_t seed);

// A fresh folder under `parent` (default /tmp), removed with its files at destruction.
class ScratchDir {
   public:
    explicit ScratchDir(const std::string &parent = "/tmp");
    ~ScratchDir();
    ScratchDir(const ScratchDir &) = delete;
    ScratchDir &operator=(const ScratchDir &) = delete;
    const std::string &path() const { return path_; }
    std::string file(const std::string &name) const { return path_ + "/" + name; }

   private:
    std::string path_;
};

}  // namespace ferry_test
