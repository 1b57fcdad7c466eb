// Slab carving: resident slots first, then slots_per_class slots per size class, packed,
// non-overlapping, 256-byte aligned, never more than the plan's bytes.
#include <catch2/catch.hpp>

#include "base/error.hpp"
#include "device/fault_injection.hpp"
#include "core/slab.hpp"

using namespace ferry;

TEST_CASE("The slab packs resident slots then each class's streaming slots") {
    Plan plan;
    plan.resident = {true, false, true, false, false};
    plan.size_class = {-1, 0, -1, 1, 0};
    plan.class_slot_bytes = {4096, 1024};
    const std::vector<std::uint64_t> bytes = {512, 4096, 2048, 1024, 3840};
    const SlabLayout layout = carve_slab(plan, bytes, 3);

    REQUIRE(layout.resident_offset == std::vector<std::int64_t>{0, -1, 512, -1, -1});
    REQUIRE(layout.resident_bytes == 512 + 2048);
    REQUIRE(layout.streaming.size() == 6);
    REQUIRE(layout.streaming_bytes == 3 * 4096 + 3 * 1024);
    REQUIRE(layout.total_bytes() == layout.resident_bytes + layout.streaming_bytes);
    std::uint64_t expected = layout.resident_bytes;
    for (std::size_t k = 0; k < layout.streaming.size(); ++k) {
        const StreamingSlot &slot = layout.streaming[k];
        REQUIRE(slot.size_class == (k < 3 ? 0 : 1));
        REQUIRE(slot.bytes == plan.class_slot_bytes[slot.size_class]);
        REQUIRE(slot.offset == expected);  // packed: no gap, no overlap
        REQUIRE(slot.offset % 256 == 0);
        expected += slot.bytes;
    }
}

TEST_CASE("A plan with everything resident has no streaming slots") {
    Plan plan;
    plan.resident = {true, true};
    plan.size_class = {-1, -1};
    const SlabLayout layout = carve_slab(plan, {256, 768}, 2);
    REQUIRE(layout.streaming.empty());
    REQUIRE(layout.total_bytes() == 1024);
}

TEST_CASE("The slab makes exactly one device reservation of the carved size") {
    SimOptions options;
    auto device = make_sim_device(options);
    Plan plan;
    plan.resident = {false, false};
    plan.size_class = {0, 0};
    plan.class_slot_bytes = {4096};
    const SlabLayout layout = carve_slab(plan, {4096, 2048}, 2);
    REQUIRE(layout.total_bytes() == 8192);
    {
        ScopedFault first(Fault::reserve);  // a slab that reserves anything fails
        REQUIRE_THROWS_AS(Slab(*device, layout), Error);
    }
    ScopedFault second(Fault::reserve, 1);  // a slab that reserves twice fails
    Slab slab(*device, layout);
    REQUIRE(slab.base() != nullptr);
    REQUIRE(FaultInjector::instance().fired(Fault::reserve) == 0);
}
