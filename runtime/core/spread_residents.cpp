// core/: ferry::Runtime (definition, plan, seal, the pipeline) and what it plans with.
#include <algorithm>

#include "core/planner.hpp"

namespace ferry {

// Which of several equal-sized, equally used groups stay resident does not change the
// bytes streamed, but where they sit in the pass does: spread evenly, the link keeps
// copying the next streamed group while a resident one computes, instead of idling
// through a run of them. Preferred and split groups stay where the planner put them.
void spread_residents(Plan &plan, const std::vector<std::uint64_t> &bytes,
                      const std::vector<std::uint64_t> &uses,
                      const std::vector<bool> &preferred,
                      const std::vector<std::uint32_t> &pass_order) {
    std::vector<bool> done(bytes.size(), false);
    for (std::uint32_t first : pass_order) {
        if (done[first]) continue;
        std::vector<std::uint32_t> same;  // groups of this size and use count, in pass order
        for (std::uint32_t g : pass_order) {
            if (bytes[g] == bytes[first] && uses[g] == uses[first] && !done[g]) {
                same.push_back(g);
                done[g] = true;
            }
        }
        same.erase(std::remove_if(same.begin(), same.end(),
                                  [&](std::uint32_t g) {
                                      return plan.head_bytes[g] > 0 || preferred[g];
                                  }),
                   same.end());
        std::size_t resident = 0;
        int streamed_class = -1;
        for (std::uint32_t g : same) {
            if (plan.resident[g]) ++resident;
            else streamed_class = plan.size_class[g];
        }
        if (resident == 0 || resident == same.size()) continue;
        for (std::uint32_t g : same) {
            plan.resident[g] = false;
            plan.size_class[g] = streamed_class;
        }
        for (std::size_t i = 0; i < resident; ++i) {
            const std::uint32_t g = same[(2 * i + 1) * same.size() / (2 * resident)];
            plan.resident[g] = true;
            plan.size_class[g] = -1;
        }
    }
}

}  // namespace ferry
