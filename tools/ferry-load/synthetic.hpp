// ferry-load: measures loading safetensors into ferry, against plain reads of the files.
// A synthetic model file shaped like a diffusion transformer (a root group and numbered
// blocks), for runs without a checkpoint at hand. Written once; reused when present.
#pragma once

#include <cstdint>
#include <string>

namespace ferry_load {

// Writes a safetensors file of about `bytes` bytes at `path`: `blocks` blocks named
// "transformer_blocks.N." of bf16 tensors of random-looking bytes, plus a few root
// tensors. Returns false (with errno set) when the file cannot be written.
bool write_synthetic(const std::string &path, std::uint64_t bytes, int blocks);

}  // namespace ferry_load
