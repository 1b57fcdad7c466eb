// Fault injection: every injection point x every lifecycle phase. For each, the call that
// meets the fault returns its status with a message, a retry goes through, no data is
// lost (host images unchanged, every mutable update reaches the host), and the runtime
// synchronizes and is destroyed cleanly (the sanitizer runs check for leaks).
#include <algorithm>
#include <catch2/catch.hpp>
#include <cstring>
#include <deque>
#include <string>
#include <vector>

#include "api_fixture.hpp"
#include "device/fault_injection.hpp"
#include "core/runtime.hpp"
#include "sim_model.hpp"

using namespace ferry_test;
using ferry::Fault;

namespace {

enum class Phase { plan, seal, pass, synchronize };
const char *phase_name(Phase phase) {
    switch (phase) {
        case Phase::plan: return "plan";
        case Phase::seal: return "seal";
        case Phase::pass: return "pass";
        case Phase::synchronize: return "synchronize";
    }
    return "?";
}

ferry_status expected_status(Fault fault) {
    switch (fault) {
        case Fault::pin: return FERRY_ERROR_OUT_OF_HOST_MEMORY;
        case Fault::reserve: return FERRY_ERROR_OUT_OF_DEVICE_MEMORY;
        default: return FERRY_ERROR_DEVICE;
    }
}

constexpr int kGroups = 6;
constexpr std::uint64_t kFrozenBytes = 8000;
constexpr std::uint64_t kImageBytes = 8192 + 256;  // frozen, page-aligned counter

unsigned char frozen_byte(int g, std::uint64_t i) {
    return static_cast<unsigned char>(g * 31 + i * 7);
}

// One compute: checks the frozen bytes, increments the group's mutable counter.
struct Compute {
    const unsigned char *frozen;
    std::uint64_t *counter;
    int group;
    std::uint64_t *bad;  // frozen bytes seen wrong
    static void run(void *user) {
        auto *c = static_cast<Compute *>(user);
        for (std::uint64_t i = 0; i < kFrozenBytes; ++i) {
            if (c->frozen[i] != frozen_byte(c->group, i)) ++*c->bad;
        }
        ++*c->counter;
    }
};

// Drives one runtime through its lifecycle; the fault is armed at the start of `phase`.
class Rig {
   public:
    Rig(Fault fault, Phase phase, bool with_mutable, bool verify)
        : fault_(fault), phase_(phase), with_mutable_(with_mutable) {
        ferry_config config;
        ferry_config_init(&config);
        config.backend = FERRY_BACKEND_SIM;
        config.vram_budget = 4 * kImageBytes;  // 2 resident groups, 2 streaming slots
        config.verify = verify ? 1 : 0;
        REQUIRE(ferry_create(&config, &rt_) == FERRY_OK);
        for (int g = 0; g < kGroups; ++g) {
            ferry_group group;
            REQUIRE(ferry_group_define(rt_, ("g" + std::to_string(g)).c_str(), &group) == FERRY_OK);
            groups_.push_back(group);
            ferry_tensor frozen, counter{};
            REQUIRE(ferry_tensor_define(rt_, group, "w", kFrozenBytes, FERRY_DTYPE_UNKNOWN, 0,
                                        nullptr, 0, &frozen) == FERRY_OK);
            if (with_mutable) {
                REQUIRE(ferry_tensor_define(rt_, group, "n", 8, FERRY_DTYPE_UNKNOWN, 0, nullptr,
                                            FERRY_TENSOR_MUTABLE, &counter) == FERRY_OK);
            }
            frozen_.push_back(frozen);
            counters_.push_back(counter);
        }
        computes_.resize(kGroups);
        expected_.assign(kGroups, 0);
    }

    ~Rig() {
        if (stream_ != nullptr) ferry_runtime_impl(rt_).device().destroy_stream(stream_);
        const ferry_status destroyed = ferry_destroy(rt_);
        CHECK(destroyed == FERRY_OK);
    }

    // Runs `call` (named `what`) until it succeeds, at most 4 tries; the first failure is
    // kept. Fails the test if it never succeeds.
    template <typename Call>
    void step(Phase phase, const char *what, Call call) {
        if (phase == phase_ && !armed_) {
            ferry::FaultInjector::instance().arm(fault_);
            armed_ = true;
        }
        for (int attempt = 0; attempt < 4; ++attempt) {
            const ferry_status status = call();
            if (status == FERRY_OK) return;
            if (first_status_ == FERRY_OK) {
                first_status_ = status;
                first_message_ = ferry_last_error();
                first_call_ = what;
            }
            INFO(what << ": " << ferry_last_error());
            REQUIRE(std::string(ferry_last_error()).size() > 0);
            fired_ += ferry::FaultInjector::instance().fired(fault_);
            ferry::FaultInjector::instance().disarm();
        }
        FAIL(what << " still fails after retries: " << ferry_last_error());
    }

    void lifecycle() {
        step(Phase::plan, "plan", [&] { return ferry_plan(rt_); });
        for (int g = 0; g < kGroups; ++g) {
            void *host = nullptr;
            REQUIRE(ferry_tensor_host_ptr(rt_, frozen_[g], &host) == FERRY_OK);
            for (std::uint64_t i = 0; i < kFrozenBytes; ++i) {
                static_cast<unsigned char *>(host)[i] = frozen_byte(g, i);
            }
        }
        step(Phase::seal, "seal", [&] { return ferry_seal(rt_); });
        stream_ = ferry_runtime_impl(rt_).device().create_stream();
        run_pass(Phase::pass);
        run_pass(Phase::pass);
        step(Phase::synchronize, "synchronize", [&] { return ferry_synchronize(rt_); });
        finish_fault();
    }

    void run_pass(Phase phase) {
        for (int g = 0; g < kGroups; ++g) {
            step(phase, "acquire", [&] { return ferry_acquire(rt_, groups_[g], stream_); });
            void *frozen = nullptr;
            void *counter = nullptr;
            step(phase, "device ptr", [&] {
                const ferry_status s = ferry_tensor_device_ptr(rt_, frozen_[g], &frozen);
                if (s != FERRY_OK || !with_mutable_) return s;
                return ferry_tensor_device_ptr(rt_, counters_[g], &counter);
            });
            counter = counter != nullptr ? counter : &scratch_counter_;
            computes_[g].push_back(Compute{static_cast<unsigned char *>(frozen),
                                           static_cast<std::uint64_t *>(counter), g, &bad_});
            ++expected_[g];
            step(phase, "launch", [&] {
                ferry_runtime_impl(rt_).device().launch_host(stream_, &Compute::run,
                                                             &computes_[g].back());
                return FERRY_OK;
            });
            step(phase, "release", [&] { return ferry_release(rt_, groups_[g], stream_); });
        }
    }

    // After the faulted lifecycle: nothing armed, everything reported, nothing lost.
    void finish_fault() {
        fired_ += ferry::FaultInjector::instance().fired(fault_);
        ferry::FaultInjector::instance().disarm();
        // A copy that failed at completion may still be waiting for a host wait to report
        // it; synchronize until clean.
        for (int i = 0; i < 3 && ferry_synchronize(rt_) != FERRY_OK; ++i) {
            if (first_status_ == FERRY_OK) {
                first_status_ = FERRY_ERROR_DEVICE;
                first_message_ = ferry_last_error();
                first_call_ = "synchronize";
            }
        }
        REQUIRE(ferry_synchronize(rt_) == FERRY_OK);
    }

    // Host bytes: frozen images as loaded, counters equal to the computes that ran.
    void require_nothing_lost() {
        for (int g = 0; g < kGroups; ++g) {
            void *host = nullptr;
            REQUIRE(ferry_tensor_host_ptr(rt_, frozen_[g], &host) == FERRY_OK);
            std::uint64_t wrong = 0;
            for (std::uint64_t i = 0; i < kFrozenBytes; ++i) {
                wrong += static_cast<unsigned char *>(host)[i] != frozen_byte(g, i);
            }
            REQUIRE(wrong == 0);
            if (!with_mutable_) continue;
            REQUIRE(ferry_tensor_host_ptr(rt_, counters_[g], &host) == FERRY_OK);
            INFO("group " << g);
            REQUIRE(*static_cast<std::uint64_t *>(host) == expected_[g]);
        }
    }

    // One more pass with no fault sees only right bytes.
    void require_clean_pass() {
        bad_ = 0;
        run_pass(Phase::plan);  // Phase::plan is over: nothing is armed
        REQUIRE(ferry_synchronize(rt_) == FERRY_OK);
        REQUIRE(bad_ == 0);
        require_nothing_lost();
        ferry_stats stats;
        stats.struct_size = sizeof stats;
        REQUIRE(ferry_stats_get(rt_, &stats) == FERRY_OK);
        REQUIRE(stats.acquires == stats.resident_hits + stats.hits + stats.misses);
        REQUIRE(stats.acquires == stats.releases);
        REQUIRE(stats.slab_used_bytes <= stats.slab_bytes);
        REQUIRE(stats.slab_bytes <= stats.vram_budget);
    }

    ferry_status first_status_ = FERRY_OK;
    std::string first_message_;
    std::string first_call_;
    std::uint32_t fired_ = 0;
    std::uint64_t bad_ = 0;

   private:
    Fault fault_;
    Phase phase_;
    bool with_mutable_;
    bool armed_ = false;
    ferry_runtime *rt_ = nullptr;
    void *stream_ = nullptr;
    std::vector<ferry_group> groups_;
    std::vector<ferry_tensor> frozen_;
    std::vector<ferry_tensor> counters_;
    std::vector<std::deque<Compute>> computes_;  // deque: addresses stay valid
    std::vector<std::uint64_t> expected_;
    std::uint64_t scratch_counter_ = 0;
};

}  // namespace

TEST_CASE("Every injected fault in every phase is reported, retried, and loses nothing",
          "[faults]") {
    const Fault faults[] = {Fault::pin, Fault::reserve, Fault::copy_submit,
                            Fault::event_record, Fault::event_wait, Fault::copy_error};
    const Phase phases[] = {Phase::plan, Phase::seal, Phase::pass, Phase::synchronize};
    int reported = 0;
    for (Fault fault : faults) {
        for (Phase phase : phases) {
            // A copy that fails in the middle of a pass hands compute wrong bytes, which
            // only verify mode can see: that case runs frozen-only, with verify on.
            const bool copy_error_in_pass = fault == Fault::copy_error && phase == Phase::pass;
            DYNAMIC_SECTION(ferry::fault_name(fault) << " during " << phase_name(phase)) {
                Rig rig(fault, phase, !copy_error_in_pass, copy_error_in_pass);
                rig.lifecycle();
                INFO("first failure: " << rig.first_call_ << ": " << rig.first_message_);
                if (rig.fired_ == 0) {
                    REQUIRE(rig.first_status_ == FERRY_OK);  // no such call in this phase
                } else {
                    ++reported;
                    if (copy_error_in_pass) {
                        REQUIRE((rig.first_status_ == FERRY_ERROR_VERIFY_FAILED ||
                                 rig.first_status_ == FERRY_ERROR_DEVICE));
                    } else {
                        REQUIRE(rig.first_status_ == expected_status(fault));
                        REQUIRE(rig.bad_ == 0);
                    }
                    REQUIRE((rig.first_message_.find("injected") != std::string::npos ||
                             rig.first_message_.find("verify:") != std::string::npos));
                }
                rig.require_nothing_lost();
                rig.require_clean_pass();
            }
        }
    }
}

TEST_CASE("Each fault fires somewhere in the matrix", "[faults]") {
    // The matrix above would pass vacuously if a fault never fired; pin the phases where
    // each one must.
    struct Expect {
        Fault fault;
        Phase phase;
    };
    const Expect cases[] = {
        {Fault::pin, Phase::plan},
        {Fault::reserve, Phase::plan},
        {Fault::copy_submit, Phase::seal},
        {Fault::copy_submit, Phase::pass},
        {Fault::copy_submit, Phase::synchronize},
        {Fault::event_record, Phase::seal},
        {Fault::event_record, Phase::pass},
        {Fault::event_wait, Phase::pass},
        {Fault::copy_error, Phase::seal},
        {Fault::copy_error, Phase::pass},
        {Fault::copy_error, Phase::synchronize},
    };
    for (const Expect &e : cases) {
        DYNAMIC_SECTION(ferry::fault_name(e.fault) << " during " << phase_name(e.phase)) {
            const bool in_pass = e.fault == Fault::copy_error && e.phase == Phase::pass;
            Rig rig(e.fault, e.phase, !in_pass, in_pass);
            rig.lifecycle();
            REQUIRE(rig.fired_ > 0);
            REQUIRE(rig.first_status_ != FERRY_OK);
        }
    }
}

TEST_CASE("A failed plan of split groups starts over when retried; a failed seal counts nothing",
          "[faults]") {
    // Ten groups of four 64 KiB tensors at half the model: the planner splits them. The
    // first plan fails reserving the slab; then group 0 gets a mutable tensor, so it may
    // no longer be split, and the retried plan must lay it out whole.
    constexpr std::uint64_t kTensor = 64 << 10;
    ferry_runtime *rt = make_sim_runtime(1280 << 10);
    std::vector<ferry_group> groups;
    std::vector<std::vector<ferry_tensor>> tensors(10);
    for (int g = 0; g < 10; ++g) {
        groups.push_back(define_group(rt, ("g" + std::to_string(g)).c_str()));
        for (int t = 0; t < 4; ++t) {
            tensors[g].push_back(define_bytes(rt, groups[g], ("t" + std::to_string(t)).c_str(),
                                              kTensor));
        }
    }
    ferry::FaultInjector::instance().arm(Fault::reserve);
    REQUIRE(ferry_plan(rt) == FERRY_ERROR_OUT_OF_DEVICE_MEMORY);
    ferry::FaultInjector::instance().disarm();
    tensors[0].push_back(define_bytes(rt, groups[0], "state", 64, FERRY_TENSOR_MUTABLE));
    REQUIRE(ferry_plan(rt) == FERRY_OK);

    auto fill = [](int g, int t) { return static_cast<unsigned char>(1 + g * 8 + t); };
    for (int g = 0; g < 10; ++g) {
        for (std::size_t t = 0; t < tensors[g].size(); ++t) {
            void *host = nullptr;
            REQUIRE(ferry_tensor_host_ptr(rt, tensors[g][t], &host) == FERRY_OK);
            std::memset(host, fill(g, static_cast<int>(t)), t < 4 ? kTensor : 64);
        }
    }
    std::uint64_t image = 0, on_device = 0;
    REQUIRE(ferry_group_info(rt, groups[0], nullptr, nullptr, &image) == FERRY_OK);
    REQUIRE(ferry_group_resident_bytes(rt, groups[0], &on_device) == FERRY_OK);
    CHECK((on_device == 0 || on_device == image));  // group 0 moves whole now
    std::uint64_t placed = 0;  // groups with bytes on the device for good: one copy each
    for (ferry_group group : groups) {
        REQUIRE(ferry_group_resident_bytes(rt, group, &on_device) == FERRY_OK);
        placed += on_device > 0;
    }
    REQUIRE(placed > 2);
    // A seal whose third copy fails is undone, and its retry counts each copy once.
    ferry::FaultInjector::instance().arm(Fault::copy_submit, 2);
    REQUIRE(ferry_seal(rt) == FERRY_ERROR_DEVICE);
    ferry::FaultInjector::instance().disarm();
    REQUIRE(ferry_seal(rt) == FERRY_OK);
    ferry_stats sealed;
    sealed.struct_size = sizeof sealed;
    REQUIRE(ferry_stats_get(rt, &sealed) == FERRY_OK);
    CHECK(sealed.onloads == placed);
    CHECK(sealed.bytes_h2d == sealed.slab_resident_bytes);

    for (int pass = 0; pass < 2; ++pass) {
        for (int g = 0; g < 10; ++g) {
            REQUIRE(ferry_acquire(rt, groups[g], nullptr) == FERRY_OK);
            for (std::size_t t = 0; t < tensors[g].size(); ++t) {
                void *device = nullptr;
                REQUIRE(ferry_tensor_device_ptr(rt, tensors[g][t], &device) == FERRY_OK);
                const auto *bytes = static_cast<const unsigned char *>(device);  // sim
                const std::uint64_t n = t < 4 ? kTensor : 64;
                INFO("group " << g << ", tensor " << t);
                CHECK(std::count(bytes, bytes + n, fill(g, static_cast<int>(t))) ==
                      static_cast<std::ptrdiff_t>(n));
            }
            REQUIRE(ferry_release(rt, groups[g], nullptr) == FERRY_OK);
        }
    }
    ferry_stats stats;
    stats.struct_size = sizeof stats;
    REQUIRE(ferry_stats_get(rt, &stats) == FERRY_OK);
    CHECK(stats.slab_bytes <= (1280u << 10));
    REQUIRE(ferry_destroy(rt) == FERRY_OK);
}
