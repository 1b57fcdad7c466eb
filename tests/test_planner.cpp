// Tests of the planner (runtime/core/planner.hpp): optimality against brute force, budget and
// field consistency, and the error cases.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <numeric>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "base/error.hpp"
#include "core/planner.hpp"

using ferry::Plan;
using ferry::PlanInput;

namespace {

constexpr std::uint64_t KiB = 1024, MiB = 1024 * KiB;

// The status of the ferry::Error that f throws, FERRY_OK when it throws nothing.
template <class F>
ferry_status status_of(F f) {
    try {
        f();
    } catch (const ferry::Error &e) {
        return e.status();
    }
    return FERRY_OK;
}

std::uint64_t uses_of(const PlanInput &in, std::size_t i) {
    return in.uses_per_pass.empty() ? 1 : in.uses_per_pass[i];
}

// Every plan field agrees with the others, with the input and with the budget.
void check_plan(const PlanInput &in, const Plan &plan) {
    const std::size_t n = in.group_bytes.size();
    REQUIRE(plan.resident.size() == n);
    REQUIRE(plan.size_class.size() == n);
    REQUIRE(plan.head_bytes.size() == n);
    REQUIRE(plan.in_head.size() == n);
    std::uint64_t resident = 0, streamed = 0;
    std::vector<std::uint64_t> class_max(plan.class_slot_bytes.size(), 0);
    for (std::size_t i = 0; i < n; ++i) {
        const int c = plan.size_class[i];
        const std::uint64_t head = plan.head_bytes[i];
        if (plan.resident[i]) {
            CHECK(c == -1);
            CHECK(head == 0);
            CHECK(plan.in_head[i].empty());
            resident += in.group_bytes[i];
            continue;
        }
        REQUIRE(c >= 0);
        REQUIRE(static_cast<std::size_t>(c) < class_max.size());
        if (head > 0) {  // split: the head is made of the group's own pieces
            REQUIRE(i < in.pieces.size());
            REQUIRE(plan.in_head[i].size() == in.pieces[i].size());
            std::uint64_t sum = 0;
            for (std::size_t k = 0; k < in.pieces[i].size(); ++k)
                if (plan.in_head[i][k]) sum += in.pieces[i][k];
            CHECK(sum == head);
            REQUIRE(head < in.group_bytes[i]);
        } else {
            CHECK(plan.in_head[i].empty());
        }
        const std::uint64_t tail = in.group_bytes[i] - head;
        class_max[c] = std::max(class_max[c], tail);
        resident += head;
        streamed += tail * uses_of(in, i);
    }
    CHECK(class_max == plan.class_slot_bytes);  // also: no class is empty
    CHECK(std::is_sorted(plan.class_slot_bytes.rbegin(), plan.class_slot_bytes.rend()));
    const std::uint64_t slot_sum = std::accumulate(
        plan.class_slot_bytes.begin(), plan.class_slot_bytes.end(), std::uint64_t{0});
    CHECK(plan.resident_bytes == resident);
    CHECK(plan.streaming_bytes == in.slots_per_class * slot_sum);
    CHECK(plan.streamed_bytes_per_pass == streamed);
    CHECK(plan.resident_bytes + plan.streaming_bytes <= in.budget);
}

// Group sizes drawn from several shapes of model, most of them multiples of 256.
std::vector<std::uint64_t> random_sizes(std::mt19937_64 &rng, std::size_t n) {
    auto log_uniform = [&](double lo, double hi) {
        return std::exp(std::uniform_real_distribution<double>(std::log(lo), std::log(hi))(rng));
    };
    auto round256 = [](double b) {
        return std::max<std::uint64_t>(256, std::uint64_t(b) / 256 * 256);
    };
    std::vector<std::uint64_t> sizes(n);
    const double base = log_uniform(4.0 * KiB, 400.0 * MiB);
    switch (rng() % 5) {
        case 0:  // all equal, like one block per group
            std::fill(sizes.begin(), sizes.end(), round256(base));
            break;
        case 1: {  // two sizes, like flux's double and single blocks
            const std::uint64_t small = round256(base * log_uniform(0.3, 0.7));
            for (auto &s : sizes) s = rng() % 2 ? round256(base) : small;
            break;
        }
        case 2:  // similar sizes, within 10%
            for (auto &s : sizes) s = round256(base * log_uniform(0.9, 1.1));
            break;
        case 3:  // anything from a few KB to a few hundred MB
            for (auto &s : sizes) s = round256(log_uniform(4.0 * KiB, 400.0 * MiB));
            break;
        default:  // sizes that are not multiples of 256
            for (auto &s : sizes) s = std::uint64_t(log_uniform(4.0 * KiB, 400.0 * MiB));
            break;
    }
    return sizes;
}

// Every resident subset of a small model, by the planner's cost model.
struct BruteForce {
    std::vector<std::uint64_t> footprint;  // per subset: resident + slots * largest streamed
    std::vector<std::uint64_t> streamed;   // per subset: bytes * uses of the streamed groups

    explicit BruteForce(const PlanInput &in) {
        const std::size_t n = in.group_bytes.size();
        for (std::uint32_t mask = 0; mask < (1u << n); ++mask) {
            std::uint64_t resident = 0, largest = 0, bytes = 0;
            for (std::size_t i = 0; i < n; ++i) {
                if (mask >> i & 1) {
                    resident += in.group_bytes[i];
                } else {
                    largest = std::max(largest, in.group_bytes[i]);
                    bytes += in.group_bytes[i] * uses_of(in, i);
                }
            }
            footprint.push_back(resident + in.slots_per_class * largest);
            streamed.push_back(bytes);
        }
    }
    std::uint64_t minimum() const { return *std::min_element(footprint.begin(), footprint.end()); }
    // The fewest bytes streamed within the budget; max() when nothing fits.
    std::uint64_t best(std::uint64_t budget) const {
        std::uint64_t best = std::numeric_limits<std::uint64_t>::max();
        for (std::size_t s = 0; s < footprint.size(); ++s)
            if (footprint[s] <= budget) best = std::min(best, streamed[s]);
        return best;
    }
};

// A small random model (1..12 groups) for comparison with brute force.
PlanInput random_small_model(std::mt19937_64 &rng) {
    PlanInput in;
    in.group_bytes = random_sizes(rng, 1 + rng() % 12);
    if (rng() % 2)
        for (std::size_t i = 0; i < in.group_bytes.size(); ++i)
            in.uses_per_pass.push_back(1 + rng() % 3);
    in.slots_per_class = 2 + rng() % 3;
    return in;
}

// A budget around the interesting points: below the minimum, at it, between it and
// the whole model, at the whole model, above it.
std::uint64_t random_budget(std::mt19937_64 &rng, std::uint64_t minimum, std::uint64_t total) {
    auto between = [&](std::uint64_t lo, std::uint64_t hi) {
        return std::uniform_int_distribution<std::uint64_t>(lo, hi)(rng);
    };
    const std::uint64_t top = std::max(minimum, total);
    switch (rng() % 8) {
        case 0: return between(minimum / 2, minimum - 1);
        case 1: return minimum - 1;
        case 2: return minimum;
        case 3: return total - 1;
        case 4: return total;
        case 5: return between(top, top + top / 4);
        default: return between(minimum, top);
    }
}

std::string describe(const PlanInput &in) {
    std::ostringstream s;
    s << "budget " << in.budget << ", slots_per_class " << in.slots_per_class << ", groups";
    for (std::size_t i = 0; i < in.group_bytes.size(); ++i)
        s << ' ' << in.group_bytes[i] << 'x' << uses_of(in, i);
    return s.str();
}

}  // namespace

TEST_CASE("The planner streams at most 5% more than the brute-force optimum on small models",
          "[planner]") {
    std::mt19937_64 rng(20240611);
    const int instances = 5000;
    double worst = 1.0;
    std::string worst_case;
    for (int k = 0; k < instances; ++k) {
        PlanInput in = random_small_model(rng);
        const BruteForce brute(in);
        const std::uint64_t total =
            std::accumulate(in.group_bytes.begin(), in.group_bytes.end(), std::uint64_t{0});
        in.budget = random_budget(rng, brute.minimum(), total);
        const std::uint64_t optimum = brute.best(in.budget);
        INFO(describe(in));
        if (optimum == std::numeric_limits<std::uint64_t>::max()) {
            CHECK(status_of([&] { ferry::make_plan(in); }) == FERRY_ERROR_BUDGET_TOO_SMALL);
            continue;
        }
        Plan plan;
        REQUIRE(status_of([&] { plan = ferry::make_plan(in); }) == FERRY_OK);
        // Recomputed from the resident set, so that a wrong field cannot hide a bad plan.
        std::uint64_t streamed = 0;
        for (std::size_t i = 0; i < in.group_bytes.size(); ++i)
            if (!plan.resident[i]) streamed += in.group_bytes[i] * uses_of(in, i);
        INFO("optimum " << optimum << ", planner " << streamed);
        CHECK(plan.resident_bytes + plan.streaming_bytes <= in.budget);
        CHECK(streamed * 100 <= optimum * 105);
        const double ratio = optimum == 0 ? (streamed == 0 ? 1.0 : INFINITY)
                                          : double(streamed) / double(optimum);
        if (ratio > worst) {
            worst = ratio;
            worst_case = describe(in);
        }
    }
    WARN("worst ratio of streamed bytes to the optimum over " << instances << " small models: "
         << worst << (worst_case.empty() ? "" : ", at " + worst_case));
}

TEST_CASE("minimum_budget is the smallest footprint of any resident set", "[planner]") {
    std::mt19937_64 rng(7);
    for (int k = 0; k < 1000; ++k) {
        const PlanInput in = random_small_model(rng);
        INFO(describe(in));
        CHECK(ferry::minimum_budget(in) == BruteForce(in).minimum());
    }
}

TEST_CASE("Plans fit the budget and their fields agree with each other", "[planner]") {
    std::mt19937_64 rng(11);
    for (int k = 0; k < 300; ++k) {
        PlanInput in;
        in.group_bytes = random_sizes(rng, 1 + rng() % 100);
        if (rng() % 2)
            for (std::size_t i = 0; i < in.group_bytes.size(); ++i)
                in.uses_per_pass.push_back(1 + rng() % 3);
        in.slots_per_class = 2 + rng() % 3;
        const std::uint64_t total =
            std::accumulate(in.group_bytes.begin(), in.group_bytes.end(), std::uint64_t{0});
        in.budget = random_budget(rng, ferry::minimum_budget(in), total);
        if (in.budget < ferry::minimum_budget(in)) continue;
        INFO(describe(in));
        check_plan(in, ferry::make_plan(in));
    }
}

TEST_CASE("Every group is resident when the budget holds the whole model", "[planner]") {
    PlanInput in;
    in.group_bytes = {300 * MiB, 40 * MiB, 40 * MiB, 7 * KiB};
    in.budget = 380 * MiB + 7 * KiB;
    const Plan plan = ferry::make_plan(in);
    check_plan(in, plan);
    CHECK(plan.resident == std::vector<bool>(4, true));
    CHECK(plan.class_slot_bytes.empty());
    CHECK(plan.streaming_bytes == 0);
    CHECK(plan.streamed_bytes_per_pass == 0);
}

TEST_CASE("Sixty equal groups under a third of the model keep the budget less two slots resident",
          "[planner]") {
    // Qwen-Image-like: ~41 GB in 60 blocks.
    const std::uint64_t group = 41000000000ull / 60 / 256 * 256;
    PlanInput in;
    in.group_bytes.assign(60, group);
    in.budget = 60 * group / 3;
    const Plan plan = ferry::make_plan(in);
    check_plan(in, plan);
    CHECK(plan.class_slot_bytes == std::vector<std::uint64_t>{group});
    CHECK(plan.resident_bytes <= in.budget - 2 * group);
    CHECK(plan.resident_bytes > in.budget - 3 * group);
}

TEST_CASE("Two very different sizes stream through one class when resident groups fill the budget",
          "[planner]") {
    // A second class would cost slots_per_class slots of the small size, but the
    // resident set already takes all but less than one small group of what the big
    // slots leave, so the split never fits and the plan keeps one class.
    PlanInput in;
    for (int i = 0; i < 10; ++i) in.group_bytes.push_back(400 * MiB);
    for (int i = 0; i < 20; ++i) in.group_bytes.push_back(40 * MiB);
    in.budget = 3030 * MiB;
    const Plan plan = ferry::make_plan(in);
    check_plan(in, plan);
    CHECK(plan.class_slot_bytes == std::vector<std::uint64_t>{400 * MiB});
    CHECK(plan.resident_bytes == 2200 * MiB);
}

TEST_CASE("A budget below the minimum is refused with the minimum and its cause", "[planner]") {
    PlanInput in;
    in.group_bytes = {2048, 2048, 2048};
    in.budget = 1000;
    try {
        ferry::make_plan(in);
        FAIL("make_plan accepted a budget of 1000 bytes");
    } catch (const ferry::Error &e) {
        const std::string message = e.what();
        INFO(message);
        CHECK(e.status() == FERRY_ERROR_BUDGET_TOO_SMALL);
        CHECK(message.find("budget of 1000 bytes") != std::string::npos);
        CHECK(message.find("at least 4096 bytes") != std::string::npos);
        CHECK(message.find("slots_per_class 2 x largest streamed group 2048 bytes") !=
              std::string::npos);
    }
    in.budget = 4096;
    CHECK(status_of([&] { ferry::make_plan(in); }) == FERRY_OK);
}

TEST_CASE("Invalid inputs are refused as invalid arguments", "[planner]") {
    PlanInput in;
    in.group_bytes = {4096, 8192};
    in.budget = 1 << 20;
    REQUIRE(status_of([&] { ferry::make_plan(in); }) == FERRY_OK);
    SECTION("fewer than two slots per class") { in.slots_per_class = 1; }
    SECTION("no groups") { in.group_bytes.clear(); }
    SECTION("a group of zero bytes") { in.group_bytes[1] = 0; }
    SECTION("uses_per_pass of the wrong length") { in.uses_per_pass = {1, 1, 1}; }
    SECTION("a group used zero times per pass") { in.uses_per_pass = {1, 0}; }
    SECTION("bytes streamed per pass overflowing 64 bits") {
        in.group_bytes = {std::uint64_t{1} << 62, 4096};
        in.uses_per_pass = {4, 1};
    }
    CHECK(status_of([&] { ferry::make_plan(in); }) == FERRY_ERROR_INVALID_ARGUMENT);
    CHECK(status_of([&] { ferry::minimum_budget(in); }) == FERRY_ERROR_INVALID_ARGUMENT);
}

TEST_CASE("Three hundred groups of similar sizes are planned", "[planner]") {
    std::mt19937_64 rng(3);
    PlanInput in;
    for (int i = 0; i < 300; ++i)
        in.group_bytes.push_back((600 * MiB + rng() % (100 * MiB)) / 256 * 256);
    in.budget = std::accumulate(in.group_bytes.begin(), in.group_bytes.end(), std::uint64_t{0}) / 3;
    check_plan(in, ferry::make_plan(in));
}

namespace {

// Qwen-Image's double block at 1/64 scale, as 256-aligned tensor sizes: two modulations,
// four MLP matrices, eight attention matrices, and their biases and norms.
std::vector<std::uint64_t> double_block_pieces() {
    std::vector<std::uint64_t> pieces = {1769472, 1769472};
    pieces.insert(pieces.end(), 4, 1179648);
    pieces.insert(pieces.end(), 8, 294912);
    pieces.insert(pieces.end(), 2, 768);   // modulation biases
    pieces.insert(pieces.end(), 8, 256);   // attention biases
    pieces.insert(pieces.end(), 4, 256);   // norms
    pieces.insert(pieces.end(), 2, 512);   // MLP up biases
    pieces.insert(pieces.end(), 2, 256);   // MLP down biases
    return pieces;
}

PlanInput with_random_pieces(std::mt19937_64 &rng, PlanInput in) {
    for (std::uint64_t bytes : in.group_bytes) {
        std::vector<std::uint64_t> pieces;
        if (rng() % 4 != 0 && bytes >= 2) {  // some groups move whole
            std::uint64_t left = bytes;
            for (int k = 1 + rng() % 12; k > 1 && left > 1; --k) {
                const std::uint64_t piece = 1 + rng() % (left - 1);
                pieces.push_back(piece);
                left -= piece;
            }
            pieces.push_back(left);
        }
        in.pieces.push_back(pieces);
    }
    return in;
}

}  // namespace

TEST_CASE("Sixty blocks at half the model are split: less than half plus two slots streams",
          "[planner]") {
    PlanInput in;
    const std::vector<std::uint64_t> block = double_block_pieces();
    const std::uint64_t block_bytes = std::accumulate(block.begin(), block.end(), std::uint64_t{0});
    in.group_bytes.assign(60, block_bytes);
    in.pieces.assign(60, block);
    in.group_bytes.push_back(1267456);  // the non-block weights, moved whole
    in.pieces.push_back({});
    const std::uint64_t total =
        std::accumulate(in.group_bytes.begin(), in.group_bytes.end(), std::uint64_t{0});
    in.budget = total / 2;

    PlanInput whole_groups = in;
    whole_groups.pieces.clear();
    const Plan whole = ferry::make_plan(whole_groups);
    const Plan split = ferry::make_plan(in);
    check_plan(whole_groups, whole);
    check_plan(in, split);
    INFO("whole groups stream " << whole.streamed_bytes_per_pass << ", split "
                                << split.streamed_bytes_per_pass << " of " << total);
    // Whole groups cannot use the last group's worth of the budget: just over the limit.
    CHECK(whole.streamed_bytes_per_pass > total - in.budget + 2 * block_bytes);
    CHECK(split.streamed_bytes_per_pass <= total - in.budget + 2 * block_bytes);
    CHECK(split.streamed_bytes_per_pass * 100 < whole.streamed_bytes_per_pass * 98);
    CHECK(split.class_slot_bytes.front() < block_bytes * 6 / 10);
    CHECK(split.head_bytes.back() == 0);  // without pieces, never split
}

TEST_CASE("Split plans fit the budget and their heads are made of their own pieces",
          "[planner]") {
    std::mt19937_64 rng(23);
    int split_plans = 0;
    for (int k = 0; k < 1000; ++k) {
        PlanInput whole_groups;
        whole_groups.group_bytes = random_sizes(rng, 1 + rng() % 40);
        if (rng() % 2)
            for (std::size_t i = 0; i < whole_groups.group_bytes.size(); ++i)
                whole_groups.uses_per_pass.push_back(1 + rng() % 3);
        whole_groups.slots_per_class = 2 + rng() % 3;
        const std::uint64_t total = std::accumulate(
            whole_groups.group_bytes.begin(), whole_groups.group_bytes.end(), std::uint64_t{0});
        whole_groups.budget =
            random_budget(rng, ferry::minimum_budget(whole_groups), total);
        if (whole_groups.budget < ferry::minimum_budget(whole_groups)) continue;
        const PlanInput in = with_random_pieces(rng, whole_groups);
        INFO(describe(in));
        const Plan split = ferry::make_plan(in);
        check_plan(in, split);
        split_plans += std::any_of(split.head_bytes.begin(), split.head_bytes.end(),
                                   [](std::uint64_t head) { return head > 0; });
    }
    CHECK(split_plans > 100);  // the checks above are not only about whole groups
}

TEST_CASE("The last tail gives up only what is still needed", "[planner]") {
    // Ten groups of four 64 KiB pieces. With 192 KiB slots, 1604 KiB must stream: eight
    // tails of three pieces, then a ninth of two (not three), and the tenth stays.
    constexpr std::uint64_t piece = 64 * KiB;
    PlanInput in;
    in.group_bytes.assign(10, 4 * piece);
    in.pieces.assign(10, std::vector<std::uint64_t>(4, piece));
    in.budget = 1340 * KiB;
    const Plan plan = ferry::make_plan(in);
    check_plan(in, plan);
    CHECK(plan.class_slot_bytes == std::vector<std::uint64_t>{3 * piece});
    CHECK(plan.streamed_bytes_per_pass == 8 * 3 * piece + 2 * piece);
    CHECK(std::count(plan.head_bytes.begin(), plan.head_bytes.end(), 2 * piece) == 1);
    CHECK(std::count(plan.resident.begin(), plan.resident.end(), true) == 1);
}

TEST_CASE("Pieces that do not describe their groups are refused", "[planner]") {
    PlanInput in;
    in.group_bytes = {4096, 8192};
    in.budget = 1 << 20;
    in.pieces = {{1024, 3072}, {}};
    REQUIRE(status_of([&] { ferry::make_plan(in); }) == FERRY_OK);
    SECTION("one entry per group") { in.pieces = {{4096}}; }
    SECTION("pieces summing to more than the group") { in.pieces = {{4096, 1}, {}}; }
    SECTION("pieces summing to less than the group") { in.pieces = {{1024, 1024}, {}}; }
    SECTION("a piece of zero bytes") { in.pieces = {{0, 4096}, {}}; }
    SECTION("pieces whose sum wraps around 64 bits") {
        in.group_bytes = {std::uint64_t{1} << 63, 8192};
        in.pieces = {{std::uint64_t{1} << 63, std::uint64_t{1} << 63, std::uint64_t{1} << 63}, {}};
    }
    CHECK(status_of([&] { ferry::make_plan(in); }) == FERRY_ERROR_INVALID_ARGUMENT);
}

TEST_CASE("Preferred groups are resident first, or planned like the others when they cannot be",
          "[planner]") {
    PlanInput in;
    in.group_bytes = {100 * KiB, 100 * KiB, 100 * KiB, 100 * KiB, 40 * KiB};
    in.budget = 340 * KiB;  // two slots of 100 KiB, and 140 KiB resident
    const Plan plain = ferry::make_plan(in);
    check_plan(in, plain);
    // The knapsack keeps one 100 KiB group and the 40 KiB one; prefer another.
    const auto streamed = std::find(plain.resident.begin(), plain.resident.end(), false);
    REQUIRE(streamed != plain.resident.end());
    const std::size_t chosen = static_cast<std::size_t>(streamed - plain.resident.begin());
    REQUIRE(in.group_bytes[chosen] == 100 * KiB);

    in.prefer_resident.assign(5, false);
    in.prefer_resident[chosen] = true;
    const Plan preferred = ferry::make_plan(in);
    check_plan(in, preferred);
    CHECK(preferred.resident[chosen]);
    CHECK(preferred.streamed_bytes_per_pass == 300 * KiB);  // the chosen and 40 KiB stay

    in.prefer_resident = {true, true, true, false, false};  // 300 KiB leaves no room for slots
    const Plan fallback = ferry::make_plan(in);
    check_plan(in, fallback);
    CHECK(fallback.streamed_bytes_per_pass == plain.streamed_bytes_per_pass);

    in.prefer_resident = {true};
    CHECK(status_of([&] { ferry::make_plan(in); }) == FERRY_ERROR_INVALID_ARGUMENT);
}

TEST_CASE("Random preferences: plans fit, and preferred groups are resident when they can be",
          "[planner]") {
    std::mt19937_64 rng(31);
    for (int k = 0; k < 500; ++k) {
        PlanInput in;
        in.group_bytes = random_sizes(rng, 1 + rng() % 30);
        in.slots_per_class = 2 + rng() % 2;
        const std::uint64_t total =
            std::accumulate(in.group_bytes.begin(), in.group_bytes.end(), std::uint64_t{0});
        in.budget = random_budget(rng, ferry::minimum_budget(in), total);
        if (in.budget < ferry::minimum_budget(in)) continue;
        in = with_random_pieces(rng, in);
        PlanInput rest = in;
        rest.group_bytes.clear();
        rest.pieces.clear();
        std::uint64_t preferred = 0;
        for (std::size_t g = 0; g < in.group_bytes.size(); ++g) {
            in.prefer_resident.push_back(rng() % 4 == 0);
            if (in.prefer_resident[g]) {
                preferred += in.group_bytes[g];
            } else {
                rest.group_bytes.push_back(in.group_bytes[g]);
            }
        }
        INFO(describe(in));
        const Plan plan = ferry::make_plan(in);
        check_plan(in, plan);
        const bool fits = preferred <= in.budget &&
                          (rest.group_bytes.empty() ||
                           ferry::minimum_budget(rest) <= in.budget - preferred);
        if (!fits) continue;
        for (std::size_t g = 0; g < in.group_bytes.size(); ++g) {
            if (in.prefer_resident[g]) CHECK(plan.resident[g]);
        }
    }
}

TEST_CASE("A preferred group stays resident when only a split plan fits the others",
          "[planner]") {
    // A 10 MiB root, preferred; a 100 MiB group of ten 10 MiB pieces; five 10 MiB groups.
    // At 120 MiB, whole groups fit only with the root streamed (the big group resident,
    // two 10 MiB slots). Beside a resident root, only splitting the big group fits: a
    // 90 MiB head and 10 MiB slots.
    PlanInput in;
    in.group_bytes = {10 * MiB, 100 * MiB, 10 * MiB, 10 * MiB, 10 * MiB, 10 * MiB, 10 * MiB};
    in.pieces.assign(7, {});
    in.pieces[1].assign(10, 10 * MiB);
    in.prefer_resident.assign(7, false);
    in.prefer_resident[0] = true;
    in.budget = 120 * MiB;
    const Plan plan = ferry::make_plan(in);
    check_plan(in, plan);
    CHECK(plan.resident[0]);
    CHECK(plan.head_bytes[1] == 90 * MiB);
    CHECK(plan.class_slot_bytes == std::vector<std::uint64_t>{10 * MiB});
    CHECK(plan.streamed_bytes_per_pass == 60 * MiB);
}
