// The backend the test fixtures run on, chosen once per test executable by main() from
// FERRY_BACKEND: unset (or empty) and "sim" are the sim backend, "cuda" the cuda backend,
// "auto" cuda when a cuda runtime can be created here, else sim. Tests that only make sense
// on sim carry the [sim-only] tag; main() leaves them out when the backend is not sim.
#pragma once

#include <string>

#include "ferry/ferry.h"

namespace ferry_test {

// The backend chosen by main(); FERRY_BACKEND_SIM until then.
ferry_backend test_backend();
void set_test_backend(ferry_backend backend);

const char *backend_name(ferry_backend backend);  // "sim", "cuda", "auto"

struct BackendChoice {
    enum Outcome {
        kRun,   // run on `backend`
        kSkip,  // cuda was asked for and is unavailable here: `why` says why
        kFail,  // a bad FERRY_BACKEND, or a cuda runtime failed otherwise: `why`
    };
    Outcome outcome = kRun;
    ferry_backend backend = FERRY_BACKEND_SIM;
    std::string why;
};

// Decides from FERRY_BACKEND's value (nullptr: unset). For "cuda" and "auto" it creates and
// destroys a small cuda runtime, so that a machine without a usable GPU is found here, once,
// rather than by every test.
BackendChoice choose_backend(const char *value);

}  // namespace ferry_test
