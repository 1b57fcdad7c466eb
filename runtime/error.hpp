// ferry::Error: the one exception type inside the runtime. The C API (c_api.cpp) catches
// it at the boundary and turns it into a status plus the thread's last-error message.
#pragma once

#include <stdexcept>
#include <string>

#include "ferry/ferry.h"

namespace ferry {

class Error : public std::runtime_error {
   public:
    Error(ferry_status status, const std::string &message)
        : std::runtime_error(message), status_(status) {}
    ferry_status status() const noexcept { return status_; }

   private:
    ferry_status status_;
};

// Throws Error(status, message) when cond is false.
inline void expects(bool cond, ferry_status status, const std::string &message) {
    if (!cond) throw Error(status, message);
}

}  // namespace ferry
