#include "safetensors_file.hpp"

#include <dirent.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <random>
#include <stdexcept>

namespace ferry_test {

std::vector<std::uint64_t> write_safetensors(const std::string &path,
                                             const std::vector<FileEntry> &entries) {
    std::string header = "{";
    std::uint64_t at = 0;
    for (std::size_t i = 0; i < entries.size(); ++i) {
        const FileEntry &e = entries[i];
        if (i > 0) header += ",";
        header += "\"" + e.name + "\":{\"dtype\":\"" + e.dtype + "\",\"shape\":[";
        for (std::size_t d = 0; d < e.shape.size(); ++d) {
            header += (d > 0 ? "," : "") + std::to_string(e.shape[d]);
        }
        header += "],\"data_offsets\":[" + std::to_string(at) + "," +
                  std::to_string(at + e.bytes.size()) + "]}";
        at += e.bytes.size();
    }
    header += "}";
    while (header.size() % 8 != 0) header += ' ';
    std::FILE *file = std::fopen(path.c_str(), "wb");
    if (file == nullptr) throw std::runtime_error("cannot write " + path);
    const std::uint64_t length = header.size();
    unsigned char prefix[8];
    for (int b = 0; b < 8; ++b) prefix[b] = static_cast<unsigned char>(length >> (8 * b));
    std::fwrite(prefix, 1, 8, file);
    std::fwrite(header.data(), 1, header.size(), file);
    std::vector<std::uint64_t> offsets;
    std::uint64_t offset = 8 + length;
    for (const FileEntry &e : entries) {
        offsets.push_back(offset);
        if (!e.bytes.empty()) std::fwrite(e.bytes.data(), 1, e.bytes.size(), file);
        offset += e.bytes.size();
    }
    if (std::fclose(file) != 0) throw std::runtime_error("cannot write " + path);
    return offsets;
}

std::vector<unsigned char> random_bytes(std::size_t count, std::uint64_t seed) {
    std::mt19937_64 rng(seed);
    std::vector<unsigned char> bytes(count);
    for (std::size_t i = 0; i < count; i += 8) {
        const std::uint64_t word = rng();
        for (std::size_t k = 0; k < 8 && i + k < count; ++k) {
            bytes[i + k] = static_cast<unsigned char>(word >> (8 * k));
        }
    }
    return bytes;
}

ScratchDir::ScratchDir(const std::string &parent) {
    std::string pattern = parent + "/ferry-test-XXXXXX";
    if (mkdtemp(pattern.data()) == nullptr) throw std::runtime_error("mkdtemp in " + parent);
    path_ = pattern;
}

ScratchDir::~ScratchDir() {
    if (DIR *dir = opendir(path_.c_str())) {
        while (dirent *entry = readdir(dir)) {
            const std::string name = entry->d_name;
            if (name != "." && name != "..") unlink((path_ + "/" + name).c_str());
        }
        closedir(dir);
    }
    rmdir(path_.c_str());
}

}  // namespace ferry_test
