// ferry_dlpack_wrap: a DLManagedTensor laid out as dlpack.h says, whose deleter frees it
// (from any thread) and nothing else.
#include <catch2/catch.hpp>
#include <cstdint>
#include <cstring>
#include <thread>

#include "dlpack.hpp"
#include "ferry/ferry.h"

using ferry::dlpack::DLManagedTensor;
using ferry::dlpack::DLTensor;

TEST_CASE("A wrapped view has dlpack.h's fields and its deleter frees it, on any thread") {
    const std::uint64_t before = ferry_dlpack_live();
    alignas(8) unsigned char bytes[24] = {};
    std::int64_t shape[2] = {2, 3};
    void *out = nullptr;
    REQUIRE(ferry_dlpack_wrap(bytes, 2, 1, 2, 32, 2, shape, &out) == FERRY_OK);
    shape[0] = 99;  // copied: the caller's array may go
    auto *managed = static_cast<DLManagedTensor *>(out);
    const DLTensor &t = managed->dl_tensor;
    REQUIRE(t.data == bytes);
    REQUIRE((t.device.device_type == 2 && t.device.device_id == 1));
    REQUIRE((t.ndim == 2 && t.shape[0] == 2 && t.shape[1] == 3));
    REQUIRE((t.dtype.code == 2 && t.dtype.bits == 32 && t.dtype.lanes == 1));
    REQUIRE((t.strides == nullptr && t.byte_offset == 0 && managed->manager_ctx == nullptr));
    REQUIRE(managed->deleter != nullptr);
    REQUIRE(ferry_dlpack_live() == before + 1);

    std::thread([managed] { managed->deleter(managed); }).join();
    REQUIRE(ferry_dlpack_live() == before);

    REQUIRE(ferry_dlpack_wrap(nullptr, 1, 0, 1, 8, 0, nullptr, &out) == FERRY_OK);  // 0-dim
    static_cast<DLManagedTensor *>(out)->deleter(static_cast<DLManagedTensor *>(out));
    REQUIRE(ferry_dlpack_live() == before);
}

TEST_CASE("Wrapping a bad shape is INVALID_ARGUMENT, naming the cause, and allocates nothing") {
    const std::uint64_t before = ferry_dlpack_live();
    std::int64_t shape[FERRY_MAX_DIMS + 1] = {1, -1};
    void *out = nullptr;
    REQUIRE(ferry_dlpack_wrap(nullptr, 1, 0, 2, 32, FERRY_MAX_DIMS + 1, shape, &out) ==
            FERRY_ERROR_INVALID_ARGUMENT);
    REQUIRE(std::strstr(ferry_last_error(), "ferry_dlpack_wrap") != nullptr);
    REQUIRE(ferry_dlpack_wrap(nullptr, 1, 0, 2, 32, -1, shape, &out) ==
            FERRY_ERROR_INVALID_ARGUMENT);
    REQUIRE(ferry_dlpack_wrap(nullptr, 1, 0, 2, 32, 2, shape, &out) ==
            FERRY_ERROR_INVALID_ARGUMENT);
    REQUIRE(std::strstr(ferry_last_error(), "shape[1] is negative") != nullptr);
    REQUIRE(ferry_dlpack_wrap(nullptr, 1, 0, 2, 32, 1, nullptr, &out) ==
            FERRY_ERROR_INVALID_ARGUMENT);
    REQUIRE(ferry_dlpack_wrap(nullptr, 1, 0, 2, 0, 1, shape, &out) ==
            FERRY_ERROR_INVALID_ARGUMENT);
    REQUIRE(ferry_dlpack_wrap(nullptr, 1, 0, 2, 32, 1, shape, nullptr) ==
            FERRY_ERROR_INVALID_ARGUMENT);
    REQUIRE(out == nullptr);
    REQUIRE(ferry_dlpack_live() == before);
}
