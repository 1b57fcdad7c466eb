// core/: ferry::Runtime (definition, plan, seal, the pipeline) and what it plans with.
// ferry::Runtime: the state behind one ferry_runtime. Definition, plan and seal live in
// runtime.cpp; group images in images.cpp; the pipeline (acquire, release, prefetch,
// writeback) in scheduler.cpp; verify mode and recovery in runtime_verify.cpp; the
// trace and stats entry points in runtime_observe.cpp; groups and tensors defined from
// weights files and the load of their bytes in runtime_load.cpp; the disk tier (bytes
// read from the files at onload, copy_out) in disk_tier.cpp; updates of frozen tensors
// in SEALED in update.cpp.
// Every public member takes the runtime's one lock; the C API (c_api.cpp) only
// translates handles and errors.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "device/device.hpp"
#include "base/error.hpp"
#include "ferry/ferry.h"
#include "host/host_store.hpp"
#include "host/shared_store.hpp"
#include "load/weights.hpp"
#include "observe/observer.hpp"
#include "core/compute_clock.hpp"
#include "core/options.hpp"
#include "core/planner.hpp"
#include "core/slab.hpp"
#include "host/staging.hpp"
#include "trust/verifier.hpp"

namespace ferry {

constexpr std::uint64_t kImageAlignment = 256;  // tensor offsets inside a group image
inline std::uint64_t align_up(std::uint64_t n, std::uint64_t to) { return (n + to - 1) / to * to; }

ObserverOptions observer_options(const RuntimeOptions &options);  // runtime_observe.cpp

struct TensorDef {
    std::string name;
    std::uint32_t group = 0;
    std::uint64_t bytes = 0;
    ferry_dtype dtype = FERRY_DTYPE_UNKNOWN;
    std::vector<std::int64_t> shape;
    bool is_mutable = false;
    std::uint64_t offset = 0;  // inside the group image; set at plan
};

struct GroupDef {
    std::string name;
    std::vector<std::uint32_t> tensors;
    std::uint64_t defined_bytes = 0;  // sum of tensor bytes
    bool has_mutable = false;
    bool prefer_resident = false;      // ferry_group_prefer_resident
    // Set at plan. Immutable tensors come first, then (page-aligned, so the immutable
    // pages can be made read-only) the mutable ones. A split group's head tensors come
    // first of all.
    std::uint64_t image_bytes = 0;
    std::uint64_t head_bytes = 0;      // split groups: the image's resident prefix
    std::uint64_t mutable_offset = 0;  // == image_bytes when the group has none
    std::uint64_t host_offset = 0;     // page-aligned offset in the host store
    std::uint32_t disk_tensors = 0;    // of its tensors, on the disk tier (set at load)
};

// A tensor on the disk tier: its bytes stay in a weights file, read at every onload.
struct DiskSource {
    std::shared_ptr<load::WeightSet> set;  // keeps the files open; null: in the host store
    const load::FileTensor *file_tensor = nullptr;
    bool direct = false;                   // O_DIRECT reads (load_options.direct)
};

// What ferry_weights_load asks for, its C struct read (c_api_weights.cpp).
struct LoadRequest {
    std::string name_prefix;
    bool all_tensors = true;              // else `tensors`
    std::vector<std::uint32_t> tensors;
    bool allow_unused = false;
    bool convert_dtype = true;
    std::uint32_t threads = 0;
    bool direct = false;
    bool disk_tier = true;
    std::function<void(std::uint64_t, std::uint64_t)> progress;
};

// A group's compressed image in the host store (compressed_images.cpp): it replaces the
// raw image at the group's host_offset. Pieces in image order: a container per encoded
// tensor, the raw bytes of the others, each at a 256-byte aligned offset.
// A split group's head is a prefix of its tensors: its jobs are a prefix of `jobs`, and
// so are their containers of the compressed image.
struct CompressedImage {
    std::uint64_t bytes = 0;      // of the compressed image; 0: the group is raw
    std::vector<kernels::DecodeJob> jobs;   // in image order, offsets from the image starts
    std::vector<std::uint32_t> job_tensor;  // the tensor each job decodes
    // Made for the group's head_bytes of the plan installed (split_compressed()): the
    // decode tables of the head's jobs and of the tail's, the tail's offsets from the
    // start of its part of the compressed image, [tail_src, bytes), and of the slot.
    std::uint64_t split_at = ~std::uint64_t{0};
    std::uint32_t head_jobs = 0;
    std::uint64_t tail_src = 0;
    void *head_table = nullptr;
    void *tail_table = nullptr;
};

// Where each group is and who holds it, while SEALED.
struct GroupState {
    int size_class = -1;            // -1: resident, in a slot of its own for good
    int slot = -1;                  // index into Runtime::slots_, -1 when not on the device;
                                    // holds the image from GroupDef::head_bytes on
    std::byte *head = nullptr;      // split groups: where the head is, for the runtime's life
    std::uint32_t pins = 0;         // holders right now
    std::uint32_t releases_since_onload = 0;  // chained into the slot's `released`
    bool dirty = false;             // mutable bytes on the device may differ from host
    bool prefetched_unused = false;
    bool refreshed = false;         // resident: an update re-onloaded bytes; acquires wait
                                    // on the slot's `ready` (update.cpp)
    bool track_releases = false;    // resident, frozen: set by its first update, after which
                                    // its releases record `released` for the next update
    std::uint64_t want_mark = 0;    // == Runtime::want_epoch_ while prefetch wants it
    Event host_current = nullptr;   // mutable groups: recorded after each writeback

    bool resident() const { return size_class < 0; }
};

struct SlotState {
    std::byte *device = nullptr;
    std::uint64_t bytes = 0;
    int size_class = -1;            // -1: a resident slot
    int occupant = -1;
    std::uint64_t last_use = 0;
    Event ready = nullptr;          // recorded after the occupant's copy
    Event released = nullptr;       // recorded at the occupant's last release
    bool decoded = false;           // its last fill was a decode on the decode stream
};

class Runtime {
   public:
    explicit Runtime(RuntimeOptions options);
    ~Runtime();
    Runtime(const Runtime &) = delete;
    Runtime &operator=(const Runtime &) = delete;

    std::uint32_t serial() const { return serial_; }
    // Waits for all work on the device and writes back dirty mutable tensors: the first
    // half of destroy, separate so that its failure can be reported. Idempotent.
    void finish();
    ferry_phase phase();

    std::uint32_t define_group(const char *name);
    void prefer_resident(std::uint32_t group);
    std::uint32_t define_tensor(std::uint32_t group, const char *name, std::uint64_t bytes,
                                std::int32_t dtype, std::uint32_t ndim,
                                const std::int64_t *shape, std::uint32_t flags);
    void declare_schedule(const std::vector<std::uint32_t> &order);
    // replan.cpp: a group's compute per acquire, for the compute-aware planner.
    void declare_compute(std::uint32_t group, std::uint64_t nanoseconds);
    void plan();
    void *tensor_host_ptr(std::uint32_t tensor);
    void copy_in(std::uint32_t tensor, std::uint64_t offset, const void *src,
                 std::uint64_t bytes);
    void seal();
    // update.cpp: new host bytes for a frozen tensor in SEALED, device copies made stale
    // in stream order (ferry_tensor_update).
    void update(std::uint32_t tensor, std::uint64_t offset, const void *src,
                std::uint64_t bytes);

    // runtime_load.cpp: groups and tensors from weights files, and their bytes read into
    // the host store (ferry.h "Weights files").
    void define_from_weights(const load::WeightSet &set, const std::vector<std::string> &prefixes,
                             std::uint32_t blocks_per_group, std::int32_t dtype);
    ferry_load_report load_weights(const std::shared_ptr<load::WeightSet> &set,
                                   const LoadRequest &request);
    // disk_tier.cpp: a tensor's host bytes, from the store or from its file.
    void copy_out(std::uint32_t tensor, std::uint64_t offset, void *dst, std::uint64_t bytes);

    // scheduler.cpp
    void acquire(std::uint32_t group, Stream stream);
    void release(std::uint32_t group, Stream stream);
    void *tensor_device_ptr(std::uint32_t tensor);
    void synchronize();

    ferry_stats stats();

    // runtime_observe.cpp: the trace, and the stats segment's name (empty: not published).
    void trace_start(std::uint32_t capacity);
    void trace_stop();
    void trace_dump(const char *path);
    std::string stats_segment_name();
    void group_info(std::uint32_t group, std::int32_t *resident, std::int32_t *size_class,
                    std::uint64_t *image_bytes, std::uint64_t *resident_bytes);

    // lookup.cpp: groups and tensors by name, and their names (ferry_group_find, ...).
    std::vector<std::uint32_t> group_tensors(std::uint32_t group);
    // -1 when there is none.
    std::int64_t find_group(const char *name);
    std::int64_t find_tensor(std::uint32_t group, const char *name);
    // Valid until the next define call (ferry_group_name's promise).
    const std::string &group_name(std::uint32_t group);
    const std::string &tensor_name(std::uint32_t tensor);

    // For handle checks, without the lock: counts only grow.
    std::uint32_t group_count() const { return group_count_.load(std::memory_order_acquire); }
    std::uint32_t tensor_count() const { return tensor_count_.load(std::memory_order_acquire); }

    Device &device() { return *device_; }
    // For tests and tools: the host store (null before plan).
    const HostStore *host_store() const { return host_.get(); }
    // replan.cpp, for tools and tests: the installed plan as the pass-time model's input
    // (planner.hpp), its compute_s left to the caller; a compressed group streams its
    // compressed bytes. Phase SEALED.
    PassModelInput pass_model();
    // How many re-plans changed the placement (replan.cpp); for tests.
    std::uint32_t replans() {
        std::lock_guard<std::mutex> lock(mutex_);
        return replans_;
    }

    // --- trust: verify mode, deferred errors, pinning progress (runtime_verify.cpp) ---
    void set_pin_progress(ferry_pin_progress_fn fn, void *user);

    // host_share.cpp: the shared host store (ferry.h "Shared host store").
    ferry_host_share_role host_share_role();
    void set_host_share_progress(ferry_host_share_progress_fn fn, void *user);
    // The store's layout as the segment records it, one line per group and tensor.
    std::string host_layout_text() const;

   private:
    void require_phase(ferry_phase phase, const char *what) const;
    void lay_out_images();
    std::vector<std::size_t> image_ends() const;
    void lay_out_heads(const Plan &plan);
    std::vector<std::uint64_t> uses_per_pass() const;
    // Bytes of a planned group on the device for good: its image when resident, its head
    // when split, else 0.
    std::uint64_t resident_bytes_of(std::uint32_t group) const {
        return state_[group].resident() ? groups_[group].image_bytes : groups_[group].head_bytes;
    }
    void release_plan_resources() noexcept;
    void open_host_store();  // host_share.cpp: private, or shared when options_.host_share
    bool attached() const { return share_ != nullptr && !share_->loader(); }
    std::uint32_t define_group_locked(const char *name);
    std::uint32_t define_tensor_locked(std::uint32_t group, const char *name, std::uint64_t bytes,
                                       std::int32_t dtype, std::uint32_t ndim,
                                       const std::int64_t *shape, std::uint32_t flags);
    std::string describe_tensor(std::uint32_t tensor) const;
    void require_not_loading(const char *what) const;
    void observe_plan();  // runtime_observe.cpp

    // replan.cpp: the compute-aware plan (planner.hpp) and the re-plan after the first
    // pass, when the compute clock has timed every group.
    PlanInput plan_input() const;
    bool compute_known() const;  // every group's compute declared
    bool compute_declared(std::uint32_t group) const;  // ferry_group_compute_declare'd
    double link_estimate() const;  // bytes/s before any copy is timed
    void install_plan(const Plan &plan);  // state_, slots_, class_slots_ and their stats
    void start_compute_clock();
    void replan_if_due();  // under mutex_; only when no group is held
    void replan();
    Plan current_plan() const;
    // scheduler.cpp, all under mutex_.
    Stream copy_stream_for(Stream caller) const;
    void onload(std::uint32_t group, int slot, Stream stream);
    void onload_head(std::uint32_t group, Stream stream);
    void evict(int slot, Stream stream);
    void write_back(std::uint32_t group, Stream stream);
    void write_back_dirty();
    int choose_victim(int size_class) const;
    void advance_schedule(std::uint32_t group);
    void prefetch();
    void note_slot_use(int slot);
    void require_not_capturing(std::uint32_t group, Stream stream, const char *what);
    std::string describe_group(std::uint32_t group) const;

    // runtime_verify.cpp. Errors found after the call that caused them (a verify mismatch, a
    // failed prefetch) fail the next call; check_deferred() is one branch when none is.
    void check_deferred() {
        if (deferred_.load(std::memory_order_relaxed)) throw_deferred();
    }
    void throw_deferred();
    void defer(const Error &error);
    void prepare_verify();
    void release_verify() noexcept;
    void verify_release(std::uint32_t group, Stream stream);
    void write_back_changed(std::uint32_t group, Stream stream);
    void recover_from_copy_error(const std::vector<std::uint32_t> &written) noexcept;
    void undo_seal() noexcept;
    void copy_image_part(std::uint32_t group, std::byte *dst, std::uint64_t begin,
                         std::uint64_t end, Stream stream);
    void copy_image_staged(std::uint32_t group, std::byte *dst, std::uint64_t begin,
                           std::uint64_t end, Stream stream);
    std::byte *device_address(const TensorDef &tensor) const;

    // compressed_images.cpp (options_.compress), under mutex_.
    bool compress_candidate(const GroupDef &group) const;
    std::uint64_t compress_staging_bytes() const;  // one staging buffer, sized at plan
    std::uint32_t staging_buffers() const { return options_.synchronous ? 1 : 2; }
    void decode_from_staging(std::uint32_t group, std::uint64_t src, std::uint64_t bytes,
                             std::uint64_t decoded, void *table, std::byte *dst,
                             kernels::DecodeResult *result, Stream stream, Event ready,
                             bool timed);
    void synchronize_decodes();
    void prepare_compression();                    // at plan: the staging area
    void encode_images();                          // at seal: compressed images in the store
    struct GroupEncoding;                          // compressed_images.cpp
    void write_images(std::vector<GroupEncoding> &writes);
    bool compressed(std::uint32_t group) const {
        return !compressed_.empty() && compressed_[group].bytes > 0;
    }
    // The job decoding `tensor`, when it is encoded in a compressed image; else null.
    const kernels::DecodeJob *encoded_job(std::uint32_t tensor) const;
    const kernels::DecodeJob *compressed_piece(std::uint32_t tensor) const;
    // Where the tensor's bytes are in the host store: its place in its group's image, or
    // in a compressed image the piece that holds it (a container, or its raw bytes).
    std::byte *host_bytes_of(std::uint32_t tensor) const;
    std::uint64_t encoded_checksum(std::uint32_t tensor) const;
    void split_compressed();  // after a plan is installed: the tables for its heads
    std::vector<std::uint64_t> compressed_link_pieces(std::uint32_t group) const;
    void onload_compressed(std::uint32_t group, SlotState &slot, Stream stream);
    void onload_head_compressed(std::uint32_t group, Stream stream);
    void copy_out_encoded(std::uint32_t tensor, std::uint64_t offset, void *dst,
                          std::uint64_t bytes);
    void check_decode(std::uint32_t group);        // verify mode, at release
    void release_compression() noexcept;

    // disk_tier.cpp, under mutex_.
    void commit_disk_tier(const std::shared_ptr<load::WeightSet> &set,
                          const std::vector<std::pair<std::uint32_t, const load::FileTensor *>> &on_disk,
                          const std::vector<std::uint32_t> &in_memory, bool direct);
    void drop_disk_source(std::uint32_t tensor);
    void move_to_store(std::uint32_t tensor);
    void copy_image_from_disk(std::uint32_t group, std::byte *dst, std::uint64_t begin,
                              std::uint64_t end, Stream stream);
    void fill_from_disk(std::uint32_t group, std::uint64_t begin, std::byte *buffer,
                        std::size_t offset, std::size_t n);

    const std::uint32_t serial_;
    RuntimeOptions options_;
    std::unique_ptr<Device> device_;
    std::unique_ptr<Observer> observer_;  // after device_: destroyed before it
    std::mutex mutex_;
    ferry_phase phase_ = FERRY_PHASE_DEFINE;
    bool finished_ = false;

    std::vector<GroupDef> groups_;
    std::vector<TensorDef> tensors_;
    std::atomic<std::uint32_t> group_count_{0};   // == groups_.size(), published
    std::atomic<std::uint32_t> tensor_count_{0};  // == tensors_.size(), published
    std::vector<std::uint32_t> declared_schedule_;

    // Set at plan. share_ (the segment of a shared store) outlives host_, which maps it.
    std::unique_ptr<SharedStore> share_;
    ShareOptions share_options_;  // progress callback, set before plan
    std::unique_ptr<HostStore> host_;
    std::unique_ptr<Slab> slab_;
    Stream copy_stream_ = nullptr;  // nullptr in synchronous mode
    std::vector<GroupState> state_;
    std::vector<SlotState> slots_;
    std::vector<std::vector<int>> class_slots_;  // streaming slot indices per class

    // Schedule that drives prefetch: declared, else learned on the first pass (until
    // then, definition order).
    std::vector<std::uint32_t> schedule_;
    bool learning_ = false;
    std::vector<std::uint32_t> learned_;
    std::int64_t first_group_ = -1;  // its acquires count passes
    std::size_t cursor_ = 0;         // schedule_ position of the last acquire
    std::uint64_t tick_ = 0;
    std::uint64_t want_epoch_ = 0;
    std::vector<std::uint32_t> wanted_;  // scratch for prefetch, reserved at seal
    std::vector<std::uint32_t> want_left_;  // per class, scratch

    ferry_stats stats_{};

    // Compute-aware planning (replan.cpp). clock_ runs from seal until the re-plan.
    std::vector<double> declared_compute_s_;  // per group once any is declared; < 0: not
    std::unique_ptr<ComputeClock> clock_;
    std::uint32_t replans_ = 0;

    // Trust. staging_ exists only when part of the host store is pageable (host/staging);
    // verifier_ only in verify mode (runtime_verify.cpp).
    std::unique_ptr<StagingRing> staging_;
    std::unique_ptr<Verifier> verifier_;
    std::vector<std::uint64_t> mutable_sum_;    // per tensor: checksum of the host copy
    std::uint64_t *writeback_sums_ = nullptr;   // words for write_back_changed()
    Event sums_ready_ = nullptr;
    std::atomic<bool> deferred_{false};
    std::mutex deferred_mutex_;                 // guards the two below
    ferry_status deferred_status_ = FERRY_OK;
    std::string deferred_message_;
    std::vector<std::uint32_t> written_;        // scratch: groups written back by synchronize
    std::vector<std::uint32_t> check_tensor_;   // scratch for verify_release, sized at seal
    std::vector<const std::byte *> check_device_;
    std::vector<std::uint64_t> check_bytes_;

    // Compressed streaming (compressed_images.cpp). compressed_ is sized at seal.
    std::vector<CompressedImage> compressed_;
    std::byte *zstage_ = nullptr;        // VRAM staging area: kStagingBuffers buffers
    std::uint64_t zstage_bytes_ = 0;     // of one buffer
    std::uint32_t zstage_count_ = 0;     // buffers: 2 with a copy stream, else 1
    std::uint32_t zstage_next_ = 0;      // the buffer the next compressed copy goes to
    Event zstage_free_[2] = {};          // per buffer: recorded after the decode that read it
    Event zstage_full_[2] = {};          // per buffer: recorded after the copy into it
    Stream decode_stream_ = nullptr;     // decodes, beside the copy stream
    kernels::DecodeResult *decode_results_ = nullptr;  // per group: its tail's, its head's

    // Weights files (runtime_load.cpp, disk_tier.cpp). While loading_, the store is being
    // written outside mutex_: seal, copy-in and another load are refused. failed_load_
    // names the files of a load that failed part-way: seal refuses until one succeeds.
    bool loading_ = false;
    std::string failed_load_;
    std::vector<DiskSource> disk_;             // per tensor, sized at load
    std::vector<std::vector<std::uint32_t>> disk_order_;  // per disk group: tensors by offset
    std::unique_ptr<std::byte, void (*)(void *)> disk_scratch_{nullptr, nullptr};
    std::uint64_t disk_fill_bytes_ = 0;        // scratch: file bytes of one staged buffer
};

}  // namespace ferry

// For tests and tools built with the core: the C++ runtime behind a C handle.
ferry::Runtime &ferry_runtime_impl(ferry_runtime *runtime);
