// The three baselines, on ferry's device interface directly: what offloading does
// without ferry. See strategies.hpp.
#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "strategies.hpp"

namespace bench {
namespace {

// The model's bytes on the host, group images one after the other.
struct HostLayout {
    std::vector<std::uint64_t> group_offset;
    std::vector<std::vector<std::uint64_t>> tensor_offset;
    std::uint64_t bytes = 0;
    std::uint64_t largest_image = 0;
};

HostLayout lay_out(const Model &model) {
    HostLayout layout;
    for (const GroupSpec &group : model.groups) {
        std::uint64_t image = 0;
        layout.tensor_offset.push_back(tensor_offsets(group, &image));
        layout.group_offset.push_back(layout.bytes);
        layout.bytes += image;
        layout.largest_image = std::max(layout.largest_image, image);
    }
    return layout;
}

// writeback and sync: every copy synchronous, from ordinary (pageable) host memory.
Measured run_pageable(const RunSpec &spec, bool write_back) {
    const Model &model = *spec.model;
    const Platform &platform = *spec.platform;
    const std::uint64_t rss_before = rss_bytes();
    const std::unique_ptr<ferry::Device> device = platform.make_device();
    const HostLayout layout = lay_out(model);
    std::vector<std::byte> host(layout.bytes, std::byte{1});
    auto *dev = static_cast<std::byte *>(device->reserve(layout.largest_image));

    auto pass = [&] {
        for (std::size_t g = 0; g < model.groups.size(); ++g) {
            const GroupSpec &group = model.groups[g];
            const std::vector<std::uint64_t> &offset = layout.tensor_offset[g];
            const std::byte *image = host.data() + layout.group_offset[g];
            for (std::size_t t = 0; t < group.tensors.size(); ++t) {
                device->copy_h2d(dev + offset[t], image + offset[t], group.tensors[t].bytes, nullptr);
                device->stream_synchronize(nullptr);
            }
            platform.compute(*device, nullptr, spec.compute_s[g]);
            if (!write_back) continue;
            // The weights come back as new host tensors: fresh pageable memory each time.
            for (std::size_t t = 0; t < group.tensors.size(); ++t) {
                void *fresh = std::malloc(group.tensors[t].bytes);
                device->copy_d2h(fresh, dev + offset[t], group.tensors[t].bytes, nullptr);
                device->stream_synchronize(nullptr);
                std::free(fresh);
            }
        }
    };
    Measured m;
    m.name = write_back ? "writeback" : "sync";
    m.seconds_per_pass = seconds_per_pass(spec, pass, [&] { device->device_synchronize(); });
    m.h2d_bytes_per_pass = model.bytes;
    m.d2h_bytes_per_pass = write_back ? model.bytes : 0;
    m.vram_peak_bytes = layout.largest_image;
    m.host_rss_bytes = rss_growth_since(rss_before);
    m.overhead = write_back ? "a synchronous D2H of every weight into fresh pageable memory"
                            : "synchronous pageable copies, never overlapped with compute";
    device->unreserve(dev);
    return m;
}

}  // namespace

Measured run_writeback(const RunSpec &spec) { return run_pageable(spec, true); }

Measured run_sync(const RunSpec &spec) { return run_pageable(spec, false); }

Measured run_stream(const RunSpec &spec) {
    const Model &model = *spec.model;
    const Platform &platform = *spec.platform;
    const std::uint64_t rss_before = rss_bytes();
    const std::unique_ptr<ferry::Device> device = platform.make_device();
    const HostLayout layout = lay_out(model);
    auto *pinned = static_cast<std::byte *>(device->alloc_pinned(layout.bytes));
    std::memset(pinned, 1, layout.bytes);
    std::byte *buffer[2];
    ferry::Event freed[2];  // recorded after the compute that last read each buffer
    for (int k = 0; k < 2; ++k) {
        buffer[k] = static_cast<std::byte *>(device->reserve(layout.largest_image));
        freed[k] = device->create_event();
    }
    ferry::Stream side = device->create_stream();
    ferry::Stream compute = device->create_stream();

    auto onload = [&](std::size_t g) {
        const int k = static_cast<int>(g % 2);
        device->stream_wait(side, freed[k]);
        const GroupSpec &group = model.groups[g];
        for (std::size_t t = 0; t < group.tensors.size(); ++t) {
            const std::uint64_t at = layout.tensor_offset[g][t];
            device->copy_h2d(buffer[k] + at, pinned + layout.group_offset[g] + at,
                             group.tensors[t].bytes, side);
        }
    };
    auto pass = [&] {
        onload(0);
        for (std::size_t g = 0; g < model.groups.size(); ++g) {
            device->stream_synchronize(side);  // the host waits until group g is there
            if (g + 1 < model.groups.size()) onload(g + 1);
            platform.compute(*device, compute, spec.compute_s[g]);
            device->record(freed[g % 2], compute);
        }
    };
    Measured m;
    m.name = "stream";
    m.seconds_per_pass = seconds_per_pass(spec, pass, [&] { device->device_synchronize(); });
    m.h2d_bytes_per_pass = model.bytes;
    m.vram_peak_bytes = 2 * layout.largest_image;
    m.host_rss_bytes = rss_growth_since(rss_before);
    m.host_pinned_bytes = layout.bytes;
    m.overhead = "a copy call per tensor and a host wait before each group";
    device->destroy_stream(side);
    device->destroy_stream(compute);
    for (int k = 0; k < 2; ++k) {
        device->destroy_event(freed[k]);
        device->unreserve(buffer[k]);
    }
    device->free_pinned(pinned, layout.bytes);
    return m;
}

}  // namespace bench
