// runtime/ (the top): the C API over core/, and the thread's last-error message.
// The C boundary: validates handles, calls into ferry::Runtime, and turns every C++
// exception into a status plus the thread's last-error message. Nothing throws past here.
#include <cstdio>
#include <cstring>
#include <memory>
#include <new>
#include <string>
#include <vector>

#include "base/error.hpp"
#include "c_api_common.hpp"
#include "dlpack.hpp"
#include "error_state.hpp"
#include "ferry/ferry.h"
#include "base/names.hpp"
#include "core/runtime.hpp"
#include "core/serials.hpp"

#define FERRY_STRINGIFY_(x) #x
#define FERRY_STRINGIFY(x) FERRY_STRINGIFY_(x)

using namespace ferry::api;  // NOLINT: the C API's own helpers

ferry::Runtime &ferry_runtime_impl(ferry_runtime *runtime) { return runtime_of(runtime); }

extern "C" {

const char *ferry_version(void) {
    return FERRY_STRINGIFY(FERRY_VERSION_MAJOR) "." FERRY_STRINGIFY(
        FERRY_VERSION_MINOR) "." FERRY_STRINGIFY(FERRY_VERSION_PATCH);
}

uint32_t ferry_version_number(void) { return FERRY_VERSION_NUMBER; }

const char *ferry_status_string(ferry_status status) {
    switch (status) {
        case FERRY_OK: return "ok";
        case FERRY_ERROR_INVALID_ARGUMENT: return "invalid argument";
        case FERRY_ERROR_INVALID_HANDLE: return "invalid handle";
        case FERRY_ERROR_FOREIGN_HANDLE: return "handle of another runtime";
        case FERRY_ERROR_STALE_HANDLE: return "handle of a destroyed runtime";
        case FERRY_ERROR_WRONG_PHASE: return "call not valid in this phase";
        case FERRY_ERROR_INVALID_SIZE: return "invalid size";
        case FERRY_ERROR_SIZE_TOO_LARGE: return "size too large for the budget";
        case FERRY_ERROR_BUDGET_TOO_SMALL: return "VRAM budget too small";
        case FERRY_ERROR_DUPLICATE_NAME: return "duplicate name";
        case FERRY_ERROR_NOT_ACQUIRED: return "group not acquired";
        case FERRY_ERROR_NO_FREE_SLOT: return "no free slot in the size class";
        case FERRY_ERROR_GROUP_BUSY: return "group with mutable tensors still acquired";
        case FERRY_ERROR_EMPTY: return "nothing defined";
        case FERRY_ERROR_OUT_OF_RANGE: return "offset or size out of range";
        case FERRY_ERROR_OUT_OF_HOST_MEMORY: return "out of host memory";
        case FERRY_ERROR_OUT_OF_DEVICE_MEMORY: return "out of device memory";
        case FERRY_ERROR_BACKEND_UNAVAILABLE: return "backend unavailable";
        case FERRY_ERROR_DEVICE: return "device error";
        case FERRY_ERROR_INTERNAL: return "internal error";
        case FERRY_ERROR_VERIFY_FAILED: return "verify failed: frozen bytes changed";
        case FERRY_ERROR_STREAM_CAPTURING: return "stream is capturing a CUDA graph";
        case FERRY_ERROR_IO: return "weights file could not be opened or read";
        case FERRY_ERROR_FILE_TRUNCATED: return "weights file truncated";
        case FERRY_ERROR_FILE_FORMAT: return "malformed weights file";
        case FERRY_ERROR_WEIGHTS_MISMATCH: return "defined tensors and weights files disagree";
        case FERRY_ERROR_FILE_CHANGED: return "weights file changed after it was opened";
        case FERRY_ERROR_NOT_IN_MEMORY: return "tensor is on the disk tier, not in host memory";
        case FERRY_ERROR_HOST_SHARE: return "shared host store unusable";
        case FERRY_ERROR_HOST_SHARE_LAYOUT: return "shared host store holds another layout";
    }
    return "unknown status";
}

const char *ferry_last_error(void) { return ferry::last_error(); }

void ferry_config_init(ferry_config *config) {
    if (config == nullptr) return;
    std::memset(config, 0, sizeof *config);
    config->struct_size = sizeof *config;
    config->backend = FERRY_BACKEND_AUTO;
    config->device = 0;
    config->vram_budget = 0;
    config->slots_per_class = 2;
    config->synchronous = 0;
    config->name = "ferry";
    config->sim_seed = 1;
}

ferry_status ferry_create(const ferry_config *config, ferry_runtime **out) {
    return guarded("ferry_create", [&] {
        require_out(config, "config");
        require_out(out, "out");
        *out = nullptr;
        *out = new ferry_runtime(ferry::resolve_options(*config));
    });
}

ferry_status ferry_destroy(ferry_runtime *runtime) {
    if (runtime == nullptr) {
        ferry::clear_last_error();
        return FERRY_OK;
    }
    return guarded("ferry_destroy", [&] {
        ferry::Runtime &rt = runtime_of(runtime);
        // Freed whatever happens; a failure to write back is still reported.
        std::unique_ptr<ferry_runtime> owned(runtime);
        runtime->magic = 0;
        try {
            rt.finish();
        } catch (const ferry::Error &error) {
            throw ferry::Error(error.status(),
                               std::string(error.what()) +
                                   " (the runtime was freed; mutable updates not yet written "
                                   "back are lost)");
        }
    });
}

ferry_status ferry_phase_get(ferry_runtime *runtime, ferry_phase *out) {
    return guarded("ferry_phase_get", [&] {
        ferry::Runtime &rt = runtime_of(runtime);
        require_out(out, "out");
        *out = rt.phase();
    });
}

ferry_status ferry_group_define(ferry_runtime *runtime, const char *name, ferry_group *out) {
    return guarded("ferry_group_define", [&] {
        ferry::Runtime &rt = runtime_of(runtime);
        require_out(out, "out");
        const std::uint32_t index = rt.define_group(name);
        out->id = encode(rt.serial(), kGroupHandle, index);
    });
}

ferry_status ferry_group_prefer_resident(ferry_runtime *runtime, ferry_group group) {
    return guarded("ferry_group_prefer_resident", [&] {
        ferry::Runtime &rt = runtime_of(runtime);
        rt.prefer_resident(index_of(rt, group.id, kGroupHandle));
    });
}

ferry_status ferry_group_compute_declare(ferry_runtime *runtime, ferry_group group,
                                         uint64_t nanoseconds) {
    return guarded("ferry_group_compute_declare", [&] {
        ferry::Runtime &rt = runtime_of(runtime);
        rt.declare_compute(index_of(rt, group.id, kGroupHandle), nanoseconds);
    });
}

ferry_status ferry_tensor_define(ferry_runtime *runtime, ferry_group group, const char *name,
                                 uint64_t bytes, ferry_dtype dtype, uint32_t ndim,
                                 const int64_t *shape, uint32_t flags, ferry_tensor *out) {
    return guarded("ferry_tensor_define", [&] {
        ferry::Runtime &rt = runtime_of(runtime);
        require_out(out, "out");
        const std::uint32_t g = index_of(rt, group.id, kGroupHandle);
        std::int32_t dtype_value = 0;  // as an integer: a C caller may pass any int
        static_assert(sizeof dtype_value == sizeof dtype, "ferry_dtype is an int");
        std::memcpy(&dtype_value, &dtype, sizeof dtype_value);
        const std::uint32_t index =
            rt.define_tensor(g, name, bytes, dtype_value, ndim, shape, flags);
        out->id = encode(rt.serial(), kTensorHandle, index);
    });
}

ferry_status ferry_schedule_declare(ferry_runtime *runtime, const ferry_group *order,
                                    size_t count) {
    return guarded("ferry_schedule_declare", [&] {
        ferry::Runtime &rt = runtime_of(runtime);
        FERRY_EXPECTS(order != nullptr || count == 0, FERRY_ERROR_INVALID_ARGUMENT,
                       "order is NULL");
        std::vector<std::uint32_t> groups;
        groups.reserve(count);
        for (size_t i = 0; i < count; ++i) {
            groups.push_back(index_of(rt, order[i].id, kGroupHandle));
        }
        rt.declare_schedule(groups);
    });
}

ferry_status ferry_plan(ferry_runtime *runtime) {
    return guarded("ferry_plan", [&] { runtime_of(runtime).plan(); });
}

ferry_status ferry_tensor_host_ptr(ferry_runtime *runtime, ferry_tensor tensor, void **out) {
    return guarded("ferry_tensor_host_ptr", [&] {
        ferry::Runtime &rt = runtime_of(runtime);
        require_out(out, "out");
        *out = rt.tensor_host_ptr(index_of(rt, tensor.id, kTensorHandle));
    });
}

ferry_status ferry_tensor_copy_in(ferry_runtime *runtime, ferry_tensor tensor, uint64_t offset,
                                  const void *src, uint64_t bytes) {
    return guarded("ferry_tensor_copy_in", [&] {
        ferry::Runtime &rt = runtime_of(runtime);
        rt.copy_in(index_of(rt, tensor.id, kTensorHandle), offset, src, bytes);
    });
}

ferry_status ferry_seal(ferry_runtime *runtime) {
    return guarded("ferry_seal", [&] { runtime_of(runtime).seal(); });
}

ferry_status ferry_acquire(ferry_runtime *runtime, ferry_group group, void *stream) {
    return guarded("ferry_acquire", [&] {
        ferry::Runtime &rt = runtime_of(runtime);
        rt.acquire(index_of(rt, group.id, kGroupHandle), stream);
    });
}

ferry_status ferry_release(ferry_runtime *runtime, ferry_group group, void *stream) {
    return guarded("ferry_release", [&] {
        ferry::Runtime &rt = runtime_of(runtime);
        rt.release(index_of(rt, group.id, kGroupHandle), stream);
    });
}

ferry_status ferry_tensor_device_ptr(ferry_runtime *runtime, ferry_tensor tensor, void **out) {
    return guarded("ferry_tensor_device_ptr", [&] {
        ferry::Runtime &rt = runtime_of(runtime);
        require_out(out, "out");
        *out = rt.tensor_device_ptr(index_of(rt, tensor.id, kTensorHandle));
    });
}

ferry_status ferry_synchronize(ferry_runtime *runtime) {
    return guarded("ferry_synchronize", [&] { runtime_of(runtime).synchronize(); });
}

ferry_status ferry_stats_get(ferry_runtime *runtime, ferry_stats *out) {
    return guarded("ferry_stats_get", [&] {
        ferry::Runtime &rt = runtime_of(runtime);
        require_out(out, "out");
        FERRY_EXPECTS(out->struct_size >= sizeof(size_t) + 2 * sizeof(uint32_t) &&
                           out->struct_size <= (1u << 16),
                       FERRY_ERROR_INVALID_ARGUMENT,
                       "stats.struct_size is " + std::to_string(out->struct_size) +
                           ": set it to sizeof(ferry_stats)");
        const ferry_stats stats = rt.stats();
        const size_t size = out->struct_size < sizeof stats ? out->struct_size : sizeof stats;
        std::memcpy(out, &stats, size);
        out->struct_size = size;
    });
}

ferry_status ferry_group_info(ferry_runtime *runtime, ferry_group group, int32_t *resident,
                              int32_t *size_class, uint64_t *image_bytes) {
    return guarded("ferry_group_info", [&] {
        ferry::Runtime &rt = runtime_of(runtime);
        rt.group_info(index_of(rt, group.id, kGroupHandle), resident, size_class, image_bytes,
                      nullptr);
    });
}

ferry_status ferry_groups_list(ferry_runtime *runtime, ferry_group *out, size_t capacity,
                               size_t *count) {
    return guarded("ferry_groups_list", [&] {
        ferry::Runtime &rt = runtime_of(runtime);
        require_out(count, "count");
        FERRY_EXPECTS(out != nullptr || capacity == 0, FERRY_ERROR_INVALID_ARGUMENT,
                      "out is NULL with a capacity of " + std::to_string(capacity));
        const std::uint32_t groups = rt.group_count();
        for (std::uint32_t g = 0; g < groups && g < capacity; ++g) {
            out[g].id = encode(rt.serial(), kGroupHandle, g);
        }
        *count = groups;
    });
}

ferry_status ferry_group_tensors(ferry_runtime *runtime, ferry_group group, ferry_tensor *out,
                                 size_t capacity, size_t *count) {
    return guarded("ferry_group_tensors", [&] {
        ferry::Runtime &rt = runtime_of(runtime);
        require_out(count, "count");
        FERRY_EXPECTS(out != nullptr || capacity == 0, FERRY_ERROR_INVALID_ARGUMENT,
                      "out is NULL with a capacity of " + std::to_string(capacity));
        const std::vector<std::uint32_t> tensors =
            rt.group_tensors(index_of(rt, group.id, kGroupHandle));
        for (std::size_t i = 0; i < tensors.size() && i < capacity; ++i) {
            out[i].id = encode(rt.serial(), kTensorHandle, tensors[i]);
        }
        *count = tensors.size();
    });
}

ferry_status ferry_group_find(ferry_runtime *runtime, const char *name, ferry_group *out) {
    return guarded("ferry_group_find", [&] {
        ferry::Runtime &rt = runtime_of(runtime);
        require_out(out, "out");
        const std::int64_t g = rt.find_group(name);
        FERRY_EXPECTS(g >= 0, FERRY_ERROR_INVALID_ARGUMENT,
                      "no group is named '" + std::string(name) + "'");
        out->id = encode(rt.serial(), kGroupHandle, static_cast<std::uint32_t>(g));
    });
}

ferry_status ferry_tensor_find(ferry_runtime *runtime, ferry_group group, const char *name,
                               ferry_tensor *out) {
    return guarded("ferry_tensor_find", [&] {
        ferry::Runtime &rt = runtime_of(runtime);
        require_out(out, "out");
        const std::uint32_t g = index_of(rt, group.id, kGroupHandle);
        const std::int64_t t = rt.find_tensor(g, name);
        FERRY_EXPECTS(t >= 0, FERRY_ERROR_INVALID_ARGUMENT,
                      "group '" + rt.group_name(g) + "' has no tensor '" +
                          std::string(name) + "'");
        out->id = encode(rt.serial(), kTensorHandle, static_cast<std::uint32_t>(t));
    });
}

ferry_status ferry_group_name(ferry_runtime *runtime, ferry_group group, const char **out) {
    return guarded("ferry_group_name", [&] {
        ferry::Runtime &rt = runtime_of(runtime);
        require_out(out, "out");
        *out = rt.group_name(index_of(rt, group.id, kGroupHandle)).c_str();
    });
}

ferry_status ferry_tensor_name(ferry_runtime *runtime, ferry_tensor tensor, const char **out) {
    return guarded("ferry_tensor_name", [&] {
        ferry::Runtime &rt = runtime_of(runtime);
        require_out(out, "out");
        *out = rt.tensor_name(index_of(rt, tensor.id, kTensorHandle)).c_str();
    });
}

ferry_status ferry_group_resident_bytes(ferry_runtime *runtime, ferry_group group,
                                        uint64_t *out) {
    return guarded("ferry_group_resident_bytes", [&] {
        ferry::Runtime &rt = runtime_of(runtime);
        require_out(out, "out");
        rt.group_info(index_of(rt, group.id, kGroupHandle), nullptr, nullptr, nullptr, out);
    });
}

ferry_status ferry_trace_start(ferry_runtime *runtime, uint32_t capacity) {
    return guarded("ferry_trace_start", [&] { runtime_of(runtime).trace_start(capacity); });
}

ferry_status ferry_trace_stop(ferry_runtime *runtime) {
    return guarded("ferry_trace_stop", [&] { runtime_of(runtime).trace_stop(); });
}

ferry_status ferry_trace_dump(ferry_runtime *runtime, const char *path) {
    return guarded("ferry_trace_dump", [&] { runtime_of(runtime).trace_dump(path); });
}

ferry_status ferry_host_share_role_get(ferry_runtime *runtime, ferry_host_share_role *out) {
    return guarded("ferry_host_share_role_get", [&] {
        ferry::Runtime &rt = runtime_of(runtime);
        require_out(out, "out");
        *out = rt.host_share_role();
    });
}

ferry_status ferry_host_share_progress_set(ferry_runtime *runtime,
                                           ferry_host_share_progress_fn fn, void *user) {
    return guarded("ferry_host_share_progress_set",
                   [&] { runtime_of(runtime).set_host_share_progress(fn, user); });
}

ferry_status ferry_pin_progress_set(ferry_runtime *runtime, ferry_pin_progress_fn fn,
                                   void *user) {
    return guarded("ferry_pin_progress_set",
                   [&] { runtime_of(runtime).set_pin_progress(fn, user); });
}

ferry_status ferry_dlpack_wrap(ferry_runtime *owner, void *data, int32_t device_type,
                               int32_t device_id, uint8_t dtype_code, uint8_t dtype_bits,
                               int32_t ndim, const int64_t *shape, void **out_managed) {
    return guarded("ferry_dlpack_wrap", [&] {
        require_out(out_managed, "out_managed");
        ferry::ViewCount count;
        if (owner != nullptr) {
            runtime_of(owner);  // a valid, live runtime
            count = owner->views;
        }
        *out_managed = ferry::dlpack_wrap(std::move(count), data, device_type, device_id,
                                          dtype_code, dtype_bits, ndim, shape);
    });
}

ferry_status ferry_dlpack_live(ferry_runtime *owner, uint64_t *out_live) {
    return guarded("ferry_dlpack_live", [&] {
        require_out(out_live, "out_live");
        if (owner == nullptr) {
            *out_live = ferry::dlpack_live();
            return;
        }
        runtime_of(owner);
        *out_live = owner->views->load(std::memory_order_acquire);
    });
}

}  // extern "C"
