// runtime/ (the top): the C API over core/, and the thread's last-error message.
// The calling thread's last-error message, read through ferry_last_error().
#pragma once

#include <string>

namespace ferry {

void set_last_error(std::string message) noexcept;
void clear_last_error() noexcept;
const char *last_error() noexcept;

}  // namespace ferry
