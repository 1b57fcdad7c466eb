#include "strategies.hpp"

#include "core/runtime.hpp"

namespace bench {

double seconds_per_pass(const RunSpec &spec, const std::function<void()> &pass,
                        const std::function<void()> &drain) {
    pass();
    drain();
    const auto start = Clock::now();
    for (int i = 0; i < spec.passes; ++i) pass();
    drain();
    return spec.platform->since(start) / spec.passes;
}

std::vector<std::uint64_t> tensor_offsets(const GroupSpec &group, std::uint64_t *image_bytes) {
    constexpr std::uint64_t kAlign = ferry::kImageAlignment;
    std::vector<std::uint64_t> offsets;
    std::uint64_t end = 0;
    for (const TensorSpec &tensor : group.tensors) {
        const std::uint64_t at = (end + kAlign - 1) / kAlign * kAlign;
        offsets.push_back(at);
        end = at + tensor.bytes;
    }
    *image_bytes = (end + kAlign - 1) / kAlign * kAlign;
    return offsets;
}

}  // namespace bench
