// trust/: checking that frozen bytes stay frozen on the device (verify mode).
// The verifier (verify mode): checksums of frozen tensors taken on a caller's stream at
// release, compared with the host image's checksums when the result is ready, by a host
// callback on that stream. Nothing on the release path allocates: result words and
// callback records live in fixed rings, sized at seal.
//
//   words    [w0 w1 w2 ... wR-1]  one per checksum; a release takes one per frozen tensor
//   batches  one per release: its words, and a `done` flag its host callback sets
//
// Words are taken and given back in FIFO order; when every word is in flight, the next
// release waits on the host for the oldest batch (documented in ferry.h).
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

#include "device/device.hpp"

namespace ferry {

struct VerifyFailure {
    std::uint64_t count = 0;  // mismatches since the last report
    std::uint32_t tensor = 0; // the first one's tensor, its checksum and the expected one
    std::uint64_t found = 0;
    std::uint64_t expected = 0;
};

class Verifier {
   public:
    // expected: per tensor index, the host image's checksum (only frozen tensors are
    // checked). ring_words: at least the most frozen tensors of any group. `failed` is set
    // when a mismatch is found.
    Verifier(Device &device, std::vector<std::uint64_t> expected, std::size_t ring_words,
             std::atomic<bool> &failed);
    // Callers make sure no callback is pending (the device is synchronized) first.
    ~Verifier();
    Verifier(const Verifier &) = delete;
    Verifier &operator=(const Verifier &) = delete;

    // Checks `count` tensors: tensor[i]'s device bytes at device[i]. Enqueues the checksums
    // and the comparing callback on `stream`.
    void check(const std::uint32_t *tensor, const std::byte *const *device,
               const std::uint64_t *bytes, std::size_t count, Stream stream);

    // Waits until every check submitted so far has been compared.
    void drain();
    // A frozen tensor's bytes were updated (core/update.cpp): later checks compare with
    // `sum`. Call drain() first, with no check submitted in between, so that no pending
    // check of the old bytes is compared with the new sum.
    void set_expected(std::uint32_t tensor, std::uint64_t sum);
    std::uint64_t failures() const { return failures_.load(); }
    // The mismatches since the last call (count 0: none), and forgets them.
    VerifyFailure take_failure();

   private:
    struct Batch {
        Verifier *owner = nullptr;
        std::size_t first = 0;  // word index (monotonic; ring position is % ring size)
        std::size_t count = 0;
        std::atomic<bool> done{true};
    };
    static void on_ready(void *batch);
    void reclaim();  // under mutex_

    Device &device_;
    std::vector<std::uint64_t> expected_;  // written only by set_expected, drained
    const std::size_t ring_;
    std::atomic<bool> &failed_;
    std::uint64_t *words_ = nullptr;
    std::vector<std::uint32_t> word_tensor_;
    std::unique_ptr<Batch[]> batches_;

    std::mutex mutex_;
    std::condition_variable cv_;
    std::size_t next_word_ = 0;    // monotonic
    std::size_t words_busy_ = 0;
    std::size_t next_batch_ = 0;   // monotonic
    std::size_t oldest_batch_ = 0; // monotonic: the oldest batch not yet reclaimed

    std::atomic<std::uint64_t> failures_{0};
    std::mutex failure_mutex_;
    VerifyFailure pending_;
};

}  // namespace ferry
