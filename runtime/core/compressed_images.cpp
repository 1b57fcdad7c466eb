// core/: ferry::Runtime (definition, plan, seal, the pipeline) and what it plans with.
// Compressed streaming (config.compress): group images whose bf16/f16 tensors are encoded
// by codec/, decoded on the device at each onload.
//
// Layout. At seal, each group without mutable tensors, wholly in the pinned part of the
// host store and not on the disk tier, is encoded tensor by tensor (codec::plan_encode,
// threaded). Its compressed image is the tensors in image order, each at a 256-byte
// aligned offset: a container where the encoding pays, the raw bytes elsewhere. When the
// image is smaller than the raw one, it is written over the raw image at the group's
// host_offset: the store holds one copy of every tensor, raw or encoded. The pages past
// the compressed image stay mapped and pinned (they belong to a pinned registration).
//
// Onload. The compressed image is copied into the staging area (one DMA), then decoded
// into the slot on the same stream; the slot's `ready` is recorded after the decode. The
// staging area is one buffer the size of the largest candidate group's raw image (an
// upper bound of its compressed image), reserved at plan out of the budget: the planner
// plans with the budget less the staging area. Copies into it and the decodes reading it
// are ordered by zstage_free_, recorded after each decode and waited on before each copy,
// so that copies on callers' streams (synchronous mode) never overwrite a decode's input.
#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

#include "base/error.hpp"
#include "codec/codec.hpp"
#include "core/runtime.hpp"

namespace ferry {
namespace {

bool codec_dtype(ferry_dtype dtype, codec::Dtype *out) {
    if (dtype == FERRY_DTYPE_BF16) *out = kernels::codec::kBf16;
    else if (dtype == FERRY_DTYPE_F16) *out = kernels::codec::kF16;
    else return false;
    return true;
}

}  // namespace

// Groups with mutable tensors stay raw whole: their writeback copies into the host image,
// and their slot must hold what the caller wrote. Such groups are never split either.
bool Runtime::compress_candidate(const GroupDef &group) const {
    if (!options_.compress || group.has_mutable) return false;
    codec::Dtype dtype;
    for (std::uint32_t t : group.tensors) {
        if (codec_dtype(tensors_[t].dtype, &dtype)) return true;
    }
    return false;
}

std::uint64_t Runtime::compress_staging_bytes() const {
    std::uint64_t most = 0;
    for (const GroupDef &group : groups_) {
        if (compress_candidate(group)) most = std::max(most, group.image_bytes);
    }
    return most;
}

void Runtime::prepare_compression() {
    zstage_bytes_ = compress_staging_bytes();
    if (zstage_bytes_ == 0) return;
    zstage_ = static_cast<std::byte *>(device_->reserve(zstage_bytes_));
    zstage_free_ = device_->create_event();
    decode_results_ = device_->alloc_decode_results(groups_.size());
    stats_.slab_staging_bytes = zstage_bytes_;
}

void Runtime::release_compression() noexcept {
    for (CompressedImage &image : compressed_) {
        if (image.table != nullptr) device_->destroy_decode_table(image.table);
    }
    compressed_.clear();
    if (decode_results_ != nullptr) device_->free_decode_results(decode_results_);
    decode_results_ = nullptr;
    if (zstage_free_ != nullptr) device_->destroy_event(zstage_free_);
    zstage_free_ = nullptr;
    if (zstage_ != nullptr) device_->unreserve(zstage_);
    zstage_ = nullptr;
    zstage_bytes_ = 0;
    stats_.slab_staging_bytes = 0;
}

// At seal, before anything is onloaded. A group encoded by an earlier seal that failed
// later keeps its encoding (the same bytes).
void Runtime::encode_images() {
    if (zstage_ == nullptr) return;
    compressed_.resize(groups_.size());
    for (std::uint32_t g = 0; g < groups_.size(); ++g) {
        const GroupDef &def = groups_[g];
        if (compressed_[g].bytes > 0 || !compress_candidate(def) || def.disk_tensors > 0 ||
            def.image_bytes > zstage_bytes_ ||
            def.host_offset + def.image_bytes > host_->pinned_bytes()) {
            continue;
        }
        std::byte *host = host_->base() + def.host_offset;
        std::vector<std::uint32_t> order = def.tensors;
        std::sort(order.begin(), order.end(), [&](std::uint32_t a, std::uint32_t b) {
            return tensors_[a].offset < tensors_[b].offset;
        });
        std::vector<codec::EncodePlan> plans(order.size());
        CompressedImage image;
        std::uint64_t end = 0;
        bool any_coded = false;
        for (std::size_t i = 0; i < order.size(); ++i) {
            const TensorDef &tensor = tensors_[order[i]];
            kernels::DecodeJob job{};
            job.src_offset = align_up(end, kImageAlignment);
            job.dst_offset = tensor.offset;
            job.dst_bytes = tensor.bytes;
            job.src_bytes = tensor.bytes;
            codec::Dtype dtype;
            if (codec_dtype(tensor.dtype, &dtype)) {
                plans[i] = codec::plan_encode(host + tensor.offset, tensor.bytes, dtype);
                if (plans[i].pays) {
                    job.coded = 1;
                    job.src_bytes = plans[i].encoded_bytes;
                    any_coded = true;
                }
            }
            end = job.src_offset + job.src_bytes;
            image.jobs.push_back(job);
            image.job_tensor.push_back(order[i]);
        }
        const std::uint64_t bytes = align_up(end, kImageAlignment);
        if (!any_coded || bytes >= def.image_bytes) continue;  // it does not pay: raw
        std::vector<std::byte> buffer(bytes);
        for (std::size_t i = 0; i < order.size(); ++i) {
            const kernels::DecodeJob &job = image.jobs[i];
            if (job.coded != 0) {
                codec::write_encoded(plans[i], host + job.dst_offset, buffer.data() + job.src_offset);
            } else {
                std::memcpy(buffer.data() + job.src_offset, host + job.dst_offset, job.dst_bytes);
            }
        }
        kernels::assign_blocks(image.jobs.data(), static_cast<std::uint32_t>(image.jobs.size()));
        image.table = device_->create_decode_table(image.jobs.data(),
                                                   static_cast<std::uint32_t>(image.jobs.size()));
        image.bytes = bytes;
        // Committed: from here on the store holds the compressed image.
        std::memcpy(host, buffer.data(), bytes);
        compressed_[g] = std::move(image);
        ++stats_.compressed_groups;
        stats_.host_compressed_bytes += bytes;
        stats_.host_compressed_raw_bytes += def.image_bytes;
    }
}

const kernels::DecodeJob *Runtime::encoded_job(std::uint32_t tensor) const {
    const std::uint32_t group = tensors_[tensor].group;
    if (!compressed(group)) return nullptr;
    const CompressedImage &image = compressed_[group];
    for (std::size_t i = 0; i < image.jobs.size(); ++i) {
        if (image.job_tensor[i] == tensor) return image.jobs[i].coded != 0 ? &image.jobs[i] : nullptr;
    }
    return nullptr;
}

// The checksum of an encoded tensor's raw bytes, as its encoder stored it.
std::uint64_t Runtime::encoded_checksum(std::uint32_t tensor) const {
    const kernels::DecodeJob *job = encoded_job(tensor);
    const auto *container = reinterpret_cast<const std::uint8_t *>(
        host_->base() + groups_[tensors_[tensor].group].host_offset + job->src_offset);
    return kernels::codec::load_le(container + kernels::codec::kAtChecksum, 8);
}

// Under mutex_, after onload() waited for the slot's release: the compressed image into
// the staging area, decoded into the slot.
void Runtime::onload_compressed(std::uint32_t group, SlotState &slot, Stream stream) {
    const GroupDef &def = groups_[group];
    const CompressedImage &image = compressed_[group];
    device_->stream_wait(stream, zstage_free_);
    observer_->copy_h2d(group, zstage_, host_->base() + def.host_offset, image.bytes, stream);
    device_->decode(image.table, zstage_, slot.device, &decode_results_[group], stream);
    device_->record(zstage_free_, stream);
    stats_.bytes_h2d += image.bytes;
    stats_.bytes_h2d_compressed += image.bytes;
    stats_.bytes_decoded += def.image_bytes;
    ++stats_.decodes;
}

// Verify mode, at release: what the group's last decode found. The host waits for it.
void Runtime::check_decode(std::uint32_t group) {
    if (!compressed(group)) return;
    device_->event_synchronize(slots_[state_[group].slot].ready);
    const kernels::DecodeResult result = decode_results_[group];
    if (result.status == kernels::codec::kOk) return;
    const CompressedImage &image = compressed_[group];
    const std::uint32_t job = std::min<std::uint32_t>(result.job,
                                                      static_cast<std::uint32_t>(image.jobs.size() - 1));
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
