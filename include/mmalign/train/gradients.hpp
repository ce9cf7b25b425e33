// mmalign/train/gradients.hpp — what a training step does to gradients besides computing them:
// the global norm, clipping it, scaling (gradient accumulation), and freezing by name.
//
// clip_grad_norm follows torch.nn.utils.clip_grad_norm_: total = √(Σ‖g‖²) over trainable
// parameters; when total > max_norm every gradient is multiplied by max_norm / (total + 1e-6).
// freeze(module, pattern) sets requires_grad = false on every parameter whose name matches the
// glob pattern ('*' matches any run of characters, '?' one character).
#pragma once

#include <cmath>
#include <string>
#include <string_view>

#include "mmalign/core/backend.hpp"

namespace mmalign {

/// √(Σ‖g‖²) over the gradients of trainable parameters (0 when none has one yet).
template <Backend B, class M>
double global_grad_norm(B& be, M& module) {
    double sq = 0;
    module.visit([&](const std::string&, auto& p) {
        if (p.requires_grad && p.has_grad()) sq += double(be.dot(p.grad.view(), p.grad.view()));
    });
    return std::sqrt(sq);
}

/// torch's clipping factor for a total norm: the gradients are multiplied by it when it is below 1.
inline double clip_coefficient(double total_norm, double max_norm) { return max_norm / (total_norm + 1e-6); }

/// g ← factor·g for every trainable parameter (e.g. 1/k after k accumulated micro-batches).
template <Backend B, class M>
void scale_gradients(B& be, M& module, double factor) {
    module.visit([&](const std::string&, auto& p) {
        if (p.requires_grad && p.has_grad()) be.scale(static_cast<typename B::Compute>(factor), p.grad.view());
    });
}

/// Returns the total norm before clipping.
template <Backend B, class M>
double clip_grad_norm(B& be, M& module, double max_norm) {
    const double total = global_grad_norm(be, module);
    const double coef = clip_coefficient(total, max_norm);
    if (coef < 1.0) scale_gradients(be, module, coef);
    return total;
}

inline bool glob_match(std::string_view pattern, std::string_view text) {
    std::size_t p = 0, t = 0, star = std::string_view::npos, mark = 0;
    while (t < text.size()) {
        if (p < pattern.size() && (pattern[p] == '?' || pattern[p] == text[t])) ++p, ++t;
        else if (p < pattern.size() && pattern[p] == '*') star = p++, mark = t;
        else if (star != std::string_view::npos) p = star + 1, t = ++mark;
        else return false;
    }
    while (p < pattern.size() && pattern[p] == '*') ++p;
    return p == pattern.size();
}

/// Freezes (or with `trainable = true` unfreezes) the parameters whose names match; returns how many.
template <class M>
std::size_t freeze(M& module, std::string_view pattern, bool trainable = false) {
    std::size_t n = 0;
    module.visit([&](const std::string& name, auto& p) {
        if (glob_match(pattern, name)) p.requires_grad = trainable, ++n;
    });
    return n;
}

}  // namespace mmalign
