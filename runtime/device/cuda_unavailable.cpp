// device/: the device interface and its backends (sim, cuda); uses base/ and kernels/.
// The cuda backend's entry points in a build without CUDA (meson -Dcuda=disabled, or no
// toolkit found): the backend is reported unavailable.
#include "device/device.hpp"
#include "base/error.hpp"

namespace ferry {

std::unique_ptr<Device> make_cuda_device(int /*ordinal*/) {
    throw Error(FERRY_ERROR_BACKEND_UNAVAILABLE,
                "ferry was built without the cuda backend (meson -Dcuda=disabled or "
                "nvcc/cudart not found)");
}

bool cuda_device_available() { return false; }

}  // namespace ferry
