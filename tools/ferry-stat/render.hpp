// The four ways ferry-stat shows runtimes: a one-line-per-runtime table, a detailed page,
// one JSON document, and Prometheus text exposition.
#pragma once

#include <string>
#include <vector>

#include "rates.hpp"
#include "observe/stats_reader.hpp"

namespace ferry_stat {

struct Shown {
    ferry::Snapshot snapshot;
    Rates rates;
};

struct Problem {  // a segment that could not be shown
    std::string segment;
    long pid = 0;
    ferry::SegmentState state = ferry::SegmentState::kNotFound;
    std::string message;
};

std::string render_table(const std::vector<Shown> &shown, const std::vector<Problem> &problems);
std::string render_detail(const std::vector<Shown> &shown);
std::string render_json(const std::vector<Shown> &shown, const std::vector<Problem> &problems);
std::string render_prometheus(const std::vector<Shown> &shown);

}  // namespace ferry_stat
