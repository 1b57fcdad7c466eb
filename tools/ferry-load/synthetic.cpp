// ferry-load: measures loading safetensors into ferry, against plain reads of the files.
// The synthetic model file (synthetic.hpp). Each block holds the tensors of an attention
// block with a 4x MLP, scaled so that the blocks add up to the bytes asked for.
#include "synthetic.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

namespace ferry_load {
namespace {

struct Entry {
    std::string name;
    std::int64_t rows = 0;
    std::int64_t cols = 0;
    std::uint64_t bytes() const { return static_cast<std::uint64_t>(rows * cols) * 2; }
};

std::vector<Entry> layout(std::uint64_t bytes, int blocks) {
    // A block of width d holds 4 d^2 (attention) + 8 d^2 (MLP) bf16 weights: 24 d^2 bytes.
    const double per_block = static_cast<double>(bytes) * 0.97 / blocks;
    const auto d = std::max<std::int64_t>(64, static_cast<std::int64_t>(std::sqrt(per_block / 24)) / 64 * 64);
    std::vector<Entry> entries = {{"x_embedder.weight", d, 64}, {"proj_out.weight", 64, d},
                                  {"norm_out.linear.weight", 2 * d, d}};
    for (int b = 0; b < blocks; ++b) {
        const std::string p = "transformer_blocks." + std::to_string(b) + ".";
        for (const char *w : {"attn.to_q.weight", "attn.to_k.weight", "attn.to_v.weight",
                              "attn.to_out.weight"}) {
            entries.push_back({p + w, d, d});
        }
        entries.push_back({p + "ff.up.weight", 4 * d, d});
        entries.push_back({p + "ff.down.weight", d, 4 * d});
        entries.push_back({p + "norm.weight", 1, d});
    }
    return entries;
}

bool write_all(int fd, const void *data, std::size_t bytes) {
    const char *at = static_cast<const char *>(data);
    while (bytes > 0) {
        const ssize_t n = write(fd, at, bytes);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return false;
        at += n;
        bytes -= static_cast<std::size_t>(n);
    }
    return true;
}

}  // namespace

bool write_synthetic(const std::string &path, std::uint64_t bytes, int blocks) {
    const std::vector<Entry> entries = layout(bytes, blocks);
    std::string header = "{";
    std::uint64_t offset = 0;
    for (const Entry &e : entries) {
        if (header.size() > 1) header += ",";
        header += "\"" + e.name + "\":{\"dtype\":\"BF16\",\"shape\":[" + std::to_string(e.rows) +
                  "," + std::to_string(e.cols) + "],\"data_offsets\":[" + std::to_string(offset) +
                  "," + std::to_string(offset + e.bytes()) + "]}";
        offset += e.bytes();
    }
    header += "}";
    while ((header.size() + 8) % 8 != 0) header += ' ';
    const std::string temp = path + ".partial";
    const int fd = open(temp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) return false;
    const std::uint64_t length = header.size();
    unsigned char prefix[8];
    for (int i = 0; i < 8; ++i) prefix[i] = static_cast<unsigned char>(length >> (8 * i));
    bool ok = write_all(fd, prefix, 8) && write_all(fd, header.data(), header.size());
    // bf16 values of a normal distribution's magnitude: exponents near 0x3c..0x3f, mantissas
    // from a xorshift generator, so the bytes look like trained weights, not zeros.
    std::vector<std::uint16_t> chunk(1 << 20);
    std::uint64_t state = 0x9e3779b97f4a7c15ull;
    for (std::uint64_t left = offset; ok && left > 0;) {
        for (std::uint16_t &v : chunk) {
            state ^= state << 13, state ^= state >> 7, state ^= state << 17;
            v = static_cast<std::uint16_t>(((state >> 16) & 0x807f) | ((0x3c + (state & 3)) << 7));
        }
        const std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(left, chunk.size() * 2));
        ok = write_all(fd, chunk.data(), n);
        left -= n;
    }
    ok = fsync(fd) == 0 && ok;
    const int saved = errno;
    close(fd);
    if (!ok || rename(temp.c_str(), path.c_str()) != 0) {
        unlink(temp.c_str());
        errno = saved;
        return false;
    }
    return true;
}

}  // namespace ferry_load
