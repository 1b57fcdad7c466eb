// The disk tier: with pageable_fallback and a pinned cap below the model, the immutable
// tensors past the pinned prefix stay in their safetensors file and every onload reads
// them from there. Every byte is checked after every acquire, under chaos and on several
// streams; their part of the host store is never made resident; a file changed later
// fails the onloads that read it, cleanly, until it is put back.
#include <catch2/catch.hpp>

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "core/runtime.hpp"
#include "safetensors_file.hpp"
#include "sim_model.hpp"

using namespace ferry_test;

namespace {

// 12 groups of three immutable tensors (odd sizes), every fourth with a mutable one too.
ModelSpec disk_model(const std::string &path, bool with_mutable, bool chaos) {
    ModelSpec spec;
    std::uint64_t model = 0;
    for (int g = 0; g < 12; ++g) {
        std::vector<TensorSpec> group = {{40000 + 512u * g, false}, {100003, false}, {7001, false}};
        if (with_mutable && g % 4 == 1) group.push_back({5000, true});
        for (const TensorSpec &t : group) model += t.bytes;
        spec.groups.push_back(group);
    }
    spec.budget = 5 * 160000;
    spec.pinned_cap = model / 4;
    spec.pageable_fallback = true;
    spec.chaos = chaos;
    spec.seed = 7;
    spec.weights_path = path;
    return spec;
}

std::uint64_t immutable_bytes(const ModelSpec &spec) {
    std::uint64_t bytes = 0;
    for (const auto &group : spec.groups) {
        for (const TensorSpec &t : group) bytes += t.is_mutable ? 0 : t.bytes;
    }
    return bytes;
}

// Resident pages of [begin, end), page-aligned inwards.
std::size_t resident_pages(const std::byte *begin, const std::byte *end) {
    const std::size_t page = static_cast<std::size_t>(sysconf(_SC_PAGESIZE));
    const auto lo = (reinterpret_cast<std::uintptr_t>(begin) + page - 1) / page * page;
    const auto hi = reinterpret_cast<std::uintptr_t>(end) / page * page;
    if (hi <= lo) return 0;
    std::vector<unsigned char> in_core((hi - lo) / page);
    REQUIRE(mincore(reinterpret_cast<void *>(lo), hi - lo, in_core.data()) == 0);
    std::size_t count = 0;
    for (unsigned char c : in_core) count += c & 1;
    return count;
}

// A call retried while an error deferred from an earlier prefetch reports itself.
template <typename Call>
ferry_status retrying(Call &&call, std::vector<ferry_status> &seen) {
    ferry_status status = FERRY_OK;
    for (int attempt = 0; attempt < 3; ++attempt) {
        status = call();
        if (status == FERRY_OK) return status;
        seen.push_back(status);
    }
    return status;
}

}  // namespace

TEST_CASE("Disk-tier bytes arrive right after every acquire, under chaos on several streams",
          "[disk-tier]") {
    ScratchDir dir;
    ModelSpec spec = disk_model(dir.file("model.safetensors"), true, true);
    spec.latency_us = 20;  // copies take time, so that reads, copies and compute overlap
    spec.h2d_gbps = 10;
    SimModel model(spec);
    const ferry_stats loaded = model.stats();
    // About 3/4 of the model stays in the file: the immutable part past the pinned prefix
    // (which ends at the last image end within the cap, so a little more than 3/4).
    CHECK(loaded.host_disk_bytes > immutable_bytes(spec) * 6 / 10);
    CHECK(loaded.host_disk_bytes < immutable_bytes(spec) * 9 / 10);
    CHECK(loaded.host_disk_bytes <= loaded.host_pageable_bytes);
    Failures failures;
    std::mt19937_64 rng(3);
    run_passes(model, 3, 3, failures, rng);
    model.drain();
    INFO(failures.first);
    CHECK(failures.count == 0);
    CHECK(failures.checked == 3 * spec.groups.size());
    const ferry_stats after = model.stats();
    CHECK(after.bytes_disk_read > 0);
    CHECK(after.host_disk_bytes == loaded.host_disk_bytes);
    run_passes(model, 1, 2, failures, rng);
    model.drain();
    CHECK(failures.count == 0);
    CHECK(model.stats().bytes_disk_read > after.bytes_disk_read);  // every pass reads again
    REQUIRE(ferry_synchronize(model.runtime()) == FERRY_OK);
    CHECK(model.host_versions_current(failures));  // mutable tensors live in memory
}

TEST_CASE("The disk tier's part of the host store is never made resident", "[disk-tier]") {
    ScratchDir dir;
    SimModel model(disk_model(dir.file("model.safetensors"), false, false));
    Failures failures;
    std::mt19937_64 rng(5);
    run_passes(model, 2, 2, failures, rng);
    model.drain();
    CHECK(failures.count == 0);
    const ferry::HostStore &store = *ferry_runtime_impl(model.runtime()).host_store();
    REQUIRE(store.pageable_bytes() > 0);
    const std::byte *past_pin = store.base() + store.pinned_bytes();
    CHECK(resident_pages(past_pin, past_pin + store.pageable_bytes()) == 0);
    CHECK(resident_pages(store.base(), past_pin) > 0);  // the pinned prefix was loaded
}

TEST_CASE("A disk-tier tensor has no host pointer, and copy_out reads it from the file",
          "[disk-tier]") {
    ScratchDir dir;
    const std::string path = dir.file("model.safetensors");
    const ModelSpec spec = disk_model(path, true, false);
    SimModel model(spec);
    std::size_t on_disk = 0;
    for (std::size_t g = 0; g < spec.groups.size(); ++g) {
        for (std::size_t t = 0; t < spec.groups[g].size(); ++t) {
            const std::uint64_t bytes = spec.groups[g][t].bytes;
            const auto expected = pattern_bytes(static_cast<std::uint32_t>(g),
                                                static_cast<std::uint32_t>(t), bytes);
            void *host = nullptr;
            const ferry_status status = ferry_tensor_host_ptr(model.runtime(), model.tensor(g, t), &host);
            const std::string message = ferry_last_error();
            std::vector<unsigned char> out(bytes);
            REQUIRE(ferry_tensor_copy_out(model.runtime(), model.tensor(g, t), 0, out.data(), bytes) ==
                    FERRY_OK);
            CHECK(out == expected);
            std::vector<unsigned char> part(1001);
            REQUIRE(ferry_tensor_copy_out(model.runtime(), model.tensor(g, t), 333, part.data(),
                                          part.size()) == FERRY_OK);
            CHECK(std::memcmp(part.data(), expected.data() + 333, part.size()) == 0);
            if (status == FERRY_OK) continue;
            REQUIRE(status == FERRY_ERROR_NOT_IN_MEMORY);
            CHECK_FALSE(spec.groups[g][t].is_mutable);
            CHECK(message.find(path) != std::string::npos);
            CHECK(message.find("g" + std::to_string(g) + ".t" + std::to_string(t)) != std::string::npos);
            ++on_disk;
        }
    }
    CHECK(on_disk > 0);
}

TEST_CASE("A weights file changed after load fails its onloads, until it is put back",
          "[disk-tier]") {
    ScratchDir dir;
    const std::string path = dir.file("model.safetensors");
    const ModelSpec spec = disk_model(path, true, false);
    SimModel model(spec);
    Failures failures;
    std::mt19937_64 rng(11);
    run_passes(model, 1, 0, failures, rng);
    REQUIRE(failures.count == 0);

    struct stat before;
    REQUIRE(stat(path.c_str(), &before) == 0);
    timespec changed[2] = {before.st_atim, before.st_mtim};
    changed[1].tv_sec += 10;  // "modified": its mtime moves on
    REQUIRE(utimensat(AT_FDCWD, path.c_str(), changed, 0) == 0);
    std::vector<ferry_status> seen;
    ferry_runtime *rt = model.runtime();
    for (std::size_t g = 0; g < spec.groups.size(); ++g) {
        if (retrying([&] { return ferry_acquire(rt, model.group(g), nullptr); }, seen) != FERRY_OK) {
            continue;
        }
        REQUIRE(retrying([&] { return ferry_release(rt, model.group(g), nullptr); }, seen) == FERRY_OK);
    }
    REQUIRE_FALSE(seen.empty());
    for (ferry_status status : seen) CHECK(status == FERRY_ERROR_FILE_CHANGED);

    const timespec restored[2] = {before.st_atim, before.st_mtim};
    REQUIRE(utimensat(AT_FDCWD, path.c_str(), restored, 0) == 0);
    // A prefetch that failed before the file was put back may report once more.
    ferry_status status = ferry_synchronize(rt);
    if (status == FERRY_ERROR_FILE_CHANGED) status = ferry_synchronize(rt);
    REQUIRE(status == FERRY_OK);
    run_passes(model, 2, 2, failures, rng);
    model.drain();
    INFO(failures.first);
    CHECK(failures.count == 0);
    REQUIRE(ferry_synchronize(rt) == FERRY_OK);
    CHECK(model.host_versions_current(failures));
}

TEST_CASE("The trace shows each disk read on the copy stream's track", "[disk-tier]") {
    ScratchDir dir;
    SimModel model(disk_model(dir.file("model.safetensors"), false, false));
    REQUIRE(ferry_trace_start(model.runtime(), 0) == FERRY_OK);
    Failures failures;
    std::mt19937_64 rng(13);
    run_passes(model, 1, 1, failures, rng);
    model.drain();
    REQUIRE(ferry_synchronize(model.runtime()) == FERRY_OK);
    const std::string trace_path = dir.file("trace.json");
    REQUIRE(ferry_trace_dump(model.runtime(), trace_path.c_str()) == FERRY_OK);
    std::ifstream file(trace_path);
    std::stringstream text;
    text << file.rdbuf();
    const std::string json = text.str();
    const std::size_t at = json.find("\"cat\":\"disk read\"");
    REQUIRE(at != std::string::npos);
    const std::size_t line = json.rfind('\n', at);
    const std::string event = json.substr(line, json.find('\n', at) - line);
    CHECK(event.find("\"ph\":\"X\"") != std::string::npos);
    CHECK(event.find("\"tid\":0,") != std::string::npos);
    CHECK(event.find("\"bytes\":") != std::string::npos);
}

TEST_CASE("Without the disk tier, or in verify mode, every tensor is read into memory",
          "[disk-tier]") {
    ScratchDir dir;
    for (const bool verify : {false, true}) {
        ModelSpec spec = disk_model(dir.file("model.safetensors"), true, false);
        spec.disk_tier = verify;  // verify mode alone must turn it off
        spec.verify = verify;
        SimModel model(spec);
        const ferry_stats stats = model.stats();
        CHECK(stats.host_pageable_bytes > 0);
        CHECK(stats.host_disk_bytes == 0);
        Failures failures;
        std::mt19937_64 rng(17);
        run_passes(model, 2, 2, failures, rng);
        model.drain();
        CHECK(failures.count == 0);
        CHECK(model.stats().bytes_disk_read == 0);
    }
}
