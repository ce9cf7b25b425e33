// Helpers of the 16-bit storage tests, on any backend with a 16-bit Scalar: CudaBackend<bfloat16 /
// float16> (tests/cuda/test_cuda_half.cu) and their CPU reference CpuBackend<bfloat16 / float16>
// (tests/backend/test_cpu_half.cpp). Values cross to and from the backend through be.from_host /
// be.to_host in float (rounding to the storage type, widening exactly), so the same code serves
// device and host memory.
//
// Tolerances follow from the format's unit roundoff u (bfloat16 2^-8, float16 2^-11).
#pragma once

#include <doctest/doctest.h>

#include <cstdint>
#include <cstring>
#include <string>
#include <type_traits>
#include <vector>

#include "mmalign/core/float16.hpp"
#include "mmalign/models/clip.hpp"
#include "mmalign/train/adamw.hpp"
#include "mmalign/train/loss_scaler.hpp"
#include "support/clip_step.hpp"
#include "support/compare.hpp"

namespace mmalign::test {

template <class T>
constexpr double unit_roundoff = std::is_same_v<T, mmalign::bfloat16> ? 1.0 / 256 : 1.0 / 2048;

/// x rounded to T and back: the value a 16-bit tensor holds.
template <class T>
Tensor<float> rounded(const Tensor<float>& x) {
    Tensor<float> r(x.shape());
    for (index_t i = 0; i < x.numel(); ++i) r.data()[i] = static_cast<float>(T(x.data()[i]));
    return r;
}
template <class T>
Tensor<float> random_rounded(Shape s, unsigned seed, double lo = -1, double hi = 1) {
    return rounded<T>(random_host(s, seed, lo, hi));
}

/// Bit-for-bit equality of two float tensors (NaN payloads included).
inline bool same_bits(ConstView<float> a, ConstView<float> b) {
    return a.shape() == b.shape() && std::memcmp(a.data(), b.data(), sizeof(float) * std::size_t(a.numel())) == 0;
}

/// ‖got − want‖ / ‖want‖ ≤ tol, every element written.
inline void check_norm(const std::string& what, ConstView<float> got, ConstView<float> want, double tol) {
    REQUIRE(got.shape() == want.shape());
    const Comparison c = compare(got, want);
    INFO(what << ": relative norm error " << c.rel_norm << " (max |diff| " << c.max_abs << ", max |want| " << c.scale
              << "), tolerance " << tol);
    CHECK(c.finite);
    CHECK(c.rel_norm <= tol);
}

/// The training fixture's batch with its pixels rounded to T.
template <class T>
ClipBatch half_batch() {
    ClipBatch b = ClipBatch::load();
    b.pixels = rounded<T>(b.pixels);
    return b;
}

/// A backend tensor (storage or Compute type) as host floats.
template <class B, class U>
Tensor<float> to_float(B& be, ConstView<U> d) {
    Tensor<float> h(d.shape());
    be.to_host(d, h.view());
    return h;
}
/// Host floats into a new backend tensor of the storage type (rounded).
template <class B>
typename B::Tensor to_backend(B& be, const Tensor<float>& h) {
    typename B::Tensor d(h.shape());
    be.from_host(h.cview(), d.view());
    return d;
}

/// Bit-for-bit equality of two backend tensors, 16-bit or float (widening 16-bit to float is exact
/// and one to one).
template <class B, class U>
bool same_values(B& be, ConstView<U> a, ConstView<U> b) {
    if (!(a.shape() == b.shape())) return false;
    const Tensor<float> ha = to_float(be, a), hb = to_float(be, b);
    return std::memcmp(ha.data(), hb.data(), sizeof(float) * std::size_t(ha.numel())) == 0;
}

/// AdamW steps 1 to 3 (lr 0.01, weight decay 0.1) side by side: the float reference p, m, v on
/// `cpu` with gradient g, and the 16-bit parameter gp on `be` with float moments gm, gv and float
/// master, its gradient gg scaled by 1024 and unscaled through grad_scale.
template <class C, class B>
void adamw_three_steps(C& cpu, TensorView<float> p, ConstView<float> g, TensorView<float> m, TensorView<float> v,
                       B& be, TensorView<typename B::Scalar> gp, ConstView<typename B::Scalar> gg,
                       TensorView<float> gm, TensorView<float> gv, TensorView<float> master) {
    for (std::int64_t step = 1; step <= 3; ++step) {
        const AdamWHyper h{.lr = 0.01, .weight_decay = 0.1, .step = step};
        cpu.adamw_step(p, g, m, v, h);
        AdamWHyper hs = h;
        hs.grad_scale = 1.0 / 1024.0;
        be.adamw_step(gp, gg, gm, gv, hs, master);
    }
}

/// A mixed-precision training run of the tiny HF CLIP on the training fixture's batch: the model
/// (from_pretrained: the float checkpoint rounded to the storage type), AdamW (float master
/// weights) and a LossScaler from 2^10 that grows every third step.
template <class B>
struct HalfRun {
    Clip<B> model;
    AdamW<B> opt;
    LossScaler<B> scaler;

    explicit HalfRun(B& be)
        : model(Clip<B>::from_pretrained(be, std::string(MMALIGN_FIXTURE_DIR) + "/clip/tiny_quick_gelu")),
          opt(adamw_config()),
          scaler(scaler_config()) {}

    static typename AdamW<B>::Config adamw_config() {
        typename AdamW<B>::Config c;
        c.lr = 1e-3;
        c.weight_decay = 0.1;
        return c;
    }
    static typename LossScaler<B>::Config scaler_config() {
        typename LossScaler<B>::Config c;
        c.init_scale = 1024.0;
        c.growth_interval = 3;
        return c;
    }
};

/// n steps of `r` on the batch (3 pairs), the backward seeded with the loss scale.
template <class B>
void half_steps(B& be, HalfRun<B>& r, const ClipBatch& batch, ConstView<typename B::Scalar> px, int n) {
    for (int s = 0; s < n; ++s) {
        clip_infonce_backward(be, r.model, px, batch.ids, batch.mask, 3, float(r.scaler.scale()));
        r.scaler.step(be, r.opt, r.model);  // a skipped step would be skipped in both runs alike
    }
}

/// Every trainable parameter of `model` has a master in `opt` equal bit for bit to `want` (the
/// float values, in visiting order), and some master differs from its parameter (it holds more
/// than the 16-bit value).
template <class B, class M>
void check_masters_equal(B& be, AdamW<B>& opt, M& model, const std::vector<Tensor<float>>& want) {
    std::size_t i = 0, finer = 0;
    model.visit([&](const std::string& name, auto& p) {
        CAPTURE(name);
        const Tensor<float>& w = want[i++];
        REQUIRE(opt.state().count(name) == 1);
        const Tensor<float> master = to_float(be, opt.state().at(name).master.cview()),
                            value = to_float(be, p.value.cview());
        REQUIRE(master.shape() == w.shape());
        CHECK(std::memcmp(master.data(), w.data(), sizeof(float) * std::size_t(w.numel())) == 0);
        for (index_t k = 0; k < w.numel(); ++k) finer += master.data()[k] != value.data()[k];
    });
    CHECK(finer > 0);
}

/// After a step every parameter is its master rounded to the storage type (the master was used,
/// not restarted).
template <class B, class M>
void check_parameters_are_rounded_masters(B& be, AdamW<B>& opt, M& model) {
    model.visit([&](const std::string& name, auto& p) {
        CAPTURE(name);
        const Tensor<float> value = to_float(be, p.value.cview()),
                            master = rounded<typename B::Scalar>(to_float(be, opt.state().at(name).master.cview()));
        CHECK(std::memcmp(value.data(), master.data(), sizeof(float) * std::size_t(value.numel())) == 0);
    });
}

}  // namespace mmalign::test
