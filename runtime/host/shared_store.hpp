// host/: the host side: the model's one pinned copy, and staging for pageable bytes.
// SharedStore: the host store's bytes in a named POSIX shared-memory segment, so that
// every process of a model holds them once (ferry.h, "Shared host store"). The segment
// (segment_header.hpp) records the store's layout; the first runtime of a name creates
// it and loads it (the loader), the others check the layout, wait until it is sealed and
// map it read-only. HostStore maps its arena through map(), so the rest of the runtime
// sees one contiguous base() either way.
//
// Membership and the loader's identity change under an flock on the segment's
// descriptor, which the kernel releases when a process dies: kill -9 of any member
// leaves the segment consistent. Bytes are written only by the loader, before sealing.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "ferry/ferry.h"
#include "host/segment_header.hpp"

namespace ferry {

struct ShareOptions {
    std::string name;                  // the share's name (hostshm::segment_name checks it)
    std::string runtime_name;          // shown by ferry-stat
    std::uint64_t timeout_ns = 0;      // longest wait for the loader (and for the lock)
    bool huge_pages = true;            // the loader makes the store's 2 MiB pages
    ferry_host_share_progress_fn progress = nullptr;
    void *progress_user = nullptr;
};

class SharedStore {
   public:
    // Joins (or creates) the segment of options.name for a store of `bytes` bytes laid
    // out as `layout` describes; returns once this runtime is the loader or the segment
    // is sealed. Throws Error: FERRY_ERROR_INVALID_ARGUMENT for a bad name,
    // FERRY_ERROR_HOST_SHARE_LAYOUT when the segment's layout differs (naming the first
    // difference), FERRY_ERROR_HOST_SHARE for another user's or a corrupt segment and for
    // a wait that timed out, FERRY_ERROR_OUT_OF_HOST_MEMORY when /dev/shm is full.
    SharedStore(const ShareOptions &options, const std::string &layout, std::size_t bytes);
    // Leaves the segment; the last member removes it.
    ~SharedStore();
    SharedStore(const SharedStore &) = delete;
    SharedStore &operator=(const SharedStore &) = delete;

    bool loader() const { return role_ == hostshm::kLoaderRole; }
    const std::string &segment() const { return segment_; }
    const std::string &name() const { return options_.name; }

    // Maps the store: the segment's bytes, writable for the loader and read-only for the
    // others, with each of `private_ranges` (offset, bytes; page-aligned) a private
    // copy-on-write mapping of the sealed bytes. Returns the store's base.
    std::byte *map(const std::vector<std::pair<std::size_t, std::size_t>> &private_ranges);
    void unmap() noexcept;

    // The loader's pinned prefix (attached runtimes pin as much); set by the loader.
    std::uint64_t loader_pinned_bytes() const;
    void set_pinned_bytes(std::uint64_t bytes);
    // The loader's progress, for the waiters.
    void add_loaded(std::uint64_t bytes);
    // The loader, at seal: the private ranges' bytes (mutable tensors' initial values)
    // are copied into the segment, and it is marked sealed. Waiters then attach.
    void publish(const std::byte *base);

   private:
    void join(const std::string &layout);
    bool create(const std::string &layout);
    void wait_sealed();
    void lock();
    bool try_lock_until(std::uint64_t deadline_ns);
    void unlock() noexcept;
    bool same_file() const;
    void add_member(hostshm::Role role);
    std::size_t live_members() noexcept;
    void take_over();
    void leave() noexcept;
    void close_fds() noexcept;
    [[noreturn]] void fail(ferry_status status, const std::string &why) const;

    ShareOptions options_;
    std::string segment_;              // "ferry-host.<name>"
    std::size_t bytes_ = 0;            // the store
    std::uint64_t deadline_ns_ = 0;
    std::uint64_t token_ = 0;
    hostshm::Role role_ = hostshm::kNoRole;
    int fd_ = -1;                      // O_RDWR: the header, the lock, the loader's bytes
    int data_fd_ = -1;                 // O_RDONLY: an attached runtime's bytes
    hostshm::Header *header_ = nullptr;  // [0, data_offset) mapped read-write
    std::size_t header_map_bytes_ = 0;
    std::byte *base_ = nullptr;
    std::vector<std::pair<std::size_t, std::size_t>> private_;
};

}  // namespace ferry
