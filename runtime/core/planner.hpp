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
    // Per group (or empty), per piece as in `pieces`: the bytes a copy of that piece moves
    // over the link, where it is not its bytes (a compressed image, compressed_images.cpp:
    // the slot holds the raw bytes, the link carries fewer). A group without an entry
    // moves its bytes. The knapsack of whole groups values residency by the link bytes it
    // saves, and the pass model streams link bytes; the choice of split heads and the
    // tie-break between plans still count raw bytes.
    std::vector<std::vector<std::uint64_t>> link_pieces;

    // Compute-aware planning (compute_plan.cpp). Per group, the seconds of compute one
    // acquire holds it for; empty: plan by bytes only, as above.
    std::vector<double> compute_s;
    double link_bytes_per_s = 0.0;     // H2D rate of one streamed copy (> 0 with compute_s)
    double copy_latency_s = 0.0;       // fixed cost of each copy call
    std::vector<std::uint32_t> pass_order;  // the acquires of one pass; empty: 0..n-1
    // Heads must be prefixes of each group's pieces, in the order given: the host
    // images are laid out already (a re-plan), so a tail can only be a suffix.
    bool pieces_in_order = false;
    std::uint32_t max_slots_per_class = 6;  // the most slots the planner gives a class
};

struct Plan {
    std::vector<bool> resident;                // per group
    std::vector<int> size_class;               // per group: class index, -1 when resident
    // Per streamed group: which of its pieces form the resident head (empty: none), and
    // their bytes. The slot holds the tail, group bytes - head_bytes.
    std::vector<std::vector<bool>> in_head;
    std::vector<std::uint64_t> head_bytes;
    std::vector<std::uint64_t> class_slot_bytes;  // per class: bytes of each of its slots
    // Per class: how many slots it has (its prefetch depth + 1); empty: slots_per_class
    // each. Only the compute-aware planner sets it.
    std::vector<std::uint32_t> class_slots;
    std::uint64_t resident_bytes = 0;          // resident groups' bytes plus all heads
    std::uint64_t streaming_bytes = 0;         // sum over classes of slots * slot bytes
    std::uint64_t streamed_bytes_per_pass = 0;  // sum over streamed groups of tail * uses
    double modeled_pass_s = 0.0;  // compute-aware plans: the pass time the model predicts
};

// The cheapest VRAM footprint any plan can have: the largest group must fit into slots
// of its class, or be resident with the others streamed. Used in error messages.
std::uint64_t minimum_budget(const PlanInput &input);

// Returns a plan with resident_bytes + streaming_bytes <= budget. Throws
// Error(FERRY_ERROR_BUDGET_TOO_SMALL) naming minimum_budget() when none exists.
Plan make_plan(const PlanInput &input);

// Compute-aware planning (compute_plan.cpp): the plan whose modeled pass time is the
// shortest among the byte plan above (spread as spread_residents() spreads it) and plans
// that split streamed bytes over the pass in proportion to compute, in one or two size
// classes of 2..max_slots_per_class slots each. With `current` (a re-plan), that plan
// stands in for the byte plan. Requires input.compute_s (one entry per group) and
// input.link_bytes_per_s > 0; throws as make_plan() does. Sets modeled_pass_s.
Plan make_compute_plan(const PlanInput &input, const Plan *current = nullptr);

// The bytes group g's streamed tail under `plan` moves over the link per copy: 0 when it
// is resident; its tail's bytes, or with input.link_pieces those of the tail's pieces
// (plan.in_head's complement, or else the pieces after a prefix of head_bytes).
std::uint64_t streamed_link_bytes(const PlanInput &input, const Plan &plan, std::size_t g);

// The pass-time model (pass_model.cpp): the scheduler's prefetch replayed on a link that
// copies one image at a time, in issue order, each copy after its slot's last release,
// and a compute stream that runs each acquire's compute once its bytes are in place.
// Starts with empty slots and a prefetch as after seal; returns the seconds per pass
// over `passes` passes, that is, the steady state plus the first copy spread over them.
struct PassModelInput {
    std::vector<std::uint32_t> order;          // the acquires of one pass
    std::vector<double> compute_s;             // per group
    std::vector<std::uint64_t> streamed_bytes;  // per group: the bytes its tail's copy moves
                                               // over the link; 0 when resident
    std::vector<int> size_class;               // per group; -1 when resident
    std::vector<std::uint32_t> class_slots;    // per class: its slot count
    double link_bytes_per_s = 0.0;
    double copy_latency_s = 0.0;
};
struct PassModelResult {
    double seconds_per_pass = 0.0;
    double stall_s = 0.0;   // per pass: time compute waited for copies
    std::uint64_t misses = 0;  // per pass: acquires that found their group not copied
};
PassModelResult model_pass(const PassModelInput &input, int passes);

// The model's input for `plan` (slot counts: plan.class_slots, or slots_per_class).
PassModelInput pass_model_input(const PlanInput &input, const Plan &plan);
// model_pass() of that input over the passes the planner scores plans with.
double modeled_seconds(const PlanInput &input, const Plan &plan);

// Among groups of equal bytes and uses, moves residency so that the resident ones are
// spread evenly over `pass_order` (spread_residents.cpp). Preferred and split groups
// stay where they are.
void spread_residents(Plan &plan, const std::vector<std::uint64_t> &bytes,
                      const std::vector<std::uint64_t> &uses,
                      const std::vector<bool> &preferred,
                      const std::vector<std::uint32_t> &pass_order);

}  // namespace ferry
