// Updates of frozen tensors in SEALED (ferry_tensor_update): the next acquire sees the new
// bytes whether the group is resident, split or streamed; nothing goes device-to-host;
// every bad call fails clearly and changes nothing; verify mode and the disk tier follow.
// Under chaos, updates interleaved with passes on several streams never leave a stale
// byte, every byte checked.
#include <catch2/catch.hpp>

#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "api_fixture.hpp"
#include "safetensors_file.hpp"
#include "sim_model.hpp"

using namespace ferry_test;

namespace {

enum class Placement { resident, split, streamed };

Placement placement_of(SimModel &model, std::size_t g) {
    std::int32_t resident = 0;
    std::uint64_t image = 0, kept = 0;
    check(ferry_group_info(model.runtime(), model.group(g), &resident, nullptr, &image),
          "ferry_group_info");
    check(ferry_group_resident_bytes(model.runtime(), model.group(g), &kept),
          "ferry_group_resident_bytes");
    if (resident != 0) return Placement::resident;
    return kept > 0 ? Placement::split : Placement::streamed;
}

// Six groups of two frozen tensors; `images` of them fit the budget besides the slots.
ModelSpec small_model(std::uint64_t budget) {
    ModelSpec spec;
    for (int g = 0; g < 6; ++g) spec.groups.push_back({{5000, false}, {3000, false}});
    spec.budget = budget;
    return spec;
}

// Every byte of every group, read through the pipeline on `stream`.
void pass_and_check(SimModel &model, void *stream) {
    Failures failures;
    for (std::size_t g = 0; g < model.group_count(); ++g) {
        REQUIRE(model.run_group(g, stream, failures) == FERRY_OK);
    }
    model.drain();
    INFO(failures.first);
    REQUIRE(failures.count == 0);
}

std::vector<unsigned char> host_bytes(SimModel &model, std::size_t g, std::size_t t) {
    std::vector<unsigned char> out(model.spec().groups[g][t].bytes);
    check(ferry_tensor_copy_out(model.runtime(), model.tensor(g, t), 0, out.data(), out.size()),
          "ferry_tensor_copy_out");
    return out;
}

// The tensor's device bytes, read while its group is acquired on the calling thread.
std::vector<unsigned char> device_bytes(SimModel &model, std::size_t g, std::size_t t) {
    check(ferry_acquire(model.runtime(), model.group(g), nullptr), "ferry_acquire");
    void *device = nullptr;
    check(ferry_tensor_device_ptr(model.runtime(), model.tensor(g, t), &device),
          "ferry_tensor_device_ptr");
    auto out = read_device(model.runtime(), device, model.spec().groups[g][t].bytes);
    check(ferry_release(model.runtime(), model.group(g), nullptr), "ferry_release");
    return out;
}

}  // namespace

TEST_CASE("An update of a resident group is seen by the next acquire, and nothing goes "
          "device-to-host", "[update]") {
    SimModel model(small_model(1 << 20));  // the whole model is resident
    REQUIRE(placement_of(model, 2) == Placement::resident);
    void *stream = model.create_stream();
    pass_and_check(model, stream);
    std::mt19937_64 rng(1);
    const ferry_stats before = model.stats();
    REQUIRE(model.update_tensor(2, 1, 1, rng) == FERRY_OK);
    pass_and_check(model, stream);   // on a compute stream: waits for the copy
    pass_and_check(model, nullptr);  // and on the calling thread
    REQUIRE(model.update_tensor(2, 1, 3, rng) == FERRY_OK);  // again, in three pieces
    pass_and_check(model, nullptr);
    REQUIRE(model.version(2, 1) == 2);
    const ferry_stats after = model.stats();
    CHECK(after.bytes_d2h == 0);
    CHECK(after.bytes_h2d - before.bytes_h2d == 2 * 3000);  // only the bytes changed
    CHECK(after.misses == before.misses);
}

TEST_CASE("An update of a streamed group empties its slot: the next acquire copies the new "
          "image", "[update]") {
    SimModel model(small_model(2 * 8192));  // two slots, nothing resident
    REQUIRE(placement_of(model, 5) == Placement::streamed);
    pass_and_check(model, nullptr);
    // Group 5 was acquired last: still in its slot, a hit if acquired now.
    std::mt19937_64 rng(2);
    const ferry_stats before = model.stats();
    REQUIRE(model.update_tensor(5, 0, 2, rng) == FERRY_OK);
    const std::vector<unsigned char> seen = device_bytes(model, 5, 0);
    CHECK(seen == host_bytes(model, 5, 0));
    const ferry_stats after = model.stats();
    CHECK(after.misses == before.misses + 1);
    CHECK(after.slab_used_bytes <= before.slab_used_bytes);
    CHECK(after.bytes_d2h == 0);
    pass_and_check(model, model.create_stream());
}

TEST_CASE("An update of part of a tensor changes only that range", "[update]") {
    SimModel model(small_model(1 << 20));
    const std::vector<unsigned char> old_bytes = host_bytes(model, 1, 0);
    std::vector<unsigned char> patch(777, 0xab);
    REQUIRE(ferry_tensor_update(model.runtime(), model.tensor(1, 0), 1234, patch.data(),
                                patch.size()) == FERRY_OK);
    std::vector<unsigned char> expected = old_bytes;
    std::memcpy(expected.data() + 1234, patch.data(), patch.size());
    CHECK(host_bytes(model, 1, 0) == expected);
    CHECK(device_bytes(model, 1, 0) == expected);
    // The whole range up to the end is allowed, and so is nothing at the end.
    REQUIRE(ferry_tensor_update(model.runtime(), model.tensor(1, 0), 5000 - 10, patch.data(),
                                10) == FERRY_OK);
    REQUIRE(ferry_tensor_update(model.runtime(), model.tensor(1, 0), 5000, nullptr, 0) ==
            FERRY_OK);
}

TEST_CASE("Each bad update fails clearly and changes nothing", "[update]") {
    ModelSpec spec = small_model(2 * 8192 + 2 * 8192);
    spec.groups[0].push_back({700, true});  // one mutable tensor
    SimModel model(spec);
    ferry_runtime *rt = model.runtime();
    std::vector<unsigned char> src(8000, 0x11);
    const std::vector<unsigned char> before = host_bytes(model, 3, 0);
    const ferry_stats stats_before = model.stats();

    SECTION("a tensor of another runtime") {
        SimModel other(small_model(1 << 20));
        REQUIRE_FERRY_ERROR(ferry_tensor_update(rt, other.tensor(3, 0), 0, src.data(), 10),
                            FERRY_ERROR_FOREIGN_HANDLE, "ferry_tensor_update", "another");
    }
    SECTION("past the tensor's end") {
        REQUIRE_FERRY_ERROR(ferry_tensor_update(rt, model.tensor(3, 0), 4990, src.data(), 11),
                            FERRY_ERROR_OUT_OF_RANGE, "ferry_tensor_update",
                            "has 5000 bytes; cannot update 11 bytes at offset 4990");
        REQUIRE_FERRY_ERROR(ferry_tensor_update(rt, model.tensor(3, 0), 5001, src.data(), 0),
                            FERRY_ERROR_OUT_OF_RANGE, "ferry_tensor_update", "offset 5001");
        REQUIRE_FERRY_ERROR(ferry_tensor_update(rt, model.tensor(3, 0), 1, src.data(), ~0ull),
                            FERRY_ERROR_OUT_OF_RANGE, "ferry_tensor_update", "cannot update");
    }
    SECTION("a mutable tensor") {
        REQUIRE_FERRY_ERROR(ferry_tensor_update(rt, model.tensor(0, 2), 0, src.data(), 10),
                            FERRY_ERROR_INVALID_ARGUMENT, "ferry_tensor_update",
                            "is mutable, so it is writable already: write its device copy");
    }
    SECTION("a NULL src") {
        REQUIRE_FERRY_ERROR(ferry_tensor_update(rt, model.tensor(3, 0), 0, nullptr, 10),
                            FERRY_ERROR_INVALID_ARGUMENT, "ferry_tensor_update", "src is NULL");
    }
    SECTION("while the group is acquired, on any stream") {
        void *stream = model.create_stream();
        REQUIRE(ferry_acquire(rt, model.group(3), stream) == FERRY_OK);
        REQUIRE(ferry_acquire(rt, model.group(3), nullptr) == FERRY_OK);
        REQUIRE_FERRY_ERROR(ferry_tensor_update(rt, model.tensor(3, 0), 0, src.data(), 10),
                            FERRY_ERROR_GROUP_BUSY, "ferry_tensor_update",
                            "the group is acquired (2 holder(s))");
        REQUIRE(ferry_release(rt, model.group(3), nullptr) == FERRY_OK);
        REQUIRE_FERRY_ERROR(ferry_tensor_update(rt, model.tensor(3, 1), 0, src.data(), 10),
                            FERRY_ERROR_GROUP_BUSY, "ferry_tensor_update", "release it first");
        REQUIRE(ferry_release(rt, model.group(3), stream) == FERRY_OK);
        model.drain();
    }
    // Nothing changed: host and device bytes, the counters, and the runtime still works.
    CHECK(host_bytes(model, 3, 0) == before);
    CHECK(device_bytes(model, 3, 0) == before);
    CHECK(model.stats().bytes_d2h == stats_before.bytes_d2h);
    pass_and_check(model, nullptr);
    std::mt19937_64 rng(3);
    REQUIRE(model.update_tensor(3, 0, 1, rng) == FERRY_OK);
    pass_and_check(model, nullptr);
}

TEST_CASE("Before seal an update is refused: copy-in writes the bytes then", "[update]") {
    ferry_runtime *rt = make_sim_runtime(1 << 20);
    const ferry_group group = define_group(rt, "g");
    const ferry_tensor tensor = define_bytes(rt, group, "w", 4096);
    const unsigned char byte = 1;
    REQUIRE_FERRY_ERROR(ferry_tensor_update(rt, tensor, 0, &byte, 1), FERRY_ERROR_WRONG_PHASE,
                        "ferry_tensor_update", "is in phase DEFINE");
    REQUIRE(ferry_plan(rt) == FERRY_OK);
    REQUIRE_FERRY_ERROR(ferry_tensor_update(rt, tensor, 0, &byte, 1), FERRY_ERROR_WRONG_PHASE,
                        "ferry_tensor_update",
                        "before seal, write the bytes with ferry_tensor_copy_in");
    REQUIRE(ferry_tensor_copy_in(rt, tensor, 0, &byte, 1) == FERRY_OK);
    REQUIRE(ferry_seal(rt) == FERRY_OK);
    const unsigned char next = 2;
    REQUIRE(ferry_tensor_update(rt, tensor, 0, &next, 1) == FERRY_OK);
    unsigned char out = 0;
    REQUIRE(ferry_tensor_copy_out(rt, tensor, 0, &out, 1) == FERRY_OK);
    CHECK(out == 2);
    REQUIRE(ferry_destroy(rt) == FERRY_OK);
}

TEST_CASE("Verify mode takes an updated tensor's checksum again, and still catches a bad "
          "write after", "[update][verify]") {
    ModelSpec spec = small_model(4 * 8192);  // two resident groups, two slots
    spec.verify = true;
    spec.chaos = true;
    SimModel model(spec);
    void *stream = model.create_stream();
    std::mt19937_64 rng(4);
    for (int round = 0; round < 6; ++round) {
        pass_and_check(model, stream);
        for (std::size_t g = 0; g < model.group_count(); ++g) {
            REQUIRE(model.update_tensor(g, round % 2, 1 + round % 3, rng) == FERRY_OK);
        }
    }
    pass_and_check(model, stream);
    REQUIRE(ferry_synchronize(model.runtime()) == FERRY_OK);
    const ferry_stats stats = model.stats();
    CHECK(stats.verify_failures == 0);
    CHECK(stats.verify_checks == stats.releases);
    // A kernel that writes into an updated tensor is still reported.
    REQUIRE(ferry_acquire(model.runtime(), model.group(4), stream) == FERRY_OK);
    model.corrupt_first_byte(4, 0, stream);
    REQUIRE(ferry_release(model.runtime(), model.group(4), stream) == FERRY_OK);
    CHECK(ferry_synchronize(model.runtime()) == FERRY_ERROR_VERIFY_FAILED);
    CHECK(std::string(ferry_last_error()).find("group 'g4', tensor 't0'") != std::string::npos);
}

TEST_CASE("An update of a disk-tier tensor moves it into the host store", "[update][disk-tier]") {
    ScratchDir dir;
    ModelSpec spec;
    std::uint64_t model_bytes = 0;
    for (int g = 0; g < 8; ++g) {
        spec.groups.push_back({{40000 + 512u * g, false}, {7001, false}});
        model_bytes += 47001 + 512u * g;
    }
    spec.budget = 4 * 48000 + 2 * 48000;
    spec.pinned_cap = model_bytes / 4;
    spec.pageable_fallback = true;
    spec.weights_path = dir.file("model.safetensors");
    SimModel model(spec);
    const std::size_t g = 7, t = 0;  // the last image: past the pinned prefix
    void *host = nullptr;
    REQUIRE(ferry_tensor_host_ptr(model.runtime(), model.tensor(g, t), &host) ==
            FERRY_ERROR_NOT_IN_MEMORY);
    const ferry_stats before = model.stats();
    REQUIRE(before.host_disk_bytes > 0);
    // A part of it: the rest comes from the file.
    std::vector<unsigned char> expected = host_bytes(model, g, t);
    std::vector<unsigned char> patch(100, 0x77);
    REQUIRE(ferry_tensor_update(model.runtime(), model.tensor(g, t), 500, patch.data(),
                                patch.size()) == FERRY_OK);
    std::memcpy(expected.data() + 500, patch.data(), patch.size());
    REQUIRE(ferry_tensor_host_ptr(model.runtime(), model.tensor(g, t), &host) == FERRY_OK);
    CHECK(std::memcmp(host, expected.data(), expected.size()) == 0);
    const ferry_stats after = model.stats();
    CHECK(after.host_disk_bytes == before.host_disk_bytes - spec.groups[g][t].bytes);
    CHECK(device_bytes(model, g, t) == expected);
    // Whole-tensor updates then flow as for any tensor in memory.
    std::mt19937_64 rng(5);
    REQUIRE(model.update_tensor(g, 1, 2, rng) == FERRY_OK);  // the other one, on disk too
    REQUIRE(model.update_tensor(g, t, 1, rng) == FERRY_OK);
    pass_and_check(model, model.create_stream());
    CHECK(model.stats().bytes_d2h == 0);
}

TEST_CASE("Updates interleaved with passes on several streams never leave a stale byte, "
          "under chaos", "[update][chaos]") {
    std::mt19937_64 rng(20260217);
    int placements[3] = {0, 0, 0};
    std::uint64_t updates = 0;
    for (int m = 0; m < 60; ++m) {
        ModelSpec spec;
        const int groups = 3 + static_cast<int>(rng() % 8);
        std::uint64_t largest = 0, total = 0;
        for (int g = 0; g < groups; ++g) {
            std::vector<TensorSpec> tensors;
            std::uint64_t bytes = 0;
            for (int t = 1 + static_cast<int>(rng() % 4); t > 0; --t) {
                tensors.push_back({1 + rng() % 12000, m % 3 == 2 && rng() % 5 == 0});
                // Room for alignment, and for the page before a mutable part.
                bytes += tensors.back().bytes + 256 + (tensors.back().is_mutable ? 4096 : 0);
            }
            largest = std::max(largest, bytes);
            total += bytes;
            spec.groups.push_back(tensors);
        }
        spec.slots_per_class = 2 + static_cast<std::uint32_t>(rng() % 2);
        // Half the models tight (mostly streamed, often split), half roomy (mostly resident).
        spec.budget = spec.slots_per_class * largest +
                      rng() % ((m % 2 == 0 ? total : 2 * largest) + 1);
        spec.synchronous = rng() % 5 == 0;
        spec.chaos = true;
        spec.seed = rng();
        if (rng() % 3 == 0) spec.h2d_gbps = 2.0;  // slow copies: updates meet copies in flight
        INFO("model " << m << ": " << groups << " groups, budget " << spec.budget << ", sync "
                      << spec.synchronous);
        SimModel model(spec);
        std::vector<void *> streams;
        for (int s = static_cast<int>(rng() % 4); s > 0; --s) streams.push_back(model.create_stream());
        Failures failures;
        bool mutable_model = false;
        for (int pass = 0; pass < 16; ++pass) {
            for (std::size_t g = 0; g < model.group_count(); ++g) {
                void *stream = streams.empty() ? nullptr : streams[rng() % streams.size()];
                REQUIRE(model.run_group(g, stream, failures) == FERRY_OK);
                // Between any two acquires: an update of a frozen tensor of any group, whose
                // earlier holders' work may still run on the compute streams.
                if (rng() % 2 != 0) continue;
                const std::size_t ug = rng() % model.group_count();
                const std::size_t ut = rng() % spec.groups[ug].size();
                if (spec.groups[ug][ut].is_mutable) {
                    mutable_model = true;
                    continue;
                }
                REQUIRE(model.update_tensor(ug, ut, 1 + static_cast<int>(rng() % 3), rng) ==
                        FERRY_OK);
                ++placements[static_cast<int>(placement_of(model, ug))];
                ++updates;
            }
        }
        model.drain();
        REQUIRE(ferry_synchronize(model.runtime()) == FERRY_OK);
        INFO("first failure: " << failures.first);
        REQUIRE(failures.count == 0);
        std::uint64_t pass_bytes = 0;
        for (const auto &group : spec.groups) {
            for (const TensorSpec &t : group) pass_bytes += t.bytes;
        }
        REQUIRE(failures.checked == 16 * model.group_count());
        REQUIRE(failures.bytes_checked == 16 * pass_bytes);
        REQUIRE(model.host_versions_current(failures));
        const ferry_stats stats = model.stats();
        if (!mutable_model && !model.has_mutable()) REQUIRE(stats.bytes_d2h == 0);
        REQUIRE(stats.slab_used_peak_bytes <= stats.slab_bytes);
        REQUIRE(stats.slab_bytes <= spec.budget);
    }
    // Every kind of placement was updated.
    CHECK(placements[static_cast<int>(Placement::resident)] > 0);
    CHECK(placements[static_cast<int>(Placement::split)] > 0);
    CHECK(placements[static_cast<int>(Placement::streamed)] > 0);
    WARN("update chaos: " << updates << " updates (" << placements[0] << " resident, "
                          << placements[1] << " split, " << placements[2]
                          << " streamed), every byte checked");
}
