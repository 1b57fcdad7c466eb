// ferry end to end on a GPU, through the public C API: a model larger than its VRAM budget
// is streamed pass after pass, and every kernel that reads a group sees exactly its bytes.
#include <cstdint>
#include <cstring>
#include <sstream>
#include <string>
#include <vector>

#include "busy.hpp"
#include "checksum.hpp"
#include "checksum_ref.hpp"
#include "helpers.hpp"
#include "core/runtime.hpp"
#include "observe/stats_reader.hpp"

namespace {

using ferry_test::stats_of;

constexpr std::size_t kGroups = 12;
constexpr std::uint64_t kComputeNs = 200 * 1000;  // stand-in compute per group
constexpr std::uint64_t kMutableBytes = 64 * 1024 + 5;
constexpr std::size_t kMutableGroup = 4;

struct Tensor {
    ferry_tensor handle;
    std::size_t group;
    std::uint64_t bytes;
    bool is_mutable;
    std::uint64_t initial_checksum;
};

struct Model {
    std::vector<ferry_group> groups;
    std::vector<Tensor> tensors;
    std::uint64_t bytes = 0;
};

struct Runtime {
    ferry_runtime *handle = nullptr;
    ~Runtime() { ferry_destroy(handle); }
};

struct ComputeStream {
    cudaStream_t stream = nullptr;
    ComputeStream() { REQUIRE_CUDA(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking)); }
    ~ComputeStream() { cudaStreamDestroy(stream); }
};

struct DeviceResults {
    std::uint64_t *ptr = nullptr;
    std::size_t count;
    explicit DeviceResults(std::size_t n) : count(n) {
        REQUIRE_CUDA(cudaMalloc(&ptr, n * sizeof(std::uint64_t)));
    }
    ~DeviceResults() { cudaFree(ptr); }
    std::vector<std::uint64_t> read() const {
        std::vector<std::uint64_t> host(count);
        REQUIRE_CUDA(cudaMemcpy(host.data(), ptr, count * sizeof(std::uint64_t),
                                cudaMemcpyDeviceToHost));
        return host;
    }
};

// 2 or 3 immutable tensors per group, 2.5 to 4.5 MiB per group, odd sizes so that the
// checksum's zero-padded tail is exercised.
std::vector<std::uint64_t> tensor_sizes(std::size_t group) {
    std::vector<std::uint64_t> sizes;
    for (std::size_t t = 0; t < 2 + group % 2; ++t)
        sizes.push_back(512 * 1024 * (1 + (group * 5 + t * 3) % 4) + 8 * group + 3 * t + 1);
    return sizes;
}

// Defines the model (plus one mutable tensor in kMutableGroup when asked), plans it, fills
// it with known bytes, alternating copy-in and writes through the host pointer, and seals.
Model build_model(ferry_runtime *rt, bool with_mutable) {
    Model model;
    std::vector<std::vector<std::uint64_t>> sizes(kGroups);
    for (std::size_t g = 0; g < kGroups; ++g) {
        ferry_group group;
        REQUIRE_FERRY(ferry_group_define(rt, ("block." + std::to_string(g)).c_str(), &group));
        model.groups.push_back(group);
        std::vector<std::pair<std::uint64_t, bool>> specs;
        for (const std::uint64_t bytes : tensor_sizes(g)) specs.emplace_back(bytes, false);
        if (with_mutable && g == kMutableGroup) specs.emplace_back(kMutableBytes, true);
        for (std::size_t t = 0; t < specs.size(); ++t) {
            Tensor tensor{};
            const std::string name = "w" + std::to_string(t);
            REQUIRE_FERRY(ferry_tensor_define(rt, group, name.c_str(), specs[t].first,
                                              FERRY_DTYPE_UNKNOWN, 0, nullptr,
                                              specs[t].second ? FERRY_TENSOR_MUTABLE : 0u,
                                              &tensor.handle));
            tensor.group = g;
            tensor.bytes = specs[t].first;
            tensor.is_mutable = specs[t].second;
            model.tensors.push_back(tensor);
            model.bytes += tensor.bytes;
        }
    }
    REQUIRE_FERRY(ferry_plan(rt));

    for (std::size_t i = 0; i < model.tensors.size(); ++i) {
        Tensor &tensor = model.tensors[i];
        const std::vector<unsigned char> bytes = ferry_test::pattern(tensor.bytes, 100 + i);
        tensor.initial_checksum = ferry::kernels::checksum_ref(bytes.data(), bytes.size());
        ferry_test::fill_tensor(rt, tensor.handle, bytes, i % 2 == 1);
    }
    REQUIRE_FERRY(ferry_seal(rt));
    return model;
}

std::uint64_t budget_for(std::uint64_t model_bytes) { return model_bytes * 2 / 5; }

// A model's bytes before any group is defined: the budget must be known at create time.
std::uint64_t immutable_model_bytes() {
    std::uint64_t bytes = 0;
    for (std::size_t g = 0; g < kGroups; ++g)
        for (const std::uint64_t b : tensor_sizes(g)) bytes += b;
    return bytes;
}

ferry_runtime *create_runtime(bool synchronous, bool publish_stats = false) {
    ferry_config config;
    ferry_config_init(&config);
    config.backend = FERRY_BACKEND_CUDA;
    config.device = 0;
    config.vram_budget = budget_for(immutable_model_bytes());
    config.synchronous = synchronous ? 1 : 0;
    config.publish_stats = publish_stats ? 1 : 0;
    config.name = "cuda-end-to-end";
    ferry_runtime *runtime = nullptr;
    REQUIRE_FERRY(ferry_create(&config, &runtime));
    return runtime;
}

std::uint8_t mutable_fill(int pass) { return static_cast<std::uint8_t>(0x10 + pass); }

// One pass: for each group, acquire on `stream`, compute a while, checksum every tensor
// into results[tensor], optionally overwrite the mutable tensor, release. The compute
// comes first so that a slot reused before the release's work is done would be caught.
void run_pass(ferry_runtime *rt, const Model &model, cudaStream_t stream,
              std::uint64_t *results, int pass, bool write_mutable) {
    for (std::size_t g = 0; g < model.groups.size(); ++g) {
        REQUIRE_FERRY(ferry_acquire(rt, model.groups[g], stream));
        ferry::kernels::launch_busy(stream, kComputeNs);
        for (std::size_t i = 0; i < model.tensors.size(); ++i) {
            const Tensor &tensor = model.tensors[i];
            if (tensor.group != g) continue;
            void *device = nullptr;
            REQUIRE_FERRY(ferry_tensor_device_ptr(rt, tensor.handle, &device));
            ferry::kernels::launch_checksum(device, tensor.bytes, results + i, stream);
            if (tensor.is_mutable && write_mutable) {
                REQUIRE_CUDA(
                    cudaMemsetAsync(device, mutable_fill(pass), tensor.bytes, stream));
            }
        }
        REQUIRE_FERRY(ferry_release(rt, model.groups[g], stream));
    }
}

// The checksum every tensor must show in `pass`: its initial bytes, or for a mutable
// tensor written each pass, the fill of the pass before.
std::uint64_t expected_checksum(const Tensor &tensor, int pass, bool write_mutable) {
    if (!tensor.is_mutable || !write_mutable || pass == 0) return tensor.initial_checksum;
    const std::vector<unsigned char> filled(tensor.bytes, mutable_fill(pass - 1));
    return ferry::kernels::checksum_ref(filled.data(), filled.size());
}

// Enqueues `passes` passes; their checksums land in `results`, pass after pass.
void run_passes(ferry_runtime *rt, const Model &model, cudaStream_t stream, int passes,
                bool write_mutable, const DeviceResults &results) {
    const std::size_t n = model.tensors.size();
    for (int pass = 0; pass < passes; ++pass)
        run_pass(rt, model, stream, results.ptr + pass * n, pass, write_mutable);
}

// Waits for `stream`, then checks every checksum each pass saw.
void verify_passes(const Model &model, cudaStream_t stream, int passes, bool write_mutable,
                   const DeviceResults &results) {
    const std::size_t n = model.tensors.size();
    REQUIRE_CUDA(cudaStreamSynchronize(stream));
    const std::vector<std::uint64_t> got = results.read();
    std::ostringstream mismatches;
    int count = 0;
    for (int pass = 0; pass < passes; ++pass) {
        for (std::size_t i = 0; i < n; ++i) {
            if (got[pass * n + i] == expected_checksum(model.tensors[i], pass, write_mutable))
                continue;
            if (++count <= 10)
                mismatches << " pass " << pass << " group " << model.tensors[i].group
                           << " tensor " << i << ";";
        }
    }
    INFO(count << " wrong checksums:" << mismatches.str());
    CHECK(count == 0);
}

}  // namespace

TEST_CASE("a model 2.5 times its budget streams the right bytes to every kernel, pass after "
          "pass") {
    const bool synchronous = GENERATE(false, true);
    INFO((synchronous ? "synchronous" : "asynchronous") << " runtime");
    const int passes = 5;
    Runtime runtime{create_runtime(synchronous)};
    const Model model = build_model(runtime.handle, false);
    ComputeStream compute;

    DeviceResults results(model.tensors.size() * passes);
    run_passes(runtime.handle, model, compute.stream, passes, false, results);
    verify_passes(model, compute.stream, passes, false, results);

    REQUIRE_FERRY(ferry_synchronize(runtime.handle));
    const ferry_stats stats = stats_of(runtime.handle);
    CHECK(stats.backend == FERRY_BACKEND_CUDA);
    CHECK(stats.acquires == passes * kGroups);
    CHECK(stats.releases == passes * kGroups);
    CHECK(stats.hits + stats.misses + stats.resident_hits == stats.acquires);
    CHECK(stats.model_bytes == model.bytes);
    CHECK(stats.resident_groups < stats.groups);  // the budget forces streaming
    CHECK(stats.slab_bytes <= stats.vram_budget);
    CHECK(stats.bytes_d2h == 0);  // frozen weights are never copied back
    CHECK(stats.writebacks == 0);
    if (!synchronous) CHECK(stats.prefetches_issued > 0);
}

TEST_CASE("acquire and release on the legacy default stream deliver the right bytes") {
    Runtime runtime{create_runtime(false)};
    const Model model = build_model(runtime.handle, false);
    DeviceResults results(model.tensors.size() * 3);
    run_passes(runtime.handle, model, nullptr, 3, false, results);
    verify_passes(model, nullptr, 3, false, results);
    REQUIRE_FERRY(ferry_synchronize(runtime.handle));
    const ferry_stats stats = stats_of(runtime.handle);
    CHECK(stats.hits + stats.misses + stats.resident_hits == stats.acquires);
    CHECK(stats.bytes_d2h == 0);
}

TEST_CASE("a mutable tensor written by a kernel persists through eviction and reaches host "
          "memory after ferry_synchronize") {
    const int passes = 4;
    Runtime runtime{create_runtime(false)};
    const Model model = build_model(runtime.handle, true);
    ComputeStream compute;

    DeviceResults results(model.tensors.size() * passes);
    run_passes(runtime.handle, model, compute.stream, passes, true, results);

    // The compute stream may still be running: ferry_synchronize's writeback must wait for
    // the last release's work, not for the host.
    REQUIRE_FERRY(ferry_synchronize(runtime.handle));
    const Tensor *mutable_tensor = nullptr;
    for (const Tensor &tensor : model.tensors)
        if (tensor.is_mutable) mutable_tensor = &tensor;
    REQUIRE(mutable_tensor != nullptr);
    void *host = nullptr;
    REQUIRE_FERRY(ferry_tensor_host_ptr(runtime.handle, mutable_tensor->handle, &host));
    const std::vector<unsigned char> expected(mutable_tensor->bytes, mutable_fill(passes - 1));
    CHECK(std::memcmp(host, expected.data(), expected.size()) == 0);

    verify_passes(model, compute.stream, passes, true, results);
    const ferry_stats stats = stats_of(runtime.handle);
    CHECK(stats.hits + stats.misses + stats.resident_hits == stats.acquires);
    CHECK(stats.writebacks >= 1);
    // Only the mutable tensor is ever copied back, never its group's frozen weights.
    CHECK(stats.bytes_d2h == stats.writebacks * kMutableBytes);
}

// The Observer's times on cuda come from events (EventClock in cuda_device.cpp), which no
// other test here reaches: every onload must come back timed, and polling events still in
// flight must leave no error behind for the caller's launch checks (run_pass launches
// kernels, which check cudaGetLastError, right after each acquire).
TEST_CASE("with stats published, every onload on cuda is timed by its events") {
    const int passes = 3;
    Runtime runtime{create_runtime(false, true)};
    const Model model = build_model(runtime.handle, false);
    ComputeStream compute;
    DeviceResults results(model.tensors.size() * passes);
    run_passes(runtime.handle, model, compute.stream, passes, false, results);
    REQUIRE_FERRY(ferry_acquire(runtime.handle, model.groups[0], compute.stream));
    CHECK(cudaPeekAtLastError() == cudaSuccess);
    REQUIRE_FERRY(ferry_release(runtime.handle, model.groups[0], compute.stream));
    verify_passes(model, compute.stream, passes, false, results);
    REQUIRE_FERRY(ferry_synchronize(runtime.handle));
    const ferry_stats stats = stats_of(runtime.handle);  // collects and publishes
    REQUIRE(stats.onloads > 0);

    const std::string name = ferry_runtime_impl(runtime.handle).stats_segment_name();
    REQUIRE_FALSE(name.empty());
    const ferry::ReadResult read = ferry::read_segment(name.substr(1));
    INFO(read.message);
    REQUIRE(read.state == ferry::SegmentState::kOk);
    CHECK(read.snapshot.backend == FERRY_BACKEND_CUDA);
    std::uint64_t onloads = 0, timed = 0, onload_ns = 0;
    for (const ferry::GroupSnapshot &group : read.snapshot.groups) {
        onloads += group.onloads;
        timed += group.timed_onloads;
        onload_ns += group.total_onload_ns;
    }
    CHECK(onloads > 0);
    CHECK(timed == onloads);
    CHECK(onload_ns > 0);
}
