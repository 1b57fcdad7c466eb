// The scheduler under sim chaos: random delays on every stream, slot memory poisoned on
// every copy, compute on several concurrent streams checking every byte it reads. A
// missing or misplaced wait anywhere in the pipeline shows up as a bad byte here. On cuda
// (FERRY_BACKEND=cuda) the same random models run on the GPU, every byte still checked;
// chaos and the modeled link are the sim's, so there the timing is the hardware's own.
//
// FERRY_TEST_SCALE (default 1) multiplies the number of models; the sanitizer runs use
// a smaller one.
#include <algorithm>
#include <catch2/catch.hpp>
#include <cstdlib>
#include <memory>
#include <random>
#include <stdexcept>
#include <thread>
#include <vector>

#include "core/runtime.hpp"
#include "sim_model.hpp"

using namespace ferry_test;

namespace {

double test_scale() {
    const char *text = std::getenv("FERRY_TEST_SCALE");
    return text != nullptr ? std::max(0.05, std::atof(text)) : 1.0;
}

int scaled(int n) { return std::max(1, static_cast<int>(n * test_scale())); }

ModelSpec random_spec(std::mt19937_64 &rng, bool allow_mutable) {
    std::uniform_int_distribution<int> group_count(2, 16);
    std::uniform_int_distribution<int> tensor_count(1, 5);
    ModelSpec spec;
    const int groups = group_count(rng);
    // Two populations of sizes, so that the planner sometimes makes two size classes.
    const std::uint64_t big = 1 + rng() % 48 * 1024;
    const std::uint64_t small = 1 + rng() % 12 * 1024;
    std::uint64_t largest = 0;
    std::uint64_t total = 0;
    for (int g = 0; g < groups; ++g) {
        const std::uint64_t scale = rng() % 3 == 0 ? small : big;
        std::vector<TensorSpec> tensors;
        std::uint64_t group_bytes = 0;
        for (int t = tensor_count(rng); t > 0; --t) {
            TensorSpec tensor;
            tensor.bytes = 1 + rng() % (scale + 1);
            tensor.is_mutable = allow_mutable && rng() % 6 == 0;
            group_bytes += tensor.bytes + 4096 + 256;  // room for alignment and page split
            tensors.push_back(tensor);
        }
        largest = std::max(largest, group_bytes);
        total += group_bytes;
        spec.groups.push_back(tensors);
    }
    spec.slots_per_class = 2 + static_cast<std::uint32_t>(rng() % 3);
    // From just enough for the slots of the largest group to more than the whole model.
    const std::uint64_t floor = spec.slots_per_class * largest;
    spec.budget = floor + rng() % (total + 1);
    spec.synchronous = rng() % 5 == 0;
    spec.chaos = true;
    spec.seed = rng();
    if (rng() % 3 == 0) {  // a declared schedule, sometimes with a group used twice
        for (int g = 0; g < groups; ++g) spec.declared_schedule.push_back(g);
        if (rng() % 2 == 0) spec.declared_schedule.push_back(rng() % groups);
    }
    if (rng() % 4 == 0) spec.h2d_gbps = 2.0;  // slow link: copies overlap compute for real
    return spec;
}

// ferry_synchronize alone must make host bytes current: it waits for the holders' work
// and every writeback, on whatever stream each ran. Only then are the streams drained.
void synchronize_and_check(SimModel &model, Failures &failures) {
    const ferry_status status = ferry_synchronize(model.runtime());
    if (status != FERRY_OK) failures.add(std::string("synchronize: ") + ferry_last_error());
    model.host_versions_current(failures);
    model.drain();
}

}  // namespace

TEST_CASE("Every byte compute sees under chaos is the right byte, over thousands of passes",
          "[chaos]") {
    std::mt19937_64 rng(20261128);
    const int models = scaled(60);
    std::uint64_t passes_run = 0;
    for (int m = 0; m < models; ++m) {
        ModelSpec spec = random_spec(rng, /*allow_mutable=*/true);
        INFO("model " << m << ": " << spec.groups.size() << " groups, budget " << spec.budget
                      << ", slots " << spec.slots_per_class << ", sync " << spec.synchronous);
        SimModel model(spec);
        Failures failures;
        const int passes = 20 + static_cast<int>(rng() % 30);
        run_passes(model, passes, static_cast<int>(rng() % 4), failures, rng);
        passes_run += passes;
        synchronize_and_check(model, failures);
        INFO("first failure: " << failures.first);
        REQUIRE(failures.count == 0);
        // Every check ran and compared every byte of its group's tensors.
        std::vector<std::uint32_t> pass = spec.declared_schedule;
        if (pass.empty()) {
            for (std::uint32_t g = 0; g < spec.groups.size(); ++g) pass.push_back(g);
        }
        std::uint64_t pass_bytes = 0;
        for (const std::uint32_t g : pass) {
            for (const auto &tensor : spec.groups[g]) pass_bytes += tensor.bytes;
        }
        REQUIRE(pass_bytes > 0);
        REQUIRE(failures.checked == static_cast<std::uint64_t>(passes) * pass.size());
        REQUIRE(failures.bytes_checked == static_cast<std::uint64_t>(passes) * pass_bytes);

        const ferry_stats stats = model.stats();
        REQUIRE(stats.acquires == stats.resident_hits + stats.hits + stats.misses);
        REQUIRE(stats.acquires == stats.releases);
        REQUIRE(stats.slab_bytes <= spec.budget);
        REQUIRE(stats.slab_used_peak_bytes <= stats.slab_bytes);
        if (!model.has_mutable()) REQUIRE(stats.bytes_d2h == 0);
    }
    WARN("chaos: " << models << " models, " << passes_run << " passes, every byte checked");
}

TEST_CASE("A model without mutable tensors never copies a byte device-to-host", "[chaos]") {
    std::mt19937_64 rng(7);
    for (int m = 0; m < scaled(20); ++m) {
        ModelSpec spec = random_spec(rng, /*allow_mutable=*/false);
        SimModel model(spec);
        Failures failures;
        run_passes(model, 15, 2, failures, rng);
        synchronize_and_check(model, failures);
        INFO("first failure: " << failures.first);
        REQUIRE(failures.count == 0);
        const ferry_stats stats = model.stats();
        REQUIRE(stats.bytes_d2h == 0);
        REQUIRE(stats.writebacks == 0);
    }
}

TEST_CASE("Mutable updates persist across evictions under chaos", "[chaos]") {
    std::mt19937_64 rng(99);
    for (int m = 0; m < scaled(20); ++m) {
        ModelSpec spec;
        const int groups = 6 + static_cast<int>(rng() % 6);
        for (int g = 0; g < groups; ++g) {
            spec.groups.push_back({{4096 + rng() % 4096, false}, {1 + rng() % 3000, true}});
        }
        spec.budget = 3 * (8192 + 8192 + 4096);  // far less than the model: constant eviction
        spec.slots_per_class = 2;
        spec.chaos = true;
        spec.seed = rng();
        spec.synchronous = m % 2 == 1;  // writebacks then run on the callers' streams
        SimModel model(spec);
        Failures failures;
        run_passes(model, 25, 3, failures, rng);
        synchronize_and_check(model, failures);
        INFO("first failure: " << failures.first);
        REQUIRE(failures.count == 0);
        REQUIRE(model.stats().writebacks > 0);
    }
}

TEST_CASE("Threads driving disjoint halves of a model concurrently see only right bytes",
          "[chaos]") {
    std::mt19937_64 rng(31337);
    ModelSpec spec;
    for (int g = 0; g < 12; ++g) spec.groups.push_back({{8192, false}, {3000, false}});
    spec.budget = 4 * 16384;
    spec.slots_per_class = 4;
    spec.chaos = true;
    SimModel model(spec);
    Failures failures;
    void *streams[2] = {model.create_stream(), model.create_stream()};
    auto drive = [&](int half) {
        for (int pass = 0; pass < scaled(40); ++pass) {
            for (int g = half; g < 12; g += 2) {
                ferry_status status;
                // NO_FREE_SLOT is a legal answer while the other thread holds slots.
                while ((status = model.run_group(g, streams[half], failures)) ==
                       FERRY_ERROR_NO_FREE_SLOT) {
                    std::this_thread::yield();
                }
                if (status != FERRY_OK) failures.add(ferry_last_error());
            }
        }
    };
    std::thread a(drive, 0);
    std::thread b(drive, 1);
    a.join();
    b.join();
    model.drain();
    INFO("first failure: " << failures.first);
    REQUIRE(failures.count == 0);
    const ferry_stats stats = model.stats();
    REQUIRE(stats.acquires == stats.resident_hits + stats.hits + stats.misses);
}

TEST_CASE("A re-plan by declared compute between passes keeps every byte right under chaos",
          "[chaos]") {
    std::mt19937_64 rng(4242);
    const int models = std::max(10, scaled(40));
    int replanned = 0;
    for (int m = 0; m < models; ++m) {
        // FLUX's shape, small: a run of double blocks, then twice as many single blocks of
        // under half their size, compute in proportion to bytes. Planned by bytes, the big ones stream and
        // their copies outlast the compute before them: the re-plan spreads them.
        ModelSpec spec;
        const double gbps = 0.25 + static_cast<double>(rng() % 4) / 4;
        const std::uint64_t unit = 512 + rng() % 1024;  // a 3072 x 3072 weight, shrunk
        const std::vector<std::uint64_t> double_block = {6, 6, 1, 1, 1, 1, 1, 1, 1, 1, 4, 4, 4, 4};
        const std::vector<std::uint64_t> single_block = {3, 4, 5, 1, 1, 1};
        const int doubles = 4 + static_cast<int>(rng() % 4);
        std::uint64_t largest = 0, total = 0;
        for (int g = 0; g < 3 * doubles; ++g) {
            std::vector<TensorSpec> tensors;
            std::uint64_t bytes = 0;
            for (std::uint64_t units : g < doubles ? double_block : single_block) {
                tensors.push_back({units * unit + rng() % 64, rng() % 100 == 0});
                bytes += tensors.back().bytes;
            }
            // Copying a group takes about 1.6 times its compute.
            spec.declared_compute_ns.push_back(
                static_cast<std::uint64_t>(static_cast<double>(bytes) / gbps / 1.6));
            largest = std::max(largest, bytes + 4096 + 256 * tensors.size());
            total += bytes + 256 * tensors.size();
            spec.groups.push_back(std::move(tensors));
        }
        spec.slots_per_class = 2 + static_cast<std::uint32_t>(rng() % 2);
        spec.budget = std::max<std::uint64_t>(spec.slots_per_class * largest + 65536,
                                              total * (40 + rng() % 30) / 100);
        spec.h2d_gbps = gbps;
        spec.chaos = true;
        spec.seed = rng();
        if (rng() % 2 == 0) {
            for (std::uint32_t g = 0; g < spec.groups.size(); ++g) spec.declared_schedule.push_back(g);
        }
        INFO("model " << m << ": " << spec.groups.size() << " groups, budget " << spec.budget
                      << ", slots " << spec.slots_per_class);
        SimModel model(spec);
        Failures failures;
        const int passes = 6 + static_cast<int>(rng() % 6);
        run_passes(model, passes, 1 + static_cast<int>(rng() % 3), failures, rng);
        synchronize_and_check(model, failures);
        INFO("first failure: " << failures.first);
        REQUIRE(failures.count == 0);
        const std::size_t pass_groups = spec.declared_schedule.empty()
                                            ? spec.groups.size()
                                            : spec.declared_schedule.size();
        REQUIRE(failures.checked == static_cast<std::uint64_t>(passes) * pass_groups);
        replanned += ferry_runtime_impl(model.runtime()).replans() > 0;

        const ferry_stats stats = model.stats();
        REQUIRE(stats.acquires == stats.resident_hits + stats.hits + stats.misses);
        REQUIRE(stats.acquires == stats.releases);
        REQUIRE(stats.slab_bytes <= spec.budget);
        REQUIRE(stats.slab_resident_bytes + stats.slab_streaming_bytes <= stats.slab_bytes);
        REQUIRE(stats.slab_used_peak_bytes <= stats.slab_bytes);
        if (!model.has_mutable()) REQUIRE(stats.bytes_d2h == 0);
    }
    WARN("re-plan under chaos: " << replanned << " of " << models << " models re-planned");
    // The path under test ran (in about 17 of the 40 models by default: the decision
    // follows the link rate the runtime measured, which chaos's delays vary).
    REQUIRE(replanned > 0);
}

TEST_CASE("With compressed streaming, every byte compute sees under chaos is the right byte",
          "[chaos][compress]") {
    std::mt19937_64 rng(20261201);
    const int models = scaled(24);
    std::uint64_t passes_run = 0;
    std::uint64_t compressed_groups = 0;
    std::uint64_t decodes = 0;
    for (int m = 0; m < models; ++m) {
        ModelSpec spec = random_spec(rng, /*allow_mutable=*/true);
        spec.compress = true;
        // The staging area comes out of the budget: as much as the largest group.
        // Budgets near the floor, so that compressed groups stream and are decoded often.
        std::uint64_t largest = 0;
        std::uint64_t total = 0;
        for (auto &group : spec.groups) {
            std::uint64_t bytes = 0;
            for (auto &tensor : group) {
                if (rng() % 4 != 0) tensor.bytes += tensor.bytes % 2;  // most are bf16
                bytes += tensor.bytes + 4096 + 256;
            }
            largest = std::max(largest, bytes);
            total += bytes;
        }
        spec.budget = (spec.slots_per_class + 1) * largest + rng() % (total / 2 + 1);
        INFO("model " << m << ": " << spec.groups.size() << " groups, budget " << spec.budget
                      << ", slots " << spec.slots_per_class << ", sync " << spec.synchronous);
        SimModel model(spec);
        Failures failures;
        const int passes = 10 + static_cast<int>(rng() % 20);
        run_passes(model, passes, static_cast<int>(rng() % 4), failures, rng);
        passes_run += passes;
        synchronize_and_check(model, failures);
        INFO("first failure: " << failures.first);
        REQUIRE(failures.count == 0);
        std::vector<std::uint32_t> pass = spec.declared_schedule;
        if (pass.empty()) {
            for (std::uint32_t g = 0; g < spec.groups.size(); ++g) pass.push_back(g);
        }
        REQUIRE(failures.checked == static_cast<std::uint64_t>(passes) * pass.size());

        const ferry_stats stats = model.stats();
        REQUIRE(stats.acquires == stats.resident_hits + stats.hits + stats.misses);
        REQUIRE(stats.slab_bytes + stats.slab_staging_bytes <= spec.budget);
        REQUIRE(stats.host_compressed_bytes < stats.host_compressed_raw_bytes +
                                                  (stats.compressed_groups == 0 ? 1 : 0));
        REQUIRE(stats.bytes_h2d_compressed <= stats.bytes_h2d);
        compressed_groups += stats.compressed_groups;
        decodes += stats.decodes;
        if (!model.has_mutable()) REQUIRE(stats.bytes_d2h == 0);
    }
    REQUIRE(compressed_groups > 0);
    REQUIRE(decodes > 0);
    WARN("chaos, compressed: " << models << " models, " << passes_run << " passes, "
                               << compressed_groups << " compressed groups, " << decodes
                               << " decodes, every byte checked");
}
