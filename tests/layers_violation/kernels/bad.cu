// Violation: kernels/ uses a room other than base/.
#include "../runtime/core/runtime.hpp"
