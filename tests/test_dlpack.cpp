// ferry_dlpack_wrap: a DLManagedTensor laid out as dlpack.h says, whose deleter frees it
// (from any thread) and nothing else.
#include <catch2/catch.hpp>
#include <cstdint>
#include <cstring>
#include <thread>

#include "api_fixture.hpp"
#include "dlpack.hpp"
#include "ferry/ferry.h"

using ferry::dlpack::DLManagedTensor;
using ferry::dlpack::DLTensor;

namespace {

std::uint64_t live(ferry_runtime *owner) {
    std::uint64_t count = 0;
    REQUIRE(ferry_dlpack_live(owner, &count) == FERRY_OK);
    return count;
}

}  // namespace

TEST_CASE("A wrapped view has dlpack.h's fields and its deleter frees it, on any thread") {
    const std::uint64_t before = live(nullptr);
    alignas(8) unsigned char bytes[24] = {};
    std::int64_t shape[2] = {2, 3};
    void *out = nullptr;
    REQUIRE(ferry_dlpack_wrap(nullptr, bytes, 2, 1, 2, 32, 2, shape, &out) == FERRY_OK);
    shape[0] = 99;  // copied: the caller's array may go
    auto *managed = static_cast<DLManagedTensor *>(out);
    const DLTensor &t = managed->dl_tensor;
    REQUIRE(t.data == bytes);
    REQUIRE((t.device.device_type == 2 && t.device.device_id == 1));
    REQUIRE((t.ndim == 2 && t.shape[0] == 2 && t.shape[1] == 3));
    REQUIRE((t.dtype.code == 2 && t.dtype.bits == 32 && t.dtype.lanes == 1));
    REQUIRE((t.strides == nullptr && t.byte_offset == 0 && managed->manager_ctx == nullptr));
    REQUIRE(managed->deleter != nullptr);
    REQUIRE(live(nullptr) == before + 1);

    std::thread([managed] { managed->deleter(managed); }).join();
    REQUIRE(live(nullptr) == before);

    REQUIRE(ferry_dlpack_wrap(nullptr, nullptr, 1, 0, 1, 8, 0, nullptr, &out) == FERRY_OK);  // 0-dim
    static_cast<DLManagedTensor *>(out)->deleter(static_cast<DLManagedTensor *>(out));
    REQUIRE(live(nullptr) == before);
}

TEST_CASE("Wrapping a bad shape is INVALID_ARGUMENT, naming the cause, and allocates nothing") {
    const std::uint64_t before = live(nullptr);
    std::int64_t shape[FERRY_MAX_DIMS + 1] = {1, -1};
    void *out = nullptr;
    REQUIRE(ferry_dlpack_wrap(nullptr, nullptr, 1, 0, 2, 32, FERRY_MAX_DIMS + 1, shape, &out) ==
            FERRY_ERROR_INVALID_ARGUMENT);
    REQUIRE(std::strstr(ferry_last_error(), "ferry_dlpack_wrap") != nullptr);
    REQUIRE(ferry_dlpack_wrap(nullptr, nullptr, 1, 0, 2, 32, -1, shape, &out) ==
            FERRY_ERROR_INVALID_ARGUMENT);
    REQUIRE(ferry_dlpack_wrap(nullptr, nullptr, 1, 0, 2, 32, 2, shape, &out) ==
            FERRY_ERROR_INVALID_ARGUMENT);
    REQUIRE(std::strstr(ferry_last_error(), "shape[1] is negative") != nullptr);
    REQUIRE(ferry_dlpack_wrap(nullptr, nullptr, 1, 0, 2, 32, 1, nullptr, &out) ==
            FERRY_ERROR_INVALID_ARGUMENT);
    REQUIRE(ferry_dlpack_wrap(nullptr, nullptr, 1, 0, 2, 0, 1, shape, &out) ==
            FERRY_ERROR_INVALID_ARGUMENT);
    REQUIRE(ferry_dlpack_wrap(nullptr, nullptr, 1, 0, 2, 32, 1, shape, nullptr) ==
            FERRY_ERROR_INVALID_ARGUMENT);
    REQUIRE(out == nullptr);
    REQUIRE(live(nullptr) == before);
}

TEST_CASE("A view made for a runtime counts in its live views until deleted, even after the "
          "runtime is destroyed") {
    ferry_runtime *rt = ferry_test::make_sim_runtime(1 << 20);
    alignas(8) unsigned char bytes[8] = {};
    std::int64_t shape[1] = {2};
    void *first = nullptr;
    void *second = nullptr;
    REQUIRE(ferry_dlpack_wrap(rt, bytes, 1, 0, 2, 32, 1, shape, &first) == FERRY_OK);
    REQUIRE(ferry_dlpack_wrap(rt, bytes, 1, 0, 2, 32, 1, shape, &second) == FERRY_OK);
    REQUIRE(live(rt) == 2);
    auto *managed = static_cast<DLManagedTensor *>(first);
    managed->deleter(managed);
    REQUIRE(live(rt) == 1);
    REQUIRE(ferry_destroy(rt) == FERRY_OK);
    managed = static_cast<DLManagedTensor *>(second);
    managed->deleter(managed);  // its count outlived the runtime (ASan would see otherwise)

    std::uint64_t count = 0;
    REQUIRE(ferry_dlpack_live(nullptr, nullptr) == FERRY_ERROR_INVALID_ARGUMENT);
    ferry_runtime *bogus = reinterpret_cast<ferry_runtime *>(bytes);
    REQUIRE(ferry_dlpack_live(bogus, &count) == FERRY_ERROR_INVALID_HANDLE);
    REQUIRE(ferry_dlpack_wrap(bogus, bytes, 1, 0, 2, 32, 1, shape, &first) ==
            FERRY_ERROR_INVALID_HANDLE);
}
