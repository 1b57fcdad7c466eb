// The four baselines, on ferry's device interface directly: what offloading does
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

// Which groups `partial` keeps resident: whole groups, largest first (ties in pass
// order), while they fit the budget less two slots of the largest group left to stream.
// Each size is tried as that largest streamed size; the most resident bytes win.
std::vector<bool> partial_residents(const std::vector<std::uint64_t> &bytes,
                                    std::uint64_t budget) {
    std::vector<std::size_t> by_size(bytes.size());
    for (std::size_t g = 0; g < bytes.size(); ++g) by_size[g] = g;
    std::stable_sort(by_size.begin(), by_size.end(),
                     [&](std::size_t a, std::size_t b) { return bytes[a] > bytes[b]; });
    std::vector<bool> best(bytes.size(), false);
    std::uint64_t best_resident = 0;
    for (std::size_t first : by_size) {
        const std::uint64_t slot = bytes[first];
        if (2 * slot > budget) continue;
        std::vector<bool> resident(bytes.size(), false);
        std::uint64_t used = 0;
        bool fits = true;
        for (std::size_t g : by_size) {
            if (used + bytes[g] <= budget - 2 * slot) {
                resident[g] = true;
                used += bytes[g];
            } else if (bytes[g] > slot) {
                fits = false;  // streamed, but larger than the slots
                break;
            }
        }
        if (fits && (used > best_resident || best_resident == 0)) {
            best = resident;
            best_resident = used;
        }
    }
    return best;
}

Measured run_partial(const RunSpec &spec) {
    const Model &model = *spec.model;
    const Platform &platform = *spec.platform;
    const std::uint64_t rss_before = rss_bytes();
    const std::unique_ptr<ferry::Device> device = platform.make_device();
    const HostLayout layout = lay_out(model);
    std::vector<std::uint64_t> image_bytes;
    for (std::size_t g = 0; g < model.groups.size(); ++g) {
        const std::uint64_t end =
            g + 1 < model.groups.size() ? layout.group_offset[g + 1] : layout.bytes;
        image_bytes.push_back(end - layout.group_offset[g]);
    }
    const std::vector<bool> resident = partial_residents(image_bytes, spec.budget);
    std::uint64_t resident_bytes = 0, slot_bytes = 0, streamed_bytes = 0;
    for (std::size_t g = 0; g < image_bytes.size(); ++g) {
        if (resident[g]) {
            resident_bytes += image_bytes[g];
        } else {
            slot_bytes = std::max(slot_bytes, image_bytes[g]);
            streamed_bytes += model.groups[g].bytes;
        }
    }
    auto *pinned = static_cast<std::byte *>(device->alloc_pinned(layout.bytes));
    std::memset(pinned, 1, layout.bytes);
    auto *slab = static_cast<std::byte *>(device->reserve(resident_bytes + 2 * slot_bytes));
    std::vector<std::byte *> at(model.groups.size(), nullptr);  // resident copies
    std::uint64_t offset = 0;
    for (std::size_t g = 0; g < model.groups.size(); ++g) {
        if (!resident[g]) continue;
        at[g] = slab + offset;
        device->copy_h2d(at[g], pinned + layout.group_offset[g], image_bytes[g], nullptr);
        offset += image_bytes[g];
    }
    device->device_synchronize();  // the resident blocks are in place before any compute
    std::byte *buffer[2] = {slab + offset, slab + offset + slot_bytes};
    ferry::Stream side[2], compute = device->create_stream();
    ferry::Event ready[2], freed[2];
    for (int k = 0; k < 2; ++k) {
        side[k] = device->create_stream();
        ready[k] = device->create_event();
        freed[k] = device->create_event();
    }
    std::uint64_t streamed = 0;  // streamed groups so far: they alternate buffer and stream
    auto pass = [&] {
        for (std::size_t g = 0; g < model.groups.size(); ++g) {
            if (!resident[g]) {
                const int k = static_cast<int>(streamed++ % 2);
                device->stream_wait(side[k], freed[k]);  // the buffer's last reader is done
                const GroupSpec &group = model.groups[g];
                for (std::size_t t = 0; t < group.tensors.size(); ++t) {
                    const std::uint64_t in = layout.tensor_offset[g][t];
                    device->copy_h2d(buffer[k] + in, pinned + layout.group_offset[g] + in,
                                     group.tensors[t].bytes, side[k]);
                }
                device->record(ready[k], side[k]);
                device->stream_wait(compute, ready[k]);
                platform.compute(*device, compute, spec.compute_s[g]);
                device->record(freed[k], compute);
            } else {
                platform.compute(*device, compute, spec.compute_s[g]);
            }
        }
    };
    Measured m;
    m.name = "partial";
    m.seconds_per_pass = seconds_per_pass(spec, pass, [&] { device->device_synchronize(); });
    m.h2d_bytes_per_pass = streamed_bytes;
    m.vram_peak_bytes = resident_bytes + 2 * slot_bytes;
    m.host_rss_bytes = rss_growth_since(rss_before);
    m.host_pinned_bytes = layout.bytes;
    m.overhead = "copies that outlast the compute before them while the link idles through "
                 "runs of resident blocks, and a copy call per tensor";
    device->destroy_stream(compute);
    for (int k = 0; k < 2; ++k) {
        device->destroy_stream(side[k]);
        device->destroy_event(ready[k]);
        device->destroy_event(freed[k]);
    }
    device->unreserve(slab);
    device->free_pinned(pinned, layout.bytes);
    return m;
}

}  // namespace bench
