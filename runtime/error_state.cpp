// runtime/ (the top): the C API over core/, and the thread's last-error message.
// The thread's last-error message (error_state.hpp).
#include "error_state.hpp"

namespace ferry {
namespace {
thread_local std::string t_last_error;
}  // namespace

void set_last_error(std::string message) noexcept {
    try {
        t_last_error = std::move(message);
    } catch (...) {
        t_last_error.clear();  // no memory for the message; the status still tells
    }
}

void clear_last_error() noexcept { t_last_error.clear(); }

const char *last_error() noexcept { return t_last_error.c_str(); }

}  // namespace ferry
