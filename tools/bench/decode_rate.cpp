#include "decode_rate.hpp"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <vector>

#include "codec/codec.hpp"
#include "device/device.hpp"
#include "strategies.hpp"

namespace bench {

DecodeRate measure_decode_rate(const Platform &platform, std::uint64_t raw_bytes) {
    std::vector<std::uint16_t> raw(raw_bytes / 2);
    fill_trained_bf16(raw.data(), raw.size() * 2, 4242);
    const std::vector<std::uint8_t> coded =
        ferry::codec::encode(raw.data(), raw.size() * 2, ferry::kernels::codec::kBf16);
    DecodeRate out;
    out.raw_bytes = raw.size() * 2;
    if (coded.empty()) return out;  // cannot happen on these weights: nothing to time
    out.ratio = static_cast<double>(coded.size()) / static_cast<double>(out.raw_bytes);

    const std::unique_ptr<ferry::Device> device = platform.make_device();
    void *host = device->alloc_pinned(coded.size());
    std::memcpy(host, coded.data(), coded.size());
    void *image = device->reserve(coded.size());
    void *slot = device->reserve(out.raw_bytes);
    ferry::kernels::DecodeJob job{};
    job.src_bytes = coded.size();
    job.dst_bytes = out.raw_bytes;
    job.coded = 1;
    ferry::kernels::assign_blocks(&job, 1);
    void *table = device->create_decode_table(&job, 1);
    ferry::kernels::DecodeResult *result = device->alloc_decode_results(1);
    ferry::Stream stream = device->create_stream();
    device->copy_h2d(image, host, coded.size(), stream);
    double best = 0.0;
    for (int i = 0; i <= 3; ++i) {  // the first is the warm-up
        const auto start = Clock::now();
        device->decode(table, image, slot, result, stream);
        device->stream_synchronize(stream);
        const double seconds = platform.since(start);
        if (result->status != 0) {
            std::fprintf(stderr, "ferry-bench: the device's decode failed: %s\n",
                         ferry::codec::status_name(
                             static_cast<ferry::codec::Status>(result->status)));
            std::exit(1);
        }
        if (i > 0 && seconds > 0.0) best = std::max(best, out.raw_bytes / seconds * 1e-9);
    }
    out.gbps = best;
    void *readback = device->alloc_pinned(out.raw_bytes);
    device->copy_d2h(readback, slot, out.raw_bytes, stream);
    device->stream_synchronize(stream);
    out.bitwise = std::memcmp(readback, raw.data(), out.raw_bytes) == 0;
    device->free_pinned(readback, out.raw_bytes);
    device->destroy_stream(stream);
    device->free_decode_results(result);
    device->destroy_decode_table(table);
    device->unreserve(slot);
    device->unreserve(image);
    device->free_pinned(host, coded.size());
    return out;
}

}  // namespace bench
