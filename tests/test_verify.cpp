// Verify mode: frozen bytes are checksummed at release and compared with the host image;
// a kernel that writes into them is reported by the next call, with group and tensor
// names, and counted. Dirty tracking: unchanged mutable tensors are not written back.
#include <catch2/catch.hpp>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <random>
#include <string>

#include "api_fixture.hpp"
#include "device/fault_injection.hpp"
#include "core/runtime.hpp"
#include "sim_model.hpp"

using namespace ferry_test;

namespace {

// Group images: 8192 bytes of frozen tensors, then (page-aligned) 768 of mutable ones.
std::uint64_t image_bytes(bool with_mutable) { return with_mutable ? 8960 : 8192; }

// `images` group images of budget: 2 streaming slots, the rest resident groups.
ModelSpec verified_model(bool with_mutable, std::uint64_t images = 4) {
    ModelSpec spec;
    for (int g = 0; g < 6; ++g) {
        std::vector<TensorSpec> tensors = {{5000, false}, {3000, false}};
        if (with_mutable) tensors.push_back({700, true});
        spec.groups.push_back(tensors);
    }
    spec.budget = images * image_bytes(with_mutable);
    spec.verify = true;
    return spec;
}

void nothing(void *) {}

// What a "kernel" run between acquire and release does to tensor t.
enum class Kernel {
    reads,    // nothing to the bytes (a host function on the stream)
    corrupts  // writes one wrong byte at its start (a copy on the stream)
};

// acquire, run the kernel on the stream, release.
ferry_status touch(SimModel &model, std::size_t g, std::size_t t, void *stream, Kernel kernel) {
    ferry_status status = ferry_acquire(model.runtime(), model.group(g), stream);
    if (status != FERRY_OK) return status;
    void *device = nullptr;
    status = ferry_tensor_device_ptr(model.runtime(), model.tensor(g, t), &device);
    if (status != FERRY_OK) return status;
    if (kernel == Kernel::corrupts) {
        model.corrupt_first_byte(g, t, stream);
    } else {
        ferry_runtime_impl(model.runtime()).device().launch_host(stream, nothing, nullptr);
    }
    return ferry_release(model.runtime(), model.group(g), stream);
}

}  // namespace

TEST_CASE("Verify mode reports a write into frozen weights at synchronize, naming group and tensor",
          "[verify]") {
    SimModel model(verified_model(false));
    void *stream = model.create_stream();
    REQUIRE(touch(model, 3, 1, stream, Kernel::corrupts) == FERRY_OK);
    REQUIRE(ferry_synchronize(model.runtime()) == FERRY_ERROR_VERIFY_FAILED);
    const std::string message = ferry_last_error();
    INFO(message);
    REQUIRE(message.rfind("ferry_synchronize: verify:", 0) == 0);
    REQUIRE(message.find("group 'g3'") != std::string::npos);
    REQUIRE(message.find("tensor 't1'") != std::string::npos);
    const ferry_stats stats = model.stats();
    REQUIRE(stats.verify_failures == 1);
    REQUIRE(stats.verify_checks == 1);
    // Reported once; the runtime goes on.
    REQUIRE(ferry_synchronize(model.runtime()) == FERRY_OK);
}

// Sim-only: there NULL is the calling thread, so the check is done when release returns; on
// cuda it is the legacy default stream, and the result comes when the GPU gets there.
TEST_CASE("On the calling thread the very next call reports a verify failure",
          "[verify][sim-only]") {
    SimModel model(verified_model(true));
    REQUIRE(touch(model, 0, 0, nullptr, Kernel::corrupts) == FERRY_OK);
    REQUIRE(ferry_acquire(model.runtime(), model.group(1), nullptr) == FERRY_ERROR_VERIFY_FAILED);
    REQUIRE(std::string(ferry_last_error()).find("group 'g0', tensor 't0'") != std::string::npos);
    // The failed call changed nothing: group 1 is not acquired.
    REQUIRE(ferry_release(model.runtime(), model.group(1), nullptr) == FERRY_ERROR_NOT_ACQUIRED);
    REQUIRE(model.stats().verify_failures == 1);
}

TEST_CASE("Verify mode finds nothing wrong in clean chaos runs and checks every release",
          "[verify]") {
    std::mt19937_64 rng(4242);
    ModelSpec spec = verified_model(true);
    spec.chaos = true;
    SimModel model(spec);
    Failures failures;
    run_passes(model, 20, 2, failures, rng);
    model.drain();
    REQUIRE(ferry_synchronize(model.runtime()) == FERRY_OK);
    const bool current = model.host_versions_current(failures);
    INFO(failures.first);
    REQUIRE(current);
    REQUIRE(failures.count == 0);
    const ferry_stats stats = model.stats();
    REQUIRE(stats.verify_checks == stats.releases);
    REQUIRE(stats.verify_failures == 0);
}

TEST_CASE("Dirty tracking writes back only the mutable tensors that changed", "[verify]") {
    ModelSpec spec = verified_model(true, 2);  // everything streamed: evictions write back
    SimModel model(spec);
    void *stream = model.create_stream();
    for (int pass = 0; pass < 3; ++pass) {
        for (std::size_t g = 0; g < model.group_count(); ++g) {
            REQUIRE(touch(model, g, 2, stream, Kernel::reads) == FERRY_OK);
        }
    }
    model.drain();
    REQUIRE(ferry_synchronize(model.runtime()) == FERRY_OK);
    ferry_stats stats = model.stats();
    REQUIRE(stats.writebacks == 0);
    REQUIRE(stats.bytes_d2h == 0);
    REQUIRE(stats.writebacks_skipped > 0);

    Failures failures;  // now compute bumps every mutable tensor: all of them go back
    for (std::size_t g = 0; g < model.group_count(); ++g) {
        REQUIRE(model.run_group(g, stream, failures) == FERRY_OK);
    }
    model.drain();
    REQUIRE(ferry_synchronize(model.runtime()) == FERRY_OK);
    REQUIRE(model.host_versions_current(failures));
    REQUIRE(failures.count == 0);
    stats = model.stats();
    REQUIRE(stats.writebacks == model.group_count());
}

TEST_CASE("Without verify mode nothing is checked and every dirty tensor is written back",
          "[verify]") {
    ModelSpec spec = verified_model(true);
    spec.verify = false;
    SimModel model(spec);
    void *stream = model.create_stream();
    REQUIRE(touch(model, 0, 0, stream, Kernel::corrupts) == FERRY_OK);
    model.drain();
    REQUIRE(ferry_synchronize(model.runtime()) == FERRY_OK);
    const ferry_stats stats = model.stats();
    REQUIRE(stats.verify_checks == 0);
    REQUIRE(stats.writebacks_skipped == 0);
    REQUIRE(stats.writebacks == 1);
}

TEST_CASE("FERRY_VERIFY=1 turns verify mode on over the config", "[verify]") {
    ModelSpec spec = verified_model(false);
    spec.verify = false;
    auto model = [&] {  // the variable is read at create only
        const ScopedEnv verify("FERRY_VERIFY", "1");
        return std::make_unique<SimModel>(spec);
    }();
    REQUIRE(touch(*model, 2, 0, nullptr, Kernel::reads) == FERRY_OK);
    REQUIRE(model->stats().verify_checks == 1);
}

// Sim-only: a copy that fails after it was accepted is a fault only the sim can inject.
TEST_CASE("Verify mode reports the wrong bytes a failed copy left in a slot",
          "[verify][sim-only]") {
    SimModel model(verified_model(false, 2));  // everything streamed
    void *stream = model.create_stream();
    {
        ferry::ScopedFault fault(ferry::Fault::copy_error);  // the first copy: g0's miss
        REQUIRE(touch(model, 0, 0, stream, Kernel::reads) == FERRY_OK);
    }
    // ferry_synchronize waits for the pending check (a host wait of our own here would be
    // the one to receive the copy's error).
    REQUIRE(ferry_synchronize(model.runtime()) == FERRY_ERROR_VERIFY_FAILED);
    REQUIRE(model.stats().verify_failures == 2);  // both frozen tensors of g0
    // The copy's own error comes with the next host wait; then g0 is copied again.
    REQUIRE(ferry_synchronize(model.runtime()) == FERRY_ERROR_DEVICE);
    REQUIRE(std::string(ferry_last_error()).find("copy-error") != std::string::npos);
    REQUIRE(ferry_synchronize(model.runtime()) == FERRY_OK);
    REQUIRE(touch(model, 0, 0, stream, Kernel::reads) == FERRY_OK);
    model.drain();
    REQUIRE(ferry_synchronize(model.runtime()) == FERRY_OK);
    REQUIRE(model.stats().verify_failures == 2);
}
