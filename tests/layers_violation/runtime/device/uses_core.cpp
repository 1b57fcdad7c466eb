// Violation: device/ uses core/, which is above it.
#include "core/runtime.hpp"
