// trust/: checking that frozen bytes stay frozen on the device (verify mode).
// The verifier (verifier.hpp).
#include "trust/verifier.hpp"

#include "base/error.hpp"

namespace ferry {

Verifier::Verifier(Device &device, std::vector<std::uint64_t> expected, std::size_t ring_words,
                   std::atomic<bool> &failed)
    : device_(device),
      expected_(std::move(expected)),
      ring_(ring_words),
      failed_(failed),
      word_tensor_(ring_words, 0),
      batches_(new Batch[ring_words]) {
    words_ = device_.alloc_checksum_results(ring_);
    for (std::size_t b = 0; b < ring_; ++b) batches_[b].owner = this;
}

Verifier::~Verifier() { device_.free_checksum_results(words_); }

void Verifier::reclaim() {
    while (oldest_batch_ < next_batch_) {
        Batch &batch = batches_[oldest_batch_ % ring_];
        if (!batch.done.load(std::memory_order_acquire)) return;
        words_busy_ -= batch.count;
        ++oldest_batch_;
    }
}

void Verifier::check(const std::uint32_t *tensor, const std::byte *const *device,
                     const std::uint64_t *bytes, std::size_t count, Stream stream) {
    if (count == 0) return;
    FERRY_EXPECTS(count <= ring_, FERRY_ERROR_INTERNAL, "verify ring smaller than a group");
    Batch *batch = nullptr;
    {
        std::unique_lock<std::mutex> lock(mutex_);
        reclaim();
        // Full: wait for the oldest release's checks (see the header).
        while (words_busy_ + count > ring_ || next_batch_ - oldest_batch_ == ring_) {
            cv_.wait(lock, [&] { return batches_[oldest_batch_ % ring_].done.load(); });
            reclaim();
        }
        batch = &batches_[next_batch_ % ring_];
        batch->first = next_word_;
        batch->count = count;
        batch->done.store(false, std::memory_order_relaxed);
        for (std::size_t i = 0; i < count; ++i) word_tensor_[(next_word_ + i) % ring_] = tensor[i];
        next_word_ += count;
        words_busy_ += count;
        ++next_batch_;
    }
    // Unlocked: on sim's calling-thread stream the callback runs right here.
    try {
        for (std::size_t i = 0; i < count; ++i) {
            device_.checksum(device[i], bytes[i], words_ + (batch->first + i) % ring_, stream);
        }
        device_.launch_host(stream, &Verifier::on_ready, batch);
    } catch (...) {
        {
            std::lock_guard<std::mutex> lock(mutex_);
            batch->done.store(true);  // its callback will never run: free its words
        }
        cv_.notify_all();
        throw;
    }
}

void Verifier::on_ready(void *user) {
    auto &batch = *static_cast<Batch *>(user);
    Verifier &self = *batch.owner;
    for (std::size_t i = 0; i < batch.count; ++i) {
        const std::size_t word = (batch.first + i) % self.ring_;
        const std::uint32_t tensor = self.word_tensor_[word];
        const std::uint64_t found = self.words_[word];
        if (found == self.expected_[tensor]) continue;
        self.failures_.fetch_add(1);
        std::lock_guard<std::mutex> lock(self.failure_mutex_);
        if (self.pending_.count++ == 0) {
            self.pending_.tensor = tensor;
            self.pending_.found = found;
            self.pending_.expected = self.expected_[tensor];
        }
        self.failed_.store(true);
    }
    {
        std::lock_guard<std::mutex> lock(self.mutex_);
        batch.done.store(true, std::memory_order_release);
    }
    self.cv_.notify_all();
}

void Verifier::drain() {
    std::unique_lock<std::mutex> lock(mutex_);
    for (;;) {
        reclaim();
        if (oldest_batch_ == next_batch_) return;
        cv_.wait(lock, [&] { return batches_[oldest_batch_ % ring_].done.load(); });
    }
}

void Verifier::set_expected(std::uint32_t tensor, std::uint64_t sum) {
    std::lock_guard<std::mutex> lock(mutex_);
    FERRY_EXPECTS(oldest_batch_ == next_batch_, FERRY_ERROR_INTERNAL,
                  "verify: an expected checksum changed while checks were pending");
    expected_[tensor] = sum;
}

VerifyFailure Verifier::take_failure() {
    std::lock_guard<std::mutex> lock(failure_mutex_);
    VerifyFailure out = pending_;
    pending_ = VerifyFailure{};
    return out;
}

}  // namespace ferry
