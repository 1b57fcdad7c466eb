// The cuda Device on its own: memory, copies, streams, events and host functions behave
// as device.hpp promises.
#include <sys/mman.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstring>
#include <memory>
#include <mutex>
#include <vector>

#include "busy.hpp"
#include "checksum.hpp"
#include "checksum_ref.hpp"
#include "device/device.hpp"
#include "base/error.hpp"
#include "helpers.hpp"

namespace {

using Clock = std::chrono::steady_clock;
using ferry::Device;
using ferry_test::fill_pattern;

constexpr std::uint64_t kMillisecond = 1000 * 1000;  // in nanoseconds

double ms_since(Clock::time_point start) {
    return std::chrono::duration<double, std::milli>(Clock::now() - start).count();
}

std::size_t page_size() { return static_cast<std::size_t>(sysconf(_SC_PAGESIZE)); }

// Device resources that give themselves back when a REQUIRE fails.
struct Pinned {
    Device &device;
    std::size_t bytes;
    unsigned char *data = static_cast<unsigned char *>(device.alloc_pinned(bytes));
    ~Pinned() { device.free_pinned(data, bytes); }
};
struct Reserved {
    Device &device;
    std::size_t bytes;
    void *ptr = device.reserve(bytes);
    ~Reserved() { device.unreserve(ptr); }
};
struct OwnedStream {
    Device &device;
    ferry::Stream stream = device.create_stream();
    ~OwnedStream() { device.destroy_stream(stream); }
};
struct OwnedEvent {
    Device &device;
    ferry::Event event = device.create_event();
    ~OwnedEvent() { device.destroy_event(event); }
};

ferry_status status_of_reserve(Device &device, std::size_t bytes) {
    try {
        device.unreserve(device.reserve(bytes));
        return FERRY_OK;
    } catch (const ferry::Error &e) {
        INFO(e.what());
        return e.status();
    }
}

// Loads the kernels' modules (lazy loading) so that timing checks measure only the work.
void warm_up(Device &device) {
    ferry::kernels::launch_busy(nullptr, 0);
    device.device_synchronize();
}

}  // namespace

TEST_CASE("the cuda device reports the cuda backend and the card's name") {
    const auto device = ferry::make_cuda_device(0);
    CHECK(device->backend() == FERRY_BACKEND_CUDA);
    CHECK_FALSE(device->name().empty());
}

TEST_CASE("an ordinal with no device behind it is BACKEND_UNAVAILABLE") {
    int count = 0;
    REQUIRE_CUDA(cudaGetDeviceCount(&count));
    for (const int ordinal : {-1, count}) {
        try {
            ferry::make_cuda_device(ordinal);
            FAIL("make_cuda_device(" << ordinal << ") succeeded");
        } catch (const ferry::Error &e) {
            CHECK(e.status() == FERRY_ERROR_BACKEND_UNAVAILABLE);
        }
    }
}

TEST_CASE("pinned memory is page-aligned and every page of it is writable") {
    const auto device = ferry::make_cuda_device(0);
    const std::size_t page = page_size();
    Pinned pinned{*device, 3 * page + 5};
    CHECK(reinterpret_cast<std::uintptr_t>(pinned.data) % page == 0);
    std::memset(pinned.data, 0xAB, 4 * page);
    CHECK(pinned.data[4 * page - 1] == 0xAB);
}

TEST_CASE("reserve gives 256-byte aligned memory and OUT_OF_DEVICE_MEMORY past the card") {
    const auto device = ferry::make_cuda_device(0);
    Reserved small{*device, 1000};
    CHECK(reinterpret_cast<std::uintptr_t>(small.ptr) % 256 == 0);
    CHECK(status_of_reserve(*device, std::size_t{1} << 50) == FERRY_ERROR_OUT_OF_DEVICE_MEMORY);
    // The failure is not sticky: the device keeps working.
    CHECK(status_of_reserve(*device, 4096) == FERRY_OK);
    device->device_synchronize();
}

TEST_CASE("bytes survive a round trip host to device to host on a ferry stream") {
    const auto device = ferry::make_cuda_device(0);
    const std::size_t bytes = (1 << 20) + 3;
    Pinned source{*device, bytes}, back{*device, bytes};
    Reserved on_device{*device, bytes};
    OwnedStream stream{*device};
    fill_pattern(source.data, bytes, 1);
    std::memset(back.data, 0, bytes);

    device->copy_h2d(on_device.ptr, source.data, bytes, stream.stream);
    device->copy_d2h(back.data, on_device.ptr, bytes, stream.stream);
    device->stream_synchronize(stream.stream);
    CHECK(std::memcmp(source.data, back.data, bytes) == 0);
}

TEST_CASE("copies on the null stream run on the legacy default stream") {
    const auto device = ferry::make_cuda_device(0);
    const std::size_t bytes = 64 * 1024 + 1;
    Pinned source{*device, bytes}, back{*device, bytes};
    Reserved on_device{*device, bytes};
    fill_pattern(source.data, bytes, 2);
    std::memset(back.data, 0, bytes);

    device->copy_h2d(on_device.ptr, source.data, bytes, nullptr);
    device->copy_d2h(back.data, on_device.ptr, bytes, nullptr);
    device->stream_synchronize(nullptr);
    CHECK(std::memcmp(source.data, back.data, bytes) == 0);
}

TEST_CASE("the checksum kernel agrees with checksum_ref for every length and alignment") {
    const auto device = ferry::make_cuda_device(0);
    const std::size_t bytes = 3 * (1 << 20) + 13;
    Pinned source{*device, bytes};
    Reserved on_device{*device, bytes};
    fill_pattern(source.data, bytes, 3);
    device->copy_h2d(on_device.ptr, source.data, bytes, nullptr);

    struct Range {
        std::size_t offset, bytes;
    };
    const std::vector<Range> ranges = {{0, 0},     {0, 1},         {0, 7},
                                       {0, 8},     {0, 9},         {3, 9},
                                       {5, 4096},  {1, bytes - 1}, {0, bytes}};
    Reserved results{*device, ranges.size() * sizeof(std::uint64_t)};
    auto *result = static_cast<std::uint64_t *>(results.ptr);
    for (std::size_t i = 0; i < ranges.size(); ++i) {
        ferry::kernels::launch_checksum(
            static_cast<unsigned char *>(on_device.ptr) + ranges[i].offset, ranges[i].bytes,
            result + i, nullptr);
    }
    std::vector<std::uint64_t> got(ranges.size());
    REQUIRE_CUDA(cudaMemcpy(got.data(), result, got.size() * sizeof(std::uint64_t),
                            cudaMemcpyDeviceToHost));
    for (std::size_t i = 0; i < ranges.size(); ++i) {
        INFO("offset " << ranges[i].offset << ", " << ranges[i].bytes << " bytes");
        CHECK(got[i] ==
              ferry::kernels::checksum_ref(source.data + ranges[i].offset, ranges[i].bytes));
    }
}

TEST_CASE("the busy kernel keeps its stream busy for about the time asked") {
    const auto device = ferry::make_cuda_device(0);
    warm_up(*device);
    OwnedStream stream{*device};
    const auto start = Clock::now();
    ferry::kernels::launch_busy(stream.stream, 20 * kMillisecond);
    device->stream_synchronize(stream.stream);
    const double elapsed = ms_since(start);
    CHECK(elapsed >= 19.0);
    CHECK(elapsed < 200.0);
}

TEST_CASE("stream_wait orders a copy on one stream after the work recorded on another") {
    const auto device = ferry::make_cuda_device(0);
    warm_up(*device);
    const std::size_t bytes = 1 << 20;
    Pinned old_bytes{*device, bytes}, new_bytes{*device, bytes}, seen{*device, bytes};
    Reserved on_device{*device, bytes};
    OwnedStream writer{*device}, reader{*device};
    OwnedEvent written{*device};
    fill_pattern(old_bytes.data, bytes, 4);
    fill_pattern(new_bytes.data, bytes, 5);
    device->copy_h2d(on_device.ptr, old_bytes.data, bytes, writer.stream);
    device->stream_synchronize(writer.stream);

    // writer: [busy 200 ms][new bytes] -> written;  reader: wait(written) [read back]
    const auto start = Clock::now();
    ferry::kernels::launch_busy(writer.stream, 200 * kMillisecond);
    device->copy_h2d(on_device.ptr, new_bytes.data, bytes, writer.stream);
    device->record(written.event, writer.stream);
    device->stream_wait(reader.stream, written.event);
    device->copy_d2h(seen.data, on_device.ptr, bytes, reader.stream);
    CHECK(ms_since(start) < 100.0);  // the host never waited

    device->stream_synchronize(reader.stream);
    CHECK(ms_since(start) >= 190.0);
    CHECK(std::memcmp(seen.data, new_bytes.data, bytes) == 0);
}

TEST_CASE("event_synchronize returns once the work recorded before it is done") {
    const auto device = ferry::make_cuda_device(0);
    warm_up(*device);
    OwnedStream stream{*device};
    OwnedEvent done{*device};
    const auto start = Clock::now();
    ferry::kernels::launch_busy(stream.stream, 50 * kMillisecond);
    device->record(done.event, stream.stream);
    device->event_synchronize(done.event);
    CHECK(ms_since(start) >= 45.0);
    CHECK(cudaEventQuery(static_cast<cudaEvent_t>(done.event)) == cudaSuccess);
}

TEST_CASE("work on two ferry streams runs concurrently") {
    const auto device = ferry::make_cuda_device(0);
    warm_up(*device);
    const std::size_t bytes = 4096;
    Pinned host{*device, bytes};
    Reserved on_device{*device, bytes};
    OwnedStream slow{*device}, fast{*device};
    OwnedEvent fast_done{*device};

    const auto start = Clock::now();
    ferry::kernels::launch_busy(slow.stream, 300 * kMillisecond);
    device->copy_h2d(on_device.ptr, host.data, bytes, fast.stream);
    device->record(fast_done.event, fast.stream);
    device->event_synchronize(fast_done.event);
    CHECK(ms_since(start) < 150.0);
    CHECK(cudaStreamQuery(static_cast<cudaStream_t>(slow.stream)) == cudaErrorNotReady);
    cudaGetLastError();  // "not ready" is kept as the last error: clear it
    device->stream_synchronize(slow.stream);
}

TEST_CASE("device_synchronize waits for the work of every stream") {
    const auto device = ferry::make_cuda_device(0);
    OwnedStream a{*device}, b{*device};
    ferry::kernels::launch_busy(a.stream, 20 * kMillisecond);
    ferry::kernels::launch_busy(b.stream, 30 * kMillisecond);
    device->device_synchronize();
    CHECK(cudaStreamQuery(static_cast<cudaStream_t>(a.stream)) == cudaSuccess);
    CHECK(cudaStreamQuery(static_cast<cudaStream_t>(b.stream)) == cudaSuccess);
}

namespace {

struct HostLog {
    std::mutex mutex;
    std::vector<int> order;
    Clock::time_point first;
};
struct HostCall {
    HostLog *log;
    int id;
};

void log_host_call(void *user) {
    const auto *call = static_cast<HostCall *>(user);
    std::lock_guard<std::mutex> lock(call->log->mutex);
    if (call->log->order.empty()) call->log->first = Clock::now();
    call->log->order.push_back(call->id);
}

}  // namespace

TEST_CASE("launch_host runs in stream order, after the work submitted before it") {
    const auto device = ferry::make_cuda_device(0);
    warm_up(*device);
    const std::size_t bytes = 1 << 20;
    Pinned host{*device, bytes};
    Reserved on_device{*device, bytes};
    OwnedStream stream{*device};
    HostLog log;
    HostCall calls[] = {{&log, 1}, {&log, 2}, {&log, 3}};

    const auto start = Clock::now();
    ferry::kernels::launch_busy(stream.stream, 30 * kMillisecond);
    device->launch_host(stream.stream, log_host_call, &calls[0]);
    device->copy_h2d(on_device.ptr, host.data, bytes, stream.stream);
    device->launch_host(stream.stream, log_host_call, &calls[1]);
    ferry::kernels::launch_busy(stream.stream, 5 * kMillisecond);
    device->launch_host(stream.stream, log_host_call, &calls[2]);
    device->stream_synchronize(stream.stream);

    std::lock_guard<std::mutex> lock(log.mutex);
    CHECK(log.order == std::vector<int>{1, 2, 3});
    CHECK(std::chrono::duration<double, std::milli>(log.first - start).count() >= 28.0);
}

TEST_CASE("a pinned page made read-only with mprotect can still be copied to the device") {
    const auto device = ferry::make_cuda_device(0);
    const std::size_t page = page_size();
    Pinned host{*device, 2 * page};
    Pinned back{*device, page};
    Reserved on_device{*device, page};
    OwnedStream stream{*device};
    fill_pattern(host.data, 2 * page, 6);
    std::memset(back.data, 0, page);

    REQUIRE(mprotect(host.data, page, PROT_READ) == 0);
    device->copy_h2d(on_device.ptr, host.data, page, stream.stream);
    device->copy_d2h(back.data, on_device.ptr, page, stream.stream);
    device->stream_synchronize(stream.stream);
    CHECK(std::memcmp(back.data, host.data, page) == 0);
    REQUIRE(mprotect(host.data, page, PROT_READ | PROT_WRITE) == 0);
}
