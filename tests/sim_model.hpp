// A synthetic model whose every byte is predictable, on the tests' backend (backend.hpp:
// sim, or cuda when FERRY_BACKEND=cuda), and a checker that verifies a group's bytes on
// the compute stream while copies run concurrently. Mutable tensors carry a version that
// each compute bumps, so lost or stale writebacks are seen; frozen tensors one that each
// ferry_tensor_update bumps (update_tensor), so stale device copies are seen.
//
// The checker reads device memory only through the device interface, as a kernel's work
// would be ordered on a GPU: on the compute stream, after acquire's waits, it copies the
// group's tensors device-to-host into pinned scratch and the next version of each mutable
// tensor host-to-device, then a host function compares the scratch with the pattern and
// hands the scratch back. On sim under chaos, a missing wait still corrupts what the copy
// reads, and the comparison sees it.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <vector>

#include "backend.hpp"
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
    // Per group, declared in PLANNED (ferry_group_compute_declare): the re-plan after the
    // first pass follows them. Empty: none.
    std::vector<std::uint64_t> declared_compute_ns;
    bool verify = false;                 // trust: verify mode
    std::uint64_t pinned_cap = 0;        // trust: 0 = default cap
    bool pageable_fallback = false;
    // Compressed streaming: config.compress, and immutable tensors of an even size
    // defined as bf16 (the pattern's exponents are narrow, as trained weights' are).
    bool compress = false;
    // Weights: when set, the model's bytes are written to this safetensors file (tensor
    // "g<G>.t<T>" for tensor T of group G) and loaded with ferry_weights_load, disk tier
    // as asked; else they are written through host pointers.
    std::string weights_path;
    bool disk_tier = true;
    bool direct = false;
};

// The bytes of tensor t of group g at version 0, as SimModel writes them.
std::vector<unsigned char> pattern_bytes(std::uint32_t group, std::uint32_t tensor,
                                         std::uint64_t bytes);

// The expected 64-bit word at word index i of a tensor; mutable tensors add `version`.
// Read as bf16, its exponents take 8 values, so that the codec's encoding pays.
std::uint64_t pattern_word(std::uint32_t group, std::uint32_t tensor, std::uint64_t i,
                           std::uint64_t version);

// Failures seen on stream threads (sim workers, CUDA's host-function thread), checked by
// the test thread once the streams are drained.
struct Failures {
    std::atomic<std::uint64_t> count{0};
    std::atomic<std::uint64_t> checked{0};  // run_group checks that ran, failed or not
    std::atomic<std::uint64_t> bytes_checked{0};  // tensor bytes those checks compared
    std::atomic<std::uint64_t> pending{0};  // checks queued that have not run yet
    std::mutex mutex;
    std::string first;
    Failures() = default;
    ~Failures();  // waits for the pending checks, which write here
    Failures(const Failures &) = delete;
    Failures &operator=(const Failures &) = delete;
    void add(const std::string &what);
};

class ScratchPool;

class SimModel {
   public:
    // Creates (on test_backend()), defines, plans, fills and seals. Throws
    // std::runtime_error with the library's message if a step fails (status in `status()`
    // of the failing call).
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

    // A compute stream owned by this model (a worker thread on sim, a CUDA stream).
    void *create_stream();

    // acquire(g, stream); enqueue a check of every byte (and a version bump of mutable
    // tensors) on the stream; release(g, stream). Returns the first failing status. The
    // check has run once the stream is drained (drain(); on sim, at once for NULL).
    ferry_status run_group(std::size_t g, void *stream, Failures &failures);

    // Replaces frozen tensor t of group g by its next version through ferry_tensor_update,
    // in `pieces` ranges (at least 1) cut at random; later checks expect that version.
    // Returns the first failing status (the version is then not bumped).
    ferry_status update_tensor(std::size_t g, std::size_t t, int pieces, std::mt19937_64 &rng);
    // The version later checks expect of tensor t of group g.
    std::uint64_t version(std::size_t g, std::size_t t) const { return versions_[g][t]; }

    // Enqueues on `stream` a write of one wrong byte at the start of tensor t of group g,
    // as a kernel writing where it should not would. The caller holds the group.
    void corrupt_first_byte(std::size_t g, std::size_t t, void *stream);

    // Waits for every stream's work, the caller's default stream (NULL) included.
    void drain();

    // After ferry_synchronize: host bytes of mutable tensors show the latest version.
    bool host_versions_current(Failures &failures);

    ferry_stats stats() const;

   private:
    void load_weights();
    ModelSpec spec_;
    ferry_runtime *runtime_ = nullptr;
    std::vector<ferry_group> groups_;
    std::vector<std::vector<ferry_tensor>> tensors_;
    std::vector<std::vector<std::uint64_t>> versions_;  // expected next version per tensor
    std::vector<void *> streams_;
    std::unique_ptr<ScratchPool> scratch_;
};

// Runs `passes` passes in the model's schedule order (definition order when learned),
// spreading the groups at random over `streams` new compute streams, or the calling thread
// when 0. A call that fails is added to `failures`.
void run_passes(SimModel &model, int passes, int streams, Failures &failures,
                std::mt19937_64 &rng);

// Throws std::runtime_error("<call>: <status>: <message>") unless status is FERRY_OK.
void check(ferry_status status, const char *call);

// `bytes` bytes of device memory at `device_ptr`, copied to the host through the runtime's
// device on the caller's default stream (NULL), after the work already queued there. A
// host wait: for checks outside the pipeline, where no stream must be kept busy.
std::vector<unsigned char> read_device(ferry_runtime *runtime, const void *device_ptr,
                                       std::size_t bytes);

}  // namespace ferry_test
