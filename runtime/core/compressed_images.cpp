// core/: ferry::Runtime (definition, plan, seal, the pipeline) and what it plans with.
// Compressed streaming (config.compress): group images whose bf16/f16 tensors are encoded
// by codec/, decoded on the device at each onload.
//
// Layout. At seal, each group without mutable tensors, wholly in the pinned part of the
// host store and not on the disk tier, is encoded tensor by tensor, the tensors spread
// over the hardware threads (encode_images()). Its compressed image is the tensors in image order, each at a 256-byte
// aligned offset: a container where the encoding pays, the raw bytes elsewhere. When the
// image is smaller than the raw one, it is written over the raw image at the group's
// host_offset: the store holds one copy of every tensor, raw or encoded. The pages past
// the compressed image stay mapped and pinned (they belong to a pinned registration).
//
// Onload. The compressed image (of a split group: the part that holds its tail's tensors)
// is copied into the staging area (one DMA), then decoded into the slot on the same
// stream; the slot's `ready` is recorded after the decode. A split group's head is decoded
// once into its place, the same way, at seal and after a re-plan.
//
// With a copy stream, decodes run on a decode stream of their own, so that the copy of the
// next group overlaps the decode of this one: a group then costs about
// max(compressed / link, raw / decode) of link time rather than their sum. The staging
// area is two buffers, used in turn: a copy into buffer b waits on the copy stream for
// zstage_free_[b] (the decode that last read it); the decode waits on the decode stream for
// zstage_full_[b] (the copy into it), and records the slot's `ready` and zstage_free_[b].
// In synchronous mode (no copy stream) copy and decode go on the caller's stream, through
// one buffer, ordered across callers' streams by zstage_free_[0] all the same.
//
// The staging area is reserved at plan out of the budget (the planner plans with the
// budget less the staging area), before anything is encoded: each buffer is sized by
// kStagingRatio of the largest candidate group's raw image (of those not preferred
// resident: compress_staging_bytes()), above the ratio trained bf16 weights reach
// (0.67-0.68); a group whose compressed image may be larger (by the encoder's bounds: at
// most 0.4% of the raw bytes over the real size) stays raw.
// After seal, plan_input() gives the planner each compressed group's pieces as the link
// carries them (compressed_link_pieces()), so that the re-plan values residency by them.
#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstring>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <new>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

#include "base/error.hpp"
#include "codec/codec.hpp"
#include "core/runtime.hpp"
#include "device/fault_injection.hpp"

namespace ferry {
namespace {

bool codec_dtype(ferry_dtype dtype, codec::Dtype *out) {
    if (dtype == FERRY_DTYPE_BF16) *out = kernels::codec::kBf16;
    else if (dtype == FERRY_DTYPE_F16) *out = kernels::codec::kF16;
    else return false;
    return true;
}

// The staging area over the largest candidate image's raw bytes.
constexpr double kStagingRatio = 0.8;

// Tensors this big are encoded on every thread, one at a time; smaller ones one a thread.
constexpr std::uint64_t kOwnThreads = 32ull << 20;

// Runs worker() on `threads` threads, this one among them, and returns once all have:
// on fewer where no more can be started (worker must then do the rest of the work).
template <typename Worker>
void run_on_threads(unsigned threads, Worker &worker) {
    std::vector<std::thread> pool;
    pool.reserve(threads);  // a vector that grew mid-loop could throw with threads running
    try {
        for (unsigned t = 1; t < threads; ++t) pool.emplace_back(std::ref(worker));
    } catch (const std::system_error &) {
        // No more threads: the ones started and this one do the work.
    }
    if (threads > 0) worker();
    for (std::thread &thread : pool) thread.join();
}

// Runs job(item, threads) for every item: those of kOwnThreads bytes and more one after
// the other with threads = 0 (every hardware thread), then the rest biggest first, each on
// one of up to hardware_concurrency threads (threads = 1). `items` is reordered. The
// first exception a job throws is rethrown once every thread has stopped.
template <typename Item, typename Job>
void run_biggest_first(std::vector<Item> &items, Job job) {
    std::stable_sort(items.begin(), items.end(),
                     [](const Item &a, const Item &b) { return a.bytes > b.bytes; });
    std::size_t next = 0;
    for (; next < items.size() && items[next].bytes >= kOwnThreads; ++next) job(items[next], 0u);
    const unsigned hardware = std::max(1u, std::thread::hardware_concurrency());
    const auto threads =
        static_cast<unsigned>(std::min<std::size_t>(hardware, items.size() - next));
    std::atomic<std::size_t> cursor{next};
    std::exception_ptr failure;
    std::mutex failure_mutex;
    auto worker = [&] {
        for (std::size_t i; (i = cursor.fetch_add(1)) < items.size();) {
            try {
                job(items[i], 1u);
            } catch (...) {
                std::lock_guard<std::mutex> lock(failure_mutex);
                if (failure == nullptr) failure = std::current_exception();
                cursor = items.size();
            }
        }
    };
    run_on_threads(threads, worker);
    if (failure != nullptr) std::rethrow_exception(failure);
}

}  // namespace

// Groups with mutable tensors stay raw whole: their writeback copies into the host image,
// and their slot must hold what the caller wrote. A shared host store (host_share) stays
// raw: the processes attached to it read the loader's images as they are.
bool Runtime::compress_candidate(const GroupDef &group) const {
    if (!options_.compress || group.has_mutable || !options_.host_share.empty()) return false;
    codec::Dtype dtype;
    for (std::uint32_t t : group.tensors) {
        if (codec_dtype(tensors_[t].dtype, &dtype)) return true;
    }
    return false;
}

// Sized for the groups that stream. A group preferred resident (ferry.torch's root: the
// embeddings, norms and head, often the largest group of all) is planned resident first,
// so it does not count unless every candidate is preferred; should it stream after all, or
// be larger than the staging area while resident, it stays raw.
std::uint64_t Runtime::compress_staging_bytes() const {
    std::uint64_t most = 0, most_preferred = 0;
    for (const GroupDef &group : groups_) {
        if (!compress_candidate(group)) continue;
        std::uint64_t &into = group.prefer_resident ? most_preferred : most;
        into = std::max(into, group.image_bytes);
    }
    if (most == 0) most = most_preferred;
    return align_up(static_cast<std::uint64_t>(static_cast<double>(most) * kStagingRatio),
                    kImageAlignment);
}

void Runtime::prepare_compression() {
    zstage_bytes_ = compress_staging_bytes();
    if (zstage_bytes_ == 0) return;
    zstage_count_ = staging_buffers();
    zstage_ = static_cast<std::byte *>(device_->reserve(zstage_count_ * zstage_bytes_));
    for (std::uint32_t b = 0; b < zstage_count_; ++b) {
        zstage_free_[b] = device_->create_event();
        zstage_full_[b] = device_->create_event();
    }
    if (copy_stream_ != nullptr) {
        decode_stream_ = device_->create_stream();
        observer_->set_decode_stream(decode_stream_);
    }
    decode_results_ = device_->alloc_decode_results(2 * groups_.size());
    stats_.slab_staging_bytes = zstage_count_ * zstage_bytes_;
}

void Runtime::synchronize_decodes() {
    if (decode_stream_ != nullptr) device_->stream_synchronize(decode_stream_);
}

void Runtime::release_compression() noexcept {
    for (CompressedImage &image : compressed_) {
        if (image.head_table != nullptr) device_->destroy_decode_table(image.head_table);
        if (image.tail_table != nullptr) device_->destroy_decode_table(image.tail_table);
    }
    compressed_.clear();
    if (decode_results_ != nullptr) device_->free_decode_results(decode_results_);
    decode_results_ = nullptr;
    if (decode_stream_ != nullptr) device_->destroy_stream(decode_stream_);  // drains it
    decode_stream_ = nullptr;
    for (std::uint32_t b = 0; b < 2; ++b) {
        if (zstage_free_[b] != nullptr) device_->destroy_event(zstage_free_[b]);
        if (zstage_full_[b] != nullptr) device_->destroy_event(zstage_full_[b]);
        zstage_free_[b] = zstage_full_[b] = nullptr;
    }
    zstage_count_ = 0;
    if (zstage_ != nullptr) device_->unreserve(zstage_);
    zstage_ = nullptr;
    zstage_bytes_ = 0;
    stats_.slab_staging_bytes = 0;
}

// A group to encode: its tensors in image order and their plans, then its compressed image
// as laid out by the plans' bounds, each piece's place in the scratch image beside it.
struct Runtime::GroupEncoding {
    std::uint32_t group = 0;
    std::vector<std::uint32_t> order;
    std::vector<codec::EncodePlan> plans;
    CompressedImage image;
    std::vector<std::uint64_t> scratch_at;
};

// At seal, before anything is onloaded. A group encoded by an earlier seal that failed
// later keeps its encoding (the same bytes).
//
// A model's tensors are many and mostly under a few MiB, too small to split over threads
// one at a time: every tensor of every candidate group is planned at once, spread over
// the threads, each on one thread (biggest first, so that no big one runs alone at the
// end); tensors of kOwnThreads bytes and more are split over all threads instead, one
// after the other. Then write_images() writes the groups.
void Runtime::encode_images() {
    if (zstage_ == nullptr) return;
    compressed_.resize(groups_.size());
    std::vector<GroupEncoding> work;
    for (std::uint32_t g = 0; g < groups_.size(); ++g) {
        const GroupDef &def = groups_[g];
        if (compressed_[g].bytes > 0 || !compress_candidate(def) || def.disk_tensors > 0 ||
            def.host_offset + def.image_bytes > host_->pinned_bytes()) {
            continue;
        }
        GroupEncoding w;
        w.group = g;
        w.order = def.tensors;
        std::sort(w.order.begin(), w.order.end(), [&](std::uint32_t a, std::uint32_t b) {
            return tensors_[a].offset < tensors_[b].offset;
        });
        w.plans.resize(w.order.size());
        work.push_back(std::move(w));
    }
    auto host_of = [&](std::uint32_t g, std::uint32_t t) {
        return host_->base() + groups_[g].host_offset + tensors_[t].offset;
    };

    struct Item {
        std::size_t work, index;
        std::uint64_t bytes;
    };
    std::vector<Item> items;
    for (std::size_t w = 0; w < work.size(); ++w) {
        for (std::size_t i = 0; i < work[w].order.size(); ++i) {
            codec::Dtype dtype;
            const TensorDef &tensor = tensors_[work[w].order[i]];
            if (codec_dtype(tensor.dtype, &dtype)) items.push_back({w, i, tensor.bytes});
        }
    }
    run_biggest_first(items, [&](const Item &item, unsigned threads) {
        GroupEncoding &w = work[item.work];
        const TensorDef &tensor = tensors_[w.order[item.index]];
        codec::Dtype dtype = kernels::codec::kBf16;
        codec_dtype(tensor.dtype, &dtype);  // true: items are of codec dtypes only
        codec::EncodeOptions options;
        options.threads = threads;
        w.plans[item.index] = codec::plan_encode(host_of(w.group, w.order[item.index]),
                                                 tensor.bytes, dtype, options);
    });

    // Each group that may pay is laid out by the encoder's bounds in a scratch image,
    // written there piece by piece, then moved into the store at the offsets of the real
    // sizes.
    std::vector<GroupEncoding> writes;
    for (GroupEncoding &w : work) {
        std::uint64_t end = 0;
        bool any_coded = false;
        for (std::size_t i = 0; i < w.order.size(); ++i) {
            const TensorDef &tensor = tensors_[w.order[i]];
            kernels::DecodeJob job{};
            job.dst_offset = tensor.offset;
            job.dst_bytes = tensor.bytes;
            job.src_bytes = tensor.bytes;
            if (w.plans[i].pays) {
                job.coded = 1;
                job.src_bytes = w.plans[i].max_encoded_bytes;
                any_coded = true;
            }
            w.scratch_at.push_back(align_up(end, kImageAlignment));
            end = w.scratch_at.back() + job.src_bytes;
            w.image.jobs.push_back(job);
            w.image.job_tensor.push_back(w.order[i]);
        }
        // Raw when it does not pay, or may not fit the staging area.
        const std::uint64_t most = align_up(end, kImageAlignment);
        if (any_coded && most < groups_[w.group].image_bytes && most <= zstage_bytes_)
            writes.push_back(std::move(w));
    }
    write_images(writes);
    split_compressed();
}

// Writes the groups of `writes` in order and commits each into the store. Their pieces
// are one queue, each group's biggest first, taken by every hardware thread in turn: a
// thread done with one group goes on with the next rather than wait for the group's last
// piece. Two scratch images are used in turn, so a group is started only once the one two
// before it is committed; whoever writes a group's last piece commits it. A group that
// fails part-way stays raw (the store is written only at commit), and the first exception
// is rethrown once every thread has stopped.
void Runtime::write_images(std::vector<GroupEncoding> &writes) {
    struct Piece {
        std::size_t write, index;
    };
    std::vector<Piece> queue;
    for (std::size_t k = 0; k < writes.size(); ++k) {
        const std::size_t first = queue.size();
        for (std::size_t i = 0; i < writes[k].image.jobs.size(); ++i) queue.push_back({k, i});
        std::stable_sort(queue.begin() + static_cast<std::ptrdiff_t>(first), queue.end(),
                         [&](const Piece &a, const Piece &b) {
                             return writes[k].image.jobs[a.index].dst_bytes >
                                    writes[k].image.jobs[b.index].dst_bytes;
                         });
    }
    std::vector<std::atomic<std::size_t>> left(writes.size());  // pieces not yet written
    for (std::size_t k = 0; k < writes.size(); ++k) left[k] = writes[k].image.jobs.size();
    const unsigned hardware = std::max(1u, std::thread::hardware_concurrency());
    constexpr std::size_t kScratchImages = 2;
    // Never zero-filled: clearing would touch as many pages as the groups' bytes.
    std::unique_ptr<std::byte[]> scratch[kScratchImages];
    for (std::size_t b = 0; b < std::min(kScratchImages, writes.size()); ++b)
        scratch[b].reset(new std::byte[zstage_bytes_]);
    std::vector<char> committed(writes.size(), 0);
    std::mutex mutex;  // committed, failure
    std::condition_variable commit_done;
    std::exception_ptr failure;
    std::atomic<std::size_t> cursor{0};

    auto commit = [&](std::size_t k) {
        GroupEncoding &gw = writes[k];
        const GroupDef &def = groups_[gw.group];
        std::byte *host = host_->base() + def.host_offset;
        const std::byte *from = scratch[k % kScratchImages].get();
        // Committed: from here on the store holds the compressed image.
        std::uint64_t written = 0;
        for (std::size_t i = 0; i < gw.image.jobs.size(); ++i) {
            kernels::DecodeJob &job = gw.image.jobs[i];
            job.src_offset = align_up(written, kImageAlignment);
            std::memset(host + written, 0, job.src_offset - written);  // alignment gap
            std::memcpy(host + job.src_offset, from + gw.scratch_at[i], job.src_bytes);
            written = job.src_offset + job.src_bytes;
        }
        const std::uint64_t bytes = align_up(written, kImageAlignment);
        std::memset(host + written, 0, bytes - written);
        gw.image.bytes = bytes;
        std::lock_guard<std::mutex> lock(mutex);
        committed[k] = 1;
        commit_done.notify_all();
    };
    auto write_piece = [&](const Piece &piece) {
        GroupEncoding &gw = writes[piece.write];
        kernels::DecodeJob &job = gw.image.jobs[piece.index];
        const std::byte *host = host_->base() + groups_[gw.group].host_offset + job.dst_offset;
        std::byte *to = scratch[piece.write % kScratchImages].get() + gw.scratch_at[piece.index];
        if (job.coded == 0) return std::memcpy(to, host, job.dst_bytes), void();
        // A group of fewer pieces than threads lends each piece the threads left over.
        const auto pieces = static_cast<unsigned>(gw.image.jobs.size());
        const unsigned threads = pieces >= hardware ? 1 : (hardware + pieces - 1) / pieces;
        job.src_bytes = codec::write_encoded(gw.plans[piece.index], host, to, threads);
        // After the write, so that in a test the other threads have gone on meanwhile.
        if (FaultInjector::instance().fire(Fault::encode)) throw std::bad_alloc();
    };
    auto worker = [&] {
        for (std::size_t q; (q = cursor.fetch_add(1)) < queue.size();) {
            const Piece &piece = queue[q];
            try {
                if (piece.write >= kScratchImages) {
                    std::unique_lock<std::mutex> lock(mutex);
                    commit_done.wait(lock, [&] {
                        return committed[piece.write - kScratchImages] != 0 || failure != nullptr;
                    });
                    if (failure != nullptr) return;
                }
                write_piece(piece);
                if (left[piece.write].fetch_sub(1) == 1) commit(piece.write);
            } catch (...) {
                std::lock_guard<std::mutex> lock(mutex);
                if (failure == nullptr) failure = std::current_exception();
                cursor = queue.size();
                commit_done.notify_all();
                return;
            }
        }
    };
    run_on_threads(static_cast<unsigned>(std::min<std::size_t>(hardware, queue.size())), worker);
    // Every committed group, also when another failed: the store holds its compressed image.
    for (std::size_t k = 0; k < writes.size(); ++k) {
        if (committed[k] == 0) continue;
        CompressedImage &image = writes[k].image;
        ++stats_.compressed_groups;
        stats_.host_compressed_bytes += image.bytes;
        stats_.host_compressed_raw_bytes += groups_[writes[k].group].image_bytes;
        compressed_[writes[k].group] = std::move(image);
    }
    if (failure != nullptr) std::rethrow_exception(failure);
}

// Per tensor of compressed group g, in image order (as plan_input's pieces): the bytes its
// part of the compressed image takes, up to the next part.
std::vector<std::uint64_t> Runtime::compressed_link_pieces(std::uint32_t g) const {
    const CompressedImage &image = compressed_[g];
    std::vector<std::uint64_t> out(image.jobs.size());
    for (std::size_t k = 0; k < image.jobs.size(); ++k) {
        const std::uint64_t next = k + 1 < image.jobs.size() ? image.jobs[k + 1].src_offset : image.bytes;
        out[k] = next - image.jobs[k].src_offset;
    }
    return out;
}

// The decode tables of each compressed group for its head_bytes, when they changed.
void Runtime::split_compressed() {
    for (std::uint32_t g = 0; g < compressed_.size(); ++g) {
        CompressedImage &image = compressed_[g];
        const std::uint64_t head = groups_[g].head_bytes;
        if (image.bytes == 0 || image.split_at == head) continue;
        std::vector<kernels::DecodeJob> heads, tails;
        for (const kernels::DecodeJob &job : image.jobs) {
            FERRY_EXPECTS(job.dst_offset >= head || job.dst_offset + job.dst_bytes <= head,
                          FERRY_ERROR_INTERNAL,
                          describe_group(g) + ": its head ends inside a tensor");
            (job.dst_offset < head ? heads : tails).push_back(job);
        }
        const std::uint64_t tail_src = tails.empty() ? image.bytes : tails.front().src_offset;
        for (kernels::DecodeJob &job : tails) {
            job.src_offset -= tail_src;
            job.dst_offset -= head;
        }
        auto make = [&](std::vector<kernels::DecodeJob> &jobs) -> void * {
            if (jobs.empty()) return nullptr;
            const auto count = static_cast<std::uint32_t>(jobs.size());
            kernels::assign_blocks(jobs.data(), count);
            return device_->create_decode_table(jobs.data(), count);
        };
        void *head_table = make(heads);
        void *tail_table = nullptr;
        try {
            tail_table = make(tails);
        } catch (...) {
            if (head_table != nullptr) device_->destroy_decode_table(head_table);
            throw;
        }
        if (image.head_table != nullptr) device_->destroy_decode_table(image.head_table);
        if (image.tail_table != nullptr) device_->destroy_decode_table(image.tail_table);
        image.head_table = head_table;
        image.tail_table = tail_table;
        image.head_jobs = static_cast<std::uint32_t>(heads.size());
        image.tail_src = tail_src;
        image.split_at = head;
    }
}

// The piece of its group's compressed image that holds `tensor` (a container, or its raw
// bytes moved to the piece's offset); nullptr when its group is not compressed.
const kernels::DecodeJob *Runtime::compressed_piece(std::uint32_t tensor) const {
    const std::uint32_t group = tensors_[tensor].group;
    if (!compressed(group)) return nullptr;
    const CompressedImage &image = compressed_[group];
    for (std::size_t i = 0; i < image.jobs.size(); ++i) {
        if (image.job_tensor[i] == tensor) return &image.jobs[i];
    }
    return nullptr;
}

const kernels::DecodeJob *Runtime::encoded_job(std::uint32_t tensor) const {
    const kernels::DecodeJob *piece = compressed_piece(tensor);
    return piece != nullptr && piece->coded != 0 ? piece : nullptr;
}

std::byte *Runtime::host_bytes_of(std::uint32_t tensor) const {
    const TensorDef &def = tensors_[tensor];
    const kernels::DecodeJob *piece = compressed_piece(tensor);
    return host_->base() + groups_[def.group].host_offset +
           (piece != nullptr ? piece->src_offset : def.offset);
}

// The checksum of an encoded tensor's raw bytes, as its encoder stored it.
std::uint64_t Runtime::encoded_checksum(std::uint32_t tensor) const {
    const auto *container = reinterpret_cast<const std::uint8_t *>(host_bytes_of(tensor));
    return kernels::codec::load_le(container + kernels::codec::kAtChecksum, 8);
}

// Under mutex_, after onload() waited for the slot's release: the compressed image into
// the staging area, decoded into the slot.
void Runtime::onload_compressed(std::uint32_t group, SlotState &slot, Stream stream) {
    const GroupDef &def = groups_[group];
    const CompressedImage &image = compressed_[group];
    const std::uint64_t bytes = image.bytes - image.tail_src;
    if (image.tail_table == nullptr) return device_->record(slot.ready, stream);  // all head
    decode_from_staging(group, image.tail_src, bytes, def.image_bytes - def.head_bytes,
                        image.tail_table, slot.device,
                        &decode_results_[2 * group], stream, slot.ready, /*timed=*/true);
    stats_.bytes_h2d += bytes;
    stats_.bytes_h2d_compressed += bytes;
    stats_.bytes_decoded += def.image_bytes - def.head_bytes;
    ++stats_.decodes;
}

// Bytes [src, src + bytes) of the group's compressed image copied on `stream` into the
// next staging buffer, then decoded by `table` into `dst`; `ready` (if any) is recorded
// once the decode is done, where a later reader of dst can wait for it.
void Runtime::decode_from_staging(std::uint32_t group, std::uint64_t src, std::uint64_t bytes,
                                  std::uint64_t decoded, void *table, std::byte *dst,
                                  kernels::DecodeResult *result, Stream stream, Event ready,
                                  bool timed) {
    const std::uint32_t b = zstage_next_;
    zstage_next_ = (zstage_next_ + 1) % zstage_count_;
    std::byte *buffer = zstage_ + b * zstage_bytes_;
    const bool beside = stream == copy_stream_ && decode_stream_ != nullptr;
    const Stream decode = beside ? decode_stream_ : stream;
    device_->stream_wait(stream, zstage_free_[b]);
    // The compute clock times the copy alone, after the wait for the staging buffer: the
    // bytes that cross the link, as the planner counts them (plan_input's link_pieces).
    timed = timed && clock_ != nullptr;
    if (timed) clock_->copy_begin(*device_, bytes, stream);
    observer_->copy_h2d(group, buffer, host_->base() + groups_[group].host_offset + src, bytes,
                        stream);
    if (timed) clock_->copy_end(*device_, stream);
    if (beside) {
        device_->record(zstage_full_[b], stream);
        device_->stream_wait(decode, zstage_full_[b]);
    }
    observer_->decode(group, table, buffer, dst, decoded, result, decode);
    device_->record(zstage_free_[b], decode);
    if (ready != nullptr) device_->record(ready, decode);
}

// A split group's head, decoded once into its place (seal, re-plan).
void Runtime::onload_head_compressed(std::uint32_t group, Stream stream) {
    const GroupDef &def = groups_[group];
    const CompressedImage &image = compressed_[group];
    if (image.head_table == nullptr) return;
    decode_from_staging(group, 0, image.tail_src, def.head_bytes, image.head_table,
                        state_[group].head,
                        &decode_results_[2 * group + 1], stream, nullptr, /*timed=*/false);
    stats_.bytes_h2d += image.tail_src;
    stats_.bytes_h2d_compressed += image.tail_src;
    stats_.bytes_decoded += def.head_bytes;
    ++stats_.decodes;
}

// Verify mode, at release: what the group's last decode found, and its head's (decoded
// before seal or the re-plan returned). The host waits for the slot's decode.
void Runtime::check_decode(std::uint32_t group) {
    if (!compressed(group)) return;
    const CompressedImage &image = compressed_[group];
    const GroupState &state = state_[group];
    if (state.slot >= 0 && image.tail_table != nullptr) {
        device_->event_synchronize(slots_[state.slot].ready);
    }
    kernels::DecodeResult result = decode_results_[2 * group];
    std::uint32_t first = image.head_jobs;  // the table's first job in image.jobs
    if (result.status == kernels::codec::kOk || image.tail_table == nullptr) {
        result = decode_results_[2 * group + 1];
        first = 0;
        if (result.status == kernels::codec::kOk || image.head_table == nullptr) return;
    }
    const std::uint32_t job = std::min<std::uint32_t>(
        first + result.job, static_cast<std::uint32_t>(image.jobs.size() - 1));
    const std::string text =
        "verify: the compressed image of " + describe_group(group) + " failed to decode: tensor '" +
        tensors_[image.job_tensor[job]].name + "': " +
        codec::status_name(static_cast<codec::Status>(result.status)) +
        " (its bytes in the host store are corrupt)";
    {
        std::lock_guard<std::mutex> lock(deferred_mutex_);
        if (deferred_status_ == FERRY_OK) {
            deferred_status_ = FERRY_ERROR_VERIFY_FAILED;
            deferred_message_ = text;
        }
    }
    deferred_.store(true);
}

// Under mutex_ (copy_out): the whole tensor decoded on the CPU, the range copied out.
void Runtime::copy_out_encoded(std::uint32_t tensor, std::uint64_t offset, void *dst,
                               std::uint64_t bytes) {
    const TensorDef &def = tensors_[tensor];
    const kernels::DecodeJob *job = encoded_job(tensor);
    std::vector<std::byte> raw(def.bytes);
    const codec::Status status =
        codec::decode(host_->base() + groups_[def.group].host_offset + job->src_offset,
                      job->src_bytes, raw.data(), raw.size(), 0, true);
    FERRY_EXPECTS(status == kernels::codec::kOk, FERRY_ERROR_VERIFY_FAILED,
                  describe_tensor(tensor) + ": its compressed bytes in the host store do not "
                  "decode (" + codec::status_name(status) + ")");
    std::memcpy(dst, raw.data() + offset, bytes);
}

}  // namespace ferry
