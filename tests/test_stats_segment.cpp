// The stats segment, seen from a reader: its name, mode and lifetime, what it holds after
// a run, stale and incompatible segments, and the seqlock under a hammering writer.
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <new>
#include <optional>
#include <thread>

#include "api_fixture.hpp"
#include "core/runtime.hpp"
#include "sim_model.hpp"
#include "observe/stats_layout.hpp"
#include "observe/stats_reader.hpp"
#include "observe/stats_segment.hpp"

using namespace ferry_test;

namespace {

std::string segment_path(const std::string &name) { return "/dev/shm" + name; }

ferry_runtime *publishing_runtime(const char *name) {
    ferry_config config;
    ferry_config_init(&config);
    config.backend = FERRY_BACKEND_SIM;
    config.vram_budget = 1 << 20;
    config.name = name;
    config.publish_stats = 1;
    ferry_runtime *rt = nullptr;
    check(ferry_create(&config, &rt), "ferry_create");
    return rt;
}

// A segment holding a header written by hand, for layouts and pids a runtime never writes.
struct FakeSegment {
    std::string name;
    explicit FakeSegment(const std::string &suffix, std::uint32_t version,
                         std::uint64_t process_start) {
        name = "ferry." + std::to_string(getpid()) + "." + suffix;
        const int fd = shm_open(("/" + name).c_str(), O_RDWR | O_CREAT | O_TRUNC, 0600);
        REQUIRE(fd >= 0);
        REQUIRE(ftruncate(fd, ferry::shm::groups_offset()) == 0);
        void *at = mmap(nullptr, ferry::shm::groups_offset(), PROT_READ | PROT_WRITE, MAP_SHARED,
                        fd, 0);
        REQUIRE(at != MAP_FAILED);
        auto *h = new (at) ferry::shm::Header{};
        h->layout_version = version;
        h->struct_size = sizeof(ferry::shm::Header);
        h->group_entry_size = sizeof(ferry::shm::GroupEntry);
        h->stat_words = ferry::shm::kStatWords;
        h->groups_offset = ferry::shm::groups_offset();
        h->pid = getpid();
        h->process_start = process_start;
        h->magic.store(ferry::shm::kMagic);
        munmap(at, ferry::shm::groups_offset());
        close(fd);
    }
    ~FakeSegment() { shm_unlink(("/" + name).c_str()); }
};

}  // namespace

TEST_CASE("A publishing runtime owns a 0600 segment named after its pid and name until destroy") {
    ferry_runtime *rt = publishing_runtime("seg-owner");
    const std::string name = ferry_runtime_impl(rt).stats_segment_name();
    REQUIRE(name == "/ferry." + std::to_string(getpid()) + ".seg-owner");
    struct stat info {};
    REQUIRE(stat(segment_path(name).c_str(), &info) == 0);
    CHECK((info.st_mode & 0777) == 0600);
    const ferry::ReadResult read = ferry::read_segment(name.substr(1));
    REQUIRE(read.state == ferry::SegmentState::kOk);
    CHECK(read.snapshot.name == "seg-owner");
    CHECK(read.snapshot.pid == getpid());
    CHECK(read.snapshot.phase == FERRY_PHASE_DEFINE);
    CHECK(read.snapshot.stats.vram_budget == (1u << 20));
    check(ferry_destroy(rt), "ferry_destroy");
    CHECK(stat(segment_path(name).c_str(), &info) != 0);
}

TEST_CASE("Two runtimes of one name in one process publish two segments") {
    ferry_runtime *a = publishing_runtime("twin");
    ferry_runtime *b = publishing_runtime("twin");
    const std::string first = ferry_runtime_impl(a).stats_segment_name();
    const std::string second = ferry_runtime_impl(b).stats_segment_name();
    CHECK(first != second);
    CHECK(second == first + ".2");
    ferry_destroy(b);
    ferry_destroy(a);
}

TEST_CASE("A runtime without publish_stats or FERRY_STATS publishes nothing") {
    ModelSpec spec;
    spec.groups = {{{4096, false}}, {{4096, false}}};
    spec.budget = 3 * 4096;
    SimModel model(spec);
    CHECK(ferry_runtime_impl(model.runtime()).stats_segment_name().empty());
}

TEST_CASE("FERRY_STATS=1 publishes; a malformed FERRY_STATS fails create and names it") {
    ModelSpec spec;
    spec.groups = {{{4096, false}}, {{4096, false}}};
    spec.budget = 3 * 4096;
    {
        const ScopedEnv stats("FERRY_STATS", "1");
        SimModel model(spec);
        CHECK_FALSE(ferry_runtime_impl(model.runtime()).stats_segment_name().empty());
    }
    const ScopedEnv stats("FERRY_STATS", "yes");
    ferry_config config;
    ferry_config_init(&config);
    config.vram_budget = 4096;
    ferry_runtime *rt = nullptr;
    CHECK(ferry_create(&config, &rt) == FERRY_ERROR_INVALID_ARGUMENT);
    CHECK(std::string(ferry_last_error()).find("FERRY_STATS") != std::string::npos);
}

TEST_CASE("After a run the segment holds ferry_stats_get's counters, stall time and group times") {
    ModelSpec spec;
    for (int g = 0; g < 6; ++g) spec.groups.push_back({{256 << 10, false}});
    spec.budget = 3 * (256 << 10);  // one resident, two slots
    spec.h2d_gbps = 0.5;            // sim: 0.5 ms a copy, a consumer without compute stalls
    std::optional<SimModel> published;
    {
        const ScopedEnv stats("FERRY_STATS", "1");
        published.emplace(spec);
    }
    SimModel &model = *published;
    Failures failures;
    for (int pass = 0; pass < 4; ++pass) {
        for (std::size_t g = 0; g < model.group_count(); ++g) {
            REQUIRE(model.run_group(g, nullptr, failures) == FERRY_OK);
        }
    }
    model.drain();
    REQUIRE(failures.count == 0);
    const ferry_stats own = model.stats();  // also publishes what it collected
    const std::string name = ferry_runtime_impl(model.runtime()).stats_segment_name();
    const ferry::ReadResult read = ferry::read_segment(name.substr(1));
    REQUIRE(read.state == ferry::SegmentState::kOk);
    for (const ferry::shm::StatField &field : ferry::shm::kStatFields) {
        INFO(field.name);
        CHECK(read.snapshot.stats.*field.member == own.*field.member);
    }
    // The times are the sim link's; a GPU's copies take what they take.
    const bool modeled = test_backend() == FERRY_BACKEND_SIM;
    if (modeled) CHECK(own.stall_ns > 0);
    REQUIRE(read.snapshot.groups.size() == 6);
    std::uint64_t onloads = 0;
    for (const ferry::GroupSnapshot &g : read.snapshot.groups) {
        onloads += g.onloads;
        CHECK(g.image_bytes == (256u << 10));
        CHECK(g.resident_bytes == (g.resident ? g.image_bytes : 0));
        if (!g.resident) {
            CHECK(g.timed_onloads > 0);
            if (modeled) CHECK(g.total_onload_ns >= g.timed_onloads * 400'000);  // >= 0.4 ms
        }
    }
    CHECK(onloads == own.onloads);
}

TEST_CASE("A segment of another layout version is refused as incompatible, naming both") {
    FakeSegment fake("layout-999", 999, ferry::StatsSegment::process_start(getpid()));
    const ferry::ReadResult read = ferry::read_segment(fake.name);
    CHECK(read.state == ferry::SegmentState::kIncompatible);
    CHECK(read.message.find("layout version 999") != std::string::npos);
    CHECK(read.message.find("reads version " + std::to_string(ferry::shm::kLayoutVersion)) !=
          std::string::npos);
}

TEST_CASE("A segment whose pid now belongs to another process is stale") {
    FakeSegment fake("reused-pid", ferry::shm::kLayoutVersion, 12345);
    CHECK(ferry::read_segment(fake.name).state == ferry::SegmentState::kStale);
}

TEST_CASE("A segment left by an exited process is stale, and removing it works") {
    const pid_t child = fork();
    REQUIRE(child >= 0);
    if (child == 0) {
        ferry::SegmentIdentity identity;
        identity.name = "orphan";
        new ferry::StatsSegment(identity);  // never destroyed: exits as if killed
        _exit(0);
    }
    int status = 0;
    REQUIRE(waitpid(child, &status, 0) == child);
    REQUIRE(WIFEXITED(status));
    const std::string name = "ferry." + std::to_string(child) + ".orphan";
    const ferry::ReadResult read = ferry::read_segment(name);
    CHECK(read.state == ferry::SegmentState::kStale);
    CHECK(read.message.find("--remove-stale") != std::string::npos);
    std::string why;
    CHECK(ferry::remove_segment(name, &why));
    CHECK(ferry::read_segment(name).state == ferry::SegmentState::kNotFound);
}

TEST_CASE("A reader never sees a torn snapshot while a writer hammers the counters") {
    ferry::SegmentIdentity identity;
    identity.name = "seqlock";
    ferry::StatsSegment segment(identity);
    segment.set_groups({"a", "b"}, {4096, 8192}, {4096, 0}, {-1, 0});
    std::atomic<bool> stop{false};
    std::thread writer([&] {
        ferry_stats s{};
        std::vector<ferry::GroupRow> rows(2);
        const std::vector<std::uint32_t> changed{0, 1};
        for (std::uint64_t i = 1; !stop.load(std::memory_order_relaxed); ++i) {
            s.resident_hits = i;
            s.hits = 3 * i;
            s.misses = i / 7;
            s.acquires = s.resident_hits + s.hits + s.misses;
            s.releases = s.acquires;
            s.onloads = i;
            s.bytes_h2d = 4096 * i;
            rows[1].onloads = i;
            rows[1].timed_onloads = i;
            rows[1].total_onload_ns = 10 * i;
            segment.publish(s, FERRY_PHASE_SEALED, rows, changed);
            std::this_thread::yield();  // a runtime does other work between publishes
        }
    });
    const std::string name = segment.name().substr(1);
    std::uint64_t reads = 0, failed = 0, torn = 0, backwards = 0, last = 0;
    const auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(700);
    while (std::chrono::steady_clock::now() < until) {
        const ferry::ReadResult read = ferry::read_segment(name);
        if (read.state != ferry::SegmentState::kOk) {
            ++failed;
            continue;
        }
        const ferry_stats &s = read.snapshot.stats;
        const ferry::GroupSnapshot &b = read.snapshot.groups.at(1);
        const bool whole = s.acquires == s.resident_hits + s.hits + s.misses &&
                           s.releases == s.acquires && s.bytes_h2d == 4096 * s.onloads &&
                           b.onloads == s.onloads && b.total_onload_ns == 10 * b.timed_onloads;
        torn += whole ? 0 : 1;
        backwards += s.acquires < last ? 1 : 0;
        last = s.acquires;
        ++reads;
    }
    stop = true;
    writer.join();
    CHECK(failed == 0);
    CHECK(reads > 50);
    CHECK(last > 0);
    CHECK(torn == 0);
    CHECK(backwards == 0);
}
