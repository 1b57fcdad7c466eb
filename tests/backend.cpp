#include "backend.hpp"

namespace ferry_test {
namespace {

ferry_backend g_backend = FERRY_BACKEND_SIM;

}  // namespace

ferry_backend test_backend() { return g_backend; }
void set_test_backend(ferry_backend backend) { g_backend = backend; }

const char *backend_name(ferry_backend backend) {
    switch (backend) {
        case FERRY_BACKEND_SIM: return "sim";
        case FERRY_BACKEND_CUDA: return "cuda";
        case FERRY_BACKEND_AUTO: return "auto";
    }
    return "?";
}

BackendChoice choose_backend(const char *value) {
    BackendChoice choice;
    const std::string asked = value == nullptr ? "" : value;
    if (asked.empty() || asked == "sim") return choice;
    if (asked != "cuda" && asked != "auto") {
        choice.outcome = BackendChoice::kFail;
        choice.why = "FERRY_BACKEND='" + asked + "' is not sim, cuda or auto (unset means sim)";
        return choice;
    }
    ferry_config config;
    ferry_config_init(&config);
    config.backend = FERRY_BACKEND_CUDA;
    config.vram_budget = 1 << 20;
    config.name = "backend-probe";
    ferry_runtime *runtime = nullptr;
    const ferry_status status = ferry_create(&config, &runtime);
    if (status == FERRY_OK) {
        ferry_destroy(runtime);
        choice.backend = FERRY_BACKEND_CUDA;
        return choice;
    }
    if (status == FERRY_ERROR_BACKEND_UNAVAILABLE && asked == "auto") return choice;  // sim
    choice.outcome =
        status == FERRY_ERROR_BACKEND_UNAVAILABLE ? BackendChoice::kSkip : BackendChoice::kFail;
    choice.why = "FERRY_BACKEND=" + asked + ", but a cuda runtime cannot be created here: " +
                 ferry_status_string(status) + ": " + ferry_last_error();
    return choice;
}

}  // namespace ferry_test
