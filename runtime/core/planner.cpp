// core/: ferry::Runtime (definition, plan, seal, the pipeline) and what it plans with.
// The planner (DESIGN.md, "planner" and "size class").
//
// Cost model: resident groups take their bytes; streamed groups share size classes, each
// class taking slots_per_class slots of its largest group. The objective is the fewest
// bytes streamed per pass (bytes * uses, summed over streamed groups).
//
// Residency: one class minimises the streaming reserve for a given streamed set, so the
// optimum is found by trying each group size m as the largest streamed size. Groups
// bigger than m must be resident; a 0/1 knapsack (weight = bytes, value = bytes * uses)
// picks which of the others are resident too, in the capacity the reserve leaves. Groups
// are sorted by size, so the candidates of every threshold are a prefix of that order and
// one knapsack table, filled item by item, answers all thresholds: O(groups * buckets).
//
// Splitting: whole groups waste up to a group of the budget, and the streaming reserve is
// slots x a whole group. Groups given as pieces can instead keep a resident head and
// stream a tail of at most `cap` bytes, so the reserve shrinks to slots x cap and the
// budget fills to within about a piece. Sixty equal blocks at half the model then stream
// about 60/58 of the half instead of half plus two blocks. For each cap on a grid, tails
// are taken, least used groups first, until what stays resident fits, the last trimmed to
// what is still needed; the split plan is kept when it streams fewer bytes than the best
// whole-group plan.
#include "core/planner.hpp"

#include <algorithm>
#include <functional>
#include <limits>
#include <numeric>
#include <string>

#include "base/error.hpp"

namespace ferry {
namespace {

constexpr std::uint64_t kMax = std::numeric_limits<std::uint64_t>::max();
// Knapsack capacities 0..kBuckets-1, in units of a quantum chosen per plan.
constexpr std::uint64_t kBuckets = 65536;

// a * b and a + b, saturating: only ever compared against a budget.
std::uint64_t mul_sat(std::uint64_t a, std::uint64_t b) {
    return (b != 0 && a > kMax / b) ? kMax : a * b;
}
std::uint64_t add_sat(std::uint64_t a, std::uint64_t b) { return a > kMax - b ? kMax : a + b; }

std::string bytes_str(std::uint64_t n) { return std::to_string(n) + " bytes"; }

// Validates the input and returns the uses of every group (empty uses_per_pass means 1).
// Also guarantees that the sum of bytes * uses, hence of bytes, fits in 64 bits.
std::vector<std::uint64_t> validated_uses(const PlanInput &in) {
    const std::size_t n = in.group_bytes.size();
    FERRY_EXPECTS(in.slots_per_class >= 2, FERRY_ERROR_INVALID_ARGUMENT,
            "slots_per_class is " + std::to_string(in.slots_per_class) +
                ": it must be at least 2, so that one slot is filled while another is used");
    FERRY_EXPECTS(n > 0, FERRY_ERROR_INVALID_ARGUMENT, "cannot plan a model with no groups");
    FERRY_EXPECTS(in.uses_per_pass.empty() || in.uses_per_pass.size() == n,
            FERRY_ERROR_INVALID_ARGUMENT,
            "uses_per_pass has " + std::to_string(in.uses_per_pass.size()) +
                " entries for " + std::to_string(n) + " groups (leave it empty for 1 each)");
    std::vector<std::uint64_t> uses =
        in.uses_per_pass.empty() ? std::vector<std::uint64_t>(n, 1) : in.uses_per_pass;
    std::uint64_t total = 0;
    for (std::size_t i = 0; i < n; ++i) {
        const std::string group = "group " + std::to_string(i);
        FERRY_EXPECTS(in.group_bytes[i] > 0, FERRY_ERROR_INVALID_ARGUMENT, group + " has 0 bytes");
        FERRY_EXPECTS(uses[i] > 0, FERRY_ERROR_INVALID_ARGUMENT,
                group + " has 0 uses per pass: every group is acquired at least once");
        const std::uint64_t value = mul_sat(in.group_bytes[i], uses[i]);
        FERRY_EXPECTS(value != kMax && add_sat(total, value) != kMax, FERRY_ERROR_INVALID_ARGUMENT,
                "the bytes streamed per pass would overflow 64 bits at " + group);
        total += value;
    }
    FERRY_EXPECTS(in.prefer_resident.empty() || in.prefer_resident.size() == n,
            FERRY_ERROR_INVALID_ARGUMENT,
            "prefer_resident has " + std::to_string(in.prefer_resident.size()) + " entries for " +
                std::to_string(n) + " groups (leave it empty for no preference)");
    FERRY_EXPECTS(in.pieces.empty() || in.pieces.size() == n, FERRY_ERROR_INVALID_ARGUMENT,
            "pieces has " + std::to_string(in.pieces.size()) + " entries for " +
                std::to_string(n) + " groups (leave it empty for no splitting)");
    for (std::size_t i = 0; i < in.pieces.size(); ++i) {
        std::uint64_t sum = 0;
        for (std::uint64_t piece : in.pieces[i]) {
            FERRY_EXPECTS(piece > 0 && piece <= in.group_bytes[i] - sum,  // sum <= bytes
                    FERRY_ERROR_INVALID_ARGUMENT,
                    "the pieces of group " + std::to_string(i) + " sum to more than its " +
                        bytes_str(in.group_bytes[i]) + ", or one is empty");
            sum += piece;
        }
        FERRY_EXPECTS(in.pieces[i].empty() || sum == in.group_bytes[i],
                FERRY_ERROR_INVALID_ARGUMENT,
                "the pieces of group " + std::to_string(i) + " sum to " + bytes_str(sum) +
                    ", not to its " + bytes_str(in.group_bytes[i]));
    }
    FERRY_EXPECTS(in.link_pieces.empty() || in.link_pieces.size() == n,
            FERRY_ERROR_INVALID_ARGUMENT,
            "link_pieces has " + std::to_string(in.link_pieces.size()) + " entries for " +
                std::to_string(n) + " groups (leave it empty when copies move raw bytes)");
    for (std::size_t i = 0; i < in.link_pieces.size(); ++i) {
        const std::size_t pieces = i < in.pieces.size() ? in.pieces[i].size() : 0;
        FERRY_EXPECTS(in.link_pieces[i].empty() || in.link_pieces[i].size() == pieces,
                FERRY_ERROR_INVALID_ARGUMENT,
                "group " + std::to_string(i) + " has " + std::to_string(in.link_pieces[i].size()) +
                    " link pieces for " + std::to_string(pieces) + " pieces");
        for (std::size_t k = 0; k < in.link_pieces[i].size(); ++k) {
            FERRY_EXPECTS(in.link_pieces[i][k] <= in.pieces[i][k], FERRY_ERROR_INVALID_ARGUMENT,
                    "piece " + std::to_string(k) + " of group " + std::to_string(i) +
                        " moves more bytes over the link than it has");
        }
    }
    return uses;
}

// The bytes a copy of all of group g moves over the link.
std::uint64_t group_link_bytes(const PlanInput &in, std::size_t g) {
    if (g >= in.link_pieces.size() || in.link_pieces[g].empty()) return in.group_bytes[g];
    return std::accumulate(in.link_pieces[g].begin(), in.link_pieces[g].end(), std::uint64_t{0});
}

// The smallest footprint of any plan, and what it is made of.
struct Minimum {
    std::uint64_t bytes;     // the smallest budget that holds some plan
    std::uint64_t slot;      // the largest streamed group there; 0 when all are resident
    std::uint64_t resident;  // bytes resident there
};

Minimum find_minimum(const std::vector<std::uint64_t> &group_bytes, std::uint64_t slots) {
    std::vector<std::uint64_t> sizes = group_bytes;
    std::sort(sizes.begin(), sizes.end(), std::greater<>());
    const std::uint64_t total = std::accumulate(sizes.begin(), sizes.end(), std::uint64_t{0});
    Minimum best{total, 0, total};
    std::uint64_t bigger = 0;  // bytes of the groups before i: all bigger than sizes[i]
    for (std::size_t i = 0; i < sizes.size(); bigger += sizes[i], ++i) {
        if (i > 0 && sizes[i] == sizes[i - 1]) continue;
        const std::uint64_t cost = add_sat(mul_sat(slots, sizes[i]), bigger);
        if (cost < best.bytes) best = {cost, sizes[i], bigger};
    }
    return best;
}

// How good a resident set is; smaller is better.
struct Score {
    std::uint64_t streamed_per_pass;
    std::uint64_t resident_bytes;
    std::size_t streamed_groups;

    bool operator<(const Score &o) const {
        if (streamed_per_pass != o.streamed_per_pass)
            return streamed_per_pass < o.streamed_per_pass;
        if (resident_bytes != o.resident_bytes) return resident_bytes > o.resident_bytes;
        return streamed_groups < o.streamed_groups;
    }
};

// The best resident set for the budget (see the top of the file). Requires
// budget >= minimum_budget().
// `link`: per group, the bytes streaming it moves over the link, the value of keeping it
// resident (its bytes, unless its image is compressed).
std::vector<bool> choose_resident(const std::vector<std::uint64_t> &bytes,
                                  const std::vector<std::uint64_t> &link,
                                  const std::vector<std::uint64_t> &uses,
                                  std::uint64_t budget, std::uint64_t slots) {
    const std::size_t n = bytes.size();
    const std::uint64_t total = std::accumulate(bytes.begin(), bytes.end(), std::uint64_t{0});
    if (total <= budget) return std::vector<bool>(n, true);

    std::vector<std::size_t> by_size(n);  // ascending size
    std::iota(by_size.begin(), by_size.end(), 0);
    std::stable_sort(by_size.begin(), by_size.end(),
                     [&](std::size_t a, std::size_t b) { return bytes[a] < bytes[b]; });

    // Thresholds that leave a non-negative knapsack capacity: candidates are the groups
    // by_size[0, end), the largest of which is the largest streamed size m.
    struct Threshold {
        std::size_t end;
        std::uint64_t capacity;
    };
    std::vector<Threshold> thresholds;
    std::uint64_t prefix = 0;
    for (std::size_t k = 0; k < n; ++k) {
        const std::uint64_t m = bytes[by_size[k]];
        prefix += m;
        if (k + 1 < n && bytes[by_size[k + 1]] == m) continue;
        const std::uint64_t reserve = add_sat(mul_sat(slots, m), total - prefix);
        if (reserve <= budget) thresholds.push_back({k + 1, budget - reserve});
    }

    // Quantum: a multiple of the sizes' gcd (exact when capacity / gcd fits the table),
    // big enough that the largest capacity fits kBuckets entries. Weights round up, so a
    // set that fits the table fits the budget.
    std::uint64_t max_capacity = 0;
    for (const Threshold &t : thresholds) max_capacity = std::max(max_capacity, t.capacity);
    std::uint64_t gcd = 0;
    for (std::uint64_t b : bytes) gcd = std::gcd(gcd, b);
    const std::uint64_t min_quantum =
        max_capacity / (kBuckets - 1) + (max_capacity % (kBuckets - 1) != 0);
    const std::uint64_t quantum = min_quantum <= gcd ? gcd : (min_quantum + gcd - 1) / gcd * gcd;
    const std::size_t width = max_capacity / quantum + 1;

    // best[c]: the most value resident within c quanta using the items seen so far;
    // take[k * width + c]: whether item k is in that set right after it was seen.
    std::vector<std::uint64_t> best(width, 0);
    std::vector<bool> take(n * width, false);
    std::vector<std::uint64_t> weight(n);
    for (std::size_t k = 0; k < n; ++k) {
        const std::uint64_t b = bytes[by_size[k]];
        weight[k] = b / quantum + (b % quantum != 0);
        const std::uint64_t value = link[by_size[k]] * uses[by_size[k]];
        for (std::size_t c = width; c-- > weight[k];) {
            if (best[c - weight[k]] + value > best[c]) {
                best[c] = best[c - weight[k]] + value;
                take[k * width + c] = true;
            }
        }
    }

    // Leftover groups are offered the exact remaining bytes, most uses first.
    std::vector<std::size_t> by_uses(n);
    std::iota(by_uses.begin(), by_uses.end(), 0);
    std::stable_sort(by_uses.begin(), by_uses.end(), [&](std::size_t a, std::size_t b) {
        return uses[a] != uses[b] ? uses[a] > uses[b] : bytes[a] > bytes[b];
    });

    std::vector<bool> chosen;
    Score chosen_score{};
    for (const Threshold &t : thresholds) {
        std::vector<bool> resident(n, false);
        for (std::size_t k = t.end; k < n; ++k) resident[by_size[k]] = true;
        std::uint64_t left = t.capacity;
        std::size_t c = t.capacity / quantum;
        for (std::size_t k = t.end; k-- > 0;) {
            if (!take[k * width + c]) continue;
            resident[by_size[k]] = true;
            left -= bytes[by_size[k]];
            c -= weight[k];
        }
        const std::uint64_t m = bytes[by_size[t.end - 1]];
        for (std::size_t i : by_uses) {
            if (!resident[i] && bytes[i] <= m && bytes[i] <= left) {
                resident[i] = true;
                left -= bytes[i];
            }
        }
        Score score{0, 0, 0};
        for (std::size_t i = 0; i < n; ++i) {
            if (resident[i]) {
                score.resident_bytes += bytes[i];
            } else {
                score.streamed_per_pass += link[i] * uses[i];
                ++score.streamed_groups;
            }
        }
        if (chosen.empty() || score < chosen_score) {
            chosen = std::move(resident);
            chosen_score = score;
        }
    }
    return chosen;
}

// Fills the plan for a resident set that fits the budget. The streamed groups share one
// size class: a second class would cost slots_per_class more slots of its size, and the
// knapsack's greedy fill leaves less room than one streamed group, so a split never fits
// without giving up residency, that is, without streaming more bytes.
Plan lay_out(const PlanInput &in, const std::vector<std::uint64_t> &uses,
             std::vector<bool> resident) {
    const std::vector<std::uint64_t> &bytes = in.group_bytes;
    const std::size_t n = bytes.size();
    Plan plan;
    plan.resident = std::move(resident);
    plan.size_class.assign(n, -1);
    plan.in_head.assign(n, {});
    plan.head_bytes.assign(n, 0);
    std::uint64_t largest_streamed = 0;
    for (std::size_t i = 0; i < n; ++i) {
        if (plan.resident[i]) {
            plan.resident_bytes += bytes[i];
        } else {
            plan.size_class[i] = 0;
            plan.streamed_bytes_per_pass += bytes[i] * uses[i];
            largest_streamed = std::max(largest_streamed, bytes[i]);
        }
    }
    if (largest_streamed == 0) return plan;  // everything resident: no streaming slots
    plan.class_slot_bytes = {largest_streamed};
    plan.streaming_bytes = in.slots_per_class * largest_streamed;
    return plan;
}

// Largest tails under a cap: each group's pieces, biggest first, go to the tail while
// they fit (first fit decreasing). Groups without pieces move whole or not at all.
class Splitter {
   public:
    explicit Splitter(const PlanInput &in) : in_(in), biggest_first_(in.group_bytes.size()) {
        for (std::size_t g = 0; g < in.pieces.size(); ++g) {
            std::vector<std::size_t> &order = biggest_first_[g];
            order.resize(in.pieces[g].size());
            std::iota(order.begin(), order.end(), 0);
            std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) {
                return in.pieces[g][a] > in.pieces[g][b];
            });
        }
    }

    bool any_splittable() const {
        for (const auto &order : biggest_first_)
            if (order.size() > 1) return true;
        return false;
    }

    // The plan for one cap, or false if what stays resident cannot fit: tails are taken
    // from the least used groups (then the biggest tails) until enough bytes leave the
    // device; the last one gives up only what is still needed. Without `plan`, only
    // *streamed_per_pass is computed.
    bool plan_for_cap(std::uint64_t cap, const std::vector<std::uint64_t> &uses,
                      std::uint64_t total, std::uint64_t *streamed_per_pass, Plan *plan) {
        const std::size_t n = in_.group_bytes.size();
        tails_.resize(n);
        std::uint64_t slot = 0;  // no tail is larger: the slots need no more than this
        for (std::size_t g = 0; g < n; ++g) {
            tails_[g] = tail(g, cap, nullptr);
            slot = std::max(slot, tails_[g]);
        }
        const std::uint64_t reserve = mul_sat(in_.slots_per_class, slot);
        if (slot == 0 || reserve >= in_.budget) return false;
        const std::uint64_t need = total - (in_.budget - reserve);  // > 0: total > budget
        order_.resize(n);
        std::iota(order_.begin(), order_.end(), 0);
        std::stable_sort(order_.begin(), order_.end(), [&](std::size_t a, std::size_t b) {
            return uses[a] != uses[b] ? uses[a] < uses[b] : tails_[a] > tails_[b];
        });

        if (plan != nullptr) {
            *plan = Plan{};
            plan->resident.assign(n, true);
            plan->size_class.assign(n, -1);
            plan->in_head.assign(n, {});
            plan->head_bytes.assign(n, 0);
        }
        std::uint64_t streamed = 0, largest = 0, per_pass = 0;
        for (std::size_t g : order_) {
            if (streamed >= need) break;
            if (tails_[g] == 0) continue;
            std::vector<bool> *in_head = plan != nullptr ? &plan->in_head[g] : nullptr;
            std::uint64_t t = tails_[g];
            if (t > need - streamed) {
                t = tail_of_at_least(g, cap, t, need - streamed, in_head);
            } else if (in_head != nullptr) {
                tail(g, cap, in_head);  // the same tail again, for its pieces
            }
            streamed += t;
            largest = std::max(largest, t);
            per_pass += t * uses[g];
            if (plan != nullptr) {
                plan->resident[g] = false;
                plan->size_class[g] = 0;
                plan->head_bytes[g] = in_.group_bytes[g] - t;
            }
        }
        if (streamed < need) return false;
        *streamed_per_pass = per_pass;
        if (plan != nullptr) {
            plan->resident_bytes = total - streamed;
            plan->class_slot_bytes = {largest};
            plan->streaming_bytes = in_.slots_per_class * largest;
            plan->streamed_bytes_per_pass = per_pass;
        }
        return true;  // resident (total - streamed) + slots x largest (<= slot) fits
    }

   private:
    // The tail's bytes; *in_head (if given) gets the pieces left out of it, or is emptied
    // when the group moves whole (it fits the cap, or has no pieces) or stays whole.
    std::uint64_t tail(std::size_t g, std::uint64_t cap, std::vector<bool> *in_head) const {
        const std::uint64_t bytes = in_.group_bytes[g];
        if (in_head != nullptr) in_head->clear();
        if (bytes <= cap) return bytes;
        if (biggest_first_[g].size() < 2) return 0;
        const std::vector<std::uint64_t> &pieces = in_.pieces[g];
        if (in_head != nullptr) in_head->assign(pieces.size(), true);
        std::uint64_t tail = 0;
        for (std::size_t piece : biggest_first_[g]) {
            if (tail + pieces[piece] > cap) continue;
            tail += pieces[piece];
            if (in_head != nullptr) (*in_head)[piece] = false;
        }
        if (tail == 0 && in_head != nullptr) in_head->clear();  // stays whole
        return tail;
    }

    // A tail of at least `wanted` bytes (< `full`, the group's tail under `cap`), as small
    // as first fit decreasing finds: the head takes the biggest pieces that leave `wanted`
    // to stream. Falls back to the tail under `cap` when that tail would not fit the cap.
    std::uint64_t tail_of_at_least(std::size_t g, std::uint64_t cap, std::uint64_t full,
                                   std::uint64_t wanted, std::vector<bool> *in_head) const {
        const std::uint64_t bytes = in_.group_bytes[g];
        if (biggest_first_[g].size() < 2) return tail(g, cap, in_head);
        const std::vector<std::uint64_t> &pieces = in_.pieces[g];
        const std::uint64_t head_limit = bytes - wanted;
        if (in_head != nullptr) in_head->assign(pieces.size(), false);
        std::uint64_t head = 0;
        for (std::size_t piece : biggest_first_[g]) {
            if (head + pieces[piece] > head_limit) continue;
            head += pieces[piece];
            if (in_head != nullptr) (*in_head)[piece] = true;
        }
        if (head == 0 || bytes - head > cap || bytes - head >= full) {
            return tail(g, cap, in_head);
        }
        return bytes - head;
    }

    const PlanInput &in_;
    std::vector<std::vector<std::size_t>> biggest_first_;  // per group: piece indices
    std::vector<std::uint64_t> tails_;                     // scratch, per group
    std::vector<std::size_t> order_;                       // scratch
};

// The split plan that streams least, when it beats `whole` (see the top of the file).
// Caps are tried on a grid of 1/kCaps of the largest group; only the best is built.
void try_splitting(const PlanInput &in, const std::vector<std::uint64_t> &uses, Plan &whole) {
    if (whole.streamed_bytes_per_pass == 0 || in.pieces.empty()) return;
    Splitter splitter(in);
    if (!splitter.any_splittable()) return;
    const std::uint64_t total =
        std::accumulate(in.group_bytes.begin(), in.group_bytes.end(), std::uint64_t{0});
    const std::uint64_t largest =
        *std::max_element(in.group_bytes.begin(), in.group_bytes.end());
    constexpr std::uint64_t kCaps = 512;
    std::uint64_t best_cap = 0;
    std::uint64_t best = whole.streamed_bytes_per_pass;
    for (std::uint64_t k = 1; k <= kCaps; ++k) {
        const std::uint64_t cap = k == kCaps ? largest : largest / kCaps * k;
        std::uint64_t streamed = 0;
        if (cap == 0 || !splitter.plan_for_cap(cap, uses, total, &streamed, nullptr)) continue;
        if (streamed < best) {
            best = streamed;
            best_cap = cap;
        }
    }
    if (best_cap == 0) return;
    std::uint64_t streamed = 0;
    Plan split;
    if (splitter.plan_for_cap(best_cap, uses, total, &streamed, &split)) whole = std::move(split);
}

// The best plan for a budget that holds some plan.
Plan plan_fitting(const PlanInput &in, const std::vector<std::uint64_t> &uses) {
    std::vector<std::uint64_t> link(in.group_bytes.size());
    for (std::size_t g = 0; g < link.size(); ++g) link[g] = group_link_bytes(in, g);
    Plan plan = lay_out(in, uses, choose_resident(in.group_bytes, link, uses, in.budget,
                                                  in.slots_per_class));
    try_splitting(in, uses, plan);
    return plan;
}

// The plan with every preferred group resident and the others planned in what is left;
// false when no group is preferred or the others do not fit it.
bool plan_preferring(const PlanInput &in, Plan *out) {
    const std::size_t n = in.group_bytes.size();
    PlanInput rest;
    rest.slots_per_class = in.slots_per_class;
    std::vector<std::size_t> index;  // rest's groups in `in`
    std::uint64_t preferred = 0;
    for (std::size_t g = 0; g < n; ++g) {
        if (g < in.prefer_resident.size() && in.prefer_resident[g]) {
            preferred += in.group_bytes[g];
            continue;
        }
        index.push_back(g);
        rest.group_bytes.push_back(in.group_bytes[g]);
        if (!in.uses_per_pass.empty()) rest.uses_per_pass.push_back(in.uses_per_pass[g]);
        if (!in.pieces.empty()) rest.pieces.push_back(in.pieces[g]);
        if (!in.link_pieces.empty()) rest.link_pieces.push_back(in.link_pieces[g]);
    }
    if (preferred == 0 || preferred > in.budget) return false;
    rest.budget = in.budget - preferred;

    Plan sub;
    if (!index.empty()) {
        const std::vector<std::uint64_t> rest_uses = validated_uses(rest);
        if (rest.budget >= find_minimum(rest.group_bytes, rest.slots_per_class).bytes) {
            sub = plan_fitting(rest, rest_uses);
        } else {  // no whole-group plan fits what is left; a split one may
            sub.streamed_bytes_per_pass = kMax;
            try_splitting(rest, rest_uses, sub);
            if (sub.streamed_bytes_per_pass == kMax) return false;
        }
    }
    // All resident, then the others as the sub-plan placed them.
    Plan plan = lay_out(in, std::vector<std::uint64_t>(n, 1), std::vector<bool>(n, true));
    for (std::size_t k = 0; k < index.size(); ++k) {
        const std::size_t g = index[k];
        plan.resident[g] = sub.resident[k];
        plan.size_class[g] = sub.size_class[k];
        plan.in_head[g] = std::move(sub.in_head[k]);
        plan.head_bytes[g] = sub.head_bytes[k];
    }
    plan.resident_bytes = preferred + sub.resident_bytes;
    plan.class_slot_bytes = sub.class_slot_bytes;
    plan.streaming_bytes = sub.streaming_bytes;
    plan.streamed_bytes_per_pass = sub.streamed_bytes_per_pass;
    *out = std::move(plan);
    return true;
}

}  // namespace

std::uint64_t streamed_link_bytes(const PlanInput &input, const Plan &plan, std::size_t g) {
    if (plan.resident[g]) return 0;
    const std::uint64_t tail = input.group_bytes[g] - plan.head_bytes[g];
    if (g >= input.link_pieces.size() || input.link_pieces[g].empty()) return tail;
    const std::vector<std::uint64_t> &pieces = input.pieces[g];
    const std::vector<std::uint64_t> &link = input.link_pieces[g];
    std::uint64_t bytes = 0;
    if (g < plan.in_head.size() && !plan.in_head[g].empty()) {
        for (std::size_t k = 0; k < pieces.size(); ++k) {
            if (!plan.in_head[g][k]) bytes += link[k];
        }
        return bytes;
    }
    // The head is a prefix of the pieces: the tail is the pieces after it.
    std::uint64_t raw = 0;
    for (std::size_t k = pieces.size(); k-- > 0 && raw < tail;) {
        raw += pieces[k];
        bytes += link[k];
    }
    return bytes;
}

std::uint64_t minimum_budget(const PlanInput &input) {
    validated_uses(input);
    return find_minimum(input.group_bytes, input.slots_per_class).bytes;
}

Plan make_plan(const PlanInput &input) {
    const std::vector<std::uint64_t> uses = validated_uses(input);
    const Minimum min = find_minimum(input.group_bytes, input.slots_per_class);
    if (input.budget < min.bytes) {
        const std::string why =
            min.slot == 0
                ? "all " + std::to_string(input.group_bytes.size()) +
                      " groups resident, since streaming any of them needs more for its "
                      "slots"
                : "slots_per_class " + std::to_string(input.slots_per_class) +
                      " x largest streamed group " + bytes_str(min.slot) + ", plus " +
                      bytes_str(min.resident) + " resident";
        throw Error(FERRY_ERROR_BUDGET_TOO_SMALL,
                    "budget of " + bytes_str(input.budget) +
                        " is too small: this model needs at least " + bytes_str(min.bytes) +
                        " (" + why + ")");
    }
    Plan plan;
    if (!plan_preferring(input, &plan)) plan = plan_fitting(input, uses);
    return plan;
}

}  // namespace ferry
