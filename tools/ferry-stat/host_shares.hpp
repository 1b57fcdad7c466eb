// ferry-stat's view of shared host stores (runtime/host/segment_header.hpp): which
// runtimes share each segment, its bytes counted once, and the removal of stale ones.
#pragma once

#include <string>
#include <vector>

#include "render.hpp"

namespace ferry_stat {

// The table's section on shared host stores, and host RAM of the shown runtimes with
// each segment counted once; empty when no segment exists.
std::string render_host_shares(const std::vector<Shown> &shown);
// "\"host_shares\":[...]" for the JSON document.
std::string host_shares_json(const std::vector<Shown> &shown);
// Removes the shared host stores whose runtimes are all gone (with pid != 0: that had
// pid among them); prints each. Returns how many, and sets *failed on a refusal.
int remove_stale_host_shares(long pid, bool *failed);

}  // namespace ferry_stat
