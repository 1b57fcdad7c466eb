// Model presets with the real shapes of their transformers (bf16), scaled down by a
// factor so that they fit a small machine, and grouped into the units ferry streams.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace bench {

struct TensorSpec {
    std::string name;
    std::uint64_t bytes = 0;
};

struct GroupSpec {
    std::string name;
    std::vector<TensorSpec> tensors;
    std::uint64_t bytes = 0;  // sum of tensor bytes
    double flops = 0.0;       // of its forward pass
};

struct Model {
    std::string name;
    std::vector<GroupSpec> groups;  // in the order of one pass
    std::uint64_t bytes = 0;
    std::uint64_t tensors = 0;
    double flops = 0.0;  // per pass
    std::uint64_t largest_group_bytes() const;
};

struct ModelChoice {
    std::string preset = "qwen-image";  // qwen-image, flux, wan14b or custom
    double scale = 1.0;                 // tensor elements are multiplied by it
    int blocks_per_group = 1;
    // custom only
    int groups = 60;
    double group_mb = 679.7;
    int tensors_per_group = 32;
};

// The names --model accepts.
const std::vector<std::string> &preset_names();

// Throws std::invalid_argument for an unknown preset.
Model build_model(const ModelChoice &choice);

}  // namespace bench
