// core/: ferry::Runtime (definition, plan, seal, the pipeline) and what it plans with.
// The slab: the VRAM budget, reserved once (one allocation) and carved into one resident
// slot per resident group and the heads of split groups, followed by the streaming slots
// of each size class (Plan::class_slots of them, or slots_per_class).
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "device/device.hpp"
#include "core/planner.hpp"

namespace ferry {

struct StreamingSlot {
    std::uint64_t offset = 0;  // from the slab's start
    std::uint64_t bytes = 0;
    int size_class = 0;
};

struct SlabLayout {
    std::vector<std::int64_t> resident_offset;  // per group: its slot or head; else -1
    std::vector<StreamingSlot> streaming;       // grouped by class, in class order
    std::uint64_t resident_bytes = 0;
    std::uint64_t streaming_bytes = 0;
    std::uint64_t total_bytes() const { return resident_bytes + streaming_bytes; }
};

// Offsets only; no memory. Every offset is a multiple of 256 when group sizes are.
SlabLayout carve_slab(const Plan &plan, const std::vector<std::uint64_t> &group_bytes,
                      std::uint32_t slots_per_class);

class Slab {
   public:
    Slab(Device &device, SlabLayout layout);
    ~Slab();
    Slab(const Slab &) = delete;
    Slab &operator=(const Slab &) = delete;

    const SlabLayout &layout() const { return layout_; }
    // The bytes reserved: the first layout's total, which later layouts never exceed.
    std::uint64_t reserved_bytes() const { return reserved_; }
    // Carves the same reservation anew (a re-plan, with nothing on the device in use).
    // False, and nothing changed, when the layout needs more than is reserved.
    bool relayout(SlabLayout layout);
    std::byte *base() const { return base_; }
    std::byte *at(std::uint64_t offset) const { return base_ + offset; }

   private:
    Device &device_;
    SlabLayout layout_;
    std::uint64_t reserved_ = 0;
    std::byte *base_ = nullptr;
};

}  // namespace ferry
