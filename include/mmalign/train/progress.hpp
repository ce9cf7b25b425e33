// mmalign/train/progress.hpp — training progress on stderr and metrics as JSON lines.
//
// Progress draws a one-line bar with step rate and ETA when stderr is a terminal, and prints a
// plain line at most every `interval` seconds otherwise (CI logs, files), so logs stay readable.
// MetricsLog appends one JSON object per line and flushes it, so a crashed run keeps its history;
// drop_metrics_records takes out what a killed run logged past the checkpoint a new run resumes from.
// With `tensorboard_dir` set it also writes every numeric field of each record except "step" as a
// TensorBoard scalar at the record's "step" (train/tensorboard.hpp), so `tensorboard --logdir`
// shows the same numbers as the JSONL.
#pragma once

#include <chrono>
#include <cstdio>
#include <fstream>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <unistd.h>

#include <nlohmann/json.hpp>

#include "mmalign/core/error.hpp"
#include "mmalign/io/atomic_file.hpp"
#include "mmalign/train/tensorboard.hpp"

namespace mmalign {

class Progress {
public:
    Progress(long total, std::string label, double interval_seconds = 10.0)
        : total_(total), label_(std::move(label)), interval_(interval_seconds), tty_(::isatty(STDERR_FILENO) == 1),
          start_(Clock::now()), last_(start_) {}

    /// `done` steps finished out of total; `status` is appended (e.g. "loss 0.41").
    void update(long done, const std::string& status) {
        const auto now = Clock::now();
        if (first_done_ < 0) first_done_ = done, first_time_ = now;  // the rate excludes the first step
        const double since = seconds(last_, now);
        if (!tty_ && since < interval_ && done < total_) return;
        if (tty_ && since < 0.1 && done < total_) return;
        last_ = now;
        const double elapsed = seconds(first_time_, now);
        const double rate = elapsed > 0 ? double(done - first_done_) / elapsed : 0.0;
        const double eta = rate > 0 ? double(total_ - done) / rate : 0.0;
        char buf[256];
        if (tty_) {
            const int width = 24, fill = total_ ? int(width * done / total_) : width;
            std::string bar(std::size_t(fill), '#');
            bar.resize(width, '.');
            std::snprintf(buf, sizeof buf, "\r%s [%s] %ld/%ld %.1f it/s ETA %s %s\033[K", label_.c_str(), bar.c_str(), done,
                          total_, rate, clock(eta).c_str(), status.c_str());
        } else {
            std::snprintf(buf, sizeof buf, "%s %ld/%ld %.1f it/s ETA %s %s\n", label_.c_str(), done, total_, rate,
                          clock(eta).c_str(), status.c_str());
        }
        std::fputs(buf, stderr);
        if (tty_ && done >= total_) std::fputc('\n', stderr);
        std::fflush(stderr);
    }
    double elapsed_seconds() const { return seconds(start_, Clock::now()); }

private:
    using Clock = std::chrono::steady_clock;
    static double seconds(Clock::time_point a, Clock::time_point b) { return std::chrono::duration<double>(b - a).count(); }
    static std::string clock(double s) {
        char b[32];
        const long t = long(s);
        std::snprintf(b, sizeof b, "%ld:%02ld", t / 60, t % 60);
        return b;
    }

    long total_;
    std::string label_;
    double interval_;
    bool tty_;
    Clock::time_point start_, last_, first_time_;
    long first_done_ = -1;
};

struct MetricsLogOptions {
    std::string tensorboard_dir{};  // non-empty: also write TensorBoard scalars into a new event file there
    // The step this run starts from. TensorBoard drops what earlier runs in the same folder logged
    // at or after it (its SessionLog START rule), so a rerun into an old folder shows one run.
    // −1: 0 for a fresh log (drop everything earlier), the first record's step when appending.
    std::int64_t start_step = -1;
};

class MetricsLog {
public:
    /// Truncates `path` unless `append` (resuming a run appends to its history). The TensorBoard
    /// file starts with a SessionLog START at options.start_step, so TensorBoard drops what an
    /// interrupted run logged past its last checkpoint, or an earlier run into the same folder.
    explicit MetricsLog(const std::string& path, bool append = false, const MetricsLogOptions& options = {})
        : path_(path), out_(path, append ? std::ios::app : std::ios::trunc), resumed_(append),
          start_step_(options.start_step) {
        if (!out_) throw IoError(path + ": cannot open the metrics file for writing");
        if (!options.tensorboard_dir.empty()) tensorboard_.emplace(options.tensorboard_dir);
    }

    /// Appends `record` (a JSON object) as one line. With TensorBoard on, the record needs an
    /// integer "step"; its other numeric fields (booleans, strings and nested values are not
    /// scalars) become one event at that step.
    void write(const nlohmann::json& record) {
        if (tensorboard_) {
            const auto step = record.is_object() ? record.find("step") : record.end();
            if (!record.is_object() || step == record.end() || !step->is_number_integer())
                throw ArgumentError(path_ + ": a metrics record needs an integer \"step\" for TensorBoard: " + record.dump());
        }
        out_ << record.dump() << '\n';
        out_.flush();
        if (!out_) throw IoError(path_ + ": writing the metrics file failed");
        if (!tensorboard_) return;
        const std::int64_t step = record.at("step").get<std::int64_t>();
        std::vector<std::pair<std::string, float>> scalars;
        for (const auto& [key, value] : record.items())
            if (key != "step" && value.is_number()) scalars.emplace_back(key, value.get<float>());
        if (!started_) {
            tensorboard_->add_session_start(start_step_ >= 0 ? start_step_ : resumed_ ? step : 0);
            started_ = true;
        }
        if (!scalars.empty()) tensorboard_->add_scalars(step, scalars);
    }

    /// The TensorBoard event file being written, or nullptr without one.
    const TensorBoardWriter* tensorboard() const { return tensorboard_ ? &*tensorboard_ : nullptr; }

private:
    std::string path_;
    std::ofstream out_;
    bool resumed_;
    std::int64_t start_step_;
    bool started_ = false;
    std::optional<TensorBoardWriter> tensorboard_;
};

/// Rewrites the metrics file `path` without the records `drop(record)` selects, nor lines that are
/// not a JSON object (a record torn by a kill mid-write), atomically (io/atomic_file.hpp); an
/// absent file is left absent. A resumed run calls it with "logged after the checkpoint I resume
/// from", so the records of the steps it repeats appear once. Returns how many lines went.
template <class Drop>
std::size_t drop_metrics_records(const std::string& path, Drop&& drop) {
    std::ifstream in(path, std::ios::binary);
    if (!in) return 0;
    std::string kept, line;
    std::size_t dropped = 0;
    while (std::getline(in, line)) {
        const nlohmann::json rec = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
        if (!rec.is_object() || drop(rec)) {
            ++dropped;
            continue;
        }
        kept += line + "\n";
    }
    if (in.bad()) throw IoError(path + ": reading the metrics file failed");
    if (dropped == 0) return 0;
    const std::string_view parts[] = {kept};
    io::write_file_atomic(path, parts, "metrics");
    return dropped;
}

/// The integer "step" of a metrics record, or -1 without one.
inline std::int64_t record_step(const nlohmann::json& rec) {
    const auto it = rec.find("step");
    return it != rec.end() && it->is_number_integer() ? it->get<std::int64_t>() : -1;
}

}  // namespace mmalign
