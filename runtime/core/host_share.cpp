// core/: ferry::Runtime (definition, plan, seal, the pipeline) and what it plans with.
// The shared host store (ferry.h "Shared host store"): the layout text the segment
// records, the private pages of mutable tensors, and the store opened at plan, in a
// segment of its own (the loader) or over another process's (attached).
#include <string>
#include <utility>
#include <vector>

#include "base/clock.hpp"
#include "base/dtype.hpp"
#include "base/error.hpp"
#include "core/runtime.hpp"

namespace ferry {

// One line per group and tensor, in store order: what two processes must agree on for
// one's bytes to be right for the other. Split heads are in the tensors' offsets.
std::string Runtime::host_layout_text() const {
    const std::uint64_t page = HostStore::page_size();
    std::uint64_t bytes = 0;
    for (const GroupDef &group : groups_) bytes = group.host_offset + align_up(group.image_bytes, page);
    std::string text = "ferry host store layout 1: page " + std::to_string(page) +
                       ", alignment " + std::to_string(kImageAlignment) + "\n";
    for (std::uint32_t g = 0; g < groups_.size(); ++g) {
        const GroupDef &group = groups_[g];
        text += "group " + std::to_string(g) + " '" + group.name + "', " +
                std::to_string(group.tensors.size()) + " tensors\n";
        for (std::uint32_t t : group.tensors) {
            const TensorDef &tensor = tensors_[t];
            std::string shape = "[";
            for (std::size_t i = 0; i < tensor.shape.size(); ++i) {
                shape += (i > 0 ? ", " : "") + std::to_string(tensor.shape[i]);
            }
            text += "tensor '" + tensor.name + "' of group '" + group.name + "': " +
                    std::to_string(tensor.bytes) + " bytes at " + std::to_string(tensor.offset) +
                    ", " + dtype_name(tensor.dtype) + " " + shape + "], " +
                    (tensor.is_mutable ? "mutable" : "immutable") + "\n";
        }
        // After its tensors, so that a tensor that differs is named before what follows.
        text += "image of group '" + group.name + "': " + std::to_string(group.image_bytes) +
                " bytes at " + std::to_string(group.host_offset) + ", mutable from " +
                std::to_string(group.mutable_offset) + ", head " +
                std::to_string(group.head_bytes) + "\n";
    }
    // The totals last: a first difference names the group or tensor where it starts.
    return text + "total: " + std::to_string(groups_.size()) + " groups, " +
           std::to_string(tensors_.size()) + " tensors, " + std::to_string(bytes) + " bytes\n";
}

void Runtime::open_host_store() {
    const std::vector<std::size_t> ends = image_ends();
    if (options_.host_share.empty()) {
        const std::uint64_t start = steady_now_ns();
        host_ = std::make_unique<HostStore>(*device_, ends, options_.pin);
        stats_.host_pin_ns = steady_now_ns() - start;
        return;
    }
    // Mutable tensors' pages: private in every process (copy-on-write of the sealed bytes).
    const std::uint64_t page = HostStore::page_size();
    std::vector<std::pair<std::size_t, std::size_t>> private_ranges;
    for (const GroupDef &group : groups_) {
        if (!group.has_mutable) continue;
        const std::uint64_t begin = group.host_offset + align_up(group.mutable_offset, page);
        const std::uint64_t end = group.host_offset + align_up(group.image_bytes, page);
        if (end > begin) private_ranges.emplace_back(begin, end - begin);
    }
    ShareOptions share = share_options_;
    share.name = options_.host_share;
    share.runtime_name = options_.name;
    share.timeout_ns = options_.host_share_timeout_ns;
    share.huge_pages = options_.host_share_huge;
    try {
        share_ = std::make_unique<SharedStore>(share, host_layout_text(), ends.back());
        std::byte *base = share_->map(private_ranges);
        PinPolicy pin = options_.pin;
        if (!share_->loader()) {
            // The pinned cap is the segment's: pin what the loader pinned, whatever this
            // runtime's own cap, and copy the rest through the staging ring.
            const std::uint64_t pinned = share_->loader_pinned_bytes();
            pin.cap_bytes = pinned > 0 ? pinned : 1;
            if (pinned < ends.back()) {
                pin.pageable_fallback = true;
                if (staging_ == nullptr) staging_ = std::make_unique<StagingRing>(*device_);
            }
        }
        const std::uint64_t start = steady_now_ns();
        host_ = std::make_unique<HostStore>(*device_, ends, pin, base);
        stats_.host_pin_ns = steady_now_ns() - start;
        if (share_->loader()) share_->set_pinned_bytes(host_->pinned_bytes());
    } catch (...) {
        host_.reset();
        share_.reset();
        throw;
    }
}

ferry_host_share_role Runtime::host_share_role() {
    std::lock_guard<std::mutex> lock(mutex_);
    FERRY_EXPECTS(phase_ != FERRY_PHASE_DEFINE, FERRY_ERROR_WRONG_PHASE,
                  "the host share role is known after ferry_plan; runtime '" + options_.name +
                      "' is in phase DEFINE");
    if (share_ == nullptr) return FERRY_HOST_SHARE_NONE;
    return share_->loader() ? FERRY_HOST_SHARE_LOADER : FERRY_HOST_SHARE_ATTACHED;
}

void Runtime::set_host_share_progress(ferry_host_share_progress_fn fn, void *user) {
    std::lock_guard<std::mutex> lock(mutex_);
    require_phase(FERRY_PHASE_DEFINE, "setting the host share progress callback");
    share_options_.progress = fn;
    share_options_.progress_user = user;
}

}  // namespace ferry
