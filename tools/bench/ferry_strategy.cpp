// The ferry strategy: the model streamed through the runtime's public C API.
#include <cstring>
#include <random>
#include <vector>

#include "check.hpp"
#include "ferry/ferry.h"
#include "core/runtime.hpp"
#include "strategies.hpp"

namespace bench {

void fill_trained_bf16(void *host, std::uint64_t bytes, std::uint64_t seed) {
    std::mt19937_64 rng(seed);
    std::normal_distribution<float> normal(0.0f, 0.02f);
    auto *out = static_cast<std::uint16_t *>(host);
    for (std::uint64_t i = 0; i < bytes / 2; ++i) {
        const float x = normal(rng);
        std::uint32_t u;
        std::memcpy(&u, &x, sizeof u);
        out[i] = static_cast<std::uint16_t>(u >> 16);
    }
}

Measured run_ferry(const RunSpec &spec, bool compress) {
    const Model &model = *spec.model;
    const Platform &platform = *spec.platform;
    const std::uint64_t rss_before = rss_bytes();
    if (!platform.cuda()) Platform::export_sim_options(platform.sim());

    ferry_config config;
    ferry_config_init(&config);
    config.backend = platform.cuda() ? FERRY_BACKEND_CUDA : FERRY_BACKEND_SIM;
    config.vram_budget = spec.budget;
    config.slots_per_class = spec.slots_per_class;
    config.name = "ferry-bench";
    config.compress = compress ? 1 : 0;
    ferry_runtime *rt = nullptr;
    check(ferry_create(&config, &rt), "ferry_create");

    std::vector<ferry_group> groups(model.groups.size());
    std::vector<std::vector<ferry_tensor>> tensors(model.groups.size());
    for (std::size_t g = 0; g < model.groups.size(); ++g) {
        const GroupSpec &group = model.groups[g];
        check(ferry_group_define(rt, group.name.c_str(), &groups[g]), "ferry_group_define");
        for (const TensorSpec &t : group.tensors) {
            const std::int64_t shape[1] = {static_cast<std::int64_t>(t.bytes / 2)};
            ferry_tensor tensor;
            check(ferry_tensor_define(rt, groups[g], t.name.c_str(), t.bytes, FERRY_DTYPE_BF16,
                                      1, shape, 0, &tensor),
                  "ferry_tensor_define");
            tensors[g].push_back(tensor);
        }
    }
    check(ferry_schedule_declare(rt, groups.data(), groups.size()), "ferry_schedule_declare");
    check(ferry_plan(rt), "ferry_plan");
    for (std::size_t g = 0; g < model.groups.size(); ++g) {
        for (std::size_t t = 0; t < tensors[g].size(); ++t) {
            void *host = nullptr;
            check(ferry_tensor_host_ptr(rt, tensors[g][t], &host), "ferry_tensor_host_ptr");
            if (compress) fill_trained_bf16(host, model.groups[g].tensors[t].bytes, g * 1000 + t);
            else std::memset(host, 1, model.groups[g].tensors[t].bytes);
        }
    }
    check(ferry_seal(rt), "ferry_seal");

    ferry::Device &device = ferry_runtime_impl(rt).device();
    ferry::Stream compute = device.create_stream();
    auto pass = [&] {
        for (std::size_t g = 0; g < groups.size(); ++g) {
            check(ferry_acquire(rt, groups[g], compute), "ferry_acquire");
            platform.compute(device, compute, spec.compute_s[g]);
            check(ferry_release(rt, groups[g], compute), "ferry_release");
        }
    };
    // The first of seconds_per_pass's passes is the warm-up: count from the second on.
    ferry_stats before{};
    bool warm = false;
    // After the warm-up, ferry_synchronize is where the runtime re-plans by the compute it
    // timed on that pass (core/replan.cpp), as an application between passes.
    auto drain = [&] {
        device.stream_synchronize(compute);
        if (!warm) {
            check(ferry_synchronize(rt), "ferry_synchronize");
            before = stats_of(rt);
        }
        warm = true;
    };
    Measured m;
    m.name = compress ? "ferry-z" : "ferry";
    m.seconds_per_pass = seconds_per_pass(spec, pass, drain);
    const ferry_stats after = stats_of(rt);
    m.h2d_bytes_per_pass = (after.bytes_h2d - before.bytes_h2d) / spec.passes;
    m.d2h_bytes_per_pass = (after.bytes_d2h - before.bytes_d2h) / spec.passes;
    m.vram_peak_bytes = after.slab_bytes + after.slab_staging_bytes;
    m.compressed_bytes_per_pass =
        (after.bytes_h2d_compressed - before.bytes_h2d_compressed) / spec.passes;
    m.decoded_bytes_per_pass = (after.bytes_decoded - before.bytes_decoded) / spec.passes;
    if (after.host_compressed_raw_bytes > 0) {
        m.host_ratio = static_cast<double>(after.host_compressed_bytes) /
                       static_cast<double>(after.host_compressed_raw_bytes);
    }
    m.host_pin_s = after.host_pin_ns * 1e-9;
    m.encode_s = after.encode_ns * 1e-9;
    m.encoded_raw_bytes = after.host_compressed_raw_bytes;
    m.host_rss_bytes = rss_growth_since(rss_before);
    m.host_pinned_bytes = after.host_pinned_bytes;
    // The installed plan in the planner's pass-time model, with the compute that ran.
    ferry::PassModelInput model_input = ferry_runtime_impl(rt).pass_model();
    model_input.compute_s = spec.compute_s;
    model_input.link_bytes_per_s = spec.link_gbps * 1e9;
    model_input.copy_latency_s = platform.cuda() ? 0.0 : platform.sim().latency_us * 1e-6;
    m.modeled_seconds_per_pass = ferry::model_pass(model_input, spec.passes).seconds_per_pass;
    const std::uint64_t misses = after.misses - before.misses;
    m.overhead = misses > 0 ? std::to_string(misses / spec.passes) +
                                  " prefetch misses per pass, each a copy the compute waits for"
                            : "idle link time between copies";
    device.destroy_stream(compute);
    check(ferry_destroy(rt), "ferry_destroy");
    return m;
}

}  // namespace bench
