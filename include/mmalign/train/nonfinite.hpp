// mmalign/train/nonfinite.hpp — finding NaN and infinities where training must not go on with
// them: the first parameter whose gradient or value is not finite (named when a step's loss or
// gradient norm is not finite), and the first tensor of a safetensors file holding such a value
// (a checkpoint that would train NaN from its first step is refused on load, train/checkpoint.hpp).
//
// torch applies a non-finite gradient unless a GradScaler skips it (torch.amp docs, "Gradient
// scaling"); transformers' Trainer only filters such losses from its logs (logging_nan_inf_filter).
// The training loops here stop at such a step, naming it, or skip it when asked, counting the
// skipped steps in the metrics (train/trainer.hpp, the Fashion-MNIST example).
#pragma once

#include <bit>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <optional>
#include <string>

#include "mmalign/core/backend.hpp"
#include "mmalign/core/tensor.hpp"
#include "mmalign/io/safetensors.hpp"

namespace mmalign {

/// Where a non-finite value was found: the parameter or tensor, the element's flat index and the value.
struct NonFiniteValue {
    std::string name;
    std::int64_t index = 0;
    double value = 0;

    /// "'name'[index] = nan"
    std::string str() const {
        return "'" + name + "'[" + std::to_string(index) + "] = " +
               (std::isnan(value) ? std::string("nan") : value > 0 ? std::string("inf") : std::string("-inf"));
    }
};

namespace detail {

/// The first non-finite element of `t` (host memory), if any.
template <class T>
std::optional<std::int64_t> first_nonfinite(const Tensor<T>& t) {
    const T* x = t.data();
    for (index_t i = 0; i < t.numel(); ++i)
        if (!std::isfinite(static_cast<double>(x[i]))) return std::int64_t(i);
    return std::nullopt;
}

/// The first non-finite element of the parameter tensor `src` (any backend storage), copied to the host.
template <Backend B, class Storage>
std::optional<NonFiniteValue> scan_storage(B& be, const std::string& name, const Storage& src) {
    using C = typename B::Compute;
    Tensor<C> host(src.shape());  // the tensor's shape
    be.to_host(src.cview(), host.view());
    if (const auto i = first_nonfinite(host)) return NonFiniteValue{name, *i, static_cast<double>(host.data()[*i])};
    return std::nullopt;
}

}  // namespace detail

/// The first trainable parameter of `module` (in visit order) whose gradient holds a non-finite value.
template <Backend B, class M>
std::optional<NonFiniteValue> first_nonfinite_gradient(B& be, M& module) {
    std::optional<NonFiniteValue> found;
    module.visit([&](const std::string& name, auto& p) {
        if (found || !p.requires_grad || !p.has_grad()) return;
        found = detail::scan_storage(be, name, p.grad);
    });
    return found;
}

/// The first parameter of `module` (in visit order) whose value is not finite.
template <Backend B, class M>
std::optional<NonFiniteValue> first_nonfinite_parameter(B& be, M& module) {
    std::optional<NonFiniteValue> found;
    module.visit([&](const std::string& name, auto& p) {
        if (!found) found = detail::scan_storage(be, name, p.value);
    });
    return found;
}

/// A loss or norm as the messages print it: "nan" whatever its sign bit, "inf", "-inf", else %g.
inline std::string figure_text(double x) {
    if (std::isnan(x)) return "nan";
    char buf[32];
    std::snprintf(buf, sizeof buf, "%g", x);
    return buf;
}

/// What stops a training run at a step whose loss or gradient norm is not finite: the step
/// (1-based), both figures, and the first parameter whose gradient, else value, is not finite.
template <Backend B, class M>
std::string nonfinite_step_message(B& be, M& model, long step, double loss, double grad_norm) {
    std::string where;
    if (const auto g = first_nonfinite_gradient(be, model)) where = "; first non-finite gradient: " + g->str();
    else if (const auto p = first_nonfinite_parameter(be, model)) where = "; first non-finite weight: " + p->str();
    else where = "; every gradient and weight is finite (the loss itself overflowed)";
    return "step " + std::to_string(step) + ": the loss is " + figure_text(loss) + " and the gradient norm " +
           figure_text(grad_norm) + where +
           "; the run stops before this step's update (checkpoints already written are kept; --skip-nonfinite-steps "
           "skips such steps instead)";
}

/// The first floating-point tensor of `f` (F16, BF16, F32, F64; in name order) holding NaN or an
/// infinity, read from the stored bytes. Linear in the file's size; integer tensors cannot hold one.
inline std::optional<NonFiniteValue> first_nonfinite_tensor(const io::SafetensorsFile& f) {
    for (const std::string& name : f.names()) {
        const io::Dtype d = f.info(name).dtype;
        const auto raw = f.bytes(name);
        const std::byte* p = raw.data();
        auto report = [&](std::size_t i, double v) { return NonFiniteValue{name, std::int64_t(i), v}; };
        if (d == io::Dtype::F32) {
            for (std::size_t i = 0; i < raw.size() / 4; ++i) {
                float v;
                std::memcpy(&v, p + 4 * i, 4);
                if (!std::isfinite(v)) return report(i, v);
            }
        } else if (d == io::Dtype::F64) {
            for (std::size_t i = 0; i < raw.size() / 8; ++i) {
                double v;
                std::memcpy(&v, p + 8 * i, 8);
                if (!std::isfinite(v)) return report(i, v);
            }
        } else if (d == io::Dtype::F16 || d == io::Dtype::BF16) {
            // Both keep their exponent in the bits under the sign that a mask of all ones marks as
            // NaN or infinity: F16 0x7C00, BF16 0x7F80.
            const std::uint16_t exponent = d == io::Dtype::F16 ? 0x7C00 : 0x7F80;
            for (std::size_t i = 0; i < raw.size() / 2; ++i) {
                std::uint16_t h;
                std::memcpy(&h, p + 2 * i, 2);
                if ((h & exponent) == exponent) {
                    const float v = d == io::Dtype::F16 ? io::detail::f16_to_float(h) : io::detail::bf16_to_float(h);
                    return report(i, v);
                }
            }
        }
    }
    return std::nullopt;
}

}  // namespace mmalign
