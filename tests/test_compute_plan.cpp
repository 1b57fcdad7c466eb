// Tests of the compute-aware planner and its pass-time model (runtime/core/planner.hpp):
// the model's bounds, the planner against brute force over every plan of small models,
// and FLUX's shape, where planning by bytes leaves a copy of each double block exposed.
#include <algorithm>
#include <cstdint>
#include <functional>
#include <limits>
#include <numeric>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "base/error.hpp"
#include "core/planner.hpp"
#include "core/slab.hpp"

using ferry::PassModelInput;
using ferry::Plan;
using ferry::PlanInput;

namespace {

std::uint64_t total_of(const std::vector<std::uint64_t> &v) {
    return std::accumulate(v.begin(), v.end(), std::uint64_t{0});
}

// Every field agrees with the others and with the budget; heads are prefixes of the
// pieces when the input asks for that.
void check_compute_plan(const PlanInput &in, const Plan &plan) {
    const std::size_t n = in.group_bytes.size();
    REQUIRE(plan.resident.size() == n);
    REQUIRE(plan.head_bytes.size() == n);
    const std::size_t classes = plan.class_slot_bytes.size();
    REQUIRE((plan.class_slots.empty() || plan.class_slots.size() == classes));
    std::vector<std::uint64_t> largest(classes, 0);
    std::uint64_t resident = 0;
    for (std::size_t g = 0; g < n; ++g) {
        if (plan.resident[g]) {
            CHECK(plan.size_class[g] == -1);
            resident += in.group_bytes[g];
            continue;
        }
        const int c = plan.size_class[g];
        REQUIRE(c >= 0);
        REQUIRE(static_cast<std::size_t>(c) < classes);
        const std::uint64_t head = plan.head_bytes[g];
        REQUIRE(head < in.group_bytes[g]);
        if (head > 0 && in.pieces_in_order) {
            std::uint64_t prefix = 0;
            std::size_t k = 0;
            while (prefix < head) prefix += in.pieces[g][k++];
            CHECK(prefix == head);  // a head ends at a piece boundary
        }
        largest[c] = std::max(largest[c], in.group_bytes[g] - head);
        resident += head;
    }
    CHECK(largest == plan.class_slot_bytes);
    std::uint64_t streaming = 0;
    for (std::size_t c = 0; c < classes; ++c) {
        const std::uint32_t slots =
            plan.class_slots.empty() ? in.slots_per_class : plan.class_slots[c];
        CHECK(slots >= 2);
        streaming += slots * plan.class_slot_bytes[c];
    }
    CHECK(plan.resident_bytes == resident);
    CHECK(plan.streaming_bytes == streaming);
    CHECK(plan.resident_bytes + plan.streaming_bytes <= in.budget);
}

// The fastest modeled plan among every choice of tails (suffixes at piece boundaries),
// one class of 2..3 slots or two classes split at any tail size with 2..3 slots each.
double brute_force(const PlanInput &in, double *best_one_class) {
    const std::size_t n = in.group_bytes.size();
    std::vector<std::size_t> cut(n, 0);  // pieces in the head; == count: resident
    double best = std::numeric_limits<double>::infinity();
    *best_one_class = best;
    std::function<void(std::size_t)> each = [&](std::size_t g) {
        if (g < n) {
            const std::size_t options = std::max<std::size_t>(in.pieces[g].size(), 1);
            for (cut[g] = 0; cut[g] <= options; ++cut[g]) each(g + 1);
            return;
        }
        Plan plan;
        plan.resident.assign(n, false);
        plan.size_class.assign(n, 0);
        plan.in_head.assign(n, {});
        plan.head_bytes.assign(n, 0);
        std::vector<std::uint64_t> tails;
        for (std::size_t k = 0; k < n; ++k) {
            const std::size_t options = std::max<std::size_t>(in.pieces[k].size(), 1);
            std::uint64_t head = 0;
            for (std::size_t i = 0; i < cut[k] && i < in.pieces[k].size(); ++i) {
                head += in.pieces[k][i];
            }
            if (cut[k] == options) head = in.group_bytes[k];
            if (head == in.group_bytes[k]) {
                plan.resident[k] = true;
                plan.size_class[k] = -1;
                plan.resident_bytes += head;
                continue;
            }
            plan.head_bytes[k] = head;
            plan.resident_bytes += head;
            tails.push_back(in.group_bytes[k] - head);
        }
        if (tails.empty()) {
            if (plan.resident_bytes <= in.budget) {
                best = std::min(best, ferry::modeled_seconds(in, plan));
            }
            *best_one_class = std::min(*best_one_class, best);
            return;
        }
        std::vector<std::uint64_t> sizes = tails;
        std::sort(sizes.begin(), sizes.end());
        sizes.erase(std::unique(sizes.begin(), sizes.end()), sizes.end());
        // split: tails above it form class 0; 0 means one class.
        std::vector<std::uint64_t> splits = {0};
        for (std::size_t i = 0; i + 1 < sizes.size(); ++i) splits.push_back(sizes[i]);
        for (std::uint64_t split : splits) {
            std::uint64_t big = 0, small = 0;
            for (std::uint64_t t : tails) {
                std::uint64_t &slot = split > 0 && t <= split ? small : big;
                slot = std::max(slot, t);
            }
            for (std::uint32_t k0 = 2; k0 <= 3; ++k0) {
                for (std::uint32_t k1 = 2; k1 <= (split > 0 ? 3u : 2u); ++k1) {
                    const std::uint64_t reserve = k0 * big + (split > 0 ? k1 * small : 0);
                    if (plan.resident_bytes + reserve > in.budget) continue;
                    Plan p = plan;
                    p.class_slot_bytes = {big};
                    p.class_slots = {k0};
                    if (split > 0) {
                        p.class_slot_bytes.push_back(small);
                        p.class_slots.push_back(k1);
                    }
                    for (std::size_t g = 0; g < n; ++g) {
                        if (p.resident[g]) continue;
                        const std::uint64_t tail = in.group_bytes[g] - p.head_bytes[g];
                        p.size_class[g] = split > 0 && tail <= split ? 1 : 0;
                    }
                    const double t = ferry::modeled_seconds(in, p);
                    best = std::min(best, t);
                    if (split == 0) *best_one_class = std::min(*best_one_class, t);
                }
            }
        }
    };
    each(0);
    return best;
}

PlanInput random_small(std::mt19937_64 &rng) {
    PlanInput in;
    const std::size_t n = 2 + rng() % 4;
    for (std::size_t g = 0; g < n; ++g) {
        std::vector<std::uint64_t> pieces;
        for (std::size_t k = 1 + rng() % 3; k > 0; --k) pieces.push_back(256 * (1 + rng() % 32));
        in.group_bytes.push_back(total_of(pieces));
        if (pieces.size() == 1) pieces.clear();  // one piece: moves whole
        in.pieces.push_back(pieces);
        in.compute_s.push_back(rng() % 4 == 0 ? 1e-3 * static_cast<double>(rng() % 1000) / 100
                                              : 1e-3 * static_cast<double>(rng() % 100) / 100);
    }
    in.link_bytes_per_s = 1e6 * static_cast<double>(1 + rng() % 20);
    in.slots_per_class = 2;
    in.max_slots_per_class = 3;
    in.pieces_in_order = rng() % 2 == 0;  // as a re-plan does, or as plan does
    const std::uint64_t total = total_of(in.group_bytes);
    const std::uint64_t minimum = ferry::minimum_budget(in);
    in.budget = minimum + rng() % (std::max(total, minimum) - minimum + 1);
    return in;
}

std::string describe(const PlanInput &in) {
    std::ostringstream s;
    s << "budget " << in.budget << ", link " << in.link_bytes_per_s << " B/s, groups";
    for (std::size_t g = 0; g < in.group_bytes.size(); ++g) {
        s << " [" << in.group_bytes[g] << " B, " << in.compute_s[g] * 1e3 << " ms:";
        for (std::uint64_t p : in.pieces[g]) s << ' ' << p;
        s << ']';
    }
    return s.str();
}

}  // namespace

TEST_CASE("A modeled pass lies between its compute and its compute plus its copies",
          "[compute-plan]") {
    std::mt19937_64 rng(11);
    for (int k = 0; k < 2000; ++k) {
        const std::size_t n = 1 + rng() % 8;
        PassModelInput in;
        in.class_slots = {2 + static_cast<std::uint32_t>(rng() % 3), 2};
        in.link_bytes_per_s = 1e6 * static_cast<double>(1 + rng() % 100);
        in.copy_latency_s = 1e-6 * static_cast<double>(rng() % 10);
        double compute = 0.0, copies = 0.0;
        for (std::uint32_t g = 0; g < n; ++g) {
            in.order.push_back(g);
            in.compute_s.push_back(1e-6 * static_cast<double>(rng() % 1000));
            compute += in.compute_s.back();
            const int c = static_cast<int>(rng() % 3) - 1;
            in.size_class.push_back(c);
            in.streamed_bytes.push_back(c < 0 ? 0 : 1 + rng() % 100000);
            if (c >= 0) copies += in.copy_latency_s + in.streamed_bytes.back() / in.link_bytes_per_s;
        }
        const int passes = 1 + static_cast<int>(rng() % 4);
        const ferry::PassModelResult r = ferry::model_pass(in, passes);
        INFO("passes " << passes << ", compute " << compute << ", copies " << copies);
        CHECK(r.seconds_per_pass >= compute * (1 - 1e-12));
        // Each streamed group is copied once a pass; prefetch into the next pass may queue
        // one pass of copies ahead of this one's.
        CHECK(r.seconds_per_pass * passes <=
              (passes * (compute + copies) + copies) * (1 + 1e-12));
        CHECK(r.misses == 0);  // the host runs ahead: prefetch is never too late to issue
    }
}

TEST_CASE("A pass bound by the link runs at the link's rate, plus the first copy",
          "[compute-plan]") {
    // Three groups streamed through two slots: 3 ms of copy against 1 ms of compute each.
    PassModelInput in;
    in.order = {0, 1, 2};
    in.compute_s = {1e-3, 1e-3, 1e-3};
    in.streamed_bytes = {3000, 3000, 3000};
    in.size_class = {0, 0, 0};
    in.class_slots = {2};
    in.link_bytes_per_s = 1e6;
    const int passes = 10;
    const double s = ferry::model_pass(in, passes).seconds_per_pass;
    // The link never idles: 30 copies end at 90 ms, the last compute 1 ms later.
    CHECK(s == Approx((30 * 3e-3 + 1e-3) / passes));
}

TEST_CASE("Groups that fit their class's slots are copied once, and the pass is its compute",
          "[compute-plan]") {
    PassModelInput in;
    in.order = {0, 1, 2, 3};
    in.compute_s = {1e-2, 1e-2, 1e-2, 1e-2};
    in.streamed_bytes = {0, 1000, 0, 1000};
    in.size_class = {-1, 0, -1, 0};
    in.class_slots = {2};
    in.link_bytes_per_s = 1e6;  // 1 ms a copy, hidden behind group 0's compute
    CHECK(ferry::model_pass(in, 5).seconds_per_pass == Approx(4e-2));
}

TEST_CASE("The compute-aware planner is within 2% of the brute-force optimum on small models, "
          "on average",
          "[compute-plan]") {
    std::mt19937_64 rng(20261201);
    const int instances = 200;
    double worst = 1.0, sum = 0.0;
    int counted = 0, two_classes_pay = 0, two_classes_chosen = 0;
    std::string worst_case;
    for (int k = 0; k < instances; ++k) {
        const PlanInput in = random_small(rng);
        INFO(describe(in));
        double one_class = 0.0;
        const double optimum = brute_force(in, &one_class);
        Plan plan;
        const ferry_status status = [&] {
            try {
                plan = ferry::make_compute_plan(in);
            } catch (const ferry::Error &e) {
                return e.status();
            }
            return FERRY_OK;
        }();
        if (status != FERRY_OK) {
            // Only a budget that holds no whole-group plan is refused.
            CHECK(status == FERRY_ERROR_BUDGET_TOO_SMALL);
            continue;
        }
        check_compute_plan(in, plan);
        const double modeled = ferry::modeled_seconds(in, plan);
        CHECK(modeled == Approx(plan.modeled_pass_s));
        // Never slower than the plan by bytes, which is among the candidates (whole groups
        // only, when heads must be prefixes).
        PlanInput by_bytes = in;
        if (in.pieces_in_order) by_bytes.pieces.clear();
        Plan bytes = ferry::make_plan(by_bytes);
        std::vector<std::uint32_t> order(in.group_bytes.size());
        std::iota(order.begin(), order.end(), 0);
        ferry::spread_residents(bytes, in.group_bytes,
                                std::vector<std::uint64_t>(order.size(), 1),
                                std::vector<bool>(order.size(), false), order);
        CHECK(modeled <= ferry::modeled_seconds(in, bytes) * (1 + 1e-9));
        if (!(optimum < std::numeric_limits<double>::infinity())) continue;
        const double ratio = modeled / optimum;
        INFO("optimum " << optimum << " s, planner " << modeled << " s");
        // The heuristic misses some link-bound instances whose best tails are a knapsack
        // over prefix cuts (worst seen: 1.29, four groups at 96% of the model).
        CHECK(ratio <= 1.35);
        sum += ratio;
        ++counted;
        if (ratio > worst) {
            worst = ratio;
            worst_case = describe(in);
        }
        if (optimum < one_class * 0.99) {
            ++two_classes_pay;
            two_classes_chosen += plan.class_slot_bytes.size() == 2;
        }
    }
    WARN("compute-aware planner against brute force over " << counted << " small models: mean "
         << sum / std::max(counted, 1) << ", worst " << worst << " of the optimum"
         << (worst_case.empty() ? "" : " at " + worst_case) << "; two classes paid in "
         << two_classes_pay << ", chosen in " << two_classes_chosen);
    REQUIRE(counted > instances / 2);
    CHECK(sum / counted <= 1.02);
}

TEST_CASE("FLUX's shape at half its size: spreading the copies reaches the compute floor",
          "[compute-plan]") {
    // 19 double blocks, then 38 single blocks of 0.42 of their size, compute in proportion
    // to bytes, a copy 1.62 times its group's compute: FLUX at 1024x1024 on PCIe Gen4.
    PlanInput in;
    const std::vector<std::uint64_t> double_block = {6, 6, 1, 1, 1, 1, 1, 1, 1, 1, 4, 4, 4, 4};
    const std::vector<std::uint64_t> single_block = {3, 4, 5, 1, 1, 1};
    const std::uint64_t unit = 1 << 16;
    const double link = 25e9, compute_per_byte = 1.0 / (1.62 * link);
    double compute = 0.0;
    for (int g = 0; g < 19 + 38; ++g) {
        std::vector<std::uint64_t> pieces;
        for (std::uint64_t u : g < 19 ? double_block : single_block) pieces.push_back(u * unit);
        in.group_bytes.push_back(total_of(pieces));
        in.pieces.push_back(pieces);
        in.compute_s.push_back(static_cast<double>(in.group_bytes.back()) * compute_per_byte);
        compute += in.compute_s.back();
    }
    in.budget = total_of(in.group_bytes) / 2;
    in.link_bytes_per_s = link;

    Plan bytes = ferry::make_plan(in);
    std::vector<std::uint32_t> order(in.group_bytes.size());
    std::iota(order.begin(), order.end(), 0);
    ferry::spread_residents(bytes, in.group_bytes, std::vector<std::uint64_t>(order.size(), 1),
                            std::vector<bool>(order.size(), false), order);
    auto floor_of = [&](const Plan &p) {
        return std::max(compute, static_cast<double>(p.streamed_bytes_per_pass) / link);
    };
    const double by_bytes = floor_of(bytes) / ferry::modeled_seconds(in, bytes);
    const Plan plan = ferry::make_compute_plan(in);
    check_compute_plan(in, plan);
    const double by_compute = floor_of(plan) / plan.modeled_pass_s;
    INFO("efficiency planned by bytes " << by_bytes << ", by compute " << by_compute);
    CHECK(by_bytes < 0.92);
    CHECK(by_compute >= 0.97);
    CHECK(plan.modeled_pass_s < ferry::modeled_seconds(in, bytes));
}

TEST_CASE("The compute-aware planner keeps preferred groups resident and refuses bad input",
          "[compute-plan]") {
    PlanInput in;
    in.group_bytes = {4096, 4096, 4096, 4096};
    in.pieces = {{2048, 2048}, {2048, 2048}, {2048, 2048}, {2048, 2048}};
    in.compute_s = {1e-3, 1e-6, 1e-6, 1e-6};
    in.link_bytes_per_s = 1e6;
    in.budget = 3 * 4096;
    in.prefer_resident = {false, false, false, true};
    const Plan plan = ferry::make_compute_plan(in);
    check_compute_plan(in, plan);
    CHECK(plan.resident[3]);

    PlanInput no_compute = in;
    no_compute.compute_s.clear();
    try {
        ferry::make_compute_plan(no_compute);
        FAIL("planned without compute times");
    } catch (const ferry::Error &e) {
        CHECK(e.status() == FERRY_ERROR_INVALID_ARGUMENT);
    }
    PlanInput everything = in;
    everything.budget = 4 * 4096;
    const Plan all = ferry::make_compute_plan(everything);
    CHECK(std::all_of(all.resident.begin(), all.resident.end(), [](bool r) { return r; }));
    CHECK(all.streaming_bytes == 0);
}

TEST_CASE("The slab carves each class the slot count its plan gives it", "[compute-plan]") {
    Plan plan;
    plan.resident = {false, false, false};
    plan.size_class = {0, 1, 1};
    plan.head_bytes = {0, 0, 0};
    plan.class_slot_bytes = {4096, 1024};
    plan.class_slots = {4, 2};
    const ferry::SlabLayout layout = ferry::carve_slab(plan, {4096, 1024, 1024}, 2);
    REQUIRE(layout.streaming.size() == 6);
    CHECK(layout.streaming_bytes == 4 * 4096 + 2 * 1024);
    CHECK(std::count_if(layout.streaming.begin(), layout.streaming.end(),
                        [](const ferry::StreamingSlot &s) { return s.size_class == 0; }) == 4);
}

// Compressed images (link_pieces): a slot holds a group's raw bytes, its copy moves fewer.
// Four groups, room for one resident besides two slots: 900 raw bytes that do not
// compress, or 1000 that cross the link as 670. By raw bytes a 1000 stays; by link bytes,
// the 900.
TEST_CASE("With compressed sizes, residency goes to the group whose copy moves most bytes",
          "[compute-plan]") {
    PlanInput in;
    in.group_bytes = {1000, 900, 1000, 1000};
    in.pieces = {{1000}, {900}, {1000}, {1000}};
    in.budget = 2 * 1000 + 1000;
    const Plan by_raw = ferry::make_plan(in);
    REQUIRE_FALSE(by_raw.resident[1]);
    REQUIRE(std::count(by_raw.resident.begin(), by_raw.resident.end(), true) == 1);

    in.link_pieces = {{670}, {}, {670}, {670}};
    const Plan by_link = ferry::make_plan(in);
    REQUIRE(by_link.resident == std::vector<bool>{false, true, false, false});
    REQUIRE(ferry::streamed_link_bytes(in, by_link, 0) == 670);
    REQUIRE(ferry::streamed_link_bytes(in, by_link, 1) == 0);

    // A re-plan from the raw plan, link-bound (no compute), moves residency the same way,
    // and the model now counts the compressed copies.
    in.compute_s = {0.0, 0.0, 0.0, 0.0};
    in.link_bytes_per_s = 1e6;
    in.pieces_in_order = true;
    Plan current = by_raw;
    const Plan next = ferry::make_compute_plan(in, &current);
    REQUIRE_FALSE(next.resident[0]);
    REQUIRE(next.resident[1]);
    REQUIRE(next.modeled_pass_s < ferry::modeled_seconds(in, by_raw));
    const PassModelInput model = ferry::pass_model_input(in, by_link);
    REQUIRE(model.streamed_bytes == std::vector<std::uint64_t>{670, 0, 670, 670});

    // Of equal sizes too: the re-plan's spreading of residents over the pass swaps only
    // groups whose copies move as many bytes.
    in.group_bytes = {1000, 1000, 1000, 1000};
    in.pieces = {{1000}, {1000}, {1000}, {1000}};
    for (std::size_t uncompressed = 0; uncompressed < 4; ++uncompressed) {
        in.link_pieces.assign(4, {670});
        in.link_pieces[uncompressed] = {};
        Plan first = by_raw;
        first.resident.assign(4, false);
        first.size_class.assign(4, 0);
        first.resident[(uncompressed + 1) % 4] = true;
        first.size_class[(uncompressed + 1) % 4] = -1;
        const Plan replanned = ferry::make_compute_plan(in, &first);
        INFO("uncompressed group " << uncompressed);
        REQUIRE(replanned.resident[uncompressed]);
        REQUIRE(std::count(replanned.resident.begin(), replanned.resident.end(), true) == 1);
    }
}

TEST_CASE("A split group's streamed link bytes are those of the pieces in its tail",
          "[compute-plan]") {
    PlanInput in;
    in.group_bytes = {300};
    in.pieces = {{100, 100, 100}};
    in.link_pieces = {{60, 70, 80}};
    Plan plan;
    plan.resident = {false};
    plan.size_class = {0};
    plan.in_head = {{}};
    plan.head_bytes = {100};  // a prefix: the tail is the last two pieces
    REQUIRE(ferry::streamed_link_bytes(in, plan, 0) == 150);
    plan.in_head = {{false, true, false}};  // the middle piece resident
    REQUIRE(ferry::streamed_link_bytes(in, plan, 0) == 140);
    plan.head_bytes = {0};
    plan.in_head = {{}};
    REQUIRE(ferry::streamed_link_bytes(in, plan, 0) == 210);

    in.link_pieces = {{60, 170, 80}};  // more link bytes than the piece has
    in.budget = 1000;
    REQUIRE_THROWS_AS(ferry::make_plan(in), ferry::Error);
    in.link_pieces = {{60, 70}};  // not one per piece
    REQUIRE_THROWS_AS(ferry::make_plan(in), ferry::Error);
}
