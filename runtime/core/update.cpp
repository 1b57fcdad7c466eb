// core/: ferry::Runtime (definition, plan, seal, the pipeline) and what it plans with.
// Updates of frozen tensors in SEALED (ferry_tensor_update): new host bytes for a tensor,
// or a range of it, and every device copy of them made stale in stream order. Nothing is
// copied device-to-host, and the tensor stays immutable for the pipeline.
//
//   host store   the range's pages made writable for the memcpy, read-only again after
//   resident     the range re-onloaded on the copy stream after `released`, which covers
//                every holder's work; `ready` recorded after it, and acquires wait on it
//   split head   the same, into the head; the tail's slot is given up, so the next onload
//                (on the copy stream, after the head's copy) records `ready` for both
//   streamed     its slot stops counting as filled: the next acquire copies the image
//   verify       pending checks drained, the tensor's expected checksum taken again
//
// A resident group of frozen tensors records nothing at release until the first update
// (its hot path stays free): that update waits for the whole device once, and from then
// on their releases record `released` as streamed groups' do.
#include <cstring>
#include <string>

#include "base/error.hpp"
#include "base/names.hpp"
#include "core/runtime.hpp"
#include "kernels/checksum_ref.hpp"

namespace ferry {
namespace {

// Makes the pages of [offset, offset + bytes) of the store writable for its life, and
// read-only again at its end.
class WritablePages {
   public:
    WritablePages(HostStore &store, std::uint64_t offset, std::uint64_t bytes)
        : store_(store) {
        const std::uint64_t page = HostStore::page_size();
        begin_ = offset / page * page;
        bytes_ = align_up(offset + bytes, page) - begin_;
        store_.make_writable(begin_, bytes_);
    }
    ~WritablePages() {
        try {
            store_.protect_read_only(begin_, bytes_);
        } catch (...) {
            // mprotect of pages we mapped and just unprotected does not fail; if it did,
            // the bytes stay right, only unguarded.
        }
    }
    WritablePages(const WritablePages &) = delete;
    WritablePages &operator=(const WritablePages &) = delete;

   private:
    HostStore &store_;
    std::uint64_t begin_ = 0;
    std::uint64_t bytes_ = 0;
};

}  // namespace

void Runtime::update(std::uint32_t tensor, std::uint64_t offset, const void *src,
                     std::uint64_t bytes) {
    std::lock_guard<std::mutex> lock(mutex_);
    const TensorDef &def = tensors_[tensor];
    FERRY_EXPECTS(phase_ == FERRY_PHASE_SEALED, FERRY_ERROR_WRONG_PHASE,
                  "updating " + describe_tensor(tensor) + " needs phase SEALED, runtime '" +
                      options_.name + "' is in phase " + phase_name(phase_) +
                      (phase_ == FERRY_PHASE_PLANNED
                           ? ": before seal, write the bytes with ferry_tensor_copy_in"
                           : ": define, plan, load and seal first"));
    check_deferred();
    FERRY_EXPECTS(!def.is_mutable, FERRY_ERROR_INVALID_ARGUMENT,
                  describe_tensor(tensor) + " is mutable, so it is writable already: write "
                  "its device copy (ferry_tensor_device_ptr) while its group is acquired; "
                  "ferry_tensor_update is for immutable tensors");
    FERRY_EXPECTS(src != nullptr || bytes == 0, FERRY_ERROR_INVALID_ARGUMENT, "src is NULL");
    FERRY_EXPECTS(offset <= def.bytes && bytes <= def.bytes - offset, FERRY_ERROR_OUT_OF_RANGE,
                  describe_tensor(tensor) + " has " + std::to_string(def.bytes) +
                      " bytes; cannot update " + std::to_string(bytes) + " bytes at offset " +
                      std::to_string(offset));
    FERRY_EXPECTS(share_ == nullptr, FERRY_ERROR_INVALID_ARGUMENT,
                  describe_tensor(tensor) + ": the host store is shared with other processes "
                  "(host_share '" + share_->name() + "'), whose device copies of it an update "
                  "would leave stale; update a runtime with a private host store");
    const std::uint32_t group = def.group;
    // Its image in the host store is the compressed one (compressed_images.cpp): raw bytes
    // written there would corrupt it, and re-encoding on update is not built.
    FERRY_EXPECTS(!compressed(group), FERRY_ERROR_INVALID_ARGUMENT,
                  describe_tensor(tensor) + ": the group's image is compressed "
                  "(config.compress), and updates of compressed images are not supported; "
                  "run without compress to update its tensors");
    GroupState &state = state_[group];
    FERRY_EXPECTS(state.pins == 0, FERRY_ERROR_GROUP_BUSY,
                  describe_tensor(tensor) + ": the group is acquired (" +
                      std::to_string(state.pins) + " holder(s)), and work in flight may read "
                      "the bytes; release it first");
    if (bytes == 0) return;

    // 1. Nothing may still read the old host bytes: ferry's copies in flight are waited
    // for (in synchronous mode they ran on callers' streams: the whole device), and so
    // are verify's pending checks, which compare with the old checksum.
    if (options_.synchronous) {
        device_->device_synchronize();
    } else {
        device_->stream_synchronize(copy_stream_);
        for (GroupState &other : state_) other.refreshed = false;  // their copies are done
    }
    if (verifier_ != nullptr) verifier_->drain();

    // 2. The host bytes; a disk-tier tensor moves into the store first, as a copy-in does.
    const GroupDef &owner = groups_[group];
    std::byte *host = host_->base() + owner.host_offset + def.offset;
    {
        const bool on_disk = !disk_.empty() && disk_[tensor].set != nullptr;
        WritablePages writable(*host_, owner.host_offset + def.offset + (on_disk ? 0 : offset),
                               on_disk ? def.bytes : bytes);
        if (on_disk) move_to_store(tensor);  // disk_tier.cpp
        std::memcpy(host + offset, src, bytes);
    }
    if (verifier_ != nullptr) {
        verifier_->set_expected(tensor, kernels::checksum_ref(host, def.bytes));
    }

    // 3. The device copies, image bytes [begin, end).
    const std::uint64_t begin = def.offset + offset;
    const std::uint64_t end = begin + bytes;
    const Stream copy = copy_stream_for(nullptr);
    const bool in_head = begin < owner.head_bytes;
    // Work of the group's last release may still read its slot or its head: the copy
    // stream waits for it before it copies or gives the slot up. A later update of the
    // head of a streamed group, finding no slot to wait on, relies on this wait (step 1
    // synchronizes the copy stream).
    const bool waited =
        !options_.synchronous && state.slot >= 0 && state.releases_since_onload > 0;
    if (waited) device_->stream_wait(copy, slots_[state.slot].released);
    if (state.resident() || in_head) {
        std::byte *dst = state.resident() ? slots_[state.slot].device + begin : state.head + begin;
        if (!options_.synchronous && !waited && state.resident() && !owner.has_mutable &&
            !state.track_releases) {
            // Its releases recorded nothing so far: wait for them all, once per group.
            device_->device_synchronize();
            state.track_releases = true;
        }
        copy_image_part(group, dst, begin, end, copy);
        ++stats_.onloads;
        stats_.bytes_h2d += bytes;
        if (state.resident()) {
            SlotState &slot = slots_[state.slot];
            if (options_.synchronous) {
                device_->stream_synchronize(copy);
            } else {
                device_->record(slot.ready, copy);
                state.refreshed = true;
            }
            state.releases_since_onload = 0;
        } else if (options_.synchronous) {
            device_->stream_synchronize(copy);
        }
    }
    // A streamed group (its tail, or the head's partner) is copied whole at its next
    // onload, after the head's copy on the same stream.
    if (!state.resident() && state.slot >= 0) evict(state.slot, copy);
    observer_->publish(stats_, phase_);
}

}  // namespace ferry
