// ferry-load: measures loading safetensors into ferry, against plain reads of the files.
// What the measurements need from the system: the plain sequential read they are compared
// with (cat), evicting files from the page cache, and the process's resident memory.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace ferry_load {

// Seconds `cat FILES > /dev/null` takes; negative when cat fails.
double time_cat(const std::vector<std::string> &files);

// Seconds to pread the files, in 64 MiB requests on `threads` threads, into one buffer
// of their size faulted in beforehand: the memory-bound ceiling of any loader that puts
// the bytes in RAM (cat's 128 KiB buffer stays in the CPU's cache, and is faster).
double time_read_into_memory(const std::vector<std::string> &files, unsigned threads);

// Drops the files' pages from the page cache (posix_fadvise DONTNEED after fdatasync):
// a cold read without root. Returns the bytes still cached after it (mincore), so that a
// "cold" figure that was not cold can be told.
std::uint64_t evict(const std::vector<std::string> &files);

// Current and peak resident set of this process (VmRSS, VmHWM), bytes.
std::uint64_t rss_bytes();
std::uint64_t peak_rss_bytes();
// Resets VmHWM to the current RSS (writes 5 to /proc/self/clear_refs). False when the
// kernel refuses; the peak is then since the process started.
bool reset_peak_rss();

double seconds_since(std::uint64_t start_ns);
std::uint64_t now_ns();

}  // namespace ferry_load
