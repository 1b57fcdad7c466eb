// core/: ferry::Runtime (definition, plan, seal, the pipeline) and what it plans with.
// Weights files and the runtime (ferry.h "Weights files"): groups and tensors defined
// from the files' tensors, and ferry_weights_load: every chosen tensor matched to the
// files first, all problems in one error, then the bytes read into the host store on the
// reader's threads, outside the runtime's lock.
#include <algorithm>
#include <map>
#include <string>

#include "base/clock.hpp"
#include "base/dtype.hpp"
#include "base/error.hpp"
#include "core/runtime.hpp"
#include "load/convert.hpp"
#include "load/reader.hpp"

namespace ferry {
namespace {

constexpr std::size_t kMaxProblemsListed = 50;

std::string shape_text(const std::vector<std::int64_t> &shape) {
    std::string text = "[";
    for (std::size_t i = 0; i < shape.size(); ++i) {
        if (i > 0) text += ", ";
        text += std::to_string(shape[i]);
    }
    return text + "]";
}

// "transformer_blocks.7.attn" with prefix "transformer_blocks." gives 7: a decimal number
// right after the prefix, then a dot. -1 when it does not match.
std::int64_t block_number(const std::string &name, const std::string &prefix) {
    if (prefix.empty() || name.compare(0, prefix.size(), prefix) != 0) return -1;
    std::size_t at = prefix.size();
    std::int64_t number = 0;
    std::size_t digits = 0;
    while (at < name.size() && name[at] >= '0' && name[at] <= '9') {
        if (++digits > 9) return -1;  // not a block count anyone has
        number = number * 10 + (name[at] - '0');
        ++at;
    }
    return digits > 0 && at < name.size() && name[at] == '.' ? number : -1;
}

}  // namespace

void Runtime::require_not_loading(const char *what) const {
    FERRY_EXPECTS(!loading_, FERRY_ERROR_WRONG_PHASE,
                  std::string(what) + " while runtime '" + options_.name +
                      "' is loading weights: wait for ferry_weights_load to return");
}

void Runtime::define_from_weights(const load::WeightSet &set,
                                  const std::vector<std::string> &prefixes,
                                  std::uint32_t blocks_per_group, std::int32_t dtype_value) {
    std::lock_guard<std::mutex> lock(mutex_);
    require_phase(FERRY_PHASE_DEFINE, "defining groups from weights");
    const auto dtype = static_cast<ferry_dtype>(dtype_value);
    FERRY_EXPECTS(dtype == FERRY_DTYPE_UNKNOWN || load::is_convertible(dtype),
                  FERRY_ERROR_INVALID_ARGUMENT,
                  "dtype " + std::to_string(dtype_value) + " is not FERRY_DTYPE_UNKNOWN (the "
                  "files' dtypes) nor a float dtype (F32, BF16, F16) to convert to");
    for (const std::string &prefix : prefixes) {
        FERRY_EXPECTS(!prefix.empty(), FERRY_ERROR_INVALID_ARGUMENT, "a block prefix is empty");
    }
    const std::uint32_t per_group = std::max<std::uint32_t>(1, blocks_per_group);

    // Groups in order: root, then each prefix's blocks by number. Tensors keep the set's
    // order (by name) within their group.
    struct Planned {
        std::string name;
        std::vector<const load::FileTensor *> tensors;
        std::int64_t first = -1, last = -1;  // blocks held
    };
    Planned root{"root", {}, -1, -1};
    std::vector<std::map<std::int64_t, Planned>> blocks(prefixes.size());
    for (const load::FileTensor &tensor : set.tensors()) {
        if (tensor.bytes == 0) continue;  // nothing to hold: not defined, never read
        Planned *into = &root;
        for (std::size_t p = 0; p < prefixes.size(); ++p) {
            const std::int64_t n = block_number(tensor.name, prefixes[p]);
            if (n < 0) continue;
            Planned &group = blocks[p][n / per_group];
            group.first = group.first < 0 ? n : std::min(group.first, n);
            group.last = std::max(group.last, n);
            into = &group;
            break;
        }
        into->tensors.push_back(&tensor);
    }
    std::vector<Planned *> order;
    if (!root.tensors.empty()) order.push_back(&root);
    for (std::size_t p = 0; p < prefixes.size(); ++p) {
        for (auto &[chunk, group] : blocks[p]) {
            group.name = prefixes[p] + std::to_string(group.first);
            if (per_group > 1) group.name += "-" + std::to_string(group.last);
            order.push_back(&group);
        }
    }
    FERRY_EXPECTS(!order.empty(), FERRY_ERROR_EMPTY,
                  "the weights in '" + set.path() + "' hold no tensor with bytes");

    // All or nothing: every name is checked before any group is defined, and what a later
    // check refuses (a size over the budget) is undone.
    for (const Planned *group : order) {
        check_name(group->name.c_str(), "group");
        for (const GroupDef &defined : groups_) {
            FERRY_EXPECTS(defined.name != group->name, FERRY_ERROR_DUPLICATE_NAME,
                          "group '" + group->name + "' (from the weights in '" + set.path() +
                              "') is already defined");
        }
        for (const load::FileTensor *tensor : group->tensors) {
            check_name(tensor->name.c_str(), "tensor");
        }
    }
    const std::size_t groups_before = groups_.size();
    const std::size_t tensors_before = tensors_.size();
    const std::uint64_t model_bytes_before = stats_.model_bytes;
    try {
        for (const Planned *planned : order) {
            const std::uint32_t g = define_group_locked(planned->name.c_str());
            groups_[g].prefer_resident = planned == &root;
            for (const load::FileTensor *tensor : planned->tensors) {
                ferry_dtype as = tensor->dtype;
                std::uint64_t bytes = tensor->bytes;
                if (dtype != FERRY_DTYPE_UNKNOWN && load::is_convertible(tensor->dtype)) {
                    as = dtype;
                    bytes = tensor->bytes / tensor->element_bytes * dtype_bytes(dtype);
                }
                define_tensor_locked(g, tensor->name.c_str(), bytes, as,
                                     static_cast<std::uint32_t>(tensor->shape.size()),
                                     tensor->shape.data(), 0);
            }
        }
    } catch (...) {
        groups_.resize(groups_before);
        tensors_.resize(tensors_before);
        group_count_.store(static_cast<std::uint32_t>(groups_before), std::memory_order_release);
        tensor_count_.store(static_cast<std::uint32_t>(tensors_before), std::memory_order_release);
        stats_.model_bytes = model_bytes_before;
        throw;
    }
}

ferry_load_report Runtime::load_weights(const std::shared_ptr<load::WeightSet> &set,
                                        const LoadRequest &request) {
    const std::uint64_t started = steady_now_ns();
    ferry_load_report report{};
    std::vector<load::ReadJob> jobs;
    std::vector<std::uint32_t> in_memory;  // the tensors of `jobs`
    std::vector<std::pair<std::uint32_t, const load::FileTensor *>> on_disk;
    {
        std::lock_guard<std::mutex> lock(mutex_);
        require_phase(FERRY_PHASE_PLANNED, "loading weights");
        require_not_loading("loading weights");
        std::vector<std::uint32_t> chosen = request.tensors;
        if (request.all_tensors) {
            chosen.clear();
            for (std::uint32_t t = 0; t < tensors_.size(); ++t) chosen.push_back(t);
        }
        std::sort(chosen.begin(), chosen.end());
        chosen.erase(std::unique(chosen.begin(), chosen.end()), chosen.end());

        // Match first, reading nothing: every problem, in one error.
        std::vector<std::string> problems;
        std::vector<bool> used(set->tensors().size(), false);
        std::vector<const load::FileTensor *> source(chosen.size(), nullptr);
        for (std::size_t i = 0; i < chosen.size(); ++i) {
            const TensorDef &def = tensors_[chosen[i]];
            const std::string wanted = request.name_prefix + def.name;
            const std::string who = describe_tensor(chosen[i]);
            const load::FileTensor *file = set->find(wanted);
            if (file == nullptr) {
                problems.push_back(who + ": missing, no tensor '" + wanted + "' in the files");
                continue;
            }
            used[static_cast<std::size_t>(file - set->tensors().data())] = true;
            const std::string in = "'" + set->file(file->file).path() + "'";
            bool ok = true;
            if ((def.dtype != FERRY_DTYPE_UNKNOWN || !def.shape.empty()) &&
                def.shape != file->shape) {
                problems.push_back(who + ": shape " + shape_text(def.shape) + " defined, " +
                                   shape_text(file->shape) + " in " + in);
                ok = false;
            }
            const bool raw = def.dtype == FERRY_DTYPE_UNKNOWN;
            const bool same = raw || def.dtype == file->dtype;
            if (!same) {
                const bool convertible =
                    load::is_convertible(def.dtype) && load::is_convertible(file->dtype);
                if (!convertible || !request.convert_dtype) {
                    problems.push_back(
                        who + ": dtype " + dtype_name(def.dtype) + " defined, " +
                        file->dtype_name + " in " + in +
                        (convertible ? " (convert_dtype is 0)"
                                     : " (only F32, BF16 and F16 convert to one another)"));
                    ok = false;
                }
            }
            if (ok) {
                const std::uint64_t expected =
                    same ? file->bytes
                         : file->bytes / file->element_bytes * dtype_bytes(def.dtype);
                if (expected != def.bytes) {
                    problems.push_back(who + ": " + std::to_string(def.bytes) +
                                       " bytes defined, " + std::to_string(expected) +
                                       " bytes from " + in);
                    ok = false;
                }
            }
            if (ok) source[i] = file;
        }
        if (!request.allow_unused) {
            for (std::size_t f = 0; f < used.size(); ++f) {
                const load::FileTensor &file = set->tensors()[f];
                if (used[f] || file.bytes == 0) continue;
                problems.push_back("tensor '" + file.name + "' of '" +
                                   set->file(file.file).path() +
                                   "': extra, read by no chosen tensor (the load option "
                                   "allow_unused accepts that)");
            }
        }
        if (!problems.empty()) {
            std::string message = std::to_string(problems.size()) +
                                  " problem(s) matching runtime '" + options_.name +
                                  "' to the weights in '" + set->path() + "':";
            for (std::size_t i = 0; i < problems.size() && i < kMaxProblemsListed; ++i) {
                message += "\n  " + problems[i];
            }
            if (problems.size() > kMaxProblemsListed) {
                message += "\n  ... and " + std::to_string(problems.size() - kMaxProblemsListed) +
                           " more";
            }
            throw Error(FERRY_ERROR_WEIGHTS_MISMATCH, message);
        }

        // An attached runtime's store holds the loader's bytes: nothing to read (ferry.h).
        if (attached()) {
            report.elapsed_ns = steady_now_ns() - started;
            return report;
        }
        // Then the reads: into the store, or left on the disk tier (never for a shared
        // store: the files are the loader's, and its store holds every byte).
        const bool disk_tier = request.disk_tier && options_.pin.pageable_fallback &&
                               !options_.verify && host_->pageable_bytes() > 0 &&
                               share_ == nullptr;
        for (std::size_t i = 0; i < chosen.size(); ++i) {
            const std::uint32_t t = chosen[i];
            const TensorDef &def = tensors_[t];
            const GroupDef &group = groups_[def.group];
            const load::FileTensor *file = source[i];
            const ferry_dtype to = def.dtype == FERRY_DTYPE_UNKNOWN ? file->dtype : def.dtype;
            if (disk_tier && !def.is_mutable && group.host_offset >= host_->pinned_bytes()) {
                on_disk.emplace_back(t, file);
                ++report.tensors_on_disk;
                report.bytes_on_disk += file->bytes;
                continue;
            }
            jobs.push_back({&set->file(file->file), file->offset, file->bytes,
                            file->dtype, to,
                            host_->base() + group.host_offset + def.offset});
            in_memory.push_back(t);
            ++report.tensors_read;
            if (jobs.back().from != to) ++report.tensors_converted;
        }
        loading_ = true;
    }

    // The long part, outside the lock: seal, copy-in and loads are refused meanwhile.
    load::ReadResult result;
    try {
        load::ReadOptions options;
        options.threads = request.threads;
        options.direct = request.direct;
        options.progress = request.progress;
        result = load::read_all(jobs, options);
    } catch (...) {
        std::lock_guard<std::mutex> lock(mutex_);
        loading_ = false;
        failed_load_ = set->path();
        throw;
    }
    std::lock_guard<std::mutex> lock(mutex_);
    loading_ = false;
    failed_load_.clear();
    commit_disk_tier(set, on_disk, in_memory, request.direct);  // disk_tier.cpp
    if (share_ != nullptr) share_->add_loaded(result.bytes_read);
    report.bytes_read = result.bytes_read;
    report.direct_bytes = result.direct_bytes;
    report.threads = result.threads;
    report.elapsed_ns = steady_now_ns() - started;
    observer_->publish(stats_, phase_);
    return report;
}

}  // namespace ferry
