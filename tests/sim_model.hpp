// A synthetic model on the sim backend whose every byte is predictable, and a checker
// that runs on sim compute streams (worker threads) and verifies a group's bytes in its
// slot while copies run concurrently. Mutable tensors carry a version that each compute
// bumps, so lost or stale writebacks are seen.
#pragma once

#include <atomic>
#include <cstdint>
#include <mutex>
#include <random>
#include <string>
#include <vector>

#include "ferry/ferry.h"

namespace ferry_test {

struct TensorSpec {
    std::uint64_t bytes = 0;
    bool is_mutable = false;
};

struct ModelSpec {
    std::vector<std::vector<TensorSpec>> groups;
    std::uint64_t budget = 0;
    std::uint32_t slots_per_class = 2;
    bool synchronous = false;
    bool chaos = false;
    std::uint64_t seed = 1;
    double h2d_gbps = 0.0;
    double d2h_gbps = 0.0;
    double latency_us = 0.0;
    std::vector<std::uint32_t> declared_schedule;  // empty: learned
    bool verify = false;                 // trust: verify mode
    std::uint64_t pinned_cap = 0;        // trust: 0 = default cap
    bool pageable_fallback = false;
};

// The expected 64-bit word at word index i of a tensor; mutable tensors add `version`.
std::uint64_t pattern_word(std::uint32_t group, std::uint32_t tensor, std::uint64_t i,
                           std::uint64_t version);

// Failures seen on worker threads, checked by the test thread afterwards.
struct Failures {
    std::atomic<std::uint64_t> count{0};
    std::mutex mutex;
    std::string first;
    void add(const std::string &what);
};

class SimModel {
   public:
    // Creates, defines, plans, fills and seals. Throws std::runtime_error with the
    // library's message if a step fails (status in `status()` of the failing call).
    explicit SimModel(const ModelSpec &spec);
    ~SimModel();
    SimModel(const SimModel &) = delete;
    SimModel &operator=(const SimModel &) = delete;

    ferry_runtime *runtime() const { return runtime_; }
    std::size_t group_count() const { return groups_.size(); }
    ferry_group group(std::size_t g) const { return groups_[g]; }
    ferry_tensor tensor(std::size_t g, std::size_t t) const { return tensors_[g][t]; }
    const ModelSpec &spec() const { return spec_; }
    bool has_mutable() const;

    // A sim compute stream (a worker thread) owned by this model.
    void *create_stream();

    // acquire(g, stream); enqueue a check of every byte (and a version bump of mutable
    // tensors) on the stream; release(g, stream). Returns the first failing status.
    ferry_status run_group(std::size_t g, void *stream, Failures &failures);

    // Waits for every stream's work.
    void drain();

    // After ferry_synchronize: host bytes of mutable tensors show the latest version.
    bool host_versions_current(Failures &failures);

    ferry_stats stats() const;

   private:
    ModelSpec spec_;
    ferry_runtime *runtime_ = nullptr;
    std::vector<ferry_group> groups_;
    std::vector<std::vector<ferry_tensor>> tensors_;
    std::vector<std::vector<std::uint64_t>> versions_;  // expected next version per tensor
    std::vector<void *> streams_;
};

// Runs `passes` passes in the model's schedule order (definition order when learned),
// spreading the groups at random over `streams` new compute streams, or the calling thread
// when 0. A call that fails is added to `failures`.
void run_passes(SimModel &model, int passes, int streams, Failures &failures,
                std::mt19937_64 &rng);

// Throws std::runtime_error("<call>: <status>: <message>") unless status is FERRY_OK.
void check(ferry_status status, const char *call);

}  // namespace ferry_test
