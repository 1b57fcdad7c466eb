// Violation: host/ uses observe/, a room beside it, not below.
#include "observe/observer.hpp"
