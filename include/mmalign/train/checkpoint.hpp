// mmalign/train/checkpoint.hpp — saving and resuming training: weights, AdamW state and step.
//
// One safetensors file (written atomically: temp file, fsync, rename — io/safetensors.hpp):
//   "model.<name>"                the parameters, under the visitor's HF names
//   "optim.<name>.exp_avg", "optim.<name>.exp_avg_sq"   AdamW's moments
//   __metadata__: format "mmalign-train-1", step, optimizer_steps, and any caller entries
// Resuming restores all three, so a run that stops and resumes continues the same curve as one
// that never stopped (the caller's data order must be a function of the step, as in the
// Fashion-MNIST example). Host (CPU backend) storage.
#pragma once

#include <map>
#include <string>

#include "mmalign/io/safetensors.hpp"
#include "mmalign/train/adamw.hpp"

namespace mmalign {

template <Backend B, class M>
void save_checkpoint(const std::string& path, M& model, AdamW<B>& opt, std::int64_t step,
                     std::map<std::string, std::string> metadata = {}) {
    std::vector<io::TensorToSave> out;
    model.visit([&](const std::string& name, auto& p) {
        out.emplace_back("model." + name, p.value.cview());
        auto it = opt.state().find(name);
        if (it != opt.state().end()) {
            out.emplace_back("optim." + name + ".exp_avg", it->second.exp_avg.cview());
            out.emplace_back("optim." + name + ".exp_avg_sq", it->second.exp_avg_sq.cview());
        }
    });
    metadata["format"] = "mmalign-train-1";
    metadata["step"] = std::to_string(step);
    metadata["optimizer_steps"] = std::to_string(opt.step_count());
    io::save_safetensors(path, out, metadata);
}

/// Restores model, optimizer state and returns the step stored in the checkpoint.
template <Backend B, class M>
std::int64_t load_checkpoint(const std::string& path, M& model, AdamW<B>& opt) {
    auto f = io::SafetensorsFile::open(path);
    const auto& meta = f.metadata();
    auto field = [&](const char* key) -> std::string {
        auto it = meta.find(key);
        if (it == meta.end()) throw IoError(path + ": not an mmalign training checkpoint (no \"" + key + "\" in metadata)");
        return it->second;
    };
    if (field("format") != "mmalign-train-1")
        throw IoError(path + ": checkpoint format \"" + field("format") + "\", expected \"mmalign-train-1\"");
    io::load_parameters(model, f, "model.");
    opt.state().clear();
    model.visit([&](const std::string& name, auto& p) {
        const std::string k = "optim." + name + ".exp_avg";
        if (!f.contains(k)) return;
        auto& st = opt.state()[name];
        st.exp_avg = f.template read<typename B::Scalar>(k);
        st.exp_avg_sq = f.template read<typename B::Scalar>(k + "_sq");
        if (!(st.exp_avg.shape() == p.shape()) || !(st.exp_avg_sq.shape() == p.shape()))
            throw IoError(path + ": optimizer state of " + name + " has shape " + st.exp_avg.shape().str() +
                          ", expected " + p.shape().str());
    });
    opt.set_step_count(std::stoll(field("optimizer_steps")));
    return std::stoll(field("step"));
}

}  // namespace mmalign
