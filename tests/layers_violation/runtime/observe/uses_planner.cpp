// Violation: observe/ uses the planner.
#include "core/planner.hpp"
