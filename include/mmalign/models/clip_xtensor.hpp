// mmalign/models/clip_xtensor.hpp — Clip's host API with xtensor inputs and outputs.
//
//   image_features(be, model, pixels)         pixels [Bi, C, S, S]        → xt::xtensor [Bi, E]
//   text_features(be, model, ids[, mask])     ids, mask [Bt, T] (int32)   → xt::xtensor [Bt, E]
//   forward(be, model, pixels, ids[, mask])   CLIPModel's outputs as ClipXtensorOutput
//
// Inputs are any xtensor expressions of the model's scalar type (pixels) and std::int32_t (ids
// and the 0/1 attention_mask, as HF's tokenizer returns them and io::ClipTokenizer does: wrap
// its Tensors with as_xtensor<2>). Memory that is already row-major contiguous (containers,
// as_xtensor views, row ranges) is read in place; anything else (a stepped or transposed view,
// a column-major container, a lazy expression) is evaluated once into a temporary first.
// Outputs are owning xt::xtensor, ready for xtensor algebra (similarities, argsort, top-k).
//
// These are free functions over Clip, not members, so that models/clip.hpp does not depend on
// xtensor (core/xtensor.hpp says why). They need a backend whose tensors live in host memory
// (CpuBackend); a device backend's model takes its own tensors (be.from_host / be.to_host).
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <type_traits>

#include <xtensor/xtensor.hpp>

#include "mmalign/core/xtensor.hpp"
#include "mmalign/models/clip.hpp"

namespace mmalign {

/// CLIPModel's outputs as owning xtensor containers (row-major, like Clip::Output).
template <class T>
struct ClipXtensorOutput {
    xt::xtensor<T, 2, xt::layout_type::row_major> image_embeds;      // [Bi, E], unit rows
    xt::xtensor<T, 2, xt::layout_type::row_major> text_embeds;       // [Bt, E], unit rows
    xt::xtensor<T, 2, xt::layout_type::row_major> logits_per_image;  // [Bi, Bt]
    xt::xtensor<T, 2, xt::layout_type::row_major> logits_per_text;   // [Bt, Bi]
};

namespace detail {

template <class B>
constexpr void require_host_storage() {
    static_assert(std::is_same_v<typename B::Tensor, Tensor<typename B::Scalar>>,
                  "Clip's xtensor entry points read and write host memory; a model on a device backend takes its "
                  "backend's tensors (copy with be.from_host / be.to_host).");
}

/// A read-only view of an input expression: its own memory when that is row-major contiguous,
/// otherwise a copy evaluated into `keep` (which must outlive the view).
template <class V, class E>
ConstView<V> host_input(const E& e, Tensor<V>& keep) {
    static_assert(std::is_same_v<std::remove_cv_t<typename E::value_type>, V>,
                  "Clip's xtensor inputs hold the model's scalar type (pixels) or std::int32_t (ids, attention_mask); "
                  "convert others explicitly, e.g. xt::cast<std::int32_t>(ids).");
    if constexpr (xt::has_data_interface<E>::value && xt::has_strides<E>::value)
        if (is_row_major_contiguous(e)) return as_tensor_view(e);
    keep = to_tensor(e);
    return keep.cview();
}

/// pixels [Bi, C, S, S]: the rank here (the batch is read off axis 0); the vision tower checks C and S.
template <class T>
ConstView<T> checked_pixels(ConstView<T> pixels) {
    expect_shape(pixels.shape(), {-1, -1, -1, -1}, "Clip: pixels");
    return pixels;
}

/// ids [Bt, T] and an attention_mask of the same shape (or an empty view: no padding).
inline index_t checked_text(ConstView<std::int32_t> ids, ConstView<std::int32_t> mask) {
    expect_shape(ids.shape(), {-1, -1}, "Clip: input_ids");
    if (!mask.empty() && !(mask.shape() == ids.shape()))
        throw ShapeError("Clip: attention_mask " + mask.shape().str() + " differs from input_ids " + ids.shape().str());
    return ids.dim(0);
}

// An empty span for an empty view: a default ConstView has rank 0 (one element) but no data.
inline std::span<const std::int32_t> as_span(ConstView<std::int32_t> v) {
    if (v.empty()) return {};
    return {v.data(), static_cast<std::size_t>(v.numel())};
}

template <class B, class P, class I>
ClipXtensorOutput<typename B::Scalar> forward(B& be, const Clip<B>& model, const P& pixels, const I& ids,
                                              ConstView<std::int32_t> mask) {
    using T = typename B::Scalar;
    Tensor<T> keep_px;
    Tensor<std::int32_t> keep_ids;
    const ConstView<T> px = checked_pixels(host_input(pixels, keep_px));  // [Bi, C, S, S]
    const ConstView<std::int32_t> id = host_input(ids, keep_ids);               // [Bt, T]
    const index_t batch = checked_text(id, mask);
    const auto o = model.forward(be, px, as_span(id), as_span(mask), batch);
    return {to_xtensor<2>(o.image_embeds), to_xtensor<2>(o.text_embeds), to_xtensor<2>(o.logits_per_image),
            to_xtensor<2>(o.logits_per_text)};
}

}  // namespace detail

/// HF get_image_features: pixels [Bi, C, S, S] → features [Bi, E] (not normalised), computed
/// straight into the returned container.
template <Backend B, XtensorExpression P>
xt::xtensor<typename B::Scalar, 2, xt::layout_type::row_major> image_features(B& be, const Clip<B>& model,
                                                                              const P& pixels) {
    detail::require_host_storage<B>();
    using T = typename B::Scalar;
    Tensor<T> keep;
    const ConstView<T> px = detail::checked_pixels(detail::host_input(pixels, keep));  // [Bi, C, S, S]
    auto out = xt::xtensor<T, 2, xt::layout_type::row_major>::from_shape(
        {static_cast<std::size_t>(px.dim(0)), static_cast<std::size_t>(model.config.projection_dim)});  // [Bi, E]
    model.image_features(be, px, as_tensor_view(out));
    return out;
}

/// HF get_text_features: ids and attention_mask [Bt, T] → features [Bt, E] (not normalised).
template <Backend B, XtensorExpression I, XtensorExpression M>
xt::xtensor<typename B::Scalar, 2, xt::layout_type::row_major> text_features(B& be, const Clip<B>& model,
                                                                             const I& ids, const M& attention_mask) {
    detail::require_host_storage<B>();
    Tensor<std::int32_t> keep_ids, keep_mask;
    const ConstView<std::int32_t> id = detail::host_input(ids, keep_ids);              // [Bt, T]
    const ConstView<std::int32_t> mask = detail::host_input(attention_mask, keep_mask);  // [Bt, T]
    const index_t batch = detail::checked_text(id, mask);
    auto out = xt::xtensor<typename B::Scalar, 2, xt::layout_type::row_major>::from_shape(
        {static_cast<std::size_t>(batch), static_cast<std::size_t>(model.config.projection_dim)});  // [Bt, E]
    model.text_features(be, detail::as_span(id), detail::as_span(mask), batch, as_tensor_view(out));
    return out;
}
/// The same for unpadded ids (every position is a token).
template <Backend B, XtensorExpression I>
xt::xtensor<typename B::Scalar, 2, xt::layout_type::row_major> text_features(B& be, const Clip<B>& model,
                                                                             const I& ids) {
    detail::require_host_storage<B>();
    Tensor<std::int32_t> keep_ids;
    const ConstView<std::int32_t> id = detail::host_input(ids, keep_ids);  // [Bt, T]
    const index_t batch = detail::checked_text(id, {});
    auto out = xt::xtensor<typename B::Scalar, 2, xt::layout_type::row_major>::from_shape(
        {static_cast<std::size_t>(batch), static_cast<std::size_t>(model.config.projection_dim)});  // [Bt, E]
    model.text_features(be, detail::as_span(id), {}, batch, as_tensor_view(out));
    return out;
}

/// CLIPModel's forward for inference (Clip::forward): normalised embeddings and both logit
/// matrices, logits = exp(logit_scale) · cosine similarity.
template <Backend B, XtensorExpression P, XtensorExpression I, XtensorExpression M>
ClipXtensorOutput<typename B::Scalar> forward(B& be, const Clip<B>& model, const P& pixels, const I& ids,
                                              const M& attention_mask) {
    detail::require_host_storage<B>();
    Tensor<std::int32_t> keep_mask;
    return detail::forward(be, model, pixels, ids, detail::host_input(attention_mask, keep_mask));
}
/// The same for unpadded ids.
template <Backend B, XtensorExpression P, XtensorExpression I>
ClipXtensorOutput<typename B::Scalar> forward(B& be, const Clip<B>& model, const P& pixels, const I& ids) {
    detail::require_host_storage<B>();
    return detail::forward(be, model, pixels, ids, {});
}

}  // namespace mmalign
