// ferry-codec-ratio: what the codec (runtime/codec/) makes of a model's real weights.
//
//     ferry-codec-ratio MODEL [--dtype bf16|f16|both] [--threads N] [--json FILE]
//
// MODEL is a .safetensors file, an index or a folder. Every floating-point tensor (F32,
// BF16, F16) is cast to the dtype asked for as torch's .to() would, encoded, decoded and
// compared bit for bit. Prints the ratio (encoded / raw bytes, tensors that do not pay
// counted raw) per tensor kind (the name less its block number: "attention.self.query.
// weight"), the encode speed on one core and on N, and the CPU reference decoder's speed
// on one core. Exits 1 when a tensor does not round-trip, 2 on bad usage.
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "base/error.hpp"
#include "codec/codec.hpp"
#include "load/weights.hpp"

namespace {

namespace k = ferry::kernels::codec;

struct Totals {
    std::uint64_t tensors = 0, raw = 0, stored = 0, encoded_tensors = 0;
};

double seconds_since(std::chrono::steady_clock::time_point start) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// "encoder.layer.3.attention.self.query.weight" -> "attention.self.query.weight".
std::string kind_of(const std::string &name) {
    std::string rest = name;
    for (std::size_t at = 0; at < name.size();) {
        const std::size_t dot = name.find('.', at);
        const std::string part = name.substr(at, dot == std::string::npos ? dot : dot - at);
        if (!part.empty() && part.find_first_not_of("0123456789") == std::string::npos)
            rest = dot == std::string::npos ? std::string() : name.substr(dot + 1);
        if (dot == std::string::npos) break;
        at = dot + 1;
    }
    return rest.empty() ? name : rest;
}

// Floats as torch's .to() casts them on the CPU: round to nearest even, NaN kept quiet.
std::uint16_t to_bf16(float x) {
    std::uint32_t bits;
    std::memcpy(&bits, &x, 4);
    if ((bits & 0x7FFFFFFFu) > 0x7F800000u) return static_cast<std::uint16_t>((bits >> 16) | 0x40);
    bits += 0x7FFFu + ((bits >> 16) & 1u);
    return static_cast<std::uint16_t>(bits >> 16);
}
std::uint16_t to_f16(float x) {
    const _Float16 h = static_cast<_Float16>(x);
    std::uint16_t bits;
    std::memcpy(&bits, &h, 2);
    return bits;
}
float from_half(ferry_dtype dtype, std::uint16_t bits) {
    if (dtype == FERRY_DTYPE_BF16) {
        const std::uint32_t wide = static_cast<std::uint32_t>(bits) << 16;
        float x;
        std::memcpy(&x, &wide, 4);
        return x;
    }
    _Float16 h;
    std::memcpy(&h, &bits, 2);
    return static_cast<float>(h);
}

// `count` elements of F32, BF16 or F16 at src as `to` (BF16 or F16) at dst.
void cast(ferry_dtype from, ferry_dtype to, const unsigned char *src, unsigned char *dst,
          std::uint64_t count) {
    for (std::uint64_t i = 0; i < count; ++i) {
        float x;
        if (from == FERRY_DTYPE_F32) {
            std::memcpy(&x, src + 4 * i, 4);
        } else {
            std::uint16_t bits;
            std::memcpy(&bits, src + 2 * i, 2);
            x = from_half(from, bits);
        }
        const std::uint16_t out = to == FERRY_DTYPE_BF16 ? to_bf16(x) : to_f16(x);
        std::memcpy(dst + 2 * i, &out, 2);
    }
}

bool is_float(ferry_dtype dtype) {
    return dtype == FERRY_DTYPE_F32 || dtype == FERRY_DTYPE_BF16 || dtype == FERRY_DTYPE_F16;
}

int usage(const char *why) {
    std::fprintf(stderr, "ferry-codec-ratio: %s\nusage: ferry-codec-ratio MODEL [--dtype "
                         "bf16|f16|both] [--threads N] [--json FILE]\n", why);
    return 2;
}

}  // namespace

int main(int argc, char **argv) {
    std::string model, json_path, dtypes = "both";
    unsigned threads = std::thread::hardware_concurrency();
    for (int a = 1; a < argc; ++a) {
        const std::string arg = argv[a];
        if ((arg == "--dtype" || arg == "--threads" || arg == "--json") && a + 1 >= argc)
            return usage(("missing value after " + arg).c_str());
        if (arg == "--dtype") dtypes = argv[++a];
        else if (arg == "--threads") threads = static_cast<unsigned>(std::stoul(argv[++a]));
        else if (arg == "--json") json_path = argv[++a];
        else if (!arg.empty() && arg[0] == '-') return usage(("unknown flag " + arg).c_str());
        else model = arg;
    }
    if (model.empty()) return usage("no model given");
    if (dtypes != "bf16" && dtypes != "f16" && dtypes != "both") return usage("bad --dtype");
    if (threads == 0) threads = 1;
    try {
        const auto set = ferry::load::WeightSet::open(model);
        std::vector<std::pair<ferry_dtype, k::Dtype>> targets;
        if (dtypes != "f16") targets.emplace_back(FERRY_DTYPE_BF16, k::kBf16);
        if (dtypes != "bf16") targets.emplace_back(FERRY_DTYPE_F16, k::kF16);
        std::FILE *json = json_path.empty() ? nullptr : std::fopen(json_path.c_str(), "w");
        if (!json_path.empty() && json == nullptr) return usage("cannot write --json file");
        if (json) std::fprintf(json, "{\"model\": \"%s\", \"threads\": %u, \"dtypes\": {", model.c_str(), threads);
        int failures = 0;
        for (std::size_t d = 0; d < targets.size(); ++d) {
            const auto [fdtype, cdtype] = targets[d];
            std::map<std::string, Totals> kinds;
            Totals all;
            double encode_1 = 0, encode_n = 0, decode_1 = 0;
            for (const auto &t : set->tensors()) {
                if (!is_float(t.dtype) || t.bytes == 0) continue;
                std::vector<unsigned char> file_bytes(t.bytes);
                const auto &file = set->file(t.file);
                if (pread(file.fd(), file_bytes.data(), t.bytes, static_cast<off_t>(t.offset)) !=
                    static_cast<ssize_t>(t.bytes))
                    throw ferry::Error(FERRY_ERROR_IO, "cannot read " + t.name);
                const std::uint64_t count = t.bytes / t.element_bytes;
                std::vector<unsigned char> raw(count * 2);
                if (t.dtype == fdtype) std::memcpy(raw.data(), file_bytes.data(), raw.size());
                else cast(t.dtype, fdtype, file_bytes.data(), raw.data(), count);

                ferry::codec::EncodeOptions one, many;
                one.threads = 1;
                many.threads = threads;
                auto start = std::chrono::steady_clock::now();
                const auto coded = ferry::codec::encode(raw.data(), raw.size(), cdtype, one);
                encode_1 += seconds_since(start);
                start = std::chrono::steady_clock::now();
                const auto coded_n = ferry::codec::encode(raw.data(), raw.size(), cdtype, many);
                encode_n += seconds_since(start);
                if (coded != coded_n) {
                    std::fprintf(stderr, "%s: %u threads encode other bytes than one\n", t.name.c_str(), threads);
                    ++failures;
                }
                if (!coded.empty()) {
                    std::vector<unsigned char> back(raw.size());
                    start = std::chrono::steady_clock::now();
                    const auto status = ferry::codec::decode(coded.data(), coded.size(), back.data(),
                                                             back.size(), 1, true);
                    decode_1 += seconds_since(start);
                    if (status != k::kOk || back != raw) {
                        std::fprintf(stderr, "%s: does not round-trip (%s)\n", t.name.c_str(),
                                     ferry::codec::status_name(status));
                        ++failures;
                    }
                }
                for (Totals *sum : {&kinds[kind_of(t.name)], &all}) {
                    ++sum->tensors;
                    sum->raw += raw.size();
                    sum->stored += coded.empty() ? raw.size() : coded.size();
                    sum->encoded_tensors += !coded.empty();
                }
            }
            const char *name = cdtype == k::kBf16 ? "bf16" : "f16";
            std::printf("%s: %s, %llu tensors, %.1f MiB as %s\n", name, model.c_str(),
                        static_cast<unsigned long long>(all.tensors), all.raw / 1048576.0, name);
            std::printf("  %-44s %7s %8s %8s %6s\n", "KIND", "TENSORS", "ENCODED", "MiB", "RATIO");
            for (const auto &[kind, sum] : kinds)
                std::printf("  %-44s %7llu %8llu %8.2f %6.3f\n", kind.c_str(),
                            static_cast<unsigned long long>(sum.tensors),
                            static_cast<unsigned long long>(sum.encoded_tensors), sum.raw / 1048576.0,
                            static_cast<double>(sum.stored) / sum.raw);
            std::printf("  %-44s %7llu %8llu %8.2f %6.3f\n", "all",
                        static_cast<unsigned long long>(all.tensors),
                        static_cast<unsigned long long>(all.encoded_tensors), all.raw / 1048576.0,
                        static_cast<double>(all.stored) / all.raw);
            std::printf("  encode %.0f MB/s on 1 core, %.0f MB/s on %u threads; CPU reference "
                        "decode %.0f MB/s on 1 core (raw bytes)\n",
                        all.raw / encode_1 / 1e6, all.raw / encode_n / 1e6, threads,
                        all.raw / decode_1 / 1e6);
            if (json) {
                std::fprintf(json, "%s\"%s\": {\"ratio\": %.6f, \"raw_bytes\": %llu, \"stored_bytes\": %llu, "
                             "\"encode_mbps_1_core\": %.1f, \"encode_mbps_threads\": %.1f, "
                             "\"decode_cpu_mbps_1_core\": %.1f, \"kinds\": {",
                             d ? ", " : "", name, static_cast<double>(all.stored) / all.raw,
                             static_cast<unsigned long long>(all.raw),
                             static_cast<unsigned long long>(all.stored), all.raw / encode_1 / 1e6,
                             all.raw / encode_n / 1e6, all.raw / decode_1 / 1e6);
                bool first = true;
                for (const auto &[kind, sum] : kinds) {
                    std::fprintf(json, "%s\"%s\": {\"tensors\": %llu, \"raw_bytes\": %llu, \"ratio\": %.6f}",
                                 first ? "" : ", ", kind.c_str(),
                                 static_cast<unsigned long long>(sum.tensors),
                                 static_cast<unsigned long long>(sum.raw),
                                 static_cast<double>(sum.stored) / sum.raw);
                    first = false;
                }
                std::fprintf(json, "}}");
            }
        }
        if (json) {
            std::fprintf(json, "}, \"round_trip_failures\": %d}\n", failures);
            std::fclose(json);
        }
        if (failures != 0) std::printf("%d tensor(s) did not round-trip\n", failures);
        return failures == 0 ? 0 : 1;
    } catch (const ferry::Error &e) {
        std::fprintf(stderr, "ferry-codec-ratio: %s\n", e.what());
        return 1;
    }
}
