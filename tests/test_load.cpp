// Safetensors files into the host store (ferry.h "Weights files"): bytes right on the
// device, conversion, groups defined from the files, one error listing every mismatch, a
// failed read that keeps the runtime unsealable, progress, threads and O_DIRECT.
#include <catch2/catch.hpp>

#include <unistd.h>

#include <cstring>
#include <cstddef>
#include <map>
#include <thread>
#include <string>
#include <vector>

#include "api_fixture.hpp"
#include "c_api_common.hpp"
#include "core/runtime.hpp"
#include "load/convert.hpp"
#include "safetensors_file.hpp"
#include "sim_model.hpp"

using namespace ferry_test;

namespace {

constexpr std::uint64_t kBudget = 8u << 20;

struct Weights {
    ferry_weights *handle = nullptr;
    explicit Weights(const std::string &path) {
        check(ferry_weights_open(path.c_str(), &handle), "ferry_weights_open");
    }
    ~Weights() { ferry_weights_close(handle); }
    Weights(const Weights &) = delete;
    Weights &operator=(const Weights &) = delete;
};

struct Runtime {
    ferry_runtime *rt = nullptr;
    explicit Runtime(std::uint64_t budget = kBudget) { rt = make_runtime(budget); }
    ~Runtime() { ferry_destroy(rt); }
    Runtime(const Runtime &) = delete;
    Runtime &operator=(const Runtime &) = delete;
    operator ferry_runtime *() const { return rt; }
};

// Three blocks of two U8 tensors of odd sizes, and an F32 "root" tensor.
std::vector<FileEntry> small_model() {
    std::vector<FileEntry> entries;
    std::uint64_t seed = 1;
    for (int b = 0; b < 3; ++b) {
        for (const auto &[name, n] : {std::pair<const char *, std::int64_t>{"attn", 3001},
                                      std::pair<const char *, std::int64_t>{"mlp", 70000}}) {
            entries.push_back({"blocks." + std::to_string(b) + "." + name, "U8", {n},
                               random_bytes(static_cast<std::size_t>(n), seed++)});
        }
    }
    entries.push_back({"embed.weight", "F32", {16, 33}, random_bytes(16 * 33 * 4, seed++)});
    return entries;
}

std::vector<unsigned char> copy_out(ferry_runtime *rt, ferry_tensor tensor, std::uint64_t bytes,
                                    std::uint64_t offset = 0) {
    std::vector<unsigned char> out(bytes);
    check(ferry_tensor_copy_out(rt, tensor, offset, out.data(), bytes), "ferry_tensor_copy_out");
    return out;
}

ferry_group group_handle(ferry_runtime *rt, std::uint32_t index) {
    return {ferry::api::encode(ferry_runtime_impl(rt).serial(), ferry::api::kGroupHandle, index)};
}

struct Expected {
    ferry_group group;
    ferry_tensor tensor;
    std::vector<unsigned char> bytes;
};

// Each tensor's group acquired (NULL stream: on sim the bytes are in place on return; on
// cuda read_device orders after the copy), its device bytes compared, released.
void check_device(ferry_runtime *rt, const std::vector<Expected> &expected) {
    for (const Expected &e : expected) {
        check(ferry_acquire(rt, e.group, nullptr), "ferry_acquire");
        void *device = nullptr;
        check(ferry_tensor_device_ptr(rt, e.tensor, &device), "ferry_tensor_device_ptr");
        const std::vector<unsigned char> got = read_device(rt, device, e.bytes.size());
        check(ferry_release(rt, e.group, nullptr), "ferry_release");
        INFO("tensor " << ferry_runtime_impl(rt).tensor_name(
                 static_cast<std::uint32_t>((e.tensor.id & 0xffffff) - 1)));
        REQUIRE(got == e.bytes);
    }
}

// The small model defined by hand: group "b<N>" holds blocks.N.*, "root" the embedding.
std::vector<Expected> define_small(ferry_runtime *rt, const std::vector<FileEntry> &entries) {
    std::vector<Expected> out;
    std::map<std::string, ferry_group> groups;
    for (const FileEntry &e : entries) {
        const std::string group = e.name.rfind("blocks.", 0) == 0 ? "b" + e.name.substr(7, 1) : "root";
        if (groups.count(group) == 0) groups[group] = define_group(rt, group.c_str());
        const ferry_dtype dtype = e.dtype == "F32" ? FERRY_DTYPE_F32 : FERRY_DTYPE_U8;
        ferry_tensor tensor{};
        REQUIRE(ferry_tensor_define(rt, groups[group], e.name.c_str(), e.bytes.size(), dtype,
                                    static_cast<std::uint32_t>(e.shape.size()), e.shape.data(),
                                    0, &tensor) == FERRY_OK);
        out.push_back({groups[group], tensor, e.bytes});
    }
    return out;
}

ferry_load_options defaults() {
    ferry_load_options options;
    ferry_load_options_init(&options);
    return options;
}

}  // namespace

TEST_CASE("A model loaded from a safetensors file has every byte right on the device", "[load]") {
    ScratchDir dir;
    const std::vector<FileEntry> entries = small_model();
    write_safetensors(dir.file("model.safetensors"), entries);
    Weights weights(dir.file("model.safetensors"));
    Runtime rt;
    const std::vector<Expected> expected = define_small(rt, entries);
    REQUIRE(ferry_plan(rt) == FERRY_OK);
    ferry_load_report report{};
    report.struct_size = sizeof report;
    REQUIRE(ferry_weights_load(rt, weights.handle, nullptr, &report) == FERRY_OK);
    CHECK(report.tensors_read == entries.size());
    CHECK(report.tensors_converted == 0);
    CHECK(report.tensors_on_disk == 0);
    std::uint64_t total = 0;
    for (const FileEntry &e : entries) total += e.bytes.size();
    CHECK(report.bytes_read == total);
    CHECK(report.threads >= 1);
    for (const Expected &e : expected) CHECK(copy_out(rt, e.tensor, e.bytes.size()) == e.bytes);
    REQUIRE(ferry_seal(rt) == FERRY_OK);
    check_device(rt, expected);
    // copy_out in SEALED, and of a range inside a tensor.
    CHECK(copy_out(rt, expected[1].tensor, 100, 7) ==
          std::vector<unsigned char>(expected[1].bytes.begin() + 7, expected[1].bytes.begin() + 107));
}

TEST_CASE("F32 weights load into BF16 and F16 tensors, rounded to nearest even", "[load]") {
    ScratchDir dir;
    std::vector<float> values = {0.0f, -0.0f, 1.0f, 1.00390625f, 3.14159f, -2.5e-8f, 65504.0f,
                                 1e30f, -1e-40f};
    for (int i = 0; i < 1000; ++i) values.push_back(static_cast<float>(i) * 0.0137f - 5.0f);
    std::vector<unsigned char> bytes(values.size() * 4);
    std::memcpy(bytes.data(), values.data(), bytes.size());
    const auto n = static_cast<std::int64_t>(values.size());
    write_safetensors(dir.file("w.safetensors"),
                      {{"a", "F32", {n}, bytes}, {"b", "F32", {n}, bytes}});
    Weights weights(dir.file("w.safetensors"));
    Runtime rt;
    const ferry_group group = define_group(rt, "g");
    ferry_tensor a{}, b{};
    REQUIRE(ferry_tensor_define(rt, group, "a", values.size() * 2, FERRY_DTYPE_BF16, 1, &n, 0,
                                &a) == FERRY_OK);
    REQUIRE(ferry_tensor_define(rt, group, "b", values.size() * 2, FERRY_DTYPE_F16, 1, &n, 0,
                                &b) == FERRY_OK);
    REQUIRE(ferry_plan(rt) == FERRY_OK);
    ferry_load_options options = defaults();
    options.convert_dtype = 0;
    REQUIRE(ferry_weights_load(rt, weights.handle, &options, nullptr) ==
            FERRY_ERROR_WEIGHTS_MISMATCH);
    CHECK(std::string(ferry_last_error()).find("convert_dtype is 0") != std::string::npos);
    ferry_load_report report{};
    report.struct_size = sizeof report;
    REQUIRE(ferry_weights_load(rt, weights.handle, nullptr, &report) == FERRY_OK);
    CHECK(report.tensors_converted == 2);
    std::vector<unsigned char> bf16(values.size() * 2), f16(values.size() * 2);
    ferry::load::convert(FERRY_DTYPE_F32, FERRY_DTYPE_BF16, values.data(), bf16.data(), values.size());
    ferry::load::convert(FERRY_DTYPE_F32, FERRY_DTYPE_F16, values.data(), f16.data(), values.size());
    CHECK(copy_out(rt, a, bf16.size()) == bf16);
    CHECK(copy_out(rt, b, f16.size()) == f16);
    REQUIRE(ferry_seal(rt) == FERRY_OK);
    check_device(rt, {{group, a, bf16}, {group, b, f16}});
}

TEST_CASE("Groups defined from the files follow the block prefixes, root first", "[load]") {
    ScratchDir dir;
    std::vector<FileEntry> entries;
    for (const char *name : {"blocks.0.a", "blocks.0.b", "blocks.1.a", "blocks.2.a", "blocks.3.a",
                             "single.0.x", "single.1.x", "norm.weight", "blocks.x.a"}) {
        entries.push_back({name, "F32", {4, 2}, random_bytes(32, 7)});
    }
    entries.push_back({"empty", "F32", {0}, {}});
    entries.push_back({"ids", "I64", {3}, random_bytes(24, 8)});
    write_safetensors(dir.file("m.safetensors"), entries);
    Weights weights(dir.file("m.safetensors"));
    const char *prefixes[] = {"blocks.", "single."};

    SECTION("one block per group, dtypes kept") {
        Runtime rt;
        REQUIRE(ferry_weights_define(rt, weights.handle, prefixes, 2, 1, FERRY_DTYPE_UNKNOWN) ==
                FERRY_OK);
        ferry::Runtime &impl = ferry_runtime_impl(rt);
        std::vector<std::string> names;
        for (std::uint32_t g = 0; g < impl.group_count(); ++g) names.push_back(impl.group_name(g));
        CHECK(names == std::vector<std::string>{"root", "blocks.0", "blocks.1", "blocks.2",
                                                "blocks.3", "single.0", "single.1"});
        CHECK(impl.tensor_count() == 10);  // the empty tensor is not defined
        CHECK(impl.tensor_name(0) == "blocks.x.a");  // root's, by name
        REQUIRE(ferry_plan(rt) == FERRY_OK);
        REQUIRE(ferry_weights_load(rt, weights.handle, nullptr, nullptr) == FERRY_OK);
        REQUIRE(ferry_seal(rt) == FERRY_OK);
        int32_t resident = 0;
        REQUIRE(ferry_group_info(rt, group_handle(rt, 0), &resident, nullptr, nullptr) == FERRY_OK);
        CHECK(resident == 1);  // root prefers residency
    }
    SECTION("two blocks per group, floats as BF16") {
        Runtime rt;
        REQUIRE(ferry_weights_define(rt, weights.handle, prefixes, 2, 2, FERRY_DTYPE_BF16) ==
                FERRY_OK);
        ferry::Runtime &impl = ferry_runtime_impl(rt);
        std::vector<std::string> names;
        for (std::uint32_t g = 0; g < impl.group_count(); ++g) names.push_back(impl.group_name(g));
        CHECK(names == std::vector<std::string>{"root", "blocks.0-1", "blocks.2-3", "single.0-1"});
        ferry_stats stats{};
        stats.struct_size = sizeof stats;
        REQUIRE(ferry_stats_get(rt, &stats) == FERRY_OK);
        CHECK(stats.model_bytes == 9 * 16 + 24);  // floats halved, I64 kept
        REQUIRE(ferry_plan(rt) == FERRY_OK);
        ferry_load_report report{};
        report.struct_size = sizeof report;
        REQUIRE(ferry_weights_load(rt, weights.handle, nullptr, &report) == FERRY_OK);
        CHECK(report.tensors_converted == 9);
    }
    SECTION("a clash with a group defined already defines nothing") {
        Runtime rt;
        define_group(rt, "blocks.2");
        REQUIRE(ferry_weights_define(rt, weights.handle, prefixes, 2, 1, FERRY_DTYPE_UNKNOWN) ==
                FERRY_ERROR_DUPLICATE_NAME);
        CHECK(std::string(ferry_last_error()).find("blocks.2") != std::string::npos);
        CHECK(ferry_runtime_impl(rt).group_count() == 1);
        CHECK(ferry_runtime_impl(rt).tensor_count() == 0);
    }
    SECTION("a tensor over the budget defines nothing") {
        Runtime rt(16);
        REQUIRE(ferry_weights_define(rt, weights.handle, prefixes, 2, 1, FERRY_DTYPE_UNKNOWN) ==
                FERRY_ERROR_SIZE_TOO_LARGE);
        CHECK(ferry_runtime_impl(rt).group_count() == 0);
        CHECK(ferry_runtime_impl(rt).tensor_count() == 0);
    }
    SECTION("a bad dtype or NULL arguments are invalid") {
        Runtime rt;
        CHECK(ferry_weights_define(rt, weights.handle, prefixes, 2, 1, FERRY_DTYPE_I8) ==
              FERRY_ERROR_INVALID_ARGUMENT);
        CHECK(ferry_weights_define(rt, weights.handle, nullptr, 2, 1, FERRY_DTYPE_UNKNOWN) ==
              FERRY_ERROR_INVALID_ARGUMENT);
        CHECK(ferry_weights_define(rt, nullptr, prefixes, 2, 1, FERRY_DTYPE_UNKNOWN) ==
              FERRY_ERROR_INVALID_ARGUMENT);
        CHECK(ferry_weights_define(nullptr, weights.handle, prefixes, 2, 1, FERRY_DTYPE_UNKNOWN) ==
              FERRY_ERROR_INVALID_HANDLE);
    }
}

TEST_CASE("One mismatch error lists missing, extra, shape and dtype problems together", "[load]") {
    ScratchDir dir;
    write_safetensors(dir.file("m.safetensors"),
                      {{"m.present", "U8", {10}, random_bytes(10, 1)},
                       {"m.shape", "F32", {2, 3}, random_bytes(24, 2)},
                       {"m.dtype", "I32", {4}, random_bytes(16, 3)},
                       {"m.extra", "U8", {5}, random_bytes(5, 4)}});
    Weights weights(dir.file("m.safetensors"));
    Runtime rt;
    const ferry_group g = define_group(rt, "g");
    const int64_t ten = 10, six = 6, four = 4, two_three[2] = {3, 2};
    ferry_tensor present{}, shape{}, dtype{}, missing{};
    REQUIRE(ferry_tensor_define(rt, g, "present", 10, FERRY_DTYPE_U8, 1, &ten, 0, &present) == FERRY_OK);
    REQUIRE(ferry_tensor_define(rt, g, "shape", 24, FERRY_DTYPE_F32, 2, two_three, 0, &shape) == FERRY_OK);
    REQUIRE(ferry_tensor_define(rt, g, "dtype", 16, FERRY_DTYPE_F32, 1, &four, 0, &dtype) == FERRY_OK);
    REQUIRE(ferry_tensor_define(rt, g, "missing", 6, FERRY_DTYPE_U8, 1, &six, 0, &missing) == FERRY_OK);
    REQUIRE(ferry_plan(rt) == FERRY_OK);
    ferry_load_options options = defaults();
    options.name_prefix = "m.";
    REQUIRE(ferry_weights_load(rt, weights.handle, &options, nullptr) == FERRY_ERROR_WEIGHTS_MISMATCH);
    const std::string message = ferry_last_error();
    INFO(message);
    CHECK(message.find("4 problem(s)") != std::string::npos);
    CHECK(message.find("'m.missing'") != std::string::npos);
    CHECK(message.find("shape [3, 2] defined, [2, 3]") != std::string::npos);
    CHECK(message.find("dtype F32 defined, I32") != std::string::npos);
    CHECK(message.find("'m.extra'") != std::string::npos);
    // Nothing was read, and the runtime is as it was.
    CHECK(copy_out(rt, present, 10) == std::vector<unsigned char>(10, 0));
    // Only the chosen tensor, extras allowed: it loads.
    options.tensors = &present;
    options.tensor_count = 1;
    options.allow_unused = 1;
    ferry_load_report report{};
    report.struct_size = sizeof report;
    REQUIRE(ferry_weights_load(rt, weights.handle, &options, &report) == FERRY_OK);
    CHECK(report.tensors_read == 1);
    CHECK(copy_out(rt, present, 10) == random_bytes(10, 1));
}

TEST_CASE("A long list of mismatches is cut after 50 lines", "[load]") {
    ScratchDir dir;
    write_safetensors(dir.file("m.safetensors"), {{"x", "U8", {1}, {1}}});
    Weights weights(dir.file("m.safetensors"));
    Runtime rt;
    const ferry_group g = define_group(rt, "g");
    for (int t = 0; t < 80; ++t) define_bytes(rt, g, ("t" + std::to_string(t)).c_str(), 8);
    REQUIRE(ferry_plan(rt) == FERRY_OK);
    REQUIRE(ferry_weights_load(rt, weights.handle, nullptr, nullptr) == FERRY_ERROR_WEIGHTS_MISMATCH);
    const std::string message = ferry_last_error();
    CHECK(message.find("81 problem(s)") != std::string::npos);
    CHECK(message.find("... and 31 more") != std::string::npos);
}

TEST_CASE("A read that fails keeps the runtime PLANNED and unsealable until a load succeeds",
          "[load]") {
    ScratchDir dir;
    const std::vector<FileEntry> entries = small_model();
    const std::string path = dir.file("model.safetensors");
    write_safetensors(path, entries);
    Runtime rt;
    const std::vector<Expected> expected = define_small(rt, entries);
    REQUIRE(ferry_plan(rt) == FERRY_OK);
    {
        Weights weights(path);
        REQUIRE(truncate(path.c_str(), 4096) == 0);  // after open: the header no longer holds
        const ferry_status status = ferry_weights_load(rt, weights.handle, nullptr, nullptr);
        INFO(ferry_last_error());
        CHECK((status == FERRY_ERROR_IO || status == FERRY_ERROR_FILE_CHANGED));
        CHECK(std::string(ferry_last_error()).find(path) != std::string::npos);
    }
    ferry_phase phase;
    REQUIRE(ferry_phase_get(rt, &phase) == FERRY_OK);
    CHECK(phase == FERRY_PHASE_PLANNED);
    REQUIRE(ferry_seal(rt) == FERRY_ERROR_WRONG_PHASE);
    CHECK(std::string(ferry_last_error()).find("failed part-way") != std::string::npos);
    // Copy-in alone does not make it sealable; a load that succeeds does.
    REQUIRE(ferry_tensor_copy_in(rt, expected[0].tensor, 0, expected[0].bytes.data(),
                                 expected[0].bytes.size()) == FERRY_OK);
    REQUIRE(ferry_seal(rt) == FERRY_ERROR_WRONG_PHASE);
    write_safetensors(path, entries);
    Weights again(path);
    REQUIRE(ferry_weights_load(rt, again.handle, nullptr, nullptr) == FERRY_OK);
    REQUIRE(ferry_seal(rt) == FERRY_OK);
    check_device(rt, expected);
}

TEST_CASE("Load progress grows monotonically to the total", "[load]") {
    ScratchDir dir;
    std::vector<FileEntry> entries;
    for (int t = 0; t < 12; ++t) {
        entries.push_back({"t" + std::to_string(t), "U8", {300000}, random_bytes(300000, t)});
    }
    write_safetensors(dir.file("p.safetensors"), entries);
    Weights weights(dir.file("p.safetensors"));
    Runtime rt;
    const ferry_group g = define_group(rt, "g");
    for (int t = 0; t < 12; ++t) define_bytes(rt, g, ("t" + std::to_string(t)).c_str(), 300000);
    REQUIRE(ferry_plan(rt) == FERRY_OK);
    struct Seen {
        std::vector<std::pair<std::uint64_t, std::uint64_t>> calls;
        std::thread::id thread;
        bool other_thread = false;
        static void record(void *user, std::uint64_t done, std::uint64_t total) {
            auto *s = static_cast<Seen *>(user);
            s->calls.emplace_back(done, total);
            if (std::this_thread::get_id() != s->thread) s->other_thread = true;
        }
    } seen;
    seen.thread = std::this_thread::get_id();
    ferry_load_options options = defaults();
    options.progress = &Seen::record;
    options.progress_user = &seen;
    options.threads = 3;
    REQUIRE(ferry_weights_load(rt, weights.handle, &options, nullptr) == FERRY_OK);
    REQUIRE_FALSE(seen.calls.empty());
    CHECK_FALSE(seen.other_thread);
    for (std::size_t i = 1; i < seen.calls.size(); ++i) {
        CHECK(seen.calls[i].first >= seen.calls[i - 1].first);
    }
    CHECK(seen.calls.back() == std::make_pair<std::uint64_t, std::uint64_t>(12 * 300000, 12 * 300000));
}

TEST_CASE("One reader thread and four, buffered and O_DIRECT, read the same bytes", "[load]") {
    for (const std::string parent : {"/tmp", "/dev/shm"}) {
        ScratchDir dir(parent);
        std::vector<FileEntry> entries;
        // Odd sizes, so that tensors start off any 4 KiB boundary; one larger than a chunk.
        for (int t = 0; t < 9; ++t) {
            const std::int64_t n = t == 0 ? (5 << 20) + 123 : 4099 * (t + 1) + t;
            entries.push_back({"t" + std::to_string(t), "U8", {n},
                               random_bytes(static_cast<std::size_t>(n), 100 + t)});
        }
        std::vector<float> floats(300001);
        for (std::size_t i = 0; i < floats.size(); ++i) floats[i] = static_cast<float>(i) / 7.0f;
        std::vector<unsigned char> float_bytes(floats.size() * 4);
        std::memcpy(float_bytes.data(), floats.data(), float_bytes.size());
        entries.push_back({"f", "F32", {static_cast<std::int64_t>(floats.size())}, float_bytes});
        write_safetensors(dir.file("d.safetensors"), entries);
        Weights weights(dir.file("d.safetensors"));
        std::vector<std::vector<unsigned char>> first;
        for (const auto &[threads, direct] : {std::pair{1u, 0}, std::pair{4u, 0}, std::pair{1u, 1},
                                              std::pair{4u, 1}}) {
            Runtime rt(16u << 20);
            const ferry_group g = define_group(rt, "g");
            std::vector<ferry_tensor> tensors;
            for (const FileEntry &e : entries) {
                if (e.dtype == "U8") {
                    tensors.push_back(define_bytes(rt, g, e.name.c_str(), e.bytes.size()));
                } else {
                    const std::int64_t n = static_cast<std::int64_t>(floats.size());
                    ferry_tensor t{};
                    REQUIRE(ferry_tensor_define(rt, g, "f", floats.size() * 2, FERRY_DTYPE_BF16, 1,
                                                &n, 0, &t) == FERRY_OK);
                    tensors.push_back(t);
                }
            }
            REQUIRE(ferry_plan(rt) == FERRY_OK);
            ferry_load_options options = defaults();
            options.threads = threads;
            options.direct = direct;
            ferry_load_report report{};
            report.struct_size = sizeof report;
            REQUIRE(ferry_weights_load(rt, weights.handle, &options, &report) == FERRY_OK);
            INFO(parent << " threads " << threads << " direct " << direct);
            CHECK(report.threads == threads);
            // ext4 takes O_DIRECT; tmpfs takes it since Linux 6.6, else the reads fall back.
            if (direct == 0) CHECK(report.direct_bytes == 0);
            if (direct == 1 && parent == "/tmp") CHECK(report.direct_bytes == report.bytes_read);
            if (direct == 1 && parent == "/dev/shm") {
                CHECK((report.direct_bytes == 0 || report.direct_bytes == report.bytes_read));
            }
            std::vector<std::vector<unsigned char>> got;
            for (std::size_t t = 0; t < tensors.size(); ++t) {
                const std::uint64_t bytes = entries[t].dtype == "U8" ? entries[t].bytes.size()
                                                                     : floats.size() * 2;
                got.push_back(copy_out(rt, tensors[t], bytes));
                if (entries[t].dtype == "U8") CHECK(got.back() == entries[t].bytes);
            }
            if (first.empty()) first = got;
            CHECK(got == first);
        }
    }
}

TEST_CASE("Weights handles, options and reports are checked at the C boundary", "[load]") {
    ScratchDir dir;
    write_safetensors(dir.file("w.safetensors"),
                      {{"b", "BF16", {2, 3}, random_bytes(12, 1)}, {"a", "F8_E4M3", {4}, random_bytes(4, 2)}});
    ferry_weights *w = nullptr;
    CHECK(ferry_weights_open(nullptr, &w) == FERRY_ERROR_INVALID_ARGUMENT);
    CHECK(ferry_weights_open(dir.file("none.safetensors").c_str(), &w) == FERRY_ERROR_IO);
    CHECK(w == nullptr);
    REQUIRE(ferry_weights_open(dir.file("w.safetensors").c_str(), &w) == FERRY_OK);
    std::uint64_t count = 0;
    REQUIRE(ferry_weights_count(w, &count) == FERRY_OK);
    CHECK(count == 2);
    ferry_weights_tensor t{};
    REQUIRE(ferry_weights_tensor_at(w, 0, &t) == FERRY_OK);  // sorted by name
    CHECK(std::string(t.name) == "a");
    CHECK(t.dtype == FERRY_DTYPE_UNKNOWN);
    CHECK(std::string(t.file_dtype) == "F8_E4M3");
    REQUIRE(ferry_weights_tensor_at(w, 1, &t) == FERRY_OK);
    CHECK(std::string(t.name) == "b");
    CHECK(t.dtype == FERRY_DTYPE_BF16);
    CHECK(t.ndim == 2);
    CHECK(t.shape[0] == 2);
    CHECK(t.shape[1] == 3);
    CHECK(t.bytes == 12);
    CHECK(std::string(t.file) == dir.file("w.safetensors"));
    CHECK(ferry_weights_tensor_at(w, 2, &t) == FERRY_ERROR_INVALID_ARGUMENT);
    std::uint64_t index = 9;
    REQUIRE(ferry_weights_find(w, "b", &index) == FERRY_OK);
    CHECK(index == 1);
    CHECK(ferry_weights_find(w, "c", &index) == FERRY_ERROR_INVALID_ARGUMENT);
    CHECK(ferry_weights_count(nullptr, &count) == FERRY_ERROR_INVALID_ARGUMENT);
    CHECK(ferry_weights_count(w, nullptr) == FERRY_ERROR_INVALID_ARGUMENT);

    ferry_load_options options;
    std::memset(&options, 0xff, sizeof options);
    ferry_load_options_init(&options);
    CHECK(options.struct_size == sizeof options);
    CHECK(options.convert_dtype == 1);
    CHECK(options.disk_tier == 1);
    CHECK(options.direct == 0);
    CHECK(options.threads == 0);
    CHECK(options.allow_unused == 0);
    CHECK(options.name_prefix == nullptr);
    CHECK(options.tensors == nullptr);
    CHECK(options.progress == nullptr);

    Runtime rt;
    const ferry_group g = define_group(rt, "g");
    const std::int64_t shape[2] = {2, 3};
    ferry_tensor b{};
    REQUIRE(ferry_tensor_define(rt, g, "b", 12, FERRY_DTYPE_BF16, 2, shape, 0, &b) == FERRY_OK);
    CHECK(ferry_weights_load(rt, w, nullptr, nullptr) == FERRY_ERROR_WRONG_PHASE);
    CHECK(ferry_tensor_copy_out(rt, b, 0, nullptr, 0) == FERRY_ERROR_WRONG_PHASE);
    REQUIRE(ferry_plan(rt) == FERRY_OK);
    options.struct_size = 3;
    CHECK(ferry_weights_load(rt, w, &options, nullptr) == FERRY_ERROR_INVALID_ARGUMENT);
    options.struct_size = sizeof options;
    options.tensor_count = 1;  // tensors NULL
    CHECK(ferry_weights_load(rt, w, &options, nullptr) == FERRY_ERROR_INVALID_ARGUMENT);
    options.tensor_count = 0;
    options.allow_unused = 1;
    ferry_load_report report{};
    report.struct_size = 0;
    CHECK(ferry_weights_load(rt, w, &options, &report) == FERRY_ERROR_INVALID_ARGUMENT);
    CHECK(ferry_weights_load(rt, nullptr, &options, nullptr) == FERRY_ERROR_INVALID_ARGUMENT);
    // An older, shorter options struct: the fields it lacks take their defaults.
    ferry_load_options old_options = options;
    old_options.struct_size = offsetof(ferry_load_options, threads);
    report.struct_size = offsetof(ferry_load_report, bytes_read);  // an older report
    report.bytes_read = 777;
    REQUIRE(ferry_weights_load(rt, w, &old_options, &report) == FERRY_OK);
    CHECK(report.tensors_read == 1);
    CHECK(report.bytes_read == 777);  // past its size: untouched
    CHECK(report.struct_size == offsetof(ferry_load_report, bytes_read));
    std::uint8_t out[12];
    CHECK(ferry_tensor_copy_out(rt, b, 0, nullptr, 12) == FERRY_ERROR_INVALID_ARGUMENT);
    CHECK(ferry_tensor_copy_out(rt, b, 8, out, 5) == FERRY_ERROR_OUT_OF_RANGE);
    CHECK(ferry_tensor_copy_out(rt, b, 0, out, 12) == FERRY_OK);
    CHECK(ferry_weights_close(w) == FERRY_OK);  // the runtime does not need it any more
    CHECK(ferry_weights_close(nullptr) == FERRY_OK);
    REQUIRE(ferry_seal(rt) == FERRY_OK);
    CHECK(ferry_tensor_copy_out(rt, b, 0, out, 12) == FERRY_OK);
    CHECK(std::memcmp(out, random_bytes(12, 1).data(), 12) == 0);
}

TEST_CASE("Each weights status has its own string", "[load]") {
    for (int s = FERRY_ERROR_IO; s <= FERRY_ERROR_NOT_IN_MEMORY; ++s) {
        const std::string text = ferry_status_string(static_cast<ferry_status>(s));
        CHECK(text != "unknown status");
    }
    CHECK(std::string(ferry_status_string(FERRY_ERROR_NOT_IN_MEMORY)).find("disk tier") !=
          std::string::npos);
}
