// mmalign/train/checkpoint.hpp — saving and resuming training on any backend: weights, AdamW
// state (with the float master weights of mixed precision), the loss scaler and the step.
//
// One safetensors file (written atomically: temp file, fsync, rename — io/safetensors.hpp):
//   "model.<name>"                  the parameters, under the visitor's HF names
//   "optim.<name>.exp_avg", "optim.<name>.exp_avg_sq"   AdamW's moments
//   "optim.<name>.master"           AdamW's float master weights (16-bit storage only)
//   __metadata__: format "mmalign-train-1", step, optimizer_steps, master_weights ("true" when
//   the optimizer keeps master weights), with a LossScaler loss_scale, loss_scale_growth_tracker
//   and loss_scale_skipped_steps, and the caller's entries.
// Tensors are F32 for float and 16-bit storage (a 16-bit value is exact in float and rounds back
// to itself on load) and F64 for double. Numbers in the metadata are decimal text that reads
// back to the same double or integer. Files written before master weights and the scaler were
// stored have none of their entries and load as checkpoints of float storage; the format name
// stayed "mmalign-train-1" because the new entries are additions that older readers skip.
//
// A checkpoint holding NaN or an infinity is refused on load unless CheckpointOptions::allow_nonfinite.
//
// Resuming restores all of it, so a run that stops and resumes continues the same curve as one
// that never stopped, bit for bit, 16-bit runs included (the caller's data order must be a
// function of the step, as in the Fashion-MNIST example). Under mixed precision the parameter and
// its master are restored together: the backend's AdamW update uses the master only while the
// parameter still equals the master rounded, and restarts it from the parameter otherwise.
//
// Across storage types: a float checkpoint loads into a 16-bit model (parameters rounded to
// nearest even, moments as they are, and every trainable parameter's master set to the file's
// unrounded value, so no precision is lost by the crossing), and a 16-bit one into a float model
// (its masters are ignored). load_master_weights does the same for a checkpoint that is not a
// training one, e.g. Hugging Face weights fine-tuned in 16-bit storage.
//
//   save_checkpoint(be, "ckpt.safetensors", model, opt, step, {.scaler = &scaler});
//   step = load_checkpoint(be, "ckpt.safetensors", model, opt, {.scaler = &scaler});
//
//   auto model = Clip<CudaBackend<bfloat16>>::from_pretrained(be, dir);   // rounded to bf16
//   load_master_weights(be, opt, model, io::Checkpoint::open(dir));        // masters: the float values
#pragma once

#include <charconv>
#include <cmath>
#include <concepts>
#include <cstdint>
#include <map>
#include <string>
#include <system_error>
#include <type_traits>
#include <vector>

#include "mmalign/core/error.hpp"
#include "mmalign/io/safetensors.hpp"
#include "mmalign/train/adamw.hpp"
#include "mmalign/train/loss_scaler.hpp"
#include "mmalign/train/nonfinite.hpp"

namespace mmalign {

/// What a checkpoint saves and restores besides the model and the optimizer. Written with
/// designated initialisers: `{.scaler = &scaler, .metadata = {{"run", "a"}}}`.
template <Backend B>
struct CheckpointOptions {
    LossScaler<B>* scaler = nullptr;  // its scale, growth tracker and skipped steps
    // Save only: extra __metadata__ entries (read them with io::SafetensorsFile::open(path).metadata()).
    std::map<std::string, std::string> metadata = {};
    // Load only: a checkpoint holding NaN or an infinity (weights, moments or masters) is refused
    // (IoError naming the tensor and element) unless this is set; resuming from one would train
    // NaN from the first step and save it again.
    bool allow_nonfinite = false;
};

namespace detail {

inline constexpr const char* checkpoint_format = "mmalign-train-1";

/// The shortest decimal text that reads back to exactly `x` (std::to_chars' guarantee).
inline std::string round_trip_text(double x) {
    char buf[32];
    const auto r = std::to_chars(buf, buf + sizeof buf, x);
    return std::string(buf, r.ptr);
}
inline std::string round_trip_text(std::int64_t x) { return std::to_string(x); }

/// The checkpoint's metadata, read with messages that name the file and the field.
class CheckpointMetadata {
public:
    CheckpointMetadata(const std::string& path, const std::map<std::string, std::string>& meta)
        : path_(path), meta_(meta) {}

    [[noreturn]] void fail(const std::string& what) const { throw IoError("checkpoint '" + path_ + "': " + what); }
    bool has(const std::string& key) const { return meta_.count(key) != 0; }
    const std::string& text(const std::string& key, const std::string& why_needed) const {
        auto it = meta_.find(key);
        if (it == meta_.end()) fail("metadata has no \"" + key + "\" (" + why_needed + ")");
        return it->second;
    }
    /// The field as a whole number (int64) or double; throws naming the field and its text.
    template <class V>
    V number(const std::string& key, const std::string& why_needed) const {
        const std::string& s = text(key, why_needed);
        V v{};
        const auto r = std::from_chars(s.data(), s.data() + s.size(), v);
        if (s.empty() || r.ec != std::errc() || r.ptr != s.data() + s.size())
            fail("metadata \"" + key + "\" is \"" + io::detail::printable(s) + "\", expected " +
                 (std::is_integral_v<V> ? "an integer" : "a number"));
        return v;
    }

private:
    const std::string& path_;
    const std::map<std::string, std::string>& meta_;
};

/// Sets the float master weight of every trainable parameter of `model` in `state` from
/// `source`'s tensor prefix + name (already checked to exist with the parameter's shape).
template <Backend B, class M, io::TensorSource S>
void masters_from(B& be, std::map<std::string, typename AdamW<B>::State>& state, M& model, const S& source,
                  const std::string& prefix, Tensor<typename B::Compute>& staging) {
    model.visit([&](const std::string& name, auto& p) {
        if (!p.requires_grad) return;
        auto& st = state[name];
        st.master.resize(p.shape());
        io::read_into_backend(be, source, prefix + name, st.master.view(), staging);
    });
}

}  // namespace detail

/// Mixed precision from float weights that are not a training checkpoint (a Hugging Face
/// model.safetensors or sharded folder, opened with io::Checkpoint::open): starts `opt`'s float
/// master weights of `model`'s trainable parameters from `source`'s values, not from the 16-bit
/// parameters they were rounded to, so fine-tuning in 16-bit storage keeps the checkpoint's full
/// precision. Load the parameters from the same source first (io::load_parameters or
/// from_pretrained): a master is used while its parameter equals its rounding. Moments start at
/// zero at the first step, as always. Everything is checked before anything is written (IoError
/// naming the file and each missing or misshapen tensor).
template <Backend B, class M, io::TensorSource S>
void load_master_weights(B& be, AdamW<B>& opt, M& model, const S& source, const std::string& prefix = "") {
    static_assert(AdamW<B>::has_master,
                  "load_master_weights: this backend stores parameters in its compute type; they are their own "
                  "master weights (use io::load_parameters).");
    io::detail::check_load(model, source, prefix, {});
    Tensor<typename B::Compute> staging;
    detail::masters_from(be, opt.state(), model, source, prefix, staging);
}

/// Saves `model`'s parameters, `opt`'s state and step count, `step` and, with options.scaler,
/// the loss scaler's state to `path`. Tensors in device memory are copied to the host first.
/// Throws ArgumentError when options.metadata uses a key of the format's own.
template <Backend B, class M>
void save_checkpoint(B& be, const std::string& path, M& model, AdamW<B>& opt, std::int64_t step,
                     const CheckpointOptions<B>& options = {}) {
    std::map<std::string, std::string> meta = options.metadata;
    for (const char* key : {"format", "step", "optimizer_steps", "master_weights", "loss_scale",
                            "loss_scale_growth_tracker", "loss_scale_skipped_steps"})
        if (meta.count(key))
            throw ArgumentError("save_checkpoint '" + path + "': metadata key \"" + std::string(key) +
                                "\" is the checkpoint format's own; rename the caller's entry");
    meta["format"] = detail::checkpoint_format;
    meta["step"] = detail::round_trip_text(step);
    meta["optimizer_steps"] = detail::round_trip_text(opt.step_count());
    meta["master_weights"] = AdamW<B>::has_master ? "true" : "false";
    if (options.scaler) {
        meta["loss_scale"] = detail::round_trip_text(options.scaler->scale());
        meta["loss_scale_growth_tracker"] = detail::round_trip_text(options.scaler->growth_tracker());
        meta["loss_scale_skipped_steps"] = detail::round_trip_text(options.scaler->skipped_steps());
    }

    io::StagedTensors<B> staged;
    io::stage_parameters(be, model, staged, "model.");
    model.visit([&](const std::string& name, auto& p) {
        auto it = opt.state().find(name);
        if (it == opt.state().end()) return;
        const auto& st = it->second;
        const std::string key = "optim." + name;
        // Moments of another shape are what the next step would discard and restart.
        const bool moments = st.exp_avg.shape() == p.shape() && st.exp_avg_sq.shape() == p.shape();
        if (moments) {
            staged.add(be, key + ".exp_avg", st.exp_avg.cview());
            staged.add(be, key + ".exp_avg_sq", st.exp_avg_sq.cview());
        }
        if constexpr (AdamW<B>::has_master) {
            // A master alone (set by load_master_weights or from a float checkpoint, no step
            // since) is stored alone. Moments without a master (none made yet) store the
            // parameter, which is what the next step would start the master from.
            if (st.master.shape() == p.shape()) staged.add(be, key + ".master", st.master.cview());
            else if (moments) staged.add(be, key + ".master", p.value.cview());
        }
    });
    io::save_safetensors(path, staged.tensors(), meta);
}

/// Restores `model`'s parameters, `opt`'s state and step count and, with options.scaler, the
/// loss scaler's state from `path`; returns the step stored in the checkpoint. Everything is
/// checked before anything is written, so a load that throws IoError (naming the file, the
/// tensor or field, what was expected and what was found) leaves model, optimizer and scaler as
/// they were.
template <Backend B, class M>
std::int64_t load_checkpoint(B& be, const std::string& path, M& model, AdamW<B>& opt,
                             const CheckpointOptions<B>& options = {}) {
    using C = typename B::Compute;
    const auto f = io::SafetensorsFile::open(path);
    const detail::CheckpointMetadata meta(path, f.metadata());
    const std::string not_training = "not an mmalign training checkpoint?";
    if (const std::string& fmt = meta.text("format", not_training); fmt != detail::checkpoint_format)
        meta.fail("metadata \"format\" is \"" + io::detail::printable(fmt) + "\", expected \"" +
                  detail::checkpoint_format + "\"");
    const auto step = meta.number<std::int64_t>("step", not_training);
    const auto optimizer_steps = meta.number<std::int64_t>("optimizer_steps", not_training);
    if (step < 0 || optimizer_steps < 0)
        meta.fail("metadata \"step\" and \"optimizer_steps\" must be >= 0, found " + std::to_string(step) + " and " +
                  std::to_string(optimizer_steps));
    bool file_masters = false;  // absent in files written before master weights were stored
    if (meta.has("master_weights")) {
        const std::string& m = meta.text("master_weights", "");
        if (m != "true" && m != "false")
            meta.fail("metadata \"master_weights\" is \"" + io::detail::printable(m) + "\", expected \"true\" or \"false\"");
        file_masters = m == "true";
    }
    double scale = 0;
    std::int64_t tracker = 0, skipped = 0;
    if (options.scaler) {
        const std::string why = "a LossScaler was passed to load_checkpoint, but the checkpoint was saved without one";
        scale = meta.number<double>("loss_scale", why);
        tracker = meta.number<std::int64_t>("loss_scale_growth_tracker", why);
        skipped = meta.number<std::int64_t>("loss_scale_skipped_steps", why);
        if (!(scale > 0) || !std::isfinite(scale) || tracker < 0 || skipped < 0)
            meta.fail("metadata \"loss_scale\", \"loss_scale_growth_tracker\", \"loss_scale_skipped_steps\": expected a "
                      "finite scale > 0 and counts >= 0, found " + meta.text("loss_scale", why) + ", " +
                      std::to_string(tracker) + ", " + std::to_string(skipped));
    }

    // The optimizer's tensors, checked before anything is written; the parameters are checked by
    // load_parameters, also before it writes.
    auto check = [&](const std::string& key, const Shape& want, const std::string& name) {
        const io::TensorInfo& e = f.info(key);
        if (!(e.shape == want))
            meta.fail("tensor '" + key + "': expected shape " + want.str() + " (parameter '" + name + "'), found " +
                      e.shape.str());
        if (const std::string why = io::detail::conversion_problem<C>(e.dtype); !why.empty())
            meta.fail("tensor '" + key + "': " + why);
    };
    io::detail::check_load(model, f, "model.", {});
    if (!options.allow_nonfinite)
        if (const auto bad = first_nonfinite_tensor(f))
            meta.fail("tensor " + bad->str() + ": the checkpoint holds a non-finite value, and training from it "
                      "would give NaN from its first step (allow it with --allow-nonfinite-checkpoint, "
                      "CheckpointOptions::allow_nonfinite)");
    model.visit([&](const std::string& name, auto& p) {
        const std::string key = "optim." + name;
        const bool m = f.contains(key + ".exp_avg"), v = f.contains(key + ".exp_avg_sq"), w = f.contains(key + ".master");
        if (!m && !v && !w) return;  // no state: the parameter had no update yet, or is frozen
        if (!m && !v) {              // a master alone: set before any step
            check(key + ".master", p.shape(), name);
            return;
        }
        for (const char* part : {".exp_avg", ".exp_avg_sq"})
            if (!f.contains(key + part))
                meta.fail("tensor '" + key + part + "' missing: expected it with shape " + p.shape().str() +
                          " beside the other optimizer state of '" + name + "', found none");
        check(key + ".exp_avg", p.shape(), name);
        check(key + ".exp_avg_sq", p.shape(), name);
        if (w) check(key + ".master", p.shape(), name);  // checked even where ignored: a wrong shape is corruption
        else if (AdamW<B>::has_master && file_masters)
            meta.fail("tensor '" + key + ".master' missing: the checkpoint keeps float master weights (master_weights "
                      "\"true\") and optimizer state for '" + name + "'; expected shape " + p.shape().str() +
                      ", found none");
    });

    // The new optimizer state is built aside first (allocations and reads that may fail), then
    // the parameters are loaded, then the state replaces the old one.
    std::map<std::string, typename AdamW<B>::State> state;
    Tensor<C> staging;
    model.visit([&](const std::string& name, auto& p) {
        const std::string key = "optim." + name;
        if (f.contains(key + ".exp_avg")) {
            auto& st = state[name];
            st.exp_avg.resize(p.shape());
            st.exp_avg_sq.resize(p.shape());
            io::read_into_backend(be, f, key + ".exp_avg", st.exp_avg.view(), staging);
            io::read_into_backend(be, f, key + ".exp_avg_sq", st.exp_avg_sq.view(), staging);
        }
        if constexpr (AdamW<B>::has_master) {
            if (file_masters && f.contains(key + ".master")) {
                auto& st = state[name];
                st.master.resize(p.shape());
                io::read_into_backend(be, f, key + ".master", st.master.view(), staging);
            }
        }
    });
    // A checkpoint of float storage holds every parameter unrounded: those values are the masters.
    if constexpr (AdamW<B>::has_master)
        if (!file_masters) detail::masters_from(be, state, model, f, "model.", staging);
    io::load_parameters(be, model, f, "model.");
    opt.state() = std::move(state);
    opt.set_step_count(optimizer_steps);
    if (options.scaler) {
        options.scaler->set_scale(scale);
        options.scaler->set_growth_tracker(tracker);
        options.scaler->set_skipped_steps(skipped);
    }
    return step;
}

/// The host forms, for host (CPU backend) storage: as above with a default backend and caller
/// metadata only.
template <Backend B, class M>
    requires std::default_initializable<B>
void save_checkpoint(const std::string& path, M& model, AdamW<B>& opt, std::int64_t step,
                     std::map<std::string, std::string> metadata = {}) {
    static_assert(io::detail::is_host_tensor<typename B::Tensor>::value,
                  "save_checkpoint(path, ...) reads host parameters; pass the backend "
                  "(save_checkpoint(be, path, ...)) to save device storage.");
    B be;
    CheckpointOptions<B> options;
    options.metadata = std::move(metadata);
    save_checkpoint(be, path, model, opt, step, options);
}

template <Backend B, class M>
    requires std::default_initializable<B>
std::int64_t load_checkpoint(const std::string& path, M& model, AdamW<B>& opt, const CheckpointOptions<B>& options = {}) {
    static_assert(io::detail::is_host_tensor<typename B::Tensor>::value,
                  "load_checkpoint(path, ...) fills host parameters; pass the backend "
                  "(load_checkpoint(be, path, ...)) to load device storage.");
    B be;
    return load_checkpoint(be, path, model, opt, options);
}

}  // namespace mmalign
