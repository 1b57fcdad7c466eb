// libFuzzer target: random sequences of C API calls, with random and invalid arguments
// (garbage, foreign and stale handles, wrong phases, absurd sizes, bad configs), on sim.
// After every call it checks the invariants; a violation aborts, which libFuzzer reports:
//
//   - a failed call has a message naming a ferry_ call, and a status with a string;
//     a successful call leaves no message;
//   - every live runtime's stats are consistent: acquires == resident_hits + hits +
//     misses, releases <= acquires, slab <= budget, slab in use <= slab;
//   - after plan, pinned + pageable host bytes cover the model.
//
// Input: one byte picks the call, the following bytes its arguments; a short input ends
// the sequence, then everything is destroyed (LeakSanitizer checks nothing is left).
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "ferry/ferry.h"
#include "core/runtime.hpp"

namespace {

class Input {
   public:
    Input(const std::uint8_t *data, std::size_t size) : data_(data), size_(size) {}
    bool empty() const { return at_ >= size_; }
    std::uint8_t byte() { return at_ < size_ ? data_[at_++] : 0; }
    std::uint64_t pick(const std::uint64_t *values, std::size_t count) {
        return values[byte() % count];
    }

   private:
    const std::uint8_t *data_;
    std::size_t size_;
    std::size_t at_ = 0;
};

[[noreturn]] void violated(const char *what, const std::string &detail) {
    std::fprintf(stderr, "ferry fuzz: invariant violated: %s: %s\n", what, detail.c_str());
    std::abort();
}

struct Live {
    ferry_runtime *rt = nullptr;
    void *stream = nullptr;  // a sim compute stream of this runtime
};

constexpr std::size_t kMaxRuntimes = 3;
constexpr std::size_t kSourceBytes = 1 << 20;
unsigned char g_source[kSourceBytes];  // copy-in source, larger than any tensor here

// Sizes: valid, boundary and absurd. Budgets stay small, so plans stay fast.
constexpr std::uint64_t kBudgets[] = {0, 1, 4096, 65536, 300000, 1 << 20};
constexpr std::uint64_t kSizes[] = {0, 1, 7, 255, 256, 4097, 30000, 65536, 1 << 20,
                                    UINT64_MAX, UINT64_MAX / 2};
constexpr std::uint64_t kOffsets[] = {0, 1, 255, 4096, 65535, UINT64_MAX};

class Driver {
   public:
    ~Driver() {
        for (Live &live : runtimes_) destroy(live);
    }

    void run(Input &in) {
        for (int op = 0; op < 96 && !in.empty(); ++op) step(in);
    }

   private:
    void step(Input &in) {
        const std::uint8_t call = in.byte() % 19;
        switch (call) {
            case 0: create(in); break;
            case 1: {
                if (runtimes_.empty()) break;
                const std::size_t i = in.byte() % runtimes_.size();
                destroy(runtimes_[i]);
                runtimes_.erase(runtimes_.begin() + static_cast<std::ptrdiff_t>(i));
                break;
            }
            case 2: {
                ferry_group group{};
                ferry_runtime *rt = runtime(in);
                const std::string name = name_of(in);
                const std::uint8_t choice = in.byte();
                const bool null_name = choice % 16 == 0;
                const ferry_status s =
                    ferry_group_define(rt, null_name ? nullptr : name.c_str(), &group);
                checked(s);
                if (s == FERRY_OK) groups_.push_back(group);
                // Some groups are preferred resident (the same byte: old inputs keep
                // their meaning).
                if (choice / 16 % 4 == 0) checked(ferry_group_prefer_resident(rt, group));
                break;
            }
            case 3: define_tensor(in); break;
            case 4: {
                ferry_runtime *rt = runtime(in);
                std::vector<ferry_group> order;
                for (int n = in.byte() % 6; n > 0; --n) order.push_back(group(in));
                const bool null_order = in.byte() % 8 == 0;
                const std::size_t count = null_order ? in.byte() % 3 : order.size();
                checked(ferry_schedule_declare(rt, null_order ? nullptr : order.data(), count));
                break;
            }
            case 5: checked(ferry_plan(runtime(in))); break;
            case 6: {
                void *host = nullptr;
                ferry_runtime *rt = runtime(in);
                const ferry_status s = ferry_tensor_host_ptr(rt, tensor(in), &host);
                checked(s);
                ferry_phase phase;
                // Writable only before seal (immutable bytes are read-only after it).
                if (s == FERRY_OK && ferry_phase_get(rt, &phase) == FERRY_OK &&
                    phase == FERRY_PHASE_PLANNED) {
                    *static_cast<volatile unsigned char *>(host) = in.byte();
                }
                break;
            }
            case 7: {
                ferry_runtime *rt = runtime(in);
                const ferry_tensor t = tensor(in);
                const std::uint64_t offset = in.pick(kOffsets, std::size(kOffsets));
                const std::uint64_t bytes = in.pick(kSizes, std::size(kSizes));
                const bool null_src = in.byte() % 8 == 0;
                // bytes past the source would be read only if ferry accepted a copy past
                // the tensor's end: the tensors here are smaller than the source.
                checked(ferry_tensor_copy_in(rt, t, offset, null_src ? nullptr : g_source, bytes));
                break;
            }
            case 8: checked(ferry_seal(runtime(in))); break;
            case 9:
            case 10: {
                ferry_runtime *rt = runtime(in);
                const ferry_group g = group(in);
                void *s = stream(in, rt);
                checked(call == 9 ? ferry_acquire(rt, g, s) : ferry_release(rt, g, s));
                break;
            }
            case 11: {
                ferry_runtime *rt = runtime(in);
                const ferry_tensor t = tensor(in);
                void *device = nullptr;
                const bool null_out = in.byte() % 16 == 0;
                checked(ferry_tensor_device_ptr(rt, t, null_out ? nullptr : &device));
                break;
            }
            case 12: checked(ferry_synchronize(runtime(in))); break;
            case 13: {
                ferry_stats stats;
                const std::size_t sizes[] = {sizeof stats, 0, 8, 16, 24, sizeof stats + 8,
                                             1u << 20};
                stats.struct_size = sizes[in.byte() % std::size(sizes)];
                // Larger than the struct is fine: ferry fills only what it knows.
                ferry_runtime *rt = runtime(in);
                checked(ferry_stats_get(rt, &stats));
                break;
            }
            case 14: {
                int32_t resident = 0, size_class = 0;
                uint64_t bytes = 0;
                ferry_runtime *rt = runtime(in);
                const ferry_group g = group(in);
                const bool nulls = in.byte() % 2 == 0;
                const ferry_status info = ferry_group_info(
                    rt, g, nulls ? nullptr : &resident, nulls ? nullptr : &size_class,
                    nulls ? nullptr : &bytes);
                checked(info);
                uint64_t on_device = 0;
                const ferry_status held =
                    ferry_group_resident_bytes(rt, g, nulls ? nullptr : &on_device);
                checked(held);
                if (info == FERRY_OK && held == FERRY_OK && !nulls &&
                    (on_device > bytes || (resident != 0) != (on_device == bytes))) {
                    violated("ferry_group_resident_bytes", "disagrees with ferry_group_info");
                }
                break;
            }
            case 15: {
                ferry_phase phase;
                ferry_runtime *rt = runtime(in);
                checked(ferry_phase_get(rt, in.byte() % 8 == 0 ? nullptr : &phase));
                break;
            }
            case 16: {
                // Unknown values too, within the enum's range (0..31) so C++ may hold them.
                const auto status = static_cast<ferry_status>(in.byte() % 32);
                if (ferry_status_string(status) == nullptr) violated("status string", "NULL");
                break;
            }
            case 17: {
                ferry_runtime *rt = runtime(in);
                checked(ferry_pin_progress_set(rt, in.byte() % 2 ? &progress : nullptr, nullptr));
                break;
            }
            case 18: check_all_stats(); break;
        }
        check_all_stats();
    }

    static void progress(void *, std::uint64_t pinned, std::uint64_t pageable,
                         std::uint64_t total) {
        if (pinned + pageable > total) violated("pin progress", "more than the total");
    }

    void create(Input &in) {
        ferry_config config;
        ferry_config_init(&config);
        config.backend = FERRY_BACKEND_SIM;
        const std::uint8_t flags = in.byte();
        // 3 is no ferry_backend.
        if (flags % 16 == 1) config.backend = static_cast<ferry_backend>(in.byte() % 4);
        if (flags % 16 == 2) config.struct_size = in.byte();
        if (flags % 16 == 3) config.name = "";
        if (flags % 16 == 4) config.sim_h2d_gbps = -1.0;
        config.vram_budget = in.pick(kBudgets, std::size(kBudgets));
        config.slots_per_class = in.byte() % 6;
        config.synchronous = (flags >> 4) & 1;
        config.verify = (flags >> 5) & 1;
        config.pageable_fallback = (flags >> 6) & 1;
        config.pinned_cap_bytes = (flags >> 7) ? in.byte() * 4096ull : 0;
        ferry_runtime *rt = nullptr;
        const bool null_config = in.byte() % 32 == 0;
        const ferry_status s = ferry_create(null_config ? nullptr : &config, &rt);
        checked(s);
        if (s != FERRY_OK) {
            if (rt != nullptr) violated("ferry_create", "failed but returned a runtime");
            return;
        }
        Live live{rt, nullptr};
        live.stream = ferry_runtime_impl(rt).device().create_stream();
        runtimes_.push_back(live);
        if (runtimes_.size() > kMaxRuntimes) {
            destroy(runtimes_.front());
            runtimes_.erase(runtimes_.begin());
        }
    }

    void destroy(Live &live) {
        ferry_runtime_impl(live.rt).device().destroy_stream(live.stream);
        const ferry_status s = ferry_destroy(live.rt);
        if (s != FERRY_OK) violated("ferry_destroy", ferry_last_error());
        if (*ferry_last_error() != '\0') violated("ferry_destroy", "left a message");
    }

    void define_tensor(Input &in) {
        ferry_runtime *rt = runtime(in);
        const ferry_group g = group(in);
        const std::string name = name_of(in);
        const std::uint64_t bytes = in.pick(kSizes, std::size(kSizes));
        const auto dtype = static_cast<ferry_dtype>(in.byte() % 13);
        const std::uint32_t ndim = in.byte() % 10;
        std::int64_t shape[10];
        for (std::uint32_t d = 0; d < ndim; ++d) {
            const std::int64_t dims[] = {1, 2, 0, -1, 3, 256, INT64_MAX};
            shape[d] = dims[in.byte() % std::size(dims)];
        }
        const std::uint8_t how = in.byte();
        if (how % 4 == 0 && ndim == 1 && dtype == FERRY_DTYPE_U8) {
            shape[0] = static_cast<std::int64_t>(bytes);  // a consistent shape
        }
        const std::uint32_t flags = how % 5 == 0 ? 0xffu : (how >> 4) & 1;
        ferry_tensor t{};
        const ferry_status s = ferry_tensor_define(rt, g, name.c_str(), bytes, dtype, ndim,
                                                   how % 7 == 0 ? nullptr : shape, flags, &t);
        checked(s);
        if (s == FERRY_OK) {
            // No budget here exceeds the copy-in source, so neither may a tensor.
            if (bytes > kSourceBytes) violated("ferry_tensor_define", "tensor over the budget");
            tensors_.push_back(t);
        }
    }

    std::string name_of(Input &in) {
        const std::uint8_t n = in.byte();
        if (n == 255) return std::string(300, 'x');
        if (n == 254) return std::string();
        return "n" + std::to_string(n % 8);
    }

    // A runtime: usually a live one, sometimes NULL or a pointer to non-runtime memory.
    ferry_runtime *runtime(Input &in) {
        const std::uint8_t pick = in.byte();
        if (pick == 255) return nullptr;
        if (pick == 254) return reinterpret_cast<ferry_runtime *>(garbage_);
        if (runtimes_.empty()) return nullptr;
        return runtimes_[pick % runtimes_.size()].rt;
    }

    // Handles: usually one seen before (possibly of another or a destroyed runtime),
    // sometimes zero or garbage.
    ferry_group group(Input &in) {
        const std::uint8_t pick = in.byte();
        if (pick >= 250 || groups_.empty()) return ferry_group{garbage_id(pick)};
        return groups_[pick % groups_.size()];
    }
    ferry_tensor tensor(Input &in) {
        const std::uint8_t pick = in.byte();
        if (pick >= 250 || tensors_.empty()) return ferry_tensor{garbage_id(pick)};
        if (pick % 17 == 0 && !groups_.empty()) return ferry_tensor{groups_[0].id};  // wrong kind
        return tensors_[pick % tensors_.size()];
    }
    static std::uint64_t garbage_id(std::uint8_t pick) {
        const std::uint64_t ids[] = {0, 1, UINT64_MAX, 0x0000000101000000ull, 0xdeadbeefull << 24,
                                     0x0000000102ffffffull};
        return ids[pick % std::size(ids)];
    }

    // NULL (the calling thread) or the runtime's own sim stream. A stream of another
    // sim runtime is another device's: like a CUDA stream of another device, it is not
    // a valid argument (its queued waits would outlive this runtime's events).
    void *stream(Input &in, ferry_runtime *rt) {
        const std::uint8_t pick = in.byte();
        if (pick % 2 == 0) return nullptr;
        for (const Live &live : runtimes_) {
            if (live.rt == rt) return live.stream;
        }
        return nullptr;
    }

    static void checked(ferry_status s) {
        const char *message = ferry_last_error();
        if (s == FERRY_OK) {
            if (*message != '\0') violated("ok with a message", message);
            return;
        }
        if (std::strcmp(ferry_status_string(s), "unknown status") == 0) {
            violated("unknown status", std::to_string(static_cast<int>(s)));
        }
        if (std::strncmp(message, "ferry_", 6) != 0) violated("message", message);
        if (s == FERRY_ERROR_INTERNAL) violated("internal error", message);
    }

    void check_all_stats() {
        for (const Live &live : runtimes_) {
            ferry_stats st;
            st.struct_size = sizeof st;
            if (ferry_stats_get(live.rt, &st) != FERRY_OK) violated("stats", ferry_last_error());
            const std::string at =
                "runtime " + std::to_string(reinterpret_cast<std::uintptr_t>(live.rt));
            if (st.acquires != st.resident_hits + st.hits + st.misses) violated("acquires", at);
            if (st.releases > st.acquires) violated("releases > acquires", at);
            if (st.slab_bytes > st.vram_budget) violated("slab over budget", at);
            if (st.slab_used_bytes > st.slab_bytes) violated("slab use over slab", at);
            if (st.slab_used_peak_bytes > st.slab_bytes) violated("slab peak over slab", at);
            if (st.phase != FERRY_PHASE_DEFINE &&
                st.host_pinned_bytes + st.host_pageable_bytes < st.model_bytes) {
                violated("host store smaller than the model", at);
            }
        }
    }

    std::vector<Live> runtimes_;
    std::vector<ferry_group> groups_;
    std::vector<ferry_tensor> tensors_;
    std::uint64_t garbage_[8] = {1, 2, 3, 4, 5, 6, 7, 8};
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t *data, std::size_t size) {
    Input in(data, size);
    Driver driver;
    driver.run(in);
    return 0;
}
