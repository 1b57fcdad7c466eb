#include "platform.hpp"

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>

#include "base/error.hpp"
#include "device/sim_link.hpp"
#if FERRY_BENCH_CUDA
#include "busy.hpp"
#endif

namespace bench {
namespace {

// Sim compute: the stream's thread is busy until the deadline, as a GPU's SMs would be.
void busy_host(void *user) {
    const auto wall_ns = static_cast<std::int64_t>(reinterpret_cast<std::uintptr_t>(user));
    ferry::sim_wait_until(Clock::now() + std::chrono::nanoseconds(wall_ns));
}

}  // namespace

Platform::Platform(bool cuda, const LinkModel &link, double model_scale) : cuda_(cuda) {
    sim_.h2d_gbps = link.pinned_gbps;
    sim_.d2h_gbps = link.pinned_gbps;
    sim_.pageable_h2d_gbps = link.pageable_h2d_gbps;
    sim_.pageable_d2h_gbps = link.pageable_d2h_gbps;
    // Bytes and compute shrink with the model; so does the per-call cost, which keeps a
    // scaled run in the full-size run's proportions.
    sim_.latency_us = link.latency_us * model_scale;
    sim_.time_scale = link.time_scale;
    device_name_ = make_device()->name();
}

std::unique_ptr<ferry::Device> Platform::make_device() const {
    return cuda_ ? ferry::make_cuda_device(0) : ferry::make_sim_device(sim_);
}

void Platform::compute(ferry::Device &device, ferry::Stream stream, double seconds) const {
#if FERRY_BENCH_CUDA
    if (cuda_) {
        ferry::kernels::launch_busy(stream, static_cast<std::uint64_t>(seconds * 1e9));
        return;
    }
#endif
    const auto wall_ns = static_cast<std::uintptr_t>(seconds * sim_.time_scale * 1e9);
    device.launch_host(stream, busy_host, reinterpret_cast<void *>(wall_ns));
}

double Platform::since(Clock::time_point start) const {
    const double wall = std::chrono::duration<double>(Clock::now() - start).count();
    return cuda_ ? wall : wall / sim_.time_scale;
}

double Platform::measure_peak_h2d(std::uint64_t bytes) const {
    const std::unique_ptr<ferry::Device> device = make_device();
    void *host = device->alloc_pinned(bytes);
    void *dev = device->reserve(bytes);
    std::memset(host, 1, bytes);
    ferry::Stream stream = device->create_stream();
    device->copy_h2d(dev, host, bytes, stream);  // warm-up
    device->stream_synchronize(stream);
    double best = 0.0;
    for (int i = 0; i < 3; ++i) {
        const auto start = Clock::now();
        device->copy_h2d(dev, host, bytes, stream);
        device->stream_synchronize(stream);
        best = std::max(best, static_cast<double>(bytes) / since(start) / 1e9);
    }
    device->destroy_stream(stream);
    device->unreserve(dev);
    device->free_pinned(host, bytes);
    return best;
}

void Platform::export_sim_options(const ferry::SimOptions &sim) {
    auto put = [](const char *name, double value) {
        char text[64];
        std::snprintf(text, sizeof text, "%.17g", value);
        setenv(name, text, 1);
    };
    put("FERRY_SIM_H2D_GBPS", sim.h2d_gbps);
    put("FERRY_SIM_D2H_GBPS", sim.d2h_gbps);
    put("FERRY_SIM_PAGEABLE_H2D_GBPS", sim.pageable_h2d_gbps);
    put("FERRY_SIM_PAGEABLE_D2H_GBPS", sim.pageable_d2h_gbps);
    put("FERRY_SIM_LATENCY_US", sim.latency_us);
    put("FERRY_SIM_TIME_SCALE", sim.time_scale);
}

std::uint64_t rss_bytes() {
    std::ifstream statm("/proc/self/statm");
    std::uint64_t pages = 0;
    std::uint64_t resident = 0;
    statm >> pages >> resident;
    return resident * static_cast<std::uint64_t>(sysconf(_SC_PAGESIZE));
}

std::uint64_t rss_growth_since(std::uint64_t before) {
    const std::uint64_t now = rss_bytes();
    return now > before ? now - before : 0;
}

}  // namespace bench
