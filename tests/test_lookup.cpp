// Groups and tensors found by name, listed, and named: ferry_groups_list, ferry_group_tensors,
// ferry_group_find, ferry_tensor_find, ferry_group_name, ferry_tensor_name.
#include <catch2/catch.hpp>

#include <string>
#include <vector>

#include "api_fixture.hpp"

using namespace ferry_test;

TEST_CASE("Groups and tensors are listed in definition order and found by name", "[api][lookup]") {
    ferry_runtime *rt = make_runtime(1 << 20);
    const ferry_group a = define_group(rt, "blocks.0");
    const ferry_group b = define_group(rt, "blocks.1");
    const ferry_tensor a_w = define_bytes(rt, a, "weight", 1024);
    const ferry_tensor a_b = define_bytes(rt, a, "bias", 64);
    const ferry_tensor b_w = define_bytes(rt, b, "weight", 1024);

    size_t count = 0;
    REQUIRE(ferry_groups_list(rt, nullptr, 0, &count) == FERRY_OK);
    REQUIRE(count == 2);
    std::vector<ferry_group> groups(count);
    REQUIRE(ferry_groups_list(rt, groups.data(), 1, &count) == FERRY_OK);  // a short buffer
    REQUIRE(count == 2);
    REQUIRE(groups[0].id == a.id);
    REQUIRE(ferry_groups_list(rt, groups.data(), groups.size(), &count) == FERRY_OK);
    REQUIRE(groups[1].id == b.id);

    std::vector<ferry_tensor> tensors(4);
    REQUIRE(ferry_group_tensors(rt, a, tensors.data(), tensors.size(), &count) == FERRY_OK);
    REQUIRE(count == 2);
    REQUIRE(tensors[0].id == a_w.id);
    REQUIRE(tensors[1].id == a_b.id);

    ferry_group found{};
    REQUIRE(ferry_group_find(rt, "blocks.1", &found) == FERRY_OK);
    REQUIRE(found.id == b.id);
    ferry_tensor tensor{};
    REQUIRE(ferry_tensor_find(rt, b, "weight", &tensor) == FERRY_OK);
    REQUIRE(tensor.id == b_w.id);  // not a's tensor of the same name
    REQUIRE(ferry_tensor_find(rt, a, "bias", &tensor) == FERRY_OK);
    REQUIRE(tensor.id == a_b.id);

    const char *name = nullptr;
    REQUIRE(ferry_group_name(rt, b, &name) == FERRY_OK);
    REQUIRE(std::string(name) == "blocks.1");
    REQUIRE(ferry_tensor_name(rt, a_b, &name) == FERRY_OK);
    REQUIRE(std::string(name) == "bias");
    REQUIRE(ferry_destroy(rt) == FERRY_OK);
}

TEST_CASE("Lookups of what does not exist fail clearly and change nothing", "[api][lookup]") {
    ferry_runtime *rt = make_runtime(1 << 20);
    const ferry_group a = define_group(rt, "blocks.0");
    define_bytes(rt, a, "weight", 1024);
    ferry_group group{};
    REQUIRE_FERRY_ERROR(ferry_group_find(rt, "blocks.9", &group), FERRY_ERROR_INVALID_ARGUMENT,
                        "ferry_group_find", "no group is named 'blocks.9'");
    REQUIRE(group.id == 0);
    ferry_tensor tensor{};
    REQUIRE_FERRY_ERROR(ferry_tensor_find(rt, a, "bias", &tensor), FERRY_ERROR_INVALID_ARGUMENT,
                        "ferry_tensor_find", "group 'blocks.0' has no tensor 'bias'");
    REQUIRE_FERRY_ERROR(ferry_group_find(rt, nullptr, &group), FERRY_ERROR_INVALID_ARGUMENT,
                        "ferry_group_find", "name is NULL");
    size_t count = 0;
    REQUIRE_FERRY_ERROR(ferry_groups_list(rt, nullptr, 3, &count), FERRY_ERROR_INVALID_ARGUMENT,
                        "ferry_groups_list", "out is NULL");
    REQUIRE(ferry_group_tensors(rt, ferry_group{12345}, nullptr, 0, &count) ==
            FERRY_ERROR_INVALID_HANDLE);
    const char *name = nullptr;
    REQUIRE(ferry_tensor_name(rt, ferry_tensor{0}, &name) == FERRY_ERROR_INVALID_HANDLE);
    REQUIRE(ferry_group_find(rt, "blocks.0", &group) == FERRY_OK);  // still usable
    REQUIRE(ferry_destroy(rt) == FERRY_OK);
}
