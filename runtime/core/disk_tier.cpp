// core/: ferry::Runtime (definition, plan, seal, the pipeline) and what it plans with.
// The disk tier: with pageable_fallback, the immutable tensors of images past the pinned
// prefix are left in their weights files by ferry_weights_load, and every onload reads
// them from there into the staging ring's pinned buffers (load::read_one), then copies
// them to the device. Their part of the host store is never touched, so it costs no RSS.
#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "base/clock.hpp"
#include "base/dtype.hpp"
#include "base/error.hpp"
#include "core/runtime.hpp"
#include "load/reader.hpp"

namespace ferry {
namespace {

// The bytes [offset, offset + n) of a disk-tier tensor defined as `as` (its dtype, or
// UNKNOWN for raw bytes), read from its file into dst. offset and n are whole elements
// of `as`. Returns the file bytes read.
std::uint64_t read_disk_range(const DiskSource &source, ferry_dtype as, std::uint64_t offset,
                              std::uint64_t n, std::byte *dst, std::byte *scratch) {
    const load::FileTensor &file = *source.file_tensor;
    load::ReadJob job;
    job.file = &source.set->file(file.file);
    job.from = file.dtype;
    job.to = as == FERRY_DTYPE_UNKNOWN ? file.dtype : as;
    job.dst = dst;
    if (job.from == job.to) {
        job.offset = file.offset + offset;
        job.bytes = n;
    } else {
        const std::uint64_t in = file.element_bytes;
        const std::uint64_t out = dtype_bytes(job.to);
        job.offset = file.offset + offset / out * in;
        job.bytes = n / out * in;
    }
    load::read_one(job, source.direct, scratch);
    return job.bytes;
}

struct FillContext {
    Runtime *runtime;
    std::uint32_t group;
    std::uint64_t begin;
};

void *alloc_scratch() {
    void *ptr = nullptr;
    if (posix_memalign(&ptr, 4096, load::kChunkBytes) != 0) throw std::bad_alloc();
    return ptr;
}

}  // namespace

// At the end of a load that succeeded: `on_disk` stay in the files, `in_memory` were read
// into the store. The disk tier's figures and each disk group's tensors by offset follow.
void Runtime::commit_disk_tier(
    const std::shared_ptr<load::WeightSet> &set,
    const std::vector<std::pair<std::uint32_t, const load::FileTensor *>> &on_disk,
    const std::vector<std::uint32_t> &in_memory, bool direct) {
    if (on_disk.empty() && disk_.empty()) return;
    if (!on_disk.empty() && disk_scratch_ == nullptr) {
        disk_scratch_ = {static_cast<std::byte *>(alloc_scratch()), std::free};
    }
    disk_.resize(tensors_.size());
    disk_order_.resize(groups_.size());
    if (direct) {
        // Opened here, once, so that onloads (under the lock) only read the descriptor.
        for (const auto &file : set->files()) file->direct_fd();
    }
    for (std::uint32_t t : in_memory) disk_[t] = DiskSource{};
    for (const auto &[t, file] : on_disk) disk_[t] = DiskSource{set, file, direct};
    stats_.host_disk_bytes = 0;
    for (std::uint32_t g = 0; g < groups_.size(); ++g) {
        GroupDef &group = groups_[g];
        group.disk_tensors = 0;
        disk_order_[g].clear();
        for (std::uint32_t t : group.tensors) {
            if (disk_[t].set == nullptr) continue;
            ++group.disk_tensors;
            stats_.host_disk_bytes += tensors_[t].bytes;
        }
        if (group.disk_tensors == 0) continue;
        disk_order_[g] = group.tensors;
        std::sort(disk_order_[g].begin(), disk_order_[g].end(), [&](std::uint32_t a, std::uint32_t b) {
            return tensors_[a].offset < tensors_[b].offset;
        });
    }
}

// A disk-tier tensor whose bytes the caller now writes into the store (copy-in).
void Runtime::drop_disk_source(std::uint32_t tensor) {
    if (disk_.empty() || disk_[tensor].set == nullptr) return;
    disk_[tensor] = DiskSource{};
    GroupDef &group = groups_[tensors_[tensor].group];
    --group.disk_tensors;
    stats_.host_disk_bytes -= tensors_[tensor].bytes;
}

// A disk-tier tensor updated in SEALED (update.cpp): its whole bytes read from its file
// into its place in the store, whose pages the caller made writable; then the store's,
// as after a copy-in. A read that fails leaves it on the disk tier.
void Runtime::move_to_store(std::uint32_t tensor) {
    if (disk_.empty() || disk_[tensor].set == nullptr) return;
    const TensorDef &def = tensors_[tensor];
    std::byte *dst = host_->base() + groups_[def.group].host_offset + def.offset;
    const std::uint64_t started = steady_now_ns();
    const std::uint64_t file_bytes =
        read_disk_range(disk_[tensor], def.dtype, 0, def.bytes, dst, disk_scratch_.get());
    stats_.bytes_disk_read += file_bytes;
    observer_->disk_read(def.group, file_bytes, started, steady_now_ns());
    drop_disk_source(tensor);
}

// copy_image_staged() for an image with disk-tier tensors: each ring buffer is filled
// from the files and, for the image's other bytes (mutable or copied-in tensors), from
// the store.
void Runtime::copy_image_from_disk(std::uint32_t group, std::byte *dst, std::uint64_t begin,
                                   std::uint64_t end, Stream stream) {
    FillContext context{this, group, begin};
    staging_->fill_h2d(
        dst, end - begin, stream,
        [](void *user, std::byte *buffer, std::size_t offset, std::size_t n) {
            auto *c = static_cast<FillContext *>(user);
            c->runtime->fill_from_disk(c->group, c->begin, buffer, offset, n);
        },
        &context);
}

// Image bytes [begin + offset, begin + offset + n) into a staging buffer. Padding between
// tensors is zero, as in the store.
void Runtime::fill_from_disk(std::uint32_t group, std::uint64_t begin, std::byte *buffer,
                             std::size_t offset, std::size_t n) {
    const std::uint64_t lo = begin + offset;
    const std::uint64_t hi = lo + n;
    const std::byte *image = host_->base() + groups_[group].host_offset;
    const std::uint64_t started = steady_now_ns();
    std::uint64_t file_bytes = 0;
    std::uint64_t cursor = lo;
    for (std::uint32_t t : disk_order_[group]) {
        const TensorDef &tensor = tensors_[t];
        const std::uint64_t a = std::max(lo, tensor.offset);
        const std::uint64_t b = std::min(hi, tensor.offset + tensor.bytes);
        if (a >= b) continue;
        if (a > cursor) std::memset(buffer + (cursor - lo), 0, a - cursor);
        if (disk_[t].set != nullptr) {
            file_bytes += read_disk_range(disk_[t], tensor.dtype, a - tensor.offset, b - a,
                                          buffer + (a - lo), disk_scratch_.get());
        } else {
            std::memcpy(buffer + (a - lo), image + a, b - a);
        }
        cursor = b;
    }
    if (hi > cursor) std::memset(buffer + (cursor - lo), 0, hi - cursor);
    if (file_bytes == 0) return;
    stats_.bytes_disk_read += file_bytes;
    observer_->disk_read(group, file_bytes, started, steady_now_ns());
}

void Runtime::copy_out(std::uint32_t tensor, std::uint64_t offset, void *dst,
                       std::uint64_t bytes) {
    DiskSource source;
    ferry_dtype as = FERRY_DTYPE_UNKNOWN;
    {
        std::lock_guard<std::mutex> lock(mutex_);
        FERRY_EXPECTS(phase_ != FERRY_PHASE_DEFINE, FERRY_ERROR_WRONG_PHASE,
                      "host bytes exist after ferry_plan; runtime '" + options_.name +
                          "' is in phase DEFINE");
        require_not_loading("copying bytes out");
        const TensorDef &def = tensors_[tensor];
        FERRY_EXPECTS(dst != nullptr || bytes == 0, FERRY_ERROR_INVALID_ARGUMENT, "dst is NULL");
        FERRY_EXPECTS(offset <= def.bytes && bytes <= def.bytes - offset,
                      FERRY_ERROR_OUT_OF_RANGE,
                      describe_tensor(tensor) + " has " + std::to_string(def.bytes) +
                          " bytes; cannot copy " + std::to_string(bytes) + " bytes out at "
                          "offset " + std::to_string(offset));
        if (bytes == 0) return;
        if (encoded_job(tensor) != nullptr) return copy_out_encoded(tensor, offset, dst, bytes);
        if (disk_.empty() || disk_[tensor].set == nullptr) {
            std::memcpy(dst, host_bytes_of(tensor) + offset, bytes);
            return;
        }
        source = disk_[tensor];  // the files stay open while we read, outside the lock
        as = def.dtype;
    }
    // Whole elements, through a bounce buffer where the range cuts one.
    const std::uint64_t element = as == FERRY_DTYPE_UNKNOWN ? 1 : dtype_bytes(as);
    std::unique_ptr<std::byte, void (*)(void *)> scratch(
        static_cast<std::byte *>(alloc_scratch()), std::free);
    auto *out = static_cast<std::byte *>(dst);
    const std::uint64_t first = offset / element * element;
    const std::uint64_t last = (offset + bytes + element - 1) / element * element;
    const std::uint64_t step = load::kChunkBytes;  // a multiple of every element size
    std::vector<std::byte> bounce;  // for the pieces that cut an element, first or last
    for (std::uint64_t at = first; at < last;) {
        const std::uint64_t n = std::min(last - at, step);
        const std::uint64_t from = std::max(at, offset);
        const std::uint64_t to = std::min(at + n, offset + bytes);
        if (from == at && to == at + n) {
            read_disk_range(source, as, at, n, out + (at - offset), scratch.get());
        } else {
            bounce.resize(n);
            read_disk_range(source, as, at, n, bounce.data(), scratch.get());
            std::memcpy(out + (from - offset), bounce.data() + (from - at), to - from);
        }
        at += n;
    }
}

}  // namespace ferry
