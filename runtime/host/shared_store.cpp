// host/: the host side: the model's one pinned copy, and staging for pageable bytes.
// The shared host store (shared_store.hpp): joining, waiting, taking over, leaving.
#include "host/shared_store.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <thread>

#include "base/clock.hpp"
#include "base/error.hpp"
#include "base/process.hpp"

namespace ferry {
namespace {

using hostshm::Header;
using hostshm::Member;

constexpr std::uint64_t kUnsettledGiveUpNs = 2'000'000'000;  // a creator that never wrote
constexpr std::uint64_t kProgressEveryNs = 100'000'000;

std::atomic<std::uint64_t> next_token{1};

std::size_t page_bytes() { return static_cast<std::size_t>(sysconf(_SC_PAGESIZE)); }

std::size_t round_up(std::size_t n, std::size_t to) { return (n + to - 1) / to * to; }

#ifndef MADV_COLLAPSE
#define MADV_COLLAPSE 25  // Linux 6.1; older headers lack it, older kernels refuse it (EINVAL)
#endif

// The kernel's PMD size (2 MiB on x86-64): a page-cache folio that large is mapped by one
// page-table entry, in one fault.
std::size_t huge_page_bytes() {
    static const std::size_t bytes = [] {
        unsigned long long n = 0;
        if (FILE *f = std::fopen("/sys/kernel/mm/transparent_hugepage/hpage_pmd_size", "r")) {
            if (std::fscanf(f, "%llu", &n) != 1) n = 0;
            std::fclose(f);
        }
        const bool usable = n > page_bytes() && n <= (1ull << 30) && (n & (n - 1)) == 0;
        return usable ? static_cast<std::size_t>(n) : std::size_t{2} << 20;
    }();
    return bytes;
}

// A shared mapping of `bytes` of fd at `offset` (a multiple of `align`) at an address that
// is a multiple of `align`: a huge folio is mapped whole only where address and file
// offset agree modulo its size, and the kernel aligns a shmem mapping itself only where
// the mount allows huge pages (/dev/shm usually does not).
void *map_aligned(std::size_t bytes, int prot, int fd, off_t offset, std::size_t align) {
    const std::size_t room_bytes = round_up(bytes, page_bytes()) + align;
    void *room = mmap(nullptr, room_bytes, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                      -1, 0);
    if (room == MAP_FAILED) return MAP_FAILED;
    auto *start = static_cast<std::byte *>(room);
    std::byte *at = start + (align - reinterpret_cast<std::uintptr_t>(start) % align) % align;
    if (mmap(at, bytes, prot, MAP_SHARED | MAP_FIXED, fd, offset) == MAP_FAILED) {
        const int err = errno;
        munmap(room, room_bytes);
        errno = err;
        return MAP_FAILED;
    }
    std::byte *end = at + round_up(bytes, page_bytes());
    if (at > start) munmap(start, static_cast<std::size_t>(at - start));
    if (start + room_bytes > end) munmap(end, static_cast<std::size_t>(start + room_bytes - end));
    return at;
}

// Gives the store's fresh (unwritten) range [offset, offset + bytes) of the segment
// PMD-size folios, so that every process maps it 2 MiB per fault and page-table entry
// rather than 4 KiB: attaching is faulting the segment in and pinning it, 512 times fewer
// faults. MADV_COLLAPSE (Linux 6.1+) does it for shmem whatever the THP sysfs and mount
// settings say, except shmem_enabled "deny". On the fresh range it only allocates and
// clears; collapsing written pages would copy each one. It refuses a range holding no
// page at all, so each huge page's first small page is allocated first and the collapse
// fills in the rest. Returns how many were made, in order from the start: fewer than the
// range holds where the kernel refuses (older kernels, "deny", no free huge page), whose
// bytes then stay in 4 KiB pages. Best effort: a failure changes nothing else.
std::uint32_t make_huge(int fd, std::size_t offset, std::size_t bytes, int *error) {
    const std::size_t huge = huge_page_bytes();
    const std::size_t count = bytes / huge;
    *error = 0;
    if (count == 0) return 0;
    void *at = map_aligned(count * huge, PROT_READ | PROT_WRITE, fd, static_cast<off_t>(offset), huge);
    if (at == MAP_FAILED) {
        *error = errno;
        return 0;
    }
    auto *base = static_cast<std::byte *>(at);
    std::size_t made = 0;
    for (std::size_t i = 0; i < count; ++i) {
        const auto block = static_cast<off_t>(offset + i * huge);
        if (posix_fallocate(fd, block, static_cast<off_t>(page_bytes())) != 0) break;
    }
    // One call for the whole range (one LRU drain); page by page only to count a refusal.
    if (madvise(base, count * huge, MADV_COLLAPSE) == 0) {
        made = count;
    } else {
        *error = errno;
        while (made < count && madvise(base + made * huge, huge, MADV_COLLAPSE) == 0) ++made;
    }
    munmap(at, count * huge);
    return static_cast<std::uint32_t>(made);
}

void pause_briefly() { std::this_thread::sleep_for(std::chrono::milliseconds(2)); }

std::string mib(std::uint64_t bytes) {
    return std::to_string(bytes >> 20) + " MiB";
}

}  // namespace

SharedStore::SharedStore(const ShareOptions &options, const std::string &layout,
                         std::size_t bytes)
    : options_(options), segment_(hostshm::segment_name(options.name)), bytes_(bytes) {
    FERRY_EXPECTS(bytes > 0 && layout.size() <= hostshm::kMaxLayoutBytes,
                  FERRY_ERROR_INTERNAL, "shared host store: no bytes, or a layout too large");
    deadline_ns_ = steady_now_ns() + options_.timeout_ns;
    token_ = next_token.fetch_add(1);
    try {
        join(layout);
        if (!loader()) wait_sealed();
    } catch (...) {
        leave();
        throw;
    }
}

SharedStore::~SharedStore() {
    unmap();
    leave();
}

void SharedStore::fail(ferry_status status, const std::string &why) const {
    throw Error(status, "host share '" + options_.name + "' (/dev/shm/" + segment_ + "): " + why);
}

void SharedStore::lock() {
    while (flock(fd_, LOCK_EX) != 0) {
        if (errno != EINTR) fail(FERRY_ERROR_INTERNAL, std::string("flock: ") + std::strerror(errno));
    }
}

bool SharedStore::try_lock_until(std::uint64_t deadline_ns) {
    for (;;) {
        if (flock(fd_, LOCK_EX | LOCK_NB) == 0) return true;
        if (errno != EWOULDBLOCK && errno != EINTR) {
            fail(FERRY_ERROR_INTERNAL, std::string("flock: ") + std::strerror(errno));
        }
        if (steady_now_ns() > deadline_ns) return false;
        pause_briefly();
    }
}

void SharedStore::unlock() noexcept { flock(fd_, LOCK_UN); }

// Whether fd_ is still the segment of that name (not one unlinked meanwhile).
bool SharedStore::same_file() const {
    struct stat mine {}, named {};
    if (fstat(fd_, &mine) != 0) return false;
    if (stat(("/dev/shm/" + segment_).c_str(), &named) != 0) return false;
    return mine.st_ino == named.st_ino && mine.st_dev == named.st_dev;
}

void SharedStore::close_fds() noexcept {
    if (header_ != nullptr) munmap(header_, header_map_bytes_);
    header_ = nullptr;
    if (data_fd_ >= 0) close(data_fd_);
    data_fd_ = -1;
    if (fd_ >= 0) close(fd_);
    fd_ = -1;
}

// Creates the segment when no other exists; false when one does (fd_ unset).
bool SharedStore::create(const std::string &layout) {
    const std::string path = "/" + segment_;
    fd_ = shm_open(path.c_str(), O_RDWR | O_CREAT | O_EXCL, 0600);
    if (fd_ < 0) {
        if (errno == EEXIST) return false;
        fail(errno == ENOSPC || errno == ENOMEM ? FERRY_ERROR_OUT_OF_HOST_MEMORY
                                                : FERRY_ERROR_HOST_SHARE,
             std::string("shm_open: ") + std::strerror(errno));
    }
    lock();  // a joiner that opens it first sees it empty, and waits
    try {
        if (fchmod(fd_, 0600) != 0) fail(FERRY_ERROR_HOST_SHARE, std::string("fchmod: ") + std::strerror(errno));
        const std::size_t page = page_bytes();
        const std::size_t layout_offset = round_up(sizeof(Header), 64);
        const std::size_t header_end = round_up(layout_offset + layout.size(), page);
        // The store starts at a huge page's offset in the file, as it must for its folios
        // to be mapped whole; the gap after the layout is a hole and holds no memory.
        const std::size_t data_offset = round_up(header_end, huge_page_bytes());
        if (ftruncate(fd_, static_cast<off_t>(data_offset + bytes_)) != 0) {
            fail(FERRY_ERROR_HOST_SHARE, std::string("ftruncate: ") + std::strerror(errno));
        }
        int huge_error = 0;
        const std::uint32_t huge_pages =
            options_.huge_pages ? make_huge(fd_, data_offset, bytes_, &huge_error) : 0;
        if (!options_.huge_pages) huge_error = ECANCELED;  // turned off: FERRY_HOST_SHARE_HUGE=0
        // posix_fallocate reserves the pages, so a full /dev/shm is an error here rather
        // than a SIGBUS at the first write.
        for (const auto &[begin, length] : {std::pair<std::size_t, std::size_t>{0, header_end},
                                            {data_offset, bytes_}}) {
            const int rc = posix_fallocate(fd_, static_cast<off_t>(begin), static_cast<off_t>(length));
            if (rc != 0) {
                errno = rc;
                fail(rc == ENOSPC || rc == ENOMEM ? FERRY_ERROR_OUT_OF_HOST_MEMORY
                                                  : FERRY_ERROR_HOST_SHARE,
                     "reserving " + std::to_string(header_end + bytes_) + " bytes failed: " +
                         std::strerror(rc) + " (/dev/shm too small?)");
            }
        }
        void *at = mmap(nullptr, data_offset, PROT_READ | PROT_WRITE, MAP_SHARED, fd_, 0);
        if (at == MAP_FAILED) fail(FERRY_ERROR_HOST_SHARE, std::string("mmap: ") + std::strerror(errno));
        header_ = static_cast<Header *>(at);
        header_map_bytes_ = data_offset;
        Header &h = *header_;
        h.version = hostshm::kVersion;
        h.header_bytes = sizeof(Header);
        h.owner_uid = static_cast<std::uint32_t>(geteuid());
        h.page_size = static_cast<std::uint32_t>(page);
        h.layout_offset = layout_offset;
        h.layout_bytes = layout.size();
        std::memcpy(reinterpret_cast<char *>(header_) + layout_offset, layout.data(), layout.size());
        h.layout_hash = hostshm::fnv1a64(layout.data(), layout.size());
        h.data_offset = data_offset;
        h.data_bytes = bytes_;
        h.huge_pages = huge_pages;
        h.huge_error = static_cast<std::uint32_t>(huge_error);
        h.created_unix_ns = static_cast<std::uint64_t>(
            std::chrono::duration_cast<std::chrono::nanoseconds>(
                std::chrono::system_clock::now().time_since_epoch())
                .count());
        h.state.store(hostshm::kLoading, std::memory_order_relaxed);
        h.loads.store(1, std::memory_order_relaxed);
        h.loader_pid.store(getpid(), std::memory_order_relaxed);
        h.loader_start.store(process_start_ticks(getpid()), std::memory_order_relaxed);
        role_ = hostshm::kLoaderRole;
        add_member(hostshm::kLoaderRole);
        h.magic.store(hostshm::kMagic, std::memory_order_release);
    } catch (...) {
        shm_unlink(path.c_str());
        unlock();
        close_fds();
        role_ = hostshm::kNoRole;
        throw;
    }
    unlock();
    return true;
}

void SharedStore::join(const std::string &layout) {
    const std::string path = "/" + segment_;
    std::uint64_t unsettled_since = 0;
    for (;;) {
        if (create(layout)) return;
        fd_ = shm_open(path.c_str(), O_RDWR, 0);
        if (fd_ < 0) {
            if (errno == ENOENT) continue;  // removed meanwhile: create it
            if (errno == EACCES) {
                struct stat st {};
                const std::string owner = stat(("/dev/shm/" + segment_).c_str(), &st) == 0
                                              ? "uid " + std::to_string(st.st_uid)
                                              : "another user";
                fail(FERRY_ERROR_HOST_SHARE,
                     "permission denied: the segment belongs to " + owner + ", this process "
                     "runs as uid " + std::to_string(geteuid()) + "; shared host stores are "
                     "owner-only (mode 0600): use another name");
            }
            fail(FERRY_ERROR_HOST_SHARE, std::string("shm_open: ") + std::strerror(errno));
        }
        struct stat st {};
        if (fstat(fd_, &st) != 0) fail(FERRY_ERROR_HOST_SHARE, std::string("fstat: ") + std::strerror(errno));
        if (st.st_uid != geteuid() || (st.st_mode & 077) != 0) {
            const std::string why = st.st_uid != geteuid()
                                        ? "belongs to uid " + std::to_string(st.st_uid) +
                                              ", not to this process's uid " +
                                              std::to_string(geteuid())
                                        : "has mode 0" + std::to_string((st.st_mode >> 6) & 7) +
                                              std::to_string((st.st_mode >> 3) & 7) +
                                              std::to_string(st.st_mode & 7) + ", not 0600";
            close_fds();
            fail(FERRY_ERROR_HOST_SHARE, "the segment " + why + ": refusing to use it");
        }
        if (!try_lock_until(deadline_ns_)) {
            close_fds();
            fail(FERRY_ERROR_HOST_SHARE, "timed out waiting for the segment's lock");
        }
        if (!same_file()) {  // unlinked between open and lock: start over
            unlock();
            close_fds();
            continue;
        }
        fstat(fd_, &st);
        const auto size = static_cast<std::size_t>(st.st_size);
        std::string why = "empty";
        hostshm::Check check = hostshm::Check::kUnsettled;
        void *whole = size > 0 ? mmap(nullptr, size, PROT_READ, MAP_SHARED, fd_, 0) : MAP_FAILED;
        if (whole != MAP_FAILED) check = hostshm::check_segment(whole, size, &why);
        if (check == hostshm::Check::kUnsettled) {
            // Its creator holds the lock while it writes the header: seen unlocked and
            // empty for long, it died before writing. Remove it and start over.
            if (whole != MAP_FAILED) munmap(whole, size);
            const std::uint64_t now = steady_now_ns();
            if (unsettled_since == 0) unsettled_since = now;
            if (now - unsettled_since > kUnsettledGiveUpNs) {
                shm_unlink(path.c_str());
                unsettled_since = 0;
            }
            unlock();
            close_fds();
            if (now > deadline_ns_) fail(FERRY_ERROR_HOST_SHARE, "timed out: the segment was never initialized");
            pause_briefly();
            continue;
        }
        if (check == hostshm::Check::kCorrupt) {
            if (whole != MAP_FAILED) munmap(whole, size);
            unlock();
            close_fds();
            fail(FERRY_ERROR_HOST_SHARE,
                 "the segment is not a usable ferry host store: " + why +
                     ". Nothing was changed; remove it (rm /dev/shm/" + segment_ +
                     ") once no process uses it, or choose another name");
        }
        const std::string stored = hostshm::stored_layout(whole);
        const std::size_t data_offset = static_cast<const Header *>(whole)->data_offset;
        munmap(whole, size);
        void *at = mmap(nullptr, data_offset, PROT_READ | PROT_WRITE, MAP_SHARED, fd_, 0);
        if (at == MAP_FAILED) {
            unlock();
            fail(FERRY_ERROR_HOST_SHARE, std::string("mmap: ") + std::strerror(errno));
        }
        header_ = static_cast<Header *>(at);
        header_map_bytes_ = data_offset;
        if (live_members() == 0) {
            // Left by processes that all died: stale. Remove it and create a fresh one.
            shm_unlink(path.c_str());
            unlock();
            close_fds();
            continue;
        }
        const std::string difference = hostshm::first_difference(stored, layout);
        if (!difference.empty()) {
            unlock();
            fail(FERRY_ERROR_HOST_SHARE_LAYOUT,
                 "this runtime's host store layout differs from the segment's, first at " +
                     difference + ". Every process must define the same groups and tensors "
                     "(names, order, sizes, dtypes, shapes, flags) with the same VRAM budget, "
                     "which decides the split of groups");
        }
        if (header_->state.load(std::memory_order_acquire) == hostshm::kFailed) {
            const std::string failure(header_->failure, strnlen(header_->failure, sizeof header_->failure));
            unlock();
            fail(FERRY_ERROR_HOST_SHARE, "its load failed: " + failure);
        }
        try {
            add_member(hostshm::kAttachedRole);
        } catch (...) {
            unlock();
            throw;
        }
        role_ = hostshm::kAttachedRole;
        unlock();
        return;
    }
}

// Under the lock.
void SharedStore::add_member(hostshm::Role role) {
    Header &h = *header_;
    std::size_t slot = h.member_count;
    for (std::size_t i = 0; i < h.member_count; ++i) {
        if (h.members[i].pid == 0) {
            slot = i;
            break;
        }
    }
    if (slot >= hostshm::kMaxMembers) {
        fail(FERRY_ERROR_HOST_SHARE, std::to_string(hostshm::kMaxMembers) +
                                         " runtimes already share it, the most one segment holds");
    }
    Member &m = h.members[slot];
    m.start = process_start_ticks(getpid());
    m.token = token_;
    m.role = role;
    std::memset(m.runtime, 0, sizeof m.runtime);
    std::memcpy(m.runtime, options_.runtime_name.data(),
                std::min(options_.runtime_name.size(), sizeof m.runtime - 1));
    m.pid = getpid();
    if (slot == h.member_count) h.member_count = static_cast<std::uint32_t>(slot + 1);
}

// Under the lock: frees the entries of dead processes, counts the others.
std::size_t SharedStore::live_members() noexcept {
    Header &h = *header_;
    std::size_t live = 0;
    const std::uint32_t count = std::min<std::uint32_t>(h.member_count, hostshm::kMaxMembers);
    for (std::size_t i = 0; i < count; ++i) {
        Member &m = h.members[i];
        if (m.pid == 0) continue;
        if (process_is_alive(static_cast<long>(m.pid), m.start)) {
            ++live;
        } else {
            m.pid = 0;
        }
    }
    return live;
}

void SharedStore::wait_sealed() {
    Header &h = *header_;
    std::uint64_t last_progress = 0;
    std::uint64_t reported = UINT64_MAX;
    for (;;) {
        if (h.state.load(std::memory_order_acquire) == hostshm::kSealed) return;
        const auto pid = static_cast<long>(h.loader_pid.load(std::memory_order_acquire));
        const std::uint64_t start = h.loader_start.load(std::memory_order_acquire);
        if (pid == 0 || !process_is_alive(pid, start)) {
            lock();
            const auto again = static_cast<long>(h.loader_pid.load(std::memory_order_acquire));
            const bool sealed = h.state.load(std::memory_order_acquire) == hostshm::kSealed;
            if (!sealed && (again == 0 || !process_is_alive(again, h.loader_start.load()))) {
                take_over();
                unlock();
                return;
            }
            unlock();
            continue;
        }
        const std::uint64_t now = steady_now_ns();
        if (now > deadline_ns_) {
            fail(FERRY_ERROR_HOST_SHARE,
                 "timed out after " + std::to_string(options_.timeout_ns / 1'000'000'000) +
                     " s waiting for process " + std::to_string(pid) + " to load it (" +
                     mib(h.loaded_bytes.load(std::memory_order_relaxed)) + " of " +
                     mib(h.data_bytes) + " so far); raise host_share_timeout_ms "
                     "(FERRY_HOST_SHARE_TIMEOUT, seconds)");
        }
        if (options_.progress != nullptr && now - last_progress >= kProgressEveryNs) {
            const std::uint64_t loaded = h.loaded_bytes.load(std::memory_order_relaxed);
            if (loaded != reported) options_.progress(options_.progress_user, loaded, h.data_bytes);
            reported = loaded;
            last_progress = now;
        }
        pause_briefly();
    }
}

// Under the lock: the loader died (or left) before sealing; this runtime loads instead.
// What it had written is discarded, so the store reads as zeros, as a fresh one does.
void SharedStore::take_over() {
    Header &h = *header_;
    if (fallocate(fd_, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                  static_cast<off_t>(h.data_offset), static_cast<off_t>(h.data_bytes)) != 0) {
        void *at = mmap(nullptr, h.data_bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd_,
                        static_cast<off_t>(h.data_offset));
        if (at == MAP_FAILED) fail(FERRY_ERROR_HOST_SHARE, std::string("mmap: ") + std::strerror(errno));
        std::memset(at, 0, h.data_bytes);
        munmap(at, h.data_bytes);
    } else {
        int huge_error = 0;
        h.huge_pages = options_.huge_pages
                           ? make_huge(fd_, h.data_offset, h.data_bytes, &huge_error)
                           : 0;
        if (!options_.huge_pages) huge_error = ECANCELED;
        h.huge_error = static_cast<std::uint32_t>(huge_error);
    }
    h.loaded_bytes.store(0, std::memory_order_relaxed);
    h.pinned_bytes.store(0, std::memory_order_relaxed);
    h.loads.fetch_add(1, std::memory_order_relaxed);
    h.loader_start.store(process_start_ticks(getpid()), std::memory_order_relaxed);
    h.loader_pid.store(getpid(), std::memory_order_release);
    for (std::size_t i = 0; i < h.member_count; ++i) {
        Member &m = h.members[i];
        if (m.pid == getpid() && m.token == token_) m.role = hostshm::kLoaderRole;
    }
    role_ = hostshm::kLoaderRole;
}

void SharedStore::leave() noexcept {
    if (fd_ < 0) return;
    if (header_ != nullptr) {
        lock();
        Header &h = *header_;
        const std::uint32_t count = std::min<std::uint32_t>(h.member_count, hostshm::kMaxMembers);
        for (std::size_t i = 0; i < count; ++i) {
            Member &m = h.members[i];
            if (m.pid == getpid() && m.token == token_) m.pid = 0;
        }
        if (loader() && h.state.load(std::memory_order_acquire) == hostshm::kLoading &&
            h.loader_pid.load() == getpid()) {
            h.loader_pid.store(0, std::memory_order_release);  // a waiter takes over
        }
        if (live_members() == 0 && same_file()) shm_unlink(("/" + segment_).c_str());
        unlock();
    }
    close_fds();
    role_ = hostshm::kNoRole;
}

std::byte *SharedStore::map(const std::vector<std::pair<std::size_t, std::size_t>> &private_ranges) {
    FERRY_EXPECTS(base_ == nullptr && header_ != nullptr, FERRY_ERROR_INTERNAL,
                  "shared host store mapped twice");
    const auto offset = static_cast<off_t>(header_->data_offset);
    int fd = fd_;
    int prot = PROT_READ | PROT_WRITE;
    if (!loader()) {
        // A descriptor that cannot write: no mprotect can make the shared bytes writable.
        data_fd_ = shm_open(("/" + segment_).c_str(), O_RDONLY, 0);
        if (data_fd_ < 0) fail(FERRY_ERROR_HOST_SHARE, std::string("shm_open: ") + std::strerror(errno));
        fd = data_fd_;
        prot = PROT_READ;
    }
    void *at = map_aligned(bytes_, prot, fd, offset, huge_page_bytes());
    if (at == MAP_FAILED) {
        fail(errno == ENOMEM ? FERRY_ERROR_OUT_OF_HOST_MEMORY : FERRY_ERROR_HOST_SHARE,
             "mmap of " + std::to_string(bytes_) + " bytes failed: " + std::strerror(errno));
    }
    auto *base = static_cast<std::byte *>(at);
    for (const auto &[begin, length] : private_ranges) {
        if (length == 0) continue;
        void *p = mmap(base + begin, length, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_FIXED, fd,
                       offset + static_cast<off_t>(begin));
        if (p == MAP_FAILED) {
            const int err = errno;
            munmap(base, bytes_);
            errno = err;
            fail(FERRY_ERROR_OUT_OF_HOST_MEMORY,
                 "mapping mutable tensors' private pages failed: " + std::string(std::strerror(err)));
        }
    }
    base_ = base;
    private_ = private_ranges;
    return base_;
}

void SharedStore::unmap() noexcept {
    if (base_ == nullptr) return;
    munmap(base_, bytes_);
    base_ = nullptr;
}

std::uint64_t SharedStore::loader_pinned_bytes() const {
    return header_->pinned_bytes.load(std::memory_order_acquire);
}

void SharedStore::set_pinned_bytes(std::uint64_t bytes) {
    header_->pinned_bytes.store(bytes, std::memory_order_release);
}

void SharedStore::add_loaded(std::uint64_t bytes) {
    if (header_ != nullptr) header_->loaded_bytes.fetch_add(bytes, std::memory_order_relaxed);
}

void SharedStore::publish(const std::byte *base) {
    FERRY_EXPECTS(loader() && base == base_, FERRY_ERROR_INTERNAL,
                  "shared host store published by a runtime that did not load it");
    const auto offset = static_cast<off_t>(header_->data_offset);
    for (const auto &[begin, length] : private_) {
        if (length == 0) continue;
        void *at = mmap(nullptr, length, PROT_READ | PROT_WRITE, MAP_SHARED, fd_,
                        offset + static_cast<off_t>(begin));
        if (at == MAP_FAILED) fail(FERRY_ERROR_HOST_SHARE, std::string("mmap: ") + std::strerror(errno));
        std::memcpy(at, base + begin, length);
        munmap(at, length);
    }
    lock();
    header_->loaded_bytes.store(header_->data_bytes, std::memory_order_relaxed);
    header_->state.store(hostshm::kSealed, std::memory_order_release);
    unlock();
}

}  // namespace ferry
