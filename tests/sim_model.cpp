#include "sim_model.hpp"

#include <cstring>
#include <stdexcept>

#include "core/runtime.hpp"

namespace ferry_test {
namespace {

std::uint64_t mix(std::uint64_t x) {  // splitmix64 finaliser
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

// Writes or compares `bytes` bytes of the pattern; returns the first bad byte or -1.
std::int64_t compare_pattern(const unsigned char *data, std::uint64_t bytes, std::uint32_t g,
                             std::uint32_t t, std::uint64_t version) {
    for (std::uint64_t at = 0; at < bytes; at += 8) {
        const std::uint64_t word = pattern_word(g, t, at / 8, version);
        const std::uint64_t n = bytes - at < 8 ? bytes - at : 8;
        if (std::memcmp(data + at, &word, n) != 0) {
            for (std::uint64_t k = 0; k < n; ++k) {
                if (data[at + k] != reinterpret_cast<const unsigned char *>(&word)[k]) {
                    return static_cast<std::int64_t>(at + k);
                }
            }
        }
    }
    return -1;
}

void fill_pattern(unsigned char *data, std::uint64_t bytes, std::uint32_t g, std::uint32_t t,
                  std::uint64_t version) {
    for (std::uint64_t at = 0; at < bytes; at += 8) {
        const std::uint64_t word = pattern_word(g, t, at / 8, version);
        std::memcpy(data + at, &word, bytes - at < 8 ? bytes - at : 8);
    }
}

struct CheckTask {
    Failures *failures;
    std::uint32_t group;
    std::vector<std::uint32_t> tensor_index;
    std::vector<unsigned char *> device;
    std::vector<std::uint64_t> bytes;
    std::vector<bool> is_mutable;
    std::vector<std::uint64_t> version;  // expected version of each tensor

    static void run(void *user) {
        auto *task = static_cast<CheckTask *>(user);
        for (std::size_t i = 0; i < task->device.size(); ++i) {
            const std::int64_t bad =
                compare_pattern(task->device[i], task->bytes[i], task->group,
                                task->tensor_index[i], task->version[i]);
            if (bad >= 0) {
                task->failures->add(
                    "group " + std::to_string(task->group) + " tensor " +
                    std::to_string(task->tensor_index[i]) + ": byte " + std::to_string(bad) +
                    " is " + std::to_string(task->device[i][bad]) + " (expected version " +
                    std::to_string(task->version[i]) + ")");
            } else if (task->is_mutable[i]) {
                fill_pattern(task->device[i], task->bytes[i], task->group,
                             task->tensor_index[i], task->version[i] + 1);
            }
        }
        delete task;
    }
};

}  // namespace

std::uint64_t pattern_word(std::uint32_t group, std::uint32_t tensor, std::uint64_t i,
                           std::uint64_t version) {
    return mix((static_cast<std::uint64_t>(group) << 44) ^
               (static_cast<std::uint64_t>(tensor) << 32) ^ i) +
           version;
}

void Failures::add(const std::string &what) {
    if (count++ == 0) {
        std::lock_guard<std::mutex> lock(mutex);
        first = what;
    }
}

void check(ferry_status status, const char *call) {
    if (status != FERRY_OK) {
        throw std::runtime_error(std::string(call) + ": " + ferry_status_string(status) + ": " +
                                 ferry_last_error());
    }
}

SimModel::SimModel(const ModelSpec &spec) : spec_(spec) {
    ferry_config config;
    ferry_config_init(&config);
    config.backend = FERRY_BACKEND_SIM;
    config.vram_budget = spec.budget;
    config.slots_per_class = spec.slots_per_class;
    config.synchronous = spec.synchronous ? 1 : 0;
    config.name = "sim-model";
    config.sim_chaos = spec.chaos ? 1 : 0;
    config.sim_seed = spec.seed;
    config.sim_h2d_gbps = spec.h2d_gbps;
    config.sim_d2h_gbps = spec.d2h_gbps;
    config.sim_latency_us = spec.latency_us;
    config.verify = spec.verify ? 1 : 0;
    config.pinned_cap_bytes = spec.pinned_cap;
    config.pageable_fallback = spec.pageable_fallback ? 1 : 0;
    check(ferry_create(&config, &runtime_), "ferry_create");
    try {
        for (std::size_t g = 0; g < spec.groups.size(); ++g) {
            ferry_group group;
            check(ferry_group_define(runtime_, ("g" + std::to_string(g)).c_str(), &group),
                  "ferry_group_define");
            groups_.push_back(group);
            tensors_.emplace_back();
            versions_.emplace_back(spec.groups[g].size(), 0);
            for (std::size_t t = 0; t < spec.groups[g].size(); ++t) {
                const TensorSpec &ts = spec.groups[g][t];
                ferry_tensor tensor;
                check(ferry_tensor_define(runtime_, group, ("t" + std::to_string(t)).c_str(),
                                          ts.bytes, FERRY_DTYPE_U8, 1,
                                          reinterpret_cast<const int64_t *>(&ts.bytes),
                                          ts.is_mutable ? FERRY_TENSOR_MUTABLE : 0, &tensor),
                      "ferry_tensor_define");
                tensors_[g].push_back(tensor);
            }
        }
        if (!spec.declared_schedule.empty()) {
            std::vector<ferry_group> order;
            for (std::uint32_t g : spec.declared_schedule) order.push_back(groups_[g]);
            check(ferry_schedule_declare(runtime_, order.data(), order.size()),
                  "ferry_schedule_declare");
        }
        check(ferry_plan(runtime_), "ferry_plan");
        for (std::size_t g = 0; g < groups_.size(); ++g) {
            for (std::size_t t = 0; t < tensors_[g].size(); ++t) {
                void *host = nullptr;
                check(ferry_tensor_host_ptr(runtime_, tensors_[g][t], &host),
                      "ferry_tensor_host_ptr");
                fill_pattern(static_cast<unsigned char *>(host), spec.groups[g][t].bytes,
                             static_cast<std::uint32_t>(g), static_cast<std::uint32_t>(t), 0);
            }
        }
        check(ferry_seal(runtime_), "ferry_seal");
    } catch (...) {
        ferry_destroy(runtime_);
        throw;
    }
}

SimModel::~SimModel() {
    drain();
    for (void *stream : streams_) ferry_runtime_impl(runtime_).device().destroy_stream(stream);
    ferry_destroy(runtime_);
}

bool SimModel::has_mutable() const {
    for (const auto &group : spec_.groups) {
        for (const TensorSpec &t : group) {
            if (t.is_mutable) return true;
        }
    }
    return false;
}

void *SimModel::create_stream() {
    void *stream = ferry_runtime_impl(runtime_).device().create_stream();
    streams_.push_back(stream);
    return stream;
}

ferry_status SimModel::run_group(std::size_t g, void *stream, Failures &failures) {
    const ferry_status acquired = ferry_acquire(runtime_, groups_[g], stream);
    if (acquired != FERRY_OK) return acquired;
    auto *task = new CheckTask{&failures, static_cast<std::uint32_t>(g), {}, {}, {}, {}, {}};
    for (std::size_t t = 0; t < tensors_[g].size(); ++t) {
        void *device = nullptr;
        const ferry_status status = ferry_tensor_device_ptr(runtime_, tensors_[g][t], &device);
        if (status != FERRY_OK) {
            delete task;
            ferry_release(runtime_, groups_[g], stream);
            return status;
        }
        const bool is_mutable = spec_.groups[g][t].is_mutable;
        task->tensor_index.push_back(static_cast<std::uint32_t>(t));
        task->device.push_back(static_cast<unsigned char *>(device));
        task->bytes.push_back(spec_.groups[g][t].bytes);
        task->is_mutable.push_back(is_mutable);
        task->version.push_back(is_mutable ? versions_[g][t] : 0);
    }
    for (std::size_t t = 0; t < tensors_[g].size(); ++t) {
        if (spec_.groups[g][t].is_mutable) ++versions_[g][t];  // the check bumps them
    }
    ferry_runtime_impl(runtime_).device().launch_host(stream, &CheckTask::run, task);
    return ferry_release(runtime_, groups_[g], stream);
}

void SimModel::drain() {
    for (void *stream : streams_) {
        ferry_runtime_impl(runtime_).device().stream_synchronize(stream);
    }
}

bool SimModel::host_versions_current(Failures &failures) {
    const std::uint64_t before = failures.count.load();
    for (std::size_t g = 0; g < groups_.size(); ++g) {
        for (std::size_t t = 0; t < tensors_[g].size(); ++t) {
            if (!spec_.groups[g][t].is_mutable) continue;
            void *host = nullptr;
            check(ferry_tensor_host_ptr(runtime_, tensors_[g][t], &host),
                  "ferry_tensor_host_ptr");
            const std::int64_t bad =
                compare_pattern(static_cast<unsigned char *>(host), spec_.groups[g][t].bytes,
                                static_cast<std::uint32_t>(g), static_cast<std::uint32_t>(t),
                                versions_[g][t]);
            if (bad >= 0) {
                failures.add("host copy of group " + std::to_string(g) + " tensor " +
                             std::to_string(t) + " is not at version " +
                             std::to_string(versions_[g][t]) + " (byte " +
                             std::to_string(bad) + ")");
            }
        }
    }
    return failures.count.load() == before;
}

void run_passes(SimModel &model, int passes, int streams, Failures &failures,
                std::mt19937_64 &rng) {
    std::vector<void *> compute;
    for (int s = 0; s < streams; ++s) compute.push_back(model.create_stream());
    std::vector<std::uint32_t> order = model.spec().declared_schedule;
    if (order.empty()) {
        for (std::uint32_t g = 0; g < model.group_count(); ++g) order.push_back(g);
    }
    for (int pass = 0; pass < passes; ++pass) {
        for (std::uint32_t g : order) {
            void *stream = compute.empty() ? nullptr : compute[rng() % compute.size()];
            const ferry_status status = model.run_group(g, stream, failures);
            if (status != FERRY_OK) {
                failures.add("group " + std::to_string(g) + ": " + ferry_status_string(status) +
                             ": " + ferry_last_error());
            }
        }
    }
}

ferry_stats SimModel::stats() const {
    ferry_stats stats;
    stats.struct_size = sizeof stats;
    check(ferry_stats_get(runtime_, &stats), "ferry_stats_get");
    return stats;
}

}  // namespace ferry_test
