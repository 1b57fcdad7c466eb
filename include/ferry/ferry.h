/*
 * ferry — stream a model's weights from one pinned host copy into a fixed VRAM budget.
 *
 * This is ferry's only public C header. It is C99-clean and has no dependency beyond
 * <stddef.h> and <stdint.h>.
 *
 * Lifecycle of a runtime (each call names the phase it is valid in):
 *
 *     ferry_create                 -> DEFINE
 *     ferry_group_define           DEFINE
 *     ferry_group_prefer_resident  DEFINE (optional)
 *     ferry_group_compute_declare  DEFINE or PLANNED (optional; else timed on pass 1)
 *     ferry_tensor_define          DEFINE
 *     ferry_schedule_declare       DEFINE or PLANNED (optional; else learned on pass 1)
 *     ferry_plan                   DEFINE -> PLANNED  (layout, residency, pinned arena, slab)
 *     ferry_tensor_host_ptr        PLANNED (writable) or SEALED (immutable bytes read-only)
 *     ferry_tensor_copy_in         PLANNED
 *     ferry_weights_load           PLANNED (safetensors files straight into the host store)
 *     ferry_tensor_copy_out        PLANNED or SEALED
 *     ferry_seal                   PLANNED -> SEALED  (read-only images, resident onload)
 *     ferry_acquire / _release     SEALED
 *     ferry_tensor_update          SEALED, group not acquired (new bytes of a frozen tensor)
 *     ferry_tensor_device_ptr      SEALED, while the tensor's group is acquired
 *     ferry_synchronize            any phase
 *     ferry_stats_get              any phase
 *     ferry_trace_start/_stop/_dump any phase
 *     ferry_destroy                any phase
 *
 * ferry_dlpack_wrap and ferry_dlpack_live: any time, a runtime or NULL (DLPack views for
 * bindings).
 *
 * Errors: every call returns a ferry_status. On failure the calling thread's
 * ferry_last_error() names the call, the object and the cause, and the runtime stays
 * usable: a failed call changes nothing.
 *
 * Threads: a runtime may be used from several threads at once. Every call that takes a
 * runtime takes its one internal lock for a short time; calls from different threads are
 * serialized, never interleaved. The exceptions: ferry_destroy must not race with any
 * other call on the same runtime, and on the sim backend an acquire with a NULL stream
 * waits for the group's bytes outside the lock. With a NULL stream on sim, work that
 * must precede the call (a synchronous-mode copy, an earlier holder of a group with
 * mutable tensors) is waited for inside it, holding the lock. ferry_last_error() is per
 * thread.
 */
#ifndef FERRY_FERRY_H
#define FERRY_FERRY_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(_WIN32)
#define FERRY_API
#elif defined(__GNUC__)
#define FERRY_API __attribute__((visibility("default")))
#else
#define FERRY_API
#endif

/* ------------------------------------------------------------------------------------ */
/* Version                                                                              */
/* ------------------------------------------------------------------------------------ */

#define FERRY_VERSION_MAJOR 0
#define FERRY_VERSION_MINOR 1
#define FERRY_VERSION_PATCH 0
/* MAJOR * 10000 + MINOR * 100 + PATCH */
#define FERRY_VERSION_NUMBER \
    (FERRY_VERSION_MAJOR * 10000 + FERRY_VERSION_MINOR * 100 + FERRY_VERSION_PATCH)

/* "MAJOR.MINOR.PATCH" of the library actually loaded. */
FERRY_API const char *ferry_version(void);
/* FERRY_VERSION_NUMBER of the library actually loaded. */
FERRY_API uint32_t ferry_version_number(void);

/* ------------------------------------------------------------------------------------ */
/* Status codes. Values are pinned and never reused; new codes may be added.            */
/* ------------------------------------------------------------------------------------ */

typedef enum ferry_status {
    FERRY_OK = 0,
    FERRY_ERROR_INVALID_ARGUMENT = 1,    /* NULL pointer, bad enum, bad config field      */
    FERRY_ERROR_INVALID_HANDLE = 2,      /* NULL/garbage runtime, or a handle of the wrong
                                            kind or out of range                           */
    FERRY_ERROR_FOREIGN_HANDLE = 3,      /* a handle of another, live runtime             */
    FERRY_ERROR_STALE_HANDLE = 4,        /* a handle of a runtime already destroyed       */
    FERRY_ERROR_WRONG_PHASE = 5,         /* call not valid in the runtime's phase         */
    FERRY_ERROR_INVALID_SIZE = 6,        /* zero bytes, or shape and bytes disagree       */
    FERRY_ERROR_SIZE_TOO_LARGE = 7,      /* bytes can never fit the budget, or overflow   */
    FERRY_ERROR_BUDGET_TOO_SMALL = 8,    /* no plan fits: the message gives the minimum   */
    FERRY_ERROR_DUPLICATE_NAME = 9,      /* group or tensor name already used             */
    FERRY_ERROR_NOT_ACQUIRED = 10,       /* release without acquire, device ptr of a group
                                            not acquired                                   */
    FERRY_ERROR_NO_FREE_SLOT = 11,       /* every slot of the group's size class is held  */
    FERRY_ERROR_GROUP_BUSY = 12,         /* a group with mutable tensors is still acquired
                                            (synchronize), or an updated tensor's group is */
    FERRY_ERROR_EMPTY = 13,              /* plan with no groups, or a group with no tensors */
    FERRY_ERROR_OUT_OF_RANGE = 14,       /* copy-in offset + bytes past the tensor's end  */
    FERRY_ERROR_OUT_OF_HOST_MEMORY = 15, /* pinned host memory could not be allocated     */
    FERRY_ERROR_OUT_OF_DEVICE_MEMORY = 16, /* the VRAM slab could not be reserved         */
    FERRY_ERROR_BACKEND_UNAVAILABLE = 17, /* cuda asked for but not built, or no device   */
    FERRY_ERROR_DEVICE = 18,             /* the device runtime reported an error          */
    FERRY_ERROR_INTERNAL = 19,           /* a bug in ferry: please report the message     */
    FERRY_ERROR_VERIFY_FAILED = 20,      /* verify mode: frozen bytes changed on the device;
                                            the message names the group and tensor        */
    FERRY_ERROR_STREAM_CAPTURING = 21,   /* acquire/release on a stream that is capturing a
                                            CUDA graph: not supported yet                  */
    /* Weights files (ferry_weights_*): the message names the file, and the tensor where
       there is one. */
    FERRY_ERROR_IO = 22,                 /* a weights file (or a shard an index names) could
                                            not be opened or read: the message has errno  */
    FERRY_ERROR_FILE_TRUNCATED = 23,     /* a file is shorter than its header says        */
    FERRY_ERROR_FILE_FORMAT = 24,        /* a malformed file: header not JSON or not UTF-8,
                                            of absurd size; offsets out of range,
                                            overlapping or unordered; shape x dtype not the
                                            byte range; unknown dtype; duplicate names     */
    FERRY_ERROR_WEIGHTS_MISMATCH = 25,   /* defined tensors and the files disagree: missing,
                                            extra, wrong shape or dtype (all listed)       */
    FERRY_ERROR_FILE_CHANGED = 26,       /* a weights file was modified or replaced after
                                            it was opened                                  */
    FERRY_ERROR_NOT_IN_MEMORY = 27,      /* the tensor's bytes are on the disk tier, not in
                                            the host store: use ferry_tensor_copy_out      */
    FERRY_ERROR_HOST_SHARE = 28,         /* the shared host store cannot be used: another
                                            user's segment, a corrupt or truncated header,
                                            its load failed, or the wait for it timed out  */
    FERRY_ERROR_HOST_SHARE_LAYOUT = 29   /* the shared host store holds another layout of
                                            groups and tensors: the first difference named */
} ferry_status;

/* A static, never-NULL description of a status ("ok", "wrong phase", ...). Unknown
   values give "unknown status". */
FERRY_API const char *ferry_status_string(ferry_status status);

/* The calling thread's message for its last failed ferry call, e.g.
   "ferry_acquire(group 'block.3'): group is already acquired 2 times ...". Empty string
   when the last call succeeded. Valid until the thread's next ferry call. */
FERRY_API const char *ferry_last_error(void);

/* ------------------------------------------------------------------------------------ */
/* Configuration                                                                        */
/* ------------------------------------------------------------------------------------ */

typedef enum ferry_backend {
    FERRY_BACKEND_AUTO = 0, /* cuda when built and a device exists, else sim */
    FERRY_BACKEND_CUDA = 1,
    FERRY_BACKEND_SIM = 2
} ferry_backend;

/*
 * Runtime configuration. Always call ferry_config_init() first: it sets struct_size and
 * every default, so a caller built against an older header keeps working.
 *
 * Environment overrides, applied at ferry_create over the struct's values (FERRY_BACKEND
 * only when backend is FERRY_BACKEND_AUTO):
 *   FERRY_BACKEND=auto|cuda|sim       FERRY_SIM_H2D_GBPS=<GB/s>   FERRY_SIM_D2H_GBPS=<GB/s>
 *   FERRY_SIM_LATENCY_US=<us>         FERRY_SIM_CHAOS=0|1         FERRY_SIM_SEED=<n>
 *   FERRY_STATS=0|1                   FERRY_VERIFY=0|1            FERRY_PINNED_CAP=<bytes>
 *   FERRY_TRACE=<path>                FERRY_TRACE_EVENTS=<n>      (see "Trace" below)
 *   FERRY_PIN_CHUNK=<bytes>           (most bytes pinned per step, default 256 MiB)
 *   FERRY_COMPRESS=0|1                (config.compress; "Compressed streaming" below)
 *   FERRY_HOST_SHARE_HUGE=0|1         (a shared host store's 2 MiB pages, default 1;
 *                                      "Shared host store" below)
 *
 * publish_stats / FERRY_STATS=1: the runtime publishes its counters and a per-group table
 * to POSIX shared memory (/dev/shm/ferry.<pid>.<name>, owner-only) while it lives, for
 * the ferry-stat tool. Cost on acquire/release: a seqlock write of a few dozen words.
 *
 * Verify mode (verify = 1 or FERRY_VERIFY=1): at seal, the checksum of every immutable
 * tensor's host bytes is taken; at each release, the group's immutable tensors are
 * checksummed on the caller's stream and compared when the result is ready. A mismatch
 * (a kernel wrote into frozen weights) makes the next ferry_acquire, ferry_release,
 * ferry_tensor_device_ptr or ferry_synchronize on the runtime fail with
 * FERRY_ERROR_VERIFY_FAILED, naming the group and tensor, and counts in
 * stats.verify_failures; ferry_synchronize first waits for every pending check. Mutable
 * tensors are written back only when their checksum differs from the host copy's
 * (stats.writebacks_skipped counts the others); that decision waits on the host for the
 * checksum, so in verify mode evicting a mutable group is no longer free of host waits.
 *
 * Pinned memory: the host store is pinned in chunks of up to FERRY_PIN_CHUNK bytes, each
 * reported through ferry_pin_progress_set's callback. A chunk ends only where a group's
 * image ends (one larger than FERRY_PIN_CHUNK gets a chunk of its own), so that no copy
 * spans two pinned registrations, which CUDA refuses. At most pinned_cap_bytes
 * (FERRY_PINNED_CAP; 0: 3/4 of physical RAM) are pinned, up to the last image end within
 * the cap. Past the cap ferry_plan fails with
 * FERRY_ERROR_OUT_OF_HOST_MEMORY, or with pageable_fallback = 1 keeps the rest pageable
 * (stats.host_pageable_bytes) and copies it through a pinned staging ring of 2 x 4 MiB
 * (outside the cap): slower, and the host waits for a ring buffer to be free.
 *
 * Compressed streaming (compress = 1 or FERRY_COMPRESS=1): at seal, every immutable bf16
 * and f16 tensor of a group without mutable tensors is encoded on the CPU (a lossless
 * Huffman code of the exponent byte, README "Compressed streaming"); an encoding is kept
 * only where it pays (at most 0.95 of the tensor's bytes). The group's compressed image
 * replaces its raw image in the host store, so the host holds one copy. Each onload
 * copies the compressed image (of a split group: its tail's part) into a staging area of
 * the VRAM budget (one DMA), then decodes it into the group's slot on a decode stream of
 * ferry's, beside the copy stream. The staging area (stats.slab_staging_bytes) is set
 * aside from the budget at plan, before anything is encoded: two buffers (one in
 * synchronous mode) of 0.8 x the largest such group's raw image each; a group whose
 * compressed image is larger stays raw. The re-plan after the first pass (compute-aware
 * planning) counts each group's compressed bytes, so that residency goes to the groups
 * whose copies move the most. ferry_tensor_copy_out of an encoded tensor
 * decodes it on the CPU (and fails with FERRY_ERROR_VERIFY_FAILED if its container is
 * corrupt); ferry_tensor_host_ptr of one fails with FERRY_ERROR_NOT_IN_MEMORY, and so does
 * ferry_tensor_copy_in after a seal that failed later had encoded it. In verify mode a
 * decode that finds a corrupt container fails the next call with
 * FERRY_ERROR_VERIFY_FAILED, naming the group and tensor (releases of compressed groups
 * then wait on the host for their decode); a flipped sign or mantissa bit is caught by
 * the release checksum. Groups on the disk tier or past the pinned cap stay raw, and so
 * does a shared host store (host_share): compress is ignored there.
 */
typedef struct ferry_config {
    size_t struct_size;        /* sizeof(ferry_config), set by ferry_config_init          */
    ferry_backend backend;     /* default FERRY_BACKEND_AUTO                              */
    int32_t device;            /* CUDA device ordinal, default 0                          */
    uint64_t vram_budget;      /* bytes of VRAM ferry may hold, required (> 0)            */
    uint32_t slots_per_class;  /* streaming slots per size class, >= 2, default 2         */
    int32_t synchronous;       /* 1: copies on the caller's stream, no copy stream,
                                  no prefetch. Default 0                                  */
    const char *name;          /* runtime name (copied), default "ferry"                  */
    double sim_h2d_gbps;       /* sim: modeled host-to-device GB/s, 0 = unlimited         */
    double sim_d2h_gbps;       /* sim: modeled device-to-host GB/s, 0 = unlimited         */
    double sim_latency_us;     /* sim: modeled cost of each copy call in microseconds     */
    int32_t sim_chaos;         /* sim: 1 = random delays, poison slot memory on reuse     */
    uint64_t sim_seed;         /* sim: seed of the chaos generator                        */
    int32_t publish_stats;     /* 1: publish live counters for ferry-stat. Default 0      */
    int32_t verify;            /* 1: checksum frozen bytes at release and report changes;
                                  skip writeback of unchanged mutable tensors. Default 0   */
    uint64_t pinned_cap_bytes; /* most host bytes ferry may pin; 0: a safe share of RAM   */
    int32_t pageable_fallback; /* 1: past the pinned cap, keep the rest pageable and copy
                                  it through a small pinned staging ring. Default 0: fail  */
    const char *host_share;    /* name of a host store shared with other processes (see
                                  "Shared host store"); NULL (default): a private store.
                                  FERRY_HOST_SHARE overrides it                           */
    uint32_t host_share_timeout_ms; /* longest wait in ferry_plan for another process to
                                  load the shared store; 0: 30 minutes.
                                  FERRY_HOST_SHARE_TIMEOUT (seconds) overrides it         */
    int32_t compress;          /* 1: at seal, encode immutable bf16/f16 tensors losslessly
                                  and decode them on the device at each onload (see
                                  "Compressed streaming" below). FERRY_COMPRESS=0|1
                                  overrides. Default 0                                    */
} ferry_config;

FERRY_API void ferry_config_init(ferry_config *config);

/* ------------------------------------------------------------------------------------ */
/* Handles                                                                              */
/* ------------------------------------------------------------------------------------ */

typedef struct ferry_runtime ferry_runtime;

/* Group and tensor handles are values. They carry their runtime's identity, so a handle
   used with the wrong runtime, or after its runtime is destroyed, is detected. The zero
   value is never a valid handle. */
typedef struct ferry_group {
    uint64_t id;
} ferry_group;
typedef struct ferry_tensor {
    uint64_t id;
} ferry_tensor;

typedef enum ferry_phase {
    FERRY_PHASE_DEFINE = 0,
    FERRY_PHASE_PLANNED = 1,
    FERRY_PHASE_SEALED = 2
} ferry_phase;

/* Element types, for frameworks that build views of tensors. Sizes in bytes are always
   given explicitly; dtype and shape are carried, and checked against bytes when given. */
typedef enum ferry_dtype {
    FERRY_DTYPE_UNKNOWN = 0, /* raw bytes: shape is not checked */
    FERRY_DTYPE_U8 = 1,
    FERRY_DTYPE_I8 = 2,
    FERRY_DTYPE_I16 = 3,
    FERRY_DTYPE_I32 = 4,
    FERRY_DTYPE_I64 = 5,
    FERRY_DTYPE_F16 = 6,
    FERRY_DTYPE_BF16 = 7,
    FERRY_DTYPE_F32 = 8,
    FERRY_DTYPE_F64 = 9,
    FERRY_DTYPE_BOOL = 10
} ferry_dtype;

#define FERRY_MAX_DIMS 8

/* Tensor flags. */
#define FERRY_TENSOR_MUTABLE 1u /* may be written on the device; written back on eviction,
                                   synchronize and destroy. Default: immutable, never
                                   copied device-to-host. */

/* ------------------------------------------------------------------------------------ */
/* Lifecycle                                                                            */
/* ------------------------------------------------------------------------------------ */

/* Creates a runtime in phase DEFINE. config must not be NULL (a budget is required);
   fields are validated here, each bad one named in the error. */
FERRY_API ferry_status ferry_create(const ferry_config *config, ferry_runtime **out);

/* Waits for in-flight work (device-wide), writes back dirty mutable tensors, frees
   everything. NULL is a no-op returning FERRY_OK. */
FERRY_API ferry_status ferry_destroy(ferry_runtime *runtime);

FERRY_API ferry_status ferry_phase_get(ferry_runtime *runtime, ferry_phase *out);

/* DEFINE. Group names are unique per runtime, 1..255 bytes. */
FERRY_API ferry_status ferry_group_define(ferry_runtime *runtime, const char *name,
                                          ferry_group *out);

/* DEFINE. Asks the planner to keep the group resident before any other, for a group held
   while others are acquired (say a model's embeddings and head, held for its whole
   forward): streamed, it would keep a slot from prefetch. When the budget cannot hold the
   preferred groups and the streaming slots, they are planned like the others. */
FERRY_API ferry_status ferry_group_prefer_resident(ferry_runtime *runtime, ferry_group group);

/* DEFINE or PLANNED (optional). The device time one acquire of `group` computes for, in
   nanoseconds (of modeled time on sim), for the compute-aware planner: it places
   residency, split heads, size classes and slot counts so that each streamed copy hides
   behind the compute before it. Declared for every group before ferry_plan, the plan uses
   them at once; otherwise ferry times each group's compute over the first pass (events
   on cuda, the stream's clock on sim) and re-plans once, at the first ferry_synchronize
   or pass start after it where no group is held, keeping the host store as it is. A
   declared time wins over a timed one. FERRY_COMPUTE_PLAN=0 plans by bytes only. */
FERRY_API ferry_status ferry_group_compute_declare(ferry_runtime *runtime, ferry_group group,
                                                   uint64_t nanoseconds);

/* DEFINE. Tensor names are unique within their group. shape may be NULL when ndim is 0.
   When dtype is not FERRY_DTYPE_UNKNOWN and ndim > 0, the product of shape times the
   dtype's size must equal bytes. flags: 0 or FERRY_TENSOR_MUTABLE. */
FERRY_API ferry_status ferry_tensor_define(ferry_runtime *runtime, ferry_group group,
                                           const char *name, uint64_t bytes,
                                           ferry_dtype dtype, uint32_t ndim,
                                           const int64_t *shape, uint32_t flags,
                                           ferry_tensor *out);

/* DEFINE or PLANNED. The order in which groups are acquired in one pass; a group may
   appear more than once. Prefetch follows it, wrapping from its end to its start. When
   none is declared, the order of the first pass is learned. Declared before plan, the
   planner also weighs groups by how often they appear. */
FERRY_API ferry_status ferry_schedule_declare(ferry_runtime *runtime,
                                              const ferry_group *order, size_t count);

/* DEFINE -> PLANNED. Lays out images, chooses resident groups and size classes,
   allocates the pinned host arena and reserves the VRAM slab. */
FERRY_API ferry_status ferry_plan(ferry_runtime *runtime);

/* PLANNED or SEALED. The tensor's bytes in the host store. Writable in PLANNED; after
   seal, immutable tensors are read-only (a write faults) and a mutable tensor's bytes
   are current only after ferry_synchronize. FERRY_ERROR_NOT_IN_MEMORY for a tensor on
   the disk tier. */
FERRY_API ferry_status ferry_tensor_host_ptr(ferry_runtime *runtime, ferry_tensor tensor,
                                             void **out);

/* PLANNED. Copies bytes into the tensor's host bytes at offset. */
FERRY_API ferry_status ferry_tensor_copy_in(ferry_runtime *runtime, ferry_tensor tensor,
                                            uint64_t offset, const void *src,
                                            uint64_t bytes);

/* PLANNED -> SEALED. Immutable images become read-only; resident groups are onloaded
   (this call waits for those copies). */
FERRY_API ferry_status ferry_seal(ferry_runtime *runtime);

/* SEALED. Makes the group's bytes available to work submitted to `stream` after this
   call: a cudaStream_t on cuda (NULL: the legacy default stream); on sim NULL means the
   calling thread, and the call returns once the bytes are in place. The host does not
   wait when the group was prefetched or is resident. Then prefetches the next groups of
   the schedule. A group may be acquired by several holders at once. A stream that is
   capturing a CUDA graph gets FERRY_ERROR_STREAM_CAPTURING (so does ferry_release): run
   acquire and release outside the capture. */
FERRY_API ferry_status ferry_acquire(ferry_runtime *runtime, ferry_group group,
                                     void *stream);

/* SEALED. Ends one holder's use: the group's slot may be reused once the work submitted
   to `stream` before this call is done. The bytes stay in the slot, so acquiring the
   group again before the slot is reused costs no copy. */
FERRY_API ferry_status ferry_release(ferry_runtime *runtime, ferry_group group,
                                     void *stream);

/* SEALED, while the tensor's group is not acquired. Replaces `bytes` bytes of an
   immutable tensor at `offset` with those at `src` (a LoRA fused into a weight, an adapter
   swapped), without a reload and without a byte copied device-to-host. The tensor stays
   immutable for the pipeline: its host pages are writable only during this call.
   - Host: the call waits on the host for ferry's copies in flight (they may read the old
     bytes; in synchronous mode, for the whole device), then writes the host store.
   - Device, in stream order: a resident group's range is copied again on the copy stream
     after every earlier holder's release, and the next acquires' streams wait for that
     copy; a split group's head likewise; a streamed group's slot stops counting as filled,
     so its next acquire (or prefetch) copies the new image. Work submitted after a later
     ferry_acquire sees only the new bytes.
   - Verify mode: pending checks are drained and the tensor's checksum is taken again.
   - A tensor on the disk tier is read from its file into the host store first and stays
     there, as after a copy-in (host RAM grows by its bytes; stats.host_disk_bytes shrinks).
   - The first update of a resident group of frozen tensors waits once for the whole
     device: until then their releases record nothing. From then on they record an event
     as streamed groups' do.
   Errors, each changing nothing: FERRY_ERROR_GROUP_BUSY while the group is acquired;
   FERRY_ERROR_WRONG_PHASE before seal (use ferry_tensor_copy_in);
   FERRY_ERROR_INVALID_ARGUMENT for a mutable tensor (already writable: write its device
   copy while acquired), a NULL src with bytes > 0, a host store shared with other
   processes (host_share: their device copies would go stale), or a tensor of a compressed
   group (config.compress: its host image is encoded); FERRY_ERROR_OUT_OF_RANGE past the
   tensor's end; FERRY_ERROR_FOREIGN_HANDLE for a tensor of another runtime. bytes == 0
   makes every one of these checks and then does nothing: a way to ask whether an update
   would be taken (ferry.torch asks before a LoRA merge). A reader of the same bytes
   through ferry_tensor_host_ptr on another thread may see them change during the call. */
FERRY_API ferry_status ferry_tensor_update(ferry_runtime *runtime, ferry_tensor tensor,
                                           uint64_t offset, const void *src, uint64_t bytes);

/* SEALED, while the tensor's group is acquired. The tensor's device address. */
FERRY_API ferry_status ferry_tensor_device_ptr(ferry_runtime *runtime, ferry_tensor tensor,
                                               void **out);

/* Any phase. Writes back every dirty mutable tensor of groups not acquired (fails with
   FERRY_ERROR_GROUP_BUSY, changing nothing, if a group with mutable tensors is acquired)
   and waits until ferry's copies are done. Host bytes of mutable tensors are then
   current. */
FERRY_API ferry_status ferry_synchronize(ferry_runtime *runtime);

/* ------------------------------------------------------------------------------------ */
/* Queries                                                                              */
/* ------------------------------------------------------------------------------------ */

/* Counters. Byte and event counts are totals since create. Set struct_size to
   sizeof(ferry_stats) before the call; a smaller (older) struct is filled up to its
   size. Invariant: acquires == resident_hits + hits + misses. */
typedef struct ferry_stats {
    size_t struct_size;
    uint32_t backend;              /* ferry_backend actually used (CUDA or SIM)          */
    uint32_t phase;                /* ferry_phase                                        */
    uint64_t bytes_h2d;            /* host-to-device bytes copied                        */
    uint64_t bytes_d2h;            /* device-to-host bytes copied (writebacks only)      */
    uint64_t onloads;              /* group copies host-to-device (resident included)    */
    uint64_t acquires;
    uint64_t releases;
    uint64_t resident_hits;        /* acquires of resident groups                        */
    uint64_t hits;                 /* acquires of streamed groups already in a slot      */
    uint64_t misses;               /* acquires that had to issue their group's copy      */
    uint64_t prefetches_issued;
    uint64_t prefetches_used;      /* prefetched groups acquired before eviction         */
    uint64_t prefetches_wasted;    /* prefetched groups evicted before any acquire       */
    uint64_t writebacks;           /* mutable tensors copied device-to-host              */
    uint64_t passes;               /* times the schedule's first group was acquired      */
    uint64_t groups;
    uint64_t resident_groups;
    uint64_t size_classes;
    uint64_t streaming_slots;
    uint64_t model_bytes;          /* sum of tensor bytes                                */
    uint64_t streamed_bytes_per_pass; /* planner's figure: bytes a pass must copy         */
    uint64_t vram_budget;
    uint64_t slab_bytes;           /* VRAM reserved: resident + streaming, <= budget     */
    uint64_t slab_resident_bytes;
    uint64_t slab_streaming_bytes;
    uint64_t slab_used_bytes;      /* resident + slots currently holding a group         */
    uint64_t slab_used_peak_bytes;
    uint64_t host_pinned_bytes;    /* pinned host arena                                  */
    uint64_t host_pinned_peak_bytes;
    uint64_t stall_ns;             /* time compute waited on copies, measured while stats
                                      are published or a trace records                  */
    uint64_t writebacks_skipped;   /* mutable tensors found unchanged, not written back  */
    uint64_t verify_checks;        /* releases whose frozen bytes were checksummed       */
    uint64_t verify_failures;      /* ... and found changed                              */
    uint64_t host_pageable_bytes;  /* host store bytes left pageable past the pinned cap */
    uint64_t host_disk_bytes;      /* ... of which on the disk tier: read from the weights
                                      files at each onload, never held in host memory    */
    uint64_t bytes_disk_read;      /* bytes read from weights files at onload (disk tier) */
    /* Compressed streaming (config.compress). bytes_h2d counts the bytes that crossed the
       link: the compressed images of compressed groups.                                 */
    uint64_t compressed_groups;    /* groups whose host image is compressed               */
    uint64_t host_compressed_bytes; /* host store bytes of their compressed images        */
    uint64_t host_compressed_raw_bytes; /* ... and the raw images they stand for; the ratio
                                      is host_compressed_bytes / host_compressed_raw_bytes */
    uint64_t bytes_h2d_compressed; /* of bytes_h2d, compressed images                     */
    uint64_t bytes_decoded;        /* raw bytes the device decoded them into              */
    uint64_t decodes;              /* decodes of compressed images on the device          */
    uint64_t slab_staging_bytes;   /* VRAM staging area for compressed images, within the
                                      budget, outside slab_bytes                         */
    /* Start-up costs, wall time (not modeled on sim).                                    */
    uint64_t host_pin_ns;          /* ferry_plan: allocating and pinning the host store
                                      (cudaHostRegister on cuda; an attached shared store:
                                      registering its mapping)                           */
    uint64_t encode_ns;            /* ferry_seal: encoding compressed images             */
} ferry_stats;

FERRY_API ferry_status ferry_stats_get(ferry_runtime *runtime, ferry_stats *out);

/* Describes a group after plan: resident or not, its size class (-1 when resident),
   image bytes. Any of the out pointers may be NULL. */
FERRY_API ferry_status ferry_group_info(ferry_runtime *runtime, ferry_group group,
                                        int32_t *resident, int32_t *size_class,
                                        uint64_t *image_bytes);

/* After plan: the bytes of a group that stay on the device for the runtime's life. The
   whole image when it is resident; when the planner split it, its head (the tensors kept
   resident), while the tail is streamed into its class's slots; 0 when streamed whole. */
FERRY_API ferry_status ferry_group_resident_bytes(ferry_runtime *runtime, ferry_group group,
                                                  uint64_t *out);

/* Any phase. The groups in definition order: up to `capacity` handles to `out` (NULL
   when capacity is 0), and how many groups there are to *count. */
FERRY_API ferry_status ferry_groups_list(ferry_runtime *runtime, ferry_group *out,
                                         size_t capacity, size_t *count);

/* Any phase. A group's tensors in definition order, the same way. */
FERRY_API ferry_status ferry_group_tensors(ferry_runtime *runtime, ferry_group group,
                                           ferry_tensor *out, size_t capacity, size_t *count);

/* Any phase. A group by name, and a tensor of a group by name (for groups and tensors
   that ferry_weights_define made). FERRY_ERROR_INVALID_ARGUMENT when there is none. */
FERRY_API ferry_status ferry_group_find(ferry_runtime *runtime, const char *name,
                                        ferry_group *out);
FERRY_API ferry_status ferry_tensor_find(ferry_runtime *runtime, ferry_group group,
                                         const char *name, ferry_tensor *out);

/* Any phase. A group's or a tensor's name: valid until the next define call on the
   runtime, and for the runtime's life once it is planned. */
FERRY_API ferry_status ferry_group_name(ferry_runtime *runtime, ferry_group group,
                                        const char **out);
FERRY_API ferry_status ferry_tensor_name(ferry_runtime *runtime, ferry_tensor tensor,
                                         const char **out);

/* ------------------------------------------------------------------------------------ */
/* Trace                                                                                */
/* ------------------------------------------------------------------------------------ */

/*
 * A timeline of ferry's work, as Chrome trace-event JSON that Perfetto (ui.perfetto.dev)
 * and chrome://tracing open. One track per stream: ferry's copy stream (each group's
 * onload, each writeback) and every compute stream that acquired a group (the time it
 * waited for a copy, and each group from acquire to release), plus acquire and release
 * instants. Copy and wait times come from the device: events on cuda, the stream
 * worker's clock on sim.
 *
 * Events go to a bounded ring: when it is full the oldest are overwritten, and the dump
 * reports how many were dropped. Recording allocates nothing on acquire/release.
 *
 * Environment: FERRY_TRACE=<path> starts a trace at ferry_create and dumps it to <path>
 * at ferry_destroy; FERRY_TRACE_EVENTS=<n> sets its capacity.
 */
#define FERRY_TRACE_DEFAULT_EVENTS 65536

/* Any phase. Starts recording into a ring of `capacity` events (0: the default,
   FERRY_TRACE_DEFAULT_EVENTS; at most 2^26), discarding any earlier trace. */
FERRY_API ferry_status ferry_trace_start(ferry_runtime *runtime, uint32_t capacity);

/* Any phase. Stops recording; the events so far are kept for ferry_trace_dump. A no-op
   when no trace is recording. */
FERRY_API ferry_status ferry_trace_stop(ferry_runtime *runtime);

/* Any phase, after ferry_trace_start. Writes the events recorded so far to `path`
   (created or truncated), recording or not. Work still in flight is not included: call
   ferry_synchronize, and let the compute streams finish, to see all of it.
   FERRY_ERROR_WRONG_PHASE when no trace was started; FERRY_ERROR_INVALID_ARGUMENT when
   the file cannot be written. */
FERRY_API ferry_status ferry_trace_dump(ferry_runtime *runtime, const char *path);

/* ------------------------------------------------------------------------------------ */
/* Pinning progress                                                                     */
/* ------------------------------------------------------------------------------------ */

/* Called by ferry_plan on the calling thread after each chunk of the host store is pinned
   (or left pageable past the cap): pinned_bytes and pageable_bytes so far, of
   total_bytes. Must not call ferry on the same runtime. */
typedef void (*ferry_pin_progress_fn)(void *user, uint64_t pinned_bytes,
                                      uint64_t pageable_bytes, uint64_t total_bytes);

/* DEFINE. Sets (fn != NULL) or clears (fn == NULL) the pinning progress callback. */
FERRY_API ferry_status ferry_pin_progress_set(ferry_runtime *runtime,
                                              ferry_pin_progress_fn fn, void *user);

/* ------------------------------------------------------------------------------------ */
/* Weights files: safetensors straight into the host store                             */
/* ------------------------------------------------------------------------------------ */

/*
 * ferry reads safetensors files (one file, or the shards of a *.safetensors.index.json)
 * straight into the host store: no copy of the model in the caller's memory on the way.
 *
 *     ferry_weights_open           any time: reads and checks every header, no tensor bytes
 *     ferry_weights_define         DEFINE (optional): groups and tensors from the files
 *     ferry_plan                   DEFINE -> PLANNED
 *     ferry_weights_load           PLANNED: reads the tensors into the host store
 *     ferry_seal                   PLANNED -> SEALED
 *
 * Headers are untrusted input: each is parsed by a JSON parser and every offset, shape
 * and dtype is checked against the file's size before any byte is read. A bad file fails
 * ferry_weights_open with FERRY_ERROR_FILE_TRUNCATED, FERRY_ERROR_FILE_FORMAT or
 * FERRY_ERROR_IO, naming the file and tensor.
 *
 * Names: a defined tensor is read from the file tensor of the same name (its full name in
 * the file, e.g. "transformer_blocks.0.attn.to_q.weight"), after load_options.name_prefix
 * is prepended. Defined tensors of different groups may read the same file tensor (tied
 * weights).
 *
 * Disk tier: with config.pageable_fallback and a pinned cap below the model, the
 * immutable tensors of images past the pinned prefix are not read at load: every onload
 * reads them from the files (page cache, or O_DIRECT with load_options.direct) through
 * the staging ring. Host RSS then stays near the cap plus the staging ring.
 * stats.host_disk_bytes counts them, stats.bytes_disk_read the bytes read so; the trace
 * shows each read. The files must not change while the runtime lives: a change is found
 * at the next read (FERRY_ERROR_FILE_CHANGED), which fails that onload and leaves the
 * runtime usable: once the file is put back, onloads work again. Verify mode and mutable
 * tensors keep their bytes in memory; ferry_tensor_copy_in into a disk-tier tensor moves
 * it into the host store for good. ferry_weights_define skips zero-byte file tensors, and
 * ferry_weights_load never counts them as unused.
 */
typedef struct ferry_weights ferry_weights;

/* Any time. Opens `path`: a .safetensors file, a *.safetensors.index.json (its shards are
   opened too), or a folder holding model.safetensors[.index.json] (transformers) or
   diffusion_pytorch_model.safetensors[.index.json] (diffusers). Reads and checks every
   header; reads no tensor bytes. Files stay open until ferry_weights_close; a runtime
   that reads from them at onload (disk tier) keeps them open itself, so the weights may
   be closed once loaded. FERRY_ERROR_IO, FERRY_ERROR_FILE_TRUNCATED,
   FERRY_ERROR_FILE_FORMAT (e.g. a name in two shards). */
FERRY_API ferry_status ferry_weights_open(const char *path, ferry_weights **out);

/* Any time. NULL is a no-op returning FERRY_OK. */
FERRY_API ferry_status ferry_weights_close(ferry_weights *weights);

/* One tensor of the files. Strings are owned by the weights and valid until close. */
typedef struct ferry_weights_tensor {
    const char *name;
    const char *file;          /* path of the file holding it                             */
    ferry_dtype dtype;         /* FERRY_DTYPE_UNKNOWN for a safetensors dtype ferry has no
                                  enum for (U16, U32, U64, F8_*): raw bytes               */
    const char *file_dtype;    /* the header's dtype string: "BF16", "F8_E4M3", ...       */
    uint32_t ndim;
    int64_t shape[FERRY_MAX_DIMS];
    uint64_t bytes;
    uint64_t file_offset;      /* of its first byte in the file                           */
} ferry_weights_tensor;

/* Any time. How many tensors the files hold; ferry_weights_tensor_at gives them sorted by
   name (0 <= index < count); ferry_weights_find looks one up by name
   (FERRY_ERROR_INVALID_ARGUMENT when no tensor has that name). */
FERRY_API ferry_status ferry_weights_count(const ferry_weights *weights, uint64_t *out);
FERRY_API ferry_status ferry_weights_tensor_at(const ferry_weights *weights, uint64_t index,
                                               ferry_weights_tensor *out);
FERRY_API ferry_status ferry_weights_find(const ferry_weights *weights, const char *name,
                                          uint64_t *out_index);

/* DEFINE. Defines groups and tensors from the files, for an engine that has no module
   tree of its own. A tensor whose name starts with one of `block_prefixes` followed by a
   decimal block number N and a dot ("transformer_blocks." matches
   "transformer_blocks.7.attn.to_q.weight") goes to the group "<prefix><N>", or with
   blocks_per_group > 1 to "<prefix><first>-<last>" holding that many consecutive blocks;
   every other tensor goes to a group "root", which prefers residency. Groups are defined
   in order of prefix, then block number, root first; tensors by name. Each tensor is
   named by its full name in the files, immutable, of the file's shape and of `dtype`
   (FERRY_DTYPE_UNKNOWN: the file's; else float tensors are converted at load). Fails,
   defining nothing, on a name clash with groups defined already. */
FERRY_API ferry_status ferry_weights_define(ferry_runtime *runtime, const ferry_weights *weights,
                                            const char *const *block_prefixes,
                                            size_t prefix_count, uint32_t blocks_per_group,
                                            ferry_dtype dtype);

/* Called by ferry_weights_load on the calling thread as reading advances. */
typedef void (*ferry_load_progress_fn)(void *user, uint64_t bytes_done, uint64_t bytes_total);

typedef struct ferry_load_options {
    size_t struct_size;        /* sizeof(ferry_load_options), set by ferry_load_options_init */
    const char *name_prefix;   /* prepended to each defined tensor's name to find it in the
                                  files; NULL or "": none                                  */
    const ferry_tensor *tensors; /* the tensors to read; NULL: every defined tensor        */
    size_t tensor_count;
    int32_t allow_unused;      /* 1: tensors of the files that no tensor read are fine;
                                  0 (default): they are a mismatch, listed                 */
    int32_t convert_dtype;     /* 1 (default): a float tensor (F32, BF16, F16) defined with
                                  another float dtype than the file's is converted while
                                  read (round to nearest even); 0: a mismatch            */
    uint32_t threads;          /* reader threads; 0 (default): up to 4, by cores          */
    int32_t direct;            /* 1: O_DIRECT reads, past the page cache, where the file
                                  system allows them (else buffered). Default 0           */
    int32_t disk_tier;         /* 1 (default): immutable tensors past the pinned prefix
                                  stay in the files (see above); 0: read them into the
                                  host store's pageable part                              */
    ferry_load_progress_fn progress; /* NULL: none                                        */
    void *progress_user;
} ferry_load_options;

FERRY_API void ferry_load_options_init(ferry_load_options *options);

/* What a load did. Set struct_size before the call; a smaller struct is filled up to its
   size. */
typedef struct ferry_load_report {
    size_t struct_size;
    uint64_t tensors_read;     /* tensors read into the host store                        */
    uint64_t tensors_converted; /* ... of which converted to another dtype                */
    uint64_t tensors_on_disk;  /* tensors left on the disk tier                           */
    uint64_t bytes_read;       /* file bytes read                                         */
    uint64_t bytes_on_disk;    /* file bytes left on the disk tier                        */
    uint64_t direct_bytes;     /* of bytes_read, read with O_DIRECT                       */
    uint64_t elapsed_ns;
    uint32_t threads;          /* reader threads used                                     */
} ferry_load_report;

/* PLANNED. Reads the chosen tensors from the files into the host store, with `threads`
   parallel positional reads. Before reading anything, every chosen tensor is matched to
   a file tensor: one FERRY_ERROR_WEIGHTS_MISMATCH lists every tensor missing from the
   files, of another shape, or of another dtype (and, without allow_unused, every tensor
   of the files left unread). A failed read (FERRY_ERROR_IO, FERRY_ERROR_FILE_CHANGED)
   leaves the runtime PLANNED and usable, but ferry_seal refuses it (WRONG_PHASE) until a
   load succeeds: nothing half-loaded is sealed. options NULL: the defaults; report may be
   NULL. */
FERRY_API ferry_status ferry_weights_load(ferry_runtime *runtime, const ferry_weights *weights,
                                          const ferry_load_options *options,
                                          ferry_load_report *report);

/* PLANNED or SEALED. Copies `bytes` of the tensor's host bytes at `offset` to `dst`: from
   the host store, or for a tensor on the disk tier from its file. A mutable tensor's bytes
   are current after ferry_synchronize. */
FERRY_API ferry_status ferry_tensor_copy_out(ferry_runtime *runtime, ferry_tensor tensor,
                                             uint64_t offset, void *dst, uint64_t bytes);

/* ------------------------------------------------------------------------------------ */
/* DLPack views, for bindings                                                           */
/* ------------------------------------------------------------------------------------ */

/*
 * A binding that hands a view of ferry's memory (ferry_tensor_device_ptr, the host
 * store) to a DLPack consumer (PyTorch, CuPy, JAX, ...) needs a DLManagedTensor whose
 * deleter the consumer calls when its last tensor of the view dies: at any time, on any
 * thread, and possibly while the process exits, after the binding's own language
 * runtime has shut down. The deleter of a managed tensor made here is a function of
 * libferry that frees the managed tensor and nothing else, so it never calls back into
 * the binding.
 */

/* Any time; thread-safe. Allocates a DLManagedTensor (the unversioned struct of dlpack.h,
   DLPack 0.5 and later) viewing `data` as a C-contiguous array of `ndim`
   (0..FERRY_MAX_DIMS) dims `shape` (copied), of DLPack type code `dtype_code`,
   `dtype_bits` bits and one lane, on DLPack device (`device_type`, `device_id`):
   kDLCPU = 1, kDLCUDA = 2, kDLCUDAHost = 3. strides is NULL and byte_offset 0. The
   memory viewed is not owned: it must stay valid while the consumer uses it (for a
   device address: while the group is acquired). `owner` (may be NULL) is the runtime
   whose memory it views: the tensor counts in ferry_dlpack_live(owner) until deleted,
   so that a binding can keep the runtime until its last view is gone. The caller owns
   *out_managed until a consumer takes it; one never taken is freed by calling its
   deleter, which is libferry code, safe on any thread and at any time, even after
   `owner` was destroyed.
   FERRY_ERROR_INVALID_ARGUMENT for a NULL out_managed, a bad ndim, a NULL shape with
   ndim > 0, a negative dim or 0 bits; FERRY_ERROR_INVALID_HANDLE for a bad owner;
   FERRY_ERROR_OUT_OF_HOST_MEMORY. */
FERRY_API ferry_status ferry_dlpack_wrap(ferry_runtime *owner, void *data,
                                         int32_t device_type, int32_t device_id,
                                         uint8_t dtype_code, uint8_t dtype_bits, int32_t ndim,
                                         const int64_t *shape, void **out_managed);

/* Any time; thread-safe. How many managed tensors made by ferry_dlpack_wrap for `owner`
   (NULL: in the whole process) have not been deleted yet. */
FERRY_API ferry_status ferry_dlpack_live(ferry_runtime *owner, uint64_t *out_live);

/* ------------------------------------------------------------------------------------ */
/* Shared host store: one pinned copy for every process on the host                     */
/* ------------------------------------------------------------------------------------ */

/*
 * With config.host_share = "NAME" (or FERRY_HOST_SHARE=NAME), ferry_plan keeps the host
 * store in the POSIX shared-memory segment /dev/shm/ferry-host.NAME (mode 0600, owned by
 * the calling user), so that N processes of the same model (one per GPU under torchrun,
 * data-parallel replicas, pipeline stages) hold its bytes in host RAM once. NAME is
 * 1..200 bytes of [A-Za-z0-9._-]; anything else (a '/') is FERRY_ERROR_INVALID_ARGUMENT.
 *
 * Roles, decided in ferry_plan:
 * - the LOADER, the first runtime of that name (or one that takes over a load, below),
 *   creates the segment and loads it as a private store is loaded: ferry_tensor_copy_in,
 *   ferry_tensor_host_ptr, ferry_weights_load. Its ferry_seal publishes it.
 * - an ATTACHED runtime waits in ferry_plan until the loader has sealed (at most
 *   host_share_timeout_ms, reporting the loader's progress through
 *   ferry_host_share_progress_set), then maps the segment read-only. Its host bytes are
 *   the loader's: ferry_tensor_copy_in of an immutable tensor is a no-op, and
 *   ferry_weights_load matches the files as usual but reads nothing (bytes_read 0), so
 *   that every process can run the same code. ferry_tensor_host_ptr of an immutable
 *   tensor is read-only from ferry_plan on.
 * Each runtime pins (cudaHostRegister on cuda) its own mapping for its own device, and
 * keeps its own slab, copy stream and stats. Pinning follows the loader: an attached
 * runtime pins the loader's pinned prefix, whatever its own pinned_cap_bytes, so the cap
 * counts the segment's bytes once, not once per process; the rest stays pageable.
 *
 * Mutable tensors are per process: their pages are private copy-on-write mappings of
 * the bytes the loader sealed. Writes to them never reach the segment or the others.
 *
 * Pages: the loader gives the store 2 MiB pages where the kernel allows (MADV_COLLAPSE,
 * Linux 6.1 or later), and every process maps it 2 MiB-aligned, so that attaching faults
 * in and registers 512 times fewer pages; elsewhere it keeps 4 KiB pages.
 * FERRY_HOST_SHARE_HUGE=0 keeps 4 KiB pages (where fresh huge pages are slow to get).
 *
 * The segment records the layout of the store (page size, every group and tensor: name,
 * order, bytes, offsets, dtype, shape, flags, split heads). A runtime whose layout
 * differs gets FERRY_ERROR_HOST_SHARE_LAYOUT naming the first difference. The layout
 * includes the planner's split of groups, which depends on the VRAM budget: give every
 * process the same definitions and the same budget.
 *
 * Lifetime: each runtime is a member of the segment from ferry_plan to ferry_destroy;
 * the last member to leave removes it. A member killed (kill -9) leaves the others
 * running and every byte as it was. When the loader dies (or is destroyed) before
 * sealing, the first waiting runtime to notice takes the load over: its ferry_plan
 * returns with role LOADER, and the bytes loaded so far are discarded (the store reads
 * as zeros again). A segment whose members are all dead is removed by the next runtime
 * that joins it, and by ferry-stat --remove-stale.
 *
 * Limits: the disk tier is off for a shared store (tensors past the pinned prefix stay
 * pageable in the segment); verify mode works per process.
 */
typedef enum ferry_host_share_role {
    FERRY_HOST_SHARE_NONE = 0,     /* a private host store                               */
    FERRY_HOST_SHARE_LOADER = 1,   /* this runtime loads the shared store                */
    FERRY_HOST_SHARE_ATTACHED = 2  /* this runtime uses the bytes another one loaded     */
} ferry_host_share_role;

/* PLANNED or SEALED. This runtime's role in its shared host store. */
FERRY_API ferry_status ferry_host_share_role_get(ferry_runtime *runtime,
                                                 ferry_host_share_role *out);

/* Called by ferry_plan on the calling thread while it waits for the loader, about every
   100 ms: the bytes the loader reports loaded so far, of total_bytes. Must not call ferry
   on the same runtime. */
typedef void (*ferry_host_share_progress_fn)(void *user, uint64_t loaded_bytes,
                                             uint64_t total_bytes);

/* DEFINE. Sets (fn != NULL) or clears (fn == NULL) the wait's progress callback. */
FERRY_API ferry_status ferry_host_share_progress_set(ferry_runtime *runtime,
                                                     ferry_host_share_progress_fn fn,
                                                     void *user);

#ifdef __cplusplus
}
#endif

#endif /* FERRY_FERRY_H */
