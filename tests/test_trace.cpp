// The trace API on sim: what a dump holds, the bounded ring, errors, and FERRY_TRACE.
// (tests/stat/test_ferry_stat.py parses a dump as JSON and checks overlap.)
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <optional>
#include <sstream>

#include "api_fixture.hpp"
#include "sim_model.hpp"

using namespace ferry_test;

namespace {

ModelSpec traced_model() {
    ModelSpec spec;
    for (int g = 0; g < 6; ++g) spec.groups.push_back({{64 << 10, false}});
    spec.groups[5] = {{64 << 10, true}};  // one mutable group: writebacks
    spec.budget = 3 * (64 << 10);
    spec.h2d_gbps = 1.0;
    return spec;
}

std::string temp_path(const char *what) {
    return "/tmp/ferry-trace-test-" + std::to_string(getpid()) + "-" + what + ".json";
}

std::string read_file(const std::string &path) {
    std::ifstream file(path);
    std::stringstream text;
    text << file.rdbuf();
    return text.str();
}

std::size_t count(const std::string &text, const std::string &what) {
    std::size_t n = 0;
    for (std::size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) {
        ++n;
    }
    return n;
}

void run_passes(SimModel &model, void *stream, int passes) {
    Failures failures;
    for (int pass = 0; pass < passes; ++pass) {
        for (std::size_t g = 0; g < model.group_count(); ++g) {
            REQUIRE(model.run_group(g, stream, failures) == FERRY_OK);
        }
    }
    model.drain();
    REQUIRE(ferry_synchronize(model.runtime()) == FERRY_OK);
    REQUIRE(failures.count == 0);
}

}  // namespace

TEST_CASE("A trace dump holds copies on the copy track and waits and holds on the caller's") {
    SimModel model(traced_model());
    void *stream = model.create_stream();
    REQUIRE(ferry_trace_start(model.runtime(), 0) == FERRY_OK);
    run_passes(model, stream, 3);
    const std::string path = temp_path("dump");
    REQUIRE(ferry_trace_dump(model.runtime(), path.c_str()) == FERRY_OK);
    const std::string text = read_file(path);
    std::remove(path.c_str());
    CHECK(text.find("\"args\":{\"name\":\"copy stream\"}") != std::string::npos);
    CHECK(count(text, "\"cat\":\"onload\"") > 0);
    CHECK(count(text, "\"cat\":\"writeback\"") > 0);
    CHECK(count(text, "\"cat\":\"compute\"") == 3 * 6);
    CHECK(count(text, "\"cat\":\"acquire\"") == 3 * 6);
    CHECK(count(text, "\"cat\":\"release\"") == 3 * 6);
    CHECK(text.find("\"dropped_events\":0") != std::string::npos);
    CHECK(text.find("\"name\":\"onload g1\"") != std::string::npos);
}

TEST_CASE("A full trace ring keeps the newest events and counts the dropped ones") {
    SimModel model(traced_model());
    REQUIRE(ferry_trace_start(model.runtime(), 16) == FERRY_OK);
    run_passes(model, nullptr, 4);
    REQUIRE(ferry_trace_stop(model.runtime()) == FERRY_OK);
    run_passes(model, nullptr, 1);  // not recorded
    const std::string path = temp_path("ring");
    REQUIRE(ferry_trace_dump(model.runtime(), path.c_str()) == FERRY_OK);
    const std::string text = read_file(path);
    std::remove(path.c_str());
    CHECK(count(text, "\"ph\":\"X\"") + count(text, "\"ph\":\"i\"") == 16);
    CHECK(text.find("\"dropped_events\":0") == std::string::npos);
    CHECK(text.find("\"capacity\":16") != std::string::npos);
}

TEST_CASE("Trace calls report a missing trace, a bad path and a capacity too large") {
    SimModel model(traced_model());
    CHECK(ferry_trace_dump(model.runtime(), "/tmp/x.json") == FERRY_ERROR_WRONG_PHASE);
    CHECK(ferry_trace_stop(model.runtime()) == FERRY_OK);
    CHECK(ferry_trace_start(model.runtime(), (1u << 26) + 1) == FERRY_ERROR_INVALID_ARGUMENT);
    REQUIRE(ferry_trace_start(model.runtime(), 0) == FERRY_OK);
    CHECK(ferry_trace_dump(model.runtime(), nullptr) == FERRY_ERROR_INVALID_ARGUMENT);
    CHECK(ferry_trace_dump(model.runtime(), "/nonexistent-dir/trace.json") ==
          FERRY_ERROR_INVALID_ARGUMENT);
    CHECK(std::string(ferry_last_error()).find("/nonexistent-dir/trace.json") != std::string::npos);
    CHECK(ferry_trace_start(nullptr, 0) == FERRY_ERROR_INVALID_HANDLE);
}

TEST_CASE("FERRY_TRACE traces from create and writes the file at destroy") {
    const std::string path = temp_path("env");
    {
        std::optional<SimModel> model;
        {
            const ScopedEnv trace("FERRY_TRACE", path.c_str());
            model.emplace(traced_model());
        }
        run_passes(*model, nullptr, 2);
    }
    const std::string text = read_file(path);
    std::remove(path.c_str());
    CHECK(count(text, "\"cat\":\"acquire\"") == 2 * 6);
    CHECK(count(text, "\"cat\":\"onload\"") > 0);
}
