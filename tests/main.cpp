// Catch2's main for every test executable, with the backend chosen first (backend.hpp).
// It prints one line to stdout before any test runs, which tools/gpu-check copies into its
// report:
//     ferry-tests: <executable> ran on <backend>; <N> sim-only test cases not run
// or, when nothing runs, "ferry-tests: <executable> did not run: <why>", with exit status
// 77 (a skip, for meson) when cuda was asked for and is unavailable, and 1 when
// FERRY_BACKEND is malformed or a cuda runtime fails for another reason.
//
// The backend is the fixtures' (SimModel, make_runtime): a test that creates a sim runtime
// of its own (make_sim_runtime, a config asking for sim) runs on sim whatever the line says.
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "backend.hpp"

namespace {

constexpr int kSkipped = 77;  // meson's exit status for a skipped test

std::string base_name(const char *path) {
    const std::string text = path != nullptr ? path : "ferry-tests";
    const std::size_t slash = text.rfind('/');
    return slash == std::string::npos ? text : text.substr(slash + 1);
}

std::size_t count_tagged(const std::string &tag) {
    std::size_t n = 0;
    for (const Catch::TestCase &test :
         Catch::getRegistryHub().getTestCaseRegistry().getAllTests()) {
        for (const std::string &t : test.lcaseTags) n += t == tag ? 1 : 0;
    }
    return n;
}

}  // namespace

int main(int argc, char *argv[]) {
    Catch::Session session;
    const int parsed = session.applyCommandLine(argc, argv);
    if (parsed != 0) return parsed;
    const std::string name = base_name(argv[0]);

    const ferry_test::BackendChoice choice =
        ferry_test::choose_backend(std::getenv("FERRY_BACKEND"));
    if (choice.outcome != ferry_test::BackendChoice::kRun) {
        std::printf("ferry-tests: %s did not run: %s\n", name.c_str(), choice.why.c_str());
        std::fflush(stdout);
        return choice.outcome == ferry_test::BackendChoice::kSkip ? kSkipped : 1;
    }
    ferry_test::set_test_backend(choice.backend);

    std::size_t left_out = 0;
    if (choice.backend != FERRY_BACKEND_SIM) {
        std::vector<std::string> &spec = session.configData().testsOrTags;
        if (spec.empty()) {
            spec.push_back("~[sim-only]");
            left_out = count_tagged("sim-only");
        } else {
            std::fprintf(stderr,
                         "ferry-tests: the command line names the tests to run: any [sim-only] "
                         "test among them runs on %s too\n",
                         ferry_test::backend_name(choice.backend));
        }
    }
    std::printf("ferry-tests: %s ran on %s; %zu sim-only test cases not run\n", name.c_str(),
                ferry_test::backend_name(choice.backend), left_out);
    std::fflush(stdout);
    const int failed = session.run();
    // Catch returns the number of failed tests, which must never read as 77 (a skip).
    return failed == 0 ? 0 : 1;
}
