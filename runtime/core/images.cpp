// core/: ferry::Runtime (definition, plan, seal, the pipeline) and what it plans with.
// Group images: how each group's tensors are laid out in its image, where the image lies
// in the host store and on the device, and how a part of it is copied there.
#include <string>

#include "base/error.hpp"
#include "core/runtime.hpp"

namespace ferry {

void Runtime::lay_out_images() {
    const std::uint64_t page = HostStore::page_size();
    std::uint64_t host_offset = 0;
    for (GroupDef &group : groups_) {
        group.head_bytes = 0;  // lay_out_heads() splits, after the plan; a retry starts over
        std::uint64_t end = 0;
        for (bool mutable_pass : {false, true}) {
            if (mutable_pass && group.has_mutable) end = align_up(end, page);
            if (mutable_pass) group.mutable_offset = end;
            for (std::uint32_t t : group.tensors) {
                TensorDef &tensor = tensors_[t];
                if (tensor.is_mutable != mutable_pass) continue;
                tensor.offset = align_up(end, kImageAlignment);
                end = tensor.offset + tensor.bytes;
            }
        }
        group.image_bytes = align_up(end, kImageAlignment);
        if (!group.has_mutable) group.mutable_offset = group.image_bytes;
        group.host_offset = host_offset;
        host_offset += align_up(group.image_bytes, page);
    }
}

// Where each image ends in the host store, in store order: the host store pins in chunks
// that end only there.
std::vector<std::size_t> Runtime::image_ends() const {
    const std::uint64_t page = HostStore::page_size();
    std::vector<std::size_t> ends;
    for (const GroupDef &group : groups_) {
        ends.push_back(group.host_offset + align_up(group.image_bytes, page));
    }
    return ends;
}

// A split group's image again, its head tensors first: the planner chose them by their
// aligned sizes, so the head ends exactly at the plan's head_bytes.
void Runtime::lay_out_heads(const Plan &plan) {
    for (std::uint32_t g = 0; g < groups_.size(); ++g) {
        GroupDef &group = groups_[g];
        if (plan.head_bytes[g] == 0) continue;
        std::uint64_t end = 0;
        for (bool head_pass : {true, false}) {
            if (!head_pass) group.head_bytes = end;
            for (std::size_t i = 0; i < group.tensors.size(); ++i) {
                if (plan.in_head[g][i] != head_pass) continue;
                TensorDef &tensor = tensors_[group.tensors[i]];
                tensor.offset = end;
                end = align_up(end + tensor.bytes, kImageAlignment);
            }
        }
        FERRY_EXPECTS(group.head_bytes == plan.head_bytes[g] && end == group.image_bytes,
                      FERRY_ERROR_INTERNAL, describe_group(g) + ": the split layout disagrees "
                      "with the plan");
    }
}

// Bytes [begin, end) of a group's host image to `dst`, in one copy. Pinning covers a
// prefix of the host store: only parts that reach past it need the staging ring (and
// its host waits).
void Runtime::copy_image_part(std::uint32_t group, std::byte *dst, std::uint64_t begin,
                              std::uint64_t end, Stream stream) {
    const GroupDef &def = groups_[group];
    if (def.host_offset + end <= host_->pinned_bytes()) {
        observer_->copy_h2d(group, dst, host_->base() + def.host_offset + begin, end - begin,
                            stream);
    } else {
        copy_image_staged(group, dst, begin, end, stream);  // pageable bytes
    }
}

// Where a tensor of an acquired (or resident) group is on the device.
std::byte *Runtime::device_address(const TensorDef &tensor) const {
    const GroupDef &def = groups_[tensor.group];
    const GroupState &state = state_[tensor.group];
    if (tensor.offset < def.head_bytes) return state.head + tensor.offset;
    return slots_[state.slot].device + (tensor.offset - def.head_bytes);
}

// copy_image_part() for an image past the pinned prefix (each image is wholly pinned or
// wholly pageable); one with disk-tier tensors is read from its files (disk_tier.cpp). The CPU reads the host bytes now, so a writeback still in flight to
// them must land first.
void Runtime::copy_image_staged(std::uint32_t group, std::byte *dst, std::uint64_t begin,
                                std::uint64_t end, Stream stream) {
    const GroupDef &def = groups_[group];
    const Event host_current = state_[group].host_current;
    if (host_current != nullptr) device_->event_synchronize(host_current);
    if (def.disk_tensors > 0) return copy_image_from_disk(group, dst, begin, end, stream);
    staging_->copy_h2d(dst, host_->base() + def.host_offset + begin, end - begin, stream);
}

}  // namespace ferry
