// ferry-bench's own logic: presets, flag parsing, the floor and efficiency, the sim link
// model, and a strategy against its analytic time. Timing checks are lower bounds (a
// modeled copy never ends early) with loose upper bounds, never speed targets.
#include <catch2/catch.hpp>

#include <chrono>
#include <cstring>
#include <thread>
#include <vector>

#include "device/device.hpp"
#include "options.hpp"
#include "platform.hpp"
#include "presets.hpp"
#include "report.hpp"
#include "device/sim_link.hpp"
#include "strategies.hpp"

using namespace bench;

namespace {

double ms_since(std::chrono::steady_clock::time_point start) {
    return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start)
        .count();
}

// The "custom" preset: `groups` groups of `group_mb` MB, each in `tensors` tensors.
Model custom(int groups, double group_mb, int tensors) {
    ModelChoice choice;
    choice.preset = "custom";
    choice.groups = groups;
    choice.group_mb = group_mb;
    choice.tensors_per_group = tensors;
    return build_model(choice);
}

Model preset(const char *name, double scale = 1.0, int blocks_per_group = 1) {
    ModelChoice choice;
    choice.preset = name;
    choice.scale = scale;
    choice.blocks_per_group = blocks_per_group;
    return build_model(choice);
}

}  // namespace

TEST_CASE("qwen-image has 60 blocks of 679.7 MB in 32 tensors and 81 MB of other weights") {
    const Model m = preset("qwen-image");
    REQUIRE(m.groups.size() == 61);
    CHECK(m.groups[0].name == "non_block");
    CHECK(m.groups[0].bytes == 81046656);
    for (std::size_t g = 1; g < m.groups.size(); ++g) {
        CHECK(m.groups[g].bytes == 679662592);
        CHECK(m.groups[g].tensors.size() == 32);
    }
    CHECK(m.flops == Approx(110e12).epsilon(0.01));
}

TEST_CASE("flux has two block sizes and wan14b 40 blocks of 702.8 MB") {
    const Model flux = preset("flux");
    REQUIRE(flux.groups.size() == 1 + 19 + 38);
    CHECK(flux.groups[1].bytes == 679662592);
    CHECK(flux.groups[20].bytes == 283183616);
    const Model wan = preset("wan14b");
    REQUIRE(wan.groups.size() == 41);
    CHECK(wan.groups[1].bytes == 702788608);
}

TEST_CASE("scaling shrinks every tensor and grouping keeps the bytes") {
    const Model full = preset("qwen-image");
    const Model scaled = preset("qwen-image", 1.0 / 64);
    CHECK(static_cast<double>(scaled.bytes) ==
          Approx(static_cast<double>(full.bytes) / 64).epsilon(0.001));
    CHECK(scaled.tensors == full.tensors);
    const Model grouped = preset("qwen-image", 1.0 / 64, 4);
    CHECK(grouped.groups.size() == 1 + 15);
    CHECK(grouped.bytes == scaled.bytes);
    CHECK(grouped.groups[1].name == "block.0-3");
}

TEST_CASE("the custom model has the groups, sizes and tensors asked for") {
    const Model m = custom(5, 8.0, 4);
    REQUIRE(m.groups.size() == 5);
    CHECK(m.groups[0].tensors.size() == 4);
    CHECK(static_cast<double>(m.groups[0].bytes) == Approx(8e6).epsilon(1e-6));
}

TEST_CASE("scales are fractions in (0, 1] and budgets bytes or percentages") {
    CHECK(parse_scale("1/64") == Approx(1.0 / 64));
    CHECK(parse_scale("0.5") == Approx(0.5));
    CHECK(parse_scale("1") == Approx(1.0));
    for (const char *bad : {"0", "2", "1/0", "abc", "1/", "/4", "1/2x", ""}) {
        INFO(bad);
        CHECK(parse_scale(bad) < 0.0);
    }
    CHECK(parse_budget("50%", 1000) == 500);
    CHECK(parse_budget("12345", 1000) == 12345);
    for (const char *bad : {"x", "-5", "1.5", "50%%", "0", ""}) {
        INFO(bad);
        CHECK(parse_budget(bad, 1000) == 0);
    }
}

TEST_CASE("the floor is the larger of compute and streamed bytes at the raw peak") {
    CHECK(floor_seconds(1.0, 10'000'000'000, 25.0) == Approx(1.0));
    CHECK(floor_seconds(0.1, 10'000'000'000, 25.0) == Approx(0.4));
    CHECK(efficiency(0.4, 0.5) == Approx(0.8));
    CHECK(efficiency(0.4, 0.0) == 0.0);
}

TEST_CASE("a strategy's verdict names what bounds it") {
    Measured m;
    m.name = "x";
    m.h2d_bytes_per_pass = 10'000'000'000;  // 0.4 s at 25 GB/s
    m.overhead = "host waits";
    m.seconds_per_pass = 0.41;
    Figures f = figures(m, 0.1, 25.0);
    CHECK(f.bound == "link");
    CHECK(f.floor_ms == Approx(400.0));
    CHECK(f.h2d_gbps == Approx(10.0 / 0.41));
    f = figures(m, 0.405, 25.0);
    CHECK(f.bound == "compute");
    m.seconds_per_pass = 2.0;
    f = figures(m, 0.1, 25.0);
    CHECK(f.bound == "overhead");
    CHECK(f.efficiency == Approx(0.2));
    CHECK(f.verdict.find("host waits") != std::string::npos);

    std::vector<Figures> all = {figures(m, 0.1, 25.0), figures(m, 0.1, 25.0)};
    all[1].measured.name = "ferry";
    all[1].ms_per_pass = 500.0;
    add_speedups(all);
    CHECK(all[0].ferry_speedup == Approx(4.0));
}

// The sim link's model, and a strategy timed on it: sim-only, left out of cuda runs.
TEST_CASE("a modeled copy takes its bytes over the rate, stretched by the time scale",
          "[sim-only]") {
    ferry::SimLink link(4.0);
    ferry::SimLink::Transfer t;
    const auto start = std::chrono::steady_clock::now();
    link.begin(t, ferry::SimLink::kH2D, 5'000'000, 1.0);  // 5 ms modeled, 20 ms wall
    link.finish(t);
    const double ms = ms_since(start);
    CHECK(ms >= 20.0);
    CHECK(ms < 100.0);
}

TEST_CASE("H2D and D2H at the same time share the link", "[sim-only]") {
    // 20 MB each way at 1 GB/s: 20 ms alone. Shared, the link moves 40 MB in 40 ms from the
    // first start to the last finish, however late the second starts (up to 20 ms), so a
    // loaded machine that starts the thread late does not change what is checked.
    using Clock = std::chrono::steady_clock;
    ferry::SimLink link(1.0);
    Clock::time_point d2h_begin, d2h_end;
    std::thread other([&] {
        ferry::SimLink::Transfer t;
        d2h_begin = Clock::now();
        link.begin(t, ferry::SimLink::kD2H, 20'000'000, 1.0);
        link.finish(t);
        d2h_end = Clock::now();
    });
    ferry::SimLink::Transfer t;
    const auto h2d_begin = Clock::now();
    link.begin(t, ferry::SimLink::kH2D, 20'000'000, 1.0);
    link.finish(t);
    const auto h2d_end = Clock::now();
    other.join();
    const auto first = std::min(h2d_begin, d2h_begin);
    const auto last = std::max(h2d_end, d2h_end);
    const double span_ms = std::chrono::duration<double, std::milli>(last - first).count();
    const double overlap_ms =
        std::chrono::duration<double, std::milli>(std::min(h2d_end, d2h_end) -
                                                  std::max(h2d_begin, d2h_begin))
            .count();
    INFO("span " << span_ms << " ms, overlap " << overlap_ms << " ms");
    REQUIRE(overlap_ms > 0.0);  // they did run at the same time
    CHECK(span_ms >= 38.0);     // not 20: the two shared one link
    CHECK(span_ms < 120.0);
}

TEST_CASE("the sim copies host memory it did not pin at the pageable rate", "[sim-only]") {
    ferry::SimOptions options;
    options.h2d_gbps = 10.0;
    options.pageable_h2d_gbps = 0.1;
    const auto device = ferry::make_sim_device(options);
    // 1 ms pinned, 100 ms pageable: the pinned copy's bound is half the pageable time, far
    // enough from 1 ms that a loaded machine descheduling the test does not fail it.
    const std::size_t bytes = 10'000'000;
    void *dev = device->reserve(bytes);
    void *pinned = device->alloc_pinned(bytes);
    std::vector<char> pageable(bytes, 1);
    std::memset(pinned, 1, bytes);

    auto start = std::chrono::steady_clock::now();
    device->copy_h2d(dev, pageable.data(), bytes, nullptr);
    CHECK(ms_since(start) >= 100.0);
    start = std::chrono::steady_clock::now();
    device->copy_h2d(dev, pinned, bytes, nullptr);
    CHECK(ms_since(start) < 50.0);

    device->free_pinned(pinned, bytes);
    device->unreserve(dev);
}

TEST_CASE("sync on sim lands near its analytic time, and ferry streams what is not resident",
          "[sim-only]") {
    LinkModel link;
    link.pageable_h2d_gbps = 0.5;
    link.latency_us = 0.0;
    link.time_scale = 1.0;
    const Platform platform(false, link, 1.0);
    const Model model = custom(4, 1.0, 4);
    RunSpec spec;
    spec.model = &model;
    spec.platform = &platform;
    spec.compute_s.assign(model.groups.size(), 0.002);
    spec.passes = 2;
    spec.budget = 3 * model.largest_group_bytes() + 65536;  // two slots and one resident

    // 4 MB at 0.5 GB/s, then 4 x 2 ms of compute, nothing overlapped: 16 ms. A pass waits
    // 20 times (16 copies, 4 computes) and each wait ends only when the thread gets a core
    // back: with three busy processes on two cores a pass took up to 80 ms, so the upper
    // bound only catches a strategy gone badly wrong.
    const Measured sync = run_sync(spec);
    CHECK(sync.seconds_per_pass >= 0.016 * 0.98);
    CHECK(sync.seconds_per_pass < 0.016 * 10);
    CHECK(sync.h2d_bytes_per_pass == model.bytes);
    CHECK(sync.d2h_bytes_per_pass == 0);

    const Measured ferry = run_ferry(spec);
    CHECK(ferry.d2h_bytes_per_pass == 0);
    CHECK(ferry.h2d_bytes_per_pass < model.bytes);
    CHECK(ferry.host_pinned_bytes >= model.bytes);
}

TEST_CASE("partial keeps whole groups resident, largest first, in the budget less two slots") {
    // Two slots of 20 take 40 of 300: the rest holds every group but the smallest.
    const std::vector<std::uint64_t> bytes = {20, 100, 40, 60, 60};
    CHECK(partial_residents(bytes, 300) == std::vector<bool>{false, true, true, true, true});
    // At 240, two slots of the largest group left to stream, 60, leave 120: largest first,
    // 100 fits, then neither 60 nor 40 does, and 20 does.
    CHECK(partial_residents(bytes, 240) == std::vector<bool>{true, true, false, false, false});
    // Too small for two slots of any group that must stream: nothing resident.
    CHECK(partial_residents(bytes, 100) == std::vector<bool>(5, false));
    // Ties go in pass order: the first of equal blocks stay, as a run.
    const std::vector<bool> blocks = partial_residents(std::vector<std::uint64_t>(6, 10), 50);
    CHECK(blocks == std::vector<bool>{true, true, true, false, false, false});
}

TEST_CASE("ferry on sim lands near its plan's pass in the planner's model", "[sim-only]") {
    LinkModel link;
    link.pinned_gbps = 2.5;
    link.latency_us = 0.0;
    link.time_scale = 10.0;
    const Platform platform(false, link, 1.0);
    const Model model = custom(12, 2.0, 8);
    RunSpec spec;
    spec.model = &model;
    spec.platform = &platform;
    // A copy takes 0.8 ms of link; computes alternate between 0.4 and 1.2 ms.
    for (std::size_t g = 0; g < model.groups.size(); ++g) {
        spec.compute_s.push_back(g % 2 == 0 ? 0.4e-3 : 1.2e-3);
    }
    spec.passes = 5;
    spec.budget = model.bytes / 2;
    spec.link_gbps = link.pinned_gbps;
    const Measured ferry = run_ferry(spec);
    INFO("measured " << ferry.seconds_per_pass << " s, modeled " << ferry.modeled_seconds_per_pass);
    REQUIRE(ferry.modeled_seconds_per_pass > 0.0);
    // Modeled copies and computes never end early; the sim's threads add their costs, and
    // a loaded machine more, so the bound above is loose.
    CHECK(ferry.seconds_per_pass >= 0.98 * ferry.modeled_seconds_per_pass);
    CHECK(ferry.seconds_per_pass <= 1.3 * ferry.modeled_seconds_per_pass);
}
