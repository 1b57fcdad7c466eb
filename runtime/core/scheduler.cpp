// core/: ferry::Runtime (definition, plan, seal, the pipeline) and what it plans with.
// The pipeline (DESIGN.md "The pipeline"): acquire, release, prefetch, writeback.
//
// Per slot, two events order everything without the host waiting:
//   ready     recorded after the copy that filled the slot; acquire makes the caller's
//             stream wait on it.
//   released  recorded on the caller's stream at release; the next copy into the slot
//             (and any writeback of its occupant) waits on it.
// Copies go on ferry's copy stream, or on the caller's stream in synchronous mode.
#include <algorithm>
#include <string>

#include "base/error.hpp"
#include "core/runtime.hpp"

namespace ferry {

Stream Runtime::copy_stream_for(Stream caller) const {
    return options_.synchronous ? caller : copy_stream_;
}

void Runtime::note_slot_use(int slot) { slots_[slot].last_use = ++tick_; }

// A capture would record ferry's waits and copies into the caller's graph, where a
// replay repeats stale copies and skips the slot bookkeeping: refused until supported.
void Runtime::require_not_capturing(std::uint32_t group, Stream stream, const char *what) {
    FERRY_EXPECTS(!device_->capturing(stream), FERRY_ERROR_STREAM_CAPTURING,
                  describe_group(group) + ": " + what + " on a stream that is capturing a "
                  "CUDA graph; ferry cannot take part in a capture yet: acquire and release "
                  "outside cudaStreamBeginCapture/EndCapture");
}

void Runtime::write_back(std::uint32_t group, Stream stream) {
    if (verifier_ != nullptr) return write_back_changed(group, stream);  // runtime_verify.cpp
    GroupState &state = state_[group];
    SlotState &slot = slots_[state.slot];
    const GroupDef &def = groups_[group];
    device_->stream_wait(stream, slot.released);
    std::byte *host = host_->base() + def.host_offset;
    for (std::uint32_t t : def.tensors) {
        const TensorDef &tensor = tensors_[t];
        if (!tensor.is_mutable) continue;  // frozen bytes never go device-to-host
        observer_->copy_d2h(group, host + tensor.offset, device_address(tensor), tensor.bytes,
                            stream);
        stats_.bytes_d2h += tensor.bytes;
        ++stats_.writebacks;
    }
    device_->record(state.host_current, stream);
    state.dirty = false;
}

void Runtime::evict(int slot_index, Stream stream) {
    SlotState &slot = slots_[slot_index];
    if (slot.occupant < 0) return;
    const auto group = static_cast<std::uint32_t>(slot.occupant);
    GroupState &state = state_[group];
    if (state.dirty) write_back(group, stream);
    if (state.prefetched_unused) ++stats_.prefetches_wasted;
    state.prefetched_unused = false;
    state.slot = -1;
    slot.occupant = -1;
    stats_.slab_used_bytes -= slot.bytes;
}

void Runtime::onload(std::uint32_t group, int slot_index, Stream stream) {
    SlotState &slot = slots_[slot_index];
    GroupState &state = state_[group];
    const GroupDef &def = groups_[group];
    device_->stream_wait(stream, slot.released);                       // old occupant done
    // A decode into the slot (compressed_images.cpp) may still run on the decode stream,
    // for an occupant evicted unused: the slot's last write lands first.
    if (slot.decoded) device_->stream_wait(stream, slot.ready);
    slot.decoded = compressed(group);
    if (state.host_current != nullptr) device_->stream_wait(stream, state.host_current);
    if (compressed(group)) {
        // compressed_images.cpp: counts its bytes, times its copy for the compute clock,
        // records `ready` after the decode.
        onload_compressed(group, slot, stream);
    } else {
        if (clock_ != nullptr) {
            clock_->copy_begin(*device_, def.image_bytes - def.head_bytes, stream);
        }
        copy_image_part(group, slot.device, def.head_bytes, def.image_bytes, stream);
        stats_.bytes_h2d += def.image_bytes - def.head_bytes;
        if (clock_ != nullptr) clock_->copy_end(*device_, stream);
        device_->record(slot.ready, stream);
    }
    slot.occupant = static_cast<int>(group);
    state.slot = slot_index;
    state.releases_since_onload = 0;
    ++stats_.onloads;
    stats_.slab_used_bytes += slot.bytes;
    stats_.slab_used_peak_bytes = std::max(stats_.slab_used_peak_bytes, stats_.slab_used_bytes);
}

// At seal: a split group's head, copied once. Frozen bytes, never overwritten: no
// event guards it.
void Runtime::onload_head(std::uint32_t group, Stream stream) {
    const GroupDef &def = groups_[group];
    ++stats_.onloads;
    if (compressed(group)) return onload_head_compressed(group, stream);  // counts its bytes
    copy_image_part(group, state_[group].head, 0, def.head_bytes, stream);
    stats_.bytes_h2d += def.head_bytes;
}

// A slot of the class that no holder uses: empty first, then one whose occupant
// prefetch does not want, least recently used first. -1 when every slot is held.
int Runtime::choose_victim(int size_class) const {
    int best = -1;
    int best_rank = 3;
    for (int index : class_slots_[size_class]) {
        const SlotState &slot = slots_[index];
        int rank = 0;
        if (slot.occupant >= 0) {
            const GroupState &occupant = state_[slot.occupant];
            if (occupant.pins > 0) continue;
            rank = occupant.want_mark == want_epoch_ ? 2 : 1;
        }
        if (best < 0 || rank < best_rank ||
            (rank == best_rank && slot.last_use < slots_[best].last_use)) {
            best = index;
            best_rank = rank;
        }
    }
    return best;
}

// Moves the cursor to the acquired group's position and learns the first pass. A learned
// schedule that turns out not to hold an acquired group (say the first pass was a
// warm-up of part of the model) is learned again, starting from that group.
void Runtime::advance_schedule(std::uint32_t group) {
    if (first_group_ < 0) first_group_ = group;
    if (static_cast<std::int64_t>(group) == first_group_) ++stats_.passes;
    if (learning_) {
        if (!learned_.empty() && static_cast<std::int64_t>(group) == first_group_) {
            schedule_ = learned_;  // the first pass is complete
            learning_ = false;
            cursor_ = schedule_.size() - 1;
        } else if (learned_.size() < learned_.capacity()) {
            learned_.push_back(group);
        }
    }
    const std::size_t n = schedule_.size();
    for (std::size_t step = 1; step <= n; ++step) {
        const std::size_t at = (cursor_ + step) % n;
        if (schedule_[at] == group) {
            cursor_ = at;
            return;
        }
    }
    if (!learning_ && declared_schedule_.empty()) {
        learning_ = true;
        learned_.clear();
        learned_.push_back(group);
        first_group_ = group;
    }
}

// Fills free streaming slots with the next groups of the schedule, class by class, on
// the copy stream. Each copy waits for its slot's release, never the host.
void Runtime::prefetch() {
    if (options_.synchronous || class_slots_.empty()) return;
    ++want_epoch_;
    wanted_.clear();
    std::size_t still_wanted = 0;
    for (std::size_t c = 0; c < class_slots_.size(); ++c) {
        std::uint32_t free_slots = 0;
        for (int index : class_slots_[c]) {
            const int occupant = slots_[index].occupant;
            if (occupant < 0 || state_[occupant].pins == 0) ++free_slots;
        }
        want_left_[c] = free_slots;
        still_wanted += free_slots;
    }
    const std::size_t n = schedule_.size();
    for (std::size_t step = 1; step <= n && still_wanted > 0; ++step) {
        const std::uint32_t group = schedule_[(cursor_ + step) % n];
        GroupState &state = state_[group];
        if (state.resident() || state.pins > 0 || state.want_mark == want_epoch_) continue;
        if (want_left_[state.size_class] == 0) continue;
        state.want_mark = want_epoch_;
        --want_left_[state.size_class];
        --still_wanted;
        wanted_.push_back(group);
    }
    for (std::uint32_t group : wanted_) {
        GroupState &state = state_[group];
        if (state.slot >= 0) continue;  // already there
        const int victim = choose_victim(state.size_class);
        if (victim < 0) continue;
        evict(victim, copy_stream_);
        onload(group, victim, copy_stream_);
        state.prefetched_unused = true;
        ++stats_.prefetches_issued;
    }
}

void Runtime::acquire(std::uint32_t group, Stream stream) {
    Event ready = nullptr;
    Observer::Token observed;
    std::atomic<std::uint64_t> *timed = nullptr;  // the compute clock's stamp, while it runs
    std::uint64_t *counter = nullptr;  // the hit/miss count this acquire added to
    bool used_prefetch = false;
    {
        std::lock_guard<std::mutex> lock(mutex_);
        require_phase(FERRY_PHASE_SEALED, "acquiring a group");
        check_deferred();
        require_not_capturing(group, stream, "acquire");
        // A pass starts: the re-plan after the first pass may be due (replan.cpp).
        if (clock_ != nullptr && static_cast<std::int64_t>(group) == first_group_) replan_if_due();
        GroupState &state = state_[group];
        bool missed = false;
        if (!state.resident() && state.slot < 0) {
            const int victim = choose_victim(state.size_class);
            FERRY_EXPECTS(victim >= 0, FERRY_ERROR_NO_FREE_SLOT,
                          describe_group(group) + ": all " +
                              std::to_string(class_slots_[state.size_class].size()) +
                              " slots of its size class " + std::to_string(state.size_class) +
                              " are held by acquired groups; release one first or raise "
                              "slots_per_class");
            const Stream copy = copy_stream_for(stream);
            evict(victim, copy);
            onload(group, victim, copy);  // a consistent state even if a later step fails
            missed = true;
        }
        if (groups_[group].has_mutable) {
            // A holder may write: order it after every earlier holder's work, on any stream.
            device_->stream_wait(stream, slots_[state.slot].released);
        }
        // Committed here; only the wait below can still fail, and it undoes the counts.
        counter = state.resident() ? &stats_.resident_hits
                  : missed       ? &stats_.misses
                                 : &stats_.hits;
        ++*counter;
        used_prefetch = counter == &stats_.hits && state.prefetched_unused;
        if (used_prefetch) ++stats_.prefetches_used;
        if (!state.resident() || state.refreshed) ready = slots_[state.slot].ready;
        state.prefetched_unused = false;
        if (clock_ != nullptr && state.pins == 0) timed = clock_->acquired(group);
        ++state.pins;
        state.dirty = state.dirty || groups_[group].has_mutable;
        ++stats_.acquires;
        note_slot_use(state.slot);
        advance_schedule(group);
        try {
            prefetch();
        } catch (const Error &error) {
            defer(error);  // this acquire succeeded; the next call reports it (runtime_verify.cpp)
        }
        observed = observer_->acquired(group, stream, ready != nullptr, stats_, phase_);
    }
    // The group is pinned, so its slot's ready event cannot be recorded again: waiting
    // outside the lock is safe, and on sim's calling-thread stream it blocks only us.
    try {
        observer_->wait(observed, stream, ready);
        if (timed != nullptr) ComputeClock::stamp(*device_, stream, timed);
    } catch (...) {
        std::lock_guard<std::mutex> lock(mutex_);  // not acquired after all
        --state_[group].pins;
        --*counter;
        --stats_.acquires;
        if (used_prefetch) {
            --stats_.prefetches_used;
            state_[group].prefetched_unused = true;
        }
        throw;
    }
}

void Runtime::release(std::uint32_t group, Stream stream) {
    std::lock_guard<std::mutex> lock(mutex_);
    require_phase(FERRY_PHASE_SEALED, "releasing a group");
    check_deferred();
    require_not_capturing(group, stream, "release");
    GroupState &state = state_[group];
    FERRY_EXPECTS(state.pins > 0, FERRY_ERROR_NOT_ACQUIRED,
                  describe_group(group) +
                      " is not acquired (released more often than acquired)");
    // Verify checks the bytes on the caller's stream before `released` is recorded, so the
    // slot cannot be refilled under the check.
    if (verifier_ != nullptr) {
        check_decode(group);            // compressed_images.cpp
        verify_release(group, stream);  // runtime_verify.cpp
    }
    if (clock_ != nullptr && state.pins == 1) clock_->released(*device_, group, stream);
    // A resident group without mutable tensors is never overwritten nor written back:
    // nothing waits for its release, until an update may rewrite it (update.cpp).
    if (!state.resident() || groups_[group].has_mutable || state.track_releases) {
        SlotState &slot = slots_[state.slot];
        // Chain every release since the slot was filled, on whatever streams, so that
        // `released` covers all the holders' work, not only the last one's.
        if (state.releases_since_onload > 0) device_->stream_wait(stream, slot.released);
        device_->record(slot.released, stream);
        ++state.releases_since_onload;
    }
    --state.pins;
    ++stats_.releases;
    observer_->released(group, stream, state.pins == 0, stats_, phase_);
}

void *Runtime::tensor_device_ptr(std::uint32_t tensor) {
    std::lock_guard<std::mutex> lock(mutex_);
    require_phase(FERRY_PHASE_SEALED, "a device pointer");
    check_deferred();
    const TensorDef &def = tensors_[tensor];
    const GroupState &state = state_[def.group];
    FERRY_EXPECTS(state.pins > 0, FERRY_ERROR_NOT_ACQUIRED,
            "tensor '" + def.name + "': its " + describe_group(def.group) +
                " is not acquired, so it has no device address");
    return device_address(def);
}

// Writes back every dirty group still in a slot, on the copy stream, and waits on the
// host until every writeback has landed, those of evictions included (in synchronous mode
// they ran on callers' streams). The groups written are left in written_.
void Runtime::write_back_dirty() {
    const Stream stream = copy_stream_for(nullptr);
    written_.clear();
    for (std::uint32_t g = 0; g < groups_.size(); ++g) {
        if (!state_[g].dirty || state_[g].slot < 0) continue;
        write_back(g, stream);
        written_.push_back(g);
    }
    device_->stream_synchronize(stream);
    for (GroupState &state : state_) {
        if (state.host_current != nullptr) device_->event_synchronize(state.host_current);
        state.refreshed = false;  // an update's copy, on that stream, is done too
    }
}

void Runtime::synchronize() {
    std::lock_guard<std::mutex> lock(mutex_);
    if (phase_ != FERRY_PHASE_SEALED) return;  // nothing is on the device yet
    if (verifier_ != nullptr) verifier_->drain();  // every pending check is compared
    check_deferred();
    for (std::uint32_t g = 0; g < groups_.size(); ++g) {
        FERRY_EXPECTS(!(groups_[g].has_mutable && state_[g].pins > 0), FERRY_ERROR_GROUP_BUSY,
                describe_group(g) +
                    " has mutable tensors and is still acquired; release it first");
    }
    try {
        write_back_dirty();
    } catch (const Error &error) {
        // A copy failed at completion, or a submission failed: redo what may be lost.
        if (error.status() == FERRY_ERROR_DEVICE) recover_from_copy_error(written_);
        throw;
    }
    if (verifier_ != nullptr) stats_.verify_failures = verifier_->failures();
    if (clock_ != nullptr) replan_if_due();  // replan.cpp
    observer_->publish(stats_, phase_);
}

}  // namespace ferry
