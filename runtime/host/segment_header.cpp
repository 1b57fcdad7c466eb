// host/: the host side: the model's one pinned copy, and staging for pageable bytes.
// The shared host store's segment header: checks, the layout's first difference, and
// what ferry-stat reads (segment_header.hpp).
#include "host/segment_header.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "base/error.hpp"
#include "base/process.hpp"
#include "base/shm_names.hpp"
#include "ferry/ferry.h"

namespace ferry::hostshm {
namespace {

bool add_overflows(std::uint64_t a, std::uint64_t b, std::uint64_t *out) {
    return __builtin_add_overflow(a, b, out);
}

std::string line_at(const std::string &text, std::size_t line, bool *exists) {
    std::size_t at = 0;
    for (std::size_t n = 0; n < line; ++n) {
        at = text.find('\n', at);
        if (at == std::string::npos) {
            *exists = false;
            return "";
        }
        ++at;
    }
    if (at >= text.size()) {
        *exists = false;
        return "";
    }
    *exists = true;
    const std::size_t end = text.find('\n', at);
    return text.substr(at, end == std::string::npos ? std::string::npos : end - at);
}

struct Fd {
    int fd = -1;
    ~Fd() {
        if (fd >= 0) close(fd);
    }
};

}  // namespace

std::uint64_t fnv1a64(const char *data, std::size_t bytes) {
    std::uint64_t hash = 0xcbf29ce484222325ULL;
    for (std::size_t i = 0; i < bytes; ++i) {
        hash ^= static_cast<unsigned char>(data[i]);
        hash *= 0x100000001b3ULL;
    }
    return hash;
}

std::string segment_name(const std::string &name) {
    FERRY_EXPECTS(!name.empty() && name.size() <= kMaxNameBytes, FERRY_ERROR_INVALID_ARGUMENT,
                  "host share name '" + name.substr(0, 64) + (name.size() > 64 ? "...'" : "'") +
                      " must be 1.." + std::to_string(kMaxNameBytes) + " bytes, got " +
                      std::to_string(name.size()));
    for (const char c : name) {
        const bool plain = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                           (c >= '0' && c <= '9') || c == '_' || c == '-' || c == '.';
        FERRY_EXPECTS(plain, FERRY_ERROR_INVALID_ARGUMENT,
                      "host share name '" + name + "' holds '" +
                          (c >= 0x20 && c < 0x7f ? std::string(1, c) : "\\x" + std::to_string(static_cast<unsigned char>(c))) +
                          "': use only letters, digits, '.', '_' and '-' (no '/')");
    }
    FERRY_EXPECTS(name != "." && name != "..", FERRY_ERROR_INVALID_ARGUMENT,
                  "host share name '" + name + "' is not a name");
    return std::string(kPrefix) + name;
}

Check check_segment(const void *segment, std::size_t bytes, std::string *why) {
    auto bad = [&](const std::string &text) {
        if (why != nullptr) *why = text;
        return Check::kCorrupt;
    };
    if (bytes < sizeof(std::uint64_t)) return bad(std::to_string(bytes) + " bytes is truncated");
    const auto &h = *static_cast<const Header *>(segment);
    const std::uint64_t magic = h.magic.load(std::memory_order_acquire);
    if (magic == 0) {
        if (why != nullptr) *why = "still being created";
        return Check::kUnsettled;
    }
    if (magic != kMagic) return bad("not a ferry host store (bad magic)");
    if (bytes < sizeof(Header)) {
        return bad("truncated: " + std::to_string(bytes) + " bytes, less than its " +
                   std::to_string(sizeof(Header)) + "-byte header");
    }
    if (h.version != kVersion || h.header_bytes != sizeof(Header)) {
        return bad("version " + std::to_string(h.version) + " (header " +
                   std::to_string(h.header_bytes) + " bytes); this ferry uses version " +
                   std::to_string(kVersion) + " (header " + std::to_string(sizeof(Header)) +
                   " bytes)");
    }
    const std::uint64_t page = h.page_size;
    if (page < 4096 || page > (1u << 24) || (page & (page - 1)) != 0) {
        return bad("page size " + std::to_string(page) + " is not one");
    }
    std::uint64_t layout_end = 0, data_end = 0;
    if (h.layout_offset < sizeof(Header) || h.layout_bytes == 0 ||
        h.layout_bytes > kMaxLayoutBytes ||
        add_overflows(h.layout_offset, h.layout_bytes, &layout_end) ||
        layout_end > h.data_offset || h.data_offset % page != 0 || h.data_bytes == 0 ||
        add_overflows(h.data_offset, h.data_bytes, &data_end)) {
        return bad("inconsistent offsets (layout " + std::to_string(h.layout_offset) + "+" +
                   std::to_string(h.layout_bytes) + ", data " + std::to_string(h.data_offset) +
                   "+" + std::to_string(h.data_bytes) + ")");
    }
    if (data_end != bytes) {
        return bad("truncated: " + std::to_string(bytes) + " bytes, its header says " +
                   std::to_string(data_end));
    }
    const std::uint32_t state = h.state.load(std::memory_order_acquire);
    if (state != kLoading && state != kSealed && state != kFailed) {
        return bad("state " + std::to_string(state) + " is not one");
    }
    if (h.member_count > kMaxMembers) {
        return bad(std::to_string(h.member_count) + " members, more than " +
                   std::to_string(kMaxMembers));
    }
    const char *text = static_cast<const char *>(segment) + h.layout_offset;
    if (fnv1a64(text, h.layout_bytes) != h.layout_hash) return bad("its layout's hash is wrong");
    return Check::kOk;
}

std::string stored_layout(const void *segment) {
    const auto &h = *static_cast<const Header *>(segment);
    return std::string(static_cast<const char *>(segment) + h.layout_offset, h.layout_bytes);
}

std::string first_difference(const std::string &stored, const std::string &ours) {
    if (stored == ours) return "";
    for (std::size_t line = 0;; ++line) {
        bool in_stored = false, in_ours = false;
        const std::string a = line_at(stored, line, &in_stored);
        const std::string b = line_at(ours, line, &in_ours);
        if (in_stored && in_ours && a == b) continue;
        const std::string where = "line " + std::to_string(line + 1) + " of the layout: ";
        if (!in_ours) return where + "the store has '" + a + "', this runtime has nothing more";
        if (!in_stored) return where + "this runtime has '" + b + "', the store nothing more";
        return where + "the store has '" + a + "', this runtime has '" + b + "'";
    }
}

std::vector<std::string> list_segments() { return shm_names_with_prefix(kPrefix); }

SegmentInfo read_segment(const std::string &segment) {
    SegmentInfo info;
    info.segment = segment;
    Fd fd;
    fd.fd = shm_open(("/" + segment).c_str(), O_RDONLY, 0);
    if (fd.fd < 0) {
        info.permission_denied = errno == EACCES;
        info.problem = std::strerror(errno);
        struct stat st {};
        if (stat(("/dev/shm/" + segment).c_str(), &st) == 0) info.owner_uid = st.st_uid;
        return info;
    }
    struct stat st {};
    if (fstat(fd.fd, &st) != 0) {
        info.problem = std::strerror(errno);
        return info;
    }
    info.owner_uid = st.st_uid;
    const auto bytes = static_cast<std::size_t>(st.st_size);
    if (bytes < sizeof(Header)) {
        info.problem = "truncated: " + std::to_string(bytes) + " bytes";
        info.stale = true;  // nobody can have joined it
        return info;
    }
    void *at = mmap(nullptr, bytes, PROT_READ, MAP_SHARED, fd.fd, 0);
    if (at == MAP_FAILED) {
        info.problem = std::string("mmap: ") + std::strerror(errno);
        return info;
    }
    std::string why;
    const Check check = check_segment(at, bytes, &why);
    const auto &h = *static_cast<const Header *>(at);
    if (check == Check::kOk) {
        info.ok = true;
        info.state = static_cast<State>(h.state.load(std::memory_order_acquire));
        info.data_bytes = h.data_bytes;
        info.loaded_bytes = h.loaded_bytes.load(std::memory_order_relaxed);
        info.pinned_bytes = h.pinned_bytes.load(std::memory_order_relaxed);
        info.huge_pages = h.huge_pages;
        info.huge_error = h.huge_error;
        info.loader_pid = static_cast<long>(h.loader_pid.load(std::memory_order_relaxed));
        info.stale = true;
        for (std::uint32_t i = 0; i < h.member_count; ++i) {
            const Member &m = h.members[i];
            if (m.pid == 0) continue;
            MemberInfo member;
            member.pid = static_cast<long>(m.pid);
            member.alive = process_is_alive(member.pid, m.start);
            member.role = m.role == kLoaderRole ? kLoaderRole : kAttachedRole;
            member.runtime = std::string(m.runtime, strnlen(m.runtime, sizeof m.runtime));
            info.stale = info.stale && !member.alive;
            info.members.push_back(member);
        }
    } else {
        info.problem = why;
    }
    munmap(at, bytes);
    return info;
}

bool remove_if_stale(const std::string &segment, std::string *why) {
    Fd fd;
    fd.fd = shm_open(("/" + segment).c_str(), O_RDWR, 0);
    if (fd.fd < 0) {
        if (why != nullptr) *why = std::strerror(errno);
        return false;
    }
    if (flock(fd.fd, LOCK_EX | LOCK_NB) != 0) {
        if (why != nullptr) *why = "locked by a live member";
        return false;
    }
    const SegmentInfo info = read_segment(segment);
    if (!info.stale) {
        if (why != nullptr) *why = info.ok ? "a member is alive" : info.problem;
        return false;
    }
    if (shm_unlink(("/" + segment).c_str()) != 0) {
        if (why != nullptr) *why = std::strerror(errno);
        return false;
    }
    return true;
}

}  // namespace ferry::hostshm
