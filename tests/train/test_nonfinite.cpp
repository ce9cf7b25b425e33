// Tests of train/nonfinite.hpp and the guards built on it: the scan of a safetensors file finds
// NaN and infinities in F32, F64, F16 and BF16 tensors (named, with the element) and passes the
// largest finite values; the first non-finite gradient and weight of a module are named;
// TrainStep with skip_nonfinite leaves weights, moments and step count untouched where torch's
// behaviour (the default) applies the step; load_checkpoint refuses a checkpoint whose optimizer
// state holds an infinity unless CheckpointOptions::allow_nonfinite.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <string>
#include <vector>

#include <unistd.h>

#include "mmalign/backend/cpu/backend.hpp"
#include "mmalign/io/safetensors.hpp"
#include "mmalign/train/adamw.hpp"
#include "mmalign/train/checkpoint.hpp"
#include "mmalign/train/nonfinite.hpp"
#include "mmalign/train/train_step.hpp"

using namespace mmalign;
using Be = CpuBackend<float>;
namespace fs = std::filesystem;

namespace {

constexpr float nan_f = std::numeric_limits<float>::quiet_NaN();
constexpr float inf_f = std::numeric_limits<float>::infinity();

std::string scratch(const std::string& name) {
    return (fs::temp_directory_path() / ("mmalign_nonfinite_" + name + "_" + std::to_string(::getpid()))).string();
}

/// A safetensors file of one tensor `name` of `dtype` holding `bytes` (written by hand: the
/// writer stores F32 and F64 only).
void write_one(const std::string& path, const std::string& name, const std::string& dtype, const std::vector<std::uint8_t>& bytes,
               std::size_t count) {
    std::string header = "{\"" + name + "\":{\"dtype\":\"" + dtype + "\",\"shape\":[" + std::to_string(count) +
                         "],\"data_offsets\":[0," + std::to_string(bytes.size()) + "]}}";
    header.resize((header.size() + 7) / 8 * 8, ' ');
    std::ofstream out(path, std::ios::binary);
    const std::uint64_t n = header.size();
    out.write(reinterpret_cast<const char*>(&n), 8);
    out.write(header.data(), std::streamsize(header.size()));
    out.write(reinterpret_cast<const char*>(bytes.data()), std::streamsize(bytes.size()));
}

std::vector<std::uint8_t> halves(std::initializer_list<std::uint16_t> v) {
    std::vector<std::uint8_t> out;
    for (std::uint16_t h : v) out.push_back(std::uint8_t(h & 0xFF)), out.push_back(std::uint8_t(h >> 8));
    return out;
}

/// w [1, 3]; the loss is Σ w (gradient 1 everywhere) unless poisoned.
struct Weights {
    Parameter<float> weight{Shape{1, 3}};
    template <class F>
    void visit(F&& f, const std::string& prefix = "") {
        f(join_name(prefix, "weight"), weight);
    }
};

struct SumTask {
    struct Batch {};
    struct Result {
        double loss = 0;
    };
    Weights& model;
    float gradient_poison = 0;  // non-zero: element 1 of the gradient gets this value

    Weights& module() { return model; }
    Result loss_and_backward(Be&, const Batch&, float seed) {
        if (!model.weight.has_grad()) model.weight.grad = Tensor<float>(model.weight.value.shape(), 0.f);  // [1, 3]
        double loss = 0;
        for (int i = 0; i < 3; ++i) {
            loss += model.weight.value.data()[i];
            model.weight.grad.data()[i] += seed;
        }
        if (gradient_poison != 0) model.weight.grad.data()[1] = gradient_poison;
        return {loss};
    }
};

}  // namespace

TEST_CASE("first_nonfinite_tensor: NaN and infinities in F32, F64, F16 and BF16 are found and named; max finite values pass") {
    const std::string dir = scratch("scan");
    fs::create_directories(dir);
    {
        const std::vector<float> v = {1.f, std::numeric_limits<float>::max(), -inf_f};  // [3]
        io::save_safetensors(dir + "/f32.safetensors", {io::TensorToSave("a", Shape{3}, v.data())});
        const auto hit = first_nonfinite_tensor(io::SafetensorsFile::open(dir + "/f32.safetensors"));
        REQUIRE(hit);
        CHECK(hit->str() == "'a'[2] = -inf");
    }
    {
        Tensor<double> d(Shape{2}, 0.0);  // [2]
        d.data()[1] = std::numeric_limits<double>::quiet_NaN();
        io::save_safetensors(dir + "/f64.safetensors", {io::TensorToSave("d", d.view())});
        const auto hit = first_nonfinite_tensor(io::SafetensorsFile::open(dir + "/f64.safetensors"));
        REQUIRE(hit);
        CHECK(hit->str() == "'d'[1] = nan");
    }
    // IEEE half: 0x7BFF is the largest finite (65504), 0x7C00 +inf, 0xFE00 a negative NaN.
    write_one(dir + "/f16.safetensors", "h", "F16", halves({0x7BFF, 0xFBFF, 0x7C00}), 3);
    auto hit = first_nonfinite_tensor(io::SafetensorsFile::open(dir + "/f16.safetensors"));
    REQUIRE(hit);
    CHECK(hit->str() == "'h'[2] = inf");
    write_one(dir + "/f16_finite.safetensors", "h", "F16", halves({0x7BFF, 0xFBFF, 0x0001}), 3);
    CHECK(!first_nonfinite_tensor(io::SafetensorsFile::open(dir + "/f16_finite.safetensors")));
    write_one(dir + "/f16_nan.safetensors", "h", "F16", halves({0x3C00, 0xFE00}), 2);
    hit = first_nonfinite_tensor(io::SafetensorsFile::open(dir + "/f16_nan.safetensors"));
    REQUIRE(hit);
    CHECK(hit->str() == "'h'[1] = nan");
    // bfloat16: 0x7F7F is the largest finite, 0xFF80 −inf.
    write_one(dir + "/bf16.safetensors", "b", "BF16", halves({0x7F7F, 0xFF80}), 2);
    hit = first_nonfinite_tensor(io::SafetensorsFile::open(dir + "/bf16.safetensors"));
    REQUIRE(hit);
    CHECK(hit->str() == "'b'[1] = -inf");
    // Integer tensors hold no NaN whatever their bits are.
    write_one(dir + "/i32.safetensors", "i", "I32", {0x00, 0x00, 0xC0, 0x7F}, 1);
    CHECK(!first_nonfinite_tensor(io::SafetensorsFile::open(dir + "/i32.safetensors")));
    fs::remove_all(dir);
}

TEST_CASE("first_nonfinite_gradient and first_nonfinite_parameter name the parameter and the element") {
    Be be;
    Weights m;
    std::fill(m.weight.value.begin(), m.weight.value.end(), 1.f);
    CHECK(!first_nonfinite_gradient(be, m));  // no gradient yet
    CHECK(!first_nonfinite_parameter(be, m));
    m.weight.grad = Tensor<float>(Shape{1, 3}, 0.f);  // [1, 3]
    m.weight.grad.data()[2] = inf_f;
    m.weight.value.data()[1] = nan_f;
    REQUIRE(first_nonfinite_gradient(be, m));
    CHECK(first_nonfinite_gradient(be, m)->str() == "'weight'[2] = inf");
    CHECK(first_nonfinite_parameter(be, m)->str() == "'weight'[1] = nan");
}

TEST_CASE("TrainStep skip_nonfinite: a NaN gradient changes no weight, moment or step count; the default applies it as torch") {
    Be be;
    for (const bool skip : {true, false}) {
        Weights m;
        std::fill(m.weight.value.begin(), m.weight.value.end(), 0.5f);
        AdamW<Be> opt({.lr = 0.1, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8, .weight_decay = 0});
        TrainStep<Be> step(opt, {.max_grad_norm = 1.0, .skip_nonfinite = skip});
        SumTask task{m};
        const auto first = step(be, task, SumTask::Batch{}, 0.1);  // a finite step: both apply it
        CHECK(!first.nonfinite);
        CHECK(!first.skipped);
        const std::vector<float> before(m.weight.value.begin(), m.weight.value.end());
        const std::vector<float> m1(opt.state()["weight"].exp_avg.begin(), opt.state()["weight"].exp_avg.end());
        task.gradient_poison = nan_f;
        const auto r = step(be, task, SumTask::Batch{}, 0.1);
        CHECK(r.nonfinite);
        CHECK(std::isnan(r.grad_norm));
        if (skip) {
            CHECK(r.skipped);
            CHECK(opt.step_count() == 1);
            CHECK(std::memcmp(before.data(), m.weight.value.data(), sizeof(float) * 3) == 0);
            CHECK(std::memcmp(m1.data(), opt.state()["weight"].exp_avg.data(), sizeof(float) * 3) == 0);
        } else {
            CHECK(!r.skipped);
            CHECK(opt.step_count() == 2);
            CHECK(std::isnan(m.weight.value.data()[1]));  // what the guards above the step are for
        }
    }
}

TEST_CASE("load_checkpoint refuses an infinity in the optimizer state unless allow_nonfinite, and loads nothing") {
    const std::string dir = scratch("ckpt");
    fs::create_directories(dir);
    Be be;
    Weights m;
    std::fill(m.weight.value.begin(), m.weight.value.end(), 0.25f);
    AdamW<Be> opt({.lr = 0.1, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8, .weight_decay = 0});
    TrainStep<Be> step(opt);
    SumTask task{m};
    step(be, task, SumTask::Batch{}, 0.1);
    opt.state()["weight"].exp_avg_sq.data()[2] = inf_f;
    const std::string path = dir + "/ckpt.safetensors";
    save_checkpoint(path, m, opt, 1);

    Weights fresh;
    std::fill(fresh.weight.value.begin(), fresh.weight.value.end(), 7.f);
    AdamW<Be> fresh_opt({.lr = 0.1});
    std::string message;
    try {
        load_checkpoint(path, fresh, fresh_opt);
    } catch (const IoError& e) {
        message = e.what();
    }
    CHECK(message.find("checkpoint '" + path + "': tensor 'optim.weight.exp_avg_sq'[2] = inf: the checkpoint holds a "
                       "non-finite value") != std::string::npos);
    CHECK(fresh.weight.value.data()[0] == 7.f);  // nothing written
    CHECK(fresh_opt.step_count() == 0);
    CHECK(load_checkpoint(path, fresh, fresh_opt, {.allow_nonfinite = true}) == 1);
    CHECK(fresh.weight.value.data()[0] == m.weight.value.data()[0]);
    CHECK(std::isinf(fresh_opt.state()["weight"].exp_avg_sq.data()[2]));
    fs::remove_all(dir);
}
