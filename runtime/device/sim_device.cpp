// device/: the device interface and its backends (sim, cuda); uses base/ and kernels/.
// The sim backend: a device emulated in host memory, faithful enough that a missing
// wait in the layers above corrupts data a test can see.
//
// - A stream is a worker thread draining a FIFO of tasks, so copies and "compute"
//   (host callbacks) really run concurrently, as on a GPU. An idle worker polls briefly
//   before it sleeps, so work handed to a stream that just went idle wakes nobody.
// - An event counts its records; a record task marks its ticket complete when the stream
//   reaches it, and a wait task blocks its stream until the ticket it captured completes.
// - Copies take max(real memcpy time, latency + their time on the link), the link shared
//   by all copies (sim_link.hpp). Host memory not pinned (alloc_pinned, pin) is pageable.
//   A copy whose host range spans two pinned registrations fails, as on cuda.
// - Chaos: random delays before tasks, and every copy first poisons its destination and
//   pauses before writing the real bytes, so a reader that did not wait sees poison.
// - Faults armed in FaultInjector fail the matching call; a copy failing at completion
//   leaves its destination poisoned and is reported by the next host wait.
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <functional>
#include <iterator>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <thread>

#include "kernels/checksum_ref.hpp"
#include "kernels/decode_ref.hpp"
#include "device/device.hpp"
#include "base/error.hpp"
#include "device/fault_injection.hpp"
#include "device/sim_link.hpp"

namespace ferry {
namespace {

constexpr unsigned char kPoison = 0xA5;

struct SimEvent {
    std::mutex mutex;
    std::condition_variable cv;
    std::uint64_t recorded = 0;   // tickets handed out
    std::uint64_t completed = 0;  // highest ticket whose work is done

    std::uint64_t next_ticket() {
        std::lock_guard<std::mutex> lock(mutex);
        return ++recorded;
    }
    std::uint64_t current_ticket() {
        std::lock_guard<std::mutex> lock(mutex);
        return recorded;
    }
    void complete(std::uint64_t ticket) {
        {
            std::lock_guard<std::mutex> lock(mutex);
            completed = std::max(completed, ticket);
        }
        cv.notify_all();
    }
    void wait(std::uint64_t ticket) {
        std::unique_lock<std::mutex> lock(mutex);
        cv.wait(lock, [&] { return completed >= ticket; });
    }
};

// A pause between polls of memory another core is about to write.
inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    asm volatile("yield");
#endif
}

// A GPU takes work from a pushbuffer the host writes, with no system call; waking a sleeping
// thread costs the waker a futex wake, several microseconds on a VM. So a stream's worker
// polls for kPoll after its queue empties before it parks on cv_, and the submit that
// follows a synchronize (the next prefetch) finds it awake and wakes nobody. Its polls
// yield, so idle streams give way to threads with work. For the same reason mutex_, held
// for a few instructions at a time, is taken by spinning briefly before blocking on it.
class SimStream {
   public:
    explicit SimStream(std::uint64_t seed) : rng_(seed), worker_([this] { run(); }) {}

    ~SimStream() {
        {
            std::lock_guard<std::mutex> lock(mutex_);
            stopping_ = true;
            pending_.store(true, std::memory_order_release);
        }
        cv_.notify_all();
        worker_.join();
    }

    void submit(std::function<void()> task) {
        bool wake = false;
        {
            std::unique_lock<std::mutex> lock(mutex_, std::defer_lock);
            lock_spinning(lock);
            tasks_.push_back(std::move(task));
            ++submitted_;
            wake = parked_;   // read under the lock the worker parks under: no lost wake-up
            parked_ = false;  // one wake-up per burst of tasks (wait, copy, record)
        }
        if (wake) {
            cv_.notify_one();
        } else {
            // Set after unlocking, so that the polling worker does not find mutex_ held.
            pending_.store(true, std::memory_order_release);
        }
    }

    void synchronize() {
        std::unique_lock<std::mutex> lock(mutex_);
        const std::uint64_t target = submitted_;
        idle_cv_.wait(lock, [&] { return finished_ >= target; });
    }

    // Only called from this stream's worker thread.
    std::mt19937_64 &rng() { return rng_; }

   private:
    static constexpr std::chrono::microseconds kPoll{50};

    void run() {
        std::unique_lock<std::mutex> lock(mutex_);
        for (;;) {
            if (tasks_.empty() && !stopping_) {
                pending_.store(false, std::memory_order_relaxed);  // set again after a push
                lock.unlock();
                poll();
                lock_spinning(lock);
                // parked_ is set and the queue checked under the lock submit() pushes under:
                // a task pushed before is seen here, one pushed after sees parked_.
                while (tasks_.empty() && !stopping_) {
                    parked_ = true;
                    cv_.wait(lock);
                }
                parked_ = false;
            }
            if (tasks_.empty()) return;  // stopping and drained
            std::function<void()> task = std::move(tasks_.front());
            tasks_.pop_front();
            lock.unlock();
            task();
            lock_spinning(lock);
            ++finished_;
            idle_cv_.notify_all();
        }
    }

    // Returns once pending_ is set, or after kPoll. Mostly pauses: a yield per poll (a
    // system call) slowed the thread on the other core by half.
    void poll() const {
        const auto until = std::chrono::steady_clock::now() + kPoll;
        for (unsigned i = 1; !pending_.load(std::memory_order_acquire); ++i) {
            cpu_relax();
            if (i % 64 != 0) continue;
            if (std::chrono::steady_clock::now() >= until) return;
            std::this_thread::yield();
        }
    }

    static void lock_spinning(std::unique_lock<std::mutex> &lock) {
        for (int i = 0; i < 100; ++i) {
            if (lock.try_lock()) return;
            cpu_relax();
        }
        lock.lock();
    }

    std::mt19937_64 rng_;
    std::mutex mutex_;
    std::condition_variable cv_;
    std::condition_variable idle_cv_;
    std::deque<std::function<void()>> tasks_;
    std::uint64_t submitted_ = 0;
    std::uint64_t finished_ = 0;
    bool stopping_ = false;
    bool parked_ = false;               // the worker waits on cv_: submit() must notify it
    std::atomic<bool> pending_{false};  // a task or stopping_ since the worker went idle
    std::thread worker_;  // last: starts after every other member exists
};

class SimDevice final : public Device {
   public:
    explicit SimDevice(const SimOptions &options)
        : options_(options), link_(options.time_scale), rng_(options.seed) {}

    ~SimDevice() override {
        std::lock_guard<std::mutex> lock(streams_mutex_);
        for (SimStream *stream : streams_) delete stream;
    }

    ferry_backend backend() const override { return FERRY_BACKEND_SIM; }
    std::string name() const override { return options_.chaos ? "sim (chaos)" : "sim"; }

    void *reserve(std::size_t bytes) override {
        inject(Fault::reserve, FERRY_ERROR_OUT_OF_DEVICE_MEMORY, "reserving device memory");
        void *ptr = std::aligned_alloc(256, round_up(bytes, 256));
        FERRY_EXPECTS(ptr != nullptr, FERRY_ERROR_OUT_OF_DEVICE_MEMORY,
                "sim: could not allocate " + std::to_string(bytes) + " bytes of device memory");
        return ptr;
    }
    void unreserve(void *ptr) noexcept override { std::free(ptr); }

    void *alloc_pinned(std::size_t bytes) override {
        inject(Fault::pin, FERRY_ERROR_OUT_OF_HOST_MEMORY, "pinning host memory");
        void *ptr = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                         -1, 0);
        FERRY_EXPECTS(ptr != MAP_FAILED, FERRY_ERROR_OUT_OF_HOST_MEMORY,
                "sim: mmap of " + std::to_string(bytes) + " bytes of host memory failed: " +
                    std::strerror(errno));
        std::lock_guard<std::mutex> lock(pinned_mutex_);
        pinned_[static_cast<const std::byte *>(ptr)] = bytes;
        return ptr;
    }
    void free_pinned(void *ptr, std::size_t bytes) noexcept override {
        if (ptr == nullptr) return;
        {
            std::lock_guard<std::mutex> lock(pinned_mutex_);
            pinned_.erase(static_cast<const std::byte *>(ptr));
        }
        munmap(ptr, bytes);
    }

    // Sim memory is never paged out: pinning marks the range for the link's pinned rate,
    // and is a place where faults are injected.
    void pin(void *ptr, std::size_t bytes) override {
        inject(Fault::pin, FERRY_ERROR_OUT_OF_HOST_MEMORY, "pinning host memory");
        populate(ptr, bytes);
        std::lock_guard<std::mutex> lock(pinned_mutex_);
        pinned_[static_cast<const std::byte *>(ptr)] = bytes;
    }
    // cudaHostRegister faults every page in (pinned pages are resident), so the sim
    // does too: the page faults are paid while pinning, as on cuda, not by the first
    // write into the store, and RSS counts the pinned bytes at once.
    // A read-only mapping (a shared host store another process loaded) is faulted in
    // for reading: it cannot be written, and its pages exist already.
    static void populate(void *ptr, std::size_t bytes) {
        bool writable = true;
#ifdef MADV_POPULATE_WRITE
        if (madvise(ptr, bytes, MADV_POPULATE_WRITE) == 0) return;
        // Supported (a zero length is accepted then), so the range is not writable.
        writable = madvise(ptr, 0, MADV_POPULATE_WRITE) != 0;
        // Faster than touching every page (Linux 6.18: 42 against 55 ms for 512 MiB of
        // 4 KiB pages, 0.3 against 1.8 ms where they are 2 MiB pages).
        if (!writable && madvise(ptr, bytes, MADV_POPULATE_READ) == 0) return;
#endif
        const long page = sysconf(_SC_PAGESIZE);
        auto *at = static_cast<volatile unsigned char *>(ptr);
        for (std::size_t i = 0; i < bytes; i += static_cast<std::size_t>(page)) {
            if (writable) {
                at[i] = at[i];
            } else {
                (void)at[i];
            }
        }
    }
    void unpin(void *ptr, std::size_t) noexcept override {
        std::lock_guard<std::mutex> lock(pinned_mutex_);
        pinned_.erase(static_cast<const std::byte *>(ptr));
    }

    std::uint64_t *alloc_checksum_results(std::size_t count) override {
        return new std::uint64_t[count]();
    }
    void free_checksum_results(std::uint64_t *results) noexcept override { delete[] results; }
    void checksum(const void *device_ptr, std::size_t bytes, std::uint64_t *result,
                  Stream stream) override {
        run_on(stream, [device_ptr, bytes, result] {
            *result = kernels::checksum_ref(device_ptr, bytes);
        });
    }

    void *create_decode_table(const kernels::DecodeJob *jobs, std::uint32_t count) override {
        return new std::vector<kernels::DecodeJob>(jobs, jobs + count);
    }
    void destroy_decode_table(void *table) noexcept override {
        delete static_cast<std::vector<kernels::DecodeJob> *>(table);
    }
    kernels::DecodeResult *alloc_decode_results(std::size_t count) override {
        return new kernels::DecodeResult[count]();
    }
    void free_decode_results(kernels::DecodeResult *results) noexcept override {
        delete[] results;
    }
    // Decodes with the kernel's own code, then waits out the rest of the modeled time:
    // the decoded bytes at decode_gbps. Under chaos each destination is poisoned first, so
    // a reader that did not wait for the decode sees poison.
    void decode(void *table, const void *image, void *slot, kernels::DecodeResult *result,
                Stream stream) override {
        const auto *jobs = static_cast<const std::vector<kernels::DecodeJob> *>(table);
        FERRY_EXPECTS(jobs != nullptr && image != nullptr && slot != nullptr && result != nullptr,
                      FERRY_ERROR_INVALID_ARGUMENT, "sim decode: a null table, image, slot or result");
        std::uint64_t decoded = 0;
        for (const auto &job : *jobs) decoded += job.dst_bytes;
        const bool chaos = options_.chaos;
        const double gbps = options_.decode_gbps;
        SimStream *sim = stream == nullptr ? nullptr : checked(stream);
        auto task = [this, jobs, image, slot, result, decoded, chaos, gbps, sim] {
            const SimClock::time_point start = SimClock::now();
            auto *out = static_cast<std::uint8_t *>(slot);
            if (chaos) {
                for (const auto &job : *jobs) std::memset(out + job.dst_offset, kPoison, job.dst_bytes);
                if (sim != nullptr) chaos_pause(sim->rng());
            }
            kernels::codec::decode_jobs_ref(jobs->data(), static_cast<std::uint32_t>(jobs->size()),
                                            static_cast<const std::uint8_t *>(image), out, result);
            if (gbps > 0.0) sim_wait_until(start + link_.wall(decoded / (gbps * 1e3)));
        };
        if (sim == nullptr) task();
        else sim->submit(std::move(task));
    }

    Stream create_stream() override {
        std::lock_guard<std::mutex> lock(streams_mutex_);
        auto *stream = new SimStream(options_.seed + 0x9e3779b97f4a7c15ULL * (++stream_count_));
        streams_.insert(stream);
        return stream;
    }
    void destroy_stream(Stream stream) noexcept override {
        auto *sim = static_cast<SimStream *>(stream);
        {
            std::lock_guard<std::mutex> lock(streams_mutex_);
            if (streams_.erase(sim) == 0) return;
        }
        delete sim;  // drains its queue first
    }

    Event create_event() override { return new SimEvent(); }
    void destroy_event(Event event) noexcept override { delete static_cast<SimEvent *>(event); }

    void copy_h2d(void *dst, const void *src, std::size_t bytes, Stream stream) override {
        const bool pinned = host_range_pinned(src, bytes, "from");
        copy(dst, src, bytes, SimLink::kH2D,
             rate(pinned, options_.h2d_gbps, options_.pageable_h2d_gbps), stream);
    }
    void copy_d2h(void *dst, const void *src, std::size_t bytes, Stream stream) override {
        const bool pinned = host_range_pinned(dst, bytes, "to");
        copy(dst, src, bytes, SimLink::kD2H,
             rate(pinned, options_.d2h_gbps, options_.pageable_d2h_gbps), stream);
    }

    // A ticket is taken and its task queued under one lock: otherwise a wait could capture
    // a record's ticket and be queued on the same stream ahead of it, blocking it forever.
    void record(Event event, Stream stream) override {
        inject(Fault::event_record, FERRY_ERROR_DEVICE, "recording an event");
        auto *sim_event = static_cast<SimEvent *>(event);
        std::lock_guard<std::mutex> lock(submit_mutex_);
        const std::uint64_t ticket = sim_event->next_ticket();
        run_on(stream, [sim_event, ticket] { sim_event->complete(ticket); });
    }

    void stream_wait(Stream stream, Event event) override {
        inject(Fault::event_wait, FERRY_ERROR_DEVICE, "making a stream wait on an event");
        auto *sim_event = static_cast<SimEvent *>(event);
        std::unique_lock<std::mutex> lock(submit_mutex_);
        const std::uint64_t ticket = sim_event->current_ticket();
        if (stream == nullptr) {
            lock.unlock();  // the calling thread waits: hold nothing
            sim_event->wait(ticket);
            return;
        }
        run_on(stream, [sim_event, ticket] { sim_event->wait(ticket); });
    }

    void event_synchronize(Event event) override {
        auto *sim_event = static_cast<SimEvent *>(event);
        sim_event->wait(sim_event->current_ticket());
        report_copy_error();
    }

    void stream_synchronize(Stream stream) override {
        if (stream != nullptr) checked(stream)->synchronize();
        report_copy_error();
    }

    void device_synchronize() override {
        {
            std::lock_guard<std::mutex> lock(streams_mutex_);
            for (SimStream *stream : streams_) stream->synchronize();
        }
        report_copy_error();
    }

    void launch_host(Stream stream, HostFn fn, void *user) override {
        run_on(stream, [fn, user] { fn(user); });
    }

    bool capturing(Stream stream) override {
        if (!any_capturing_.load(std::memory_order_acquire)) return false;  // the hot path
        std::lock_guard<std::mutex> lock(capturing_mutex_);
        return capturing_.count(stream) != 0;
    }

    void set_capturing(Stream stream, bool capturing) {
        std::lock_guard<std::mutex> lock(capturing_mutex_);
        if (capturing) capturing_.insert(stream);
        else capturing_.erase(stream);
        any_capturing_.store(!capturing_.empty(), std::memory_order_release);
    }

   private:
    static std::size_t round_up(std::size_t n, std::size_t to) { return (n + to - 1) / to * to; }

    // A stream handed to the sim backend must be one it created: anything else (say, a
    // cudaStream_t from a program run with FERRY_BACKEND=sim) is refused, not followed.
    SimStream *checked(Stream stream) {
        std::lock_guard<std::mutex> lock(streams_mutex_);
        auto *sim = static_cast<SimStream *>(stream);
        FERRY_EXPECTS(streams_.count(sim) != 0, FERRY_ERROR_INVALID_ARGUMENT,
                      "stream " + std::to_string(reinterpret_cast<std::uintptr_t>(stream)) +
                          " is not a sim stream: on the sim backend pass NULL (the calling "
                          "thread) or a stream the sim device created");
        return sim;
    }

    // Whether a copy's host range lies in one registration (alloc_pinned or pin): true, or
    // in none: false. CUDA rejects a range that spans two registrations, or a registration
    // and pageable memory (cudaErrorInvalidValue), or at best stages it as a synchronous
    // copy: the sim refuses it at submission, as cudaMemcpyAsync returns that error.
    bool host_range_pinned(const void *host, std::size_t bytes, const char *direction) {
        const auto *begin = static_cast<const std::byte *>(host);
        const std::byte *end = begin + bytes;
        std::lock_guard<std::mutex> lock(pinned_mutex_);
        auto after = pinned_.upper_bound(begin);  // the first registration starting past it
        if (after != pinned_.begin()) {
            const auto holding = std::prev(after);
            const std::byte *holding_end = holding->first + holding->second;
            if (begin < holding_end) {
                FERRY_EXPECTS(end <= holding_end, FERRY_ERROR_DEVICE,
                              spans_message(bytes, direction, holding_end - begin));
                return true;
            }
        }
        FERRY_EXPECTS(after == pinned_.end() || after->first >= end, FERRY_ERROR_DEVICE,
                      spans_message(bytes, direction, after->first - begin));
        return false;
    }

    static std::string spans_message(std::size_t bytes, const char *direction,
                                     std::ptrdiff_t boundary) {
        return "sim: a copy of " + std::to_string(bytes) + " bytes " + direction +
               " host memory crosses a pinned registration's boundary " +
               std::to_string(boundary) + " bytes in; CUDA rejects a copy whose host range "
               "spans two registrations, or pinned and pageable memory "
               "(cudaErrorInvalidValue)";
    }

    // The link rate for a copy: pinned host memory at the pinned rate, else the pageable
    // one (which defaults to the pinned rate).
    static double rate(bool pinned, double pinned_gbps, double pageable_gbps) {
        return pinned || pageable_gbps <= 0.0 ? pinned_gbps : pageable_gbps;
    }

    // Runs the task on the stream, or right here when the stream is the calling thread.
    void run_on(Stream stream, std::function<void()> task) {
        if (stream == nullptr) {
            task();
            return;
        }
        SimStream *sim = checked(stream);
        if (!options_.chaos) {
            sim->submit(std::move(task));
            return;
        }
        sim->submit([sim, task = std::move(task)] {
            chaos_pause(sim->rng());
            task();
        });
    }

    // Throws the fault's error when the injector says this call fails.
    // `what` is a literal: nothing is built unless the fault fires.
    static void inject(Fault fault, ferry_status status, const char *what) {
        if (FaultInjector::instance().fire(fault)) {
            throw Error(status, std::string("sim: ") + what + " failed (injected " +
                                    fault_name(fault) + " fault)");
        }
    }

    // A copy that failed at completion is reported once, by the next host wait.
    void report_copy_error() {
        if (!copy_failed_.exchange(false)) return;
        throw Error(FERRY_ERROR_DEVICE,
                    "sim: an earlier asynchronous copy completed with an error (injected "
                    "copy-error fault); its destination holds no valid bytes");
    }

    void copy(void *dst, const void *src, std::size_t bytes, SimLink::Direction direction,
              double gbps, Stream stream) {
        inject(Fault::copy_submit, FERRY_ERROR_DEVICE, "submitting an asynchronous copy");
        const bool fails = FaultInjector::instance().fire(Fault::copy_error);
        const bool chaos = options_.chaos;
        SimStream *sim = stream == nullptr ? nullptr : checked(stream);
        auto task = [this, dst, src, bytes, direction, gbps, chaos, sim, fails] {
            if (fails) {
                std::memset(dst, kPoison, bytes);
                copy_failed_.store(true);
                return;
            }
            if (options_.latency_us > 0.0) {
                sim_wait_until(SimClock::now() + link_.wall(options_.latency_us));
            }
            SimLink::Transfer transfer;
            link_.begin(transfer, direction, bytes, gbps);
            if (chaos) {
                std::memset(dst, kPoison, bytes);
                if (sim != nullptr) {
                    chaos_pause(sim->rng());
                } else {
                    std::lock_guard<std::mutex> lock(rng_mutex_);
                    chaos_pause(rng_);
                }
            }
            std::memcpy(dst, src, bytes);
            link_.finish(transfer);
        };
        if (sim == nullptr) {
            task();
        } else {
            sim->submit(std::move(task));
        }
    }

    // Up to 200 us, sometimes nothing, sometimes a yield: varied interleavings.
    static void chaos_pause(std::mt19937_64 &rng) {
        const unsigned roll = static_cast<unsigned>(rng() % 8);
        if (roll < 3) return;
        if (roll < 5) {
            std::this_thread::yield();
            return;
        }
        std::this_thread::sleep_for(std::chrono::microseconds(rng() % 200));
    }

    SimOptions options_;
    SimLink link_;
    std::mutex pinned_mutex_;
    std::map<const std::byte *, std::size_t> pinned_;  // pinned ranges by start
    std::atomic<bool> copy_failed_{false};
    std::mutex rng_mutex_;
    std::mt19937_64 rng_;  // for copies run on the calling thread
    std::mutex submit_mutex_;
    std::mutex streams_mutex_;
    std::set<SimStream *> streams_;
    std::uint64_t stream_count_ = 0;
    std::mutex capturing_mutex_;
    std::set<Stream> capturing_;  // sim_set_capturing()
    std::atomic<bool> any_capturing_{false};
};

}  // namespace

std::unique_ptr<Device> make_sim_device(const SimOptions &options) {
    return std::make_unique<SimDevice>(options);
}

void sim_set_capturing(Device &device, Stream stream, bool capturing) {
    auto *sim = dynamic_cast<SimDevice *>(&device);
    FERRY_EXPECTS(sim != nullptr, FERRY_ERROR_INVALID_ARGUMENT,
                  "sim_set_capturing: the device is not a sim device");
    sim->set_capturing(stream, capturing);
}

}  // namespace ferry
