// runtime/ (the top): the C API over core/, and the thread's last-error message.
// What the C API's files share: the ferry_runtime handle, handle checks and encoding, and
// guarded(), which turns every C++ exception into a status and the last-error message.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <new>
#include <string>

#include "base/error.hpp"
#include "base/names.hpp"
#include "core/runtime.hpp"
#include "core/serials.hpp"
#include "dlpack.hpp"
#include "error_state.hpp"
#include "ferry/ferry.h"

namespace ferry::api {

constexpr std::uint64_t kRuntimeMagic = 0x79727265662d7274ULL;  // "rt-ferry"

enum HandleKind : std::uint32_t { kGroupHandle = 1, kTensorHandle = 2 };

inline std::uint64_t encode(std::uint32_t serial, HandleKind kind, std::uint32_t index) {
    return (static_cast<std::uint64_t>(serial) << 32) | (static_cast<std::uint64_t>(kind) << 24) |
           (index + 1);
}

}  // namespace ferry::api

struct ferry_runtime {
    std::uint64_t magic = ferry::api::kRuntimeMagic;
    ferry::Runtime impl;
    // DLPack views made for this runtime and not freed yet (ferry_dlpack_live).
    ferry::ViewCount views = std::make_shared<std::atomic<std::uint64_t>>(0);
    explicit ferry_runtime(ferry::RuntimeOptions options) : impl(std::move(options)) {}
};

namespace ferry::api {

inline ferry::Runtime &runtime_of(ferry_runtime *runtime) {
    FERRY_EXPECTS(runtime != nullptr, FERRY_ERROR_INVALID_HANDLE, "runtime is NULL");
    FERRY_EXPECTS(runtime->magic == kRuntimeMagic, FERRY_ERROR_INVALID_HANDLE,
                   "runtime is not a live ferry runtime");
    return runtime->impl;
}


// Checks a handle's runtime, kind and range; returns its index.
inline std::uint32_t index_of(ferry::Runtime &runtime, std::uint64_t id, HandleKind kind) {
    const char *what = kind == kGroupHandle ? "group" : "tensor";
    const auto serial = static_cast<std::uint32_t>(id >> 32);
    const auto handle_kind = static_cast<std::uint32_t>((id >> 24) & 0xff);
    const auto index_plus_one = static_cast<std::uint32_t>(id & 0xffffff);
    FERRY_EXPECTS(id != 0, FERRY_ERROR_INVALID_HANDLE, std::string(what) + " handle is zero");
    if (serial != runtime.serial() && serial != 0 && serial <= ferry::last_runtime_serial() &&
        handle_kind == kind) {
        if (ferry::runtime_serial_live(serial)) {
            throw ferry::Error(FERRY_ERROR_FOREIGN_HANDLE,
                               std::string(what) + " handle belongs to another runtime");
        }
        throw ferry::Error(FERRY_ERROR_STALE_HANDLE,
                           std::string(what) + " handle belongs to a destroyed runtime");
    }
    const std::uint32_t count =
        kind == kGroupHandle ? runtime.group_count() : runtime.tensor_count();
    FERRY_EXPECTS(serial == runtime.serial() && handle_kind == kind && index_plus_one >= 1 &&
                      index_plus_one <= count,
                  FERRY_ERROR_INVALID_HANDLE,
                  std::string(what) + " handle " + ferry::hex(id) + " is not a " + what +
                      " of this runtime");
    return index_plus_one - 1;
}

// Runs body; maps exceptions to a status and "call: cause" as the last error.
template <typename Body>
ferry_status guarded(const char *call, Body &&body) noexcept {
    try {
        body();
        ferry::clear_last_error();
        return FERRY_OK;
    } catch (const ferry::Error &error) {
        ferry::set_last_error(std::string(call) + ": " + error.what());
        return error.status();
    } catch (const std::bad_alloc &) {
        ferry::set_last_error(std::string(call) + ": out of host memory");
        return FERRY_ERROR_OUT_OF_HOST_MEMORY;
    } catch (const std::exception &error) {
        ferry::set_last_error(std::string(call) + ": internal error: " + error.what());
        return FERRY_ERROR_INTERNAL;
    } catch (...) {
        ferry::set_last_error(std::string(call) + ": internal error: unknown exception");
        return FERRY_ERROR_INTERNAL;
    }
}

inline void require_out(const void *out, const char *name) {
    FERRY_EXPECTS(out != nullptr, FERRY_ERROR_INVALID_ARGUMENT, std::string(name) + " is NULL");
}

}  // namespace ferry::api
