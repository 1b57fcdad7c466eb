// libFuzzer target: the safetensors parser (load/weights.hpp) on untrusted bytes. Each
// input is parsed twice, with no I/O:
//
//   - as a whole .safetensors file: header_length, then parse_header;
//   - as the text of a *.safetensors.index.json: parse_index.
//
// A ferry::Error with a parse status (FILE_TRUNCATED, FILE_FORMAT) and a message that
// names the file is a correct refusal; anything else (another status or exception, a
// crash, a sanitizer report) is a bug. What is accepted must hold what the parser
// promises, checked here, else the target aborts:
//
//   - header: every tensor lies in the data section, of at most FERRY_MAX_DIMS
//     non-negative dims, with shape x dtype = its bytes; sorted by offset the tensors
//     cover the data section exactly; names are unique and hold no NUL;
//   - index: shard names are plain, unique file names; every tensor's shard exists;
//     tensor names are unique.
//
// The seeds (tests/fuzz/corpus-weights/, written by seeds_weights.py) are real files and
// indexes, and broken ones; a real file mutated is a broken header most of the time.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <unordered_set>
#include <vector>

#include "base/error.hpp"
#include "load/weights.hpp"

namespace {

const std::string kFile = "fuzz.safetensors";
const std::string kIndex = "fuzz.safetensors.index.json";

[[noreturn]] void violated(const char *what, const std::string &detail) {
    std::fprintf(stderr, "ferry fuzz weights: invariant violated: %s: %s\n", what, detail.c_str());
    std::abort();
}

void refused(const ferry::Error &e, const std::string &file, bool truncation_allowed) {
    const ferry_status s = e.status();
    if (s != FERRY_ERROR_FILE_FORMAT && !(truncation_allowed && s == FERRY_ERROR_FILE_TRUNCATED)) {
        violated("unexpected status", std::to_string(s) + ": " + e.what());
    }
    if (std::string(e.what()).rfind(file + ": ", 0) != 0) {
        violated("the message does not start with the file's name", e.what());
    }
}

std::uint64_t bits_of(const ferry::load::FileTensor &t) {
    if (t.element_bytes != 0) return 8ull * t.element_bytes;
    if (t.dtype_name == "F4") return 4;
    if (t.dtype_name == "F6_E2M3" || t.dtype_name == "F6_E3M2") return 6;
    violated("element_bytes 0 for a whole-byte dtype", t.name + ": " + t.dtype_name);
}

void check_header(const ferry::load::Header &h, std::uint64_t size) {
    if (h.data_start < 8 || h.data_start > size)
        violated("data_start", std::to_string(h.data_start));
    std::vector<const ferry::load::FileTensor *> sorted;
    std::unordered_set<std::string> names;
    for (const auto &t : h.tensors) {
        if (!names.insert(t.name).second) violated("duplicate name", t.name);
        if (t.name.find('\0') != std::string::npos) violated("NUL in a name", t.name);
        if (t.file != 0) violated("file index", t.name);
        if (t.shape.size() > FERRY_MAX_DIMS) violated("dims", t.name);
        if (t.offset < h.data_start || t.offset > size || t.bytes > size - t.offset) {
            violated("tensor outside the data section", t.name);
        }
        std::uint64_t elements = 1;
        for (const std::int64_t d : t.shape) {
            if (d < 0) violated("negative dim", t.name);
            elements *= static_cast<std::uint64_t>(d);  // cannot overflow: checked by the parser
        }
        if (elements * bits_of(t) != 8 * t.bytes) violated("shape x dtype != bytes", t.name);
        sorted.push_back(&t);
    }
    std::sort(sorted.begin(), sorted.end(), [](const auto *a, const auto *b) {
        return a->offset != b->offset ? a->offset < b->offset : a->bytes < b->bytes;
    });
    std::uint64_t at = h.data_start;
    for (const auto *t : sorted) {
        if (t->offset != at) violated("hole or overlap", t->name);
        at += t->bytes;
    }
    if (at != size) violated("data section not covered to the end", std::to_string(at));
}

void check_index(const ferry::load::Index &index) {
    std::unordered_set<std::string> shards(index.shards.begin(), index.shards.end());
    if (shards.size() != index.shards.size()) violated("a shard listed twice", "");
    for (const std::string &s : index.shards) {
        if (s.empty() || s == "." || s == ".." || s.find('/') != std::string::npos ||
            s.find('\0') != std::string::npos) {
            violated("shard name not plain", s);
        }
    }
    std::unordered_set<std::string> names;
    for (const auto &[name, shard] : index.weight_map) {
        if (shard >= index.shards.size()) violated("shard index", name);
        if (!names.insert(name).second) violated("duplicate tensor", name);
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t *data, std::size_t size) {
    const auto *bytes = reinterpret_cast<const std::byte *>(data);
    try {
        const std::uint64_t n = ferry::load::header_length(kFile, bytes, size);
        if (n > size - 8) violated("header_length past the end", std::to_string(n));
        check_header(ferry::load::parse_header(kFile, bytes, size, size), size);
    } catch (const ferry::Error &e) {
        refused(e, kFile, true);
    }
    try {
        check_index(ferry::load::parse_index(
            kIndex, std::string(reinterpret_cast<const char *>(data), size)));
    } catch (const ferry::Error &e) {
        refused(e, kIndex, false);
    }
    return 0;
}
