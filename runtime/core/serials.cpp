// core/: ferry::Runtime (definition, plan, seal, the pipeline) and what it plans with.
#include "core/serials.hpp"

#include <atomic>
#include <mutex>
#include <unordered_set>

namespace ferry {
namespace {

std::mutex g_serials_mutex;
std::unordered_set<std::uint32_t> g_live_serials;
std::atomic<std::uint32_t> g_last_serial{0};

}  // namespace

std::uint32_t register_serial() {
    const std::uint32_t serial = ++g_last_serial;
    std::lock_guard<std::mutex> lock(g_serials_mutex);
    g_live_serials.insert(serial);
    return serial;
}

void unregister_serial(std::uint32_t serial) {
    std::lock_guard<std::mutex> lock(g_serials_mutex);
    g_live_serials.erase(serial);
}

bool runtime_serial_live(std::uint32_t serial) {
    std::lock_guard<std::mutex> lock(g_serials_mutex);
    return g_live_serials.count(serial) != 0;
}

std::uint32_t last_runtime_serial() { return g_last_serial.load(); }

}  // namespace ferry
