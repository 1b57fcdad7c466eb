// Host store protection: after seal, a write to an immutable image faults (checked in a
// forked child), mutable tensors stay writable, and host bytes are about 1.0 x model.
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstring>
#include <string>
#include <vector>

#include "base/error.hpp"
#include "device/device.hpp"
#include "host/host_store.hpp"
#include "sim_model.hpp"

using namespace ferry_test;

namespace {

constexpr int kWriteSucceeded = 3;
constexpr int kFaulted = 77;

extern "C" void exit_on_fault(int) { _exit(kFaulted); }

// Forks; the child writes one byte at ptr. Returns the child's exit code.
int write_in_child(void *ptr) {
    const pid_t child = fork();
    if (child == 0) {
        // Our own handler, so sanitizers' SEGV reports do not change the exit status.
        struct sigaction action;
        std::memset(&action, 0, sizeof action);
        action.sa_handler = exit_on_fault;
        sigaction(SIGSEGV, &action, nullptr);
        sigaction(SIGBUS, &action, nullptr);
        *static_cast<volatile unsigned char *>(ptr) = 0x42;
        _exit(kWriteSucceeded);
    }
    int status = 0;
    waitpid(child, &status, 0);
    if (WIFSIGNALED(status)) return WTERMSIG(status) == SIGSEGV ? kFaulted : -1;
    return WEXITSTATUS(status);
}

ModelSpec mixed_model() {
    ModelSpec spec;
    spec.groups.push_back({{10000, false}, {300, true}, {5000, false}});
    spec.groups.push_back({{7000, false}});
    spec.budget = 1 << 20;
    return spec;
}

}  // namespace

// Sim-only, these two: the model follows FERRY_BACKEND, and a forked child of a process
// using CUDA may find the pages CUDA registered (the pinned store) not mapped at all, which
// would pass the first for the wrong reason and fail the second. (The test after them
// creates a sim runtime of its own.)
TEST_CASE("Writing an immutable tensor's host bytes after seal faults", "[sim-only]") {
    SimModel model(mixed_model());
    void *immutable = nullptr;
    REQUIRE(ferry_tensor_host_ptr(model.runtime(), model.tensor(0, 2), &immutable) == FERRY_OK);
    REQUIRE(write_in_child(immutable) == kFaulted);
    void *other_group = nullptr;
    REQUIRE(ferry_tensor_host_ptr(model.runtime(), model.tensor(1, 0), &other_group) == FERRY_OK);
    REQUIRE(write_in_child(static_cast<char *>(other_group) + 6999) == kFaulted);
}

TEST_CASE("A mutable tensor's host bytes stay writable after seal", "[sim-only]") {
    SimModel model(mixed_model());
    void *mutable_ptr = nullptr;
    REQUIRE(ferry_tensor_host_ptr(model.runtime(), model.tensor(0, 1), &mutable_ptr) == FERRY_OK);
    REQUIRE(write_in_child(mutable_ptr) == kWriteSucceeded);
    REQUIRE(write_in_child(static_cast<char *>(mutable_ptr) + 299) == kWriteSucceeded);
}

TEST_CASE("After an update a frozen tensor's host bytes are read-only again", "[sim-only]") {
    SimModel model(mixed_model());
    const std::vector<unsigned char> next(5000, 0x3c);
    REQUIRE(ferry_tensor_update(model.runtime(), model.tensor(0, 2), 0, next.data(),
                                next.size()) == FERRY_OK);
    REQUIRE(ferry_tensor_update(model.runtime(), model.tensor(1, 0), 6000, next.data(), 1000) ==
            FERRY_OK);
    void *updated = nullptr;
    REQUIRE(ferry_tensor_host_ptr(model.runtime(), model.tensor(0, 2), &updated) == FERRY_OK);
    REQUIRE(static_cast<unsigned char *>(updated)[4999] == 0x3c);
    REQUIRE(write_in_child(updated) == kFaulted);
    REQUIRE(write_in_child(static_cast<char *>(updated) + 4999) == kFaulted);
    void *first = nullptr;  // a neighbour on the same pages
    REQUIRE(ferry_tensor_host_ptr(model.runtime(), model.tensor(0, 0), &first) == FERRY_OK);
    REQUIRE(write_in_child(first) == kFaulted);
    void *other_group = nullptr;
    REQUIRE(ferry_tensor_host_ptr(model.runtime(), model.tensor(1, 0), &other_group) == FERRY_OK);
    REQUIRE(write_in_child(static_cast<char *>(other_group) + 6999) == kFaulted);
}

TEST_CASE("Before seal every tensor's host bytes are writable") {
    ferry_config config;
    ferry_config_init(&config);
    config.backend = FERRY_BACKEND_SIM;
    config.vram_budget = 1 << 20;
    ferry_runtime *rt = nullptr;
    REQUIRE(ferry_create(&config, &rt) == FERRY_OK);
    ferry_group group;
    ferry_tensor tensor;
    REQUIRE(ferry_group_define(rt, "g", &group) == FERRY_OK);
    REQUIRE(ferry_tensor_define(rt, group, "w", 4096, FERRY_DTYPE_UNKNOWN, 0, nullptr, 0,
                                &tensor) == FERRY_OK);
    REQUIRE(ferry_plan(rt) == FERRY_OK);
    void *host = nullptr;
    REQUIRE(ferry_tensor_host_ptr(rt, tensor, &host) == FERRY_OK);
    REQUIRE(write_in_child(host) == kWriteSucceeded);
    REQUIRE(ferry_destroy(rt) == FERRY_OK);
}

TEST_CASE("Pinned host bytes are the model's bytes plus at most page padding per group") {
    ModelSpec spec;
    std::uint64_t model_bytes = 0;
    for (int g = 0; g < 40; ++g) {
        spec.groups.push_back({{100000 + 1000u * g, false}, {3333, false}});
        model_bytes += 100000 + 1000u * g + 3333;
    }
    spec.budget = 4 << 20;
    SimModel model(spec);
    const ferry_stats stats = model.stats();
    REQUIRE(stats.model_bytes == model_bytes);
    REQUIRE(stats.host_pinned_bytes >= model_bytes);
    REQUIRE(stats.host_pinned_bytes <= model_bytes + 40 * (4096 + 512));
    REQUIRE(stats.host_pinned_bytes < model_bytes * 103 / 100);
}

// --- pinned registrations: no copy spans two ------------------------------------------

namespace {

std::size_t pages(std::size_t n) { return n * ferry::HostStore::page_size(); }

}  // namespace

TEST_CASE("Pinned chunks end only at image ends; an image larger than a chunk gets its own") {
    auto device = ferry::make_sim_device(ferry::SimOptions{});
    ferry::PinPolicy policy;
    policy.chunk_bytes = pages(4);
    // Images of 3, 2, 15 (larger than a chunk), 1 and 1 pages.
    const std::vector<std::size_t> ends = {pages(3), pages(5), pages(20), pages(21), pages(22)};
    ferry::HostStore store(*device, ends, policy);
    REQUIRE(store.pinned_bytes() == pages(22));
    // 3 + 2 pages would pass the 4-page chunk: [0, 3) [3, 5) [5, 20) [20, 22).
    REQUIRE(store.chunk_ends() ==
            std::vector<std::size_t>{pages(3), pages(5), pages(20), pages(22)});
}

TEST_CASE("The pinned cap ends the pinned prefix at the last image end within it") {
    auto device = ferry::make_sim_device(ferry::SimOptions{});
    ferry::PinPolicy policy;
    policy.chunk_bytes = pages(64);
    policy.cap_bytes = pages(12);
    policy.pageable_fallback = true;
    const std::vector<std::size_t> ends = {pages(5), pages(10), pages(15), pages(20)};
    ferry::HostStore store(*device, ends, policy);
    REQUIRE(store.pinned_bytes() == pages(10));  // not 12: that would cut the third image
    REQUIRE(store.pageable_bytes() == pages(10));
    REQUIRE(store.chunk_ends() == std::vector<std::size_t>{pages(10)});
}

TEST_CASE("The sim refuses a copy whose host range spans two pinned registrations",
          "[sim-only]") {
    auto device = ferry::make_sim_device(ferry::SimOptions{});
    const std::size_t half = pages(2);
    void *mapped = mmap(nullptr, 2 * half, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                        -1, 0);
    REQUIRE(mapped != MAP_FAILED);
    auto *host = static_cast<std::byte *>(mapped);
    device->pin(host, half);  // two registrations of one mapping, as the host store makes
    device->pin(host + half, half);
    void *dst = device->reserve(2 * half);
    void *stream = device->create_stream();

    device->copy_h2d(dst, host, half, stream);  // inside one registration: fine
    device->copy_h2d(dst, host + half, half, stream);
    try {
        device->copy_h2d(dst, host + half - 256, 512, stream);
        FAIL("a copy across two registrations was accepted");
    } catch (const ferry::Error &error) {
        REQUIRE(error.status() == FERRY_ERROR_DEVICE);
        REQUIRE(std::string(error.what()).find("spans two registrations") != std::string::npos);
    }
    REQUIRE_THROWS_AS(device->copy_d2h(host + half - 256, dst, 512, stream), ferry::Error);
    // Pinned memory and pageable memory in one copy: refused too.
    std::vector<std::byte> pageable(pages(1));
    device->unpin(host + half, half);
    REQUIRE_THROWS_AS(device->copy_h2d(dst, host + half - 256, 512, stream), ferry::Error);
    device->copy_h2d(dst, pageable.data(), pageable.size(), stream);  // all pageable: fine
    device->stream_synchronize(stream);  // nothing refused was queued

    device->destroy_stream(stream);
    device->unreserve(dst);
    device->unpin(host, half);
    munmap(host, 2 * half);
}
