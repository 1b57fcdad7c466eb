// Two processes on the cuda backend share one host store (config.host_share): the first
// loads it, the second attaches and registers the same physical pages for its own device
// (device 1 where two GPUs are visible, else device 0 as well). Each streams every group
// through the GPU and compares the device bytes with the pattern the loader wrote. The
// processes fork before either touches CUDA, so that each starts its own context.
//
// Exit 0: both saw every byte right and the segment is gone after both left; 77 (meson's
// SKIP) where no CUDA device is visible; 1 with a message otherwise.
#include <cuda_runtime.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "ferry/ferry.h"

namespace {

constexpr int kExitSkip = 77;
constexpr int kGroups = 6;
constexpr int kTensorsPerGroup = 3;
constexpr std::uint64_t kTensorBytes = 3u << 20;  // 3 MiB: the store spans 2 MiB pages

unsigned char pattern(int g, int t, std::uint64_t i) {
    return static_cast<unsigned char>((g * 131 + t * 17 + i * 7 + i / 4096) & 0xff);
}

[[noreturn]] void die(const char *who, const char *what, ferry_status status) {
    std::fprintf(stderr, "host-share pair: %s: %s failed: %s: %s\n", who, what,
                 ferry_status_string(status), ferry_last_error());
    std::exit(1);
}

// Plans the model with the shared store `share` on `device`; the loader copies the
// pattern in. Seals (then writes a byte to ready_fd, if any), acquires every group twice
// and checks its device bytes; before destroying the runtime, waits until hold_fd (if
// any) has a byte or is closed, so that the loader stays while the other one runs.
int run(const char *who, const std::string &share, int device, bool load, int ready_fd,
        int hold_fd) {
    ferry_config config;
    ferry_config_init(&config);
    config.backend = FERRY_BACKEND_CUDA;
    config.device = device;
    config.vram_budget = kGroups * kTensorsPerGroup * kTensorBytes / 2;
    config.host_share = share.c_str();
    config.name = who;
    ferry_runtime *rt = nullptr;
    ferry_status s = ferry_create(&config, &rt);
    if (s != FERRY_OK) die(who, "ferry_create", s);
    std::vector<ferry_group> groups(kGroups);
    std::vector<ferry_tensor> tensors(kGroups * kTensorsPerGroup);
    for (int g = 0; g < kGroups; ++g) {
        if ((s = ferry_group_define(rt, ("block." + std::to_string(g)).c_str(), &groups[g])) != FERRY_OK)
            die(who, "ferry_group_define", s);
        for (int t = 0; t < kTensorsPerGroup; ++t) {
            const std::int64_t shape[1] = {static_cast<std::int64_t>(kTensorBytes / 2)};
            s = ferry_tensor_define(rt, groups[g], ("w" + std::to_string(t)).c_str(), kTensorBytes,
                                    FERRY_DTYPE_BF16, 1, shape, 0, &tensors[g * kTensorsPerGroup + t]);
            if (s != FERRY_OK) die(who, "ferry_tensor_define", s);
        }
    }
    if ((s = ferry_plan(rt)) != FERRY_OK) die(who, "ferry_plan", s);
    ferry_host_share_role role = FERRY_HOST_SHARE_NONE;
    if ((s = ferry_host_share_role_get(rt, &role)) != FERRY_OK) die(who, "ferry_host_share_role_get", s);
    const ferry_host_share_role expected = load ? FERRY_HOST_SHARE_LOADER : FERRY_HOST_SHARE_ATTACHED;
    if (role != expected) {
        std::fprintf(stderr, "host-share pair: %s: role %d, expected %d\n", who, role, expected);
        return 1;
    }
    std::vector<unsigned char> bytes(kTensorBytes);
    if (load) {
        for (int g = 0; g < kGroups; ++g) {
            for (int t = 0; t < kTensorsPerGroup; ++t) {
                for (std::uint64_t i = 0; i < kTensorBytes; ++i) bytes[i] = pattern(g, t, i);
                s = ferry_tensor_copy_in(rt, tensors[g * kTensorsPerGroup + t], 0, bytes.data(), kTensorBytes);
                if (s != FERRY_OK) die(who, "ferry_tensor_copy_in", s);
            }
        }
    }
    if ((s = ferry_seal(rt)) != FERRY_OK) die(who, "ferry_seal", s);
    if (ready_fd >= 0) {
        const char c = 1;
        if (write(ready_fd, &c, 1) != 1) return 1;
    }
    std::uint64_t wrong = 0;
    for (int pass = 0; pass < 2; ++pass) {
        for (int g = 0; g < kGroups; ++g) {
            if ((s = ferry_acquire(rt, groups[g], nullptr)) != FERRY_OK) die(who, "ferry_acquire", s);
            for (int t = 0; t < kTensorsPerGroup; ++t) {
                void *ptr = nullptr;
                s = ferry_tensor_device_ptr(rt, tensors[g * kTensorsPerGroup + t], &ptr);
                if (s != FERRY_OK) die(who, "ferry_tensor_device_ptr", s);
                if (cudaMemcpy(bytes.data(), ptr, kTensorBytes, cudaMemcpyDeviceToHost) != cudaSuccess) {
                    std::fprintf(stderr, "host-share pair: %s: cudaMemcpy failed\n", who);
                    return 1;
                }
                for (std::uint64_t i = 0; i < kTensorBytes; ++i) wrong += bytes[i] != pattern(g, t, i);
            }
            if ((s = ferry_release(rt, groups[g], nullptr)) != FERRY_OK) die(who, "ferry_release", s);
        }
    }
    if (hold_fd >= 0) {
        char c = 0;
        if (read(hold_fd, &c, 1) < 0) return 1;
    }
    if ((s = ferry_destroy(rt)) != FERRY_OK) die(who, "ferry_destroy", s);
    if (wrong != 0) {
        std::fprintf(stderr, "host-share pair: %s: %llu device bytes wrong\n", who,
                     static_cast<unsigned long long>(wrong));
        return 1;
    }
    std::printf("host-share pair: %s on device %d: every byte right\n", who, device);
    return 0;
}

int wait_exit(pid_t pid) {
    int status = 0;
    if (waitpid(pid, &status, 0) != pid) return -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

}  // namespace

int main() {
    const std::string share = "pair-" + std::to_string(getpid());
    int ready[2], hold[2];
    if (pipe(ready) != 0 || pipe(hold) != 0) return 1;
    const pid_t loader = fork();
    if (loader < 0) return 1;
    if (loader == 0) {
        close(ready[0]);
        close(hold[1]);
        int count = 0;
        const cudaError_t error = cudaGetDeviceCount(&count);
        if (error != cudaSuccess || count == 0) {
            std::printf("SKIPPED: no CUDA device visible (%s)\n",
                        error != cudaSuccess ? cudaGetErrorString(error) : "0 devices");
            std::fflush(stdout);  // _exit does not flush
            _exit(kExitSkip);
        }
        _exit(run("loader", share, 0, true, ready[1], hold[0]));
    }
    close(ready[1]);
    close(hold[0]);
    char c = 0;
    const bool sealed = read(ready[0], &c, 1) == 1;
    close(ready[0]);
    if (!sealed) {  // the loader left before sealing: no device, or a failure
        const int code = wait_exit(loader);  // a skip says why itself
        return code == kExitSkip ? kExitSkip : 1;
    }
    int count = 0;
    if (const cudaError_t error = cudaGetDeviceCount(&count); error != cudaSuccess || count == 0) {
        std::fprintf(stderr, "host-share pair: the loader sealed on a GPU, but this process "
                     "sees none (%s)\n", error != cudaSuccess ? cudaGetErrorString(error) : "0 devices");
        close(hold[1]);
        wait_exit(loader);
        return 1;
    }
    const int attached = run("attached", share, count >= 2 ? 1 : 0, false, -1, -1);
    close(hold[1]);  // the loader may leave now
    const int loaded = wait_exit(loader);
    struct stat st {};
    const bool left = stat(("/dev/shm/ferry-host." + share).c_str(), &st) == 0;
    if (left) std::fprintf(stderr, "host-share pair: the segment is left after both exited\n");
    return attached == 0 && loaded == 0 && !left ? 0 : 1;
}
