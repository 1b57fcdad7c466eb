// load/: safetensors weights: headers parsed and checked, tensors read into memory.
// Float conversion between F32, BF16 and F16, element by element: widening is exact,
// narrowing rounds to nearest even, NaN stays NaN (quiet, sign kept), overflow goes to
// infinity. The same results as torch's .to(dtype) on the CPU.
#pragma once

#include <cstddef>
#include <cstdint>

#include "ferry/ferry.h"

namespace ferry::load {

// True for F32, BF16 and F16.
bool is_convertible(ferry_dtype dtype);

// `count` elements of `from` at src to `to` at dst (both convertible; from != to).
// src and dst may not overlap.
void convert(ferry_dtype from, ferry_dtype to, const void *src, void *dst, std::size_t count);

}  // namespace ferry::load
