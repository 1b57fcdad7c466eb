// device/: the device interface and its backends (sim, cuda); uses base/ and kernels/.
// The cuda backend: ferry::Device over the CUDA runtime API.
#include <sys/mman.h>
#include <unistd.h>

#include <cuda.h>  // driver API types only: its entry points come from the runtime
#include <nvtx3/nvToolsExt.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <memory>
#include <mutex>
#include <new>
#include <string>
#include <vector>

#include "kernels/checksum.hpp"
#include "kernels/decode.hpp"
#include "kernels/cuda_check.hpp"
#include "base/clock.hpp"
#include "device/device.hpp"
#include "base/error.hpp"
#include "base/memlock.hpp"
#include "device/fault_injection.hpp"

namespace ferry {
namespace {

cudaStream_t to_cuda(Stream stream) { return static_cast<cudaStream_t>(stream); }
cudaEvent_t to_cuda_event(Event event) { return static_cast<cudaEvent_t>(event); }

std::size_t page_size() { return static_cast<std::size_t>(sysconf(_SC_PAGESIZE)); }

// Pinned allocations are whole pages, so that parts of them can be mprotect()ed.
std::size_t round_up_to_pages(std::size_t bytes) {
    const std::size_t page = page_size();
    return (bytes + page - 1) / page * page;
}

// A failure while freeing cannot be reported (those calls are noexcept); clear it so that
// it does not surface in the next, unrelated call. Only a failure of ferry's own call is
// cleared: an error the caller has not read yet stays for the caller.
void ignore_error(cudaError_t err) noexcept {
    if (err != cudaSuccess) cudaGetLastError();
}

// Whether `ordinal`'s primary context is active, through the driver's
// cuDevicePrimaryCtxGetState, reached from the runtime (libferry does not link libcuda).
// True when the driver cannot tell, which keeps the restoring of earlier versions.
bool primary_context_active(int ordinal) noexcept {
    using GetDevice = CUresult (*)(CUdevice *, int);
    using GetState = CUresult (*)(CUdevice, unsigned int *, int *);
    static const auto entry = [](const char *symbol) -> void * {
        void *fn = nullptr;
        cudaDriverEntryPointQueryResult found{};
        ignore_error(cudaGetDriverEntryPointByVersion(symbol, &fn, 12000, cudaEnableDefault,
                                                      &found));
        return found == cudaDriverEntryPointSuccess ? fn : nullptr;
    };
    static const auto get_device = reinterpret_cast<GetDevice>(entry("cuDeviceGet"));
    static const auto get_state =
        reinterpret_cast<GetState>(entry("cuDevicePrimaryCtxGetState"));
    CUdevice device = 0;
    unsigned int flags = 0;
    int active = 1;
    if (get_device == nullptr || get_state == nullptr ||
        get_device(&device, ordinal) != CUDA_SUCCESS ||
        get_state(device, &flags, &active) != CUDA_SUCCESS) {
        return true;
    }
    return active != 0;
}

// Makes the backend's device current for one entry point, and restores the caller's
// current device afterwards: ferry is called from any thread, including threads of a
// framework that works on another device. It restores only to a device whose primary
// context is active: since CUDA 12, cudaSetDevice creates the context (hundreds of MB of
// VRAM) on a device the thread never used, such as the default 0 of a fresh thread,
// which then stays on ferry's device.
class DeviceGuard {
   public:
    // Throws Error(FERRY_ERROR_DEVICE) when the device cannot be made current.
    explicit DeviceGuard(int ordinal) : ordinal_(ordinal) {
        FERRY_CUDA_TRY(cudaGetDevice(&previous_));
        if (previous_ != ordinal_) FERRY_CUDA_TRY(cudaSetDevice(ordinal_));
    }
    // Best effort, for the noexcept entry points.
    DeviceGuard(int ordinal, std::nothrow_t) noexcept : ordinal_(ordinal) {
        cudaError_t err = cudaGetDevice(&previous_);
        if (err == cudaSuccess && previous_ != ordinal_) err = cudaSetDevice(ordinal_);
        if (err != cudaSuccess) {
            ignore_error(err);
            previous_ = ordinal_;
        }
    }
    ~DeviceGuard() {
        if (previous_ != ordinal_ && primary_context_active(previous_)) {
            ignore_error(cudaSetDevice(previous_));
        }
    }
    DeviceGuard(const DeviceGuard &) = delete;
    DeviceGuard &operator=(const DeviceGuard &) = delete;

   private:
    int ordinal_;
    int previous_ = 0;
};

// For a section of ferry's own calls that are safe while another thread captures a CUDA
// graph in global mode (queries, records and host waits of ferry's events, on ferry's
// streams): such a capture otherwise forbids them in every thread, and fails when one is
// made. ferry's events are never recorded inside a capture (acquire and release refuse a
// capturing stream), so relaxed mode lets through only what does not touch one.
class RelaxedCaptureMode {
   public:
    RelaxedCaptureMode() noexcept { ignore_error(cudaThreadExchangeStreamCaptureMode(&mode_)); }
    ~RelaxedCaptureMode() { ignore_error(cudaThreadExchangeStreamCaptureMode(&mode_)); }
    RelaxedCaptureMode(const RelaxedCaptureMode &) = delete;
    RelaxedCaptureMode &operator=(const RelaxedCaptureMode &) = delete;

   private:
    cudaStreamCaptureMode mode_ = cudaStreamCaptureModeRelaxed;
};

// Timestamps of stream progress from events (DESIGN.md "Observability"): each stamp
// records a timing event; poll() turns completed ones into steady-clock ns through a base
// event whose host time is known. The base moves forward every second or so, because
// cudaEventElapsedTime's float milliseconds lose precision as the interval grows.
class EventClock {
   public:
    static constexpr std::size_t kMaxPending = 4096;  // more in flight: untimed

    EventClock() { pending_.reserve(kMaxPending); free_.reserve(kMaxPending); }
    ~EventClock() {
        for (const Pending &p : pending_) ignore_error(cudaEventDestroy(p.event));
        for (cudaEvent_t event : free_) ignore_error(cudaEventDestroy(event));
        if (base_ != nullptr) ignore_error(cudaEventDestroy(base_));
    }
    EventClock(const EventClock &) = delete;
    EventClock &operator=(const EventClock &) = delete;

    // Completed stamps are turned into times by poll(), which the Observer calls once per
    // acquire: a stamp itself queries no event.
    void stamp(cudaStream_t stream, std::atomic<std::uint64_t> *out) {
        std::lock_guard<std::mutex> lock(mutex_);
        if (base_ == nullptr) start_locked();
        if (pending_.size() >= kMaxPending) {
            out->store(kTimestampLost, std::memory_order_release);
            return;
        }
        if (free_.empty()) {
            cudaEvent_t event = nullptr;
            FERRY_CUDA_TRY(cudaEventCreate(&event));
            free_.push_back(event);
        }
        FERRY_CUDA_TRY(cudaEventRecord(free_.back(), stream));
        pending_.push_back({free_.back(), out});
        free_.pop_back();
    }

    void poll() {
        std::lock_guard<std::mutex> lock(mutex_);
        poll_locked();
    }

   private:
    struct Pending {
        cudaEvent_t event;
        std::atomic<std::uint64_t> *out;
    };

    // The base is recorded on a private non-blocking stream, never the legacy default
    // stream: that one waits behind all work on blocking streams (PyTorch's default
    // stream among them), and recording on it breaks another stream's global capture.
    void start_locked() {
        cudaStream_t stream = nullptr;
        cudaEvent_t base = nullptr;
        FERRY_CUDA_TRY(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
        cudaError_t err = cudaEventCreateWithFlags(&base, cudaEventBlockingSync);
        if (err == cudaSuccess) err = cudaEventRecord(base, stream);
        if (err == cudaSuccess) err = cudaEventSynchronize(base);
        const std::uint64_t now = steady_now_ns();
        ignore_error(cudaStreamDestroy(stream));
        if (err != cudaSuccess) {
            if (base != nullptr) ignore_error(cudaEventDestroy(base));
            throw_cuda_error(FERRY_ERROR_DEVICE, "the timing clock's base event", err,
                             __FILE__, __LINE__);
        }
        base_ = base;  // only once complete: a failed start is tried again by the next stamp
        base_ns_ = now;
    }

    void poll_locked() {
        // A query that finds an event busy leaves cudaErrorNotReady as the thread's last
        // error, in place of one the caller has not read yet: with such an error pending,
        // the poll waits for a later call.
        if (cudaPeekAtLastError() != cudaSuccess) return;
        for (std::size_t i = 0; i < pending_.size();) {
            const Pending p = pending_[i];
            const cudaError_t state = cudaEventQuery(p.event);
            if (state == cudaErrorNotReady) {
                // Not a failure, but the runtime keeps it as the thread's last error, where
                // the caller's next launch check (cudaGetLastError) would find it.
                ignore_error(state);
                ++i;
                continue;
            }
            float ms = 0.0f;
            const cudaError_t err =
                state == cudaSuccess ? cudaEventElapsedTime(&ms, base_, p.event) : state;
            if (err == cudaSuccess) {
                const std::int64_t ns = static_cast<std::int64_t>(base_ns_) +
                                        static_cast<std::int64_t>(static_cast<double>(ms) * 1e6);
                p.out->store(ns > 0 ? static_cast<std::uint64_t>(ns) : 1,
                             std::memory_order_release);
                if (ms > 1000.0f) {  // this event becomes the base
                    free_.push_back(base_);
                    base_ = p.event;
                    base_ns_ = static_cast<std::uint64_t>(ns);
                    pending_[i] = pending_.back();
                    pending_.pop_back();
                    continue;
                }
            } else {
                ignore_error(err);
                p.out->store(kTimestampLost, std::memory_order_release);
            }
            free_.push_back(p.event);
            pending_[i] = pending_.back();
            pending_.pop_back();
        }
    }

    std::mutex mutex_;
    cudaEvent_t base_ = nullptr;
    std::uint64_t base_ns_ = 0;
    std::vector<Pending> pending_;
    std::vector<cudaEvent_t> free_;
};

// Fails like the device would when a test armed `fault` (fault_injection.hpp). `what` is
// a literal: nothing is built unless the fault fires.
void inject(Fault fault, ferry_status status, const char *what) {
    if (FaultInjector::instance().fire(fault)) {
        throw Error(status, std::string("cuda: ") + what + " failed (injected " +
                                fault_name(fault) + " fault)");
    }
}

class CudaDevice final : public Device {
   public:
    CudaDevice(int ordinal, std::string name) : ordinal_(ordinal), name_(std::move(name)) {}
    ~CudaDevice() override {
        DeviceGuard guard(ordinal_, std::nothrow);
        clock_.reset();
    }

    ferry_backend backend() const override { return FERRY_BACKEND_CUDA; }
    std::string name() const override { return name_; }

    void *reserve(std::size_t bytes) override {
        FERRY_EXPECTS(bytes > 0, FERRY_ERROR_INVALID_SIZE, "cuda reserve: zero bytes");
        inject(Fault::reserve, FERRY_ERROR_OUT_OF_DEVICE_MEMORY, "cudaMalloc");
        DeviceGuard guard(ordinal_);
        void *ptr = nullptr;
        const cudaError_t err = cudaMalloc(&ptr, bytes);
        if (err == cudaSuccess) return ptr;
        std::size_t free_bytes = 0, total_bytes = 0;
        ignore_error(cudaMemGetInfo(&free_bytes, &total_bytes));
        throw_cuda_error(err == cudaErrorMemoryAllocation ? FERRY_ERROR_OUT_OF_DEVICE_MEMORY
                                                          : FERRY_ERROR_DEVICE,
                         "cudaMalloc", err, __FILE__, __LINE__,
                         ": " + std::to_string(bytes) + " bytes asked on device " +
                             std::to_string(ordinal_) + " (" + name_ + "), " +
                             std::to_string(free_bytes) + " of " +
                             std::to_string(total_bytes) + " bytes free");
    }

    void unreserve(void *ptr) noexcept override {
        if (ptr == nullptr) return;
        DeviceGuard guard(ordinal_, std::nothrow);
        ignore_error(cudaFree(ptr));
    }

    void *alloc_pinned(std::size_t bytes) override {
        FERRY_EXPECTS(bytes > 0, FERRY_ERROR_INVALID_SIZE, "cuda alloc_pinned: zero bytes");
        const std::size_t length = round_up_to_pages(bytes);
        FERRY_EXPECTS(length >= bytes, FERRY_ERROR_SIZE_TOO_LARGE,
                "cuda alloc_pinned: " + std::to_string(bytes) + " bytes overflow");
        // Plain mmap'd pages (not cudaHostAlloc), so that the host store may mprotect them.
        void *ptr = mmap(nullptr, length, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                         -1, 0);
        if (ptr == MAP_FAILED) {
            throw Error(FERRY_ERROR_OUT_OF_HOST_MEMORY,
                        "mmap of " + std::to_string(length) +
                            " bytes for pinned host memory failed: " + std::strerror(errno));
        }
        try {
            pin(ptr, length);
        } catch (...) {
            munmap(ptr, length);
            throw;
        }
        return ptr;
    }

    void free_pinned(void *ptr, std::size_t bytes) noexcept override {
        if (ptr == nullptr) return;
        {
            DeviceGuard guard(ordinal_, std::nothrow);
            ignore_error(cudaHostUnregister(ptr));
        }
        munmap(ptr, round_up_to_pages(bytes));
    }

    void pin(void *ptr, std::size_t bytes) override {
        inject(Fault::pin, FERRY_ERROR_OUT_OF_HOST_MEMORY, "cudaHostRegister");
        DeviceGuard guard(ordinal_);
        cudaError_t err = cudaHostRegister(ptr, bytes, cudaHostRegisterDefault);
#ifdef cudaHostRegisterReadOnly
        // A read-only mapping (a shared host store another process loaded) is refused
        // for writing: register it as memory the device only reads.
        if (err != cudaSuccess && err != cudaErrorHostMemoryAlreadyRegistered) {
            ignore_error(cudaGetLastError());
            err = cudaHostRegister(ptr, bytes, cudaHostRegisterReadOnly);
        }
#endif
        if (err != cudaSuccess) {
            throw_cuda_error(FERRY_ERROR_OUT_OF_HOST_MEMORY, "cudaHostRegister", err, __FILE__,
                             __LINE__,
                             ": could not pin " + std::to_string(bytes) +
                                 " bytes of host memory; RLIMIT_MEMLOCK is " +
                                 memlock_limit_text() +
                                 " (raise it with ulimit -l, or docker --ulimit memlock=-1)");
        }
    }

    void unpin(void *ptr, std::size_t) noexcept override {
        DeviceGuard guard(ordinal_, std::nothrow);
        ignore_error(cudaHostUnregister(ptr));
    }

    // Host words from cudaMallocHost; the kernel accumulates into a device word of the same
    // index, then one 8-byte copy brings it over (no atomics on host memory over PCIe).
    std::uint64_t *alloc_checksum_results(std::size_t count) override {
        DeviceGuard guard(ordinal_);
        void *host = nullptr;
        void *scratch = nullptr;
        FERRY_CUDA_TRY_AS(FERRY_ERROR_OUT_OF_HOST_MEMORY,
                          cudaMallocHost(&host, count * sizeof(std::uint64_t)));
        const cudaError_t err = cudaMalloc(&scratch, count * sizeof(std::uint64_t));
        if (err != cudaSuccess) {
            ignore_error(cudaFreeHost(host));
            throw_cuda_error(FERRY_ERROR_OUT_OF_DEVICE_MEMORY, "cudaMalloc", err, __FILE__,
                             __LINE__, ": checksum scratch words");
        }
        results_.push_back({static_cast<std::uint64_t *>(host),
                            static_cast<std::uint64_t *>(scratch), count});
        return static_cast<std::uint64_t *>(host);
    }

    void free_checksum_results(std::uint64_t *results) noexcept override {
        DeviceGuard guard(ordinal_, std::nothrow);
        for (std::size_t i = 0; i < results_.size(); ++i) {
            if (results_[i].host != results) continue;
            ignore_error(cudaFree(results_[i].scratch));
            ignore_error(cudaFreeHost(results_[i].host));
            results_.erase(results_.begin() + static_cast<std::ptrdiff_t>(i));
            return;
        }
    }

    void checksum(const void *device_ptr, std::size_t bytes, std::uint64_t *result,
                  Stream stream) override {
        std::uint64_t *scratch = nullptr;
        for (const Results &r : results_) {
            if (result >= r.host && result < r.host + r.count) {
                scratch = r.scratch + (result - r.host);
            }
        }
        FERRY_EXPECTS(scratch != nullptr, FERRY_ERROR_INTERNAL,
                      "cuda checksum: result is not a word of alloc_checksum_results()");
        DeviceGuard guard(ordinal_);
        kernels::launch_checksum(device_ptr, bytes, scratch, to_cuda(stream));
        FERRY_CUDA_TRY(cudaMemcpyAsync(result, scratch, sizeof *result, cudaMemcpyDeviceToHost,
                                       to_cuda(stream)));
    }

    struct DecodeTable {
        kernels::DecodeJob *jobs = nullptr;  // device memory
        std::uint32_t count = 0;
        std::uint64_t blocks = 0;
    };

    void *create_decode_table(const kernels::DecodeJob *jobs, std::uint32_t count) override {
        DeviceGuard guard(ordinal_);
        auto table = std::make_unique<DecodeTable>();
        table->count = count;
        for (std::uint32_t i = 0; i < count; ++i)
            table->blocks = std::max(table->blocks, jobs[i].first_block + kernels::decode_blocks(jobs[i]));
        if (count != 0) {
            const std::size_t bytes = count * sizeof *jobs;
            FERRY_CUDA_TRY_AS(FERRY_ERROR_OUT_OF_DEVICE_MEMORY,
                              cudaMalloc(reinterpret_cast<void **>(&table->jobs), bytes));
            const cudaError_t err = cudaMemcpy(table->jobs, jobs, bytes, cudaMemcpyHostToDevice);
            if (err != cudaSuccess) {
                ignore_error(cudaFree(table->jobs));
                throw_cuda_error(FERRY_ERROR_DEVICE, "cudaMemcpy", err, __FILE__, __LINE__,
                                 ": decode table");
            }
        }
        return table.release();
    }
    void destroy_decode_table(void *table) noexcept override {
        auto *t = static_cast<DecodeTable *>(table);
        if (t == nullptr) return;
        DeviceGuard guard(ordinal_, std::nothrow);
        if (t->jobs != nullptr) ignore_error(cudaFree(t->jobs));
        delete t;
    }
    // As alloc_checksum_results: pinned host words, a device word each, copied back.
    kernels::DecodeResult *alloc_decode_results(std::size_t count) override {
        DeviceGuard guard(ordinal_);
        void *host = nullptr;
        void *scratch = nullptr;
        FERRY_CUDA_TRY_AS(FERRY_ERROR_OUT_OF_HOST_MEMORY,
                          cudaMallocHost(&host, count * sizeof(kernels::DecodeResult)));
        const cudaError_t err = cudaMalloc(&scratch, count * sizeof(kernels::DecodeResult));
        if (err != cudaSuccess) {
            ignore_error(cudaFreeHost(host));
            throw_cuda_error(FERRY_ERROR_OUT_OF_DEVICE_MEMORY, "cudaMalloc", err, __FILE__,
                             __LINE__, ": decode result words");
        }
        std::memset(host, 0, count * sizeof(kernels::DecodeResult));
        decode_results_.push_back({static_cast<kernels::DecodeResult *>(host),
                                   static_cast<kernels::DecodeResult *>(scratch), count});
        return static_cast<kernels::DecodeResult *>(host);
    }
    void free_decode_results(kernels::DecodeResult *results) noexcept override {
        DeviceGuard guard(ordinal_, std::nothrow);
        for (std::size_t i = 0; i < decode_results_.size(); ++i) {
            if (decode_results_[i].host != results) continue;
            ignore_error(cudaFree(decode_results_[i].scratch));
            ignore_error(cudaFreeHost(decode_results_[i].host));
            decode_results_.erase(decode_results_.begin() + static_cast<std::ptrdiff_t>(i));
            return;
        }
    }
    void decode(void *table, const void *image, void *slot, kernels::DecodeResult *result,
                Stream stream) override {
        auto *t = static_cast<DecodeTable *>(table);
        kernels::DecodeResult *scratch = nullptr;
        for (const DecodeResults &r : decode_results_)
            if (result >= r.host && result < r.host + r.count) scratch = r.scratch + (result - r.host);
        FERRY_EXPECTS(t != nullptr && scratch != nullptr, FERRY_ERROR_INTERNAL,
                      "cuda decode: no table, or result is not from alloc_decode_results()");
        DeviceGuard guard(ordinal_);
        kernels::launch_decode(t->jobs, t->count, t->blocks, static_cast<const std::uint8_t *>(image),
                               static_cast<std::uint8_t *>(slot), scratch, to_cuda(stream));
        FERRY_CUDA_TRY(cudaMemcpyAsync(result, scratch, sizeof *result, cudaMemcpyDeviceToHost,
                                       to_cuda(stream)));
    }

    Stream create_stream() override {
        DeviceGuard guard(ordinal_);
        cudaStream_t stream = nullptr;
        // Non-blocking: never serializes with the legacy default stream.
        FERRY_CUDA_TRY(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
        return stream;
    }

    void destroy_stream(Stream stream) noexcept override {
        if (stream == nullptr) return;  // the legacy default stream is not ours
        DeviceGuard guard(ordinal_, std::nothrow);
        ignore_error(cudaStreamDestroy(to_cuda(stream)));
    }

    // Blocking sync: a host wait on a ferry event (staging, writebacks, verify sums) sleeps
    // instead of spinning a core; a stream waiting on it is not affected.
    Event create_event() override {
        DeviceGuard guard(ordinal_);
        cudaEvent_t event = nullptr;
        FERRY_CUDA_TRY(cudaEventCreateWithFlags(&event,
                                                cudaEventDisableTiming | cudaEventBlockingSync));
        return event;
    }

    void destroy_event(Event event) noexcept override {
        if (event == nullptr) return;
        DeviceGuard guard(ordinal_, std::nothrow);
        ignore_error(cudaEventDestroy(to_cuda_event(event)));
    }

    void copy_h2d(void *dst, const void *src, std::size_t bytes, Stream stream) override {
        inject(Fault::copy_submit, FERRY_ERROR_DEVICE, "cudaMemcpyAsync");
        DeviceGuard guard(ordinal_);
        FERRY_CUDA_TRY(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, to_cuda(stream)));
    }

    void copy_d2h(void *dst, const void *src, std::size_t bytes, Stream stream) override {
        inject(Fault::copy_submit, FERRY_ERROR_DEVICE, "cudaMemcpyAsync");
        DeviceGuard guard(ordinal_);
        FERRY_CUDA_TRY(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, to_cuda(stream)));
    }

    void record(Event event, Stream stream) override {
        inject(Fault::event_record, FERRY_ERROR_DEVICE, "cudaEventRecord");
        DeviceGuard guard(ordinal_);
        FERRY_CUDA_TRY(cudaEventRecord(to_cuda_event(event), to_cuda(stream)));
    }

    void stream_wait(Stream stream, Event event) override {
        inject(Fault::event_wait, FERRY_ERROR_DEVICE, "cudaStreamWaitEvent");
        DeviceGuard guard(ordinal_);
        FERRY_CUDA_TRY(cudaStreamWaitEvent(to_cuda(stream), to_cuda_event(event), 0));
    }

    // Host waits (the staging ring, verify's writeback sums, synchronize) are potentially
    // unsafe calls: in the default mode they would fail, and invalidate the capture, while
    // another thread captures in global mode. What they wait on is ferry's own work.
    void event_synchronize(Event event) override {
        DeviceGuard guard(ordinal_);
        const RelaxedCaptureMode relaxed;
        FERRY_CUDA_TRY(cudaEventSynchronize(to_cuda_event(event)));
    }

    void stream_synchronize(Stream stream) override {
        DeviceGuard guard(ordinal_);
        const RelaxedCaptureMode relaxed;
        FERRY_CUDA_TRY(cudaStreamSynchronize(to_cuda(stream)));
    }

    void device_synchronize() override {
        DeviceGuard guard(ordinal_);
        FERRY_CUDA_TRY(cudaDeviceSynchronize());
    }

    void launch_host(Stream stream, HostFn fn, void *user) override {
        DeviceGuard guard(ordinal_);
        FERRY_CUDA_TRY(cudaLaunchHostFunc(to_cuda(stream), fn, user));
    }

    void timestamp(Stream stream, std::atomic<std::uint64_t> *out) override {
        DeviceGuard guard(ordinal_);
        const RelaxedCaptureMode relaxed;
        clock_->stamp(to_cuda(stream), out);
    }

    // Called by every acquire after it committed (Observer::collect): it must not throw, or
    // the group would stay pinned. A poll that cannot run waits for the next one.
    void poll_timestamps() override {
        try {
            DeviceGuard guard(ordinal_);
            const RelaxedCaptureMode relaxed;
            clock_->poll();
        } catch (...) {
        }
    }

    // cudaErrorStreamCaptureImplicit: the legacy default stream while a blocking stream
    // captures; it cannot take part either.
    bool capturing(Stream stream) override {
        DeviceGuard guard(ordinal_);
        cudaStreamCaptureStatus status = cudaStreamCaptureStatusNone;
        const cudaError_t err = cudaStreamIsCapturing(to_cuda(stream), &status);
        if (err == cudaErrorStreamCaptureImplicit) {
            ignore_error(err);
            return true;
        }
        FERRY_CUDA_TRY(err);
        return status != cudaStreamCaptureStatusNone;
    }

    // NVTX ranges: Nsight Systems shows ferry's copies under the group's name.
    void range_push(const char *name) override { nvtxRangePushA(name); }
    void range_pop() override { nvtxRangePop(); }

   private:
    struct Results {
        std::uint64_t *host;
        std::uint64_t *scratch;
        std::size_t count;
    };
    struct DecodeResults {
        kernels::DecodeResult *host;
        kernels::DecodeResult *scratch;
        std::size_t count;
    };
    std::vector<DecodeResults> decode_results_;

    int ordinal_;
    std::string name_;
    std::unique_ptr<EventClock> clock_ = std::make_unique<EventClock>();
    std::vector<Results> results_;  // from alloc_checksum_results; one or two per runtime
};

}  // namespace

std::unique_ptr<Device> make_cuda_device(int ordinal) {
    int count = 0;
    FERRY_CUDA_TRY_AS(FERRY_ERROR_BACKEND_UNAVAILABLE, cudaGetDeviceCount(&count));
    FERRY_EXPECTS(ordinal >= 0 && ordinal < count, FERRY_ERROR_BACKEND_UNAVAILABLE,
            "no CUDA device " + std::to_string(ordinal) + ": " + std::to_string(count) +
                " visible (check CUDA_VISIBLE_DEVICES)");
    // Creates the device's primary context now, so that a device in a prohibited or
    // exclusive compute mode is reported here rather than at the first copy.
    FERRY_CUDA_TRY_AS(FERRY_ERROR_BACKEND_UNAVAILABLE, cudaInitDevice(ordinal, 0, 0));
    cudaDeviceProp properties{};
    FERRY_CUDA_TRY_AS(FERRY_ERROR_BACKEND_UNAVAILABLE,
                      cudaGetDeviceProperties(&properties, ordinal));
    return std::make_unique<CudaDevice>(ordinal, properties.name);
}

bool cuda_device_available() {
    int count = 0;
    if (cudaGetDeviceCount(&count) != cudaSuccess) {
        cudaGetLastError();
        return false;
    }
    return count > 0;
}

}  // namespace ferry
