// ferry-stat's view of shared host stores (host_shares.hpp).
#include "host_shares.hpp"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <set>
#include <sstream>
#include <utility>

#include "base/names.hpp"
#include "host/segment_header.hpp"

namespace ferry_stat {
namespace {

using ferry::hostshm::SegmentInfo;

const char *state_name(const SegmentInfo &info) {
    if (!info.ok) return "unreadable";
    if (info.stale) return "stale";
    switch (info.state) {
        case ferry::hostshm::kLoading: return "loading";
        case ferry::hostshm::kSealed: return "sealed";
        case ferry::hostshm::kFailed: return "failed";
    }
    return "?";
}

// The store's 2 MiB pages, which each process maps with one entry, and why not more.
std::string huge_text(const SegmentInfo &info) {
    std::string text = std::to_string(info.huge_pages) + " huge pages";
    if (info.huge_error == ECANCELED) {
        text += " (turned off: FERRY_HOST_SHARE_HUGE=0)";
    } else if (info.huge_error != 0) {
        text += " (MADV_COLLAPSE: " + std::string(std::strerror(static_cast<int>(info.huge_error))) + ")";
    }
    return text;
}

std::string mib(std::uint64_t bytes) {
    char text[32];
    std::snprintf(text, sizeof text, "%.1f MiB", static_cast<double>(bytes) / (1 << 20));
    return text;
}

std::vector<SegmentInfo> read_all() {
    std::vector<SegmentInfo> out;
    for (const std::string &segment : ferry::hostshm::list_segments()) {
        out.push_back(ferry::hostshm::read_segment(segment));
    }
    return out;
}

// Whether a shown runtime is a live member of the segment: same pid and name.
bool member_of(const SegmentInfo &info, const ferry::Snapshot &s) {
    for (const auto &m : info.members) {
        if (m.alive && m.pid == s.pid && m.runtime == s.name.substr(0, m.runtime.size())) return true;
    }
    return false;
}

}  // namespace

std::string render_host_shares(const std::vector<Shown> &shown) {
    const std::vector<SegmentInfo> shares = read_all();
    if (shares.empty()) return "";
    std::ostringstream out;
    out << "\nshared host stores (each holds its bytes once for every runtime in it):\n";
    std::uint64_t private_bytes = 0, shared_bytes = 0, naive = 0;
    std::set<std::size_t> counted;
    for (const Shown &row : shown) {
        const ferry_stats &st = row.snapshot.stats;
        const std::uint64_t host = st.host_pinned_bytes + st.host_pageable_bytes;
        naive += host;
        bool in_share = false;
        for (std::size_t i = 0; i < shares.size() && !in_share; ++i) {
            if (!member_of(shares[i], row.snapshot)) continue;
            in_share = true;
            if (counted.insert(i).second) shared_bytes += shares[i].data_bytes;
        }
        if (!in_share) private_bytes += host;
    }
    for (const SegmentInfo &info : shares) {
        out << "  " << info.segment << "  " << state_name(info);
        if (!info.ok) {
            out << ": " << info.problem << "\n";
            continue;
        }
        out << "  " << mib(info.data_bytes) << ", pinned " << mib(info.pinned_bytes);
        if (info.state == ferry::hostshm::kLoading) out << ", loaded " << mib(info.loaded_bytes);
        out << ", " << huge_text(info);
        std::size_t live = 0;
        for (const auto &m : info.members) live += m.alive ? 1 : 0;
        out << "; " << live << " runtime" << (live == 1 ? "" : "s") << ":";
        for (const auto &m : info.members) {
            out << " " << m.pid << "/" << m.runtime
                << (m.role == ferry::hostshm::kLoaderRole ? " (loader)" : "")
                << (m.alive ? "" : " (gone)");
        }
        out << "\n";
    }
    if (!shown.empty()) {
        out << "host RAM of the runtimes shown: " << mib(private_bytes + shared_bytes)
            << ", each shared store counted once (" << mib(naive) << " counted per runtime)\n";
    }
    return out.str();
}

std::string host_shares_json(const std::vector<Shown> &shown) {
    const std::vector<SegmentInfo> shares = read_all();
    std::ostringstream out;
    out << "\"host_shares\":[";
    for (std::size_t i = 0; i < shares.size(); ++i) {
        const SegmentInfo &info = shares[i];
        out << (i ? "," : "") << "\n{\"segment\":" << ferry::json_string(info.segment)
            << ",\"state\":\"" << state_name(info) << "\",\"bytes\":" << info.data_bytes
            << ",\"pinned_bytes\":" << info.pinned_bytes << ",\"loaded_bytes\":" << info.loaded_bytes
            << ",\"huge_pages\":" << info.huge_pages << ",\"huge_error\":" << info.huge_error
            << ",\"problem\":" << ferry::json_string(info.problem) << ",\"members\":[";
        for (std::size_t m = 0; m < info.members.size(); ++m) {
            const auto &member = info.members[m];
            bool shown_here = false;
            for (const Shown &row : shown) shown_here = shown_here || (row.snapshot.pid == member.pid);
            out << (m ? "," : "") << "{\"pid\":" << member.pid
                << ",\"runtime\":" << ferry::json_string(member.runtime) << ",\"role\":\""
                << (member.role == ferry::hostshm::kLoaderRole ? "loader" : "attached")
                << "\",\"alive\":" << (member.alive ? "true" : "false")
                << ",\"publishes_stats\":" << (shown_here ? "true" : "false") << "}";
        }
        out << "]}";
    }
    out << "]";
    return out.str();
}

int remove_stale_host_shares(long pid, bool *failed) {
    int removed = 0;
    for (const SegmentInfo &info : read_all()) {
        if (!info.stale) continue;
        bool had_pid = pid == 0;
        for (const auto &m : info.members) had_pid = had_pid || m.pid == pid;
        if (!had_pid) continue;
        std::string why;
        if (ferry::hostshm::remove_if_stale(info.segment, &why)) {
            std::printf("removed /dev/shm/%s (every runtime that shared it is gone)\n",
                        info.segment.c_str());
            ++removed;
        } else {
            std::fprintf(stderr, "ferry-stat: cannot remove /dev/shm/%s: %s\n",
                         info.segment.c_str(), why.c_str());
            *failed = true;
        }
    }
    return removed;
}

}  // namespace ferry_stat
