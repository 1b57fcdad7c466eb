// The shared host store (ferry.h "Shared host store"): one loader, attached runtimes in
// this process and in forked ones, layouts that differ, members killed with SIGKILL, a
// loader that dies mid-load, and segments that are another user's, corrupt or stale.
// Children create their runtimes after fork() and leave with _exit().
#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "api_fixture.hpp"
#include "ferry/ferry.h"
#include "base/process.hpp"
#include "host/segment_header.hpp"

using namespace ferry_test;

namespace {

constexpr std::uint64_t kBudget = 1 << 20;

std::string unique_share(const char *what) {
    static int counter = 0;
    return std::string("test-") + what + "-" + std::to_string(getpid()) + "-" +
           std::to_string(++counter);
}

bool segment_exists(const std::string &share) {
    struct stat st {};
    return stat(("/dev/shm/ferry-host." + share).c_str(), &st) == 0;
}

unsigned char pattern(std::uint32_t g, std::uint32_t t, std::uint64_t i) {
    return static_cast<unsigned char>((g * 131 + t * 31 + i * 7 + (i >> 8)) & 0xff);
}

// Three groups of three tensors; `mutable_last` makes each group's last tensor mutable,
// `grow` changes tensor 1 of group 2, for a layout that differs.
struct Model {
    ferry_runtime *rt = nullptr;
    std::vector<ferry_group> groups;
    std::vector<std::vector<ferry_tensor>> tensors;
    std::vector<std::vector<std::uint64_t>> bytes;

    Model(const std::string &share, bool mutable_last = false, bool grow = false,
          std::uint64_t pinned_cap = 0, bool pageable = false, std::uint32_t timeout_ms = 20000,
          std::uint64_t scale = 1) {
        ferry_config config;
        ferry_config_init(&config);
        // On sim whatever FERRY_BACKEND says: the checks read device bytes from the host.
        // Their tests are [sim-only], so a cuda run names them as not run.
        config.backend = FERRY_BACKEND_SIM;
        config.vram_budget = kBudget * scale;
        config.name = "share-test";
        config.host_share = share.c_str();
        config.host_share_timeout_ms = timeout_ms;
        config.pinned_cap_bytes = pinned_cap;
        config.pageable_fallback = pageable ? 1 : 0;
        if (ferry_create(&config, &rt) != FERRY_OK) throw std::runtime_error(ferry_last_error());
        for (std::uint32_t g = 0; g < 3; ++g) {
            ferry_group group{};
            const std::string name = "block." + std::to_string(g);
            ferry_group_define(rt, name.c_str(), &group);
            groups.push_back(group);
            tensors.emplace_back();
            bytes.emplace_back();
            for (std::uint32_t t = 0; t < 3; ++t) {
                std::uint64_t n = (5000 + 3000 * t + 1000 * g) * scale;
                if (grow && g == 2 && t == 1) n += 256;
                const std::uint32_t flags = mutable_last && t == 2 ? FERRY_TENSOR_MUTABLE : 0;
                ferry_tensor tensor{};
                const std::string tname = "w" + std::to_string(t);
                ferry_tensor_define(rt, group, tname.c_str(), n, FERRY_DTYPE_UNKNOWN, 0, nullptr,
                                    flags, &tensor);
                tensors[g].push_back(tensor);
                bytes[g].push_back(n);
            }
        }
    }
    ~Model() { ferry_destroy(rt); }

    ferry_host_share_role role() {
        ferry_host_share_role out = FERRY_HOST_SHARE_NONE;
        REQUIRE(ferry_host_share_role_get(rt, &out) == FERRY_OK);
        return out;
    }

    // Copies the pattern in, the first `groups_loaded` groups only.
    void load(std::uint32_t groups_loaded = 3) {
        for (std::uint32_t g = 0; g < groups_loaded; ++g) {
            for (std::uint32_t t = 0; t < 3; ++t) {
                std::vector<unsigned char> data(bytes[g][t]);
                for (std::uint64_t i = 0; i < data.size(); ++i) data[i] = pattern(g, t, i);
                REQUIRE(ferry_tensor_copy_in(rt, tensors[g][t], 0, data.data(), data.size()) ==
                        FERRY_OK);
            }
        }
    }

    // Host and (acquired, on sim) device bytes are the pattern.
    bool bytes_right() {
        for (std::uint32_t g = 0; g < 3; ++g) {
            if (ferry_acquire(rt, groups[g], nullptr) != FERRY_OK) return false;
            for (std::uint32_t t = 0; t < 3; ++t) {
                void *host = nullptr, *device = nullptr;
                if (ferry_tensor_host_ptr(rt, tensors[g][t], &host) != FERRY_OK) return false;
                if (ferry_tensor_device_ptr(rt, tensors[g][t], &device) != FERRY_OK) return false;
                for (std::uint64_t i = 0; i < bytes[g][t]; ++i) {
                    if (static_cast<unsigned char *>(host)[i] != pattern(g, t, i)) return false;
                    if (static_cast<unsigned char *>(device)[i] != pattern(g, t, i)) return false;
                }
            }
            if (ferry_release(rt, groups[g], nullptr) != FERRY_OK) return false;
        }
        return true;
    }
};

int wait_exit(pid_t child) {
    int status = 0;
    waitpid(child, &status, 0);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

// Polls ferry-stat's view of the segment until `members` live members are in it.
bool wait_members(const std::string &share, std::size_t members) {
    for (int i = 0; i < 5000; ++i) {
        const auto info = ferry::hostshm::read_segment("ferry-host." + share);
        std::size_t live = 0;
        for (const auto &m : info.members) live += m.alive ? 1 : 0;
        if (info.ok && live >= members) return true;
        std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    return false;
}

#ifndef MADV_COLLAPSE
#define MADV_COLLAPSE 25
#endif

// Whether this kernel makes a 2 MiB page of a shared-memory file on request
// (MADV_COLLAPSE, Linux 6.1+, not with shmem_enabled "deny"); why not when it does not.
bool kernel_collapses_shmem(std::string *why) {
    constexpr std::size_t kHuge = std::size_t{2} << 20;
    const std::string name = "/ferry-test-huge-probe-" + std::to_string(getpid());
    const int fd = shm_open(name.c_str(), O_RDWR | O_CREAT | O_EXCL, 0600);
    if (fd < 0) {
        *why = std::string("shm_open: ") + std::strerror(errno);
        return false;
    }
    shm_unlink(name.c_str());
    bool ok = false;
    void *room = mmap(nullptr, 2 * kHuge, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    auto *at = reinterpret_cast<char *>(
        (reinterpret_cast<std::uintptr_t>(room) + kHuge - 1) / kHuge * kHuge);
    if (ftruncate(fd, kHuge) != 0 || posix_fallocate(fd, 0, 4096) != 0 ||
        mmap(at, kHuge, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, fd, 0) == MAP_FAILED) {
        *why = std::string("setting up the probe: ") + std::strerror(errno);
    } else if (madvise(at, kHuge, MADV_COLLAPSE) != 0) {
        *why = std::string("MADV_COLLAPSE of a 2 MiB shared-memory page: ") + std::strerror(errno);
    } else {
        ok = true;
    }
    munmap(room, 2 * kHuge);
    close(fd);
    return ok;
}

// Of this process's mappings within [begin, end), the bytes mapped by PMD entries (smaps'
// ShmemPmdMapped) and all their resident bytes (Rss).
std::pair<std::uint64_t, std::uint64_t> pmd_mapped(const void *begin, std::uint64_t bytes) {
    const auto from = reinterpret_cast<std::uintptr_t>(begin);
    std::ifstream smaps("/proc/self/smaps");
    std::string line;
    bool inside = false;
    std::uint64_t pmd_kib = 0, rss_kib = 0;
    while (std::getline(smaps, line)) {
        const auto dash = line.find('-');
        if (dash != std::string::npos && dash < line.find(' ')) {  // a mapping's first line
            const std::uintptr_t start = std::stoull(line.substr(0, dash), nullptr, 16);
            const std::uintptr_t end = std::stoull(line.substr(dash + 1), nullptr, 16);
            inside = start >= from && end <= from + bytes;
        } else if (inside && line.rfind("ShmemPmdMapped:", 0) == 0) {
            pmd_kib += std::stoull(line.substr(15));
        } else if (inside && line.rfind("Rss:", 0) == 0) {
            rss_kib += std::stoull(line.substr(4));
        }
    }
    return {pmd_kib << 10, rss_kib << 10};
}

}  // namespace

TEST_CASE("A runtime attaches to a sealed shared store and streams the loader's bytes", "[sim-only]") {
    const std::string share = unique_share("attach");
    {
        Model loader(share);
        REQUIRE(ferry_plan(loader.rt) == FERRY_OK);
        REQUIRE(loader.role() == FERRY_HOST_SHARE_LOADER);
        loader.load();
        REQUIRE(ferry_seal(loader.rt) == FERRY_OK);

        Model attached(share);
        REQUIRE(ferry_plan(attached.rt) == FERRY_OK);
        REQUIRE(attached.role() == FERRY_HOST_SHARE_ATTACHED);
        // copy-in of an immutable tensor is a no-op: the bytes are the loader's.
        const std::vector<unsigned char> zeros(attached.bytes[0][0], 0);
        REQUIRE(ferry_tensor_copy_in(attached.rt, attached.tensors[0][0], 0, zeros.data(),
                                     zeros.size()) == FERRY_OK);
        REQUIRE(ferry_seal(attached.rt) == FERRY_OK);
        REQUIRE(attached.bytes_right());
        REQUIRE(loader.bytes_right());

        const auto info = ferry::hostshm::read_segment("ferry-host." + share);
        REQUIRE(info.ok);
        REQUIRE(info.state == ferry::hostshm::kSealed);
        REQUIRE(info.members.size() == 2);
        REQUIRE(segment_exists(share));
    }
    REQUIRE_FALSE(segment_exists(share));  // the last member removed it
}

TEST_CASE("An update is refused on a shared host store, by the loader and the attached", "[sim-only]") {
    const std::string share = unique_share("update");
    Model loader(share);
    REQUIRE(ferry_plan(loader.rt) == FERRY_OK);
    loader.load();
    REQUIRE(ferry_seal(loader.rt) == FERRY_OK);
    Model attached(share);
    REQUIRE(ferry_plan(attached.rt) == FERRY_OK);
    REQUIRE(ferry_seal(attached.rt) == FERRY_OK);
    const unsigned char byte = 0;
    for (Model *model : {&loader, &attached}) {
        REQUIRE(ferry_tensor_update(model->rt, model->tensors[1][0], 0, &byte, 1) ==
                FERRY_ERROR_INVALID_ARGUMENT);
        REQUIRE(std::string(ferry_last_error()).find("shared with other processes") !=
                std::string::npos);
        REQUIRE(model->bytes_right());
    }
}

TEST_CASE("An attached runtime's shared bytes are read-only even before seal", "[sim-only][fork]") {
    const std::string share = unique_share("readonly");
    Model loader(share);
    REQUIRE(ferry_plan(loader.rt) == FERRY_OK);
    loader.load();
    REQUIRE(ferry_seal(loader.rt) == FERRY_OK);
    Model attached(share);
    REQUIRE(ferry_plan(attached.rt) == FERRY_OK);
    void *host = nullptr;
    REQUIRE(ferry_tensor_host_ptr(attached.rt, attached.tensors[1][1], &host) == FERRY_OK);
    const pid_t child = fork();
    if (child == 0) {
        signal(SIGSEGV, [](int) { _exit(77); });
        static_cast<volatile unsigned char *>(host)[0] = 1;
        _exit(3);
    }
    REQUIRE(wait_exit(child) == 77);
}

TEST_CASE("A runtime in another process waits for the loader, then sees its bytes", "[sim-only][fork]") {
    const std::string share = unique_share("wait");
    Model loader(share);
    REQUIRE(ferry_plan(loader.rt) == FERRY_OK);
    const pid_t child = fork();
    if (child == 0) {
        _exit([&] {
            Model attached(share);
            if (ferry_plan(attached.rt) != FERRY_OK) return 10;
            if (attached.role() != FERRY_HOST_SHARE_ATTACHED) return 11;
            if (ferry_seal(attached.rt) != FERRY_OK) return 12;
            return attached.bytes_right() ? 0 : 13;
        }());
    }
    REQUIRE(wait_members(share, 2));
    std::this_thread::sleep_for(std::chrono::milliseconds(50));  // the child waits meanwhile
    loader.load();
    REQUIRE(ferry_seal(loader.rt) == FERRY_OK);
    REQUIRE(wait_exit(child) == 0);
    REQUIRE(loader.bytes_right());
}

TEST_CASE("A layout that differs is refused, naming the first difference", "[sim-only]") {
    const std::string share = unique_share("layout");
    Model loader(share);
    REQUIRE(ferry_plan(loader.rt) == FERRY_OK);
    loader.load();
    REQUIRE(ferry_seal(loader.rt) == FERRY_OK);
    Model other(share, false, true);
    REQUIRE_FERRY_ERROR(ferry_plan(other.rt), FERRY_ERROR_HOST_SHARE_LAYOUT, "ferry_plan",
                        "tensor 'w1' of group 'block.2': 10256 bytes");
    const std::string message = ferry_last_error();
    INFO(message);
    REQUIRE(message.find("the store has 'tensor 'w1' of group 'block.2': 10000 bytes") !=
            std::string::npos);
    // Nothing changed: the runtime is still in DEFINE, the loader still right.
    ferry_phase phase{};
    REQUIRE(ferry_phase_get(other.rt, &phase) == FERRY_OK);
    REQUIRE(phase == FERRY_PHASE_DEFINE);
    REQUIRE(loader.bytes_right());
    const auto info = ferry::hostshm::read_segment("ferry-host." + share);
    REQUIRE(info.members.size() == 1);
}

TEST_CASE("Mutable tensors are private to each process, initialized from the loader", "[sim-only]") {
    const std::string share = unique_share("mutable");
    Model loader(share, true);
    REQUIRE(ferry_plan(loader.rt) == FERRY_OK);
    loader.load();
    REQUIRE(ferry_seal(loader.rt) == FERRY_OK);
    Model attached(share, true);
    REQUIRE(ferry_plan(attached.rt) == FERRY_OK);
    REQUIRE(ferry_seal(attached.rt) == FERRY_OK);
    REQUIRE(attached.bytes_right());
    // The attached runtime writes its mutable tensor on the device and synchronizes: its
    // host copy changes, the loader's does not.
    REQUIRE(ferry_acquire(attached.rt, attached.groups[1], nullptr) == FERRY_OK);
    void *device = nullptr;
    REQUIRE(ferry_tensor_device_ptr(attached.rt, attached.tensors[1][2], &device) == FERRY_OK);
    std::memset(device, 0xab, attached.bytes[1][2]);
    REQUIRE(ferry_release(attached.rt, attached.groups[1], nullptr) == FERRY_OK);
    REQUIRE(ferry_synchronize(attached.rt) == FERRY_OK);
    void *mine = nullptr, *theirs = nullptr;
    REQUIRE(ferry_tensor_host_ptr(attached.rt, attached.tensors[1][2], &mine) == FERRY_OK);
    REQUIRE(ferry_tensor_host_ptr(loader.rt, loader.tensors[1][2], &theirs) == FERRY_OK);
    REQUIRE(static_cast<unsigned char *>(mine)[10] == 0xab);
    REQUIRE(static_cast<unsigned char *>(theirs)[10] == pattern(1, 2, 10));
    // And a third runtime still starts from the sealed bytes.
    Model third(share, true);
    REQUIRE(ferry_plan(third.rt) == FERRY_OK);
    REQUIRE(ferry_seal(third.rt) == FERRY_OK);
    REQUIRE(third.bytes_right());
}

TEST_CASE("When the loader is killed mid-load, a waiting runtime takes the load over", "[sim-only][fork]") {
    const std::string share = unique_share("takeover");
    int ready[2];
    REQUIRE(pipe(ready) == 0);
    const pid_t loader = fork();
    if (loader == 0) {
        Model model(share);
        if (ferry_plan(model.rt) != FERRY_OK) _exit(20);
        model.load(1);  // part of it
        char c = 1;
        if (write(ready[1], &c, 1) != 1) _exit(21);
        for (;;) pause();
    }
    char c = 0;
    REQUIRE(read(ready[0], &c, 1) == 1);
    const pid_t waiter = fork();
    if (waiter == 0) {
        _exit([&] {  // the runtime destroyed before _exit
            Model model(share);
            if (ferry_plan(model.rt) != FERRY_OK) {
                std::fprintf(stderr, "waiter: ferry_plan: %s\n", ferry_last_error());
                return 30;
            }
            if (model.role() != FERRY_HOST_SHARE_LOADER) return 31;
            // What the dead loader wrote is gone: the store reads as zeros.
            void *host = nullptr;
            ferry_tensor_host_ptr(model.rt, model.tensors[0][0], &host);
            if (static_cast<unsigned char *>(host)[5] != 0) return 32;
            model.load();
            if (ferry_seal(model.rt) != FERRY_OK) return 33;
            return model.bytes_right() ? 0 : 34;
        }());
    }
    REQUIRE(wait_members(share, 2));
    kill(loader, SIGKILL);
    REQUIRE(wait_exit(loader) == 128 + SIGKILL);
    REQUIRE(wait_exit(waiter) == 0);
    REQUIRE_FALSE(segment_exists(share));
    close(ready[0]);
    close(ready[1]);
}

TEST_CASE("A loader destroyed before sealing passes the load to a waiter", "[sim-only][fork]") {
    const std::string share = unique_share("handover");
    auto loader = std::make_unique<Model>(share);
    REQUIRE(ferry_plan(loader->rt) == FERRY_OK);
    const pid_t waiter = fork();
    if (waiter == 0) {
        _exit([&] {
            Model model(share);
            if (ferry_plan(model.rt) != FERRY_OK) {
                std::fprintf(stderr, "waiter: ferry_plan: %s\n", ferry_last_error());
                return 30;
            }
            if (model.role() != FERRY_HOST_SHARE_LOADER) return 31;
            model.load();
            if (ferry_seal(model.rt) != FERRY_OK) return 33;
            return model.bytes_right() ? 0 : 34;
        }());
    }
    REQUIRE(wait_members(share, 2));
    loader.reset();
    REQUIRE(wait_exit(waiter) == 0);
    REQUIRE_FALSE(segment_exists(share));
}

TEST_CASE("Killing an attached runtime leaves the others running and every byte right", "[sim-only][fork]") {
    const std::string share = unique_share("kill");
    Model loader(share);
    REQUIRE(ferry_plan(loader.rt) == FERRY_OK);
    const pid_t waiter = fork();
    if (waiter == 0) {
        Model model(share);
        ferry_plan(model.rt);  // waits: killed meanwhile
        _exit(40);
    }
    REQUIRE(wait_members(share, 2));
    kill(waiter, SIGKILL);
    REQUIRE(wait_exit(waiter) == 128 + SIGKILL);
    loader.load();
    REQUIRE(ferry_seal(loader.rt) == FERRY_OK);
    const pid_t reader = fork();
    if (reader == 0) {
        Model model(share);
        if (ferry_plan(model.rt) != FERRY_OK || ferry_seal(model.rt) != FERRY_OK) _exit(41);  // NOLINT: a dead member is what this test wants
        for (std::uint32_t g = 0; g < 3; ++g) ferry_acquire(model.rt, model.groups[g], nullptr);
        raise(SIGKILL);  // dies holding every group
    }
    REQUIRE(wait_exit(reader) == 128 + SIGKILL);
    REQUIRE(loader.bytes_right());
    Model late(share);
    REQUIRE(ferry_plan(late.rt) == FERRY_OK);
    REQUIRE(late.role() == FERRY_HOST_SHARE_ATTACHED);
    REQUIRE(ferry_seal(late.rt) == FERRY_OK);
    REQUIRE(late.bytes_right());
}

TEST_CASE("A segment left by dead processes is stale: removed, then created anew", "[sim-only][fork]") {
    const std::string share = unique_share("stale");
    const pid_t child = fork();
    if (child == 0) {
        Model model(share);
        if (ferry_plan(model.rt) != FERRY_OK) _exit(50);
        model.load();
        if (ferry_seal(model.rt) != FERRY_OK) _exit(51);
        _exit(0);  // without ferry_destroy
    }
    REQUIRE(wait_exit(child) == 0);
    REQUIRE(segment_exists(share));
    const auto info = ferry::hostshm::read_segment("ferry-host." + share);
    REQUIRE(info.ok);
    REQUIRE(info.stale);
    SECTION("the next runtime removes it and loads") {
        Model model(share);
        REQUIRE(ferry_plan(model.rt) == FERRY_OK);
        REQUIRE(model.role() == FERRY_HOST_SHARE_LOADER);
    }
    SECTION("remove_if_stale (ferry-stat --remove-stale) removes it") {
        std::string why;
        REQUIRE(ferry::hostshm::remove_if_stale("ferry-host." + share, &why));
        REQUIRE_FALSE(segment_exists(share));
    }
    REQUIRE_FALSE(segment_exists(share));
}

TEST_CASE("A live segment is not stale, and remove_if_stale leaves it", "[sim-only]") {
    const std::string share = unique_share("live");
    Model model(share);
    REQUIRE(ferry_plan(model.rt) == FERRY_OK);
    std::string why;
    REQUIRE_FALSE(ferry::hostshm::remove_if_stale("ferry-host." + share, &why));
    REQUIRE(segment_exists(share));
}

TEST_CASE("Another user's segment is refused and left alone", "[sim-only]") {
    const std::string share = unique_share("owner");
    const std::string path = "/dev/shm/ferry-host." + share;
    const int fd = open(path.c_str(), O_RDWR | O_CREAT | O_EXCL, 0600);
    REQUIRE(fd >= 0);
    REQUIRE(ftruncate(fd, 4096) == 0);
    if (getuid() != 0 || fchown(fd, 65534, 65534) != 0) {
        close(fd);
        unlink(path.c_str());
        WARN("not root: cannot make a segment another user's");
        return;
    }
    Model model(share);
    REQUIRE_FERRY_ERROR(ferry_plan(model.rt), FERRY_ERROR_HOST_SHARE, "ferry_plan",
                        "belongs to uid 65534");
    struct stat st {};
    REQUIRE(fstat(fd, &st) == 0);
    REQUIRE(st.st_size == 4096);
    close(fd);
    unlink(path.c_str());
}

TEST_CASE("A corrupt or truncated segment header is a clear error, and nothing is changed", "[sim-only]") {
    const std::string share = unique_share("corrupt");
    const std::string path = "/dev/shm/ferry-host." + share;
    std::string needle;
    std::vector<unsigned char> bytes(64 << 10, 0x5a);
    SECTION("not a ferry segment") { needle = "bad magic"; }
    SECTION("a ferry segment cut short") {
        // A real segment's header, then the file truncated below its data.
        {
            Model model(share);
            REQUIRE(ferry_plan(model.rt) == FERRY_OK);
            const int fd = open(path.c_str(), O_RDONLY);
            REQUIRE(fd >= 0);
            REQUIRE(read(fd, bytes.data(), bytes.size()) == static_cast<ssize_t>(bytes.size()));
            close(fd);
        }
        auto *h = reinterpret_cast<ferry::hostshm::Header *>(bytes.data());
        h->members[0].pid = getpid();  // a live member, so it is not stale
        h->members[0].start = 0;
        needle = "truncated";
    }
    const int fd = open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC, 0600);
    REQUIRE(fd >= 0);
    REQUIRE(write(fd, bytes.data(), bytes.size()) == static_cast<ssize_t>(bytes.size()));
    close(fd);
    Model model(share);
    REQUIRE_FERRY_ERROR(ferry_plan(model.rt), FERRY_ERROR_HOST_SHARE, "ferry_plan", needle);
    struct stat st {};
    REQUIRE(stat(path.c_str(), &st) == 0);
    REQUIRE(static_cast<std::size_t>(st.st_size) == bytes.size());
    unlink(path.c_str());
}

TEST_CASE("A share name too long or holding a '/' is refused at create") {
    for (const std::string &name : {std::string("a/b"), std::string(201, 'x'), std::string("sp ace")}) {
        ferry_config config;
        ferry_config_init(&config);
        config.backend = FERRY_BACKEND_SIM;
        config.vram_budget = kBudget;
        config.host_share = name.c_str();
        ferry_runtime *rt = nullptr;
        REQUIRE_FERRY_ERROR(ferry_create(&config, &rt), FERRY_ERROR_INVALID_ARGUMENT,
                            "ferry_create", "host share name");
        REQUIRE(rt == nullptr);
    }
}

TEST_CASE("Attached runtimes map the store in 2 MiB pages where the kernel makes them", "[sim-only]") {
    std::string why;
    if (!kernel_collapses_shmem(&why)) {
        WARN("SKIPPED: this kernel makes no 2 MiB pages of shared memory (" << why
             << "): the store keeps 4 KiB pages, which attaching faults in one by one");
        return;
    }
    constexpr std::uint64_t kScale = 128;  // about 10 MiB
    SECTION("immutable tensors: one mapping, faulted in 2 MiB at a time") {
        const std::string share = unique_share("huge");
        Model loader(share, false, false, 0, false, 20000, kScale);
        REQUIRE(ferry_plan(loader.rt) == FERRY_OK);
        loader.load();
        REQUIRE(ferry_seal(loader.rt) == FERRY_OK);
        const auto info = ferry::hostshm::read_segment("ferry-host." + share);
        REQUIRE(info.ok);
        INFO("huge pages " << info.huge_pages << ", MADV_COLLAPSE errno " << info.huge_error);
        REQUIRE(info.huge_pages == info.data_bytes / (2 << 20));
        REQUIRE(info.huge_error == 0);

        Model attached(share, false, false, 0, false, 20000, kScale);
        REQUIRE(ferry_plan(attached.rt) == FERRY_OK);
        REQUIRE(attached.role() == FERRY_HOST_SHARE_ATTACHED);
        // Its mapping, pinned at plan: resident, each 2 MiB page of it in one PMD entry.
        void *base = nullptr;
        REQUIRE(ferry_tensor_host_ptr(attached.rt, attached.tensors[0][0], &base) == FERRY_OK);
        const auto [pmd, rss] = pmd_mapped(base, info.data_bytes);
        INFO("attached: " << (pmd >> 10) << " KiB of " << (rss >> 10) << " KiB in 2 MiB pages");
        REQUIRE(rss >= info.data_bytes);
        REQUIRE(pmd == std::uint64_t{info.huge_pages} * (2 << 20));
        REQUIRE(ferry_seal(attached.rt) == FERRY_OK);
        REQUIRE(attached.bytes_right());
    }
    SECTION("mutable tensors: private pages over 2 MiB ones start from the sealed bytes") {
        const std::string share = unique_share("huge-mutable");
        Model loader(share, true, false, 0, false, 20000, kScale);
        REQUIRE(ferry_plan(loader.rt) == FERRY_OK);
        loader.load();
        REQUIRE(ferry_seal(loader.rt) == FERRY_OK);
        REQUIRE(ferry::hostshm::read_segment("ferry-host." + share).huge_pages > 0);
        Model attached(share, true, false, 0, false, 20000, kScale);
        REQUIRE(ferry_plan(attached.rt) == FERRY_OK);
        REQUIRE(ferry_seal(attached.rt) == FERRY_OK);
        REQUIRE(attached.bytes_right());
        void *mine = nullptr, *theirs = nullptr;
        REQUIRE(ferry_tensor_host_ptr(attached.rt, attached.tensors[1][2], &mine) == FERRY_OK);
        REQUIRE(ferry_tensor_host_ptr(loader.rt, loader.tensors[1][2], &theirs) == FERRY_OK);
        static_cast<unsigned char *>(mine)[10] ^= 0xff;
        REQUIRE(static_cast<unsigned char *>(theirs)[10] == pattern(1, 2, 10));
        REQUIRE(loader.bytes_right());
    }
    SECTION("FERRY_HOST_SHARE_HUGE=0: 4 KiB pages, and the header says why") {
        const std::string share = unique_share("huge-off");
        setenv("FERRY_HOST_SHARE_HUGE", "0", 1);
        Model loader(share, false, false, 0, false, 20000, kScale);
        const ferry_status planned = ferry_plan(loader.rt);
        unsetenv("FERRY_HOST_SHARE_HUGE");
        REQUIRE(planned == FERRY_OK);
        loader.load();
        REQUIRE(ferry_seal(loader.rt) == FERRY_OK);
        const auto info = ferry::hostshm::read_segment("ferry-host." + share);
        REQUIRE(info.huge_pages == 0);
        REQUIRE(info.huge_error == ECANCELED);
        Model attached(share, false, false, 0, false, 20000, kScale);
        REQUIRE(ferry_plan(attached.rt) == FERRY_OK);
        void *base = nullptr;
        REQUIRE(ferry_tensor_host_ptr(attached.rt, attached.tensors[0][0], &base) == FERRY_OK);
        REQUIRE(pmd_mapped(base, info.data_bytes).first == 0);
        REQUIRE(ferry_seal(attached.rt) == FERRY_OK);
        REQUIRE(attached.bytes_right());
    }
}

TEST_CASE("An attached runtime pins what the loader pinned, whatever its own cap", "[sim-only]") {
    const std::string share = unique_share("pin");
    const std::size_t page = static_cast<std::size_t>(sysconf(_SC_PAGESIZE));
    Model loader(share, false, false, 2 * page * 3, true);  // about the first group
    REQUIRE(ferry_plan(loader.rt) == FERRY_OK);
    loader.load();
    REQUIRE(ferry_seal(loader.rt) == FERRY_OK);
    Model attached(share);  // no cap of its own, no pageable_fallback
    REQUIRE(ferry_plan(attached.rt) == FERRY_OK);
    REQUIRE(ferry_seal(attached.rt) == FERRY_OK);
    ferry_stats a{}, b{};
    a.struct_size = b.struct_size = sizeof(ferry_stats);
    REQUIRE(ferry_stats_get(loader.rt, &a) == FERRY_OK);
    REQUIRE(ferry_stats_get(attached.rt, &b) == FERRY_OK);
    REQUIRE(a.host_pageable_bytes > 0);
    REQUIRE(b.host_pinned_bytes == a.host_pinned_bytes);
    REQUIRE(b.host_pageable_bytes == a.host_pageable_bytes);
    REQUIRE(attached.bytes_right());
}

TEST_CASE("The wait for a loader times out with what it was waiting for", "[sim-only][fork]") {
    const std::string share = unique_share("timeout");
    Model loader(share);
    REQUIRE(ferry_plan(loader.rt) == FERRY_OK);
    const pid_t child = fork();
    if (child == 0) {
        _exit([&] {
            Model model(share, false, false, 0, false, 200);
            const ferry_status status = ferry_plan(model.rt);
            const std::string message = ferry_last_error();
            return status == FERRY_ERROR_HOST_SHARE &&
                           message.find("timed out") != std::string::npos
                       ? 0
                       : 60;
        }());
    }
    REQUIRE(wait_exit(child) == 0);
    const auto info = ferry::hostshm::read_segment("ferry-host." + share);
    REQUIRE(info.members.size() == 1);  // the child left
}

TEST_CASE("The fuzz seed of a valid segment is one the reader accepts, and broken ones are not") {
    const std::string folder = FERRY_TEST_SOURCE_DIR "/fuzz/corpus-host-segment/";
    auto check = [&](const char *seed) {
        const int fd = open((folder + seed).c_str(), O_RDONLY);
        if (fd < 0) return ferry::hostshm::Check::kUnsettled;
        std::vector<std::uint64_t> data(1 << 14);
        const ssize_t n = read(fd, data.data(), data.size() * 8);
        close(fd);
        std::string why;
        return ferry::hostshm::check_segment(data.data(), static_cast<std::size_t>(n), &why);
    };
    INFO("seeds at " << folder);
    REQUIRE(check("seed-valid.bin") == ferry::hostshm::Check::kOk);
    REQUIRE(check("seed-loading.bin") == ferry::hostshm::Check::kOk);
    for (const char *seed : {"seed-truncated.bin", "seed-header-only.bin", "seed-bad-magic.bin",
                             "seed-version-1.bin", "seed-bad-hash.bin", "seed-bad-state.bin",
                             "seed-too-many-members.bin", "seed-odd-page.bin",
                             "seed-data-offset-overflow.bin"}) {
        INFO(seed);
        REQUIRE(check(seed) == ferry::hostshm::Check::kCorrupt);
    }
    REQUIRE(check("seed-unsettled.bin") == ferry::hostshm::Check::kUnsettled);
}

// A waiter polls its loader's /proc/<pid>/stat: a process reaped while it is read makes
// the read fail (ESRCH), which must read as "gone", never as an error. Each child here
// is reaped by another thread as soon as it exits, while this one keeps asking.
TEST_CASE("Telling a live process from a dead one never fails, even while it is reaped",
          "[fork]") {
    for (int round = 0; round < 200; ++round) {
        const pid_t child = fork();
        REQUIRE(child >= 0);
        if (child == 0) _exit(0);
        std::thread reaper([child] {
            int status = 0;
            waitpid(child, &status, 0);
        });
        bool alive = true;
        for (int poll = 0; poll < 100000 && alive; ++poll) {
            REQUIRE_NOTHROW(alive = ferry::process_is_alive(child, 0));
            REQUIRE_NOTHROW(ferry::process_start_ticks(child));
        }
        reaper.join();
        REQUIRE_FALSE(ferry::process_is_alive(child, 0));
        REQUIRE(ferry::process_start_ticks(child) == 0);
    }
}
