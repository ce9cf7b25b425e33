// Tests of train/trainer.hpp, train/run_directory.hpp and LAVIS's schedule in train/schedule.hpp,
// on a least-squares task whose data is a function of the micro-batch index: the schedule's values
// against its formula, one run per output directory, stale temporaries of dead writers removed and
// live ones kept, a run stopped and resumed equal to the uninterrupted run bit for bit (weights and
// metrics), metrics past the resumed checkpoint dropped, a finished run resumed with fewer steps
// refused, a non-finite loss stopping the run with the step and the parameter named (or skipped
// and counted when asked), a checkpoint holding NaN refused on resume unless allowed, a record
// torn by a kill dropped, and the checkpoint-<step> folders written per save strategy.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <sys/wait.h>
#include <unistd.h>

#include "mmalign/backend/cpu/backend.hpp"
#include "mmalign/io/safetensors.hpp"
#include "mmalign/train/run_directory.hpp"
#include "mmalign/train/schedule.hpp"
#include "mmalign/train/trainer.hpp"

using namespace mmalign;
using Be = CpuBackend<float>;
namespace fs = std::filesystem;

namespace {

/// y = x·wᵀ fitted by mean squared error; w [1, D].
struct Regression {
    Parameter<float> weight{Shape{1, 4}};
    template <class F>
    void visit(F&& f, const std::string& prefix = "") {
        f(join_name(prefix, "weight"), weight);
    }
};

struct RegressionTask {
    struct Batch {
        std::vector<float> x, y;  // [n, D], [n]
    };
    struct Result {
        double loss = 0;
    };
    Regression& model;
    bool poison = false;  // the loss becomes NaN

    Regression& module() { return model; }
    Result loss_and_backward(Be&, const Batch& b, float seed) {
        const std::size_t D = 4, n = b.y.size();
        double loss = 0;
        if (!model.weight.has_grad()) {
            model.weight.grad = Tensor<float>(model.weight.value.shape());  // [1, D]
            std::fill(model.weight.grad.begin(), model.weight.grad.end(), 0.f);
        }
        for (std::size_t i = 0; i < n; ++i) {
            double p = 0;
            for (std::size_t d = 0; d < D; ++d) p += double(model.weight.value.data()[d]) * b.x[i * D + d];
            const double r = p - b.y[i];
            loss += r * r / double(n);
            for (std::size_t d = 0; d < D; ++d)
                model.weight.grad.data()[d] += float(seed * 2.0 * r * b.x[i * D + d] / double(n));
        }
        if (poison) loss = std::numeric_limits<double>::quiet_NaN();
        return {loss};
    }
};

/// The regression whose gradient turns NaN on the calls listed (1-based; one call per step here).
struct PoisonedGradientTask : RegressionTask {
    std::vector<int> poisoned_calls;
    int calls = 0;
    Result loss_and_backward(Be& be, const Batch& b, float seed) {
        const Result r = RegressionTask::loss_and_backward(be, b, seed);
        ++calls;
        if (std::find(poisoned_calls.begin(), poisoned_calls.end(), calls) != poisoned_calls.end())
            model.weight.grad.data()[2] = std::numeric_limits<float>::quiet_NaN();
        return r;
    }
};

/// Micro-batch i: 3 rows from a generator seeded by i (the data of a step is a function of i).
struct Held {
    RegressionTask::Batch batch;
};
Held data(long i) {
    Held h;
    std::uint64_t s = 0x9E3779B97F4A7C15ULL * std::uint64_t(i + 1);
    auto next = [&] {
        s ^= s << 13, s ^= s >> 7, s ^= s << 17;
        return float(s % 2001) / 1000.f - 1.f;
    };
    for (int r = 0; r < 3; ++r) {
        float y = 0;
        for (int d = 0; d < 4; ++d) {
            const float x = next();
            h.batch.x.push_back(x);
            y += x * float(d + 1);
        }
        h.batch.y.push_back(y);
    }
    return h;
}

std::string fresh_dir(const std::string& name) {
    const fs::path p = fs::temp_directory_path() / ("mmalign_trainer_" + name + "_" + std::to_string(::getpid()));
    fs::remove_all(p);
    return p.string();
}

TrainingArguments args_for(const std::string& dir) {
    TrainingArguments t;
    t.output_dir = dir;
    t.per_device_train_batch_size = 3;
    t.learning_rate = 0.05;
    t.warmup_steps = 2;
    t.warmup_start_lr = 0.01;
    t.num_train_epochs = 3;
    t.logging_steps = 1;
    t.weight_decay = 0;
    t.save_strategy = SaveStrategy::epoch;
    return t;
}

std::vector<float> train(TrainingArguments t, long micro_per_epoch, bool poison = false) {
    Be be;
    Regression m;
    RegressionTask task{m, poison};
    Trainer<Be> trainer(t, micro_per_epoch);
    auto save = [&](const std::string& dir) { io::save_parameters(be, m, dir + "/model.safetensors"); };
    auto describe = [](const RegressionTask::Result&) { return nlohmann::json::object(); };
    trainer.run(be, task, data, save, describe, "test");
    return {m.weight.value.data(), m.weight.value.data() + 4};
}

/// Trains with the gradient poisoned on `calls`; returns the weights (the trainer's error propagates).
std::vector<float> train_poisoned(TrainingArguments t, std::vector<int> calls) {
    Be be;
    Regression m;
    PoisonedGradientTask task{{m}, std::move(calls)};
    Trainer<Be> trainer(t, 4);
    auto save = [&](const std::string& dir) { io::save_parameters(be, m, dir + "/model.safetensors"); };
    auto describe = [](const RegressionTask::Result&) { return nlohmann::json::object(); };
    trainer.run(be, task, data, save, describe, "test");
    return {m.weight.value.data(), m.weight.value.data() + 4};
}

std::vector<nlohmann::json> records(const std::string& dir) {
    std::ifstream in(dir + "/metrics.jsonl");
    std::vector<nlohmann::json> out;
    for (std::string line; std::getline(in, line);) out.push_back(nlohmann::json::parse(line));
    return out;
}

}  // namespace

TEST_CASE("LAVIS's linear_warmup_cosine_lr: linear warm-up inside epoch 0, then one cosine value per epoch") {
    const LinearWarmupCosineByEpoch s{.base_lr = 1e-4, .warmup_start_lr = 1e-6, .eta_min = 1e-5, .warmup = 4, .epochs = 4};
    CHECK(s(0, 0) == doctest::Approx(1e-6));
    CHECK(s(0, 2) == doctest::Approx(1e-6 + (1e-4 - 1e-6) * 0.5));
    CHECK(s(0, 4) == doctest::Approx(1e-4));
    CHECK(s(0, 100) == doctest::Approx(1e-4));  // min(max_lr, …) after the warm-up
    CHECK(s(2, 0) == doctest::Approx(1e-5 + 0.5 * (1e-4 - 1e-5) * (1 + std::cos(M_PI * 2 / 4))));
    CHECK(s(2, 0) == s(2, 7));  // constant within an epoch
}

TEST_CASE("RunDirectory: a second run on the same output directory is refused with the holder's pid") {
    const std::string dir = fresh_dir("lock");
    {
        RunDirectory first(dir);
        std::string message;
        try {
            RunDirectory second(dir);
        } catch (const IoError& e) {
            message = e.what();
        }
        CHECK(message.find("another run writes this output directory (pid " + std::to_string(::getpid())) != std::string::npos);
    }
    CHECK_NOTHROW(RunDirectory again(dir));  // released when the first is gone
    fs::remove_all(dir);
}

TEST_CASE("RunDirectory removes the temporary files of dead writers and keeps a live writer's") {
    const std::string dir = fresh_dir("stale");
    fs::create_directories(dir + "/checkpoint-3");
    const pid_t child = ::fork();
    if (child == 0) ::_exit(0);
    ::waitpid(child, nullptr, 0);  // its pid is now a dead writer's
    const std::string dead = dir + "/checkpoint-3/model.safetensors.tmp." + std::to_string(child) + ".0";
    const std::string live = dir + "/metrics.jsonl.tmp." + std::to_string(::getppid()) + ".1";
    const std::string other = dir + "/notes.tmp.txt";
    for (const auto& p : {dead, live, other}) std::ofstream(p) << "x";
    RunDirectory run(dir);
    CHECK(run.remove_stale_temporaries() == 1);
    CHECK(!fs::exists(dead));
    CHECK(fs::exists(live));
    CHECK(fs::exists(other));
    fs::remove_all(dir);
}

TEST_CASE("Trainer: a run stopped after a checkpoint and resumed equals the uninterrupted run bit for bit") {
    const std::string whole = fresh_dir("whole"), parts = fresh_dir("parts");
    const std::vector<float> w_whole = train(args_for(whole), 4);
    TrainingArguments first = args_for(parts);
    first.max_steps = 8;  // two of the three epochs, saved at each epoch's end
    train(first, 4);
    CHECK(fs::exists(parts + "/checkpoint-4/" + Trainer<Be>::state_file));
    CHECK(fs::exists(parts + "/checkpoint-8/model.safetensors"));
    // What a killed run leaves after its last checkpoint: a metrics record past step 8.
    std::ofstream(parts + "/metrics.jsonl", std::ios::app) << R"({"step": 9, "loss": 123.0})" << "\n";
    TrainingArguments rest = args_for(parts);
    rest.resume = true;
    const std::vector<float> w_parts = train(rest, 4);
    CHECK(std::memcmp(w_whole.data(), w_parts.data(), sizeof(float) * 4) == 0);
    const auto a = records(whole), b = records(parts);
    REQUIRE(a.size() == 12);
    REQUIRE(b.size() == 12);  // steps 1..12 once each: the stale step-9 record was dropped
    for (std::size_t i = 0; i < a.size(); ++i) {
        CHECK(b[i]["step"] == long(i + 1));
        CHECK(a[i]["loss"].get<double>() == b[i]["loss"].get<double>());
        CHECK(a[i]["lr"].get<double>() == b[i]["lr"].get<double>());
    }
    CHECK(a.back()["loss"].get<double>() < a.front()["loss"].get<double>());
    fs::remove_all(whole);
    fs::remove_all(parts);
}

TEST_CASE("Trainer: resuming a run whose checkpoint is past the steps asked for is an error") {
    const std::string dir = fresh_dir("past");
    train(args_for(dir), 4);
    TrainingArguments fewer = args_for(dir);
    fewer.resume = true;
    fewer.max_steps = 8;
    std::string message;
    try {
        train(fewer, 4);
    } catch (const ArgumentError& e) {
        message = e.what();
    }
    CHECK(message.find("the checkpoint is at step 12, past the 8 steps these arguments give") != std::string::npos);
    fs::remove_all(dir);
}

TEST_CASE("Trainer: a non-finite loss stops the run naming the step; --resume without a checkpoint is named") {
    const std::string dir = fresh_dir("nan");
    std::string message;
    try {
        train(args_for(dir), 4, /*poison=*/true);
    } catch (const Error& e) {
        message = e.what();
    }
    CHECK(message.find("step 1: the loss is nan") != std::string::npos);
    CHECK(!fs::exists(dir + "/model.safetensors"));  // nothing saved as if it had finished
    TrainingArguments resume = args_for(dir);
    resume.resume = true;
    message.clear();
    try {
        train(resume, 4);
    } catch (const IoError& e) {
        message = e.what();
    }
    CHECK(message.find("--resume, but no checkpoint-<step>/training_state.safetensors") != std::string::npos);
    fs::remove_all(dir);
}

TEST_CASE("Trainer: save strategy steps writes checkpoint-<step> every save_steps and at the end; no writes none") {
    const std::string dir = fresh_dir("steps");
    TrainingArguments t = args_for(dir);
    t.save_strategy = SaveStrategy::steps;
    t.save_steps = 5;
    train(t, 4);
    CHECK(fs::exists(dir + "/checkpoint-5"));
    CHECK(fs::exists(dir + "/checkpoint-10"));
    CHECK(fs::exists(dir + "/checkpoint-12"));
    CHECK(!fs::exists(dir + "/checkpoint-4"));
    CHECK(fs::exists(dir + "/model.safetensors"));
    fs::remove_all(dir);
    t.save_strategy = SaveStrategy::no;
    train(t, 4);
    CHECK(!fs::exists(dir + "/checkpoint-12"));
    CHECK(fs::exists(dir + "/model.safetensors"));
    fs::remove_all(dir);
}

TEST_CASE("Trainer: gradient accumulation asks for k micro-batches per step and counts steps per epoch in them") {
    TrainingArguments t = args_for(fresh_dir("accumulate"));
    t.gradient_accumulation_steps = 2;
    const Trainer<Be> trainer(t, 5);
    CHECK(trainer.steps_per_epoch() == 2);  // 5 batches → 2 whole steps of 2
    CHECK(trainer.total_steps() == 6);
    t.gradient_accumulation_steps = 8;
    CHECK_THROWS_WITH_AS(Trainer<Be>(t, 5), doctest::Contains("fewer than one step"), ArgumentError);
}

TEST_CASE("Trainer: a non-finite gradient stops the run before its update, naming the step, the parameter and element") {
    const std::string dir = fresh_dir("nan_grad");
    std::string message;
    try {
        train_poisoned(args_for(dir), {3});
    } catch (const Error& e) {
        message = e.what();
    }
    CHECK(message.find("step 3: the loss is ") != std::string::npos);
    CHECK(message.find("the gradient norm nan; first non-finite gradient: 'weight'[2] = nan") != std::string::npos);
    CHECK(message.find("--skip-nonfinite-steps") != std::string::npos);
    fs::remove_all(dir);
}

TEST_CASE("Trainer: with skip_nonfinite_steps a non-finite step changes nothing and is counted in the metrics") {
    // Steps 2 and 3 poisoned and skipped, against a run of the same data without them: the
    // skipped steps' updates are missing, so the weights differ, and both stay finite.
    const std::string skipping = fresh_dir("skip"), clean = fresh_dir("skip_clean");
    TrainingArguments t = args_for(skipping);
    t.skip_nonfinite_steps = true;
    const std::vector<float> w = train_poisoned(t, {2, 3});
    const std::vector<float> w_clean = train(args_for(clean), 4);
    for (float x : w) CHECK(std::isfinite(x));
    CHECK(std::memcmp(w.data(), w_clean.data(), sizeof(float) * 4) != 0);
    const auto r = records(skipping);
    REQUIRE(r.size() == 12);
    CHECK(r[0]["skipped_steps"] == 0);
    CHECK(r[1]["skipped_steps"] == 1);
    CHECK(r[2]["skipped_steps"] == 2);
    CHECK(r[11]["skipped_steps"] == 2);
    CHECK(records(clean)[11]["skipped_steps"] == 0);
    // The count lives in the checkpoints, so a resumed run continues it.
    const auto meta = io::SafetensorsFile::open(skipping + "/checkpoint-12/" + Trainer<Be>::state_file).metadata();
    CHECK(meta.at("skipped_steps") == "2");
    fs::remove_all(skipping);
    fs::remove_all(clean);
}

TEST_CASE("Trainer: a checkpoint holding NaN is refused on resume unless allowed") {
    const std::string dir = fresh_dir("nan_ckpt");
    TrainingArguments first = args_for(dir);
    first.max_steps = 4;
    train(first, 4);
    // Overwrite one weight of checkpoint-4's state with NaN, in place (F32 little-endian bytes).
    const std::string state = dir + "/checkpoint-4/" + Trainer<Be>::state_file;
    std::uint64_t offset = 0;
    {
        const auto f = io::SafetensorsFile::open(state);
        std::ifstream raw(state, std::ios::binary);
        std::uint64_t header = 0;
        raw.read(reinterpret_cast<char*>(&header), 8);
        offset = 8 + header + f.info("model.weight").begin + 4;  // element [0, 1]
    }
    {
        std::fstream raw(state, std::ios::binary | std::ios::in | std::ios::out);
        const float nan = std::numeric_limits<float>::quiet_NaN();
        raw.seekp(std::streamoff(offset));
        raw.write(reinterpret_cast<const char*>(&nan), 4);
    }
    TrainingArguments rest = args_for(dir);
    rest.resume = true;
    std::string message;
    try {
        train(rest, 4);
    } catch (const IoError& e) {
        message = e.what();
    }
    CHECK(message.find("checkpoint '" + state + "': tensor 'model.weight'[1] = nan: the checkpoint holds a non-finite value") !=
          std::string::npos);
    // Allowed, it loads, and the NaN weight then stops the first step, naming it.
    rest.allow_nonfinite_checkpoint = true;
    message.clear();
    try {
        train(rest, 4);
    } catch (const Error& e) {
        message = e.what();
    }
    CHECK(message.find("step 5: the loss is nan") != std::string::npos);
    fs::remove_all(dir);
}

TEST_CASE("Trainer: a metrics line torn by a kill mid-write is dropped on resume, not glued to the next record") {
    const std::string dir = fresh_dir("torn");
    TrainingArguments first = args_for(dir);
    first.max_steps = 4;
    train(first, 4);
    std::ofstream(dir + "/metrics.jsonl", std::ios::app) << R"({"step": 5, "lo)";  // no newline: torn
    TrainingArguments rest = args_for(dir);
    rest.resume = true;
    train(rest, 4);
    const auto r = records(dir);  // parses every line
    REQUIRE(r.size() == 12);
    for (std::size_t i = 0; i < r.size(); ++i) CHECK(r[i]["step"] == long(i + 1));
    fs::remove_all(dir);
}
