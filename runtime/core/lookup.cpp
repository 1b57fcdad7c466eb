// core/: ferry::Runtime (definition, plan, seal, the pipeline) and what it plans with.
// Lookups: groups and tensors by name, and their names, for engines that let
// ferry_weights_define name them and then need their handles.
#include <cstring>

#include "base/error.hpp"
#include "core/runtime.hpp"

namespace ferry {

std::vector<std::uint32_t> Runtime::group_tensors(std::uint32_t group) {
    std::lock_guard<std::mutex> lock(mutex_);
    return groups_[group].tensors;
}

std::int64_t Runtime::find_group(const char *name) {
    FERRY_EXPECTS(name != nullptr, FERRY_ERROR_INVALID_ARGUMENT, "name is NULL");
    std::lock_guard<std::mutex> lock(mutex_);
    for (std::size_t g = 0; g < groups_.size(); ++g) {
        if (groups_[g].name == name) return static_cast<std::int64_t>(g);
    }
    return -1;
}

std::int64_t Runtime::find_tensor(std::uint32_t group, const char *name) {
    FERRY_EXPECTS(name != nullptr, FERRY_ERROR_INVALID_ARGUMENT, "name is NULL");
    std::lock_guard<std::mutex> lock(mutex_);
    for (std::uint32_t t : groups_[group].tensors) {
        if (tensors_[t].name == name) return t;
    }
    return -1;
}

const std::string &Runtime::group_name(std::uint32_t group) {
    std::lock_guard<std::mutex> lock(mutex_);
    return groups_.at(group).name;
}

const std::string &Runtime::tensor_name(std::uint32_t tensor) {
    std::lock_guard<std::mutex> lock(mutex_);
    return tensors_.at(tensor).name;
}

}  // namespace ferry
