#include "sim_model.hpp"

#include <algorithm>
#include <cstring>
#include <stdexcept>
#include <thread>

#include "core/runtime.hpp"
#include "safetensors_file.hpp"

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

}  // namespace

// Pinned host buffers for the checker, reused because alloc_pinned is slow on cuda (mmap
// and cudaHostRegister). A buffer is handed back by the host function that ends the stream
// work using it, so it is taken again only once the copies into and out of it are done.
class ScratchPool {
   public:
    struct Buffer {
        unsigned char *data = nullptr;
        std::size_t bytes = 0;
    };

    explicit ScratchPool(ferry::Device &device) : device_(device) {}
    ~ScratchPool() {
        for (const Buffer &buffer : all_) device_.free_pinned(buffer.data, buffer.bytes);
    }
    ScratchPool(const ScratchPool &) = delete;
    ScratchPool &operator=(const ScratchPool &) = delete;

    // The smallest free buffer of at least `bytes`, else a new one.
    Buffer take(std::size_t bytes) {
        {
            std::lock_guard<std::mutex> lock(mutex_);
            auto best = free_.end();
            for (auto it = free_.begin(); it != free_.end(); ++it) {
                if (it->bytes >= bytes && (best == free_.end() || it->bytes < best->bytes)) {
                    best = it;
                }
            }
            if (best != free_.end()) {
                const Buffer buffer = *best;
                free_.erase(best);
                return buffer;
            }
        }
        std::size_t size = kSmallest;
        while (size < bytes) size *= 2;
        const Buffer buffer{static_cast<unsigned char *>(device_.alloc_pinned(size)), size};
        std::lock_guard<std::mutex> lock(mutex_);
        all_.push_back(buffer);
        return buffer;
    }

    // From host functions on streams: no device calls here (CUDA forbids them there).
    void give_back(const Buffer &buffer) {
        std::lock_guard<std::mutex> lock(mutex_);
        free_.push_back(buffer);
    }

   private:
    static constexpr std::size_t kSmallest = 64 << 10;
    ferry::Device &device_;
    std::mutex mutex_;
    std::vector<Buffer> free_;
    std::vector<Buffer> all_;  // freed at destruction, after the model's streams drained
};

namespace {

// The host function that ends one run_group check: compares what the copies brought into
// the scratch with the pattern, then hands the scratch back.
struct CheckTask {
    struct Seen {
        std::uint32_t tensor;
        std::size_t at;  // in the scratch
        std::uint64_t bytes;
        std::uint64_t version;  // expected
    };
    Failures *failures;
    ScratchPool *pool;
    ScratchPool::Buffer scratch;
    std::uint32_t group;
    std::vector<Seen> seen;

    static void run(void *user) {
        std::unique_ptr<CheckTask> task(static_cast<CheckTask *>(user));
        Failures &failures = *task->failures;
        std::uint64_t compared = 0;
        for (const Seen &s : task->seen) {
            const unsigned char *data = task->scratch.data + s.at;
            compared += s.bytes;
            const std::int64_t bad =
                compare_pattern(data, s.bytes, task->group, s.tensor, s.version);
            if (bad >= 0) {
                failures.add("group " + std::to_string(task->group) + " tensor " +
                             std::to_string(s.tensor) + ": byte " + std::to_string(bad) +
                             " is " + std::to_string(data[bad]) + " (expected version " +
                             std::to_string(s.version) + ")");
            }
        }
        task->pool->give_back(task->scratch);
        failures.bytes_checked += compared;
        ++failures.checked;
        --failures.pending;  // the last use of `failures`
    }
};

// Hands a scratch buffer back once the stream work before it is done.
struct GiveBack {
    ScratchPool *pool;
    ScratchPool::Buffer scratch;
    static void run(void *user) {
        std::unique_ptr<GiveBack> task(static_cast<GiveBack *>(user));
        task->pool->give_back(task->scratch);
    }
};

std::uint64_t round_up(std::uint64_t n, std::uint64_t to) { return (n + to - 1) / to * to; }

}  // namespace

std::uint64_t pattern_word(std::uint32_t group, std::uint32_t tensor, std::uint64_t i,
                           std::uint64_t version) {
    std::uint64_t word = mix((static_cast<std::uint64_t>(group) << 44) ^
                             (static_cast<std::uint64_t>(tensor) << 32) ^ i);
    // Each 16-bit half's exponent bits (14..7) become 0x76 + three of its random bits.
    std::uint64_t exponents = 0;
    for (int half = 0; half < 4; ++half) {
        const std::uint64_t e = 0x76 + ((word >> (16 * half)) & 7);
        exponents |= e << (16 * half + 7);
    }
    word = (word & 0x807F807F807F807FULL) | exponents;
    return word + version;
}

Failures::~Failures() {
    // A check still queued on a stream writes here when it runs: wait for it.
    while (pending.load() != 0) std::this_thread::yield();
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
    config.backend = test_backend();
    config.vram_budget = spec.budget;
    config.slots_per_class = spec.slots_per_class;
    config.synchronous = spec.synchronous ? 1 : 0;
    config.name = "test-model";
    config.sim_chaos = spec.chaos ? 1 : 0;
    config.sim_seed = spec.seed;
    config.sim_h2d_gbps = spec.h2d_gbps;
    config.sim_d2h_gbps = spec.d2h_gbps;
    config.sim_latency_us = spec.latency_us;
    config.verify = spec.verify ? 1 : 0;
    config.pinned_cap_bytes = spec.pinned_cap;
    config.pageable_fallback = spec.pageable_fallback ? 1 : 0;
    config.compress = spec.compress ? 1 : 0;
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
                const std::string name = spec.weights_path.empty()
                                             ? "t" + std::to_string(t)
                                             : "g" + std::to_string(g) + ".t" + std::to_string(t);
                const bool bf16 = spec.compress && !ts.is_mutable && ts.bytes % 2 == 0;
                const std::int64_t elements =
                    static_cast<std::int64_t>(bf16 ? ts.bytes / 2 : ts.bytes);
                check(ferry_tensor_define(runtime_, group, name.c_str(), ts.bytes,
                                          bf16 ? FERRY_DTYPE_BF16 : FERRY_DTYPE_U8, 1,
                                          &elements,
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
        if (!spec.weights_path.empty()) load_weights();
        for (std::size_t g = 0; g < groups_.size() && spec.weights_path.empty(); ++g) {
            for (std::size_t t = 0; t < tensors_[g].size(); ++t) {
                void *host = nullptr;
                check(ferry_tensor_host_ptr(runtime_, tensors_[g][t], &host),
                      "ferry_tensor_host_ptr");
                fill_pattern(static_cast<unsigned char *>(host), spec.groups[g][t].bytes,
                             static_cast<std::uint32_t>(g), static_cast<std::uint32_t>(t), 0);
            }
        }
        for (std::size_t g = 0; g < spec.declared_compute_ns.size(); ++g) {
            check(ferry_group_compute_declare(runtime_, groups_[g], spec.declared_compute_ns[g]),
                  "ferry_group_compute_declare");
        }
        check(ferry_seal(runtime_), "ferry_seal");
    } catch (...) {
        ferry_destroy(runtime_);
        throw;
    }
    scratch_ = std::make_unique<ScratchPool>(ferry_runtime_impl(runtime_).device());
}

std::vector<unsigned char> pattern_bytes(std::uint32_t group, std::uint32_t tensor,
                                         std::uint64_t bytes) {
    std::vector<unsigned char> out(bytes);
    fill_pattern(out.data(), bytes, group, tensor, 0);
    return out;
}

void SimModel::load_weights() {
    std::vector<FileEntry> entries;
    for (std::size_t g = 0; g < spec_.groups.size(); ++g) {
        for (std::size_t t = 0; t < spec_.groups[g].size(); ++t) {
            const std::uint64_t bytes = spec_.groups[g][t].bytes;
            entries.push_back({"g" + std::to_string(g) + ".t" + std::to_string(t), "U8",
                               {static_cast<std::int64_t>(bytes)},
                               pattern_bytes(static_cast<std::uint32_t>(g),
                                             static_cast<std::uint32_t>(t), bytes)});
        }
    }
    write_safetensors(spec_.weights_path, entries);
    ferry_weights *weights = nullptr;
    check(ferry_weights_open(spec_.weights_path.c_str(), &weights), "ferry_weights_open");
    ferry_load_options options;
    ferry_load_options_init(&options);
    options.disk_tier = spec_.disk_tier ? 1 : 0;
    options.direct = spec_.direct ? 1 : 0;
    const ferry_status status = ferry_weights_load(runtime_, weights, &options, nullptr);
    ferry_weights_close(weights);  // the runtime keeps the files it reads at onload
    check(status, "ferry_weights_load");
}

SimModel::~SimModel() {
    try {
        drain();
    } catch (...) {
        // A device error a test did not collect: nothing is left to report it to.
    }
    ferry::Device &device = ferry_runtime_impl(runtime_).device();
    for (void *stream : streams_) device.destroy_stream(stream);
    scratch_.reset();
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
    const auto group = static_cast<std::uint32_t>(g);
    const std::vector<TensorSpec> &specs = spec_.groups[g];

    // The tensors by device address, read by as few copies as can be: a group's image is
    // contiguous on the device, so a group streamed or resident whole is read by one copy
    // (with the padding between its tensors, which nothing else writes). A split group's
    // head and tail lie apart: there only tensors packed back to back (the next starting at
    // the 256-byte boundary after the last) share a copy.
    std::vector<std::pair<unsigned char *, std::uint32_t>> placed;
    for (std::size_t t = 0; t < tensors_[g].size(); ++t) {
        void *device = nullptr;
        const ferry_status status = ferry_tensor_device_ptr(runtime_, tensors_[g][t], &device);
        if (status != FERRY_OK) {
            ferry_release(runtime_, groups_[g], stream);
            return status;
        }
        placed.emplace_back(static_cast<unsigned char *>(device), static_cast<std::uint32_t>(t));
    }
    std::sort(placed.begin(), placed.end());
    struct Span {
        const unsigned char *device;
        std::size_t at;  // in the scratch
        std::size_t bytes;
    };
    std::vector<Span> spans;
    auto task = std::make_unique<CheckTask>();
    task->failures = &failures;
    task->pool = scratch_.get();
    task->group = group;
    std::size_t used = 0;
    for (const auto &[device, t] : placed) {
        const std::uint64_t bytes = specs[t].bytes;
        const bool packed =
            !spans.empty() &&
            device == spans.back().device + round_up(spans.back().bytes, 256);
        if (!packed) spans.push_back({device, used, 0});
        Span &span = spans.back();
        const std::size_t offset = static_cast<std::size_t>(device - span.device);
        task->seen.push_back(
            {t, span.at + offset, bytes, versions_[g][t]});
        used += offset + bytes - span.bytes;
        span.bytes = offset + bytes;
    }
    // Then the next version of each mutable tensor, written here before it is queued.
    struct Bump {
        unsigned char *device;
        std::size_t at;  // in the scratch
        std::uint32_t tensor;
    };
    std::vector<Bump> bumps;
    for (const auto &[device, t] : placed) {
        if (!specs[t].is_mutable) continue;
        bumps.push_back({device, used, t});
        used += specs[t].bytes;
    }

    ferry::Device &device = ferry_runtime_impl(runtime_).device();
    bool queued = false;
    try {
        task->scratch = scratch_->take(used);
        for (const Bump &b : bumps) {
            fill_pattern(task->scratch.data + b.at, specs[b.tensor].bytes, group, b.tensor,
                         versions_[g][b.tensor] + 1);
        }
        for (const Span &span : spans) {
            device.copy_d2h(task->scratch.data + span.at, span.device, span.bytes, stream);
        }
        for (const Bump &b : bumps) {
            device.copy_h2d(b.device, task->scratch.data + b.at, specs[b.tensor].bytes, stream);
            ++versions_[g][b.tensor];
        }
        ++failures.pending;
        queued = true;
        device.launch_host(stream, &CheckTask::run, task.get());
        task.release();  // CheckTask::run deletes it (maybe already, on the calling thread)
    } catch (const ferry::Error &error) {
        // Copies queued so far may still use the scratch: it stays out of the pool.
        if (queued) --failures.pending;
        failures.add("group " + std::to_string(g) + ": queueing the check failed: " +
                     error.what());
        ferry_release(runtime_, groups_[g], stream);
        return error.status();
    }
    return ferry_release(runtime_, groups_[g], stream);
}

ferry_status SimModel::update_tensor(std::size_t g, std::size_t t, int pieces,
                                     std::mt19937_64 &rng) {
    const std::uint64_t bytes = spec_.groups[g][t].bytes;
    std::vector<unsigned char> next(bytes);
    fill_pattern(next.data(), bytes, static_cast<std::uint32_t>(g), static_cast<std::uint32_t>(t),
                 versions_[g][t] + 1);
    std::vector<std::uint64_t> cuts = {0, bytes};
    for (int p = 1; p < pieces; ++p) cuts.push_back(rng() % (bytes + 1));
    std::sort(cuts.begin(), cuts.end());
    for (std::size_t c = 0; c + 1 < cuts.size(); ++c) {
        const ferry_status status = ferry_tensor_update(runtime_, tensors_[g][t], cuts[c],
                                                        next.data() + cuts[c],
                                                        cuts[c + 1] - cuts[c]);
        if (status != FERRY_OK) return status;
    }
    ++versions_[g][t];
    return FERRY_OK;
}

void SimModel::corrupt_first_byte(std::size_t g, std::size_t t, void *stream) {
    void *device_ptr = nullptr;
    check(ferry_tensor_device_ptr(runtime_, tensors_[g][t], &device_ptr),
          "ferry_tensor_device_ptr");
    const std::uint64_t word = pattern_word(static_cast<std::uint32_t>(g),
                                            static_cast<std::uint32_t>(t), 0, versions_[g][t]);
    auto task = std::make_unique<GiveBack>();
    task->pool = scratch_.get();
    task->scratch = scratch_->take(1);
    std::memcpy(task->scratch.data, &word, 1);
    task->scratch.data[0] ^= 0xff;
    ferry::Device &device = ferry_runtime_impl(runtime_).device();
    device.copy_h2d(device_ptr, task->scratch.data, 1, stream);
    device.launch_host(stream, &GiveBack::run, task.get());
    task.release();
}

void SimModel::drain() {
    ferry::Device &device = ferry_runtime_impl(runtime_).device();
    for (void *stream : streams_) device.stream_synchronize(stream);
    // On sim, work on NULL ran on the calling thread as it was queued.
    if (device.backend() != FERRY_BACKEND_SIM) device.stream_synchronize(nullptr);
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

std::vector<unsigned char> read_device(ferry_runtime *runtime, const void *device_ptr,
                                       std::size_t bytes) {
    if (bytes == 0) return {};
    ferry::Device &device = ferry_runtime_impl(runtime).device();
    auto *pinned = static_cast<unsigned char *>(device.alloc_pinned(bytes));
    std::vector<unsigned char> bytes_read;
    try {
        device.copy_d2h(pinned, device_ptr, bytes, nullptr);
        device.stream_synchronize(nullptr);
        bytes_read.assign(pinned, pinned + bytes);
    } catch (...) {
        device.free_pinned(pinned, bytes);
        throw;
    }
    device.free_pinned(pinned, bytes);
    return bytes_read;
}

ferry_stats SimModel::stats() const {
    ferry_stats stats;
    stats.struct_size = sizeof stats;
    check(ferry_stats_get(runtime_, &stats), "ferry_stats_get");
    return stats;
}

}  // namespace ferry_test
