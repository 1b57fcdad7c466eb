// host/: the host side: the model's one pinned copy, and staging for pageable bytes.
// The shared host store's segment (shared_store.hpp): its fixed, versioned header, the
// layout text that follows it, and the checks a process makes before trusting either.
// The reader is fuzzed (tests/fuzz/fuzz_host_segment.cpp): check_segment() must accept
// only what a runtime wrote, whatever the bytes.
//
//     Header            magic, version, sizes, owner, layout hash: written once, before
//                       `magic` (release); state, loader, members: under the segment's
//                       lock (flock on its descriptor), read without it by waiters
//     layout text       at layout_offset, layout_bytes long (layout_text(), core/)
//     store             at data_offset (a multiple of the PMD size, 2 MiB, since version 2,
//                       so that its huge pages can be mapped whole), data_bytes: the store
//
// /dev/shm/ferry-host.<name>, mode 0600. Any change to Header bumps kVersion.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace ferry::hostshm {

constexpr std::uint64_t kMagic = 0x3174736f68797266ULL;  // "fryhost1", little-endian
constexpr std::uint32_t kVersion = 2;  // 2: huge_pages, huge_error
constexpr const char *kPrefix = "ferry-host.";  // segment names: ferry-host.<name>
constexpr std::size_t kMaxNameBytes = 200;
constexpr std::size_t kMaxMembers = 256;
constexpr std::size_t kMemberNameBytes = 64;
constexpr std::size_t kFailureBytes = 512;
constexpr std::uint64_t kMaxLayoutBytes = 1ull << 30;

enum State : std::uint32_t { kLoading = 1, kSealed = 2, kFailed = 3 };
enum Role : std::uint32_t { kNoRole = 0, kLoaderRole = 1, kAttachedRole = 2 };

struct Member {
    std::int64_t pid;       // 0: a free entry
    std::uint64_t start;    // its start time (base/process.hpp)
    std::uint64_t token;    // tells two runtimes of one process apart
    std::uint32_t role;     // Role
    std::uint32_t reserved;
    char runtime[kMemberNameBytes];  // the runtime's name, NUL-terminated, for ferry-stat
};

struct Header {
    std::atomic<std::uint64_t> magic;  // kMagic once the fields below are written
    std::uint32_t version;             // kVersion
    std::uint32_t header_bytes;        // sizeof(Header)
    std::uint32_t owner_uid;
    std::uint32_t page_size;
    std::uint64_t layout_offset;
    std::uint64_t layout_bytes;
    std::uint64_t layout_hash;         // fnv1a64 of the layout text
    std::uint64_t data_offset;         // page-aligned (a multiple of 2 MiB, as written)
    std::uint64_t data_bytes;          // the store; the segment is data_offset + data_bytes
    std::uint64_t created_unix_ns;

    // Under the lock; waiters poll `state` and the loader's identity without it.
    std::atomic<std::uint32_t> state;       // State
    std::atomic<std::uint32_t> loads;       // loads started (1 + takeovers)
    std::atomic<std::int64_t> loader_pid;   // 0: no loader (it left before sealing)
    std::atomic<std::uint64_t> loader_start;
    std::atomic<std::uint64_t> loaded_bytes;  // the loader's progress
    std::atomic<std::uint64_t> pinned_bytes;  // the loader's pinned prefix
    std::uint32_t member_count;               // entries of `members` in use, at most
    // The store's PMD-size pages (MADV_COLLAPSE), set by the loader before it loads: the
    // first huge_pages x 2 MiB of the store; huge_error is the errno that stopped it
    // (0: none), where fewer than data_bytes / 2 MiB were made; ECANCELED: turned off.
    std::uint32_t huge_pages;
    std::uint32_t huge_error;
    std::uint32_t reserved;
    char failure[kFailureBytes];              // why, when state is kFailed
    Member members[kMaxMembers];
};

static_assert(std::atomic<std::uint64_t>::is_always_lock_free &&
                  std::atomic<std::uint32_t>::is_always_lock_free,
              "the segment is shared between processes: its atomics must be lock-free");

std::uint64_t fnv1a64(const char *data, std::size_t bytes);

// "ferry-host.<name>" (no leading '/'); throws Error(FERRY_ERROR_INVALID_ARGUMENT) unless
// name is 1..kMaxNameBytes bytes of [A-Za-z0-9._-].
std::string segment_name(const std::string &name);

enum class Check {
    kOk,
    kUnsettled,  // being created: magic not yet stored
    kCorrupt,    // not a ferry host segment, another version, or inconsistent fields
};

// Checks a mapped segment of `bytes` bytes (at least the header when kOk): fields,
// bounds, the layout's hash, and that it fits `bytes`. `why` says what is wrong.
Check check_segment(const void *segment, std::size_t bytes, std::string *why);

// The layout text stored in a checked segment.
std::string stored_layout(const void *segment);

// The first difference between two layout texts, as a sentence; empty when equal.
std::string first_difference(const std::string &stored, const std::string &ours);

// What ferry-stat shows of one segment (read without the lock).
struct MemberInfo {
    long pid = 0;
    bool alive = false;
    Role role = kNoRole;
    std::string runtime;
};
struct SegmentInfo {
    std::string segment;  // name in /dev/shm
    bool ok = false;      // false: `problem` says why
    std::string problem;
    bool permission_denied = false;
    std::uint32_t owner_uid = 0;
    State state = kLoading;
    std::uint64_t data_bytes = 0;
    std::uint64_t loaded_bytes = 0;
    std::uint64_t pinned_bytes = 0;
    std::uint32_t huge_pages = 0;   // the store's PMD-size (2 MiB) pages
    std::uint32_t huge_error = 0;   // why no more: an errno of MADV_COLLAPSE, 0: none
    long loader_pid = 0;
    std::vector<MemberInfo> members;
    bool stale = false;  // no live member
};

// Names of every ferry-host.* segment in /dev/shm, sorted.
std::vector<std::string> list_segments();
SegmentInfo read_segment(const std::string &segment);
// Removes the segment when it is stale (checked under its lock); false with why if not.
bool remove_if_stale(const std::string &segment, std::string *why);

}  // namespace ferry::hostshm
