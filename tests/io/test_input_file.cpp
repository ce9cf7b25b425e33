// Property: open_input_file / read_input_file refuse every non-regular, empty, oversized or missing
// file by its kind in one line naming the file, without blocking on a FIFO, and read a regular file
// whole; the shared hostile-input harness itself tells a refusing reader from a broken one.
#include <doctest/doctest.h>

#include <thread>

#include "mmalign/io/input_file.hpp"
#include "support/hostile_inputs.hpp"
#include "support/temp_dir.hpp"

using namespace mmalign;
using mmalign::test::TempDir;

namespace {
std::string error_of(const std::string& path, std::uintmax_t cap = 1000) {
    try {
        io::read_input_file(path, cap, "reader");
    } catch (const IoError& e) {
        return e.what();
    }
    return "";
}
}  // namespace

TEST_CASE("read_input_file reads a regular file whole and names every refusal's kind") {
    TempDir tmp;
    CHECK(io::read_input_file(tmp.file("a.txt", "hello"), 100, "reader") == "hello");
    CHECK(error_of(tmp / "nothing") == "reader: '" + (tmp / "nothing") + "': no such file");
    CHECK(error_of(tmp.path.string()) == "reader: '" + tmp.path.string() + "': a directory, not a regular file");
    REQUIRE(::mkfifo((tmp / "fifo").c_str(), 0600) == 0);
    CHECK(error_of(tmp / "fifo") == "reader: '" + (tmp / "fifo") + "': a FIFO (named pipe), not a regular file");
    CHECK(error_of("/dev/zero") == "reader: '/dev/zero': a character device, not a regular file");
    CHECK(error_of(tmp.file("e", "")) == "reader: '" + (tmp / "e") + "': the file is empty");
    CHECK(io::read_input_file(tmp / "e", 10, "reader", /*allow_empty=*/true).empty());
    CHECK(error_of(tmp.file("big", std::string(1001, 'x'))) ==
          "reader: '" + (tmp / "big") + "': 1001 bytes, more than the 1000 this reader accepts");
    CHECK(error_of(tmp.file("ok", std::string(1000, 'x'))).empty());
    // A control character in a path is escaped: the message stays one line.
    CHECK(error_of(tmp / "a\nb") == "reader: '" + tmp.path.string() + "/a\\x0ab': no such file");
}

TEST_CASE("the harness passes a reader that refuses every hostile variant cleanly") {
    TempDir tmp;
    mmalign::test::HostileReader r;
    r.name = "read_input_file";
    r.valid = tmp.file("data.bin", "0123456789abcdef");
    r.cap_bytes = 64;
    // A strict reader: anything but the exact valid bytes is refused, named by file.
    r.read = [](const std::filesystem::path& f) {
        if (io::read_input_file(f.string(), 64, "strict") != "0123456789abcdef")
            io::input_file_fail("strict", f.string(), "not the expected bytes");
    };
    r.every_truncation_fails = true;
    r.wrong_type = {"{\"json\": true}"};
    mmalign::test::check_hostile_inputs(r);
}

TEST_CASE("the harness reports a hang, a crash, a foreign exception and an unnamed file") {
    TempDir tmp;
    mmalign::test::HostileReader r;
    r.name = "broken";
    r.valid = tmp.file("x.json", "{}");
    r.seconds = 0.5;
    using K = mmalign::test::HostileOutcome::Kind;
    auto kind_of = [&](const std::string& variant) {
        for (const auto& o : mmalign::test::run_hostile_inputs(r))
            if (o.variant == variant) return o.kind;
        FAIL("no variant " << variant);
        return K::crashed;
    };
    r.read = [](const std::filesystem::path& f) {
        if (std::filesystem::is_fifo(f)) std::this_thread::sleep_for(std::chrono::seconds(30));
        if (std::filesystem::is_directory(f)) std::abort();
        if (!std::filesystem::exists(f)) throw std::runtime_error("gone");
        throw IoError("something is wrong");
    };
    CHECK(kind_of("fifo") == K::timed_out);
    CHECK(kind_of("directory") == K::crashed);
    CHECK(kind_of("missing") == K::other_exception);
    CHECK(kind_of("empty") == K::refused);
}
