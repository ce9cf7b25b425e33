// Tests of train/tensorboard.hpp and MetricsLog's TensorBoard output (train/progress.hpp): CRC-32C
// against RFC 3720's vectors, protobuf varints against the encoding guide's examples, a file
// equal byte for byte to the one tensorboard's own EventFileWriter wrote for the same events
// (tests/fixtures/tensorboard/, made by tools/check_tensorboard.py make-fixture), and MetricsLog
// records read back through an independent TFRecord/protobuf reader written here.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include <unistd.h>

#include <nlohmann/json.hpp>

#include "mmalign/train/progress.hpp"
#include "mmalign/train/tensorboard.hpp"
#include "support/temp_dir.hpp"

using namespace mmalign;
namespace fs = std::filesystem;

namespace {

std::string read_file(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    REQUIRE_MESSAGE(f, "cannot open " << path);
    return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
}

std::string hex(const std::string& s) {
    static const char* d = "0123456789abcdef";
    std::string out;
    for (unsigned char c : s) out += d[c >> 4], out += d[c & 15];
    return out;
}

std::string varint(std::uint64_t v) {
    std::string s;
    tfevents::put_varint(s, v);
    return s;
}

std::vector<std::string> event_files(const fs::path& dir) {
    std::vector<std::string> out;
    for (const auto& e : fs::directory_iterator(dir))
        if (e.path().filename().string().rfind("events.out.tfevents.", 0) == 0) out.push_back(e.path().string());
    std::sort(out.begin(), out.end());
    return out;
}

// ---- an independent reader: TFRecords, then the few Event fields the writer uses -------------
struct ReadEvent {
    double wall_time = 0;
    std::int64_t step = 0;
    std::string file_version;
    bool session_start = false;
    std::vector<std::pair<std::string, float>> scalars;
};

std::uint32_t crc32c_bitwise(const std::string& s) {  // the definition, one bit at a time
    std::uint32_t c = 0xFFFFFFFFu;
    for (unsigned char b : s) {
        c ^= b;
        for (int k = 0; k < 8; ++k) c = (c >> 1) ^ (0x82F63B78u & (0u - (c & 1u)));
    }
    return ~c;
}

std::uint32_t masked(const std::string& s) {
    const std::uint32_t c = crc32c_bitwise(s);
    return ((c >> 15) | (c << 17)) + 0xa282ead8u;
}

struct Cursor {
    const std::string& s;
    std::size_t pos = 0;
    std::uint64_t var() {
        std::uint64_t v = 0;
        for (int shift = 0;; shift += 7) {
            REQUIRE(pos < s.size());
            const auto b = static_cast<unsigned char>(s[pos++]);
            v |= std::uint64_t(b & 0x7F) << shift;
            if (!(b & 0x80)) return v;
        }
    }
    std::string bytes(std::size_t n) {
        REQUIRE(pos + n <= s.size());
        std::string out = s.substr(pos, n);
        pos += n;
        return out;
    }
    template <class T>
    T fixed() {
        T v;
        const std::string b = bytes(sizeof(T));
        std::memcpy(&v, b.data(), sizeof(T));
        return v;
    }
};

// Calls f(field, wire type, varint value, bytes) for every field of a message.
template <class F>
void fields(const std::string& msg, F f) {
    Cursor c{msg};
    while (c.pos < msg.size()) {
        const std::uint64_t key = c.var();
        const int field = int(key >> 3), type = int(key & 7);
        if (type == 0) f(field, type, c.var(), std::string());
        else if (type == 1) f(field, type, 0, c.bytes(8));
        else if (type == 2) f(field, type, 0, c.bytes(std::size_t(c.var())));
        else if (type == 5) f(field, type, 0, c.bytes(4));
        else FAIL("unexpected wire type " << type);
    }
}

std::vector<ReadEvent> read_events(const std::string& path) {
    const std::string file = read_file(path);
    std::vector<ReadEvent> out;
    Cursor c{file};
    while (c.pos < file.size()) {
        const std::string len_bytes = c.bytes(8);
        std::uint64_t len;
        std::memcpy(&len, len_bytes.data(), 8);
        CHECK(c.fixed<std::uint32_t>() == masked(len_bytes));
        const std::string data = c.bytes(std::size_t(len));
        CHECK(c.fixed<std::uint32_t>() == masked(data));
        ReadEvent e;
        fields(data, [&](int field, int, std::uint64_t v, const std::string& b) {
            if (field == 1) std::memcpy(&e.wall_time, b.data(), 8);
            else if (field == 2) e.step = std::int64_t(v);
            else if (field == 3) e.file_version = b;
            else if (field == 7) fields(b, [&](int f, int, std::uint64_t status, const std::string&) { e.session_start |= f == 1 && status == 1; });
            else if (field == 5)
                fields(b, [&](int, int, std::uint64_t, const std::string& value) {
                    std::pair<std::string, float> sv;
                    fields(value, [&](int f, int, std::uint64_t, const std::string& x) {
                        if (f == 1) sv.first = x;
                        if (f == 2) std::memcpy(&sv.second, x.data(), 4);
                    });
                    e.scalars.push_back(sv);
                });
        });
        out.push_back(e);
    }
    return out;
}

float special(const nlohmann::json& v) {
    if (!v.is_string()) return v.get<float>();
    const std::string s = v.get<std::string>();
    if (s == "nan") return std::numeric_limits<float>::quiet_NaN();
    return s == "inf" ? std::numeric_limits<float>::infinity() : -std::numeric_limits<float>::infinity();
}

}  // namespace

TEST_CASE("crc32c gives RFC 3720's check values and the masked form round-trips") {
    const std::string digits = "123456789";
    CHECK(tfevents::crc32c(digits.data(), digits.size()) == 0xE3069283u);
    const std::string zeros(32, '\0'), ones(32, '\xFF');
    std::string up, down;
    for (int i = 0; i < 32; ++i) up += char(i), down += char(31 - i);
    CHECK(tfevents::crc32c(zeros.data(), 32) == 0x8A9136AAu);
    CHECK(tfevents::crc32c(ones.data(), 32) == 0x62A8AB43u);
    CHECK(tfevents::crc32c(up.data(), 32) == 0x46DD794Eu);
    CHECK(tfevents::crc32c(down.data(), 32) == 0x113FDB5Cu);
    // Continuing a CRC over a second piece equals one pass over both.
    CHECK(tfevents::crc32c(digits.data() + 4, 5, tfevents::crc32c(digits.data(), 4)) == 0xE3069283u);
    // TensorFlow's mask: rotate right by 15, add 0xa282ead8; unmasking restores the CRC.
    const std::uint32_t m = tfevents::masked_crc32c(digits.data(), digits.size());
    const std::uint32_t r = m - 0xa282ead8u;
    CHECK(((r >> 17) | (r << 15)) == 0xE3069283u);
}

TEST_CASE("varints are base-128 little-endian groups and a negative int64 takes ten bytes") {
    CHECK(hex(varint(0)) == "00");
    CHECK(hex(varint(1)) == "01");
    CHECK(hex(varint(127)) == "7f");
    CHECK(hex(varint(128)) == "8001");
    CHECK(hex(varint(150)) == "9601");  // the protobuf encoding guide's example
    CHECK(hex(varint(300)) == "ac02");
    CHECK(hex(varint(std::uint64_t(1) << 40)) == "808080808020");
    CHECK(hex(varint(std::numeric_limits<std::uint64_t>::max())) == "ffffffffffffffffff01");
    CHECK(hex(varint(std::uint64_t(std::int64_t(-1)))) == "ffffffffffffffffff01");
    std::string key;
    tfevents::put_key(key, 5, tfevents::WireType::length_delimited);
    CHECK(hex(key) == "2a");  // Event.summary: (5 << 3) | 2
}

TEST_CASE("TensorBoardWriter writes the bytes tensorboard's EventFileWriter writes for the same events") {
    const std::string dir = MMALIGN_FIXTURE_DIR "/tensorboard";
    const auto spec = nlohmann::json::parse(read_file(dir + "/scalars.json"));
    const std::string expected = read_file(dir + "/scalars.tfevents");
    test::TempDir tmp;
    std::string path;
    {
        TensorBoardWriter w(tmp.path.string(), {.wall_time = spec["wall_time"].get<double>(),
                                                .writer = spec["writer"].get<std::string>()});
        path = w.path();
        for (const auto& ev : spec["events"]) {
            const double t = ev["wall_time"].get<double>();
            const std::int64_t step = ev["step"].get<std::int64_t>();
            if (ev.value("session_start", false)) {
                w.add_session_start(step, t);
                continue;
            }
            std::vector<std::pair<std::string, float>> values;
            for (const auto& sv : ev["scalars"]) values.emplace_back(sv[0].get<std::string>(), special(sv[1]));
            w.add_scalars(step, values, t);
        }
    }
    const std::string got = read_file(path);
    CHECK(got.size() == expected.size());
    CHECK(hex(got) == hex(expected));
    // The name TensorFlow gives: events.out.tfevents.<10-digit seconds>.<this host>.
    char host[256] = {};
    REQUIRE(::gethostname(host, sizeof host - 1) == 0);
    CHECK(fs::path(path).filename().string() == std::string("events.out.tfevents.1700000000.") + host);
}

TEST_CASE("a second writer in the same folder and second gets a file of its own") {
    test::TempDir tmp;
    TensorBoardWriter a(tmp.path.string(), {.wall_time = 1.7e9});
    TensorBoardWriter b(tmp.path.string(), {.wall_time = 1.7e9});
    a.add_scalar("x", 1.f, 1, 1.7e9 + 1);
    b.add_scalar("x", 2.f, 1, 1.7e9 + 1);
    CHECK(a.path() != b.path());
    REQUIRE(event_files(tmp.path).size() == 2);
    const auto ea = read_events(a.path()), eb = read_events(b.path());
    REQUIRE(ea.size() == 2);
    REQUIRE(eb.size() == 2);
    CHECK(ea[0].file_version == "brain.Event:2");
    CHECK(ea[1].scalars.at(0).second == 1.f);
    CHECK(eb[1].scalars.at(0).second == 2.f);
}

TEST_CASE("MetricsLog writes every numeric field but step as a scalar at the record's step, flushed per record") {
    test::TempDir tmp;
    const std::string tb = tmp / "tb";
    MetricsLog log(tmp / "metrics.jsonl", false, {.tensorboard_dir = tb});
    REQUIRE(log.tensorboard() != nullptr);
    log.write({{"step", 0}, {"loss", 5.5}, {"lr", 2e-3}, {"name", "not a number"}, {"ok", true}});
    log.write({{"step", 10}, {"loss", 4.125}, {"epoch", 0.0427}});
    log.write({{"step", 20}, {"note", "no numbers"}});
    // Read while the log is still open: every record is on disk already.
    const auto files = event_files(tb);
    REQUIRE(files.size() == 1);
    const auto ev = read_events(files[0]);
    REQUIRE(ev.size() == 4);  // file_version, a START at step 0, then one event per record with numbers
    CHECK(ev[0].file_version == "brain.Event:2");
    CHECK(ev[1].session_start);  // a fresh run: TensorBoard drops what earlier runs left in the folder
    CHECK(ev[1].step == 0);
    CHECK(ev[2].step == 0);
    REQUIRE(ev[2].scalars.size() == 2);
    std::map<std::string, float> first(ev[2].scalars.begin(), ev[2].scalars.end());
    CHECK(first.at("loss") == 5.5f);
    CHECK(first.at("lr") == 2e-3f);
    CHECK(ev[3].step == 10);
    std::map<std::string, float> second(ev[3].scalars.begin(), ev[3].scalars.end());
    CHECK(second.at("loss") == 4.125f);
    CHECK(second.at("epoch") == 0.0427f);
    CHECK(ev[2].wall_time > 1.6e9);  // seconds since 1970, now
    // The JSONL is unchanged by the TensorBoard output.
    CHECK(read_file(tmp / "metrics.jsonl") ==
          "{\"loss\":5.5,\"lr\":0.002,\"name\":\"not a number\",\"ok\":true,\"step\":0}\n"
          "{\"epoch\":0.0427,\"loss\":4.125,\"step\":10}\n{\"note\":\"no numbers\",\"step\":20}\n");
}

TEST_CASE("MetricsLog with TensorBoard refuses a record without an integer step, before writing it") {
    test::TempDir tmp;
    MetricsLog log(tmp / "metrics.jsonl", false, {.tensorboard_dir = tmp / "tb"});
    CHECK_THROWS_AS(log.write({{"loss", 1.0}}), ArgumentError);
    CHECK_THROWS_AS(log.write({{"step", 1.5}, {"loss", 1.0}}), ArgumentError);
    CHECK(read_file(tmp / "metrics.jsonl").empty());
    MetricsLog plain(tmp / "plain.jsonl");  // without TensorBoard any JSON goes
    CHECK_NOTHROW(plain.write({{"loss", 1.0}}));
    CHECK(plain.tensorboard() == nullptr);
}

TEST_CASE("a resumed MetricsLog starts a new event file with a SessionLog START at its first step") {
    test::TempDir tmp;
    const std::string tb = tmp / "tb";
    {
        MetricsLog log(tmp / "metrics.jsonl", false, {.tensorboard_dir = tb});
        log.write({{"step", 10}, {"loss", 3.0}});
    }
    std::vector<std::string> before = event_files(tb);
    REQUIRE(before.size() == 1);
    {
        MetricsLog log(tmp / "metrics.jsonl", true, {.tensorboard_dir = tb});
        log.write({{"step", 20}, {"loss", 2.0}});
        log.write({{"step", 30}, {"loss", 1.0}});
    }
    const auto files = event_files(tb);
    REQUIRE(files.size() == 2);
    const std::string resumed = files[0] == before[0] ? files[1] : files[0];
    const auto ev = read_events(resumed);
    REQUIRE(ev.size() == 4);
    CHECK(ev[1].session_start);
    CHECK(ev[1].step == 20);
    CHECK(ev[2].step == 20);
    CHECK(ev[3].step == 30);
    CHECK(read_events(before[0]).size() == 3);  // the first run's file is untouched
    {
        // A resume that names its checkpoint's step puts the START there, before its first record.
        MetricsLog log(tmp / "metrics.jsonl", true, {.tensorboard_dir = tmp / "tb2", .start_step = 15});
        log.write({{"step", 20}, {"loss", 2.0}});
    }
    const auto third = read_events(event_files(tmp / "tb2").at(0));
    REQUIRE(third.size() == 3);
    CHECK(third[1].session_start);
    CHECK(third[1].step == 15);
}
