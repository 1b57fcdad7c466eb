// observe/: what ferry tells the outside: timings, the stats segment, the trace.
// The stats segment: the fixed, versioned layout a runtime publishes into POSIX shared
// memory (/dev/shm/ferry.<pid>.<name>, mode 0600) and ferry-stat reads from another
// process. Written by stats_segment.cpp, read by stats_reader.cpp.
//
//     Header          identity, written once before `magic` is stored (release)
//       seq           seqlock: odd while the runtime is writing
//       phase, group_count, stats[]   under seq
//     GroupEntry[]    at groups_offset, group_count of them (after plan), under seq
//
// Any change to these structs or to kStatFields bumps kLayoutVersion: a reader refuses a
// segment whose version, struct_size or entry size differs from its own.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>

#include "ferry/ferry.h"

namespace ferry::shm {

constexpr std::uint64_t kMagic = 0x3174617473797266ULL;  // "frystat1", little-endian
constexpr std::uint32_t kLayoutVersion = 5;
constexpr const char *kPrefix = "ferry.";  // segment names: ferry.<pid>.<name>
constexpr std::size_t kNameBytes = 256;
constexpr std::size_t kDeviceNameBytes = 128;
constexpr std::size_t kGroupNameBytes = 64;  // longer group names are truncated

// One published ferry_stats counter: its name (the C field's), where it lives, and
// whether it only grows (a Prometheus counter) or goes up and down (a gauge).
struct StatField {
    const char *name;
    std::uint64_t ferry_stats::*member;
    bool counter;
};

#define FERRY_STAT(field, counter) {#field, &ferry_stats::field, counter}
inline constexpr StatField kStatFields[] = {
    FERRY_STAT(bytes_h2d, true),
    FERRY_STAT(bytes_d2h, true),
    FERRY_STAT(onloads, true),
    FERRY_STAT(acquires, true),
    FERRY_STAT(releases, true),
    FERRY_STAT(resident_hits, true),
    FERRY_STAT(hits, true),
    FERRY_STAT(misses, true),
    FERRY_STAT(prefetches_issued, true),
    FERRY_STAT(prefetches_used, true),
    FERRY_STAT(prefetches_wasted, true),
    FERRY_STAT(writebacks, true),
    FERRY_STAT(passes, true),
    FERRY_STAT(groups, false),
    FERRY_STAT(resident_groups, false),
    FERRY_STAT(size_classes, false),
    FERRY_STAT(streaming_slots, false),
    FERRY_STAT(model_bytes, false),
    FERRY_STAT(streamed_bytes_per_pass, false),
    FERRY_STAT(vram_budget, false),
    FERRY_STAT(slab_bytes, false),
    FERRY_STAT(slab_resident_bytes, false),
    FERRY_STAT(slab_streaming_bytes, false),
    FERRY_STAT(slab_used_bytes, false),
    FERRY_STAT(slab_used_peak_bytes, false),
    FERRY_STAT(host_pinned_bytes, false),
    FERRY_STAT(host_pinned_peak_bytes, false),
    FERRY_STAT(stall_ns, true),
    FERRY_STAT(writebacks_skipped, true),
    FERRY_STAT(verify_checks, true),
    FERRY_STAT(verify_failures, true),
    FERRY_STAT(host_pageable_bytes, false),
    FERRY_STAT(host_disk_bytes, false),
    FERRY_STAT(bytes_disk_read, true),
    FERRY_STAT(compressed_groups, false),
    FERRY_STAT(host_compressed_bytes, false),
    FERRY_STAT(host_compressed_raw_bytes, false),
    FERRY_STAT(bytes_h2d_compressed, true),
    FERRY_STAT(bytes_decoded, true),
    FERRY_STAT(decodes, true),
    FERRY_STAT(slab_staging_bytes, false),
    FERRY_STAT(host_pin_ns, false),
    FERRY_STAT(encode_ns, false),
};
#undef FERRY_STAT
constexpr std::size_t kStatWords = sizeof kStatFields / sizeof kStatFields[0];
// Every uint64_t of ferry_stats is published: a new field needs an entry above (and a
// new kLayoutVersion).
static_assert(sizeof(ferry_stats) == sizeof(std::size_t) + 2 * sizeof(std::uint32_t) +
                                         kStatWords * sizeof(std::uint64_t),
              "ferry_stats changed: update kStatFields and kLayoutVersion");

struct Header {
    std::atomic<std::uint64_t> magic;  // kMagic once the identity below is written
    std::uint32_t layout_version;
    std::uint32_t struct_size;       // sizeof(Header)
    std::uint32_t group_entry_size;  // sizeof(GroupEntry)
    std::uint32_t stat_words;        // kStatWords
    std::uint64_t groups_offset;     // byte offset of the GroupEntry table
    std::int64_t pid;
    std::uint64_t process_start;     // field 22 of /proc/<pid>/stat: tells a reused pid
    std::uint64_t created_unix_ns;
    std::uint32_t backend;           // ferry_backend in use
    std::int32_t device;             // CUDA ordinal; -1 on sim
    std::uint64_t vram_budget;
    char name[kNameBytes];           // the runtime's name, NUL-terminated
    char device_name[kDeviceNameBytes];

    alignas(64) std::atomic<std::uint64_t> seq;
    std::atomic<std::uint64_t> phase;        // ferry_phase
    std::atomic<std::uint64_t> group_count;  // table entries in use: 0 before plan
    std::atomic<std::uint64_t> stats[kStatWords];
};

struct GroupEntry {
    char name[kGroupNameBytes];  // written at plan, before group_count covers it
    std::atomic<std::uint64_t> image_bytes;
    std::atomic<std::uint64_t> resident;    // 1 or 0
    std::atomic<std::uint64_t> resident_bytes;  // on the device for good: all, a head, or 0
    std::atomic<std::uint64_t> size_class;  // int64 bits; -1 when resident
    std::atomic<std::uint64_t> onloads;
    std::atomic<std::uint64_t> timed_onloads;  // onloads whose copy time is known
    std::atomic<std::uint64_t> last_onload_ns;
    std::atomic<std::uint64_t> total_onload_ns;
};

static_assert(std::atomic<std::uint64_t>::is_always_lock_free,
              "the segment is shared between processes: its atomics must be lock-free");

constexpr std::uint64_t groups_offset() { return (sizeof(Header) + 63) / 64 * 64; }

}  // namespace ferry::shm
