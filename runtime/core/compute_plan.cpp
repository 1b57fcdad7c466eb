// core/: ferry::Runtime (definition, plan, seal, the pipeline) and what it plans with.
// The compute-aware planner (planner.hpp, make_compute_plan).
//
// The byte planner streams as few bytes as it can, and where compute bounds a pass that
// is not enough: a copy must also be hidden behind the compute that runs before it. With
// 19 double blocks of FLUX streamed whole, each copy takes 1.6 x the compute of the
// double before it, while the link idles through the resident single blocks.
//
// So the streamed bytes are spread over the pass: each group streams a tail of about
// x * w_g bytes and keeps the rest as its head, where the weight w_g is the compute the
// copy hides behind (the group's own, or the one before it in the pass) or the group's
// bytes; x is the smallest that fits the budget with the streaming slots. The slots are
// those of one class, or of two split by tail size, with 2..max_slots_per_class slots
// each: more slots let the link run further ahead through short computes. Every such
// plan, and the byte plan (or the current one, for a re-plan), is scored by the pass-time
// model (pass_model.cpp); the shortest modeled pass wins, fewer streamed bytes breaking
// ties. A coordinate descent over each group's head (a prefix of its pieces) and class,
// and each class's slot count, then polishes the winner.
#include <algorithm>
#include <cmath>
#include <numeric>

#include "base/error.hpp"
#include "core/planner.hpp"

namespace ferry {
namespace {

constexpr int kModelPasses = 3;
constexpr int kBisections = 40;

// How a group's tail is cut at its pieces' boundaries.
class Cutter {
   public:
    explicit Cutter(const PlanInput &in) : in_(in), order_(in.group_bytes.size()) {
        if (in.pieces_in_order) return;
        for (std::size_t g = 0; g < in.pieces.size(); ++g) {
            order_[g].resize(in.pieces[g].size());
            std::iota(order_[g].begin(), order_[g].end(), 0);
            std::stable_sort(order_[g].begin(), order_[g].end(), [&](std::size_t a, std::size_t b) {
                return in.pieces[g][a] > in.pieces[g][b];
            });
        }
    }

    // The tail of group g closest to `target` bytes that its pieces allow (0: resident;
    // the group's bytes: streamed whole). *in_head, when given, gets the head's pieces
    // (empty when the group is not split).
    std::uint64_t tail(std::size_t g, std::uint64_t target, std::vector<bool> *in_head) const {
        const std::uint64_t bytes = in_.group_bytes[g];
        if (in_head != nullptr) in_head->clear();
        if (target == 0) return 0;
        if (target >= bytes) return bytes;
        const std::vector<std::uint64_t> *pieces =
            g < in_.pieces.size() && in_.pieces[g].size() > 1 ? &in_.pieces[g] : nullptr;
        if (pieces == nullptr) return 2 * target >= bytes ? bytes : 0;  // moves whole
        std::uint64_t head = 0;
        std::vector<bool> mask(pieces->size(), false);
        if (in_.pieces_in_order) {  // the head is a prefix: the one ending nearest
            std::size_t k = 0;
            while (k < pieces->size() && head + (*pieces)[k] <= bytes - target) head += (*pieces)[k++];
            if (k < pieces->size() && 2 * (bytes - target - head) > (*pieces)[k]) head += (*pieces)[k++];
            for (std::size_t i = 0; i < k; ++i) mask[i] = true;
        } else {  // the biggest pieces that leave at least `target` to stream
            for (std::size_t piece : order_[g]) {
                if (head + (*pieces)[piece] > bytes - target) continue;
                head += (*pieces)[piece];
                mask[piece] = true;
            }
        }
        if (head == 0) return bytes;
        if (head == bytes) return 0;
        if (in_head != nullptr) *in_head = std::move(mask);
        return bytes - head;
    }

   private:
    const PlanInput &in_;
    std::vector<std::vector<std::size_t>> order_;  // free pieces: biggest first
};

// One shape of plan: the weights, how many classes, where they split, their slots.
struct Shape {
    const std::vector<double> *weight;
    double split = 0.0;  // two classes: tails above split x the largest go to class 0
    std::uint32_t slots[2] = {2, 2};
};

class Search {
   public:
    Search(const PlanInput &in, const std::vector<std::uint64_t> &uses)
        : in_(in), uses_(uses), cutter_(in), n_(in.group_bytes.size()) {
        total_ = std::accumulate(in.group_bytes.begin(), in.group_bytes.end(), std::uint64_t{0});
        tails_.resize(n_);
    }

    // The plan of a shape at the smallest x that fits, or false when none does.
    bool plan_of(const Shape &shape, Plan *out) {
        const std::vector<double> &w = *shape.weight;
        const double weight_sum = std::accumulate(w.begin(), w.end(), 0.0);
        if (!(weight_sum > 0.0)) return false;
        // x in bytes per unit weight; at `high` every group with weight streams whole.
        double high = 0.0;
        for (std::size_t g = 0; g < n_; ++g) {
            if (w[g] > 0.0) high = std::max(high, static_cast<double>(in_.group_bytes[g]) / w[g]);
        }
        if (!fits(shape, high)) return false;
        double low = 0.0;
        for (int i = 0; i < kBisections; ++i) {
            const double mid = 0.5 * (low + high);
            (fits(shape, mid) ? high : low) = mid;
        }
        return build(shape, high, out);
    }

   private:
    bool preferred(std::size_t g) const {
        return g < in_.prefer_resident.size() && in_.prefer_resident[g];
    }

    std::uint64_t target(const Shape &shape, double x, std::size_t g) const {
        if (preferred(g)) return 0;
        const double t = x * (*shape.weight)[g];
        const double bytes = static_cast<double>(in_.group_bytes[g]);
        return t >= bytes ? in_.group_bytes[g] : static_cast<std::uint64_t>(t);
    }

    // Classes of the tails in tails_: the largest tail, and (two classes) the largest at
    // or under the split. Returns the streaming reserve.
    std::uint64_t classes(const Shape &shape, std::uint64_t *slot0, std::uint64_t *slot1) const {
        std::uint64_t largest = 0;
        for (std::uint64_t t : tails_) largest = std::max(largest, t);
        *slot0 = largest;
        *slot1 = 0;
        if (shape.split > 0.0) {
            const double limit = shape.split * static_cast<double>(largest);
            std::uint64_t big = 0;
            for (std::uint64_t t : tails_) {
                if (t == 0) continue;
                if (static_cast<double>(t) > limit) big = std::max(big, t);
                else *slot1 = std::max(*slot1, t);
            }
            *slot0 = big;
        }
        return shape.slots[0] * *slot0 + shape.slots[1] * *slot1;
    }

    bool fits(const Shape &shape, double x) {
        std::uint64_t streamed = 0;
        for (std::size_t g = 0; g < n_; ++g) {
            tails_[g] = cutter_.tail(g, target(shape, x, g), nullptr);
            streamed += tails_[g];
        }
        if (streamed == 0) return total_ <= in_.budget;
        std::uint64_t slot0 = 0, slot1 = 0;
        const std::uint64_t reserve = classes(shape, &slot0, &slot1);
        return total_ - streamed + reserve <= in_.budget;
    }

    bool build(const Shape &shape, double x, Plan *out) {
        if (!fits(shape, x)) return false;
        std::uint64_t slot0 = 0, slot1 = 0;
        classes(shape, &slot0, &slot1);
        Plan plan;
        plan.resident.assign(n_, true);
        plan.size_class.assign(n_, -1);
        plan.in_head.assign(n_, {});
        plan.head_bytes.assign(n_, 0);
        if (slot0 > 0) {
            plan.class_slot_bytes.push_back(slot0);
            plan.class_slots.push_back(shape.slots[0]);
        }
        if (slot1 > 0) {
            plan.class_slot_bytes.push_back(slot1);
            plan.class_slots.push_back(shape.slots[1]);
        }
        const double limit = shape.split * static_cast<double>(std::max(slot0, slot1));
        for (std::size_t g = 0; g < n_; ++g) {
            const std::uint64_t t = cutter_.tail(g, target(shape, x, g), &plan.in_head[g]);
            if (t == 0) {
                plan.resident_bytes += in_.group_bytes[g];
                continue;
            }
            plan.resident[g] = false;
            const bool small = shape.split > 0.0 && static_cast<double>(t) <= limit;
            plan.size_class[g] = small && slot0 > 0 ? 1 : 0;
            plan.head_bytes[g] = in_.group_bytes[g] - t;
            plan.resident_bytes += plan.head_bytes[g];
            plan.streamed_bytes_per_pass += t * uses_[g];
        }
        for (std::size_t c = 0; c < plan.class_slot_bytes.size(); ++c) {
            plan.streaming_bytes += plan.class_slots[c] * plan.class_slot_bytes[c];
        }
        *out = std::move(plan);
        return true;
    }

    const PlanInput &in_;
    const std::vector<std::uint64_t> &uses_;
    Cutter cutter_;
    std::size_t n_;
    std::uint64_t total_ = 0;
    std::vector<std::uint64_t> tails_;  // scratch: per group
};

// Smaller is better: the modeled pass, then the bytes streamed.
bool better(const Plan &a, const Plan &b) {
    if (a.modeled_pass_s != b.modeled_pass_s) return a.modeled_pass_s < b.modeled_pass_s;
    return a.streamed_bytes_per_pass < b.streamed_bytes_per_pass;
}

// Recomputes a plan's totals and slot sizes from its groups' heads and classes; false
// when it no longer fits the budget or a class is left empty.
bool retotal(const PlanInput &in, const std::vector<std::uint64_t> &uses, Plan &plan) {
    std::fill(plan.class_slot_bytes.begin(), plan.class_slot_bytes.end(), 0);
    plan.resident_bytes = plan.streaming_bytes = plan.streamed_bytes_per_pass = 0;
    for (std::size_t g = 0; g < in.group_bytes.size(); ++g) {
        if (plan.resident[g]) {
            plan.resident_bytes += in.group_bytes[g];
            continue;
        }
        const std::uint64_t tail = in.group_bytes[g] - plan.head_bytes[g];
        std::uint64_t &slot = plan.class_slot_bytes[plan.size_class[g]];
        slot = std::max(slot, tail);
        plan.resident_bytes += plan.head_bytes[g];
        plan.streamed_bytes_per_pass += tail * uses[g];
    }
    for (std::size_t c = 0; c < plan.class_slot_bytes.size(); ++c) {
        if (plan.class_slot_bytes[c] == 0) return false;
        plan.streaming_bytes += plan.class_slots[c] * plan.class_slot_bytes[c];
    }
    if (plan.class_slot_bytes.size() == 2 && plan.class_slot_bytes[0] < plan.class_slot_bytes[1]) {
        return false;  // classes stay in order of slot size
    }
    return plan.resident_bytes + plan.streaming_bytes <= in.budget;
}

// Coordinate descent from the best plan found: each group in turn tries every head that
// is a prefix of its pieces (none, all, each cut), in each class; each class tries one
// slot more or fewer. A change is kept when the model finds it faster.
void improve(const PlanInput &in, const std::vector<std::uint64_t> &uses, Plan &best) {
    if (best.class_slot_bytes.empty()) return;
    if (best.class_slots.empty()) best.class_slots.assign(best.class_slot_bytes.size(), in.slots_per_class);
    const std::size_t n = in.group_bytes.size();
    auto preferred = [&](std::size_t g) {
        return g < in.prefer_resident.size() && in.prefer_resident[g];
    };
    auto consider = [&](Plan &candidate) {
        if (!retotal(in, uses, candidate)) return false;
        candidate.modeled_pass_s = modeled_seconds(in, candidate);
        if (!better(candidate, best)) return false;
        best = candidate;
        return true;
    };
    for (int sweep = 0; sweep < 2; ++sweep) {
        bool changed = false;
        for (std::size_t g = 0; g < n; ++g) {
            if (preferred(g)) continue;
            const std::vector<std::uint64_t> none;
            const std::vector<std::uint64_t> &pieces = g < in.pieces.size() ? in.pieces[g] : none;
            const std::size_t cuts = pieces.size() > 1 ? pieces.size() : 0;
            for (std::size_t cut = 0; cut <= cuts + 1; ++cut) {  // cuts + 1: resident
                for (std::size_t c = 0; c < best.class_slot_bytes.size(); ++c) {
                    Plan candidate = best;
                    std::uint64_t head = 0;
                    for (std::size_t k = 0; k < cut && k < cuts; ++k) head += pieces[k];
                    const bool resident = cut == cuts + 1;
                    if (!resident && head == in.group_bytes[g]) continue;
                    if (resident && c > 0) continue;
                    candidate.resident[g] = resident;
                    candidate.size_class[g] = resident ? -1 : static_cast<int>(c);
                    candidate.head_bytes[g] = resident ? 0 : head;
                    candidate.in_head[g].clear();
                    if (!resident && head > 0) {
                        candidate.in_head[g].assign(pieces.size(), false);
                        for (std::size_t k = 0; k < cut; ++k) candidate.in_head[g][k] = true;
                    }
                    changed = consider(candidate) || changed;
                }
            }
        }
        for (std::size_t c = 0; c < best.class_slots.size(); ++c) {
            for (int step : {1, -1}) {
                Plan candidate = best;
                const std::int64_t slots = static_cast<std::int64_t>(candidate.class_slots[c]) + step;
                if (slots < 2 || slots > static_cast<std::int64_t>(in.max_slots_per_class)) continue;
                candidate.class_slots[c] = static_cast<std::uint32_t>(slots);
                changed = consider(candidate) || changed;
            }
        }
        if (!changed) return;
    }
}

// A re-plan that knows how many bytes each group's copy moves (input.link_pieces, once its
// images are compressed) also weighs the whole-group plan of the byte planner by those:
// the residency that saves the most link time, which the plan made before the images were
// encoded could not know. Taken into *best when the model finds it faster.
void consider_link_plan(const PlanInput &input, const std::vector<std::uint32_t> &order,
                        Plan &best) {
    const std::size_t n = input.group_bytes.size();
    PlanInput whole = input;  // each group one piece: resident or streamed whole
    whole.pieces.assign(n, {});
    whole.link_pieces.assign(n, {});
    for (std::size_t g = 0; g < n; ++g) {
        if (g >= input.link_pieces.size() || input.link_pieces[g].empty()) continue;
        whole.pieces[g] = {input.group_bytes[g]};
        whole.link_pieces[g] = {std::accumulate(input.link_pieces[g].begin(),
                                                input.link_pieces[g].end(), std::uint64_t{0})};
    }
    Plan plan;
    try {
        plan = make_plan(whole);
    } catch (const Error &error) {
        if (error.status() != FERRY_ERROR_BUDGET_TOO_SMALL) throw;
        return;  // no whole-group plan fits what the split plan fits
    }
    std::vector<std::uint64_t> uses = input.uses_per_pass;
    if (uses.empty()) uses.assign(n, 1);
    // Groups are interchangeable only with the same bytes and the same link bytes: each
    // group's key is the first group like it.
    std::vector<std::uint64_t> kind(n);
    for (std::size_t g = 0; g < n; ++g) {
        kind[g] = g;
        for (std::size_t h = 0; h < g; ++h) {
            if (whole.group_bytes[h] == whole.group_bytes[g] &&
                whole.link_pieces[h] == whole.link_pieces[g]) {
                kind[g] = h;
                break;
            }
        }
    }
    spread_residents(plan, kind, uses,
                     input.prefer_resident.empty() ? std::vector<bool>(n, false)
                                                   : input.prefer_resident,
                     order);
    plan.modeled_pass_s = modeled_seconds(input, plan);
    if (better(plan, best)) best = std::move(plan);
}

}  // namespace

double modeled_seconds(const PlanInput &input, const Plan &plan) {
    return model_pass(pass_model_input(input, plan), kModelPasses).seconds_per_pass;
}

Plan make_compute_plan(const PlanInput &input, const Plan *current) {
    const std::size_t n = input.group_bytes.size();
    FERRY_EXPECTS(input.compute_s.size() == n && input.link_bytes_per_s > 0.0,
                  FERRY_ERROR_INVALID_ARGUMENT,
                  "compute-aware planning needs a compute time for each of the " +
                      std::to_string(n) + " groups and a link rate");
    for (double c : input.compute_s) {
        FERRY_EXPECTS(std::isfinite(c) && c >= 0.0, FERRY_ERROR_INVALID_ARGUMENT,
                      "a group's compute time is negative or not finite");
    }
    FERRY_EXPECTS(input.max_slots_per_class >= 2, FERRY_ERROR_INVALID_ARGUMENT,
                  "max_slots_per_class must be at least 2");
    std::vector<std::uint32_t> order = input.pass_order;
    if (order.empty()) {
        for (std::uint32_t g = 0; g < n; ++g) order.push_back(g);
    }

    Plan best;
    if (current != nullptr) {
        best = *current;
    } else if (input.pieces_in_order) {
        // The byte planner picks heads in any order: only its whole-group plan applies.
        PlanInput whole = input;
        whole.pieces.clear();
        best = make_plan(whole);  // throws when no plan fits
    } else {
        best = make_plan(input);
    }
    if (current == nullptr) {
        std::vector<std::uint64_t> uses = input.uses_per_pass;
        if (uses.empty()) uses.assign(n, 1);
        spread_residents(best, input.group_bytes, uses,
                         input.prefer_resident.empty() ? std::vector<bool>(n, false)
                                                       : input.prefer_resident,
                         order);
    }
    best.modeled_pass_s = modeled_seconds(input, best);
    if (current != nullptr && !input.link_pieces.empty()) consider_link_plan(input, order, best);
    if (best.streamed_bytes_per_pass == 0) return best;  // all resident

    std::vector<std::uint64_t> uses = input.uses_per_pass;
    if (uses.empty()) uses.assign(n, 1);
    // The weights: a group's own compute, the compute before it in the pass, its bytes.
    std::vector<double> own = input.compute_s, before(n, 0.0), bytes(n, 0.0);
    for (std::size_t i = 0; i < order.size(); ++i) {
        const std::uint32_t prev = order[(i + order.size() - 1) % order.size()];
        before[order[i]] = std::max(before[order[i]], input.compute_s[prev]);
    }
    for (std::size_t g = 0; g < n; ++g) bytes[g] = static_cast<double>(input.group_bytes[g]);

    Search search(input, uses);
    const std::uint32_t top = std::min<std::uint32_t>(input.max_slots_per_class, 64);
    for (const std::vector<double> *weight : {&own, &before, &bytes}) {
        for (double split : {0.0, 0.5, 0.7, 0.85}) {
            for (std::uint32_t k0 = 2; k0 <= top; ++k0) {
                for (std::uint32_t k1 = 2; k1 <= (split > 0.0 ? top : 2); ++k1) {
                    Shape shape{weight, split, {k0, k1}};
                    Plan plan;
                    if (!search.plan_of(shape, &plan)) continue;
                    plan.modeled_pass_s = modeled_seconds(input, plan);
                    if (better(plan, best)) best = std::move(plan);
                }
            }
        }
    }
    improve(input, uses, best);
    return best;
}

}  // namespace ferry
