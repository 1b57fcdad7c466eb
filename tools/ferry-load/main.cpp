// ferry-load: measures loading safetensors into ferry, side by side with a plain
// sequential read of the same files, and the disk tier against a fully pinned model.
//
//     ferry-load [PATH] [--make GIB] [--threads N] [--budget PCT] [--disk-pinned PCT]
//                [--passes N] [--no-cold]
//
// PATH is a .safetensors file, an index or a model folder; without one, a synthetic
// model of --make GiB (default 1) is written once to build/ferry-load.safetensors (with
// --make, to PATH when it is missing).
// Uses only ferry's C API, as an engine would: ferry_weights_define names the groups.
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "ferry/ferry.h"
#include "measure.hpp"
#include "synthetic.hpp"

namespace {

using namespace ferry_load;

constexpr const char *kUsage =
    "usage: ferry-load [PATH] [--make GIB] [--threads N] [--budget PCT] [--disk-pinned PCT]\n"
    "                  [--passes N] [--no-cold]\n"
    "Loads safetensors weights into ferry (sim backend) and prints, side by side:\n"
    "  load throughput against `cat FILES > /dev/null`, from a warm and a cold page cache;\n"
    "  peak RSS while loading against the model's bytes;\n"
    "  the disk tier (--disk-pinned PCT of the model pinned, the rest read from the files\n"
    "  at each onload) against the model fully pinned: pass time, RSS, bytes checked.\n"
    "  PATH               .safetensors, *.safetensors.index.json or a model folder\n"
    "                     (default: a synthetic model, written once, of --make GiB)\n"
    "  --make GIB         size of the synthetic model (default 1); written to PATH when\n"
    "                     PATH is missing\n"
    "  --threads N        reader threads (default 0: up to 4)\n"
    "  --budget PCT       VRAM budget, percent of the model (default 50)\n"
    "  --disk-pinned PCT  pinned share of the model in the disk-tier run (default 25)\n"
    "  --passes N         passes timed per run (default 3)\n"
    "  --no-cold          skip the cold-cache figures\n";

[[noreturn]] void fail(const char *what, ferry_status status) {
    std::fprintf(stderr, "ferry-load: %s failed: %s: %s\n", what, ferry_status_string(status),
                 ferry_last_error());
    std::exit(1);
}

void check(ferry_status status, const char *what) {
    if (status != FERRY_OK) fail(what, status);
}

struct Options {
    std::string path;
    double make_gib = 1.0;
    bool make_given = false;  // --make: write PATH when it is missing
    std::uint32_t threads = 0;
    double budget_pct = 50;
    double disk_pinned_pct = 25;
    int passes = 3;
    bool cold = true;
};

double number(const char *flag, const char *value, double lo, double hi) {
    char *end = nullptr;
    const double x = value != nullptr ? std::strtod(value, &end) : 0;
    if (value == nullptr || end == value || *end != '\0' || !(x >= lo && x <= hi)) {
        std::fprintf(stderr, "ferry-load: %s needs a number in [%g, %g]\n%s", flag, lo, hi, kUsage);
        std::exit(2);
    }
    return x;
}

Options parse(int argc, char **argv) {
    Options o;
    for (int i = 1; i < argc; ++i) {
        const std::string flag = argv[i];
        const char *value = i + 1 < argc ? argv[i + 1] : nullptr;
        if (flag == "--help" || flag == "-h") {
            std::fputs(kUsage, stdout);
            std::exit(0);
        } else if (flag == "--no-cold") {
            o.cold = false;
        } else if (flag == "--make") {
            o.make_gib = number(argv[i++], value, 0.01, 1024);
            o.make_given = true;
        } else if (flag == "--threads") {
            o.threads = static_cast<std::uint32_t>(number(argv[i++], value, 0, 64));
        } else if (flag == "--budget") {
            o.budget_pct = number(argv[i++], value, 1, 100);
        } else if (flag == "--disk-pinned") {
            o.disk_pinned_pct = number(argv[i++], value, 1, 100);
        } else if (flag == "--passes") {
            o.passes = static_cast<int>(number(argv[i++], value, 1, 1000));
        } else if (!flag.empty() && flag[0] != '-' && o.path.empty()) {
            o.path = flag;
        } else {
            std::fprintf(stderr, "ferry-load: unknown argument '%s'\n%s", flag.c_str(), kUsage);
            std::exit(2);
        }
    }
    return o;
}

// What the files hold: their paths, total bytes, and the block prefixes of the naming rule
// ("transformer_blocks." when names run "transformer_blocks.N. ...").
struct Model {
    std::vector<std::string> files;
    std::uint64_t bytes = 0;
    std::vector<std::string> prefixes;
};

Model describe(const ferry_weights *weights) {
    Model m;
    std::uint64_t count = 0;
    check(ferry_weights_count(weights, &count), "ferry_weights_count");
    std::set<std::string> files;
    std::map<std::string, std::set<std::string>> blocks;  // prefix -> block numbers
    for (std::uint64_t i = 0; i < count; ++i) {
        ferry_weights_tensor t{};
        check(ferry_weights_tensor_at(weights, i, &t), "ferry_weights_tensor_at");
        files.insert(t.file);
        m.bytes += t.bytes;
        const std::string name = t.name;
        for (std::size_t dot = name.find('.'); dot != std::string::npos; dot = name.find('.', dot + 1)) {
            const std::size_t end = name.find('.', dot + 1);
            if (end == std::string::npos) break;
            const std::string part = name.substr(dot + 1, end - dot - 1);
            if (!part.empty() && std::all_of(part.begin(), part.end(), ::isdigit)) {
                blocks[name.substr(0, dot + 1)].insert(part);
                break;
            }
        }
    }
    m.files.assign(files.begin(), files.end());
    for (const auto &[prefix, numbers] : blocks) {
        if (numbers.size() >= 2) m.prefixes.push_back(prefix);
    }
    return m;
}

struct Run {
    ferry_runtime *rt = nullptr;
    ferry_load_report report{};
    double plan_s = 0;
    std::uint64_t peak_rss = 0;  // VmHWM after the load less RSS before plan (reset there)
    std::uint64_t slab_bytes = 0;
};

// Create, define from the files, plan, load: a fresh runtime, as an engine starts.
Run load(const ferry_weights *weights, const Model &model, const Options &o, bool direct,
         std::uint64_t pinned_cap) {
    ferry_config config;
    ferry_config_init(&config);
    config.backend = FERRY_BACKEND_SIM;
    config.sim_h2d_gbps = 25;
    config.vram_budget = static_cast<std::uint64_t>(model.bytes * o.budget_pct / 100);
    config.name = "ferry-load";
    config.pinned_cap_bytes = pinned_cap;
    config.pageable_fallback = pinned_cap != 0;
    Run run;
    check(ferry_create(&config, &run.rt), "ferry_create");
    std::vector<const char *> prefixes;
    for (const std::string &p : model.prefixes) prefixes.push_back(p.c_str());
    check(ferry_weights_define(run.rt, weights, prefixes.data(), prefixes.size(), 1,
                               FERRY_DTYPE_UNKNOWN), "ferry_weights_define");
    reset_peak_rss();
    const std::uint64_t rss_before = rss_bytes();
    std::uint64_t start = now_ns();
    check(ferry_plan(run.rt), "ferry_plan");
    run.plan_s = seconds_since(start);
    ferry_load_options options;
    ferry_load_options_init(&options);
    options.threads = o.threads;
    options.direct = direct;
    run.report.struct_size = sizeof run.report;
    check(ferry_weights_load(run.rt, weights, &options, &run.report), "ferry_weights_load");
    run.peak_rss = peak_rss_bytes() - std::min(peak_rss_bytes(), rss_before);
    ferry_stats stats{};
    stats.struct_size = sizeof stats;
    check(ferry_stats_get(run.rt, &stats), "ferry_stats_get");
    run.slab_bytes = stats.slab_bytes;
    return run;
}

double gbps(std::uint64_t bytes, double seconds) { return seconds > 0 ? bytes / seconds * 1e-9 : 0; }

// Acquires every group in definition order `passes` times on the sim (a NULL stream
// returns once the bytes are in place) and returns the mean seconds per pass. On the first
// pass every tensor's device bytes are compared with the file's; returns the bytes checked.
struct Passes {
    double seconds = 0;
    std::uint64_t checked = 0;
    std::uint64_t wrong = 0;
};

Passes run_passes(ferry_runtime *rt, const ferry_weights *weights, int passes) {
    size_t count = 0;
    check(ferry_groups_list(rt, nullptr, 0, &count), "ferry_groups_list");
    std::vector<ferry_group> groups(count);
    check(ferry_groups_list(rt, groups.data(), groups.size(), &count), "ferry_groups_list");
    check(ferry_seal(rt), "ferry_seal");
    Passes out;
    std::vector<unsigned char> expected;
    for (int pass = 0; pass <= passes; ++pass) {  // pass 0 checks bytes, untimed
        const std::uint64_t start = now_ns();
        for (const ferry_group g : groups) {
            check(ferry_acquire(rt, g, nullptr), "ferry_acquire");
            if (pass == 0) {
                size_t n = 0;
                check(ferry_group_tensors(rt, g, nullptr, 0, &n), "ferry_group_tensors");
                std::vector<ferry_tensor> tensors(n);
                check(ferry_group_tensors(rt, g, tensors.data(), n, &n), "ferry_group_tensors");
                for (const ferry_tensor t : tensors) {
                    const char *name = nullptr;
                    void *device = nullptr;
                    check(ferry_tensor_name(rt, t, &name), "ferry_tensor_name");
                    check(ferry_tensor_device_ptr(rt, t, &device), "ferry_tensor_device_ptr");
                    std::uint64_t index = 0;
                    ferry_weights_tensor wt{};
                    check(ferry_weights_find(weights, name, &index), "ferry_weights_find");
                    check(ferry_weights_tensor_at(weights, index, &wt), "ferry_weights_tensor_at");
                    expected.resize(wt.bytes);
                    FILE *f = std::fopen(wt.file, "rb");
                    const bool read = f != nullptr &&
                                      fseeko(f, static_cast<off_t>(wt.file_offset), SEEK_SET) == 0 &&
                                      std::fread(expected.data(), 1, wt.bytes, f) == wt.bytes;
                    if (f != nullptr) std::fclose(f);
                    if (!read || std::memcmp(expected.data(), device, wt.bytes) != 0) ++out.wrong;
                    out.checked += wt.bytes;
                }
            }
            check(ferry_release(rt, g, nullptr), "ferry_release");
        }
        check(ferry_synchronize(rt), "ferry_synchronize");
        if (pass > 0) out.seconds += seconds_since(start);
    }
    out.seconds /= passes;
    return out;
}

void print_header() {
    std::printf("  %-6s %14s %15s %8s %10s %12s\n", "cache", "cat>/dev/null", "pread into RAM",
                "ferry", "ferry/cat", "ferry/pread");
}

void print_throughput(const char *cache, std::uint64_t bytes, double cat_s, double pread_s,
                      const Run &run) {
    const double load_s = run.report.elapsed_ns * 1e-9;
    std::printf("  %-6s %14.2f %15.2f %8.2f %10.2f %12.2f   (%u threads%s)\n", cache,
                gbps(bytes, cat_s), gbps(bytes, pread_s), gbps(bytes, load_s),
                load_s > 0 ? cat_s / load_s : 0, load_s > 0 ? pread_s / load_s : 0,
                run.report.threads, run.report.direct_bytes > 0 ? ", O_DIRECT" : "");
}

}  // namespace

int main(int argc, char **argv) {
    Options o = parse(argc, argv);
    if (o.path.empty()) o.path = "build/ferry-load.safetensors";
    {
        const bool make = o.path == "build/ferry-load.safetensors" || o.make_given;
        if (make && access(o.path.c_str(), R_OK) != 0) {
            std::printf("writing a synthetic %.2f GiB model to %s\n", o.make_gib, o.path.c_str());
            if (!write_synthetic(o.path, static_cast<std::uint64_t>(o.make_gib * (1ull << 30)), 60)) {
                std::perror("ferry-load: writing the synthetic model");
                return 1;
            }
        }
    }
    ferry_weights *weights = nullptr;
    check(ferry_weights_open(o.path.c_str(), &weights), "ferry_weights_open");
    const Model model = describe(weights);
    std::printf("ferry-load: %s: %zu file(s), %.3f GB, block prefixes:", o.path.c_str(),
                model.files.size(), model.bytes * 1e-9);
    for (const std::string &p : model.prefixes) std::printf(" %s", p.c_str());
    std::printf("%s\n\nload throughput (best of 2; sim backend, the host store as on cuda)\n",
                model.prefixes.empty() ? " none (one group)" : "");

    time_cat(model.files);  // warms the cache
    const double cat_warm = std::min(time_cat(model.files), time_cat(model.files));
    // Two loads, one after the other (never two stores at once, which the peak RSS would
    // count): the faster is the figure, the second runtime goes on to the passes.
    Run first = load(weights, model, o, false, 0);
    check(ferry_destroy(first.rt), "ferry_destroy");
    Run warm = load(weights, model, o, false, 0);
    warm.report.elapsed_ns = std::min(warm.report.elapsed_ns, first.report.elapsed_ns);
    const unsigned threads = warm.report.threads;
    const double pread_warm = std::min(time_read_into_memory(model.files, threads),
                                       time_read_into_memory(model.files, threads));
    print_header();
    print_throughput("warm", model.bytes, cat_warm, pread_warm, warm);
    if (o.cold) {
        std::uint64_t not_evicted = evict(model.files);
        const double cat_cold = time_cat(model.files);
        not_evicted += evict(model.files);
        const double pread_cold = time_read_into_memory(model.files, threads);
        not_evicted += evict(model.files);
        Run cold = load(weights, model, o, false, 0);
        print_throughput("cold", model.bytes, cat_cold, pread_cold, cold);
        check(ferry_destroy(cold.rt), "ferry_destroy");
        not_evicted += evict(model.files);
        Run direct = load(weights, model, o, true, 0);
        print_throughput("cold", model.bytes, cat_cold, pread_cold, direct);
        check(ferry_destroy(direct.rt), "ferry_destroy");
        if (not_evicted > model.bytes / 10) {
            std::printf("  (the page cache kept %.0f MB of the files after evictions: not fully "
                        "cold)\n", not_evicted * 1e-6 / 4);
        }
    }
    std::printf("  ferry's time is ferry_weights_load's; the store was pinned (its pages faulted "
                "in) by ferry_plan, as cudaHostRegister does\n");
    std::printf("\npeak RSS added by planning and loading: %.3f GB = %.3f x model bytes"
                " (%.3f x model + slab; sim's slab is host memory: %.3f GB)\n",
                warm.peak_rss * 1e-9, double(warm.peak_rss) / model.bytes,
                double(warm.peak_rss) / (model.bytes + warm.slab_bytes), warm.slab_bytes * 1e-9);
    const Passes pinned = run_passes(warm.rt, weights, o.passes);
    const std::uint64_t pinned_rss = rss_bytes();
    const std::uint64_t pinned_slab = warm.slab_bytes;
    check(ferry_destroy(warm.rt), "ferry_destroy");

    const auto cap = static_cast<std::uint64_t>(model.bytes * o.disk_pinned_pct / 100);
    Run tier = load(weights, model, o, false, cap);
    ferry_stats stats{};
    stats.struct_size = sizeof stats;
    const Passes disk = run_passes(tier.rt, weights, o.passes);
    check(ferry_stats_get(tier.rt, &stats), "ferry_stats_get");
    const std::uint64_t tier_rss = rss_bytes();
    check(ferry_destroy(tier.rt), "ferry_destroy");
    check(ferry_weights_close(weights), "ferry_weights_close");

    std::printf("\ndisk tier (%.0f%% of the model pinned) against fully pinned, %d passes, sim at 25 GB/s\n",
                o.disk_pinned_pct, o.passes);
    std::printf("  %-10s %9s %12s %18s %13s %12s\n", "run", "pass ms", "RSS / model",
                "(RSS-slab) / model", "disk GB/pass", "bytes right");
    std::printf("  %-10s %9.1f %12.3f %18.3f %13s %12s\n", "pinned", pinned.seconds * 1e3,
                double(pinned_rss) / model.bytes,
                (double(pinned_rss) - double(pinned_slab)) / model.bytes, "0",
                pinned.wrong == 0 && pinned.checked == model.bytes ? "all" : "NO");
    std::printf("  %-10s %9.1f %12.3f %18.3f %13.3f %12s\n", "disk tier", disk.seconds * 1e3,
                double(tier_rss) / model.bytes,
                (double(tier_rss) - double(tier.slab_bytes)) / model.bytes,
                stats.bytes_disk_read * 1e-9 / (o.passes + 1),
                disk.wrong == 0 && disk.checked == model.bytes ? "all" : "NO");
    std::printf("  disk tier / pinned pass time: %.2f; host_disk_bytes %.3f GB of %.3f GB\n",
                pinned.seconds > 0 ? disk.seconds / pinned.seconds : 0, stats.host_disk_bytes * 1e-9,
                model.bytes * 1e-9);
    if (pinned.checked != model.bytes || disk.checked != model.bytes) {
        std::fprintf(stderr, "ferry-load: compared %llu and %llu bytes on the device, not all "
                     "%llu of the model\n", static_cast<unsigned long long>(pinned.checked),
                     static_cast<unsigned long long>(disk.checked),
                     static_cast<unsigned long long>(model.bytes));
        return 1;
    }
    if (pinned.wrong + disk.wrong > 0) {
        std::fprintf(stderr, "ferry-load: %llu tensor(s) on the device differ from the file\n",
                     static_cast<unsigned long long>(pinned.wrong + disk.wrong));
        return 1;
    }
    return 0;
}
