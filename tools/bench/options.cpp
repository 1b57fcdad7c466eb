#include "options.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>

namespace bench {
namespace {

const char kUsage[] =
    "usage: ferry-bench [flags]\n"
    "  --model qwen-image|flux|wan14b|custom   model preset (default qwen-image)\n"
    "  --scale F             shrink every tensor by F, e.g. 1/64 (default 1/256 on sim, 1 on cuda)\n"
    "  --blocks-per-group N  blocks per streamed group (default 1)\n"
    "  --groups N --group-mb X --tensors-per-group T   the custom model\n"
    "  --budget B            VRAM budget: bytes, or a percentage of the model (default 50%)\n"
    "  --passes P            timed passes per strategy, after one warm-up (default 3)\n"
    "  --slots-per-class S   ferry's streaming slots per size class (default 2)\n"
    "  --compute-ms X        compute per group, in ms of modeled time\n"
    "  --tflops T            or compute = each group's FLOPs at T TFLOP/s (default 186)\n"
    "  --strategies LIST     comma-separated, of writeback,sync,stream,partial,ferry,ferry-z\n"
    "  --compress            adds ferry-z: ferry with compressed streaming (weights drawn as\n"
    "                        trained bf16: normal, std 0.02); sim time scale 1000 unless given\n"
    "  --grid                qwen-image, flux and wan14b at budgets of 25%, 50% and 75%: ferry's\n"
    "                        efficiency and its speed-up over partial (other flags as above)\n"
    "  --backend auto|sim|cuda\n"
    "  --json FILE           also write the results as JSON\n"
    "sim link (modeled; defaults are PCIe Gen4 figures):\n"
    "  --pinned-gbps X (25)  --pageable-h2d-gbps X (12.5)  --pageable-d2h-gbps X (1.6)\n"
    "  --latency-us X (2.3, per copy call at full size, scaled with the model)\n"
    "  --time-scale X (40: wall seconds per modeled second)\n";

[[noreturn]] void usage_error(const std::string &problem) {
    std::fprintf(stderr, "ferry-bench: %s\n%s", problem.c_str(), kUsage);
    std::exit(2);
}

double number(const std::string &flag, const char *text, double min, double max) {
    char *end = nullptr;
    const double value = std::strtod(text, &end);
    if (end == text || *end != '\0' || !std::isfinite(value) || value < min || value > max) {
        char range[96];
        std::snprintf(range, sizeof range, "[%g, %g]", min, max);
        usage_error(flag + " needs a number in " + range + ", got '" + text + "'");
    }
    return value;
}

int integer(const std::string &flag, const char *text, int min, int max) {
    const double value = number(flag, text, min, max);
    if (value != std::floor(value)) usage_error(flag + " needs a whole number, got '" + text + "'");
    return static_cast<int>(value);
}

std::vector<std::string> split(const std::string &text) {
    std::vector<std::string> parts;
    std::size_t start = 0;
    for (;;) {
        const std::size_t comma = text.find(',', start);
        parts.push_back(text.substr(start, comma - start));
        if (comma == std::string::npos) return parts;
        start = comma + 1;
    }
}

}  // namespace

double parse_scale(const std::string &text) {
    const std::size_t slash = text.find('/');
    char *end = nullptr;
    double value = std::strtod(text.c_str(), &end);
    if (slash != std::string::npos) {
        if (end != text.c_str() + slash) return -1.0;
        const char *denominator = text.c_str() + slash + 1;
        const double d = std::strtod(denominator, &end);
        if (end == denominator || !(d > 0.0)) return -1.0;
        value /= d;
    }
    if (end == text.c_str() || *end != '\0' || !(value > 0.0 && value <= 1.0)) return -1.0;
    return value;
}

std::uint64_t parse_budget(const std::string &text, std::uint64_t model_bytes) {
    char *end = nullptr;
    const double value = std::strtod(text.c_str(), &end);
    if (end == text.c_str() || !std::isfinite(value) || value <= 0.0) return 0;
    if (*end == '%' && end[1] == '\0') {
        return static_cast<std::uint64_t>(static_cast<double>(model_bytes) * value / 100.0);
    }
    if (*end != '\0' || value != std::floor(value) || value > 1e18) return 0;
    return static_cast<std::uint64_t>(value);
}

Options parse_options(int argc, char **argv) {
    Options o;
    bool time_scale_given = false;
    for (int i = 1; i < argc; ++i) {
        const std::string flag = argv[i];
        if (flag == "--help" || flag == "-h") {
            std::printf("ferry-bench: streams a model under five offloading strategies, side by side\n%s",
                        kUsage);
            std::exit(0);
        }
        if (flag == "--grid") {
            o.grid = true;
            continue;
        }
        if (flag == "--compress") {
            o.compress = true;
            continue;
        }
        if (i + 1 >= argc) usage_error(flag + " needs a value");
        const char *value = argv[++i];
        if (flag == "--model") {
            o.model.preset = value;
            const auto &names = preset_names();
            if (std::find(names.begin(), names.end(), o.model.preset) == names.end()) {
                usage_error("--model is qwen-image, flux, wan14b or custom, got '" +
                            o.model.preset + "'");
            }
        } else if (flag == "--scale") {
            o.model.scale = parse_scale(value);
            if (o.model.scale <= 0.0) {
                usage_error(std::string("--scale needs a factor in (0, 1] such as 1/64, got '") +
                            value + "'");
            }
            o.scale_given = true;
        } else if (flag == "--blocks-per-group") {
            o.model.blocks_per_group = integer(flag, value, 1, 1000);
        } else if (flag == "--groups") {
            o.model.groups = integer(flag, value, 1, 100000);
        } else if (flag == "--group-mb") {
            o.model.group_mb = number(flag, value, 0.001, 1e6);
        } else if (flag == "--tensors-per-group") {
            o.model.tensors_per_group = integer(flag, value, 1, 4096);
        } else if (flag == "--budget") {
            o.budget = value;
            if (parse_budget(o.budget, 100) == 0 && parse_budget(o.budget, 1ull << 50) == 0) {
                usage_error(std::string("--budget needs bytes or a percentage such as 50%, got '") +
                            value + "'");
            }
        } else if (flag == "--passes") {
            o.passes = integer(flag, value, 1, 100000);
        } else if (flag == "--slots-per-class") {
            o.slots_per_class = static_cast<std::uint32_t>(integer(flag, value, 2, 64));
        } else if (flag == "--compute-ms") {
            o.compute_ms = number(flag, value, 0, 1e6);
        } else if (flag == "--tflops") {
            o.tflops = number(flag, value, 1e-3, 1e6);
            o.compute_ms = -1.0;
        } else if (flag == "--strategies") {
            o.strategies = split(value);
            for (const std::string &s : o.strategies) {
                if (s != "writeback" && s != "sync" && s != "stream" && s != "partial" &&
                    s != "ferry" && s != "ferry-z") {
                    usage_error("--strategies takes writeback, sync, stream, partial, ferry and ferry-z, got '" +
                                s + "'");
                }
            }
        } else if (flag == "--backend") {
            o.backend = value;
            if (o.backend != "auto" && o.backend != "sim" && o.backend != "cuda") {
                usage_error("--backend is auto, sim or cuda, got '" + o.backend + "'");
            }
        } else if (flag == "--json") {
            o.json = value;
        } else if (flag == "--pinned-gbps") {
            o.link.pinned_gbps = number(flag, value, 1e-3, 1e5);
        } else if (flag == "--pageable-h2d-gbps") {
            o.link.pageable_h2d_gbps = number(flag, value, 1e-3, 1e5);
        } else if (flag == "--pageable-d2h-gbps") {
            o.link.pageable_d2h_gbps = number(flag, value, 1e-3, 1e5);
        } else if (flag == "--latency-us") {
            o.link.latency_us = number(flag, value, 0, 1e6);
        } else if (flag == "--time-scale") {
            o.link.time_scale = number(flag, value, 1e-3, 1e4);
            time_scale_given = true;
        } else {
            usage_error("unknown flag " + flag);
        }
    }
    if (o.model.preset != "custom") {
        for (int j = 1; j < argc; ++j) {
            const std::string flag = argv[j];
            if (flag != "--grid" && flag != "--compress") ++j;  // past its value
            if (flag == "--groups" || flag == "--group-mb" || flag == "--tensors-per-group") {
                usage_error(flag + " only applies to --model custom");
            }
        }
    }
    if (o.compress) {
        if (std::find(o.strategies.begin(), o.strategies.end(), "ferry-z") == o.strategies.end())
            o.strategies.push_back("ferry-z");
        if (!time_scale_given) o.link.time_scale = kCompressTimeScale;
    }
    return o;
}

}  // namespace bench
