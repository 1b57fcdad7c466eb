// ferry runs on the caller's thread, between the caller's own CUDA calls: it must leave the
// caller's CUDA state as it found it. Its last error, which the caller reads at its next
// launch check, and its current device, which ferry changes to its own for a call and then
// restores without creating a context on the caller's device.
#include <cudaTypedefs.h>

#include <cstdint>
#include <string>
#include <thread>
#include <vector>

#include "../api_fixture.hpp"
#include "busy.hpp"
#include "helpers.hpp"

namespace {

using ferry_test::RuntimeGuard;
using ferry_test::stats_of;

constexpr std::uint64_t kMillisecond = 1000 * 1000;  // in nanoseconds

// Six groups of about 0.5 to 1 MiB, odd sizes.
const std::vector<std::vector<std::uint64_t>> kSizes = {
    {600001}, {500003, 300007}, {700001}, {450001, 250013}, {800011}, {550007},
};

std::uint64_t total_bytes() {
    std::uint64_t bytes = 0;
    for (const auto &group : kSizes)
        for (const std::uint64_t b : group) bytes += b;
    return bytes;
}

}  // namespace

TEST_CASE("an error the caller has not read yet is still there after ferry calls that poll "
          "timing events") {
    // Published stats make every acquire poll the timing events of earlier copies.
    ferry_test::ScopedEnv stats_env("FERRY_STATS", "1");
    RuntimeGuard runtime{ferry_test::make_cuda_runtime(total_bytes() / 2)};
    ferry_runtime *rt = runtime.handle;
    const ferry_test::TestModel model = ferry_test::build_model(rt, kSizes);
    ferry_test::CudaStream compute;
    cudaGetLastError();  // start clean

    // Work ahead of every acquire keeps ferry's timing events in flight (not ready) while it
    // polls them. Launched before the error: a launch check would read it.
    ferry::kernels::launch_busy(compute.stream, 100 * kMillisecond);
    void *absurd = nullptr;
    const cudaError_t provoked = cudaMalloc(&absurd, std::size_t{1} << 50);
    REQUIRE(provoked == cudaErrorMemoryAllocation);  // not sticky, and left unread

    for (int pass = 0; pass < 2; ++pass) {
        for (std::size_t g = 0; g < model.groups.size(); ++g) {
            REQUIRE_FERRY(ferry_acquire(rt, model.groups[g], compute.stream));
            for (const ferry_test::ModelTensor &tensor : model.tensors) {
                if (tensor.group != g) continue;
                void *device = nullptr;
                REQUIRE_FERRY(ferry_tensor_device_ptr(rt, tensor.handle, &device));
            }
            REQUIRE_FERRY(ferry_release(rt, model.groups[g], compute.stream));
        }
    }
    const ferry_stats stats = stats_of(rt);  // collects (polls) and publishes

    const cudaError_t held = cudaPeekAtLastError();
    INFO("the thread's last error after the ferry calls: " << cudaGetErrorName(held));
    CHECK(held == cudaErrorMemoryAllocation);
    cudaGetLastError();  // the test read it: clear it
    CHECK(stats.onloads > 0);
    CHECK(stats.acquires == 2 * model.groups.size());
    REQUIRE_CUDA(cudaStreamSynchronize(compute.stream));
    REQUIRE_FERRY(ferry_synchronize(rt));
}

namespace {

// Driver calls through the runtime's entry points: the tests do not link libcuda.
template <typename Fn>
Fn driver_entry(const char *symbol, unsigned version) {
    void *fn = nullptr;
    cudaDriverEntryPointQueryResult found = cudaDriverEntryPointSymbolNotFound;
    REQUIRE_CUDA(cudaGetDriverEntryPointByVersion(symbol, &fn, version, cudaEnableDefault, &found));
    INFO(symbol);
    REQUIRE(found == cudaDriverEntryPointSuccess);
    REQUIRE(fn != nullptr);
    return reinterpret_cast<Fn>(fn);
}

// Whether the device's primary context is active (created and not reset). Asking creates
// none.
bool primary_context_active(int ordinal) {
    const auto device_get = driver_entry<PFN_cuDeviceGet_v2000>("cuDeviceGet", 2000);
    const auto get_state =
        driver_entry<PFN_cuDevicePrimaryCtxGetState_v7000>("cuDevicePrimaryCtxGetState", 7000);
    CUdevice device = 0;
    REQUIRE(device_get(&device, ordinal) == CUDA_SUCCESS);
    unsigned flags = 0;
    int active = -1;
    REQUIRE(get_state(device, &flags, &active) == CUDA_SUCCESS);
    return active != 0;
}

// What a thread that never used CUDA saw while it drove a whole runtime on device 1 through
// the C API. Catch's assertions are not thread-safe: the thread only records.
struct ForeignThread {
    std::vector<std::string> failures;
    int device_after = -1;  // its current device once ferry is done
};

#define THREAD_FERRY(report, call)                                                        \
    do {                                                                                  \
        const ferry_status thread_status_ = (call);                                       \
        if (thread_status_ != FERRY_OK) {                                                 \
            (report).failures.push_back(std::string(#call) + ": " +                       \
                                        ferry_status_string(thread_status_) + ": " +      \
                                        ferry_last_error());                              \
            return;                                                                       \
        }                                                                                 \
    } while (0)

void drive_runtime_on_device_1(ForeignThread &report, ferry_runtime **runtime) {
    ferry_config config;
    ferry_config_init(&config);
    config.backend = FERRY_BACKEND_CUDA;
    config.device = 1;
    config.vram_budget = total_bytes() / 2;
    config.name = "device-1";
    THREAD_FERRY(report, ferry_create(&config, runtime));
    ferry_runtime *rt = *runtime;
    std::vector<ferry_group> groups;
    std::vector<ferry_tensor> tensors;
    std::vector<std::size_t> tensor_group;
    std::vector<std::uint64_t> tensor_bytes;
    for (std::size_t g = 0; g < kSizes.size(); ++g) {
        ferry_group group{};
        THREAD_FERRY(report, ferry_group_define(rt, ("g" + std::to_string(g)).c_str(), &group));
        groups.push_back(group);
        for (std::size_t t = 0; t < kSizes[g].size(); ++t) {
            ferry_tensor tensor{};
            THREAD_FERRY(report, ferry_tensor_define(rt, group, ("t" + std::to_string(t)).c_str(),
                                                     kSizes[g][t], FERRY_DTYPE_UNKNOWN, 0,
                                                     nullptr, 0, &tensor));
            tensors.push_back(tensor);
            tensor_group.push_back(g);
            tensor_bytes.push_back(kSizes[g][t]);
        }
    }
    THREAD_FERRY(report, ferry_plan(rt));
    for (std::size_t i = 0; i < tensors.size(); ++i) {
        const std::vector<unsigned char> data = ferry_test::pattern(tensor_bytes[i], i);
        THREAD_FERRY(report, ferry_tensor_copy_in(rt, tensors[i], 0, data.data(), data.size()));
    }
    THREAD_FERRY(report, ferry_seal(rt));
    // NULL: the legacy default stream of device 1 (this thread never made another current).
    for (int pass = 0; pass < 2; ++pass) {
        for (std::size_t g = 0; g < groups.size(); ++g) {
            THREAD_FERRY(report, ferry_acquire(rt, groups[g], nullptr));
            for (std::size_t i = 0; i < tensors.size(); ++i) {
                if (tensor_group[i] != g) continue;
                void *device = nullptr;
                THREAD_FERRY(report, ferry_tensor_device_ptr(rt, tensors[i], &device));
            }
            THREAD_FERRY(report, ferry_release(rt, groups[g], nullptr));
        }
    }
    ferry_stats stats{};
    stats.struct_size = sizeof stats;
    THREAD_FERRY(report, ferry_stats_get(rt, &stats));
    THREAD_FERRY(report, ferry_synchronize(rt));
    *runtime = nullptr;
    THREAD_FERRY(report, ferry_destroy(rt));
}

}  // namespace

// Needs two GPUs: the runner leaves [two-gpus] cases out where fewer are visible, and the
// meson test that names them is skipped (77) there.
TEST_CASE("a runtime on device 1 driven from a thread that never used CUDA creates no "
          "context on device 0", "[two-gpus]") {
    int count = 0;
    REQUIRE_CUDA(cudaGetDeviceCount(&count));
    REQUIRE(count >= 2);
    // Earlier tests used device 0: reset its primary context, so that any context on it
    // afterwards is one ferry created.
    if (primary_context_active(0)) {
        REQUIRE_CUDA(cudaSetDevice(0));
        REQUIRE_CUDA(cudaDeviceReset());
    }
    REQUIRE_FALSE(primary_context_active(0));
    ferry_test::ScopedEnv stats_env("FERRY_STATS", "1");  // the timing clock on device 1 too

    ForeignThread report;
    std::thread thread([&report] {
        ferry_runtime *runtime = nullptr;
        drive_runtime_on_device_1(report, &runtime);
        if (runtime != nullptr) ferry_destroy(runtime);  // after a failure
        if (cudaGetDevice(&report.device_after) != cudaSuccess) cudaGetLastError();
    });
    thread.join();

    std::string failures;
    for (const std::string &failure : report.failures) failures += "\n  " + failure;
    INFO("ferry calls that failed on the thread:" << failures);
    REQUIRE(report.failures.empty());
    CHECK(report.device_after == 0);  // the thread's current device is as it was
    CHECK(primary_context_active(1));  // ferry did use device 1
    CHECK_FALSE(primary_context_active(0));
}
