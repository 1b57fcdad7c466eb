// ferry and CUDA graph capture: acquire and release on a stream that is capturing fail with
// a status of their own and leave the capture, and the runtime, as they were; and ferry's
// work on other streams does not invalidate a capture in progress elsewhere.
#include <algorithm>
#include <cctype>
#include <cstdint>
#include <string>
#include <vector>

#include "../api_fixture.hpp"
#include "helpers.hpp"

namespace {

using ferry_test::RuntimeGuard;
using ferry_test::stats_of;

const std::vector<std::vector<std::uint64_t>> kSizes = {
    {400001}, {300007, 200003}, {500009}, {350001},
};

std::uint64_t total_bytes() {
    std::uint64_t bytes = 0;
    for (const auto &group : kSizes)
        for (const std::uint64_t b : group) bytes += b;
    return bytes;
}

// A capture the test began; ended, and its graph destroyed, when the scope ends without
// the test ending it (a failed REQUIRE), so that no later test finds the stream capturing.
class Capture {
   public:
    Capture(cudaStream_t stream, cudaStreamCaptureMode mode) : stream_(stream) {
        REQUIRE_CUDA(cudaStreamBeginCapture(stream, mode));
    }
    ~Capture() {
        if (!ended_) end();
    }
    Capture(const Capture &) = delete;
    Capture &operator=(const Capture &) = delete;

    // Ends the capture and discards the graph. Returns cudaStreamEndCapture's error;
    // graph() says whether a graph came back.
    cudaError_t end() {
        ended_ = true;
        cudaGraph_t graph = nullptr;
        const cudaError_t err = cudaStreamEndCapture(stream_, &graph);
        got_graph_ = graph != nullptr;
        if (graph != nullptr) cudaGraphDestroy(graph);
        if (err != cudaSuccess) cudaGetLastError();
        return err;
    }
    bool graph() const { return got_graph_; }

   private:
    cudaStream_t stream_;
    bool ended_ = false;
    bool got_graph_ = false;
};

// Device bytes the captured work writes, allocated before any capture (cudaMalloc is not
// allowed while one runs).
struct Scratch {
    void *ptr = nullptr;
    Scratch() { REQUIRE_CUDA(cudaMalloc(&ptr, 4096)); }
    ~Scratch() { cudaFree(ptr); }
};

// The first two cases' setup: the model at two thirds of its size, a stream of the test's
// own, the captured work's scratch, and no CUDA error left over.
struct CaptureFixture {
    RuntimeGuard runtime{ferry_test::make_cuda_runtime(total_bytes() * 2 / 3)};
    ferry_runtime *rt = runtime.handle;
    const ferry_test::TestModel model = ferry_test::build_model(rt, kSizes);
    ferry_test::CudaStream stream;
    Scratch scratch;
    CaptureFixture() { cudaGetLastError(); }
};

std::string lower(std::string text) {
    std::transform(text.begin(), text.end(), text.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    return text;
}

// The call failed with FERRY_ERROR_STREAM_CAPTURING, and its message names the call and
// the capture.
#define REQUIRE_CAPTURING(expr, call)                                                    \
    do {                                                                                 \
        const ferry_status capture_status_ = (expr);                                     \
        const std::string capture_message_ = ferry_last_error();                         \
        INFO(#expr << ": " << ferry_status_string(capture_status_) << ": "               \
                   << capture_message_);                                                 \
        REQUIRE(capture_status_ == FERRY_ERROR_STREAM_CAPTURING);                         \
        REQUIRE(capture_message_.rfind(call, 0) == 0);                                   \
        REQUIRE(lower(capture_message_).find("captur") != std::string::npos);            \
    } while (0)

}  // namespace

TEST_CASE_METHOD(CaptureFixture, "an acquire on a stream capturing a graph fails with STREAM_CAPTURING and leaves "
          "the capture and the runtime usable") {
    {
        Capture capture(stream.stream, cudaStreamCaptureModeThreadLocal);
        REQUIRE_CUDA(cudaMemsetAsync(scratch.ptr, 0, 4096, stream.stream));
        REQUIRE_CAPTURING(ferry_acquire(rt, model.groups[0], stream.stream), "ferry_acquire");
        const cudaError_t ended = capture.end();
        INFO("cudaStreamEndCapture: " << cudaGetErrorName(ended));
        CHECK(ended == cudaSuccess);  // ferry did nothing that invalidated the capture
        CHECK(capture.graph());
    }
    CHECK(cudaPeekAtLastError() == cudaSuccess);
    cudaGetLastError();
    CHECK(stats_of(rt).acquires == 0);  // the failed call changed nothing

    // The same stream, no longer capturing: the runtime works as before.
    REQUIRE_FERRY(ferry_acquire(rt, model.groups[0], stream.stream));
    REQUIRE_CUDA(cudaStreamSynchronize(stream.stream));
    const std::string wrong = ferry_test::wrong_tensors(rt, model, 0);
    INFO(wrong);
    CHECK(wrong.empty());
    REQUIRE_FERRY(ferry_release(rt, model.groups[0], stream.stream));
    REQUIRE_FERRY(ferry_synchronize(rt));
    REQUIRE_CUDA(cudaStreamSynchronize(stream.stream));
}

TEST_CASE_METHOD(CaptureFixture, "a release on a stream capturing a graph fails with STREAM_CAPTURING and the group "
          "stays acquired until a release after the capture") {
    REQUIRE_FERRY(ferry_acquire(rt, model.groups[1], stream.stream));
    {
        Capture capture(stream.stream, cudaStreamCaptureModeThreadLocal);
        REQUIRE_CUDA(cudaMemsetAsync(scratch.ptr, 0, 4096, stream.stream));
        REQUIRE_CAPTURING(ferry_release(rt, model.groups[1], stream.stream), "ferry_release");
        const cudaError_t ended = capture.end();
        INFO("cudaStreamEndCapture: " << cudaGetErrorName(ended));
        CHECK(ended == cudaSuccess);
        CHECK(capture.graph());
    }
    CHECK(cudaPeekAtLastError() == cudaSuccess);
    cudaGetLastError();

    // Still held once: one release succeeds, a second finds nothing to release.
    void *device = nullptr;
    REQUIRE_FERRY(ferry_tensor_device_ptr(rt, model.tensors[1].handle, &device));
    REQUIRE_FERRY(ferry_release(rt, model.groups[1], stream.stream));
    CHECK(ferry_release(rt, model.groups[1], stream.stream) == FERRY_ERROR_NOT_ACQUIRED);
    REQUIRE_FERRY(ferry_acquire(rt, model.groups[2], stream.stream));
    REQUIRE_FERRY(ferry_release(rt, model.groups[2], stream.stream));
    REQUIRE_FERRY(ferry_synchronize(rt));
    REQUIRE_CUDA(cudaStreamSynchronize(stream.stream));
    const ferry_stats stats = stats_of(rt);
    CHECK(stats.acquires == 2);
    CHECK(stats.releases == 2);
}

TEST_CASE("ferry's first timing stamp, on another stream, does not invalidate a global-mode "
          "capture in progress") {
    ferry_test::ScopedEnv stats_env("FERRY_STATS", "1");
    // Two slots of the one size class and nothing else: no group is resident, so seal
    // copies nothing and the first stamp is taken by the first acquire, below.
    const std::uint64_t group_bytes = 1 << 20;
    RuntimeGuard runtime{ferry_test::make_cuda_runtime(2 * group_bytes)};
    ferry_runtime *rt = runtime.handle;
    const ferry_test::TestModel model = ferry_test::build_model(
        rt, {{group_bytes}, {group_bytes}, {group_bytes}, {group_bytes}});
    for (const ferry_group group : model.groups) {
        std::uint64_t resident = 1;
        REQUIRE_FERRY(ferry_group_resident_bytes(rt, group, &resident));
        REQUIRE(resident == 0);
    }
    REQUIRE(stats_of(rt).onloads == 0);

    // Blocking, like a stream made by cudaStreamCreate: work on the legacy default stream
    // while it captures would be an implicit dependency, which invalidates the capture.
    ferry_test::CudaStream capturing(cudaStreamDefault);
    ferry_test::CudaStream compute;
    Scratch scratch;
    cudaGetLastError();

    ferry_status acquired = FERRY_OK, released = FERRY_OK;
    std::string message;
    {
        Capture capture(capturing.stream, cudaStreamCaptureModeGlobal);
        REQUIRE_CUDA(cudaMemsetAsync(scratch.ptr, 1, 4096, capturing.stream));
        acquired = ferry_acquire(rt, model.groups[0], compute.stream);
        message = ferry_last_error();
        if (acquired == FERRY_OK) {
            released = ferry_release(rt, model.groups[0], compute.stream);
            message = ferry_last_error();
        }
        const cudaError_t ended = capture.end();
        INFO("cudaStreamEndCapture: " << cudaGetErrorName(ended));
        CHECK(ended == cudaSuccess);
        CHECK(capture.graph());
    }
    cudaGetLastError();
    INFO("ferry: " << message);
    CHECK(acquired == FERRY_OK);
    CHECK(released == FERRY_OK);

    REQUIRE_CUDA(cudaStreamSynchronize(compute.stream));
    REQUIRE_FERRY(ferry_synchronize(rt));
    const ferry_stats stats = stats_of(rt);
    CHECK(stats.onloads >= 1);
    CHECK(stats.acquires == 1);
}
