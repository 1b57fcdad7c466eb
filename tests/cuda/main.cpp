// The cuda backend's test runner: runs the Catch2 tests on a GPU, and reports SKIP
// (exit code 77, which meson counts as skipped, never as passed) where there is none.
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "device/device.hpp"
#include "base/error.hpp"

namespace {

constexpr int kExitSkip = 77;

// The error make_cuda_device gives when no device is visible.
std::string why_unavailable() {
    try {
        ferry::make_cuda_device(0);
        return "cudaGetDeviceCount found none";
    } catch (const ferry::Error &e) {
        return e.what();
    }
}

}  // namespace

int main(int argc, char **argv) {
    if (!ferry::cuda_device_available()) {
        std::printf("SKIPPED: no CUDA device (%s)\n", why_unavailable().c_str());
        return kExitSkip;
    }
    // These tests choose the cuda backend themselves; an override would test another.
    unsetenv("FERRY_BACKEND");
    const int failed = Catch::Session().run(argc, argv);
    // Catch returns the number of failures, which must never read as 77 (skip).
    return failed == 0 ? 0 : 1;
}
