// load/: safetensors weights: headers parsed and checked, tensors read into memory.
// The reader (reader.hpp): a pool of threads takes jobs largest first; each reads with
// pread in large requests, through its own kChunkBytes buffer when it converts or reads
// with O_DIRECT. The calling thread only waits and reports progress.
#include "load/reader.hpp"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <mutex>
#include <numeric>
#include <string>
#include <thread>

#include "base/dtype.hpp"
#include "base/error.hpp"
#include "load/convert.hpp"

namespace ferry::load {
namespace {

constexpr std::uint64_t kRequestBytes = 64ull << 20;  // most bytes per pread
constexpr std::uint64_t kDirectAlign = 4096;


// Exactly `bytes` bytes at `offset` of the file into `dst`, in requests of at most
// kRequestBytes; an end of file first is FERRY_ERROR_IO. Returns the bytes read, which
// with `allow_short` (O_DIRECT reads rounded up past the end) may stop at the end of file
// once `needed` bytes are in.
std::uint64_t pread_fully(const WeightFile &file, int fd, std::byte *dst, std::uint64_t bytes,
                          std::uint64_t offset, std::uint64_t needed) {
    std::uint64_t done = 0;
    while (done < bytes) {
        const std::size_t want = static_cast<std::size_t>(std::min(bytes - done, kRequestBytes));
        const ssize_t got = ::pread(fd, dst + done, want, static_cast<off_t>(offset + done));
        if (got < 0 && errno == EINTR) continue;
        FERRY_EXPECTS(got >= 0, FERRY_ERROR_IO,
                      "reading " + std::to_string(want) + " bytes of '" + file.path() +
                          "' at offset " + std::to_string(offset + done) + " failed: " +
                          std::strerror(errno));
        if (got == 0) {
            FERRY_EXPECTS(done >= needed, FERRY_ERROR_IO,
                          "'" + file.path() + "' ends at offset " +
                              std::to_string(offset + done) + ", before the " +
                              std::to_string(needed - done) + " bytes still to be read there "
                              "(the file was truncated after it was opened?)");
            return done;
        }
        done += static_cast<std::uint64_t>(got);
    }
    return done;
}

// Bytes [offset, offset + bytes) of the file, with O_DIRECT, through the aligned `buffer`:
// calls sink(data, n) for each piece, in order. Pieces never exceed kChunkBytes - 4 KiB.
template <typename Sink>
void read_direct(const WeightFile &file, int fd, std::uint64_t offset, std::uint64_t bytes,
                 std::byte *buffer, std::uint64_t piece, Sink &&sink) {
    std::uint64_t done = 0;
    while (done < bytes) {
        const std::uint64_t at = offset + done;
        const std::uint64_t start = at / kDirectAlign * kDirectAlign;
        const std::uint64_t skew = at - start;
        const std::uint64_t n = std::min(bytes - done, piece);
        const std::uint64_t span = (skew + n + kDirectAlign - 1) / kDirectAlign * kDirectAlign;
        pread_fully(file, fd, buffer, span, start, skew + n);
        sink(buffer + skew, n);
        done += n;
    }
}

// One job. Returns the bytes read with O_DIRECT; adds to `progress` as bytes complete.
std::uint64_t run_job(const ReadJob &job, bool direct, std::byte *buffer,
                      std::atomic<std::uint64_t> *progress, const std::function<void()> &tick) {
    WeightFile &file = *job.file;
    const int direct_fd = direct ? file.direct_fd() : -1;
    const bool converts = job.from != job.to;
    const std::size_t in_size = converts ? dtype_bytes(job.from) : 1;
    const std::size_t out_size = converts ? dtype_bytes(job.to) : 1;
    auto advance = [&](std::uint64_t n) {
        if (progress != nullptr) progress->fetch_add(n, std::memory_order_relaxed);
        if (tick) tick();
    };
    if (direct_fd >= 0) {
        // Pieces of whole elements that leave room for the alignment skew in the buffer.
        const std::uint64_t piece = (kChunkBytes - kDirectAlign) / 4 * 4;
        std::byte *out = job.dst;
        read_direct(file, direct_fd, job.offset, job.bytes, buffer, piece,
                    [&](const std::byte *data, std::uint64_t n) {
                        if (converts) {
                            convert(job.from, job.to, data, out, n / in_size);
                            out += n / in_size * out_size;
                        } else {
                            std::memcpy(out, data, n);
                            out += n;
                        }
                        advance(n);
                    });
        return job.bytes;
    }
    if (!converts) {
        for (std::uint64_t done = 0; done < job.bytes;) {
            const std::uint64_t n = std::min(job.bytes - done, kRequestBytes);
            pread_fully(file, file.fd(), job.dst + done, n, job.offset + done, n);
            done += n;
            advance(n);
        }
        return 0;
    }
    const std::uint64_t piece = kChunkBytes / 4 * 4;
    std::byte *out = job.dst;
    for (std::uint64_t done = 0; done < job.bytes;) {
        const std::uint64_t n = std::min(job.bytes - done, piece);
        pread_fully(file, file.fd(), buffer, n, job.offset + done, n);
        convert(job.from, job.to, buffer, out, n / in_size);
        out += n / in_size * out_size;
        done += n;
        advance(n);
    }
    return 0;
}

void check_job(const ReadJob &job) {
    FERRY_EXPECTS(job.file != nullptr && (job.dst != nullptr || job.bytes == 0),
                  FERRY_ERROR_INTERNAL, "read job without a file or a destination");
    if (job.from == job.to) return;
    FERRY_EXPECTS(is_convertible(job.from) && is_convertible(job.to), FERRY_ERROR_INTERNAL,
                  "read job of '" + job.file->path() + "' converts between dtypes " +
                      std::to_string(job.from) + " and " + std::to_string(job.to));
    FERRY_EXPECTS(job.bytes % dtype_bytes(job.from) == 0, FERRY_ERROR_INTERNAL,
                  "read job of '" + job.file->path() + "' is not whole elements");
}

struct AlignedBuffer {
    std::byte *data = nullptr;
    AlignedBuffer() {
        void *ptr = nullptr;
        if (posix_memalign(&ptr, kDirectAlign, kChunkBytes) != 0) throw std::bad_alloc();
        data = static_cast<std::byte *>(ptr);
    }
    ~AlignedBuffer() { std::free(data); }
    AlignedBuffer(const AlignedBuffer &) = delete;
    AlignedBuffer &operator=(const AlignedBuffer &) = delete;
};

}  // namespace

ReadResult read_all(const std::vector<ReadJob> &jobs, const ReadOptions &options) {
    ReadResult result;
    std::uint64_t total = 0;
    for (const ReadJob &job : jobs) {
        check_job(job);
        total += job.bytes;
    }
    const unsigned cores = std::max(1u, std::thread::hardware_concurrency());
    std::uint32_t threads = options.threads != 0 ? options.threads : std::min(4u, cores);
    threads = static_cast<std::uint32_t>(
        std::max<std::size_t>(1, std::min<std::size_t>(threads, jobs.size())));
    result.threads = jobs.empty() ? 0 : threads;
    if (jobs.empty()) {
        if (options.progress) options.progress(0, 0);
        return result;
    }

    // Largest first, so that one big tensor is not left to run alone at the end.
    std::vector<std::size_t> order(jobs.size());
    std::iota(order.begin(), order.end(), std::size_t{0});
    std::stable_sort(order.begin(), order.end(),
                     [&](std::size_t a, std::size_t b) { return jobs[a].bytes > jobs[b].bytes; });
    // Each file is checked once its last job is done. O_DIRECT descriptors are opened here,
    // on one thread, before any worker asks for them.
    std::vector<WeightFile *> files;
    for (const ReadJob &job : jobs) {
        if (std::find(files.begin(), files.end(), job.file) == files.end()) {
            files.push_back(job.file);
        }
    }
    std::vector<std::atomic<std::size_t>> jobs_left(files.size());
    for (auto &left : jobs_left) left.store(0);
    std::vector<std::size_t> file_of(jobs.size());
    for (std::size_t i = 0; i < jobs.size(); ++i) {
        file_of[i] = static_cast<std::size_t>(
            std::find(files.begin(), files.end(), jobs[i].file) - files.begin());
        jobs_left[file_of[i]].fetch_add(1);
    }
    if (options.direct) {
        for (WeightFile *file : files) file->direct_fd();
    }

    std::mutex mutex;
    std::condition_variable changed;
    std::atomic<std::size_t> next{0};
    std::atomic<bool> stop{false};
    std::atomic<std::uint64_t> done_bytes{0};
    std::atomic<std::uint64_t> direct_bytes{0};
    std::exception_ptr failure;  // the first, under mutex
    std::size_t running = 0;  // workers started and not finished, under mutex
    const std::function<void()> tick = [&] { changed.notify_one(); };

    auto worker = [&] {
        try {
            AlignedBuffer buffer;
            while (!stop.load(std::memory_order_relaxed)) {
                const std::size_t k = next.fetch_add(1);
                if (k >= order.size()) break;
                const std::size_t i = order[k];
                direct_bytes.fetch_add(
                    run_job(jobs[i], options.direct, buffer.data, &done_bytes, tick));
                if (jobs_left[file_of[i]].fetch_sub(1) == 1) files[file_of[i]]->check_unchanged();
            }
        } catch (...) {
            stop.store(true);
            std::lock_guard<std::mutex> lock(mutex);
            if (!failure) failure = std::current_exception();
        }
        std::lock_guard<std::mutex> lock(mutex);
        --running;
        changed.notify_one();
    };

    std::vector<std::thread> pool;
    for (std::uint32_t t = 0; t < threads; ++t) {
        std::lock_guard<std::mutex> lock(mutex);
        ++running;
        try {
            pool.emplace_back(worker);
        } catch (...) {
            --running;  // the threads that did start take every job
            if (pool.empty()) failure = std::current_exception();
            break;
        }
    }
    std::exception_ptr progress_failure;
    std::uint64_t reported = 0;
    {
        std::unique_lock<std::mutex> lock(mutex);
        while (running > 0) {
            changed.wait_for(lock, std::chrono::milliseconds(50));
            const std::uint64_t now = done_bytes.load(std::memory_order_relaxed);
            if (!options.progress || now == reported || failure || progress_failure) continue;
            reported = now;
            lock.unlock();
            try {
                options.progress(now, total);
            } catch (...) {
                progress_failure = std::current_exception();
                stop.store(true);
            }
            lock.lock();
        }
    }
    for (std::thread &thread : pool) thread.join();
    if (failure) std::rethrow_exception(failure);
    if (progress_failure) std::rethrow_exception(progress_failure);
    if (options.progress && reported != total) options.progress(total, total);
    result.bytes_read = total;
    result.direct_bytes = direct_bytes.load();
    return result;
}

void read_one(const ReadJob &job, bool direct, std::byte *buffer) {
    check_job(job);
    job.file->check_unchanged();
    run_job(job, direct, buffer, nullptr, {});
}

}  // namespace ferry::load
