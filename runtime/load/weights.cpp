// load/: safetensors weights: headers parsed and checked, tensors read into memory.
// Headers and indexes are untrusted: UTF-8 is checked first, then nlohmann-json parses
// them (its parser callback finds duplicate keys, which the library would otherwise
// keep silently, last one winning), then every entry is checked against the file's size
// with checked arithmetic. The rules are those of the safetensors reference library
// (safetensors/src/tensor.rs, Metadata::validate), stated in weights.hpp and below.
#include "load/weights.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <limits>
#include <nlohmann/json.hpp>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <utility>

#include "base/error.hpp"

namespace ferry::load {

namespace {

using json = nlohmann::json;

// --- text in messages ------------------------------------------------------------------

// A name from a file, quoted for a message: control bytes escaped, very long names cut.
std::string named(std::string_view name) {
    constexpr std::size_t kMaxShown = 200;
    std::string out = "'";
    for (std::size_t i = 0; i < name.size() && i < kMaxShown; ++i) {
        const auto c = static_cast<unsigned char>(name[i]);
        if (c < 0x20 || c == 0x7f || c == '\'' || c == '\\') {
            char escaped[8];
            std::snprintf(escaped, sizeof escaped, "\\x%02x", c);
            out += escaped;
        } else {
            out += static_cast<char>(c);
        }
    }
    if (name.size() > kMaxShown) out += "...";
    return out + "'";
}

std::string errno_text(int error) { return std::string(std::strerror(error)); }

// --- dtypes ------------------------------------------------------------------------------

struct DtypeInfo {
    const char *name;
    ferry_dtype dtype;
    std::uint32_t bits;
};

// Every dtype of safetensors 0.8 (Dtype in safetensors/src/tensor.rs). F4 and F6_* are
// sub-byte: their bytes are elements x bits / 8, which must be whole.
constexpr DtypeInfo kDtypes[] = {
    {"BOOL", FERRY_DTYPE_BOOL, 8},
    {"U8", FERRY_DTYPE_U8, 8},
    {"I8", FERRY_DTYPE_I8, 8},
    {"I16", FERRY_DTYPE_I16, 16},
    {"U16", FERRY_DTYPE_UNKNOWN, 16},
    {"I32", FERRY_DTYPE_I32, 32},
    {"U32", FERRY_DTYPE_UNKNOWN, 32},
    {"I64", FERRY_DTYPE_I64, 64},
    {"U64", FERRY_DTYPE_UNKNOWN, 64},
    {"F16", FERRY_DTYPE_F16, 16},
    {"BF16", FERRY_DTYPE_BF16, 16},
    {"F32", FERRY_DTYPE_F32, 32},
    {"F64", FERRY_DTYPE_F64, 64},
    {"C64", FERRY_DTYPE_UNKNOWN, 64},
    {"F8_E4M3", FERRY_DTYPE_UNKNOWN, 8},
    {"F8_E5M2", FERRY_DTYPE_UNKNOWN, 8},
    {"F8_E8M0", FERRY_DTYPE_UNKNOWN, 8},
    {"F8_E4M3FNUZ", FERRY_DTYPE_UNKNOWN, 8},
    {"F8_E5M2FNUZ", FERRY_DTYPE_UNKNOWN, 8},
    {"F6_E2M3", FERRY_DTYPE_UNKNOWN, 6},
    {"F6_E3M2", FERRY_DTYPE_UNKNOWN, 6},
    {"F4", FERRY_DTYPE_UNKNOWN, 4},
};

const DtypeInfo *find_dtype(const std::string &name) {
    for (const DtypeInfo &info : kDtypes) {
        if (name == info.name) return &info;
    }
    return nullptr;
}

// --- UTF-8 -------------------------------------------------------------------------------

// The offset of the first byte that is not well-formed UTF-8 (RFC 3629: no overlong
// forms, no surrogates, nothing past U+10FFFF), or npos.
std::size_t invalid_utf8_at(const unsigned char *text, std::size_t size) {
    std::size_t i = 0;
    while (i < size) {
        const unsigned char c = text[i];
        if (c < 0x80) {
            ++i;
            continue;
        }
        std::size_t length = 0;
        unsigned char low = 0x80, high = 0xbf;  // the range of the second byte
        if (c >= 0xc2 && c <= 0xdf) {
            length = 2;
        } else if (c >= 0xe0 && c <= 0xef) {
            length = 3;
            if (c == 0xe0) low = 0xa0;   // overlong
            if (c == 0xed) high = 0x9f;  // surrogates
        } else if (c >= 0xf0 && c <= 0xf4) {
            length = 4;
            if (c == 0xf0) low = 0x90;   // overlong
            if (c == 0xf4) high = 0x8f;  // past U+10FFFF
        } else {
            return i;
        }
        if (size - i < length) return i;
        if (text[i + 1] < low || text[i + 1] > high) return i;
        for (std::size_t k = 2; k < length; ++k) {
            if (text[i + k] < 0x80 || text[i + k] > 0xbf) return i;
        }
        i += length;
    }
    return std::string_view::npos;
}

// --- JSON --------------------------------------------------------------------------------

// A parsed document, with the keys of one object in the order of the text: the root's
// (a header) or the root's "weight_map" (an index). nlohmann's default object is a
// std::map, sorted by key; its ordered_map inserts in linear time, too slow for
// tens of thousands of tensors.
struct Document {
    json root;
    std::vector<std::string> order;
};

enum class Ordered { kRoot, kWeightMap };

// Parses `text` (`what` names it in messages: "header", "index"). Throws
// FERRY_ERROR_FILE_FORMAT, naming `file`, for ill-formed UTF-8, JSON syntax errors and
// duplicate keys at any depth.
Document parse_json(const std::string &file, const char *what, const char *text, std::size_t size,
                    std::uint64_t base_offset, Ordered ordered) {
    const std::size_t bad = invalid_utf8_at(reinterpret_cast<const unsigned char *>(text), size);
    FERRY_EXPECTS(bad == std::string_view::npos, FERRY_ERROR_FILE_FORMAT,
                  file + ": the " + what + " is not UTF-8: ill-formed byte at offset " +
                      std::to_string(base_offset + bad) + " of the file");

    struct Frame {
        bool object = false;
        std::unordered_set<std::string> keys;
        std::string key;  // the latest key of an object
    };
    std::vector<Frame> stack;
    Document doc;
    std::string duplicate;  // the first duplicate found, as a message
    const auto callback = [&](int, json::parse_event_t event, json &parsed) {
        switch (event) {
            case json::parse_event_t::object_start:
            case json::parse_event_t::array_start:
                stack.emplace_back();
                stack.back().object = event == json::parse_event_t::object_start;
                break;
            case json::parse_event_t::object_end:
            case json::parse_event_t::array_end:
                if (!stack.empty()) stack.pop_back();
                break;
            case json::parse_event_t::key: {
                if (stack.empty() || !stack.back().object) break;
                Frame &frame = stack.back();
                std::string key = parsed.get<std::string>();
                const bool wanted = ordered == Ordered::kRoot
                                        ? stack.size() == 1
                                        : stack.size() == 2 && stack[0].key == "weight_map";
                if (!frame.keys.insert(key).second && duplicate.empty()) {
                    if (ordered == Ordered::kRoot && stack.size() == 1) {
                        duplicate = "tensor " + named(key) + " appears twice in the header";
                    } else if (wanted) {
                        duplicate = "tensor " + named(key) + " appears twice in \"weight_map\"";
                    } else if (stack.size() == 1) {
                        duplicate = "key " + named(key) + " appears twice in the " + what;
                    } else {
                        duplicate =
                            (ordered == Ordered::kRoot && stack[0].key != "__metadata__" ? "tensor "
                                                                                         : "") +
                            named(stack[0].key) + ": key " + named(key) +
                            " appears twice in its value";
                    }
                }
                if (wanted) doc.order.push_back(key);
                frame.key = std::move(key);
                break;
            }
            case json::parse_event_t::value:
                break;
        }
        return true;
    };
    try {
        doc.root = json::parse(text, text + size, callback, /*allow_exceptions=*/true,
                               /*ignore_comments=*/false);
    } catch (const json::parse_error &e) {
        throw Error(FERRY_ERROR_FILE_FORMAT,
                    file + ": the " + what + " is not JSON (error at offset " +
                        std::to_string(base_offset + (e.byte > 0 ? e.byte - 1 : 0)) +
                        " of the file): " + e.what());
    } catch (const json::exception &e) {  // out_of_range: a number too large for a double
        throw Error(FERRY_ERROR_FILE_FORMAT,
                    file + ": the " + what + " is not usable JSON: " + e.what());
    }
    FERRY_EXPECTS(duplicate.empty(), FERRY_ERROR_FILE_FORMAT, file + ": " + duplicate);
    return doc;
}

const char *type_name(const json &value) {
    switch (value.type()) {
        case json::value_t::null:
            return "null";
        case json::value_t::object:
            return "an object";
        case json::value_t::array:
            return "an array";
        case json::value_t::string:
            return "a string";
        case json::value_t::boolean:
            return "a boolean";
        case json::value_t::number_integer:
        case json::value_t::number_unsigned:
            return "an integer";
        case json::value_t::number_float:
            return "a non-integer number";
        case json::value_t::binary:
            return "binary";
        case json::value_t::discarded:
            return "discarded";
    }
    return "?";
}

// A non-negative integer that fits in int64 (dims) or uint64 (offsets): `limit`.
std::uint64_t non_negative(const json &value, std::uint64_t limit, const std::string &where,
                           const char *what) {
    if (value.is_number_unsigned()) {
        const auto v = value.get<std::uint64_t>();
        FERRY_EXPECTS(v <= limit, FERRY_ERROR_FILE_FORMAT,
                      where + ": " + what + " " + std::to_string(v) + " is too large");
        return v;
    }
    if (value.is_number_integer()) {  // only negative values parse as signed
        throw Error(
            FERRY_ERROR_FILE_FORMAT,
            where + ": " + what + " " + std::to_string(value.get<std::int64_t>()) + " is negative");
    }
    if (value.is_number_float()) {
        throw Error(FERRY_ERROR_FILE_FORMAT,
                    where + ": " + what + " " + value.dump() + " is not an integer");
    }
    throw Error(FERRY_ERROR_FILE_FORMAT,
                where + ": " + what + " is " + type_name(value) + ", not a non-negative integer");
}

const json &member(const json &entry, const char *key, const std::string &where) {
    const auto it = entry.find(key);
    FERRY_EXPECTS(it != entry.end(), FERRY_ERROR_FILE_FORMAT,
                  where + ": the entry has no \"" + key + "\"");
    return *it;
}

std::string shape_text(const std::vector<std::int64_t> &shape) {
    std::string out = "[";
    for (std::size_t i = 0; i < shape.size(); ++i) {
        out += (i ? ", " : "") + std::to_string(shape[i]);
    }
    return out + "]";
}

// One tensor entry of a header, checked on its own (the layout of all of them is
// checked after). `data_bytes`: the size of the file's data section.
FileTensor parse_entry(const std::string &file, const std::string &name, const json &entry,
                       std::uint64_t data_start, std::uint64_t data_bytes,
                       std::uint64_t *begin_out) {
    const std::string where = file + ": tensor " + named(name);
    FERRY_EXPECTS(name.find('\0') == std::string::npos, FERRY_ERROR_FILE_FORMAT,
                  where + ": the name holds a NUL character");
    FERRY_EXPECTS(entry.is_object(), FERRY_ERROR_FILE_FORMAT,
                  where + ": the entry is " + type_name(entry) + ", not an object");

    const json &dtype = member(entry, "dtype", where);
    FERRY_EXPECTS(dtype.is_string(), FERRY_ERROR_FILE_FORMAT,
                  where + ": \"dtype\" is " + type_name(dtype) + ", not a string");
    FileTensor tensor;
    tensor.name = name;
    tensor.dtype_name = dtype.get<std::string>();
    const DtypeInfo *info = find_dtype(tensor.dtype_name);
    FERRY_EXPECTS(info != nullptr, FERRY_ERROR_FILE_FORMAT,
                  where + ": unknown dtype " + named(tensor.dtype_name));
    tensor.dtype = info->dtype;
    tensor.element_bytes = info->bits % 8 == 0 ? info->bits / 8 : 0;

    const json &shape = member(entry, "shape", where);
    FERRY_EXPECTS(shape.is_array(), FERRY_ERROR_FILE_FORMAT,
                  where + ": \"shape\" is " + type_name(shape) + ", not an array");
    FERRY_EXPECTS(shape.size() <= FERRY_MAX_DIMS, FERRY_ERROR_FILE_FORMAT,
                  where + ": the shape has " + std::to_string(shape.size()) +
                      " dims, more than FERRY_MAX_DIMS (" + std::to_string(FERRY_MAX_DIMS) + ")");
    // The product of the non-zero dims, so that a consumer multiplying them in any order
    // stays in int64, and of the element bits in uint64.
    std::uint64_t elements = 1, nonzero = 1;
    constexpr auto kMaxDim = static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max());
    for (const json &dim : shape) {
        const std::uint64_t d = non_negative(dim, kMaxDim, where, "a dimension");
        tensor.shape.push_back(static_cast<std::int64_t>(d));
        if (d == 0) {
            elements = 0;
            continue;
        }
        FERRY_EXPECTS(
            nonzero <= kMaxDim / d, FERRY_ERROR_FILE_FORMAT,
            where + ": the element count of shape " + shape_text(tensor.shape) + "... overflows");
        nonzero *= d;
    }
    if (elements != 0) elements = nonzero;
    FERRY_EXPECTS(nonzero <= std::numeric_limits<std::uint64_t>::max() / info->bits,
                  FERRY_ERROR_FILE_FORMAT,
                  where + ": the byte count of shape " + shape_text(tensor.shape) + " of " +
                      info->name + " overflows");
    const std::uint64_t bits = elements * info->bits;
    FERRY_EXPECTS(bits % 8 == 0, FERRY_ERROR_FILE_FORMAT,
                  where + ": " + std::to_string(elements) + " elements of " + info->name + " (" +
                      std::to_string(info->bits) + " bits each) do not end on a byte boundary");
    tensor.bytes = bits / 8;

    const json &offsets = member(entry, "data_offsets", where);
    FERRY_EXPECTS(
        offsets.is_array() && offsets.size() == 2, FERRY_ERROR_FILE_FORMAT,
        where + ": \"data_offsets\" is " +
            (offsets.is_array() ? "an array of " + std::to_string(offsets.size()) + " values"
                                : std::string(type_name(offsets))) +
            ", not [begin, end]");
    constexpr auto kMaxOffset = std::numeric_limits<std::uint64_t>::max();
    const std::uint64_t begin = non_negative(offsets[0], kMaxOffset, where, "data_offsets begin");
    const std::uint64_t end = non_negative(offsets[1], kMaxOffset, where, "data_offsets end");
    FERRY_EXPECTS(begin <= end, FERRY_ERROR_FILE_FORMAT,
                  where + ": data_offsets [" + std::to_string(begin) + ", " + std::to_string(end) +
                      "] begin after they end");
    FERRY_EXPECTS(end - begin == tensor.bytes, FERRY_ERROR_FILE_FORMAT,
                  where + ": shape " + shape_text(tensor.shape) + " of " + info->name + " is " +
                      std::to_string(tensor.bytes) + " bytes, but data_offsets [" +
                      std::to_string(begin) + ", " + std::to_string(end) + "] hold " +
                      std::to_string(end - begin));
    FERRY_EXPECTS(end <= data_bytes, FERRY_ERROR_FILE_TRUNCATED,
                  where + ": its data ends at byte " + std::to_string(end) +
                      " of the data section, which is " + std::to_string(data_bytes) +
                      " bytes long (the file is truncated)");
    tensor.offset = data_start + begin;
    *begin_out = begin;
    return tensor;
}

// --- reading files -----------------------------------------------------------------------

// Exactly `size` bytes at `offset`, through EINTR and short reads.
void read_exact(const WeightFile &file, std::byte *dst, std::size_t size, std::uint64_t offset) {
    std::size_t done = 0;
    while (done < size) {
        const ssize_t n =
            ::pread(file.fd(), dst + done, size - done, static_cast<off_t>(offset + done));
        if (n < 0 && errno == EINTR) continue;
        FERRY_EXPECTS(n >= 0, FERRY_ERROR_IO,
                      file.path() + ": read of " + std::to_string(size) + " bytes at offset " +
                          std::to_string(offset) + " failed: " + errno_text(errno));
        FERRY_EXPECTS(n > 0, FERRY_ERROR_IO,
                      file.path() + ": read of " + std::to_string(size) + " bytes at offset " +
                          std::to_string(offset) + " ended after " + std::to_string(done) +
                          " (the file shrank after it was opened)");
        done += static_cast<std::size_t>(n);
    }
}

Header read_header(const WeightFile &file) {
    std::byte first8[8] = {};
    const std::uint64_t size = file.size();
    read_exact(file, first8, static_cast<std::size_t>(std::min<std::uint64_t>(8, size)), 0);
    const std::uint64_t n = header_length(file.path(), first8, size);
    std::vector<std::byte> bytes(static_cast<std::size_t>(8 + n));
    std::memcpy(bytes.data(), first8, 8);
    read_exact(file, bytes.data() + 8, static_cast<std::size_t>(n), 8);
    return parse_header(file.path(), bytes.data(), bytes.size(), size);
}

std::string folder_of(const std::string &path) {
    const std::size_t slash = path.rfind('/');
    return slash == std::string::npos ? std::string() : path.substr(0, slash + 1);
}

bool ends_with(const std::string &text, const char *suffix) {
    const std::size_t n = std::strlen(suffix);
    return text.size() >= n && text.compare(text.size() - n, n, suffix) == 0;
}

bool is_regular_file(const std::string &path) {
    struct stat st {};
    return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

constexpr const char *kFolderFiles[] = {
    "model.safetensors.index.json",
    "model.safetensors",
    "diffusion_pytorch_model.safetensors.index.json",
    "diffusion_pytorch_model.safetensors",
};

}  // namespace

// --- WeightFile --------------------------------------------------------------------------

WeightFile::WeightFile(std::string path) : path_(std::move(path)) {
    fd_ = ::open(path_.c_str(), O_RDONLY | O_CLOEXEC);
    FERRY_EXPECTS(fd_ >= 0, FERRY_ERROR_IO, path_ + ": cannot open: " + errno_text(errno));
    struct stat st {};
    if (::fstat(fd_, &st) != 0) {
        const int error = errno;
        ::close(fd_);
        throw Error(FERRY_ERROR_IO, path_ + ": cannot stat: " + errno_text(error));
    }
    if (!S_ISREG(st.st_mode)) {
        ::close(fd_);
        throw Error(FERRY_ERROR_IO, path_ + ": not a regular file");
    }
    size_ = static_cast<std::uint64_t>(st.st_size);
    dev_ = st.st_dev;
    ino_ = st.st_ino;
    mtime_ns_ = static_cast<std::int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec;
}

WeightFile::~WeightFile() {
    if (direct_fd_ >= 0) ::close(direct_fd_);
    if (fd_ >= 0) ::close(fd_);
}

int WeightFile::direct_fd() {
    std::lock_guard<std::mutex> lock(direct_mutex_);
    if (direct_fd_ != -2) return direct_fd_;
    const int fd = ::open(path_.c_str(), O_RDONLY | O_CLOEXEC | O_DIRECT);
    if (fd < 0) {  // EINVAL on tmpfs and other file systems without O_DIRECT
        direct_fd_ = -1;
        return -1;
    }
    struct stat st {};
    if (::fstat(fd, &st) != 0 || st.st_dev != dev_ || st.st_ino != ino_) {
        ::close(fd);
        direct_fd_ = -1;
        throw Error(FERRY_ERROR_FILE_CHANGED,
                    path_ + ": was replaced after it was opened (the path names another file)");
    }
    direct_fd_ = fd;
    return fd;
}

void WeightFile::check_unchanged() const {
    struct stat st {};
    FERRY_EXPECTS(::fstat(fd_, &st) == 0, FERRY_ERROR_IO,
                  path_ + ": cannot stat: " + errno_text(errno));
    const std::int64_t mtime_ns =
        static_cast<std::int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec;
    FERRY_EXPECTS(static_cast<std::uint64_t>(st.st_size) == size_ && mtime_ns == mtime_ns_,
                  FERRY_ERROR_FILE_CHANGED,
                  path_ + ": was modified after it was opened (size " + std::to_string(size_) +
                      " -> " + std::to_string(st.st_size) + " bytes" +
                      (mtime_ns != mtime_ns_ ? ", new mtime" : "") + ")");
    if (::stat(path_.c_str(), &st) != 0) {
        throw Error(FERRY_ERROR_FILE_CHANGED, path_ +
                                                  ": was replaced after it was opened (the "
                                                  "path is gone: " +
                                                  errno_text(errno) + ")");
    }
    FERRY_EXPECTS(st.st_dev == dev_ && st.st_ino == ino_, FERRY_ERROR_FILE_CHANGED,
                  path_ + ": was replaced after it was opened (the path names another file)");
}

// --- headers -----------------------------------------------------------------------------

std::uint64_t header_length(const std::string &file, const std::byte *first8,
                            std::uint64_t file_bytes) {
    FERRY_EXPECTS(file_bytes >= 8, FERRY_ERROR_FILE_TRUNCATED,
                  file + ": the file is " + std::to_string(file_bytes) +
                      " bytes, shorter than the 8-byte header length a safetensors file "
                      "starts with");
    std::uint64_t n = 0;
    for (int i = 7; i >= 0; --i) n = n << 8 | std::to_integer<std::uint64_t>(first8[i]);
    FERRY_EXPECTS(n <= kMaxHeaderBytes, FERRY_ERROR_FILE_FORMAT,
                  file + ": the header length " + std::to_string(n) +
                      " bytes is over the limit of " + std::to_string(kMaxHeaderBytes) +
                      " (not a safetensors file, or a corrupt one)");
    FERRY_EXPECTS(n <= file_bytes - 8, FERRY_ERROR_FILE_TRUNCATED,
                  file + ": the header length is " + std::to_string(n) + " bytes, but only " +
                      std::to_string(file_bytes - 8) + " follow it (the file is truncated)");
    return n;
}

Header parse_header(const std::string &file, const std::byte *bytes, std::size_t size,
                    std::uint64_t file_bytes) {
    FERRY_EXPECTS(size >= 8 || size == file_bytes, FERRY_ERROR_INTERNAL,
                  file + ": parse_header needs the file's first 8 bytes");
    const std::uint64_t n = header_length(file, bytes, file_bytes);
    FERRY_EXPECTS(size - 8 >= n, FERRY_ERROR_INTERNAL,
                  file + ": parse_header needs the whole header (" + std::to_string(n) +
                      " bytes), given " + std::to_string(size - 8));
    Header header;
    header.data_start = 8 + n;
    const std::uint64_t data_bytes = file_bytes - header.data_start;

    Document doc = parse_json(file, "header", reinterpret_cast<const char *>(bytes) + 8,
                              static_cast<std::size_t>(n), 8, Ordered::kRoot);
    FERRY_EXPECTS(doc.root.is_object(), FERRY_ERROR_FILE_FORMAT,
                  file + ": the header is " + type_name(doc.root) + ", not a JSON object");

    struct Range {
        std::uint64_t begin, end;
        std::size_t tensor;
    };
    std::vector<Range> ranges;
    header.tensors.reserve(doc.order.size());
    for (const std::string &name : doc.order) {
        const json &entry = doc.root.at(name);
        if (name == "__metadata__") {
            FERRY_EXPECTS(entry.is_object(), FERRY_ERROR_FILE_FORMAT,
                          file + ": \"__metadata__\" is " + type_name(entry) + ", not an object");
            continue;
        }
        std::uint64_t begin = 0;
        header.tensors.push_back(
            parse_entry(file, name, entry, header.data_start, data_bytes, &begin));
        ranges.push_back({begin, begin + header.tensors.back().bytes, header.tensors.size() - 1});
    }

    // The data section: covered by the tensors in offset order, without gaps or overlaps,
    // to its last byte (the reference library sorts by offsets too, so the header's own
    // order is free).
    std::sort(ranges.begin(), ranges.end(), [](const Range &a, const Range &b) {
        return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
    });
    std::uint64_t covered = 0;
    const FileTensor *previous = nullptr;
    for (const Range &range : ranges) {
        const FileTensor &tensor = header.tensors[range.tensor];
        const std::string span =
            "[" + std::to_string(range.begin) + ", " + std::to_string(range.end) + "]";
        FERRY_EXPECTS(range.begin >= covered, FERRY_ERROR_FILE_FORMAT,
                      file + ": tensor " + named(tensor.name) + ": data_offsets " + span +
                          " overlap those of tensor " + named(previous->name) + ", which end at " +
                          std::to_string(covered));
        FERRY_EXPECTS(
            range.begin == covered, FERRY_ERROR_FILE_FORMAT,
            file + ": tensor " + named(tensor.name) + ": data_offsets " + span +
                " leave a hole: bytes [" + std::to_string(covered) + ", " +
                std::to_string(range.begin) + ") of the data belong to no tensor" +
                (previous ? " (after tensor " + named(previous->name) + ")" : std::string()));
        covered = range.end;
        if (range.end > range.begin || previous == nullptr) previous = &tensor;
    }
    FERRY_EXPECTS(covered == data_bytes, FERRY_ERROR_FILE_FORMAT,
                  file + ": the last " + std::to_string(data_bytes - covered) +
                      " bytes of the file belong to no tensor" +
                      (previous ? " (after tensor " + named(previous->name) + ")"
                                : std::string(" (the header has no tensor)")));
    return header;
}

// --- indexes -----------------------------------------------------------------------------

Index parse_index(const std::string &file, const std::string &text) {
    Document doc = parse_json(file, "index", text.data(), text.size(), 0, Ordered::kWeightMap);
    FERRY_EXPECTS(doc.root.is_object(), FERRY_ERROR_FILE_FORMAT,
                  file + ": the index is " + type_name(doc.root) + ", not a JSON object");
    const auto map = doc.root.find("weight_map");
    FERRY_EXPECTS(map != doc.root.end(), FERRY_ERROR_FILE_FORMAT,
                  file + ": the index has no \"weight_map\"");
    FERRY_EXPECTS(map->is_object(), FERRY_ERROR_FILE_FORMAT,
                  file + ": \"weight_map\" is " + type_name(*map) + ", not an object");

    Index index;
    std::unordered_map<std::string, std::uint32_t> shard_of_name;
    index.weight_map.reserve(doc.order.size());
    for (const std::string &name : doc.order) {
        const std::string where = file + ": tensor " + named(name);
        FERRY_EXPECTS(name.find('\0') == std::string::npos, FERRY_ERROR_FILE_FORMAT,
                      where + ": the name holds a NUL character");
        const json &value = map->at(name);
        FERRY_EXPECTS(value.is_string(), FERRY_ERROR_FILE_FORMAT,
                      where + ": its shard is " + type_name(value) + ", not a file name");
        const auto &shard = value.get_ref<const std::string &>();
        FERRY_EXPECTS(
            !shard.empty() && shard != "." && shard != ".." &&
                shard.find('/') == std::string::npos && shard.find('\0') == std::string::npos,
            FERRY_ERROR_FILE_FORMAT,
            where + ": shard " + named(shard) + " is not a plain file name in the index's folder");
        const auto [it, added] =
            shard_of_name.emplace(shard, static_cast<std::uint32_t>(index.shards.size()));
        if (added) index.shards.push_back(shard);
        index.weight_map.emplace_back(name, it->second);
    }
    return index;
}

// --- WeightSet ---------------------------------------------------------------------------

std::shared_ptr<WeightSet> WeightSet::open(const std::string &path) {
    struct stat st {};
    FERRY_EXPECTS(::stat(path.c_str(), &st) == 0, FERRY_ERROR_IO,
                  path + ": cannot open: " + errno_text(errno));
    std::string target = path;
    if (S_ISDIR(st.st_mode)) {
        const std::string folder = ends_with(path, "/") ? path : path + "/";
        target.clear();
        std::string looked;
        for (const char *name : kFolderFiles) {
            if (target.empty() && is_regular_file(folder + name)) target = folder + name;
            looked += std::string(looked.empty() ? "" : ", ") + name;
        }
        FERRY_EXPECTS(!target.empty(), FERRY_ERROR_IO,
                      path + ": a folder holding none of " + looked);
    }

    auto set = std::make_shared<WeightSet>();
    set->path_ = path;
    std::vector<Header> headers;
    const bool is_index = ends_with(target, ".json");
    Index index;
    if (!is_index) {
        set->files_.push_back(std::make_unique<WeightFile>(target));
        headers.push_back(read_header(*set->files_.back()));
    } else {
        const WeightFile file(target);
        FERRY_EXPECTS(file.size() <= kMaxHeaderBytes, FERRY_ERROR_FILE_FORMAT,
                      target + ": the index is " + std::to_string(file.size()) +
                          " bytes, over the limit of " + std::to_string(kMaxHeaderBytes));
        std::string text(static_cast<std::size_t>(file.size()), '\0');
        read_exact(file, reinterpret_cast<std::byte *>(text.data()), text.size(), 0);
        index = parse_index(target, text);
        const std::string folder = folder_of(target);
        for (const std::string &shard : index.shards) {
            try {
                set->files_.push_back(std::make_unique<WeightFile>(folder + shard));
            } catch (const Error &e) {
                throw Error(e.status(), target + ": shard " + named(shard) + ": " + e.what());
            }
            headers.push_back(read_header(*set->files_.back()));
        }
    }

    for (std::uint32_t f = 0; f < headers.size(); ++f) {
        for (FileTensor &tensor : headers[f].tensors) {
            tensor.file = f;
            set->tensors_.push_back(std::move(tensor));
        }
    }
    std::stable_sort(set->tensors_.begin(), set->tensors_.end(),
                     [](const FileTensor &a, const FileTensor &b) { return a.name < b.name; });
    for (std::size_t i = 1; i < set->tensors_.size(); ++i) {
        const FileTensor &a = set->tensors_[i - 1], &b = set->tensors_[i];
        FERRY_EXPECTS(a.name != b.name, FERRY_ERROR_FILE_FORMAT,
                      path + ": tensor " + named(a.name) + " is in two files: " +
                          set->files_[a.file]->path() + " and " + set->files_[b.file]->path());
    }

    if (is_index) {  // the weight_map and the shards' headers name the same tensors
        for (const auto &[name, shard] : index.weight_map) {
            const FileTensor *tensor = set->find(name);
            FERRY_EXPECTS(tensor != nullptr && tensor->file == shard, FERRY_ERROR_FILE_FORMAT,
                          target + ": tensor " + named(name) + " is mapped to shard " +
                              named(index.shards[shard]) + ", whose header does not hold it" +
                              (tensor ? " (it is in " + set->files_[tensor->file]->path() + ")"
                                      : std::string()));
        }
        if (index.weight_map.size() != set->tensors_.size()) {
            std::unordered_set<std::string> mapped;
            for (const auto &entry : index.weight_map) mapped.insert(entry.first);
            for (const FileTensor &tensor : set->tensors_) {
                FERRY_EXPECTS(mapped.count(tensor.name) != 0, FERRY_ERROR_FILE_FORMAT,
                              set->files_[tensor.file]->path() + ": tensor " + named(tensor.name) +
                                  " is not in the index " + target);
            }
        }
    }
    return set;
}

const FileTensor *WeightSet::find(const std::string &name) const {
    const auto it = std::lower_bound(
        tensors_.begin(), tensors_.end(), name,
        [](const FileTensor &tensor, const std::string &key) { return tensor.name < key; });
    return it != tensors_.end() && it->name == name ? &*it : nullptr;
}

}  // namespace ferry::load
