// The cuda backend's test runner: runs the Catch2 tests on a GPU, and reports SKIP
// (exit code 77, which meson counts as skipped, never as passed) where there is none.
// Test cases tagged [two-gpus] need a second GPU: where fewer than two are visible they are
// left out of a run that names no tests, and a run that names them is a skip.
#define CATCH_CONFIG_RUNNER
#include <cuda_runtime.h>

#include <catch2/catch.hpp>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "base/error.hpp"
#include "device/device.hpp"

namespace {

constexpr int kExitSkip = 77;
const char *const kTwoGpus = "[two-gpus]";

// The error make_cuda_device gives when no device is visible.
std::string why_unavailable() {
    try {
        ferry::make_cuda_device(0);
        return "cudaGetDeviceCount found none";
    } catch (const ferry::Error &e) {
        return e.what();
    }
}

int visible_devices() {
    int count = 0;
    if (cudaGetDeviceCount(&count) != cudaSuccess) {
        cudaGetLastError();
        return 0;
    }
    return count;
}

}  // namespace

int main(int argc, char **argv) {
    if (!ferry::cuda_device_available()) {
        std::printf("SKIPPED: no CUDA device (%s)\n", why_unavailable().c_str());
        return kExitSkip;
    }
    // These tests choose the cuda backend themselves; an override would test another.
    unsetenv("FERRY_BACKEND");
    Catch::Session session;
    const int parsed = session.applyCommandLine(argc, argv);
    if (parsed != 0) return parsed;
    const int devices = visible_devices();
    if (devices < 2) {
        std::vector<std::string> &spec = session.configData().testsOrTags;
        if (spec.empty()) {
            spec.push_back(std::string("~") + kTwoGpus);
            std::printf("ferry-tests: %s test cases not run: %d GPU visible, they need 2\n",
                        kTwoGpus, devices);
        } else if (spec.size() == 1 && spec[0] == kTwoGpus) {
            std::printf("SKIPPED: the %s test cases need 2 GPUs, %d visible\n", kTwoGpus,
                        devices);
            return kExitSkip;
        }
    }
    std::fflush(stdout);
    const int failed = session.run();
    // Catch returns the number of failures, which must never read as 77 (skip).
    return failed == 0 ? 0 : 1;
}
