// base/: what every room shares: errors, the clock, names in messages.
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

}  // namespace ferry

// Throws ferry::Error(status, message) when cond is false. A macro so that the message,
// often built from strings, is only computed on failure: hot paths check too.
#define FERRY_EXPECTS(cond, status, message)                 \
    do {                                                   \
        if (!(cond)) throw ::ferry::Error((status), (message)); \
    } while (0)

