// The safetensors parser (load/weights.hpp): a valid file's tensors come out with their
// dtypes, shapes and absolute offsets; every malformed header, truncated file, bad index
// and changed file fails with its own status and a message naming the file and tensor.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <initializer_list>
#include <string>
#include <vector>

#include "base/error.hpp"
#include "load/weights.hpp"

using ferry::load::FileTensor;
using ferry::load::Header;
using ferry::load::WeightSet;

namespace {

namespace fs = std::filesystem;

const std::string kFile = "model.safetensors";

// A safetensors file: the 8-byte little-endian length, the header, `data` bytes (0..n-1).
std::string st_file(const std::string &header, std::size_t data = 0, std::uint64_t length = ~0ull) {
    if (length == ~0ull) length = header.size();
    std::string out;
    for (int i = 0; i < 8; ++i) out += static_cast<char>((length >> (8 * i)) & 0xff);
    out += header;
    for (std::size_t i = 0; i < data; ++i) out += static_cast<char>(i & 0xff);
    return out;
}

Header parse(const std::string &file_bytes) {
    return ferry::load::parse_header(kFile, reinterpret_cast<const std::byte *>(file_bytes.data()),
                                     file_bytes.size(), file_bytes.size());
}

// Runs `call`, which must throw ferry::Error with `status` and a message holding each of
// `parts`.
void expect_error(const std::function<void()> &call, ferry_status status,
                  std::initializer_list<std::string> parts) {
    try {
        call();
    } catch (const ferry::Error &e) {
        INFO("message: " << e.what());
        CHECK(e.status() == status);
        for (const std::string &part : parts)
            CHECK(std::string(e.what()).find(part) != std::string::npos);
        return;
    }
    FAIL("no ferry::Error thrown");
}

// The header of one tensor "t" with the given entry, and `data` bytes after it.
void expect_entry_error(const std::string &entry, std::size_t data, ferry_status status,
                        const std::string &cause) {
    const std::string file = st_file("{\"t\":" + entry + "}", data);
    expect_error([&] { parse(file); }, status, {kFile, "tensor 't'", cause});
}

// A temporary folder, removed with everything in it.
class TempDir {
 public:
    TempDir() {
        std::string templ = (fs::temp_directory_path() / "ferry-weights-XXXXXX").string();
        REQUIRE(mkdtemp(templ.data()) != nullptr);
        path_ = templ;
    }
    ~TempDir() {
        std::error_code ignored;
        fs::remove_all(path_, ignored);
    }
    std::string operator/(const std::string &name) const { return (path_ / name).string(); }
    std::string str() const { return path_.string(); }

 private:
    fs::path path_;
};

void write(const std::string &path, const std::string &bytes) {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    REQUIRE(out.good());
}

// A valid one-tensor file: `name` of U8 [size] at offset 0.
std::string one_tensor(const std::string &name, std::size_t size = 4) {
    const std::string n = std::to_string(size);
    return st_file("{\"" + name + "\":{\"dtype\":\"U8\",\"shape\":[" + n +
                       "],\"data_offsets\":[0," + n + "]}}",
                   size);
}

// A file of several U8 tensors, each of `size` bytes, laid out in the order given.
std::string tensors_file(const std::vector<std::string> &names, std::size_t size = 4) {
    std::string header = "{";
    std::size_t at = 0;
    for (const std::string &name : names) {
        if (header.size() > 1) header += ",";
        header += "\"" + name + "\":{\"dtype\":\"U8\",\"shape\":[" + std::to_string(size) +
                  "],\"data_offsets\":[" + std::to_string(at) + "," + std::to_string(at + size) +
                  "]}";
        at += size;
    }
    return st_file(header + "}", at);
}

std::string index_json(const std::vector<std::pair<std::string, std::string>> &map) {
    std::string text = "{\"metadata\":{\"total_size\":16},\"weight_map\":{";
    for (std::size_t i = 0; i < map.size(); ++i) {
        text += (i ? "," : "") + std::string("\"") + map[i].first + "\":\"" + map[i].second + "\"";
    }
    return text + "}}";
}

}  // namespace

// --- valid files -------------------------------------------------------------------------

TEST_CASE("A valid header gives every tensor's dtype, shape, size and absolute offset") {
    // Header order differs from offset order, as the format allows; padded with spaces.
    const std::string header =
        "{\"__metadata__\":{\"format\":\"pt\"},"
        "\"b.bias\":{\"dtype\":\"F16\",\"shape\":[3],\"data_offsets\":[16,22]},"
        "\"a.weight\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,16]},"
        "\"empty\":{\"dtype\":\"BF16\",\"shape\":[0,7],\"data_offsets\":[22,22]},"
        "\"fp8\":{\"dtype\":\"F8_E4M3\",\"shape\":[2],\"data_offsets\":[22,24]},"
        "\"packed\":{\"dtype\":\"F4\",\"shape\":[2,3],\"data_offsets\":[24,27]},"
        "\"scalar\":{\"dtype\":\"I64\",\"shape\":[],\"data_offsets\":[27,35]},"
        "\"mask\":{\"dtype\":\"BOOL\",\"shape\":[1],\"data_offsets\":[35,36]}}     ";
    const Header h = parse(st_file(header, 36));
    REQUIRE(h.data_start == 8 + header.size());
    REQUIRE(h.tensors.size() == 7);  // __metadata__ is not a tensor

    const FileTensor &b = h.tensors[0];
    CHECK(b.name == "b.bias");
    CHECK(b.dtype == FERRY_DTYPE_F16);
    CHECK(b.dtype_name == "F16");
    CHECK(b.element_bytes == 2);
    CHECK(b.shape == std::vector<std::int64_t>{3});
    CHECK(b.bytes == 6);
    CHECK(b.offset == h.data_start + 16);

    const FileTensor &a = h.tensors[1];
    CHECK(a.name == "a.weight");
    CHECK(a.dtype == FERRY_DTYPE_F32);
    CHECK(a.shape == std::vector<std::int64_t>{2, 2});
    CHECK(a.bytes == 16);
    CHECK(a.offset == h.data_start);

    const FileTensor &empty = h.tensors[2];
    CHECK(empty.dtype == FERRY_DTYPE_BF16);
    CHECK(empty.bytes == 0);
    CHECK(empty.shape == std::vector<std::int64_t>{0, 7});

    const FileTensor &fp8 = h.tensors[3];
    CHECK(fp8.dtype == FERRY_DTYPE_UNKNOWN);
    CHECK(fp8.dtype_name == "F8_E4M3");
    CHECK(fp8.element_bytes == 1);

    const FileTensor &packed = h.tensors[4];  // 6 elements of 4 bits: 3 bytes
    CHECK(packed.dtype == FERRY_DTYPE_UNKNOWN);
    CHECK(packed.element_bytes == 0);
    CHECK(packed.bytes == 3);

    CHECK(h.tensors[5].shape.empty());
    CHECK(h.tensors[5].bytes == 8);
    CHECK(h.tensors[5].dtype == FERRY_DTYPE_I64);
    CHECK(h.tensors[6].dtype == FERRY_DTYPE_BOOL);
    for (const FileTensor &t : h.tensors) CHECK(t.file == 0);
}

TEST_CASE("Every safetensors dtype is known, with its size and ferry dtype where one exists") {
    const std::vector<std::tuple<std::string, ferry_dtype, unsigned>> dtypes = {
        {"BOOL", FERRY_DTYPE_BOOL, 1},
        {"U8", FERRY_DTYPE_U8, 1},
        {"I8", FERRY_DTYPE_I8, 1},
        {"I16", FERRY_DTYPE_I16, 2},
        {"U16", FERRY_DTYPE_UNKNOWN, 2},
        {"I32", FERRY_DTYPE_I32, 4},
        {"U32", FERRY_DTYPE_UNKNOWN, 4},
        {"I64", FERRY_DTYPE_I64, 8},
        {"U64", FERRY_DTYPE_UNKNOWN, 8},
        {"F16", FERRY_DTYPE_F16, 2},
        {"BF16", FERRY_DTYPE_BF16, 2},
        {"F32", FERRY_DTYPE_F32, 4},
        {"F64", FERRY_DTYPE_F64, 8},
        {"C64", FERRY_DTYPE_UNKNOWN, 8},
        {"F8_E4M3", FERRY_DTYPE_UNKNOWN, 1},
        {"F8_E5M2", FERRY_DTYPE_UNKNOWN, 1},
        {"F8_E8M0", FERRY_DTYPE_UNKNOWN, 1},
        {"F8_E4M3FNUZ", FERRY_DTYPE_UNKNOWN, 1},
        {"F8_E5M2FNUZ", FERRY_DTYPE_UNKNOWN, 1},
    };
    for (const auto &[name, dtype, size] : dtypes) {
        INFO(name);
        const std::string n = std::to_string(3 * size);
        const Header h = parse(st_file(
            "{\"t\":{\"dtype\":\"" + name + "\",\"shape\":[3],\"data_offsets\":[0," + n + "]}}",
            3 * size));
        REQUIRE(h.tensors.size() == 1);
        CHECK(h.tensors[0].dtype == dtype);
        CHECK(h.tensors[0].element_bytes == size);
        CHECK(h.tensors[0].bytes == 3 * size);
    }
    // 6-bit elements: four of them are three bytes.
    const Header h =
        parse(st_file("{\"t\":{\"dtype\":\"F6_E2M3\",\"shape\":[4],\"data_offsets\":[0,3]},"
                      "\"u\":{\"dtype\":\"F6_E3M2\",\"shape\":[4],\"data_offsets\":[3,6]}}",
                      6));
    CHECK(h.tensors[0].bytes == 3);
    CHECK(h.tensors[1].bytes == 3);
}

TEST_CASE("A header with no tensors and no data is valid") {
    CHECK(parse(st_file("{}      ")).tensors.empty());
    CHECK(parse(st_file("{\"__metadata__\":{}}")).tensors.empty());
}

// --- truncated files ---------------------------------------------------------------------

TEST_CASE("A file shorter than 8 bytes is truncated") {
    expect_error([] { parse(std::string("\x10\0\0", 3)); }, FERRY_ERROR_FILE_TRUNCATED,
                 {kFile, "3 bytes", "shorter than the 8-byte header length"});
    expect_error([] { parse(""); }, FERRY_ERROR_FILE_TRUNCATED, {kFile, "0 bytes"});
}

TEST_CASE("A header length past the end of the file is truncated") {
    expect_error([] { parse(st_file("{}", 0, 100)); }, FERRY_ERROR_FILE_TRUNCATED,
                 {kFile, "header length is 100 bytes", "only 2 follow"});
}

TEST_CASE("A tensor whose data ends past the end of the file is truncated") {
    expect_entry_error("{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}", 10,
                       FERRY_ERROR_FILE_TRUNCATED, "ends at byte 16 of the data section");
}

// --- malformed headers -------------------------------------------------------------------

TEST_CASE("A header length over the limit is a format error, not an allocation") {
    const std::uint64_t huge = ferry::load::kMaxHeaderBytes + 1;
    expect_error([&] { parse(st_file("{}", 0, huge)); }, FERRY_ERROR_FILE_FORMAT,
                 {kFile, std::to_string(huge), "over the limit"});
    expect_error([] { parse(st_file("{}", 0, ~1ull)); }, FERRY_ERROR_FILE_FORMAT,
                 {kFile, "over the limit"});
}

TEST_CASE("A header that is not UTF-8 is refused, with the offset of the bad byte") {
    expect_error([] { parse(st_file("{\"t\xff\":1}")); }, FERRY_ERROR_FILE_FORMAT,
                 {kFile, "not UTF-8", "offset 11"});
    // An overlong encoding of '/' and an encoded surrogate are not UTF-8 either.
    expect_error([] { parse(st_file("{\"\xc0\xaf\":1}")); }, FERRY_ERROR_FILE_FORMAT,
                 {"not UTF-8"});
    expect_error([] { parse(st_file("{\"\xed\xa0\x80\":1}")); }, FERRY_ERROR_FILE_FORMAT,
                 {"not UTF-8"});
}

TEST_CASE("A header that is not JSON is refused, with the parser's position") {
    expect_error([] { parse(st_file("{\"t\": nope}")); }, FERRY_ERROR_FILE_FORMAT,
                 {kFile, "not JSON", "offset 15"});
    expect_error([] { parse(st_file("{\"t\":{}} trailing")); }, FERRY_ERROR_FILE_FORMAT,
                 {kFile, "not JSON"});
    expect_error([] { parse(st_file("")); }, FERRY_ERROR_FILE_FORMAT, {kFile, "not JSON"});
    expect_error([] { parse(st_file("{\"t\":1e999}")); }, FERRY_ERROR_FILE_FORMAT, {kFile, "JSON"});
}

TEST_CASE("A header that is not a JSON object is refused") {
    expect_error([] { parse(st_file("[1,2]")); }, FERRY_ERROR_FILE_FORMAT,
                 {kFile, "an array, not a JSON object"});
}

TEST_CASE("A tensor entry that is not an object is refused") {
    expect_entry_error("[0,4]", 0, FERRY_ERROR_FILE_FORMAT, "not an object");
}

TEST_CASE("A tensor entry missing a field is refused, naming the field") {
    expect_entry_error("{\"shape\":[1],\"data_offsets\":[0,1]}", 1, FERRY_ERROR_FILE_FORMAT,
                       "no \"dtype\"");
    expect_entry_error("{\"dtype\":\"U8\",\"data_offsets\":[0,1]}", 1, FERRY_ERROR_FILE_FORMAT,
                       "no \"shape\"");
    expect_entry_error("{\"dtype\":\"U8\",\"shape\":[1]}", 1, FERRY_ERROR_FILE_FORMAT,
                       "no \"data_offsets\"");
}

TEST_CASE("A tensor entry with a field of the wrong type is refused") {
    expect_entry_error("{\"dtype\":8,\"shape\":[1],\"data_offsets\":[0,1]}", 1,
                       FERRY_ERROR_FILE_FORMAT, "\"dtype\" is an integer, not a string");
    expect_entry_error("{\"dtype\":\"U8\",\"shape\":\"1\",\"data_offsets\":[0,1]}", 1,
                       FERRY_ERROR_FILE_FORMAT, "\"shape\" is a string, not an array");
    expect_entry_error("{\"dtype\":\"U8\",\"shape\":[\"1\"],\"data_offsets\":[0,1]}", 1,
                       FERRY_ERROR_FILE_FORMAT, "a dimension is a string");
    expect_entry_error("{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1,2]}", 1,
                       FERRY_ERROR_FILE_FORMAT, "an array of 3 values, not [begin, end]");
    expect_entry_error("{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":{}}", 1,
                       FERRY_ERROR_FILE_FORMAT, "an object, not [begin, end]");
    expect_entry_error("{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[-1,1]}", 1,
                       FERRY_ERROR_FILE_FORMAT, "data_offsets begin -1 is negative");
}

TEST_CASE("A negative or non-integer dimension is refused") {
    expect_entry_error("{\"dtype\":\"U8\",\"shape\":[-2],\"data_offsets\":[0,0]}", 0,
                       FERRY_ERROR_FILE_FORMAT, "a dimension -2 is negative");
    expect_entry_error("{\"dtype\":\"U8\",\"shape\":[1.5],\"data_offsets\":[0,0]}", 0,
                       FERRY_ERROR_FILE_FORMAT, "a dimension 1.5 is not an integer");
    expect_entry_error("{\"dtype\":\"U8\",\"shape\":[2.0],\"data_offsets\":[0,2]}", 2,
                       FERRY_ERROR_FILE_FORMAT, "is not an integer");
    expect_entry_error(
        "{\"dtype\":\"U8\",\"shape\":[9223372036854775808],"
        "\"data_offsets\":[0,0]}",
        0, FERRY_ERROR_FILE_FORMAT, "is too large");
}

TEST_CASE("More than FERRY_MAX_DIMS dimensions are refused") {
    expect_entry_error("{\"dtype\":\"U8\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,1]}", 1,
                       FERRY_ERROR_FILE_FORMAT, "9 dims, more than FERRY_MAX_DIMS (8)");
}

TEST_CASE("An element count that overflows is refused, whatever the order of the dims") {
    expect_entry_error(
        "{\"dtype\":\"U8\",\"shape\":[4294967296,4294967296],"
        "\"data_offsets\":[0,0]}",
        0, FERRY_ERROR_FILE_FORMAT, "overflows");
    expect_entry_error(
        "{\"dtype\":\"U8\",\"shape\":[0,4294967296,4294967296],"
        "\"data_offsets\":[0,0]}",
        0, FERRY_ERROR_FILE_FORMAT, "overflows");
    // Elements fit in int64 but their bits do not fit in uint64.
    expect_entry_error(
        "{\"dtype\":\"F64\",\"shape\":[4611686018427387904],"
        "\"data_offsets\":[0,0]}",
        0, FERRY_ERROR_FILE_FORMAT, "byte count");
}

TEST_CASE("Shape times element size must equal the byte range") {
    expect_entry_error("{\"dtype\":\"BF16\",\"shape\":[2,3],\"data_offsets\":[0,10]}", 10,
                       FERRY_ERROR_FILE_FORMAT,
                       "shape [2, 3] of BF16 is 12 bytes, but data_offsets [0, 10] hold 10");
    expect_entry_error("{\"dtype\":\"F4\",\"shape\":[3],\"data_offsets\":[0,2]}", 2,
                       FERRY_ERROR_FILE_FORMAT, "do not end on a byte boundary");
}

TEST_CASE("Offsets that begin after they end are refused") {
    expect_entry_error("{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[4,2]}", 4,
                       FERRY_ERROR_FILE_FORMAT, "[4, 2] begin after they end");
}

TEST_CASE("Overlapping offsets are refused, naming both tensors") {
    const std::string file = st_file(
        "{\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]},"
        "\"b\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[2,6]}}",
        6);
    expect_error([&] { parse(file); }, FERRY_ERROR_FILE_FORMAT,
                 {kFile, "tensor 'b'", "overlap those of tensor 'a'"});
    // A zero-size tensor inside another one overlaps it too.
    const std::string inside = st_file(
        "{\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]},"
        "\"z\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[2,2]}}",
        4);
    expect_error([&] { parse(inside); }, FERRY_ERROR_FILE_FORMAT, {"tensor 'z'", "overlap"});
}

TEST_CASE("Offsets that leave a hole in the data are refused") {
    const std::string file = st_file(
        "{\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]},"
        "\"b\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[6,10]}}",
        10);
    expect_error([&] { parse(file); }, FERRY_ERROR_FILE_FORMAT,
                 {kFile, "tensor 'b'", "hole: bytes [4, 6)", "after tensor 'a'"});
    expect_entry_error("{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[2,6]}", 6,
                       FERRY_ERROR_FILE_FORMAT, "hole: bytes [0, 2)");
}

TEST_CASE("Bytes after the last tensor's data are refused: the data must cover the file") {
    expect_error(
        [] {
            parse(
                st_file("{\"a\":{\"dtype\":\"U8\",\"shape\":[4],"
                        "\"data_offsets\":[0,4]}}",
                        7));
        },
        FERRY_ERROR_FILE_FORMAT,
        {kFile, "last 3 bytes of the file belong to no tensor", "after tensor 'a'"});
    expect_error([] { parse(st_file("{}", 5)); }, FERRY_ERROR_FILE_FORMAT,
                 {kFile, "last 5 bytes", "has no tensor"});
}

TEST_CASE("An unknown dtype is refused, naming it") {
    expect_entry_error("{\"dtype\":\"F7\",\"shape\":[1],\"data_offsets\":[0,1]}", 1,
                       FERRY_ERROR_FILE_FORMAT, "unknown dtype 'F7'");
    expect_entry_error("{\"dtype\":\"f32\",\"shape\":[1],\"data_offsets\":[0,4]}", 4,
                       FERRY_ERROR_FILE_FORMAT, "unknown dtype 'f32'");
}

TEST_CASE("A tensor named twice is refused, not silently the last one kept") {
    const std::string file = st_file(
        "{\"t\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]},"
        "\"t\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[4,8]}}",
        8);
    expect_error([&] { parse(file); }, FERRY_ERROR_FILE_FORMAT,
                 {kFile, "tensor 't' appears twice in the header"});
    // The same name written with a JSON escape is the same name.
    const std::string escaped = st_file(
        "{\"t\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]},"
        "\"\\u0074\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[4,8]}}",
        8);
    expect_error([&] { parse(escaped); }, FERRY_ERROR_FILE_FORMAT, {"tensor 't' appears twice"});
}

TEST_CASE("A key twice inside a tensor entry is refused") {
    expect_entry_error("{\"dtype\":\"U8\",\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,4]}",
                       4, FERRY_ERROR_FILE_FORMAT, "key 'dtype' appears twice");
}

TEST_CASE("__metadata__ that is not an object is refused") {
    expect_error([] { parse(st_file("{\"__metadata__\":\"pt\"}")); }, FERRY_ERROR_FILE_FORMAT,
                 {kFile, "\"__metadata__\" is a string, not an object"});
}

TEST_CASE("A tensor name holding a NUL character is refused") {
    expect_error(
        [] {
            parse(
                st_file("{\"a\\u0000b\":{\"dtype\":\"U8\",\"shape\":[0],"
                        "\"data_offsets\":[0,0]}}"));
        },
        FERRY_ERROR_FILE_FORMAT, {kFile, "tensor 'a\\x00b'", "NUL"});
}

// --- indexes -----------------------------------------------------------------------------

TEST_CASE("An index gives its shards in first-seen order and each tensor's shard") {
    const ferry::load::Index index = ferry::load::parse_index(
        "m.index.json",
        index_json({{"b", "s2.safetensors"}, {"a", "s1.safetensors"}, {"c", "s2.safetensors"}}));
    REQUIRE(index.shards == std::vector<std::string>{"s2.safetensors", "s1.safetensors"});
    REQUIRE(index.weight_map.size() == 3);
    CHECK(index.weight_map[0] == std::make_pair(std::string("b"), 0u));
    CHECK(index.weight_map[1] == std::make_pair(std::string("a"), 1u));
    CHECK(index.weight_map[2] == std::make_pair(std::string("c"), 0u));
}

TEST_CASE("A shard name that is not a plain file name is refused") {
    for (const std::string shard : {"../x.safetensors", "/abs.safetensors", "", "a/b", ".", ".."}) {
        INFO(shard);
        expect_error(
            [&] {
                ferry::load::parse_index("m.index.json", index_json({{"t", shard}}));
            },
            FERRY_ERROR_FILE_FORMAT, {"m.index.json", "tensor 't'", "not a plain file name"});
    }
}

TEST_CASE("A malformed index is refused") {
    const auto index = [](const std::string &text) {
        return [text] { ferry::load::parse_index("m.index.json", text); };
    };
    expect_error(index("{\"metadata\":{}}"), FERRY_ERROR_FILE_FORMAT,
                 {"m.index.json", "no \"weight_map\""});
    expect_error(index("{\"weight_map\":[]}"), FERRY_ERROR_FILE_FORMAT,
                 {"m.index.json", "\"weight_map\" is an array, not an object"});
    expect_error(index("{\"weight_map\":{\"t\":3}}"), FERRY_ERROR_FILE_FORMAT,
                 {"m.index.json", "tensor 't'", "its shard is an integer"});
    expect_error(index("{\"weight_map\":{\"t\":\"a\",\"t\":\"b\"}}"), FERRY_ERROR_FILE_FORMAT,
                 {"m.index.json", "tensor 't' appears twice in \"weight_map\""});
    expect_error(index("{\"weight_map\":"), FERRY_ERROR_FILE_FORMAT, {"m.index.json", "not JSON"});
    expect_error(index("[]"), FERRY_ERROR_FILE_FORMAT, {"m.index.json", "not a JSON object"});
    expect_error(index("{\"weight_map\":{\"\xfe\":\"a\"}}"), FERRY_ERROR_FILE_FORMAT,
                 {"m.index.json", "not UTF-8"});
}

// --- WeightSet: files, indexes, folders --------------------------------------------------

TEST_CASE("One file opens; its tensors are sorted by name and found by binary search") {
    TempDir dir;
    write(dir / "m.safetensors", tensors_file({"z", "a", "m"}));
    const auto set = WeightSet::open(dir / "m.safetensors");
    REQUIRE(set->files().size() == 1);
    REQUIRE(set->tensors().size() == 3);
    CHECK(set->tensors()[0].name == "a");
    CHECK(set->tensors()[1].name == "m");
    CHECK(set->tensors()[2].name == "z");
    REQUIRE(set->find("m") != nullptr);
    CHECK(set->find("m")->offset == set->find("a")->offset + 4);
    CHECK(set->find("b") == nullptr);
    CHECK(set->find("") == nullptr);
    CHECK(set->path() == dir / "m.safetensors");
    CHECK(set->file(0).size() == tensors_file({"z", "a", "m"}).size());
}

TEST_CASE("An index with two shards opens each shard once") {
    TempDir dir;
    write(dir / "s-00001-of-00002.safetensors", tensors_file({"a", "b"}));
    write(dir / "s-00002-of-00002.safetensors", tensors_file({"c"}));
    write(dir / "s.safetensors.index.json", index_json({{"c", "s-00002-of-00002.safetensors"},
                                                        {"a", "s-00001-of-00002.safetensors"},
                                                        {"b", "s-00001-of-00002.safetensors"}}));
    const auto set = WeightSet::open(dir / "s.safetensors.index.json");
    REQUIRE(set->files().size() == 2);
    CHECK(set->file(0).path() == dir / "s-00002-of-00002.safetensors");  // first seen
    CHECK(set->file(1).path() == dir / "s-00001-of-00002.safetensors");
    REQUIRE(set->tensors().size() == 3);
    CHECK(set->find("a")->file == 1);
    CHECK(set->find("b")->file == 1);
    CHECK(set->find("c")->file == 0);
    CHECK(set->find("b")->offset == set->find("a")->offset + 4);
}

TEST_CASE("A folder opens its index first, then its file, transformers before diffusers") {
    TempDir dir;
    const std::string folder = dir / "model";
    fs::create_directory(folder);
    expect_error(
        [&] { WeightSet::open(folder); }, FERRY_ERROR_IO,
        {folder, "model.safetensors.index.json", "model.safetensors",
         "diffusion_pytorch_model.safetensors.index.json", "diffusion_pytorch_model.safetensors"});

    write(folder + "/diffusion_pytorch_model.safetensors", one_tensor("diffusers"));
    CHECK(WeightSet::open(folder)->find("diffusers") != nullptr);

    write(folder + "/shard.safetensors", one_tensor("sharded"));
    write(folder + "/diffusion_pytorch_model.safetensors.index.json",
          index_json({{"sharded", "shard.safetensors"}}));
    CHECK(WeightSet::open(folder + "/")->find("sharded") != nullptr);

    write(folder + "/model.safetensors", one_tensor("plain"));
    CHECK(WeightSet::open(folder)->find("plain") != nullptr);

    write(folder + "/model.safetensors.index.json", index_json({{"sharded", "shard.safetensors"}}));
    const auto set = WeightSet::open(folder);
    CHECK(set->find("sharded") != nullptr);
    CHECK(set->find("plain") == nullptr);
}

TEST_CASE("A missing file or shard is an I/O error naming it") {
    TempDir dir;
    expect_error([&] { WeightSet::open(dir / "none.safetensors"); }, FERRY_ERROR_IO,
                 {dir / "none.safetensors", "No such file"});
    write(dir / "a.safetensors", one_tensor("a"));
    write(dir / "m.index.json", index_json({{"a", "a.safetensors"}, {"b", "b.safetensors"}}));
    expect_error(
        [&] { WeightSet::open(dir / "m.index.json"); }, FERRY_ERROR_IO,
        {dir / "m.index.json", "shard 'b.safetensors'", dir / "b.safetensors", "No such file"});
}

TEST_CASE("A tensor in two shards is refused") {
    TempDir dir;
    write(dir / "a.safetensors", tensors_file({"x", "y"}));
    write(dir / "b.safetensors", tensors_file({"y"}));
    write(dir / "m.index.json", index_json({{"x", "a.safetensors"}, {"y", "b.safetensors"}}));
    expect_error([&] { WeightSet::open(dir / "m.index.json"); }, FERRY_ERROR_FILE_FORMAT,
                 {"tensor 'y' is in two files", dir / "a.safetensors", dir / "b.safetensors"});
}

TEST_CASE("An index and its shards' headers must name the same tensors") {
    TempDir dir;
    write(dir / "a.safetensors", tensors_file({"x", "extra"}));
    write(dir / "b.safetensors", tensors_file({"y"}));

    // A shard holds a tensor the index does not name.
    write(dir / "m.index.json", index_json({{"x", "a.safetensors"}, {"y", "b.safetensors"}}));
    expect_error([&] { WeightSet::open(dir / "m.index.json"); }, FERRY_ERROR_FILE_FORMAT,
                 {dir / "a.safetensors", "tensor 'extra' is not in the index", "m.index.json"});

    // The index maps a tensor to a shard whose header does not hold it.
    write(dir / "m.index.json", index_json({{"x", "a.safetensors"},
                                            {"extra", "a.safetensors"},
                                            {"y", "b.safetensors"},
                                            {"ghost", "b.safetensors"}}));
    expect_error(
        [&] { WeightSet::open(dir / "m.index.json"); }, FERRY_ERROR_FILE_FORMAT,
        {"m.index.json", "tensor 'ghost' is mapped to shard 'b.safetensors'", "does not hold it"});

    // ... or that holds it in another shard.
    write(dir / "m.index.json",
          index_json({{"x", "a.safetensors"}, {"extra", "b.safetensors"}, {"y", "b.safetensors"}}));
    expect_error([&] { WeightSet::open(dir / "m.index.json"); }, FERRY_ERROR_FILE_FORMAT,
                 {"tensor 'extra' is mapped to shard 'b.safetensors'",
                  "(it is in " + dir / "a.safetensors"});
}

TEST_CASE("A malformed file is refused by WeightSet::open with the parser's error") {
    TempDir dir;
    write(dir / "short.safetensors", "abc");
    expect_error([&] { WeightSet::open(dir / "short.safetensors"); }, FERRY_ERROR_FILE_TRUNCATED,
                 {dir / "short.safetensors", "3 bytes"});
    std::string cut = tensors_file({"a", "b"});
    cut.resize(cut.size() - 2);
    write(dir / "cut.safetensors", cut);
    expect_error([&] { WeightSet::open(dir / "cut.safetensors"); }, FERRY_ERROR_FILE_TRUNCATED,
                 {dir / "cut.safetensors", "tensor 'b'"});
    write(dir / "a.safetensors", one_tensor("a"));
    write(dir / "m.index.json", index_json({{"a", "a.safetensors"}, {"b", "cut.safetensors"}}));
    expect_error([&] { WeightSet::open(dir / "m.index.json"); }, FERRY_ERROR_FILE_TRUNCATED,
                 {dir / "cut.safetensors", "tensor 'b'"});
    fs::create_directory(dir / "dir.safetensors");
    expect_error([&] { ferry::load::WeightFile file(dir / "dir.safetensors"); }, FERRY_ERROR_IO,
                 {"not a regular file"});
}

// --- changed files -----------------------------------------------------------------------

TEST_CASE("check_unchanged finds a file modified after it was opened") {
    TempDir dir;
    const std::string path = dir / "m.safetensors";
    write(path, one_tensor("a"));
    ferry::load::WeightFile grown(path);
    grown.check_unchanged();
    {
        std::ofstream out(path, std::ios::binary | std::ios::app);
        out << "more";
    }
    expect_error([&] { grown.check_unchanged(); }, FERRY_ERROR_FILE_CHANGED,
                 {path, "was modified after it was opened"});

    // The same size, a new mtime (set explicitly: timestamps are coarser than a test).
    write(path, one_tensor("b"));
    ferry::load::WeightFile touched(path);
    const struct timespec times[2] = {{0, UTIME_OMIT}, {1000000, 0}};
    REQUIRE(utimensat(AT_FDCWD, path.c_str(), times, 0) == 0);
    expect_error([&] { touched.check_unchanged(); }, FERRY_ERROR_FILE_CHANGED,
                 {path, "was modified after it was opened", "new mtime"});
}

TEST_CASE("check_unchanged finds a file replaced or removed after it was opened") {
    TempDir dir;
    const std::string path = dir / "m.safetensors";
    write(path, one_tensor("a"));
    ferry::load::WeightFile file(path);
    write(dir / "new.safetensors", one_tensor("a"));
    fs::rename(dir / "new.safetensors", path);  // what a download tool does
    expect_error([&] { file.check_unchanged(); }, FERRY_ERROR_FILE_CHANGED,
                 {path, "was replaced after it was opened"});

    ferry::load::WeightFile again(path);
    fs::remove(path);
    expect_error([&] { again.check_unchanged(); }, FERRY_ERROR_FILE_CHANGED,
                 {path, "was replaced after it was opened", "gone"});
    // The open descriptor still reads the old bytes.
    char first = 0;
    CHECK(pread(again.fd(), &first, 1, 0) == 1);
}

TEST_CASE("direct_fd gives an O_DIRECT descriptor of the same file, or -1 where refused") {
    TempDir dir;
    const std::string path = dir / "m.safetensors";
    write(path, one_tensor("a"));
    ferry::load::WeightFile file(path);
    const int fd = file.direct_fd();
    REQUIRE(fd != -2);  // tried: a descriptor, or -1 where refused
    CHECK(file.direct_fd() == fd);  // opened once
    if (fd < 0) {
        // Said, not passed over: the same-file and replaced-file checks below need it.
        WARN("O_DIRECT is refused under " << fs::temp_directory_path()
                                          << ": only the refusal (-1) is checked");
    } else {
        struct stat a {
        }, b{};
        REQUIRE(fstat(fd, &a) == 0);
        REQUIRE(fstat(file.fd(), &b) == 0);
        CHECK(a.st_ino == b.st_ino);
        CHECK(a.st_dev == b.st_dev);
    }

    ferry::load::WeightFile replaced(path);
    write(dir / "new.safetensors", one_tensor("a"));
    fs::rename(dir / "new.safetensors", path);
    if (fd >= 0) {  // where the file system allows O_DIRECT at all
        expect_error([&] { replaced.direct_fd(); }, FERRY_ERROR_FILE_CHANGED,
                     {path, "was replaced"});
    } else {
        CHECK(replaced.direct_fd() == -1);
    }
}
