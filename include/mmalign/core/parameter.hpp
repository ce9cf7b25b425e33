// mmalign/core/parameter.hpp — a trainable tensor, its gradient, and the name visitor's helpers.
//
// Every module exposes `visit(f, prefix)`, calling f(name, Parameter&) once per parameter with the
// Hugging Face state-dict key (e.g. "encoder.layers.0.self_attn.q_proj.weight"). That single walk
// serves checkpoint loading and saving, the optimizer, freezing, zeroing and counting. The
// parameter's shape, fixed when the module is built from its Config, is the expected shape.
#pragma once

#include <random>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "mmalign/core/error.hpp"
#include "mmalign/core/tensor.hpp"

namespace mmalign {

/// A parameter whose storage is `Storage` (a host Tensor<T>, or a backend's device tensor).
/// The gradient is allocated (and zeroed) by the first backward that accumulates into it, so
/// inference and frozen towers hold only their weights.
template <class Storage>
struct BasicParameter {
    Storage value;               // shape fixed by the module's Config
    Storage grad;                // empty until a backward accumulates; then value's shape, `+=`
    bool requires_grad = true;   // false: backward skips this parameter's gradient (frozen)

    BasicParameter() = default;
    explicit BasicParameter(Shape s) : value(s) { value.zero(); }
    const Shape& shape() const { return value.shape(); }
    /// True once a gradient has been allocated (a backward has reached this parameter).
    bool has_grad() const { return grad.numel() == value.numel() && grad.shape() == value.shape(); }
    /// Where backward should add this parameter's gradient, or null when it must not.
    auto* grad_target(bool accumulate) {
        if (!accumulate || !requires_grad) return static_cast<decltype(grad.data())>(nullptr);
        if (!has_grad()) {
            grad.resize(value.shape());
            grad.zero();
        }
        return grad.data();
    }
};

/// The host-memory parameter of the CPU backend.
template <class T>
using Parameter = BasicParameter<Tensor<T>>;

/// "a" + "b" → "a.b"; an empty prefix adds nothing.
inline std::string join_name(const std::string& prefix, const std::string& name) {
    if (prefix.empty()) return name;
    if (name.empty()) return prefix;
    return prefix + "." + name;
}

template <class M>
index_t count_parameters(M& module) {
    index_t n = 0;
    module.visit([&](const std::string&, auto& p) { n += p.value.numel(); });
    return n;
}

template <class M>
void zero_grad(M& module) {
    module.visit([](const std::string&, auto& p) { p.grad.zero(); });
}

/// Fills every weight with N(0, std²) and every bias and LayerNorm shift with 0, LayerNorm scales
/// with 1 — the usual transformer initialisation, deterministic for a given seed.
template <class M>
void init_normal(M& module, unsigned seed, double std = 0.02) {
    std::mt19937_64 rng(seed);
    module.visit([&](const std::string& name, auto& p) {
        using T = std::remove_reference_t<decltype(*p.value.data())>;
        static_assert(requires { p.value.begin(); }, "init_normal fills host parameters; initialise on the CPU and copy to a device.");
        const bool is_bias = name.size() >= 4 && name.compare(name.size() - 4, 4, "bias") == 0;
        const bool is_norm_scale = name.find("norm") != std::string::npos || name.find("LayerNorm") != std::string::npos;
        if (is_bias) p.value.zero();
        else if (is_norm_scale) p.value.fill(T(1));
        else {
            std::normal_distribution<double> d(0.0, std);
            for (auto& v : p.value) v = static_cast<T>(d(rng));
        }
    });
}

/// Copies every parameter of `src`, a module with host storage (built on the CPU backend, where
/// weights are initialised or loaded), into the same-named parameter of `dst`, the same
/// architecture on backend `be` — the way onto a GPU: `copy_parameters(gpu, device_model,
/// host_model)`. 16-bit storage receives each value rounded to nearest even. Values only:
/// gradients and `requires_grad` of `dst` are left as they are. Both modules must
/// visit the same names with the same shapes in the same order; otherwise ShapeError names the
/// first difference and nothing is copied.
template <class B, class Dst, class Src>
void copy_parameters(B& be, Dst& dst, Src& src) {
    std::vector<std::pair<std::string, BasicParameter<Tensor<typename B::Compute>>*>> from;
    src.visit([&](const std::string& name, auto& p) {
        using Storage = std::remove_cvref_t<decltype(p.value)>;
        static_assert(std::is_same_v<Storage, Tensor<typename B::Compute>>,
                      "copy_parameters: the source module must keep its parameters on the host in the destination "
                      "backend's compute type (float for CudaBackend<float>, <bfloat16> and <float16>).");
        from.emplace_back(name, &p);
    });
    std::size_t i = 0;
    dst.visit([&](const std::string& name, auto& p) {
        if (i >= from.size())
            throw ShapeError("copy_parameters: the destination has more parameters than the source's " +
                             std::to_string(from.size()) + "; the first extra one is '" + name + "'");
        if (from[i].first != name || !(from[i].second->shape() == p.shape()))
            throw ShapeError("copy_parameters: parameter " + std::to_string(i) + " is '" + name + "' " +
                             p.shape().str() + " in the destination but '" + from[i].first + "' " +
                             from[i].second->shape().str() + " in the source");
        ++i;
    });
    if (i != from.size())
        throw ShapeError("copy_parameters: the source has " + std::to_string(from.size()) +
                         " parameters, the destination " + std::to_string(i) + "; the first missing one is '" +
                         from[i].first + "'");
    i = 0;
    dst.visit([&](const std::string&, auto& p) { be.from_host(from[i++].second->value.cview(), p.value.view()); });
}

}  // namespace mmalign
