// Violation: an include that names no room.
#include "runtime.hpp"
