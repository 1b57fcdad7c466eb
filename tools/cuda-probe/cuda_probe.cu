// ferry-cuda-probe: measures, on the GPU at hand, the CUDA runtime behaviours that ferry's
// cuda backend (runtime/cuda_device.cpp, runtime/host_store.cpp) relies on, and says which
// of them differ from what the code assumes.
//
//     nvcc -std=c++17 -O2 -o cuda-probe tools/cuda-probe/cuda_probe.cu && ./cuda-probe [device]
//
// Standalone on purpose: the CUDA runtime API and POSIX only, no ferry code, so that it
// runs on a GPU machine before (or without) a ferry build, in a few seconds. meson builds
// it too (ferry-cuda-probe) whenever the cuda backend is built.
//
// Prints the device, driver and runtime, then a table (fact | expected by ferry | found |
// verdict), then one line for each fact that differs, naming what in ferry it affects, and
// notes on what each finding means for ferry.
//
// Exit status: 0 every fact as ferry assumes; 1 some fact differs, or could not be
// measured; 2 no usable GPU (the CUDA error is printed).
#include <cuda_runtime.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace {

constexpr std::size_t kMiB = std::size_t{1} << 20;
constexpr unsigned long long kSpinNs = 50ull * 1000 * 1000;  // a "busy stream": 50 ms
// A call that returns well before a 50 ms kernel queued ahead of its copy ends did not
// wait for the copy.
constexpr double kAsyncCallMs = 25.0;
constexpr int kExitDiffers = 1;
constexpr int kExitNoGpu = 2;
constexpr unsigned kWatchdogSeconds = 60;

// ---- small helpers ---------------------------------------------------------------------

double now_ms() {
    return std::chrono::duration<double, std::milli>(
               std::chrono::steady_clock::now().time_since_epoch())
        .count();
}

std::string err_text(cudaError_t err) {
    return std::string(cudaGetErrorName(err)) + " (" + cudaGetErrorString(err) + ")";
}

std::string fmt(const char *format, double value) {
    char buffer[64];
    std::snprintf(buffer, sizeof buffer, format, value);
    return buffer;
}

std::string version_text(int version) {
    if (version <= 0) return "none";
    return std::to_string(version / 1000) + "." + std::to_string(version % 1000 / 10) + " (" +
           std::to_string(version) + ")";
}

std::string memlock_text() {
    rlimit limit{};
    if (getrlimit(RLIMIT_MEMLOCK, &limit) != 0) return "unknown";
    if (limit.rlim_cur == RLIM_INFINITY) return "unlimited";
    return std::to_string(limit.rlim_cur) + " bytes";
}

// Deterministic bytes, different at every position and for every seed.
void fill(unsigned char *data, std::size_t bytes, std::uint64_t seed) {
    std::uint64_t state = seed * 0x9E3779B97F4A7C15ull + 1;
    std::size_t i = 0;
    for (; i + 8 <= bytes; i += 8) {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        std::memcpy(data + i, &state, 8);
    }
    for (; i < bytes; ++i) data[i] = static_cast<unsigned char>(i * 131 + seed);
}

// Clears the thread's last error so that the next probe starts clean; returns what it was.
cudaError_t clear_error() { return cudaGetLastError(); }

// A CUDA call inside a probe failed: the probe cannot conclude.
struct ProbeError {
    std::string what;
};

void check(cudaError_t err, const char *call) {
    if (err != cudaSuccess) {
        clear_error();
        throw ProbeError{std::string(call) + ": " + err_text(err)};
    }
}
#define PROBE_CHECK(call) check((call), #call)

// ---- resources that give themselves back -----------------------------------------------

struct Mapping {  // page-aligned anonymous memory, as ferry's host store maps it
    unsigned char *data = nullptr;
    std::size_t bytes = 0;
    explicit Mapping(std::size_t n) : bytes(n) {
        void *p = mmap(nullptr, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED)
            throw ProbeError{"mmap of " + std::to_string(n) + " bytes: " + std::strerror(errno)};
        data = static_cast<unsigned char *>(p);
    }
    ~Mapping() { munmap(data, bytes); }
    Mapping(const Mapping &) = delete;
    Mapping &operator=(const Mapping &) = delete;
};

struct Registration {  // one cudaHostRegister call, as HostStore::pin_chunks makes them
    void *ptr = nullptr;
    Registration(void *p, std::size_t bytes) {
        const cudaError_t err = cudaHostRegister(p, bytes, cudaHostRegisterDefault);
        if (err != cudaSuccess) {
            clear_error();
            throw ProbeError{"cudaHostRegister of " + std::to_string(bytes) +
                             " bytes: " + err_text(err) + "; RLIMIT_MEMLOCK is " +
                             memlock_text()};
        }
        ptr = p;
    }
    ~Registration() {
        if (cudaHostUnregister(ptr) != cudaSuccess) clear_error();
    }
    Registration(const Registration &) = delete;
    Registration &operator=(const Registration &) = delete;
};

// Registered pages made read-only, as ferry_seal leaves frozen images; writable again
// before they are unregistered, as the host store does.
struct ReadOnly {
    void *ptr;
    std::size_t bytes;
    ReadOnly(void *p, std::size_t n) : ptr(p), bytes(n) {
        if (mprotect(p, n, PROT_READ) != 0)
            throw ProbeError{std::string("mprotect(PROT_READ): ") + std::strerror(errno)};
    }
    ~ReadOnly() { mprotect(ptr, bytes, PROT_READ | PROT_WRITE); }
    ReadOnly(const ReadOnly &) = delete;
    ReadOnly &operator=(const ReadOnly &) = delete;
};

struct DeviceBuffer {
    unsigned char *data = nullptr;
    explicit DeviceBuffer(std::size_t bytes) {
        PROBE_CHECK(cudaMalloc(reinterpret_cast<void **>(&data), bytes));
    }
    ~DeviceBuffer() {
        if (cudaFree(data) != cudaSuccess) clear_error();
    }
    DeviceBuffer(const DeviceBuffer &) = delete;
    DeviceBuffer &operator=(const DeviceBuffer &) = delete;
};

struct HostBuffer {  // cudaMallocHost: where device bytes are read back to be compared
    unsigned char *data = nullptr;
    explicit HostBuffer(std::size_t bytes) {
        PROBE_CHECK(cudaMallocHost(reinterpret_cast<void **>(&data), bytes));
    }
    ~HostBuffer() {
        if (cudaFreeHost(data) != cudaSuccess) clear_error();
    }
    HostBuffer(const HostBuffer &) = delete;
    HostBuffer &operator=(const HostBuffer &) = delete;
};

struct StreamHandle {  // non-blocking, like ferry's copy stream
    cudaStream_t stream = nullptr;
    bool abandon = false;  // left blocked by a probe: never destroyed or waited for
    StreamHandle() { PROBE_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking)); }
    ~StreamHandle() {
        if (!abandon && cudaStreamDestroy(stream) != cudaSuccess) clear_error();
    }
    StreamHandle(const StreamHandle &) = delete;
    StreamHandle &operator=(const StreamHandle &) = delete;
};

struct EventHandle {
    cudaEvent_t event = nullptr;
    explicit EventHandle(unsigned flags = cudaEventDefault) {
        PROBE_CHECK(cudaEventCreateWithFlags(&event, flags));
    }
    ~EventHandle() {
        if (cudaEventDestroy(event) != cudaSuccess) clear_error();
    }
    EventHandle(const EventHandle &) = delete;
    EventHandle &operator=(const EventHandle &) = delete;
};

// ---- device code -----------------------------------------------------------------------

__device__ unsigned long long global_timer_ns() {
    unsigned long long now;
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(now));
    return now;
}

// Keeps its stream busy for `ns` of wall time. clock64 bounds the loop too, so that a
// global timer that does not advance cannot hang the probe (at most ~2x `ns` on a 2 GHz SM).
__global__ void spin_kernel(unsigned long long ns) {
    const unsigned long long start = global_timer_ns();
    const long long cycles_start = clock64();
    const long long max_cycles = static_cast<long long>(ns) * 4;
    while (global_timer_ns() - start < ns && clock64() - cycles_start < max_cycles)
        __nanosleep(1000);
}

void launch_spin(cudaStream_t stream, unsigned long long ns) {
    spin_kernel<<<1, 1, 0, stream>>>(ns);
    PROBE_CHECK(cudaGetLastError());
}

// ---- measurements shared by the probes -------------------------------------------------

// One H2D copy issued while a 50 ms kernel runs ahead of it on the same stream: how long
// the call took, whether the stream was still busy when it returned, the call's error, and
// the error the stream reported once done (a copy accepted, then failed on the device).
struct QueuedCopy {
    cudaError_t err = cudaSuccess;
    cudaError_t done_err = cudaSuccess;
    double call_ms = 0.0;
    bool stream_busy_after = false;
    bool asynchronous() const { return call_ms < kAsyncCallMs && stream_busy_after; }
};

QueuedCopy copy_behind_busy_kernel(void *dst, const void *src, std::size_t bytes,
                                   cudaStream_t stream) {
    QueuedCopy result;
    launch_spin(stream, kSpinNs);
    const double start = now_ms();
    result.err = cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, stream);
    result.call_ms = now_ms() - start;
    if (result.err != cudaSuccess) clear_error();
    const cudaError_t query = cudaStreamQuery(stream);
    result.stream_busy_after = query == cudaErrorNotReady;
    clear_error();  // cudaErrorNotReady may be kept as the last error
    result.done_err = cudaStreamSynchronize(stream);
    if (result.done_err != cudaSuccess) clear_error();
    return result;
}

// Device bytes [dev, dev + bytes) equal host bytes [expected, expected + bytes)?
bool device_matches(const unsigned char *dev, const unsigned char *expected, std::size_t bytes,
                    std::size_t *first_wrong) {
    HostBuffer back(bytes);
    PROBE_CHECK(cudaMemcpy(back.data, dev, bytes, cudaMemcpyDeviceToHost));
    for (std::size_t i = 0; i < bytes; ++i) {
        if (back.data[i] != expected[i]) {
            *first_wrong = i;
            return false;
        }
    }
    return true;
}

// GB/s (1e9 bytes) of `reps` back-to-back H2D copies, after one untimed copy.
double h2d_gbps(void *dst, const void *src, std::size_t bytes, int reps, cudaStream_t stream) {
    EventHandle start, stop;
    PROBE_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, stream));
    PROBE_CHECK(cudaEventRecord(start.event, stream));
    for (int i = 0; i < reps; ++i)
        PROBE_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, stream));
    PROBE_CHECK(cudaEventRecord(stop.event, stream));
    PROBE_CHECK(cudaEventSynchronize(stop.event));
    float ms = 0.0f;
    PROBE_CHECK(cudaEventElapsedTime(&ms, start.event, stop.event));
    if (ms <= 0.0f) return 0.0;
    return static_cast<double>(bytes) * reps / (static_cast<double>(ms) * 1e6);
}

// ---- the facts -------------------------------------------------------------------------

enum class Verdict { ok, differs, unmeasured };

struct Fact {
    std::string name;
    std::string expected;  // what ferry's code assumes
    std::string affects;   // what in ferry a difference affects
    std::string found;
    Verdict verdict = Verdict::unmeasured;
    std::string note;  // what the finding means for ferry, whatever it is
};

// 1. The host store is pinned in chunks (HostStore::pin_chunks: one cudaHostRegister per
// FERRY_PIN_CHUNK bytes of one mmap). ferry assumes a copy whose host range spans two of
// those registrations may fail, so it never issues one: every group image lies inside one
// registration. Any outcome but wrong bytes is consistent with that.
void probe_spanning_copy(Fact &fact) {
    const std::size_t half = 32 * kMiB;
    Mapping host(2 * half);
    fill(host.data, host.bytes, 1);
    Registration first(host.data, half);
    Registration second(host.data + half, half);
    DeviceBuffer dev(2 * half);
    StreamHandle stream;

    // [half/2, half/2 + half): 16 MiB in each registration.
    const std::size_t offset = half / 2;
    PROBE_CHECK(cudaMemset(dev.data, 0, 2 * half));
    const QueuedCopy copy =
        copy_behind_busy_kernel(dev.data + offset, host.data + offset, half, stream.stream);
    if (copy.err != cudaSuccess) {
        fact.found = "refused: " + std::string(cudaGetErrorName(copy.err));
        fact.verdict = Verdict::ok;
        fact.note = "a copy spanning two cudaHostRegister ranges fails with " +
                    std::string(cudaGetErrorName(copy.err)) +
                    ": the host store's layout must keep every group image inside one "
                    "pinned chunk";
        return;
    }
    if (copy.done_err != cudaSuccess) {
        fact.found = "accepted, then failed on the device: " +
                     std::string(cudaGetErrorName(copy.done_err));
        fact.verdict = Verdict::ok;
        fact.note = "a copy spanning two cudaHostRegister ranges is accepted and then fails: "
                    "the host store's layout must keep every group image inside one pinned "
                    "chunk";
        return;
    }
    std::size_t wrong = 0;
    const bool correct = device_matches(dev.data + offset, host.data + offset, half, &wrong);
    const double spanning = h2d_gbps(dev.data + offset, host.data + offset, half, 4,
                                     stream.stream);
    const double inside = h2d_gbps(dev.data, host.data, half, 4, stream.stream);
    fact.found = std::string("accepted, ") +
                 (copy.asynchronous() ? "async" : "SYNCHRONOUS") + " (call " +
                 fmt("%.2f", copy.call_ms) + " ms, 50 ms kernel ahead), " +
                 (correct ? "bytes ok" : "WRONG BYTES") + ", " + fmt("%.1f", spanning) +
                 " GB/s (inside one: " + fmt("%.1f", inside) + ")";
    if (!correct) {
        fact.verdict = Verdict::differs;
        fact.found += " first wrong byte at " + std::to_string(wrong);
        return;
    }
    fact.verdict = Verdict::ok;
    if (!copy.asynchronous()) {
        fact.note = "a spanning copy is accepted but the call waits (pageable path): one "
                    "would stall the host on every onload; keep every image inside one "
                    "pinned chunk";
    } else if (spanning < 0.7 * inside) {
        fact.note = "a spanning copy is accepted, async, but slow (staged?): keep every "
                    "image inside one pinned chunk";
    } else {
        fact.note = "a spanning copy works at full speed on this driver: keeping images "
                    "inside one pinned chunk is a precaution here, not a need";
    }
}

// 2. ferry_seal makes frozen images read-only (HostStore::protect_read_only, mprotect) after
// they were registered; every onload then copies from those pages. ferry assumes such a copy
// stays asynchronous and delivers the bytes.
void probe_read_only_copy(Fact &fact) {
    const std::size_t bytes = 32 * kMiB;
    Mapping host(bytes);
    fill(host.data, bytes, 2);
    Registration pinned(host.data, bytes);
    ReadOnly frozen(host.data, bytes);
    DeviceBuffer dev(bytes);
    StreamHandle stream;
    PROBE_CHECK(cudaMemset(dev.data, 0, bytes));
    const QueuedCopy copy = copy_behind_busy_kernel(dev.data, host.data, bytes, stream.stream);
    if (copy.err != cudaSuccess) {
        fact.found = "refused: " + std::string(cudaGetErrorName(copy.err));
        fact.verdict = Verdict::differs;
        return;
    }
    if (copy.done_err != cudaSuccess) {
        fact.found = "accepted, then failed on the device: " +
                     std::string(cudaGetErrorName(copy.done_err));
        fact.verdict = Verdict::differs;
        return;
    }
    std::size_t wrong = 0;
    const bool correct = device_matches(dev.data, host.data, bytes, &wrong);
    const double gbps = h2d_gbps(dev.data, host.data, bytes, 4, stream.stream);
    fact.found = std::string(copy.asynchronous() ? "async" : "SYNCHRONOUS") + " (call " +
                 fmt("%.2f", copy.call_ms) + " ms, 50 ms kernel ahead), " +
                 (correct ? "bytes ok" : "WRONG BYTES at " + std::to_string(wrong)) + ", " +
                 fmt("%.1f", gbps) + " GB/s";
    fact.verdict = copy.asynchronous() && correct ? Verdict::ok : Verdict::differs;
}

// 3. EventClock::poll_locked queries timing events that may still be in flight. ferry
// assumes a busy event's query returns cudaErrorNotReady and may leave it as the thread's
// last error, so it clears that error; it must then not poll while the caller has an unread
// error of its own, which the clear would erase. The probe also shows which error the
// thread holds when a query follows such an unread error.
void probe_busy_event_query(Fact &fact) {
    StreamHandle stream;
    EventHandle event(cudaEventDisableTiming);

    // Alone: what the query leaves behind.
    clear_error();
    launch_spin(stream.stream, kSpinNs);
    PROBE_CHECK(cudaEventRecord(event.event, stream.stream));
    const cudaError_t query = cudaEventQuery(event.event);
    const cudaError_t peeked = cudaPeekAtLastError();
    const cudaError_t got = cudaGetLastError();
    const cudaError_t after = cudaGetLastError();
    PROBE_CHECK(cudaStreamSynchronize(stream.stream));

    // After an unread error of the caller's (a failed allocation, not sticky): which error
    // does the thread hold after the query? The kernel goes first: launch_spin reads the
    // last error.
    clear_error();
    launch_spin(stream.stream, kSpinNs);
    void *absurd = nullptr;
    const cudaError_t caller = cudaMalloc(&absurd, std::size_t{1} << 62);
    PROBE_CHECK(cudaEventRecord(event.event, stream.stream));
    const cudaError_t query2 = cudaEventQuery(event.event);
    const cudaError_t held = cudaPeekAtLastError();
    clear_error();
    PROBE_CHECK(cudaStreamSynchronize(stream.stream));

    if (query == cudaSuccess || query2 == cudaSuccess) {
        fact.found = "the event was complete at once: the spin kernel did not keep its stream "
                     "busy";
        return;  // unmeasured
    }
    fact.found = "query: " + std::string(cudaGetErrorName(query)) +
                 "; last error after: " + cudaGetErrorName(peeked) + " (peek), " +
                 cudaGetErrorName(got) + " (get), then " + cudaGetErrorName(after) +
                 "; after an unread " + cudaGetErrorName(caller) + ": " +
                 cudaGetErrorName(held);
    fact.verdict = query == cudaErrorNotReady ? Verdict::ok : Verdict::differs;
    if (query != cudaErrorNotReady) return;
    if (peeked == cudaErrorNotReady) {
        fact.note = "a not-ready query leaves cudaErrorNotReady as the last error: "
                    "EventClock must clear it, and must not poll while the caller has an "
                    "unread error";
    } else {
        fact.note = "a not-ready query leaves no last error: EventClock's clear after it "
                    "erases only a caller's unread error, never one of its own";
    }
    if (held != caller) {
        fact.note += "; a query after the caller's error replaced it with " +
                     std::string(cudaGetErrorName(held));
    }
}

// 4. Scheduler waits on ready/released events of slots that may never have been recorded
// (device.hpp: "an event never recorded is complete"). ferry assumes cudaStreamWaitEvent on
// such an event is a no-op.
void probe_wait_unrecorded(Fact &fact) {
    StreamHandle stream;
    EventHandle never(cudaEventDisableTiming);
    EventHandle marker(cudaEventDisableTiming);
    DeviceBuffer dev(4096);
    const cudaError_t wait = cudaStreamWaitEvent(stream.stream, never.event, 0);
    if (wait != cudaSuccess) {
        clear_error();
        fact.found = "refused: " + std::string(cudaGetErrorName(wait));
        fact.verdict = Verdict::differs;
        return;
    }
    PROBE_CHECK(cudaMemsetAsync(dev.data, 0, 4096, stream.stream));
    PROBE_CHECK(cudaEventRecord(marker.event, stream.stream));
    const double start = now_ms();
    cudaError_t state = cudaErrorNotReady;
    while ((state = cudaEventQuery(marker.event)) == cudaErrorNotReady && now_ms() - start < 2000)
        usleep(100);
    const double waited = now_ms() - start;
    clear_error();
    if (state == cudaErrorNotReady) {
        stream.abandon = true;  // blocked for good: never destroyed, never waited for
        fact.found = "BLOCKS: the next work had not run after 2 s";
        fact.verdict = Verdict::differs;
        return;
    }
    if (state != cudaSuccess) throw ProbeError{"cudaEventQuery(marker): " + err_text(state)};
    fact.found = "cudaSuccess; the next work ran after " + fmt("%.2f", waited) + " ms";
    fact.verdict = waited < 100.0 ? Verdict::ok : Verdict::differs;
}

// 5. One cudaMemcpyAsync per group image (DESIGN.md): ferry assumes one large copy from
// registered memory runs at least as fast as smaller ones.
void probe_bandwidth(Fact &fact) {
    const std::size_t largest = 64 * kMiB;
    Mapping host(largest);
    fill(host.data, largest, 5);
    Registration pinned(host.data, largest);
    DeviceBuffer dev(largest);
    StreamHandle stream;
    const std::size_t sizes[] = {1 * kMiB, 4 * kMiB, 16 * kMiB, 64 * kMiB};
    const int reps[] = {32, 16, 8, 4};
    std::vector<double> gbps;
    for (std::size_t i = 0; i < 4; ++i)
        gbps.push_back(h2d_gbps(dev.data, host.data, sizes[i], reps[i], stream.stream));
    std::vector<unsigned char> pageable(largest);
    fill(pageable.data(), largest, 6);
    const double pageable_gbps = h2d_gbps(dev.data, pageable.data(), largest, 2, stream.stream);

    fact.found.clear();
    for (std::size_t i = 0; i < 4; ++i) {
        fact.found += std::to_string(sizes[i] / kMiB) + " MiB " + fmt("%.1f", gbps[i]) +
                      (i + 1 < 4 ? ", " : " GB/s");
    }
    fact.found += " (pageable 64 MiB: " + fmt("%.1f", pageable_gbps) + ")";
    const double best = *std::max_element(gbps.begin(), gbps.end());
    fact.verdict = gbps[3] >= 0.9 * best ? Verdict::ok : Verdict::differs;
    fact.note = "DESIGN.md's floor uses ~25 GB/s (PCIe Gen4) and ~50 GB/s (Gen5); this link "
                "gives " + fmt("%.1f", gbps[3]) + " GB/s for one 64 MiB copy";
}

void run_probe(Fact &fact, void (*probe)(Fact &)) {
    clear_error();
    try {
        probe(fact);
    } catch (const ProbeError &e) {
        fact.found = "could not measure: " + e.what;
        fact.verdict = Verdict::unmeasured;
    }
    const cudaError_t left = clear_error();
    if (left != cudaSuccess && fact.verdict != Verdict::unmeasured)
        fact.note += (fact.note.empty() ? "" : "; ") + std::string("left ") +
                     cudaGetErrorName(left) + " behind (cleared)";
}

const char *verdict_text(Verdict verdict) {
    switch (verdict) {
        case Verdict::ok: return "ok";
        case Verdict::differs: return "DIFFERS";
        case Verdict::unmeasured: return "UNMEASURED";
    }
    return "?";
}

void print_table(const std::vector<Fact> &facts) {
    const char *headers[] = {"fact", "expected by ferry", "found", "verdict"};
    std::size_t width[3] = {std::strlen(headers[0]), std::strlen(headers[1]),
                            std::strlen(headers[2])};
    for (std::size_t i = 0; i < facts.size(); ++i) {
        width[0] = std::max(width[0], facts[i].name.size() + 3);
        width[1] = std::max(width[1], facts[i].expected.size());
        width[2] = std::max(width[2], facts[i].found.size());
    }
    const int w0 = static_cast<int>(width[0]), w1 = static_cast<int>(width[1]),
              w2 = static_cast<int>(width[2]);
    std::printf("%-*s | %-*s | %-*s | %s\n", w0, headers[0], w1, headers[1], w2, headers[2],
                headers[3]);
    std::printf("%s-+-%s-+-%s-+-%s\n", std::string(width[0], '-').c_str(),
                std::string(width[1], '-').c_str(), std::string(width[2], '-').c_str(),
                "----------");
    for (std::size_t i = 0; i < facts.size(); ++i) {
        const std::string name = std::to_string(i + 1) + ". " + facts[i].name;
        std::printf("%-*s | %-*s | %-*s | %s\n", w0, name.c_str(), w1, facts[i].expected.c_str(),
                    w2, facts[i].found.c_str(), verdict_text(facts[i].verdict));
    }
}

void on_watchdog(int) {
    const char message[] = "cuda-probe: still running after 60 s: gave up (exit 1)\n";
    (void)!write(STDERR_FILENO, message, sizeof message - 1);
    _exit(kExitDiffers);
}

// The device to probe, or exits 2 naming the CUDA error.
int open_device(int argc, char **argv) {
    int runtime = 0, driver = 0;
    cudaRuntimeGetVersion(&runtime);
    cudaDriverGetVersion(&driver);
    std::printf("cuda-probe: CUDA runtime %s; driver: %s\n", version_text(runtime).c_str(),
                driver > 0 ? ("CUDA " + version_text(driver)).c_str()
                           : "none (no NVIDIA driver loaded)");
    const int ordinal = argc > 1 ? std::atoi(argv[1]) : 0;
    int count = 0;
    cudaError_t err = cudaGetDeviceCount(&count);
    if (err == cudaSuccess && count == 0) err = cudaErrorNoDevice;
    if (err == cudaSuccess && (ordinal < 0 || ordinal >= count)) err = cudaErrorInvalidDevice;
    if (err == cudaSuccess) err = cudaSetDevice(ordinal);
    if (err == cudaSuccess) err = cudaFree(nullptr);  // creates the primary context now
    if (err != cudaSuccess) {
        std::printf("cuda-probe: no usable GPU (device %d of %d visible): %s\n", ordinal, count,
                    err_text(err).c_str());
        std::exit(kExitNoGpu);
    }
    return ordinal;
}

void print_device(int ordinal) {
    cudaDeviceProp properties{};
    if (cudaGetDeviceProperties(&properties, ordinal) != cudaSuccess) clear_error();
    int register_supported = 0, read_only_supported = 0;
    if (cudaDeviceGetAttribute(&register_supported, cudaDevAttrHostRegisterSupported,
                               ordinal) != cudaSuccess)
        clear_error();
    if (cudaDeviceGetAttribute(&read_only_supported, cudaDevAttrHostRegisterReadOnlySupported,
                               ordinal) != cudaSuccess)
        clear_error();
    std::printf("device %d: %s, sm_%d%d, %.1f GiB, PCI %04x:%02x:%02x; host register %s, "
                "read-only register %s; page %ld bytes, RLIMIT_MEMLOCK %s\n\n",
                ordinal, properties.name, properties.major, properties.minor,
                static_cast<double>(properties.totalGlobalMem) / (1 << 30),
                properties.pciDomainID, properties.pciBusID, properties.pciDeviceID,
                register_supported ? "yes" : "no", read_only_supported ? "yes" : "no",
                sysconf(_SC_PAGESIZE), memlock_text().c_str());
}

}  // namespace

int main(int argc, char **argv) {
    std::setvbuf(stdout, nullptr, _IOLBF, 0);
    signal(SIGALRM, on_watchdog);
    alarm(kWatchdogSeconds);
    const int ordinal = open_device(argc, argv);
    print_device(ordinal);

    // Loads the module now (lazy loading, PTX JIT), so no probe measures that.
    spin_kernel<<<1, 1>>>(0);
    if (cudaDeviceSynchronize() != cudaSuccess) clear_error();

    // Each fact: what ferry assumes, what a difference would affect, and its probe.
    struct Row {
        const char *name;
        const char *expected;
        const char *affects;
        void (*probe)(Fact &);
    };
    const Row rows[] = {
        {"H2D copy spanning two cudaHostRegister ranges", "may fail: ferry never issues one",
         "a layout whose group image crosses a pinned chunk boundary "
         "(HostStore::pin_chunks, FERRY_PIN_CHUNK) would corrupt onloads",
         probe_spanning_copy},
        {"H2D copy from registered pages made PROT_READ", "async, bytes ok",
         "every onload after ferry_seal copies from mprotect()ed images "
         "(HostStore::protect_read_only)",
         probe_read_only_copy},
        {"cudaEventQuery on a busy event", "cudaErrorNotReady, may stay as last error",
         "EventClock::poll_locked (cuda_device.cpp): stamps never complete, "
         "or it clears errors that are not its own",
         probe_busy_event_query},
        {"cudaStreamWaitEvent on a never-recorded event", "no-op: next work runs at once",
         "the first wait on a slot's ready/released event (device.hpp: an "
         "event never recorded is complete) would fail or block the stream",
         probe_wait_unrecorded},
        {"pinned H2D GB/s by copy size", "64 MiB within 10% of the best size",
         "one cudaMemcpyAsync per group image (DESIGN.md): large images "
         "would be better sent in pieces",
         probe_bandwidth},
    };
    std::vector<Fact> facts;
    for (const Row &row : rows) {
        Fact fact;
        fact.name = row.name;
        fact.expected = row.expected;
        fact.affects = row.affects;
        run_probe(fact, row.probe);
        facts.push_back(fact);
    }

    print_table(facts);
    std::printf("\n");
    int differ = 0;
    for (std::size_t i = 0; i < facts.size(); ++i) {
        const Fact &fact = facts[i];
        if (fact.verdict == Verdict::differs) {
            ++differ;
            std::printf("DIFFERS: fact %zu (%s): expected %s, found %s; affects: %s\n", i + 1,
                        fact.name.c_str(), fact.expected.c_str(), fact.found.c_str(),
                        fact.affects.c_str());
        } else if (fact.verdict == Verdict::unmeasured) {
            ++differ;
            std::printf("UNMEASURED: fact %zu (%s): %s; it bears on: %s\n", i + 1,
                        fact.name.c_str(), fact.found.c_str(), fact.affects.c_str());
        }
    }
    for (std::size_t i = 0; i < facts.size(); ++i)
        if (!facts[i].note.empty()) std::printf("note: fact %zu: %s\n", i + 1, facts[i].note.c_str());
    std::printf("\nresult: %s\n", differ == 0 ? "every fact as ferry assumes (exit 0)"
                                              : (std::to_string(differ) + " of " +
                                                 std::to_string(facts.size()) +
                                                 " facts differ or could not be measured "
                                                 "(exit 1)")
                                                    .c_str());
    return differ == 0 ? 0 : kExitDiffers;
}
