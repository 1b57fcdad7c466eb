// core/: ferry::Runtime (definition, plan, seal, the pipeline) and what it plans with.
// The planner: at plan time, chooses which groups stay resident in VRAM and how the
// streamed ones are split into size classes, so that the bytes copied per pass are as
// few as the budget allows once the streaming slots are set aside. A group given as
// pieces (its tensors) may also be split: a head of pieces stays resident and only the
// tail is streamed, into slots the size of the largest tail.
#pragma once

#include <cstdint>
#include <vector>

namespace ferry {

struct PlanInput {
    std::vector<std::uint64_t> group_bytes;  // image bytes of each group (> 0)
    std::vector<std::uint64_t> uses_per_pass;  // acquires per pass of each group (>= 1);
                                               // empty means 1 for every group
    std::uint64_t budget = 0;                  // VRAM bytes
    std::uint32_t slots_per_class = 2;         // streaming slots per size class (>= 2)
    // Per group, the bytes of the pieces it may be split between a resident head and a
    // streamed tail, summing to its bytes. Empty (for all or for one group): never split.
    std::vector<std::vector<std::uint64_t>> pieces;
    // Per group (or empty): keep it resident before any other, when the budget holds
    // all of them and the rest's smallest plan; else plan them like the others.
    std::vector<bool> prefer_resident;
};

struct Plan {
    std::vector<bool> resident;                // per group
    std::vector<int> size_class;               // per group: class index, -1 when resident
    // Per streamed group: which of its pieces form the resident head (empty: none), and
    // their bytes. The slot holds the tail, group bytes - head_bytes.
    std::vector<std::vector<bool>> in_head;
    std::vector<std::uint64_t> head_bytes;
    std::vector<std::uint64_t> class_slot_bytes;  // per class: bytes of each of its slots
    std::uint64_t resident_bytes = 0;          // resident groups' bytes plus all heads
    std::uint64_t streaming_bytes = 0;         // slots_per_class * sum(class_slot_bytes)
    std::uint64_t streamed_bytes_per_pass = 0;  // sum over streamed groups of tail * uses
};

// The cheapest VRAM footprint any plan can have: the largest group must fit into slots
// of its class, or be resident with the others streamed. Used in error messages.
std::uint64_t minimum_budget(const PlanInput &input);

// Returns a plan with resident_bytes + streaming_bytes <= budget. Throws
// Error(FERRY_ERROR_BUDGET_TOO_SMALL) naming minimum_budget() when none exists.
Plan make_plan(const PlanInput &input);

// Among groups of equal bytes and uses, moves residency so that the resident ones are
// spread evenly over `pass_order` (spread_residents.cpp). Preferred and split groups
// stay where they are.
void spread_residents(Plan &plan, const std::vector<std::uint64_t> &bytes,
                      const std::vector<std::uint64_t> &uses,
                      const std::vector<bool> &preferred,
                      const std::vector<std::uint32_t> &pass_order);

}  // namespace ferry
