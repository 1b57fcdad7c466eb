#include "presets.hpp"

#include <algorithm>
#include <cmath>
#include <stdexcept>

namespace bench {
namespace {

struct Shape {
    std::string name;
    std::uint64_t rows;
    std::uint64_t cols;  // 1 for a vector
};

// A kind of block: its tensors, repeated `count` times in a pass.
struct BlockKind {
    const char *prefix;
    int count;
    std::vector<Shape> shapes;
};

struct Preset {
    std::vector<Shape> non_block;  // embedders, final norm and projection: one group
    std::vector<BlockKind> blocks;
    // Tokens one pass processes: a group's FLOPs are 2 x its parameters x tokens.
    double tokens;
};

void linear(std::vector<Shape> &out, const std::string &name, std::uint64_t in,
            std::uint64_t out_dim, bool bias = true) {
    out.push_back({name + ".weight", out_dim, in});
    if (bias) out.push_back({name + ".bias", out_dim, 1});
}

// A double-stream (MMDiT) block as in Qwen-Image and FLUX: image and text streams with
// their own modulation, attention projections and MLPs. 679.7 MB at hidden 3072, FFN 12288.
std::vector<Shape> double_block(std::uint64_t hidden, std::uint64_t ffn, std::uint64_t head_dim) {
    std::vector<Shape> s;
    linear(s, "img_mod", hidden, 6 * hidden);
    linear(s, "txt_mod", hidden, 6 * hidden);
    for (const char *p : {"attn.to_q", "attn.to_k", "attn.to_v", "attn.add_q_proj",
                          "attn.add_k_proj", "attn.add_v_proj", "attn.to_out", "attn.to_add_out"}) {
        linear(s, p, hidden, hidden);
    }
    for (const char *p : {"attn.norm_q.weight", "attn.norm_k.weight", "attn.norm_added_q.weight",
                          "attn.norm_added_k.weight"}) {
        s.push_back({p, head_dim, 1});
    }
    linear(s, "img_mlp.up", hidden, ffn);
    linear(s, "img_mlp.down", ffn, hidden);
    linear(s, "txt_mlp.up", hidden, ffn);
    linear(s, "txt_mlp.down", ffn, hidden);
    return s;
}

// FLUX's single-stream block: 283.2 MB.
std::vector<Shape> flux_single_block() {
    std::vector<Shape> s;
    linear(s, "norm.linear", 3072, 3 * 3072);
    linear(s, "proj_mlp", 3072, 12288);
    linear(s, "proj_out", 3072 + 12288, 3072);
    for (const char *p : {"attn.to_q", "attn.to_k", "attn.to_v"}) linear(s, p, 3072, 3072);
    s.push_back({"attn.norm_q.weight", 128, 1});
    s.push_back({"attn.norm_k.weight", 128, 1});
    return s;
}

// Wan 2.1 14B's block: self- and cross-attention and an FFN at hidden 5120: 702.8 MB.
std::vector<Shape> wan_block() {
    std::vector<Shape> s;
    for (const char *attn : {"attn1", "attn2"}) {
        for (const char *p : {"to_q", "to_k", "to_v", "to_out"}) {
            linear(s, std::string(attn) + "." + p, 5120, 5120);
        }
        s.push_back({std::string(attn) + ".norm_q.weight", 5120, 1});
        s.push_back({std::string(attn) + ".norm_k.weight", 5120, 1});
    }
    linear(s, "ffn.up", 5120, 13824);
    linear(s, "ffn.down", 13824, 5120);
    s.push_back({"norm2.weight", 5120, 1});
    s.push_back({"norm2.bias", 5120, 1});
    s.push_back({"scale_shift_table", 6, 5120});
    return s;
}

constexpr double kQwenImageTokens = 2692;  // ~110 TFLOP per pass at 1664x928

Preset qwen_image() {
    Preset p;
    linear(p.non_block, "txt_in", 3584, 3072);
    p.non_block.push_back({"txt_norm.weight", 3584, 1});
    linear(p.non_block, "img_in", 64, 3072);
    linear(p.non_block, "time_embed.linear_1", 256, 3072);
    linear(p.non_block, "time_embed.linear_2", 3072, 3072);
    linear(p.non_block, "norm_out.linear", 3072, 2 * 3072);
    linear(p.non_block, "proj_out", 3072, 64);
    p.blocks = {{"block", 60, double_block(3072, 12288, 128)}};
    p.tokens = kQwenImageTokens;
    return p;
}

Preset flux() {
    Preset p;
    linear(p.non_block, "x_embedder", 64, 3072);
    linear(p.non_block, "context_embedder", 4096, 3072);
    for (const char *e : {"time_embed", "guidance_embed"}) {
        linear(p.non_block, std::string(e) + ".linear_1", 256, 3072);
        linear(p.non_block, std::string(e) + ".linear_2", 3072, 3072);
    }
    linear(p.non_block, "text_embed.linear_1", 768, 3072);
    linear(p.non_block, "text_embed.linear_2", 3072, 3072);
    linear(p.non_block, "norm_out.linear", 3072, 2 * 3072);
    linear(p.non_block, "proj_out", 3072, 64);
    p.blocks = {{"double", 19, double_block(3072, 12288, 128)},
                {"single", 38, flux_single_block()}};
    p.tokens = 4608;  // 1024x1024: 4096 image + 512 text tokens
    return p;
}

Preset wan14b() {
    Preset p;
    linear(p.non_block, "patch_embedding", 16 * 2 * 2, 5120);
    linear(p.non_block, "time_embedder.linear_1", 256, 5120);
    linear(p.non_block, "time_embedder.linear_2", 5120, 5120);
    linear(p.non_block, "time_proj", 5120, 6 * 5120);
    linear(p.non_block, "text_embedder.linear_1", 4096, 5120);
    linear(p.non_block, "text_embedder.linear_2", 5120, 5120);
    linear(p.non_block, "proj_out", 5120, 64);
    p.non_block.push_back({"scale_shift_table", 2, 5120});
    p.blocks = {{"block", 40, wan_block()}};
    p.tokens = 32760;  // 480p, 81 frames
    return p;
}

Preset custom(const ModelChoice &choice) {
    Preset p;
    const auto elements =
        static_cast<std::uint64_t>(choice.group_mb * 1e6 / 2 / choice.tensors_per_group);
    std::vector<Shape> shapes;
    for (int t = 0; t < choice.tensors_per_group; ++t) {
        shapes.push_back({"w" + std::to_string(t), std::max<std::uint64_t>(elements, 1), 1});
    }
    p.blocks = {{"block", choice.groups, shapes}};
    p.tokens = kQwenImageTokens;
    return p;
}

void add_tensors(GroupSpec &group, const std::string &prefix, const std::vector<Shape> &shapes,
                 const Preset &preset, double scale) {
    for (const Shape &shape : shapes) {
        const double full = static_cast<double>(shape.rows * shape.cols);
        const auto elements = std::max<std::uint64_t>(1, std::llround(full * scale));
        const std::uint64_t bytes = 2 * elements;  // bf16
        group.tensors.push_back({prefix + shape.name, bytes});
        group.bytes += bytes;
        group.flops += 2.0 * static_cast<double>(elements) * preset.tokens;
    }
}

}  // namespace

std::uint64_t Model::largest_group_bytes() const {
    std::uint64_t largest = 0;
    for (const GroupSpec &g : groups) largest = std::max(largest, g.bytes);
    return largest;
}

const std::vector<std::string> &preset_names() {
    static const std::vector<std::string> names = {"qwen-image", "flux", "wan14b", "custom"};
    return names;
}

Model build_model(const ModelChoice &choice) {
    Preset preset;
    if (choice.preset == "qwen-image") preset = qwen_image();
    else if (choice.preset == "flux") preset = flux();
    else if (choice.preset == "wan14b") preset = wan14b();
    else if (choice.preset == "custom") preset = custom(choice);
    else throw std::invalid_argument("unknown model '" + choice.preset + "'");

    Model model;
    model.name = choice.preset;
    if (!preset.non_block.empty()) {
        GroupSpec group;
        group.name = "non_block";
        add_tensors(group, "", preset.non_block, preset, choice.scale);
        model.groups.push_back(std::move(group));
    }
    // Consecutive blocks of one kind share a group; kinds never mix.
    for (const BlockKind &kind : preset.blocks) {
        for (int first = 0; first < kind.count; first += choice.blocks_per_group) {
            const int last = std::min(kind.count, first + choice.blocks_per_group) - 1;
            GroupSpec group;
            group.name = std::string(kind.prefix) + "." + std::to_string(first);
            if (last > first) group.name += "-" + std::to_string(last);
            for (int b = first; b <= last; ++b) {
                add_tensors(group, std::string(kind.prefix) + "." + std::to_string(b) + ".",
                            kind.shapes, preset, choice.scale);
            }
            model.groups.push_back(std::move(group));
        }
    }
    for (const GroupSpec &group : model.groups) {
        model.bytes += group.bytes;
        model.tensors += group.tensors.size();
        model.flops += group.flops;
    }
    return model;
}

}  // namespace bench
