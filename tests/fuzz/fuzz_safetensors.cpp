// tests/fuzz/fuzz_safetensors.cpp — libFuzzer target for the safetensors reader.
//
// Each input is a whole file, parsed from memory (SafetensorsFile::parse runs the same checks as
// open(), which only adds the mapping). Every tensor it accepts is read in each type its dtype
// allows and all its raw bytes are touched, then loaded into a small module with and without a
// prefix and the LoadOptions waivers. mmalign::Error is the reader's only permitted way to
// refuse; anything else — another exception, a sanitizer report, a crash, a leak — is a bug.
// Seeds: tests/fixtures/safetensors_bad/ and safetensors_good/ (see tests/fuzz/CMakeLists.txt).
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "mmalign/io/safetensors.hpp"

namespace {

using namespace mmalign;

struct Module {
    Parameter<float> w{Shape{2, 3}}, b{Shape{3}};
    Parameter<double> s{Shape{}};
    template <class F>
    void visit(F&& f, const std::string& prefix = "") {
        f(join_name(prefix, "w"), w);
        f(join_name(prefix, "b"), b);
        f(join_name(prefix, "s"), s);
    }
};

template <class T>
void try_read(const io::SafetensorsFile& f, const std::string& name) {
    try {
        const Tensor<T> t = f.read<T>(name);
        volatile T sink{};
        for (const T& v : t) sink = v;  // touch every converted element
        (void)sink;
    } catch (const Error&) {
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    std::vector<std::byte> bytes(size);
    if (size) std::memcpy(bytes.data(), data, size);
    try {
        const auto f = io::SafetensorsFile::parse(std::move(bytes), "fuzz");
        for (const auto& name : f.names()) {
            const io::TensorInfo& e = f.info(name);
            const auto raw = f.bytes(name);
            if (raw.size() != e.nbytes() || static_cast<std::uint64_t>(e.shape.numel()) * io::itemsize(e.dtype) != raw.size())
                __builtin_trap();  // the validated header must describe the bytes exactly
            unsigned sum = 0;
            for (std::byte x : raw) sum += std::to_integer<unsigned>(x);
            volatile unsigned sink = sum;
            (void)sink;
            (void)e.shape.rows();
            try_read<float>(f, name);
            try_read<double>(f, name);
            try_read<std::int64_t>(f, name);
            try_read<std::uint8_t>(f, name);
            try_read<std::int32_t>(f, name);
        }
        for (const char* prefix : {"", "m."}) {
            for (const io::LoadOptions& opt : {io::LoadOptions{}, io::LoadOptions{.allow_unexpected = true, .allow_missing = true}}) {
                Module m;
                try {
                    io::load_parameters(m, f, prefix, opt);
                } catch (const Error&) {
                }
            }
        }
    } catch (const Error&) {
    }
    return 0;
}
