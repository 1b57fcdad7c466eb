// core/: ferry::Runtime (definition, plan, seal, the pipeline) and what it plans with.
// Compute-aware planning in the runtime: the planner's input, the compute clock that
// times the first pass, and the re-plan that follows it (DESIGN.md "compute-aware plan").
//
// The re-plan runs once, at the first point where no group is held after every group of
// the schedule was timed: a ferry_synchronize, or the acquire that starts a pass. It
// keeps what the host store holds and how (the images' layout is fixed at plan), and the
// slab ferry reserved at plan; it chooses anew which groups are resident, the heads of
// split groups (a prefix of each image, in its fixed layout), the size classes and their
// slot counts. It waits for the device once, writes back dirty mutable tensors, carves
// the slab again, onloads the new residents and heads, and prefetches the next groups:
// a host wait, once, before the steady state. A plan the model does not find faster by
// kMinGain is left as it is.
#include <algorithm>
#include <string>

#include "base/error.hpp"
#include "base/names.hpp"
#include "core/runtime.hpp"

namespace ferry {
namespace {

constexpr double kMinGain = 0.01;
// Passes after which a clock that has not timed every group stops, re-planning nothing: a
// group of the schedule that is never acquired, or a pass never learned.
constexpr std::uint64_t kMaxTimedPasses = 16;
constexpr double kNominalLinkBytesPerS = 25e9;  // PCIe Gen4 pinned H2D, until timed

}  // namespace

void Runtime::declare_compute(std::uint32_t group, std::uint64_t nanoseconds) {
    std::lock_guard<std::mutex> lock(mutex_);
    FERRY_EXPECTS(phase_ == FERRY_PHASE_DEFINE || phase_ == FERRY_PHASE_PLANNED,
                  FERRY_ERROR_WRONG_PHASE,
                  "declaring compute needs phase DEFINE or PLANNED, runtime '" + options_.name +
                      "' is in phase " + phase_name(phase_));
    declared_compute_s_.resize(groups_.size(), -1.0);
    declared_compute_s_[group] = static_cast<double>(nanoseconds) * 1e-9;
}

bool Runtime::compute_declared(std::uint32_t group) const {
    return group < declared_compute_s_.size() && declared_compute_s_[group] >= 0.0;
}

bool Runtime::compute_known() const {
    if (declared_compute_s_.size() != groups_.size()) return false;
    return std::none_of(declared_compute_s_.begin(), declared_compute_s_.end(),
                        [](double s) { return s < 0.0; });
}

double Runtime::link_estimate() const {
    if (device_->backend() == FERRY_BACKEND_SIM && options_.sim.h2d_gbps > 0.0) {
        return options_.sim.h2d_gbps * 1e9;
    }
    return kNominalLinkBytesPerS;
}

// Groups of frozen tensors may be split at tensor boundaries (planner.hpp): their pieces
// are their tensors, in image order. Groups with mutable tensors move whole, so that
// their writeback is one slot's business.
PlanInput Runtime::plan_input() const {
    PlanInput input;
    for (const GroupDef &group : groups_) input.group_bytes.push_back(group.image_bytes);
    input.uses_per_pass = uses_per_pass();
    // The staging area of compressed images comes out of the budget (compressed_images.cpp).
    const std::uint64_t staging = staging_buffers() * compress_staging_bytes();
    input.budget = options_.vram_budget - std::min(options_.vram_budget, staging);
    input.slots_per_class = options_.slots_per_class;
    for (const GroupDef &group : groups_) {
        std::vector<std::uint32_t> tensors = group.tensors;
        std::stable_sort(tensors.begin(), tensors.end(), [&](std::uint32_t a, std::uint32_t b) {
            return tensors_[a].offset < tensors_[b].offset;
        });
        std::vector<std::uint64_t> pieces;
        if (!group.has_mutable) {
            for (std::uint32_t t : tensors) pieces.push_back(align_up(tensors_[t].bytes, kImageAlignment));
        }
        input.pieces.push_back(std::move(pieces));
        input.prefer_resident.push_back(group.prefer_resident);
    }
    // After seal, a compressed group's copies move its compressed pieces.
    for (std::uint32_t g = 0; g < compressed_.size(); ++g) {
        if (!compressed(g)) continue;
        input.link_pieces.resize(groups_.size());
        input.link_pieces[g] = compressed_link_pieces(g);  // compressed_images.cpp
    }
    input.pass_order = declared_schedule_;
    if (input.pass_order.empty()) {
        for (std::uint32_t g = 0; g < groups_.size(); ++g) input.pass_order.push_back(g);
    }
    input.copy_latency_s =
        device_->backend() == FERRY_BACKEND_SIM ? options_.sim.latency_us * 1e-6 : 0.0;
    return input;
}

// The slots of a plan carved into slab_, with the placement stats. Events are reused
// from the slots it replaces; nothing changes when creating one fails.
void Runtime::install_plan(const Plan &plan) {
    const SlabLayout &layout = slab_->layout();
    std::vector<SlotState> slots;
    std::vector<std::vector<int>> class_slots(plan.class_slot_bytes.size());
    for (std::uint32_t g = 0; g < groups_.size(); ++g) {
        if (!plan.resident[g]) continue;
        SlotState slot;
        slot.device = slab_->at(static_cast<std::uint64_t>(layout.resident_offset[g]));
        slot.bytes = groups_[g].image_bytes;
        slots.push_back(slot);
    }
    for (const StreamingSlot &streaming : layout.streaming) {
        SlotState slot;
        slot.device = slab_->at(streaming.offset);
        slot.bytes = streaming.bytes;
        slot.size_class = streaming.size_class;
        class_slots[streaming.size_class].push_back(static_cast<int>(slots.size()));
        slots.push_back(slot);
    }
    std::size_t reused = 0;
    try {
        for (SlotState &slot : slots) {
            if (reused < slots_.size()) {
                slot.ready = slots_[reused].ready;
                slot.released = slots_[reused++].released;
                continue;
            }
            slot.ready = device_->create_event();
            slot.released = device_->create_event();
        }
    } catch (...) {
        for (std::size_t k = reused; k < slots.size(); ++k) {
            if (slots[k].ready != nullptr) device_->destroy_event(slots[k].ready);
            if (slots[k].released != nullptr) device_->destroy_event(slots[k].released);
        }
        throw;
    }
    for (std::size_t k = reused; k < slots_.size(); ++k) {
        device_->destroy_event(slots_[k].ready);
        device_->destroy_event(slots_[k].released);
    }
    slots_ = std::move(slots);
    class_slots_ = std::move(class_slots);

    int next_resident = 0;
    for (std::uint32_t g = 0; g < groups_.size(); ++g) {
        GroupState &state = state_[g];
        const Event host_current = state.host_current;
        state = GroupState{};
        state.host_current = host_current;
        state.size_class = plan.size_class[g];
        groups_[g].head_bytes = plan.head_bytes[g];
        if (plan.head_bytes[g] > 0) {
            FERRY_EXPECTS(layout.resident_offset[g] >= 0, FERRY_ERROR_INTERNAL,
                          describe_group(g) + ": a split group without a head in the slab");
            state.head = slab_->at(static_cast<std::uint64_t>(layout.resident_offset[g]));
        }
        if (state.resident()) state.slot = next_resident++;
    }
    stats_.resident_groups = static_cast<std::uint64_t>(
        std::count(plan.resident.begin(), plan.resident.end(), true));
    stats_.size_classes = plan.class_slot_bytes.size();
    stats_.streaming_slots = layout.streaming.size();
    stats_.streamed_bytes_per_pass = plan.streamed_bytes_per_pass;
    stats_.slab_resident_bytes = layout.resident_bytes;
    stats_.slab_streaming_bytes = layout.streaming_bytes;
}

// At the end of seal: the first pass is timed, unless nothing streams (nothing to
// re-plan) or copies run on the callers' streams.
void Runtime::start_compute_clock() {
    if (!options_.compute_plan || options_.synchronous || class_slots_.empty()) return;
    const double seconds_per_ns =
        device_->backend() == FERRY_BACKEND_SIM ? 1e-9 / options_.sim.time_scale : 1e-9;
    clock_ = std::make_unique<ComputeClock>(groups_.size(), seconds_per_ns);
}

Plan Runtime::current_plan() const {
    const std::size_t n = groups_.size();
    Plan plan;
    plan.resident.assign(n, false);
    plan.size_class.assign(n, -1);
    plan.in_head.assign(n, {});
    plan.head_bytes.assign(n, 0);
    for (std::size_t g = 0; g < n; ++g) {
        plan.resident[g] = state_[g].resident();
        plan.size_class[g] = state_[g].size_class;
        plan.head_bytes[g] = groups_[g].head_bytes;
        plan.resident_bytes += resident_bytes_of(static_cast<std::uint32_t>(g));
    }
    for (const std::vector<int> &slots : class_slots_) {
        plan.class_slot_bytes.push_back(slots_[slots.front()].bytes);
        plan.class_slots.push_back(static_cast<std::uint32_t>(slots.size()));
        plan.streaming_bytes += slots.size() * slots_[slots.front()].bytes;
    }
    plan.streamed_bytes_per_pass = stats_.streamed_bytes_per_pass;
    return plan;
}

void Runtime::replan_if_due() {
    if (clock_ == nullptr || !clock_->running()) return;
    if (stats_.passes > kMaxTimedPasses) return clock_->stop();
    if (learning_) return;
    for (const GroupState &state : state_) {
        if (state.pins > 0) return;
    }
    clock_->collect(*device_);
    for (std::uint32_t g : schedule_) {
        if (!compute_declared(g) && !clock_->timed(g)) return;
    }
    clock_->stop();
    replan();
}

void Runtime::replan() {
    PlanInput input = plan_input();
    input.pass_order = schedule_;
    input.pieces_in_order = true;  // the images are laid out: a head is a prefix
    input.budget = slab_->reserved_bytes();
    for (std::uint32_t g = 0; g < groups_.size(); ++g) {
        input.compute_s.push_back(compute_declared(g) ? declared_compute_s_[g] : clock_->compute_s(g));
    }
    input.link_bytes_per_s = clock_->link_bytes_per_s();
    if (input.link_bytes_per_s > 0.0) {
        input.copy_latency_s = 0.0;  // in the timed rate already
    } else {
        input.link_bytes_per_s = link_estimate();
    }
    Plan current = current_plan();
    const Plan next = make_compute_plan(input, &current);
    current.modeled_pass_s = modeled_seconds(input, current);
    if (!(next.modeled_pass_s < (1.0 - kMinGain) * current.modeled_pass_s)) return;
    SlabLayout layout = carve_slab(next, input.group_bytes, options_.slots_per_class);
    if (layout.total_bytes() > slab_->reserved_bytes()) return;

    // Nothing is held; wait until nothing runs either, and the host copies are current.
    device_->device_synchronize();
    if (verifier_ != nullptr) verifier_->drain();
    write_back_dirty();
    const SlabLayout before = slab_->layout();
    slab_->relayout(std::move(layout));
    try {
        install_plan(next);
    } catch (...) {
        slab_->relayout(before);
        throw;
    }
    // The slab's contents are the new plan's from here on: onload them as seal does.
    split_compressed();  // compressed_images.cpp
    const Stream stream = copy_stream_for(nullptr);
    stats_.slab_used_bytes = 0;
    for (std::uint32_t g = 0; g < groups_.size(); ++g) {
        if (state_[g].resident()) onload(g, state_[g].slot, stream);
        if (state_[g].head != nullptr) {
            onload_head(g, stream);
            stats_.slab_used_bytes += groups_[g].head_bytes;
        }
    }
    device_->stream_synchronize(stream);
    synchronize_decodes();  // compressed_images.cpp
    ++replans_;
    want_left_.assign(class_slots_.size(), 0);
    observe_plan();
    prefetch();
}

PassModelInput Runtime::pass_model() {
    std::lock_guard<std::mutex> lock(mutex_);
    require_phase(FERRY_PHASE_SEALED, "the pass model");
    PlanInput input = plan_input();
    input.pass_order = schedule_;
    input.link_bytes_per_s = link_estimate();
    // A compressed group's copy moves its compressed tail (plan_input's link_pieces); its
    // decode overlaps the next copy, on the decode stream (compressed_images.cpp).
    return pass_model_input(input, current_plan());
}

}  // namespace ferry
