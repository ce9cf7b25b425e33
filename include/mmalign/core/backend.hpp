// mmalign/core/backend.hpp — the Backend concept: the one op set every module is written against.
//
// A backend is an object (`be`) passed to every module call; it owns the run-time state (threads,
// scratch memory, and on CUDA the stream, handles and plan cache). Modules are templates over the
// backend type and call only these members, so a type that lacks one fails here, with this
// concept's name, instead of deep inside a model. backend/cpu/backend.hpp is the reference
// implementation and documents each op's semantics.
//
// Two element types: `Scalar` is what tensors store (float, double, or on CUDA a 16-bit format),
// `Compute` what values are computed in and what the op set's scalars (alpha, scale, eps, losses)
// and per-row statistics (LayerNorm mean and rstd, attention and cross-entropy log-sum-exps, L2
// norms) are kept in: those feed a backward, and rounding them to 16 bits would cost more than
// their few bytes save. For float and double backends the two are the same type.
#pragma once

#include <cstdint>
#include <span>
#include <utility>

#include "mmalign/core/ops.hpp"
#include "mmalign/core/tensor.hpp"

namespace mmalign {

template <class B>
concept Backend = requires(B& be, typename B::Compute s, TensorView<typename B::Scalar> v,
                           ConstView<typename B::Scalar> cv, typename B::Scalar* p, const typename B::Scalar* cp,
                           typename B::Compute* st, const typename B::Compute* cst, TensorView<typename B::Compute> sv,
                           const std::int32_t* ids, index_t n,
                           AttentionMask<typename B::Scalar> mask, Activation act, Trans t) {
    typename B::Scalar;
    typename B::Compute;
    typename B::Tensor;         // owning storage in the backend's memory: resize, view, data, shape, zero, fill
    typename B::ComputeTensor;  // the same, of Compute elements (statistics saved for a backward)
    typename B::IndexTensor;    // the same, of std::int32_t (an attention mask's key_keep kept across calls)
    { std::declval<typename B::Tensor&>().view() } -> std::same_as<TensorView<typename B::Scalar>>;
    { std::declval<typename B::ComputeTensor&>().view() } -> std::same_as<TensorView<typename B::Compute>>;
    { be.scope().tensor(Shape{n}) } -> std::same_as<TensorView<typename B::Scalar>>;
    { be.threads() } -> std::convertible_to<int>;
    be.gemm(t, t, n, n, n, s, cp, n, cp, n, s, p, n);
    be.gemm_strided_batched(t, t, n, n, n, s, cp, n, n, cp, n, n, s, p, n, n, n);
    be.gemm_batched_2d(t, t, n, n, n, s, cp, n, n, n, cp, n, n, n, s, p, n, n, n, n, n);
    be.linear_forward(cv, cv, cp, act, v, p);
    be.layer_norm_forward(cv, cv, cv, 1e-5, v, st, st);
    be.layer_norm_backward(cv, cv, cv, cst, cst, v, p, p);
    { be.fused_attention() } -> std::convertible_to<bool>;
    be.attention_forward(cp, cp, cp, n, n, n, n, n, n, s, mask, p, st);
    be.attention_backward(cp, cp, cp, n, n, n, n, n, n, s, mask, cp, cp, cst, p, p, p);
    be.attention_softmax_forward(v, s, mask);
    { be.upload_mask(mask, n, std::declval<typename B::IndexTensor&>()) } -> std::same_as<AttentionMask<typename B::Scalar>>;
    be.attention_softmax_backward(cv, v, s);
    be.softmax(cv, v);
    be.activation_forward(act, cv, v);
    be.activation_backward(act, cv, cv, v);
    be.add(cv, cv, v);
    be.axpy(s, cv, v);
    be.scale(s, v);
    be.copy(cv, v);
    be.from_host(cv, v);
    be.to_host(cv, v);
    be.fill(v, s);
    be.embedding_forward(ids, n, cv, v);
    be.embedding_backward(ids, n, cv, v);
    { be.cross_entropy_forward(cv, ids, std::int32_t(-100), s, st).loss } -> std::convertible_to<typename B::Compute>;
    be.cross_entropy_backward(cv, ids, cst, std::int32_t(-100), s, n, s, v);
    be.l2_normalize_forward(cv, v, st, s);
    be.l2_normalize_backward(cv, cv, cst, v);
    be.sum_rows_accumulate(cv, p);
    be.patchify(cv, n, v);
    be.adamw_step(v, cv, sv, sv, AdamWHyper{}, sv);  // moments and (optional) master weights in Compute
    { be.all_finite(std::span<const ConstView<typename B::Scalar>>{}) } -> std::convertible_to<bool>;
    { be.sum(cv) } -> std::convertible_to<typename B::Compute>;
    { be.sum(ConstView<typename B::Compute>{}) } -> std::convertible_to<typename B::Compute>;
    { be.dot(cv, cv) } -> std::convertible_to<typename B::Compute>;
};

}  // namespace mmalign
