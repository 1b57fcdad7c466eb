// core/: ferry::Runtime (definition, plan, seal, the pipeline) and what it plans with.
// Trust features of ferry::Runtime: verify mode (frozen bytes checked at release, mutable
// tensors written back only when changed), errors deferred to the next call, recovery
// after a copy that failed at completion, and undoing a seal that failed half-way.
#include <algorithm>
#include <cstdio>
#include <string>

#include "kernels/checksum_ref.hpp"
#include "base/names.hpp"
#include "core/runtime.hpp"

namespace ferry {

void Runtime::set_pin_progress(ferry_pin_progress_fn fn, void *user) {
    std::lock_guard<std::mutex> lock(mutex_);
    require_phase(FERRY_PHASE_DEFINE, "setting the pinning progress callback");
    options_.pin.progress = fn;
    options_.pin.progress_user = user;
}

void Runtime::defer(const Error &error) {
    std::lock_guard<std::mutex> lock(deferred_mutex_);
    if (deferred_status_ == FERRY_OK) {
        deferred_status_ = error.status();
        deferred_message_ = std::string("a prefetch issued by an earlier ferry_acquire failed "
                                        "(the group will be copied when acquired): ") +
                            error.what();
    }
    deferred_.store(true);
}

// Clears the flag first: a failure found after this point sets it again.
void Runtime::throw_deferred() {
    deferred_.store(false);
    ferry_status status = FERRY_OK;
    std::string message;
    {
        std::lock_guard<std::mutex> lock(deferred_mutex_);
        std::swap(status, deferred_status_);
        std::swap(message, deferred_message_);
    }
    if (verifier_ != nullptr) {
        const VerifyFailure failure = verifier_->take_failure();
        if (failure.count > 0) {
            const TensorDef &tensor = tensors_[failure.tensor];
            std::string text = "verify: frozen bytes changed on the device: " +
                               describe_group(tensor.group) + ", tensor '" + tensor.name +
                               "' has checksum " + hex(failure.found) + " at release, " +
                               hex(failure.expected) + " at seal (" +
                               std::to_string(failure.count) +
                               " mismatching tensor(s) since the last report). A kernel "
                               "wrote into an immutable tensor, or a copy into its slot failed";
            if (!message.empty()) text += "; and " + message;
            status = FERRY_ERROR_VERIFY_FAILED;
            message = std::move(text);
        }
    }
    if (status != FERRY_OK) throw Error(status, message);
}

// At seal, before residents are onloaded: the host images' checksums, the verifier and
// the scratch that keeps verify_release free of allocations.
void Runtime::prepare_verify() {
    std::vector<std::uint64_t> expected(tensors_.size(), 0);
    mutable_sum_.assign(tensors_.size(), 0);
    std::size_t most_frozen = 0;
    std::size_t most_mutable = 0;
    for (const GroupDef &group : groups_) {
        std::size_t frozen = 0;
        for (std::uint32_t t : group.tensors) {
            const TensorDef &tensor = tensors_[t];
            // An image compressed by an earlier seal attempt: the sum its encoder stored.
            const std::uint64_t sum =
                encoded_job(t) != nullptr
                    ? encoded_checksum(t)
                    : kernels::checksum_ref(host_bytes_of(t), tensor.bytes);
            if (tensor.is_mutable) {
                mutable_sum_[t] = sum;
            } else {
                expected[t] = sum;
                ++frozen;
            }
        }
        most_frozen = std::max(most_frozen, frozen);
        most_mutable = std::max(most_mutable, group.tensors.size() - frozen);
    }
    check_tensor_.assign(most_frozen, 0);
    check_device_.assign(most_frozen, nullptr);
    check_bytes_.assign(most_frozen, 0);
    verifier_ = std::make_unique<Verifier>(*device_, std::move(expected),
                                           std::max<std::size_t>(1024, 2 * most_frozen),
                                           deferred_);
    if (most_mutable > 0) {
        writeback_sums_ = device_->alloc_checksum_results(most_mutable);
        sums_ready_ = device_->create_event();
    }
}

// Under mutex_, before `released` is recorded: the group's frozen bytes are checksummed
// on the caller's stream after the work that used them.
void Runtime::verify_release(std::uint32_t group, Stream stream) {
    const GroupDef &def = groups_[group];
    std::size_t count = 0;
    for (std::uint32_t t : def.tensors) {
        const TensorDef &tensor = tensors_[t];
        if (tensor.is_mutable) continue;
        check_tensor_[count] = t;
        check_device_[count] = device_address(tensor);
        check_bytes_[count] = tensor.bytes;
        ++count;
    }
    verifier_->check(check_tensor_.data(), check_device_.data(), check_bytes_.data(), count,
                     stream);
    if (count > 0) ++stats_.verify_checks;
}

// write_back() in verify mode: only the mutable tensors whose device checksum differs
// from their host copy's are copied. The host waits for the checksums to decide.
void Runtime::write_back_changed(std::uint32_t group, Stream stream) {
    GroupState &state = state_[group];
    const SlotState &slot = slots_[state.slot];
    const GroupDef &def = groups_[group];
    device_->stream_wait(stream, slot.released);
    std::size_t k = 0;
    for (std::uint32_t t : def.tensors) {
        const TensorDef &tensor = tensors_[t];
        if (tensor.is_mutable) {
            device_->checksum(device_address(tensor), tensor.bytes, writeback_sums_ + k++,
                              stream);
        }
    }
    device_->record(sums_ready_, stream);
    device_->event_synchronize(sums_ready_);
    std::byte *host = host_->base() + def.host_offset;
    k = 0;
    for (std::uint32_t t : def.tensors) {
        const TensorDef &tensor = tensors_[t];
        if (!tensor.is_mutable) continue;
        const std::uint64_t sum = writeback_sums_[k++];
        if (sum == mutable_sum_[t]) {
            ++stats_.writebacks_skipped;
            continue;
        }
        observer_->copy_d2h(group, host + tensor.offset, device_address(tensor), tensor.bytes,
                            stream);
        mutable_sum_[t] = sum;
        stats_.bytes_d2h += tensor.bytes;
        ++stats_.writebacks;
    }
    device_->record(state.host_current, stream);
    state.dirty = false;
}

// A copy failed at completion, and which one is unknown. Writebacks of `written` are
// redone (their bytes are still in their slots), and clean streamed groups are dropped
// from their slots, so that the next acquire copies them again from the intact host image.
void Runtime::recover_from_copy_error(const std::vector<std::uint32_t> &written) noexcept {
    for (std::uint32_t g : written) {
        if (state_[g].slot < 0) continue;
        state_[g].dirty = true;
        if (verifier_ == nullptr) continue;
        const GroupDef &def = groups_[g];
        for (std::uint32_t t : def.tensors) {  // the host copy may hold a failed copy's bytes
            const TensorDef &tensor = tensors_[t];
            if (!tensor.is_mutable) continue;
            mutable_sum_[t] = kernels::checksum_ref(
                host_->base() + def.host_offset + tensor.offset, tensor.bytes);
        }
    }
    for (std::size_t s = 0; s < slots_.size(); ++s) {
        const int occupant = slots_[s].occupant;
        if (slots_[s].size_class < 0 || occupant < 0) continue;
        const GroupState &state = state_[occupant];
        if (state.pins > 0 || state.dirty) continue;
        evict(static_cast<int>(s), nullptr);  // clean: no copy is issued, nothing throws
    }
}

// A seal that failed after protecting images or onloading residents: back to PLANNED as
// it was, so that copy-in works and seal can be retried.
void Runtime::undo_seal() noexcept {
    host_->make_writable();
    for (std::uint32_t g = 0; g < groups_.size(); ++g) {
        if (!state_[g].resident()) continue;
        SlotState &slot = slots_[state_[g].slot];
        if (slot.occupant < 0) continue;
        slot.occupant = -1;
        stats_.slab_used_bytes -= slot.bytes;
    }
    release_verify();
}

// What prepare_verify() made.
void Runtime::release_verify() noexcept {
    verifier_.reset();
    if (writeback_sums_ != nullptr) device_->free_checksum_results(writeback_sums_);
    writeback_sums_ = nullptr;
    if (sums_ready_ != nullptr) device_->destroy_event(sums_ready_);
    sums_ready_ = nullptr;
}

}  // namespace ferry
