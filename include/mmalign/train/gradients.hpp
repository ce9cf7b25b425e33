// mmalign/train/gradients.hpp — what a training step does to gradients besides computing them:
// global-norm clipping, scaling (gradient accumulation), and freezing by name.
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

/// Returns the total norm before clipping.
template <Backend B, class M>
double clip_grad_norm(B& be, M& module, double max_norm) {
    double sq = 0;
    module.visit([&](const std::string&, auto& p) {
        if (p.requires_grad && p.has_grad()) sq += double(be.dot(p.grad.view(), p.grad.view()));
    });
    const double total = std::sqrt(sq);
    const double coef = max_norm / (total + 1e-6);
    if (coef < 1.0)
        module.visit([&](const std::string&, auto& p) {
            if (p.requires_grad && p.has_grad()) be.scale(static_cast<typename B::Compute>(coef), p.grad.view());
        });
    return total;
}

/// g ← factor·g for every trainable parameter (e.g. 1/k after k accumulated micro-batches).
template <Backend B, class M>
void scale_gradients(B& be, M& module, double factor) {
    module.visit([&](const std::string&, auto& p) {
        if (p.requires_grad && p.has_grad()) be.scale(static_cast<typename B::Compute>(factor), p.grad.view());
    });
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
