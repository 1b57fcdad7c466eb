// base/: what every room shares: errors, the clock, names in messages.
// Element types: their sizes and their names in messages ("BF16", as safetensors spells
// them).
#pragma once

#include <cstdint>

#include "ferry/ferry.h"

namespace ferry {

// Bytes per element; 0 for FERRY_DTYPE_UNKNOWN (raw bytes).
inline std::uint64_t dtype_bytes(ferry_dtype dtype) {
    switch (dtype) {
        case FERRY_DTYPE_U8:
        case FERRY_DTYPE_I8:
        case FERRY_DTYPE_BOOL: return 1;
        case FERRY_DTYPE_I16:
        case FERRY_DTYPE_F16:
        case FERRY_DTYPE_BF16: return 2;
        case FERRY_DTYPE_I32:
        case FERRY_DTYPE_F32: return 4;
        case FERRY_DTYPE_I64:
        case FERRY_DTYPE_F64: return 8;
        case FERRY_DTYPE_UNKNOWN: return 0;
    }
    return 0;
}

inline const char *dtype_name(ferry_dtype dtype) {
    switch (dtype) {
        case FERRY_DTYPE_U8: return "U8";
        case FERRY_DTYPE_I8: return "I8";
        case FERRY_DTYPE_I16: return "I16";
        case FERRY_DTYPE_I32: return "I32";
        case FERRY_DTYPE_I64: return "I64";
        case FERRY_DTYPE_F16: return "F16";
        case FERRY_DTYPE_BF16: return "BF16";
        case FERRY_DTYPE_F32: return "F32";
        case FERRY_DTYPE_F64: return "F64";
        case FERRY_DTYPE_BOOL: return "BOOL";
        case FERRY_DTYPE_UNKNOWN: return "raw bytes";
    }
    return "?";
}

}  // namespace ferry
