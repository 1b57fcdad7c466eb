// ferry-load: measures loading safetensors into ferry, against plain reads of the files.
// System measurements (measure.hpp).
#include "measure.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <thread>

namespace ferry_load {

std::uint64_t now_ns() {
    return static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
        std::chrono::steady_clock::now().time_since_epoch()).count());
}

double seconds_since(std::uint64_t start_ns) { return (now_ns() - start_ns) * 1e-9; }

namespace {

std::string quoted(const std::string &s) {
    std::string out = "'";
    for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
    return out + "'";
}

std::uint64_t cached_bytes(const std::string &path) {
    const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return 0;
    struct stat st {};
    std::uint64_t cached = 0;
    if (fstat(fd, &st) == 0 && st.st_size > 0) {
        void *map = mmap(nullptr, static_cast<std::size_t>(st.st_size), PROT_READ, MAP_SHARED, fd, 0);
        if (map != MAP_FAILED) {
            const long page = sysconf(_SC_PAGESIZE);
            const std::size_t pages = (static_cast<std::size_t>(st.st_size) + page - 1) / page;
            std::string vec(pages, '\0');
            if (mincore(map, static_cast<std::size_t>(st.st_size),
                        reinterpret_cast<unsigned char *>(&vec[0])) == 0) {
                for (char c : vec) cached += (c & 1) ? static_cast<std::uint64_t>(page) : 0;
            }
            munmap(map, static_cast<std::size_t>(st.st_size));
        }
    }
    close(fd);
    return cached;
}

std::uint64_t status_field(const char *field) {
    std::ifstream in("/proc/self/status");
    std::string line;
    const std::size_t n = std::strlen(field);
    while (std::getline(in, line)) {
        if (line.compare(0, n, field) == 0) return std::strtoull(line.c_str() + n, nullptr, 10) << 10;
    }
    return 0;
}

}  // namespace

double time_cat(const std::vector<std::string> &files) {
    std::string command = "cat";
    for (const std::string &f : files) command += " " + quoted(f);
    command += " > /dev/null";
    const std::uint64_t start = now_ns();
    if (std::system(command.c_str()) != 0) return -1;
    return seconds_since(start);
}

double time_read_into_memory(const std::vector<std::string> &files, unsigned threads) {
    std::uint64_t total = 0;
    std::vector<std::pair<int, std::uint64_t>> open_files;
    for (const std::string &f : files) {
        const int fd = open(f.c_str(), O_RDONLY | O_CLOEXEC);
        struct stat st {};
        if (fd < 0 || fstat(fd, &st) != 0) return -1;
        open_files.emplace_back(fd, static_cast<std::uint64_t>(st.st_size));
        total += static_cast<std::uint64_t>(st.st_size);
    }
    void *map = mmap(nullptr, total, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
    if (map == MAP_FAILED) return -1;
    auto *buffer = static_cast<char *>(map);
    const std::uint64_t start = now_ns();
    threads = std::max(1u, threads);
    std::vector<std::thread> workers;
    for (unsigned k = 0; k < threads; ++k) {
        workers.emplace_back([&, k] {  // thread k reads the k-th share of every file
            std::uint64_t base = 0;
            for (const auto &[fd, size] : open_files) {
                const std::uint64_t share = size / threads;
                std::uint64_t at = k * share;
                const std::uint64_t end = k + 1 == threads ? size : at + share;
                while (at < end) {
                    const ssize_t n = pread(fd, buffer + base + at,
                                            std::min<std::uint64_t>(end - at, 64u << 20),
                                            static_cast<off_t>(at));
                    if (n <= 0) break;
                    at += static_cast<std::uint64_t>(n);
                }
                base += size;
            }
        });
    }
    for (std::thread &w : workers) w.join();
    const double seconds = seconds_since(start);
    munmap(map, total);
    for (const auto &f : open_files) close(f.first);
    return seconds;
}

std::uint64_t evict(const std::vector<std::string> &files) {
    std::uint64_t left = 0;
    for (const std::string &f : files) {
        const int fd = open(f.c_str(), O_RDONLY | O_CLOEXEC);
        if (fd < 0) continue;
        fdatasync(fd);
        posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
        close(fd);
        left += cached_bytes(f);
    }
    return left;
}

std::uint64_t rss_bytes() { return status_field("VmRSS:"); }
std::uint64_t peak_rss_bytes() { return status_field("VmHWM:"); }

bool reset_peak_rss() {
    std::ofstream out("/proc/self/clear_refs");
    out << "5";
    out.flush();
    return static_cast<bool>(out);
}

}  // namespace ferry_load
