// Violation: ferry-stat uses core/.
#include "core/runtime.hpp"
