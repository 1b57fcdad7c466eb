// runtime/ (the top): the C API over core/, and the thread's last-error message.
// The C boundary of weights files (ferry.h "Weights files"): the ferry_weights handle
// over a shared load::WeightSet, the tensors it lists, define and load, copy-out.
#include <algorithm>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "c_api_common.hpp"
#include "ferry/ferry.h"
#include "load/weights.hpp"

using namespace ferry::api;  // NOLINT: the C API's own helpers

namespace {

constexpr std::uint64_t kWeightsMagic = 0x737468676965772dULL;  // "-weights"

// Reads a struct of a caller's struct_size over `defaults`: an older, smaller struct gets
// the defaults of the fields it lacks.
template <typename T>
T read_sized(const T *given, const T &defaults, const char *what) {
    T out = defaults;
    if (given == nullptr) return out;
    FERRY_EXPECTS(given->struct_size >= sizeof(size_t) && given->struct_size <= (1u << 16),
                  FERRY_ERROR_INVALID_ARGUMENT,
                  std::string(what) + ".struct_size is " + std::to_string(given->struct_size) +
                      ": set it with its _init function or to sizeof");
    std::memcpy(static_cast<void *>(&out), given, std::min(given->struct_size, sizeof out));
    out.struct_size = sizeof out;
    return out;
}

}  // namespace

struct ferry_weights {
    std::uint64_t magic = kWeightsMagic;
    std::shared_ptr<ferry::load::WeightSet> set;  // runtimes reading at onload share it
};

namespace {

const ferry::load::WeightSet &set_of(const ferry_weights *weights) {
    FERRY_EXPECTS(weights != nullptr, FERRY_ERROR_INVALID_ARGUMENT, "weights is NULL");
    FERRY_EXPECTS(weights->magic == kWeightsMagic, FERRY_ERROR_INVALID_ARGUMENT,
                  "weights is not an open ferry_weights");
    return *weights->set;
}

}  // namespace

extern "C" {

ferry_status ferry_weights_open(const char *path, ferry_weights **out) {
    return guarded("ferry_weights_open", [&] {
        require_out(out, "out");
        *out = nullptr;
        FERRY_EXPECTS(path != nullptr && path[0] != '\0', FERRY_ERROR_INVALID_ARGUMENT,
                      "path is NULL or empty");
        auto weights = std::make_unique<ferry_weights>();
        weights->set = ferry::load::WeightSet::open(path);
        *out = weights.release();
    });
}

ferry_status ferry_weights_close(ferry_weights *weights) {
    if (weights == nullptr) {
        ferry::clear_last_error();
        return FERRY_OK;
    }
    return guarded("ferry_weights_close", [&] {
        set_of(weights);
        weights->magic = 0;
        delete weights;
    });
}

ferry_status ferry_weights_count(const ferry_weights *weights, uint64_t *out) {
    return guarded("ferry_weights_count", [&] {
        const ferry::load::WeightSet &set = set_of(weights);
        require_out(out, "out");
        *out = set.tensors().size();
    });
}

ferry_status ferry_weights_tensor_at(const ferry_weights *weights, uint64_t index,
                                     ferry_weights_tensor *out) {
    return guarded("ferry_weights_tensor_at", [&] {
        const ferry::load::WeightSet &set = set_of(weights);
        require_out(out, "out");
        FERRY_EXPECTS(index < set.tensors().size(), FERRY_ERROR_INVALID_ARGUMENT,
                      "index " + std::to_string(index) + " is past the " +
                          std::to_string(set.tensors().size()) + " tensors of '" + set.path() +
                          "'");
        const ferry::load::FileTensor &tensor = set.tensors()[index];
        ferry_weights_tensor view{};
        view.name = tensor.name.c_str();
        view.file = set.file(tensor.file).path().c_str();
        view.dtype = tensor.dtype;
        view.file_dtype = tensor.dtype_name.c_str();
        view.ndim = static_cast<uint32_t>(tensor.shape.size());
        for (std::size_t d = 0; d < tensor.shape.size() && d < FERRY_MAX_DIMS; ++d) {
            view.shape[d] = tensor.shape[d];
        }
        view.bytes = tensor.bytes;
        view.file_offset = tensor.offset;
        *out = view;
    });
}

ferry_status ferry_weights_find(const ferry_weights *weights, const char *name,
                                uint64_t *out_index) {
    return guarded("ferry_weights_find", [&] {
        const ferry::load::WeightSet &set = set_of(weights);
        require_out(out_index, "out_index");
        FERRY_EXPECTS(name != nullptr, FERRY_ERROR_INVALID_ARGUMENT, "name is NULL");
        const ferry::load::FileTensor *tensor = set.find(name);
        FERRY_EXPECTS(tensor != nullptr, FERRY_ERROR_INVALID_ARGUMENT,
                      "no tensor '" + std::string(name) + "' in '" + set.path() + "'");
        *out_index = static_cast<uint64_t>(tensor - set.tensors().data());
    });
}

ferry_status ferry_weights_define(ferry_runtime *runtime, const ferry_weights *weights,
                                  const char *const *block_prefixes, size_t prefix_count,
                                  uint32_t blocks_per_group, ferry_dtype dtype) {
    return guarded("ferry_weights_define", [&] {
        ferry::Runtime &rt = runtime_of(runtime);
        const ferry::load::WeightSet &set = set_of(weights);
        FERRY_EXPECTS(block_prefixes != nullptr || prefix_count == 0,
                      FERRY_ERROR_INVALID_ARGUMENT, "block_prefixes is NULL");
        std::vector<std::string> prefixes;
        for (size_t i = 0; i < prefix_count; ++i) {
            FERRY_EXPECTS(block_prefixes[i] != nullptr, FERRY_ERROR_INVALID_ARGUMENT,
                          "block_prefixes[" + std::to_string(i) + "] is NULL");
            prefixes.emplace_back(block_prefixes[i]);
        }
        std::int32_t dtype_value = 0;  // as an integer: a C caller may pass any int
        std::memcpy(&dtype_value, &dtype, sizeof dtype_value);
        rt.define_from_weights(set, prefixes, blocks_per_group, dtype_value);
    });
}

void ferry_load_options_init(ferry_load_options *options) {
    if (options == nullptr) return;
    std::memset(options, 0, sizeof *options);
    options->struct_size = sizeof *options;
    options->convert_dtype = 1;
    options->disk_tier = 1;
}

ferry_status ferry_weights_load(ferry_runtime *runtime, const ferry_weights *weights,
                                const ferry_load_options *options, ferry_load_report *report) {
    return guarded("ferry_weights_load", [&] {
        ferry::Runtime &rt = runtime_of(runtime);
        set_of(weights);
        ferry_load_options defaults;
        ferry_load_options_init(&defaults);
        const ferry_load_options o = read_sized(options, defaults, "options");
        if (report != nullptr) {
            FERRY_EXPECTS(report->struct_size >= sizeof(size_t) &&
                              report->struct_size <= (1u << 16),
                          FERRY_ERROR_INVALID_ARGUMENT,
                          "report.struct_size is " + std::to_string(report->struct_size) +
                              ": set it to sizeof(ferry_load_report)");
        }
        ferry::LoadRequest request;
        request.name_prefix = o.name_prefix != nullptr ? o.name_prefix : "";
        request.all_tensors = o.tensors == nullptr;
        FERRY_EXPECTS(o.tensors != nullptr || o.tensor_count == 0, FERRY_ERROR_INVALID_ARGUMENT,
                      "options.tensors is NULL but tensor_count is " +
                          std::to_string(o.tensor_count));
        for (size_t i = 0; i < o.tensor_count; ++i) {
            request.tensors.push_back(index_of(rt, o.tensors[i].id, kTensorHandle));
        }
        request.allow_unused = o.allow_unused != 0;
        request.convert_dtype = o.convert_dtype != 0;
        request.threads = o.threads;
        request.direct = o.direct != 0;
        request.disk_tier = o.disk_tier != 0;
        if (o.progress != nullptr) {
            request.progress = [fn = o.progress, user = o.progress_user](uint64_t done,
                                                                         uint64_t total) {
                fn(user, done, total);
            };
        }
        const ferry_load_report done = rt.load_weights(weights->set, request);
        if (report != nullptr) {
            const size_t size = std::min(report->struct_size, sizeof done);
            std::memcpy(static_cast<void *>(report), &done, size);
            report->struct_size = size;
        }
    });
}

ferry_status ferry_tensor_copy_out(ferry_runtime *runtime, ferry_tensor tensor, uint64_t offset,
                                   void *dst, uint64_t bytes) {
    return guarded("ferry_tensor_copy_out", [&] {
        ferry::Runtime &rt = runtime_of(runtime);
        rt.copy_out(index_of(rt, tensor.id, kTensorHandle), offset, dst, bytes);
    });
}

}  // extern "C"
