// base/: what every room shares: errors, the clock, names in messages.
// Text shared by the runtime's messages and the tools that print its state.
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>

#include "ferry/ferry.h"

namespace ferry {

inline const char *phase_name(ferry_phase phase) {
    switch (phase) {
        case FERRY_PHASE_DEFINE: return "DEFINE";
        case FERRY_PHASE_PLANNED: return "PLANNED";
        case FERRY_PHASE_SEALED: return "SEALED";
    }
    return "?";
}

// "0x" and 16 hex digits: handles and checksums in messages.
inline std::string hex(std::uint64_t value) {
    char text[19];
    std::snprintf(text, sizeof text, "0x%016llx", static_cast<unsigned long long>(value));
    return text;
}

// `text` as a JSON string literal, quotes included.
inline std::string json_string(const std::string &text) {
    std::string out = "\"";
    for (const char c : text) {
        if (c == '"' || c == '\\') {
            out += '\\';
            out += c;
        } else if (static_cast<unsigned char>(c) < 0x20) {
            char escaped[8];
            std::snprintf(escaped, sizeof escaped, "\\u%04x", c);
            out += escaped;
        } else {
            out += c;
        }
    }
    return out + "\"";
}

}  // namespace ferry
