// core/: ferry::Runtime (definition, plan, seal, the pipeline) and what it plans with.
// The slab (slab.hpp): one reservation of the VRAM budget, carved into slots.
#include "core/slab.hpp"

namespace ferry {

SlabLayout carve_slab(const Plan &plan, const std::vector<std::uint64_t> &group_bytes,
                      std::uint32_t slots_per_class) {
    SlabLayout layout;
    layout.resident_offset.assign(group_bytes.size(), -1);
    std::uint64_t offset = 0;
    for (std::size_t g = 0; g < group_bytes.size(); ++g) {
        const std::uint64_t head = g < plan.head_bytes.size() ? plan.head_bytes[g] : 0;
        const std::uint64_t bytes = plan.resident[g] ? group_bytes[g] : head;
        if (bytes == 0) continue;
        layout.resident_offset[g] = static_cast<std::int64_t>(offset);
        offset += bytes;
    }
    layout.resident_bytes = offset;
    for (std::size_t c = 0; c < plan.class_slot_bytes.size(); ++c) {
        const std::uint32_t slots =
            c < plan.class_slots.size() ? plan.class_slots[c] : slots_per_class;
        for (std::uint32_t k = 0; k < slots; ++k) {
            layout.streaming.push_back({offset, plan.class_slot_bytes[c], static_cast<int>(c)});
            offset += plan.class_slot_bytes[c];
        }
    }
    layout.streaming_bytes = offset - layout.resident_bytes;
    return layout;
}

Slab::Slab(Device &device, SlabLayout layout)
    : device_(device), layout_(std::move(layout)), reserved_(layout_.total_bytes()) {
    if (reserved_ > 0) {
        base_ = static_cast<std::byte *>(device_.reserve(layout_.total_bytes()));
    }
}

bool Slab::relayout(SlabLayout layout) {
    if (layout.total_bytes() > reserved_) return false;
    layout_ = std::move(layout);
    return true;
}

Slab::~Slab() {
    if (base_ != nullptr) device_.unreserve(base_);
}

}  // namespace ferry
