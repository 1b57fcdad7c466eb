// The five ways of running a model that does not fit in VRAM, each timed over the same
// passes of the same model:
//   writeback  per tensor: synchronous H2D from pageable memory, compute, then synchronous
//              D2H into freshly allocated host memory (group offload without streams,
//              before the writeback was dropped).
//   sync       the same without the D2H.
//   stream     per-tensor copies of the next group on a side stream from pinned memory,
//              a host wait before each group; one group deep, nothing resident.
//   partial    the strongest peer design (ComfyUI's): whole groups resident, largest first,
//              in the budget less two slots; the others copied per tensor from pinned
//              memory on two round-robin copy streams, with event waits, no host wait.
//   ferry      the runtime through its C API: one DMA per group, resident groups,
//              event-driven prefetch, no writeback.
//   ferry-z    ferry with compressed streaming (--compress): bf16 weights encoded at seal,
//              decoded on the device after each (smaller) copy.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "platform.hpp"
#include "presets.hpp"

namespace bench {

struct RunSpec {
    const Model *model = nullptr;
    const Platform *platform = nullptr;
    std::vector<double> compute_s;  // per group, modeled seconds
    int passes = 1;                 // timed, after one warm-up pass
    std::uint64_t budget = 0;       // ferry's VRAM budget
    std::uint32_t slots_per_class = 2;
    double link_gbps = 25.0;        // the raw peak H2D, for ferry's pass-time model
};

// What one strategy measured, per timed pass.
struct Measured {
    std::string name;
    double seconds_per_pass = 0.0;  // modeled
    std::uint64_t h2d_bytes_per_pass = 0;
    std::uint64_t d2h_bytes_per_pass = 0;
    std::uint64_t vram_peak_bytes = 0;    // device memory the strategy reserved
    std::uint64_t host_rss_bytes = 0;     // process RSS growth while it ran
    std::uint64_t host_pinned_bytes = 0;
    std::string overhead;                 // what costs time beyond its floor
    double modeled_seconds_per_pass = 0;  // ferry: its plan's pass in the planner's model
    // ferry-z: compressed bytes copied and the raw bytes they were decoded into, per pass,
    // and the ratio of the host store's compressed images to their raw images.
    std::uint64_t compressed_bytes_per_pass = 0;
    std::uint64_t decoded_bytes_per_pass = 0;
    double host_ratio = 0.0;
    // ferry, ferry-z: wall seconds ferry_plan took to allocate and pin the host store, and
    // ferry_seal to encode the compressed images (stats host_pin_ns, encode_ns).
    double host_pin_s = 0.0;
    double encode_s = 0.0;
    std::uint64_t encoded_raw_bytes = 0;  // the raw images of the compressed groups
};

Measured run_writeback(const RunSpec &spec);
Measured run_sync(const RunSpec &spec);
Measured run_stream(const RunSpec &spec);
Measured run_partial(const RunSpec &spec);
// partial's resident groups for image sizes `bytes` and a budget (all false when two
// slots of the smallest group do not fit).
std::vector<bool> partial_residents(const std::vector<std::uint64_t> &bytes, std::uint64_t budget);
// Exits with a message if the C API fails. compress: ferry-z, the weights drawn as trained
// bf16 weights are (normal, std 0.02) and streamed compressed.
Measured run_ferry(const RunSpec &spec, bool compress = false);

// Fills `bytes` at `host` with bf16 of a normal distribution of std 0.02: the exponents
// of trained weights (ferry_strategy.cpp).
void fill_trained_bf16(void *host, std::uint64_t bytes, std::uint64_t seed);

// Runs one warm-up pass, then spec.passes timed ones; `drain` waits for all their work.
// Returns modeled seconds per timed pass.
double seconds_per_pass(const RunSpec &spec, const std::function<void()> &pass,
                        const std::function<void()> &drain);

// Tensor offsets inside a group image, aligned as ferry packs them (ferry::kImageAlignment),
// and the image's size.
std::vector<std::uint64_t> tensor_offsets(const GroupSpec &group, std::uint64_t *image_bytes);

}  // namespace bench
