// observe/: what ferry tells the outside: timings, the stats segment, the trace.
// The stats segment's writer (stats_segment.hpp).
#include "observe/stats_segment.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <fstream>
#include <new>

#include "base/error.hpp"
#include "base/process.hpp"

namespace ferry {
namespace {

// Names in /dev/shm: anything outside [A-Za-z0-9_.-] becomes '_'.
std::string sanitize(const std::string &name) {
    std::string out = name;
    for (char &c : out) {
        const bool plain = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                           (c >= '0' && c <= '9') || c == '_' || c == '-' || c == '.';
        if (!plain) c = '_';
    }
    return out.substr(0, 200);
}

void copy_name(char *dst, std::size_t size, const std::string &src) {
    const std::size_t n = std::min(size - 1, src.size());
    std::memcpy(dst, src.data(), n);
    dst[n] = '\0';
}

[[noreturn]] void fail(const std::string &what, const std::string &segment) {
    const int err = errno;
    throw Error(err == ENOSPC || err == ENOMEM ? FERRY_ERROR_OUT_OF_HOST_MEMORY
                                               : FERRY_ERROR_INTERNAL,
                "publishing stats: " + what + " of shared memory /dev/shm" + segment +
                    " failed: " + std::strerror(err));
}

}  // namespace

std::uint64_t StatsSegment::process_start(long pid) { return process_start_ticks(pid); }

StatsSegment::StatsSegment(const SegmentIdentity &identity) {
    const long pid = static_cast<long>(getpid());
    const std::string base = "/" + std::string(shm::kPrefix) + std::to_string(pid) + "." +
                             sanitize(identity.name);
    for (int n = 1; fd_ < 0; ++n) {
        name_ = n == 1 ? base : base + "." + std::to_string(n);
        // O_EXCL: never adopt another runtime's segment. Mode 0600 regardless of umask.
        fd_ = shm_open(name_.c_str(), O_RDWR | O_CREAT | O_EXCL, 0600);
        if (fd_ < 0 && (errno != EEXIST || n >= 64)) fail("shm_open", name_);
    }
    try {
        if (fchmod(fd_, 0600) != 0) fail("fchmod", name_);
        map(shm::groups_offset());
    } catch (...) {
        close(fd_);
        shm_unlink(name_.c_str());
        throw;
    }
    shm::Header &h = *header_;
    h.layout_version = shm::kLayoutVersion;
    h.struct_size = sizeof(shm::Header);
    h.group_entry_size = sizeof(shm::GroupEntry);
    h.stat_words = static_cast<std::uint32_t>(shm::kStatWords);
    h.groups_offset = shm::groups_offset();
    h.pid = pid;
    h.process_start = process_start(pid);
    h.created_unix_ns = static_cast<std::uint64_t>(
        std::chrono::duration_cast<std::chrono::nanoseconds>(
            std::chrono::system_clock::now().time_since_epoch())
            .count());
    h.backend = identity.backend;
    h.device = identity.device;
    h.vram_budget = identity.vram_budget;
    copy_name(h.name, sizeof h.name, identity.name);
    copy_name(h.device_name, sizeof h.device_name, identity.device_name);
    h.magic.store(shm::kMagic, std::memory_order_release);  // readers may look now
}

StatsSegment::~StatsSegment() {
    if (header_ != nullptr) munmap(header_, mapped_bytes_);
    if (fd_ >= 0) close(fd_);
    shm_unlink(name_.c_str());
}

// (Re)maps the whole segment at its new size. Fresh pages of a grown shm are zero.
void StatsSegment::map(std::size_t bytes) {
    if (ftruncate(fd_, static_cast<off_t>(bytes)) != 0) fail("ftruncate", name_);
    void *at = header_ == nullptr
                   ? mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd_, 0)
                   : mremap(header_, mapped_bytes_, bytes, MREMAP_MAYMOVE);
    if (at == MAP_FAILED) fail("mmap", name_);
    header_ = static_cast<shm::Header *>(at);
    groups_ = reinterpret_cast<shm::GroupEntry *>(static_cast<char *>(at) +
                                                  shm::groups_offset());
    mapped_bytes_ = bytes;
}

void StatsSegment::set_groups(const std::vector<std::string> &names,
                              const std::vector<std::uint64_t> &image_bytes,
                              const std::vector<std::uint64_t> &resident_bytes,
                              const std::vector<int> &size_class) {
    map(shm::groups_offset() + names.size() * sizeof(shm::GroupEntry));
    const std::uint64_t seq = header_->seq.load(std::memory_order_relaxed);
    header_->seq.store(seq + 1, std::memory_order_relaxed);
    for (std::size_t g = 0; g < names.size(); ++g) {
        shm::GroupEntry &entry = groups_[g];
        copy_name(entry.name, sizeof entry.name, names[g]);
        entry.image_bytes.store(image_bytes[g], std::memory_order_release);
        entry.resident.store(size_class[g] < 0 ? 1 : 0, std::memory_order_release);
        entry.resident_bytes.store(resident_bytes[g], std::memory_order_release);
        entry.size_class.store(static_cast<std::uint64_t>(static_cast<std::int64_t>(size_class[g])),
                               std::memory_order_release);
    }
    header_->group_count.store(names.size(), std::memory_order_release);
    header_->seq.store(seq + 2, std::memory_order_release);
}

void StatsSegment::publish(const ferry_stats &stats, ferry_phase phase,
                           const std::vector<GroupRow> &rows,
                           const std::vector<std::uint32_t> &changed_rows) {
    shm::Header &h = *header_;
    const std::uint64_t seq = h.seq.load(std::memory_order_relaxed);
    h.seq.store(seq + 1, std::memory_order_relaxed);
    h.phase.store(phase, std::memory_order_release);
    for (std::size_t i = 0; i < shm::kStatWords; ++i) {
        h.stats[i].store(stats.*shm::kStatFields[i].member, std::memory_order_release);
    }
    for (std::uint32_t g : changed_rows) {
        shm::GroupEntry &entry = groups_[g];
        entry.onloads.store(rows[g].onloads, std::memory_order_release);
        entry.timed_onloads.store(rows[g].timed_onloads, std::memory_order_release);
        entry.last_onload_ns.store(rows[g].last_onload_ns, std::memory_order_release);
        entry.total_onload_ns.store(rows[g].total_onload_ns, std::memory_order_release);
    }
    h.seq.store(seq + 2, std::memory_order_release);
}

}  // namespace ferry
