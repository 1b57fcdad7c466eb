// ferry-bench --compress: the device's decode throughput, measured on its own beside the
// pipeline figures (decode_rate.cpp).
#pragma once

#include <cstdint>

#include "platform.hpp"

namespace bench {

struct DecodeRate {
    double gbps = 0.0;         // decoded (raw) bytes per second: modeled on sim
    std::uint64_t raw_bytes = 0;
    double ratio = 0.0;        // the container's bytes over the raw bytes
    bool bitwise = false;      // the decoded bytes came back equal to the raw ones
};

// Encodes `raw_bytes` of trained-like bf16 into one container, copies it to the device
// and times its decode into device memory (kernels/decode.cu on cuda; the sim's decode,
// which waits out FERRY_SIM_DECODE_GBPS): the best of three, after a warm-up. The
// decoded bytes are copied back and compared with the raw ones. Exits with a message if
// the decode reports an error.
DecodeRate measure_decode_rate(const Platform &platform, std::uint64_t raw_bytes);

}  // namespace bench
