// device/: the device interface and its backends (sim, cuda); uses base/ and kernels/.
// The device interface: everything ferry asks of a GPU, implemented by the cuda backend
// (cuda_device.cpp) and by the sim backend (sim_device.cpp), which emulates the device in
// host memory for tests. Everything above this interface is backend-independent.
//
// Semantics follow the CUDA runtime: work on one stream runs in order; record() captures
// the work submitted to the stream so far; stream_wait() makes later work on the stream
// wait for the event's latest record() at the time of the call (an event never recorded
// is complete). A Stream of nullptr is the caller's default stream: the legacy default
// stream on cuda, the calling thread itself on sim (work "on" it runs inline, waits
// block the caller).
//
// Every call that can fail throws ferry::Error with a status and a message. A copy that
// fails after it was accepted is reported by the next host wait (the *_synchronize calls),
// as CUDA reports asynchronous errors.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "ferry/ferry.h"
#include "kernels/decode.hpp"

namespace ferry {

using Stream = void *;
using Event = void *;
using HostFn = void (*)(void *user);

class Device {
   public:
    virtual ~Device() = default;

    virtual ferry_backend backend() const = 0;
    // Human-readable name of the device ("sim", "NVIDIA H100 80GB HBM3").
    virtual std::string name() const = 0;

    // Device memory. reserve() returns at least 256-byte aligned memory.
    virtual void *reserve(std::size_t bytes) = 0;
    virtual void unreserve(void *ptr) noexcept = 0;

    // Pinned (page-locked) host memory, page-aligned, so parts of it can be mprotect()ed.
    virtual void *alloc_pinned(std::size_t bytes) = 0;
    virtual void free_pinned(void *ptr, std::size_t bytes) noexcept = 0;

    // Pins host memory ferry mapped itself (page-aligned): page-locks and registers
    // [ptr, ptr + bytes) for fast async copies; unpin() undoes one pin() of that range.
    // Throws Error(FERRY_ERROR_OUT_OF_HOST_MEMORY), naming RLIMIT_MEMLOCK, when refused.
    virtual void pin(void *ptr, std::size_t bytes) = 0;
    virtual void unpin(void *ptr, std::size_t bytes) noexcept = 0;

    // Verify mode. `count` words the host reads checksums from (the cuda backend also keeps
    // one device word for each, outside the VRAM budget: 8 bytes a word).
    virtual std::uint64_t *alloc_checksum_results(std::size_t count) = 0;
    virtual void free_checksum_results(std::uint64_t *results) noexcept = 0;
    // Enqueues on `stream`: *result = kernels::checksum_ref(device_ptr, bytes), readable by
    // the host once the stream's work up to here is done. `result` is a word of an array
    // from alloc_checksum_results().
    virtual void checksum(const void *device_ptr, std::size_t bytes, std::uint64_t *result,
                          Stream stream) = 0;

    // Compressed images (runtime/codec/, kernels/decode.hpp). A decode table holds `count`
    // jobs, their first_block set by kernels::assign_blocks, where the device reads them
    // (cuda: device memory outside the VRAM budget, 48 bytes a job), until destroyed.
    // Results are host words as those of alloc_checksum_results.
    virtual void *create_decode_table(const kernels::DecodeJob *jobs, std::uint32_t count) = 0;
    virtual void destroy_decode_table(void *table) noexcept = 0;
    virtual kernels::DecodeResult *alloc_decode_results(std::size_t count) = 0;
    virtual void free_decode_results(kernels::DecodeResult *results) noexcept = 0;
    // Enqueues on `stream` the decode of the table's jobs from the compressed image at
    // `image` into the slot at `slot` (both device memory, holding every job's range), as
    // kernels::launch_decode does; *result says what was found once the stream is past it.
    // The sim decodes with kernels/decode_ref.hpp, the same code, in a modeled time.
    virtual void decode(void *table, const void *image, void *slot,
                        kernels::DecodeResult *result, Stream stream) = 0;

    // Streams for ferry's own use (the copy stream) and for tests/benchmarks (compute).
    virtual Stream create_stream() = 0;
    virtual void destroy_stream(Stream stream) noexcept = 0;

    virtual Event create_event() = 0;
    virtual void destroy_event(Event event) noexcept = 0;

    // Asynchronous copies on a stream. Host memory must be pinned for overlap.
    virtual void copy_h2d(void *dst, const void *src, std::size_t bytes, Stream stream) = 0;
    virtual void copy_d2h(void *dst, const void *src, std::size_t bytes, Stream stream) = 0;

    virtual void record(Event event, Stream stream) = 0;
    virtual void stream_wait(Stream stream, Event event) = 0;
    // Host waits.
    virtual void event_synchronize(Event event) = 0;
    virtual void stream_synchronize(Stream stream) = 0;
    // Waits for all work on the device, on every stream (cudaDeviceSynchronize).
    virtual void device_synchronize() = 0;

    // Runs fn(user) on the stream, in order with its other work (cudaLaunchHostFunc).
    virtual void launch_host(Stream stream, HostFn fn, void *user) = 0;

    // Whether work submitted to `stream` now would be captured into a CUDA graph
    // (cudaStreamIsCapturing) rather than run: ferry's copies and waits cannot take part
    // in a capture yet, so acquire and release refuse such a stream.
    virtual bool capturing(Stream stream) = 0;

    // Observability (observer.cpp). Defaults in device_observe.cpp.
    // When the stream reaches this point, stores the steady clock in ns into *out (never
    // 0), or kTimestampLost when the time cannot be known. Default: a host callback on
    // the stream (sim: the worker's clock); cuda records an event instead.
    virtual void timestamp(Stream stream, std::atomic<std::uint64_t> *out);
    // Stores the times of timestamps whose events completed (cuda). Default: nothing.
    // Never throws: acquire calls it after committing (a poll that fails is retried later).
    virtual void poll_timestamps() {}
    // A named range on the host timeline for profilers (NVTX on cuda). Default: none.
    virtual void range_push(const char *name) { (void)name; }
    virtual void range_pop() {}
};

constexpr std::uint64_t kTimestampLost = ~std::uint64_t{0};

constexpr double kDefaultSimDecodeGbps = 250.0;

// Backend options as resolved from ferry_config and the environment.
// The sim link (sim_link.hpp): host memory from alloc_pinned() copies at the pinned
// rates, any other host memory at the pageable ones.
struct SimOptions {
    double h2d_gbps = 0.0;           // pinned; 0: unlimited
    double d2h_gbps = 0.0;           // pinned; 0: unlimited
    double pageable_h2d_gbps = 0.0;  // 0: as pinned
    double pageable_d2h_gbps = 0.0;  // 0: as pinned
    double latency_us = 0.0;         // per copy call
    double time_scale = 1.0;         // wall seconds per modeled second
    // Decoded bytes per second of the device's decode kernel, in GB/s; 0: as fast as the
    // host decodes. The default is the low end of DietGPU's published rANS decode on an
    // A100 (250-410 GB/s), a coder of the same class with a costlier step than ferry's
    // one-lookup Huffman code.
    double decode_gbps = kDefaultSimDecodeGbps;
    bool chaos = false;              // random delays, poison copy destinations before writing
    std::uint64_t seed = 1;
};

std::unique_ptr<Device> make_sim_device(const SimOptions &options);

// For tests: makes a sim device report `stream` as capturing a graph, or no longer.
// Throws Error(FERRY_ERROR_INVALID_ARGUMENT) when `device` is not a sim device.
void sim_set_capturing(Device &device, Stream stream, bool capturing);

// Throws Error(FERRY_ERROR_BACKEND_UNAVAILABLE) when ferry was built without CUDA or no
// device with that ordinal exists.
std::unique_ptr<Device> make_cuda_device(int ordinal);

// True when ferry was built with the cuda backend and at least one device is visible.
bool cuda_device_available();

}  // namespace ferry
