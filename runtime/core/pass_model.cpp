// core/: ferry::Runtime (definition, plan, seal, the pipeline) and what it plans with.
// The pass-time model (planner.hpp). The host side is the scheduler's (scheduler.cpp):
// acquire, a miss copy when the group is not in a slot, prefetch of the next groups of
// each class into free slots, victims chosen empty first, then unwanted, least recently
// used. The host never waits, so every call of a pass is issued before the device runs
// it; the device side is then two in-order queues:
//   link     copies in issue order, one at a time; each starts when the previous one
//            ends and its slot's previous occupant was released; latency + bytes / rate.
//   compute  the acquires in pass order; each starts when the previous one ends and its
//            group's copy is in place.
#include <algorithm>

#include "base/error.hpp"
#include "core/planner.hpp"

namespace ferry {
namespace {

struct ModelSlot {
    int occupant = -1;
    std::uint64_t last_use = 0;
    double ready = 0.0;     // when the occupant's copy ended
    double released = 0.0;  // when the occupant's last compute ended
};

class Replay {
   public:
    explicit Replay(const PassModelInput &in) : in_(in) {
        const std::size_t n = in.compute_s.size();
        slot_of_.assign(n, -1);
        want_mark_.assign(n, 0);
        class_slots_.resize(in.class_slots.size());
        for (std::size_t c = 0; c < in.class_slots.size(); ++c) {
            for (std::uint32_t k = 0; k < in.class_slots[c]; ++k) {
                class_slots_[c].push_back(static_cast<int>(slots_.size()));
                slots_.emplace_back();
            }
        }
        want_left_.assign(in.class_slots.size(), 0);
    }

    PassModelResult run(int passes) {
        const std::size_t n = in_.order.size();
        cursor_ = n - 1;
        prefetch(-1);  // at seal (or a re-plan), before the first acquire
        PassModelResult out;
        for (int p = 0; p < passes; ++p) {
            for (std::size_t i = 0; i < n; ++i) {
                const std::uint32_t g = in_.order[i];
                cursor_ = i;
                const bool streamed = in_.size_class[g] >= 0;
                double ready = 0.0;
                if (streamed) {
                    if (slot_of_[g] < 0) {  // a miss: copied now, the compute waits
                        ++out.misses;
                        onload(g, choose_victim(in_.size_class[g], -1));
                    }
                    ModelSlot &slot = slots_[slot_of_[g]];
                    slot.last_use = ++tick_;
                    ready = slot.ready;
                }
                prefetch(static_cast<int>(g));
                const double start = std::max(compute_free_, ready);
                out.stall_s += start - compute_free_;
                compute_free_ = start + in_.compute_s[g];
                if (streamed) slots_[slot_of_[g]].released = compute_free_;
            }
        }
        out.seconds_per_pass = compute_free_ / passes;
        out.stall_s /= passes;
        out.misses /= static_cast<std::uint64_t>(passes);
        return out;
    }

   private:
    // The slot the scheduler would fill: empty, else unwanted, else wanted, least
    // recently used first; never the held group's.
    int choose_victim(int size_class, int held) const {
        int best = -1, best_rank = 3;
        for (int index : class_slots_[size_class]) {
            const ModelSlot &slot = slots_[index];
            int rank = 0;
            if (slot.occupant >= 0) {
                if (slot.occupant == held) continue;
                rank = want_mark_[slot.occupant] == epoch_ ? 2 : 1;
            }
            if (best < 0 || rank < best_rank ||
                (rank == best_rank && slot.last_use < slots_[best].last_use)) {
                best = index;
                best_rank = rank;
            }
        }
        return best;
    }

    void onload(std::uint32_t g, int index) {
        ModelSlot &slot = slots_[index];
        if (slot.occupant >= 0) slot_of_[slot.occupant] = -1;
        const double start = std::max(link_free_, slot.released);
        link_free_ = start + in_.copy_latency_s +
                     static_cast<double>(in_.streamed_bytes[g]) / in_.link_bytes_per_s;
        slot.ready = link_free_;
        slot.occupant = static_cast<int>(g);
        slot_of_[g] = index;
    }

    void prefetch(int held) {
        ++epoch_;
        std::size_t still_wanted = 0;
        for (std::size_t c = 0; c < class_slots_.size(); ++c) {
            std::uint32_t free_slots = 0;
            for (int index : class_slots_[c]) {
                if (slots_[index].occupant != held || held < 0) ++free_slots;
            }
            want_left_[c] = free_slots;
            still_wanted += free_slots;
        }
        wanted_.clear();
        const std::size_t n = in_.order.size();
        for (std::size_t step = 1; step <= n && still_wanted > 0; ++step) {
            const std::uint32_t g = in_.order[(cursor_ + step) % n];
            const int c = in_.size_class[g];
            if (c < 0 || static_cast<int>(g) == held || want_mark_[g] == epoch_) continue;
            if (want_left_[c] == 0) continue;
            want_mark_[g] = epoch_;
            --want_left_[c];
            --still_wanted;
            wanted_.push_back(g);
        }
        for (std::uint32_t g : wanted_) {
            if (slot_of_[g] >= 0) continue;
            const int victim = choose_victim(in_.size_class[g], held);
            if (victim >= 0) onload(g, victim);
        }
    }

    const PassModelInput &in_;
    std::vector<ModelSlot> slots_;
    std::vector<std::vector<int>> class_slots_;
    std::vector<int> slot_of_;
    std::vector<std::uint64_t> want_mark_;
    std::vector<std::uint32_t> want_left_;
    std::vector<std::uint32_t> wanted_;
    std::uint64_t epoch_ = 0;
    std::uint64_t tick_ = 0;
    std::size_t cursor_ = 0;
    double link_free_ = 0.0;
    double compute_free_ = 0.0;
};

}  // namespace

PassModelResult model_pass(const PassModelInput &input, int passes) {
    const std::size_t n = input.compute_s.size();
    FERRY_EXPECTS(passes > 0 && !input.order.empty() && input.streamed_bytes.size() == n &&
                      input.size_class.size() == n,
                  FERRY_ERROR_INVALID_ARGUMENT, "the pass model's input is inconsistent");
    for (std::size_t g = 0; g < n; ++g) {
        const int c = input.size_class[g];
        FERRY_EXPECTS(c < 0 || (static_cast<std::size_t>(c) < input.class_slots.size() &&
                                input.class_slots[c] > 0 && input.link_bytes_per_s > 0.0),
                      FERRY_ERROR_INVALID_ARGUMENT,
                      "group " + std::to_string(g) + " streams through a class without slots "
                      "or over a link without a rate");
    }
    for (std::uint32_t g : input.order) {
        FERRY_EXPECTS(g < n, FERRY_ERROR_INVALID_ARGUMENT,
                      "the pass model's order names group " + std::to_string(g));
    }
    return Replay(input).run(passes);
}

PassModelInput pass_model_input(const PlanInput &input, const Plan &plan) {
    const std::size_t n = input.group_bytes.size();
    PassModelInput out;
    out.order = input.pass_order;
    if (out.order.empty()) {
        for (std::uint32_t g = 0; g < n; ++g) out.order.push_back(g);
    }
    out.compute_s = input.compute_s;
    out.compute_s.resize(n, 0.0);
    out.streamed_bytes.assign(n, 0);
    out.size_class = plan.size_class;
    for (std::size_t g = 0; g < n; ++g) out.streamed_bytes[g] = streamed_link_bytes(input, plan, g);
    out.class_slots = plan.class_slots;
    if (out.class_slots.empty()) {
        out.class_slots.assign(plan.class_slot_bytes.size(), input.slots_per_class);
    }
    out.link_bytes_per_s = input.link_bytes_per_s;
    out.copy_latency_s = input.copy_latency_s;
    return out;
}

}  // namespace ferry
