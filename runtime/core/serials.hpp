// core/: ferry::Runtime (definition, plan, seal, the pipeline) and what it plans with.
// The serials of live runtimes, so that a handle of another runtime can be told foreign
// (that runtime is alive) from stale (destroyed). A serial is never reused.
#pragma once

#include <cstdint>

namespace ferry {

std::uint32_t register_serial();  // a new serial, live until unregister_serial()
void unregister_serial(std::uint32_t serial);
bool runtime_serial_live(std::uint32_t serial);
std::uint32_t last_runtime_serial();

}  // namespace ferry
