// core/: ferry::Runtime (definition, plan, seal, the pipeline) and what it plans with.
// The runtime's lifecycle: create, define groups and tensors, plan, load, seal, destroy.
#include "core/runtime.hpp"

#include <algorithm>
#include <cstring>
#include <exception>

#include "base/clock.hpp"
#include "base/dtype.hpp"
#include "base/error.hpp"
#include "base/names.hpp"
#include "core/serials.hpp"

namespace ferry {

Runtime::Runtime(RuntimeOptions options)
    : serial_(register_serial()), options_(std::move(options)) {
    try {
        ferry_backend backend = options_.backend;
        if (backend == FERRY_BACKEND_AUTO) {
            backend = cuda_device_available() ? FERRY_BACKEND_CUDA : FERRY_BACKEND_SIM;
        }
        device_ = backend == FERRY_BACKEND_CUDA ? make_cuda_device(options_.device)
                                                : make_sim_device(options_.sim);
        observer_ = std::make_unique<Observer>(*device_, observer_options(options_));
    } catch (...) {
        unregister_serial(serial_);
        throw;
    }
    stats_.backend = device_->backend();
    stats_.vram_budget = options_.vram_budget;
    observer_->publish(stats_, phase_);
}

Runtime::~Runtime() {
    try {
        finish();
    } catch (...) {
        // ferry_destroy calls finish() first and reports its failure; nothing can retry.
    }
    try {
        observer_->finish(stats_);
    } catch (...) {
        // The stats segment or trace file could not be written: nothing is lost.
    }
    release_plan_resources();
    unregister_serial(serial_);
}

void Runtime::finish() {
    std::lock_guard<std::mutex> lock(mutex_);
    if (finished_) return;
    finished_ = true;
    // Everything in flight, the callers' streams included, then the last writebacks. A
    // copy that failed earlier is reported, but the writebacks are still worth trying.
    std::exception_ptr failed;
    try {
        device_->device_synchronize();
    } catch (...) {
        failed = std::current_exception();
    }
    if (phase_ == FERRY_PHASE_SEALED) write_back_dirty();  // scheduler.cpp
    if (failed) std::rethrow_exception(failed);
}

void Runtime::release_plan_resources() noexcept {
    staging_.reset();
    release_verify();  // runtime_verify.cpp
    release_compression();  // compressed_images.cpp
    for (SlotState &slot : slots_) {
        device_->destroy_event(slot.ready);
        device_->destroy_event(slot.released);
    }
    slots_.clear();
    for (GroupState &state : state_) {
        if (state.host_current != nullptr) device_->destroy_event(state.host_current);
    }
    state_.clear();
    class_slots_.clear();
    if (copy_stream_ != nullptr) device_->destroy_stream(copy_stream_);
    copy_stream_ = nullptr;
    slab_.reset();
    host_.reset();
    share_.reset();  // leaves the segment; the last member removes it
}

ferry_phase Runtime::phase() {
    std::lock_guard<std::mutex> lock(mutex_);
    return phase_;
}

void Runtime::require_phase(ferry_phase phase, const char *what) const {
    FERRY_EXPECTS(phase_ == phase, FERRY_ERROR_WRONG_PHASE,
            std::string(what) + " needs phase " + phase_name(phase) + ", runtime '" +
                options_.name + "' is in phase " + phase_name(phase_));
}

std::string Runtime::describe_group(std::uint32_t group) const {
    return "group '" + groups_[group].name + "'";
}

std::string Runtime::describe_tensor(std::uint32_t tensor) const {
    return "tensor '" + tensors_[tensor].name + "' of " + describe_group(tensors_[tensor].group);
}

std::uint32_t Runtime::define_group(const char *name) {
    std::lock_guard<std::mutex> lock(mutex_);
    return define_group_locked(name);
}

std::uint32_t Runtime::define_group_locked(const char *name) {
    require_phase(FERRY_PHASE_DEFINE, "defining a group");
    check_name(name, "group");
    for (const GroupDef &group : groups_) {
        FERRY_EXPECTS(group.name != name, FERRY_ERROR_DUPLICATE_NAME,
                "group '" + std::string(name) + "' is already defined");
    }
    FERRY_EXPECTS(groups_.size() < (1u << 24) - 1, FERRY_ERROR_INVALID_ARGUMENT, "too many groups");
    GroupDef group;
    group.name = name;
    groups_.push_back(std::move(group));
    group_count_.store(static_cast<std::uint32_t>(groups_.size()), std::memory_order_release);
    return static_cast<std::uint32_t>(groups_.size() - 1);
}

void Runtime::prefer_resident(std::uint32_t group) {
    std::lock_guard<std::mutex> lock(mutex_);
    require_phase(FERRY_PHASE_DEFINE, "preferring a group resident");
    groups_[group].prefer_resident = true;
}

std::uint32_t Runtime::define_tensor(std::uint32_t group, const char *name, std::uint64_t bytes,
                                     std::int32_t dtype_value, std::uint32_t ndim,
                                     const std::int64_t *shape, std::uint32_t flags) {
    std::lock_guard<std::mutex> lock(mutex_);
    return define_tensor_locked(group, name, bytes, dtype_value, ndim, shape, flags);
}

std::uint32_t Runtime::define_tensor_locked(std::uint32_t group, const char *name,
                                            std::uint64_t bytes, std::int32_t dtype_value,
                                            std::uint32_t ndim, const std::int64_t *shape,
                                            std::uint32_t flags) {
    require_phase(FERRY_PHASE_DEFINE, "defining a tensor");
    GroupDef &owner = groups_[group];
    check_name(name, "tensor");
    const std::string where = describe_group(group) + ", tensor '" + name + "'";
    for (std::uint32_t t : owner.tensors) {
        FERRY_EXPECTS(tensors_[t].name != name, FERRY_ERROR_DUPLICATE_NAME,
                where + " is already defined in that group");
    }
    FERRY_EXPECTS((flags & ~FERRY_TENSOR_MUTABLE) == 0, FERRY_ERROR_INVALID_ARGUMENT,
            where + ": unknown flags 0x" + std::to_string(flags));
    FERRY_EXPECTS(dtype_value >= FERRY_DTYPE_UNKNOWN && dtype_value <= FERRY_DTYPE_BOOL,
            FERRY_ERROR_INVALID_ARGUMENT,
            where + ": dtype " + std::to_string(dtype_value) + " is not a ferry_dtype");
    const auto dtype = static_cast<ferry_dtype>(dtype_value);
    FERRY_EXPECTS(ndim <= FERRY_MAX_DIMS, FERRY_ERROR_INVALID_ARGUMENT,
            where + ": ndim " + std::to_string(ndim) + " exceeds FERRY_MAX_DIMS (" +
                std::to_string(FERRY_MAX_DIMS) + ")");
    FERRY_EXPECTS(ndim == 0 || shape != nullptr, FERRY_ERROR_INVALID_ARGUMENT,
            where + ": shape is NULL but ndim is " + std::to_string(ndim));
    FERRY_EXPECTS(bytes > 0, FERRY_ERROR_INVALID_SIZE, where + ": bytes is 0");
    const std::uint64_t budget = options_.vram_budget;
    FERRY_EXPECTS(bytes <= budget, FERRY_ERROR_SIZE_TOO_LARGE,
            where + ": " + std::to_string(bytes) + " bytes can never fit the VRAM budget of " +
                std::to_string(budget) + " bytes");
    FERRY_EXPECTS(owner.defined_bytes + bytes <= budget, FERRY_ERROR_SIZE_TOO_LARGE,
            where + ": the group would grow to " + std::to_string(owner.defined_bytes + bytes) +
                " bytes, more than the VRAM budget of " + std::to_string(budget) + " bytes");

    std::vector<std::int64_t> dims(shape, shape + ndim);
    std::uint64_t elements = 1;
    bool overflow = false;
    for (std::int64_t d : dims) {
        FERRY_EXPECTS(d >= 0, FERRY_ERROR_INVALID_SIZE,
                where + ": negative dimension " + std::to_string(d));
        overflow = overflow || __builtin_mul_overflow(elements, static_cast<std::uint64_t>(d),
                                                      &elements);
    }
    FERRY_EXPECTS(!overflow, FERRY_ERROR_INVALID_SIZE,
                  where + ": the shape's element count overflows 64 bits");
    if (dtype != FERRY_DTYPE_UNKNOWN) {
        FERRY_EXPECTS(elements * dtype_bytes(dtype) == bytes, FERRY_ERROR_INVALID_SIZE,
                where + ": shape holds " + std::to_string(elements) + " elements of " +
                    std::to_string(dtype_bytes(dtype)) + " bytes, which is not " +
                    std::to_string(bytes) + " bytes");
    }

    FERRY_EXPECTS(tensors_.size() < (1u << 24) - 1, FERRY_ERROR_INVALID_ARGUMENT, "too many tensors");
    const bool is_mutable = (flags & FERRY_TENSOR_MUTABLE) != 0;
    tensors_.push_back(TensorDef{name, group, bytes, dtype, std::move(dims), is_mutable, 0});
    const auto index = static_cast<std::uint32_t>(tensors_.size() - 1);
    owner.tensors.push_back(index);
    tensor_count_.store(index + 1, std::memory_order_release);
    owner.defined_bytes += bytes;
    owner.has_mutable = owner.has_mutable || is_mutable;
    stats_.model_bytes += bytes;
    return index;
}

void Runtime::declare_schedule(const std::vector<std::uint32_t> &order) {
    std::lock_guard<std::mutex> lock(mutex_);
    FERRY_EXPECTS(phase_ != FERRY_PHASE_SEALED, FERRY_ERROR_WRONG_PHASE,
            "declaring a schedule needs phase DEFINE or PLANNED, runtime '" + options_.name +
                "' is SEALED");
    FERRY_EXPECTS(!order.empty(), FERRY_ERROR_INVALID_ARGUMENT, "the schedule is empty");
    declared_schedule_ = order;
}

std::vector<std::uint64_t> Runtime::uses_per_pass() const {
    std::vector<std::uint64_t> uses(groups_.size(), declared_schedule_.empty() ? 1 : 0);
    for (std::uint32_t g : declared_schedule_) ++uses[g];
    for (std::uint64_t &u : uses) u = std::max<std::uint64_t>(u, 1);  // not in it: once
    return uses;
}

void Runtime::plan() {
    std::lock_guard<std::mutex> lock(mutex_);
    require_phase(FERRY_PHASE_DEFINE, "planning");
    FERRY_EXPECTS(!groups_.empty(), FERRY_ERROR_EMPTY, "no groups are defined");
    for (std::uint32_t g = 0; g < groups_.size(); ++g) {
        FERRY_EXPECTS(!groups_[g].tensors.empty(), FERRY_ERROR_EMPTY,
                describe_group(g) + " has no tensors");
    }
    lay_out_images();

    PlanInput input = plan_input();  // replan.cpp
    Plan plan;
    try {
        if (compute_known() && options_.compute_plan && !options_.synchronous) {
            input.compute_s = declared_compute_s_;  // every group's, declared in DEFINE
            input.link_bytes_per_s = link_estimate();
            plan = make_compute_plan(input);  // spread already, when it is the byte plan
        } else {
            plan = make_plan(input);
            std::vector<std::uint32_t> pass_order = declared_schedule_;
            for (std::uint32_t g = 0; g < groups_.size(); ++g) pass_order.push_back(g);
            spread_residents(plan, input.group_bytes, input.uses_per_pass,
                             input.prefer_resident, pass_order);
        }
    } catch (const Error &error) {
        if (error.status() != FERRY_ERROR_BUDGET_TOO_SMALL || input.budget == options_.vram_budget)
            throw;
        const std::uint64_t staging = staging_buffers() * compress_staging_bytes();
        throw Error(error.status(),
                    std::string(error.what()) + "; that budget is config.vram_budget (" +
                        std::to_string(options_.vram_budget) + " bytes) less the staging area "
                        "for compressed images (config.compress), " + std::to_string(staging) +
                        " bytes" + (staging >= options_.vram_budget ? ", all of the budget" : ""));
    }
    lay_out_heads(plan);

    try {
        // With pageable_fallback the staging ring is pinned first: a limit (RLIMIT_MEMLOCK)
        // that stops pinning the store part-way would refuse the ring after it too.
        if (options_.pin.pageable_fallback) staging_ = std::make_unique<StagingRing>(*device_);
        open_host_store();  // host_share.cpp: a shared one waits here for its loader
        if (host_->pageable_bytes() == 0) staging_.reset();  // every image is pinned
        slab_ = std::make_unique<Slab>(*device_,
                                       carve_slab(plan, input.group_bytes, options_.slots_per_class));
        if (!options_.synchronous) copy_stream_ = device_->create_stream();
        prepare_compression();  // compressed_images.cpp

        state_.assign(groups_.size(), GroupState{});
        for (std::uint32_t g = 0; g < groups_.size(); ++g) {
            if (groups_[g].has_mutable) state_[g].host_current = device_->create_event();
        }
        install_plan(plan);  // replan.cpp
    } catch (...) {
        release_plan_resources();
        throw;
    }

    stats_.groups = groups_.size();
    stats_.slab_bytes = slab_->reserved_bytes();
    stats_.host_pinned_bytes = host_->pinned_bytes();
    stats_.host_pinned_peak_bytes = stats_.host_pinned_bytes;  // pinned once, for good
    stats_.host_pageable_bytes = host_->pageable_bytes();
    phase_ = FERRY_PHASE_PLANNED;
    observe_plan();
}

void *Runtime::tensor_host_ptr(std::uint32_t tensor) {
    std::lock_guard<std::mutex> lock(mutex_);
    FERRY_EXPECTS(phase_ != FERRY_PHASE_DEFINE, FERRY_ERROR_WRONG_PHASE,
            "host bytes exist after ferry_plan; runtime '" + options_.name +
                "' is in phase DEFINE");
    if (!disk_.empty() && disk_[tensor].set != nullptr) {
        const DiskSource &source = disk_[tensor];
        throw Error(FERRY_ERROR_NOT_IN_MEMORY,
                    describe_tensor(tensor) + " is on the disk tier: its bytes stay in '" +
                        source.set->file(source.file_tensor->file).path() + "' (tensor '" +
                        source.file_tensor->name + "'), not in host memory; read them with "
                        "ferry_tensor_copy_out");
    }
    FERRY_EXPECTS(encoded_job(tensor) == nullptr, FERRY_ERROR_NOT_IN_MEMORY,
                  describe_tensor(tensor) + " is compressed in the host store (config.compress): "
                  "it has no raw host bytes; read them with ferry_tensor_copy_out");
    return host_bytes_of(tensor);
}

void Runtime::copy_in(std::uint32_t tensor, std::uint64_t offset, const void *src,
                      std::uint64_t bytes) {
    std::lock_guard<std::mutex> lock(mutex_);
    require_phase(FERRY_PHASE_PLANNED, "copying bytes in");
    require_not_loading("copying bytes in");
    const TensorDef &def = tensors_[tensor];
    FERRY_EXPECTS(src != nullptr || bytes == 0, FERRY_ERROR_INVALID_ARGUMENT, "src is NULL");
    FERRY_EXPECTS(offset <= def.bytes && bytes <= def.bytes - offset, FERRY_ERROR_OUT_OF_RANGE,
            "tensor '" + def.name + "' has " + std::to_string(def.bytes) +
                " bytes; cannot copy " + std::to_string(bytes) + " bytes at offset " +
                std::to_string(offset));
    if (bytes == 0) return;
    if (attached() && !def.is_mutable) return;  // the loader's bytes, shared (ferry.h)
    if (share_ != nullptr) share_->add_loaded(bytes);
    FERRY_EXPECTS(encoded_job(tensor) == nullptr, FERRY_ERROR_NOT_IN_MEMORY,
                  describe_tensor(tensor) + " was compressed in the host store by a seal that "
                  "failed later (config.compress): its bytes cannot be copied in");
    drop_disk_source(tensor);  // copied in: its bytes are the store's from now on
    std::memcpy(host_bytes_of(tensor) + offset, src,
                bytes);
}

void Runtime::seal() {
    std::lock_guard<std::mutex> lock(mutex_);
    require_phase(FERRY_PHASE_PLANNED, "sealing");
    require_not_loading("sealing");
    FERRY_EXPECTS(failed_load_.empty(), FERRY_ERROR_WRONG_PHASE,
                  "a load of weights from '" + failed_load_ + "' failed part-way, so tensors "
                  "it was reading may be incomplete: call ferry_weights_load again (a load "
                  "that succeeds allows sealing)");
    // Onload first, protect last: a failure anywhere leaves the runtime PLANNED as it was,
    // with every host byte writable, no slot filled and no copy counted.
    const std::uint64_t onloads = stats_.onloads;
    const std::uint64_t bytes_h2d = stats_.bytes_h2d;
    try {
        if (options_.verify) prepare_verify();
        const std::uint64_t encode_start = steady_now_ns();
        encode_images();  // compressed_images.cpp: before anything reads the images
        if (zstage_ != nullptr) stats_.encode_ns += steady_now_ns() - encode_start;
        const Stream stream = copy_stream_for(nullptr);
        for (std::uint32_t g = 0; g < groups_.size(); ++g) {
            if (state_[g].resident()) onload(g, state_[g].slot, stream);
            if (state_[g].head != nullptr) onload_head(g, stream);
        }
        device_->stream_synchronize(stream);
        synchronize_decodes();  // compressed_images.cpp
        const std::uint64_t page = HostStore::page_size();
        for (const GroupDef &group : groups_) {
            host_->protect_read_only(group.host_offset, align_up(group.mutable_offset, page));
        }
        if (share_ != nullptr && share_->loader()) share_->publish(host_->base());
    } catch (...) {
        undo_seal();
        stats_.onloads = onloads;
        stats_.bytes_h2d = bytes_h2d;
        throw;
    }
    for (const GroupDef &group : groups_) stats_.slab_used_bytes += group.head_bytes;
    stats_.slab_used_peak_bytes = std::max(stats_.slab_used_peak_bytes, stats_.slab_used_bytes);

    // Prefetch follows the declared schedule; without one it guesses definition order
    // until the first pass has been learned.
    schedule_ = declared_schedule_;
    learning_ = schedule_.empty();
    if (learning_) {
        for (std::uint32_t g = 0; g < groups_.size(); ++g) schedule_.push_back(g);
    } else {
        first_group_ = schedule_.front();
    }
    cursor_ = schedule_.size() - 1;  // the next acquire is expected at position 0
    wanted_.reserve(schedule_.size() + groups_.size());
    learned_.reserve(4 * groups_.size() + 16);  // a pass may use a group more than once
    want_left_.assign(class_slots_.size(), 0);
    start_compute_clock();  // replan.cpp
    phase_ = FERRY_PHASE_SEALED;
    observer_->publish(stats_, phase_);
}

ferry_stats Runtime::stats() {
    std::lock_guard<std::mutex> lock(mutex_);
    if (verifier_ != nullptr) stats_.verify_failures = verifier_->failures();
    observer_->refresh(stats_, phase_);
    ferry_stats out = stats_;
    out.struct_size = sizeof(ferry_stats);
    out.phase = phase_;
    return out;
}

void Runtime::group_info(std::uint32_t group, std::int32_t *resident, std::int32_t *size_class,
                         std::uint64_t *image_bytes, std::uint64_t *resident_bytes) {
    std::lock_guard<std::mutex> lock(mutex_);
    FERRY_EXPECTS(phase_ != FERRY_PHASE_DEFINE, FERRY_ERROR_WRONG_PHASE,
            "group placement is known after ferry_plan; runtime '" + options_.name +
                "' is in phase DEFINE");
    if (resident != nullptr) *resident = state_[group].resident() ? 1 : 0;
    if (size_class != nullptr) *size_class = state_[group].size_class;
    if (image_bytes != nullptr) *image_bytes = groups_[group].image_bytes;
    if (resident_bytes != nullptr) *resident_bytes = resident_bytes_of(group);
}

}  // namespace ferry
