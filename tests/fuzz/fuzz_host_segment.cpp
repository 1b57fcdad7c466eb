// libFuzzer target: the shared host store's segment header reader (host/segment_header.hpp)
// on untrusted bytes, as a process that joins a segment another wrote would see them.
// Each input is a whole segment: check_segment() must refuse what is inconsistent without
// reading past it; what it accepts must hold what the joiner relies on, else the target
// aborts:
//
//   - the header, the layout and the store lie within the input, in that order, the
//     store page-aligned and ending exactly at the input's end;
//   - the layout's hash is right, and its first difference from itself is none, and
//     from any other text is a sentence naming a line;
//   - the member table fits its array.
//
// The seeds (tests/fuzz/corpus-host-segment/, written by seeds_host_segment.py) are a
// valid segment and broken ones.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>

#include "host/segment_header.hpp"

namespace {

[[noreturn]] void violated(const char *what) {
    std::fprintf(stderr, "ferry fuzz host segment: invariant violated: %s\n", what);
    std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t *data, std::size_t size) {
    using namespace ferry::hostshm;
    static_assert(sizeof(Header) == 25216, "Header changed: update seeds_host_segment.py");
    // Aligned, as a mapping is, and exactly `size` bytes long to the sanitizer.
    std::unique_ptr<std::uint64_t[]> aligned(new std::uint64_t[size / 8 + 1]);
    std::memcpy(aligned.get(), data, size);
    std::string why;
    const Check check = check_segment(aligned.get(), size, &why);
    if (check != Check::kOk) {
        if (why.empty()) violated("a refusal without a reason");
        return 0;
    }
    const auto &h = *reinterpret_cast<const Header *>(aligned.get());
    if (size < sizeof(Header)) violated("accepted a segment shorter than its header");
    if (h.layout_offset < sizeof(Header) || h.layout_offset + h.layout_bytes > h.data_offset ||
        h.data_offset % h.page_size != 0 || h.data_offset + h.data_bytes != size) {
        violated("accepted offsets out of order or past the end");
    }
    if (h.member_count > kMaxMembers) violated("accepted too many members");
    const std::string layout = stored_layout(aligned.get());
    if (layout.size() != h.layout_bytes) violated("the layout's length");
    if (fnv1a64(layout.data(), layout.size()) != h.layout_hash) violated("the layout's hash");
    if (!first_difference(layout, layout).empty()) violated("a layout differs from itself");
    const std::string other = layout + "x";
    if (first_difference(layout, other).find("line ") != 0) violated("a difference not named");
    if (first_difference(other.substr(1), layout).find("line ") != 0) violated("a difference not named");
    return 0;
}
