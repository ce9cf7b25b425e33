// mmalign/io/tensor_map.hpp — loading and saving a module's parameters where a Hugging Face state
// dict does not hold one tensor per parameter name: fused, renamed, structurally zero, tied and
// optional tensors, over any TensorSource (io/safetensors.hpp).
//
// A module's `visit` names its parameters; a TensorMap says how the file stores those that are
// not stored one-to-one under their own name (every other parameter is):
//   fuse(key, {a, b, c})   key = [a; b; c] stacked on the first axis. HF BLIP and BLIP-2 keep an
//                          attention's q/k/v as one `self_attn.qkv` Linear (modeling_blip.py
//                          BlipAttention: weight [3D, D], bias [3D], rows q, k, v in that order)
//   rename(key, name)      `name` is stored as `key` (LAVIS's EVA ViT, lavis/models/eva_vit.py:
//                          `attn.q_bias`, `attn.v_bias`; transformers' conversion_mapping.py renames
//                          VideoMAE's the same way)
//   zero(name)             `name` is not stored: it is zero by construction (the k bias of those
//                          checkpoints; the module freezes it). Load writes zeros; save checks it
//                          is still zero and writes nothing
//   tie(name, alias)       one parameter under two keys (an LM head tied to the word embeddings):
//                          load reads whichever the file has, and when it has both they must be
//                          equal; save writes `name` only, as transformers' save_pretrained does
//                          (modeling_utils.py remove_tied_weights_from_state_dict keeps the tie's
//                          source and drops its targets such as lm_head.weight)
//   optional(name)         `name` may be absent from the file; it then keeps its value
// Names are relative to the module (as `visit(f)` gives them) and keys to the same root; the
// load/save `prefix` is prepended to every key. A module describes its own layout with
// `hf_layout(map, prefix)` (encoders/vision_transformer.hpp); hf_tensor_map(module) collects it.
//
// As load_parameters, load_mapped checks every key, shape and dtype against the file before
// reading one tensor byte (shapes come from TensorSource::info), and reports every problem in one
// single-line IoError; a fused tensor of the wrong size is one of them ("key: expected shape
// [3·D, D] (3 parameters of [D, D] stacked on the first axis), found [...]"), so no buffer is sized
// from a bad header. Tied tensors present twice are compared before any parameter is written, so a
// failed load leaves the module untouched. Saving writes the file's own form back (fused tensors
// concatenated, renamed keys, zeros and aliases omitted): load_mapped ∘ save_mapped is the
// identity bit for bit, and a state dict that came from transformers goes back to it unchanged.
#pragma once

#include <cstddef>
#include <deque>
#include <map>
#include <set>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "mmalign/core/backend.hpp"
#include "mmalign/core/error.hpp"
#include "mmalign/core/parameter.hpp"
#include "mmalign/core/tensor.hpp"
#include "mmalign/io/safetensors.hpp"

namespace mmalign::io {

/// How a module's parameters are stored in a file, where that is not one tensor per name.
class TensorMap {
public:
    enum class Kind { fused, renamed, zero, tied };
    struct Group {
        std::string key;                 // the file's tensor
        std::vector<std::string> parts;  // module names, in the order they are stacked
    };
    struct Rule {
        Kind kind = Kind::renamed;
        std::string key;          // renamed: the file key; tied: the alias
        std::size_t group = 0;    // fused: index into groups()
        std::size_t part = 0;     // fused: position within the group
    };

    /// `key` holds `parts` stacked along the first axis.
    TensorMap& fuse(std::string key, std::vector<std::string> parts) {
        if (parts.empty()) throw ArgumentError("TensorMap::fuse: '" + key + "' needs at least one part");
        claim_key(key);
        for (std::size_t i = 0; i < parts.size(); ++i)
            add(parts[i], Rule{Kind::fused, {}, groups_.size(), i});
        groups_.push_back({std::move(key), std::move(parts)});
        return *this;
    }
    /// Parameter `name` is stored under `key`.
    TensorMap& rename(std::string key, std::string name) {
        claim_key(key);
        add(name, Rule{Kind::renamed, std::move(key), 0, 0});
        return *this;
    }
    /// Parameter `name` is not stored: it is zero by construction.
    TensorMap& zero(std::string name) {
        add(name, Rule{Kind::zero, {}, 0, 0});
        return *this;
    }
    /// Parameter `name` is stored under `name`, `alias`, or both (equal).
    TensorMap& tie(std::string name, std::string alias) {
        claim_key(alias);
        add(name, Rule{Kind::tied, std::move(alias), 0, 0});
        return *this;
    }
    /// Parameter `name` may be missing from a file (it then keeps its value).
    TensorMap& optional(std::string name) {
        optional_.insert(std::move(name));
        return *this;
    }

    bool empty() const { return rules_.empty() && optional_.empty(); }
    const Rule* rule(const std::string& name) const {
        auto it = rules_.find(name);
        return it == rules_.end() ? nullptr : &it->second;
    }
    bool is_optional(const std::string& name) const { return optional_.count(name) > 0; }
    const std::vector<Group>& groups() const { return groups_; }
    const std::map<std::string, Rule>& rules() const { return rules_; }
    const std::set<std::string>& optional_names() const { return optional_; }

private:
    void add(const std::string& name, Rule r) {
        if (!rules_.emplace(name, std::move(r)).second)
            throw ArgumentError("TensorMap: parameter '" + name + "' is given two storage rules");
    }
    void claim_key(const std::string& key) {
        if (!keys_.insert(key).second) throw ArgumentError("TensorMap: file key '" + key + "' is given two rules");
    }

    std::map<std::string, Rule> rules_;
    std::vector<Group> groups_;
    std::set<std::string> optional_;
    std::set<std::string> keys_;
};

/// The TensorMap a module declares with `hf_layout(map, prefix)`, or an empty one (every parameter
/// stored under its own name) when it declares none.
template <class M>
TensorMap hf_tensor_map(M& module) {
    TensorMap map;
    if constexpr (requires { module.hf_layout(map, std::string()); }) module.hf_layout(map, std::string());
    return map;
}

namespace detail {

/// Shapes of a module's parameters by name, in visit order.
template <class M>
std::vector<std::pair<std::string, Shape>> parameter_shapes(M& module) {
    std::vector<std::pair<std::string, Shape>> out;
    module.visit([&](const std::string& name, auto& p) { out.emplace_back(name, p.value.shape()); });
    return out;
}

/// [Σ first extents, rest…] of `parts` stacked on the first axis; ArgumentError when the parts'
/// other extents differ (the map itself is wrong then, not the file).
inline Shape stacked_shape(const TensorMap::Group& g, const std::map<std::string, Shape>& shapes) {
    Shape first;
    index_t rows = 0;
    for (std::size_t i = 0; i < g.parts.size(); ++i) {
        auto it = shapes.find(g.parts[i]);
        if (it == shapes.end())
            throw ArgumentError("TensorMap: '" + g.key + "' fuses '" + g.parts[i] + "', which the module does not have");
        const Shape& s = it->second;
        if (s.rank() == 0) throw ArgumentError("TensorMap: '" + g.parts[i] + "' is a scalar and cannot be fused");
        if (i == 0) first = s;
        bool same = s.rank() == first.rank();
        for (int d = 1; same && d < s.rank(); ++d) same = s[d] == first[d];
        if (!same)
            throw ArgumentError("TensorMap: '" + g.key + "' fuses " + first.str() + " and " + s.str() +
                                ", which differ beyond the first axis");
        rows += s[0];
    }
    switch (first.rank()) {
        case 1: return {rows};
        case 2: return {rows, first[1]};
        case 3: return {rows, first[1], first[2]};
        default: return {rows, first[1], first[2], first[3]};
    }
}

/// Checks a mapped load against `source` before anything is read (tied tensors present twice are
/// compared by the caller). Throws one IoError that lists every problem.
template <class C, TensorSource S>
void check_mapped(const std::vector<std::pair<std::string, Shape>>& params, const TensorMap& map, const S& source,
                  const std::string& prefix, const LoadOptions& opt) {
    std::map<std::string, Shape> shapes(params.begin(), params.end());
    for (const auto& [name, rule] : map.rules())
        if (!shapes.count(name)) throw ArgumentError("TensorMap names '" + name + "', which the module does not have");
    for (const auto& name : map.optional_names())
        if (!shapes.count(name)) throw ArgumentError("TensorMap names '" + name + "', which the module does not have");
    // Every file key is read for one purpose: a rule's key may not be another parameter's own name.
    std::map<std::string, std::string> reader;  // file key → what reads it
    auto claim = [&](const std::string& key, const std::string& who) {
        if (auto [it, fresh] = reader.emplace(key, who); !fresh)
            throw ArgumentError("TensorMap: file key '" + key + "' would be read for both " + it->second + " and " + who);
    };
    for (const auto& g : map.groups()) claim(g.key, "the fused '" + g.key + "'");
    for (const auto& [name, shape] : params) {
        const TensorMap::Rule* r = map.rule(name);
        if (!r) claim(name, "parameter '" + name + "'");
        else if (r->kind == TensorMap::Kind::renamed) claim(r->key, "parameter '" + name + "'");
        else if (r->kind == TensorMap::Kind::tied) claim(name, "parameter '" + name + "'"), claim(r->key, "the tie of '" + name + "'");
    }

    LoadProblems problems;
    std::set<std::string> expected_keys;
    // One file tensor: present with `want` shape and a usable dtype, or missing.
    auto check = [&](const std::string& key, const Shape& want, bool may_miss, const std::string& detail) {
        expected_keys.insert(key);
        if (!source.contains(key)) {
            if (!may_miss) problems.missing.push_back(key + " (expected " + want.str() + detail + ")");
            return;
        }
        const TensorInfo& e = source.info(key);
        if (!(e.shape == want)) problems.mismatched.push_back(key + ": expected shape " + want.str() + detail + ", found " + e.shape.str());
        if (const std::string why = conversion_problem<C>(e.dtype); !why.empty()) problems.bad_dtype.push_back(key + ": " + why);
    };
    for (const auto& g : map.groups()) {
        const Shape want = stacked_shape(g, shapes);
        bool may_miss = opt.allow_missing;
        for (const auto& part : g.parts) may_miss = may_miss || map.is_optional(part);
        const Shape& part_shape = shapes.at(g.parts[0]);
        std::string how = " (" + std::to_string(g.parts.size()) + " parameters";
        bool uniform = true;
        for (const auto& part : g.parts) uniform = uniform && shapes.at(part) == part_shape;
        how += uniform ? " of " + part_shape.str() + " stacked on the first axis)" : " stacked on the first axis)";
        check(prefix + g.key, want, may_miss, how);
    }
    for (const auto& [name, shape] : params) {
        const TensorMap::Rule* r = map.rule(name);
        const bool may_miss = opt.allow_missing || map.is_optional(name);
        if (!r) {
            check(prefix + name, shape, may_miss, "");
        } else if (r->kind == TensorMap::Kind::renamed) {
            check(prefix + r->key, shape, may_miss, " for parameter " + name);
        } else if (r->kind == TensorMap::Kind::tied) {
            const std::string a = prefix + name, b = prefix + r->key;
            const bool either = source.contains(a) || source.contains(b);
            check(a, shape, true, "");
            check(b, shape, true, "");
            if (!either && !may_miss) problems.missing.push_back(a + " or its tied alias " + b + " (expected " + shape.str() + ")");
        }
    }
    if (!opt.allow_unexpected) problems.find_unexpected(source, prefix, expected_keys, opt.ignored);
    problems.throw_if_any(source.path(), prefix);
}

}  // namespace detail

/// The file keys and shapes that save_mapped writes for `module` (and load_mapped expects): the
/// module's state dict in the file's form, e.g. to compare with a transformers checkpoint's keys.
template <class M>
std::map<std::string, Shape> mapped_shapes(M& module, const TensorMap& map, const std::string& prefix = "") {
    const auto params = detail::parameter_shapes(module);
    const std::map<std::string, Shape> shapes(params.begin(), params.end());
    std::map<std::string, Shape> out;
    for (const auto& g : map.groups()) out.emplace(prefix + g.key, detail::stacked_shape(g, shapes));
    for (const auto& [name, shape] : params) {
        const TensorMap::Rule* r = map.rule(name);
        if (!r || r->kind == TensorMap::Kind::tied) out.emplace(prefix + name, shape);
        else if (r->kind == TensorMap::Kind::renamed) out.emplace(prefix + r->key, shape);
    }
    return out;
}

/// Loads every parameter `module.visit` names from `source` through `map`, under `prefix`, into the
/// backend's storage (host staging of the backend's Compute type where needed, as load_parameters).
/// All keys, shapes and dtypes are checked first and tied duplicates compared; any problem throws
/// one IoError and leaves the module untouched. A fused tensor is read once and sliced.
template <Backend B, class M, TensorSource S>
void load_mapped(B& be, M& module, const S& source, const TensorMap& map, const std::string& prefix = "",
                 const LoadOptions& options = {}) {
    using C = typename B::Compute;
    const auto params = detail::parameter_shapes(module);
    const std::map<std::string, Shape> shapes(params.begin(), params.end());
    detail::check_mapped<C>(params, map, source, prefix, options);

    // Tied parameters stored twice: both copies must agree before anything is written.
    std::map<std::string, Tensor<C>> tied_values;
    for (const auto& [name, shape] : params) {
        const TensorMap::Rule* r = map.rule(name);
        if (!r || r->kind != TensorMap::Kind::tied) continue;
        const std::string a = prefix + name, b = prefix + r->key;
        if (!source.contains(a) || !source.contains(b)) continue;
        Tensor<C> va(shape), vb(shape);  // the parameter's shape, from each key
        source.read_into(a, va.view());
        source.read_into(b, vb.view());
        index_t first_diff = -1;
        for (index_t i = 0; i < va.numel() && first_diff < 0; ++i)
            if (!(va.data()[i] == vb.data()[i])) first_diff = i;
        if (first_diff >= 0)
            throw IoError("safetensors '" + std::string(source.path()) + "': '" + a + "' and '" + b +
                          "' are one tied parameter but differ (first at flat index " + std::to_string(first_diff) +
                          ": " + std::to_string(double(va.data()[first_diff])) + " vs " +
                          std::to_string(double(vb.data()[first_diff])) + ")");
        tied_values.emplace(name, std::move(va));
    }

    // Fused tensors are read on their first part and released after their last.
    std::map<std::size_t, std::pair<Tensor<C>, std::size_t>> fused;  // group → (tensor, parts left)
    Tensor<C> staging;
    module.visit([&](const std::string& name, auto& p) {
        const TensorMap::Rule* r = map.rule(name);
        auto dst = p.value.view();
        if (!r) {
            if (source.contains(prefix + name)) read_into_backend(be, source, prefix + name, dst, staging);
            return;
        }
        switch (r->kind) {
            case TensorMap::Kind::zero:
                be.fill(dst, C(0));
                return;
            case TensorMap::Kind::renamed:
                if (source.contains(prefix + r->key)) read_into_backend(be, source, prefix + r->key, dst, staging);
                return;
            case TensorMap::Kind::tied: {
                if (auto it = tied_values.find(name); it != tied_values.end()) {
                    be.from_host(it->second.cview(), dst);
                    return;
                }
                for (const std::string& key : {prefix + name, prefix + r->key})
                    if (source.contains(key)) {
                        read_into_backend(be, source, key, dst, staging);
                        return;
                    }
                return;
            }
            case TensorMap::Kind::fused: {
                const TensorMap::Group& g = map.groups()[r->group];
                const std::string key = prefix + g.key;
                if (!source.contains(key)) return;  // allowed missing: checked above
                auto it = fused.find(r->group);
                if (it == fused.end()) {
                    Tensor<C> whole(source.info(key).shape);  // [Σ parts' first extents, …], checked above
                    source.read_into(key, whole.view());
                    it = fused.emplace(r->group, std::make_pair(std::move(whole), g.parts.size())).first;
                }
                index_t row = 0;
                for (std::size_t i = 0; i < r->part; ++i) row += shapes.at(g.parts[i])[0];
                const ConstView<C> whole = it->second.first.cview();
                be.from_host(whole.slice(row, row + dst.dim(0)), dst);
                if (--it->second.second == 0) fused.erase(it);
                return;
            }
        }
    });
}

/// Host copies of a module's parameters in a file's form, for one save_safetensors call (with
/// other tensors, e.g. training state, added to `tensors()` by the caller).
template <Backend B>
class MappedTensors {
public:
    const std::vector<TensorToSave>& tensors() const { return tensors_; }
    std::vector<TensorToSave>& tensors() { return tensors_; }

    /// Adds the parameters of `module` under `prefix`, in the file's form that `map` describes.
    /// A zero() parameter that is not zero throws IoError: that layout cannot store it.
    template <class M>
    void add(B& be, M& module, const TensorMap& map, const std::string& prefix = "") {
        using C = typename B::Compute;
        const auto params = detail::parameter_shapes(module);
        const std::map<std::string, Shape> shapes(params.begin(), params.end());
        for (const auto& [name, rule] : map.rules())
            if (!shapes.count(name)) throw ArgumentError("TensorMap names '" + name + "', which the module does not have");
        std::map<std::size_t, Tensor<C>*> fused;  // group → its concatenation, filled part by part
        module.visit([&](const std::string& name, auto& p) {
            const TensorMap::Rule* r = map.rule(name);
            const auto src = p.value.cview();
            if (!r || r->kind == TensorMap::Kind::tied) {
                add_tensor(be, prefix + name, src);
            } else if (r->kind == TensorMap::Kind::renamed) {
                add_tensor(be, prefix + r->key, src);
            } else if (r->kind == TensorMap::Kind::zero) {
                Tensor<C> host(src.shape());  // the parameter's shape
                be.to_host(src, host.view());
                for (C v : host)
                    if (!(v == C(0)))
                        throw IoError("cannot save '" + prefix + name + "': this layout stores it as absent (zero by "
                                      "construction), but it holds nonzero values");
            } else {
                const TensorMap::Group& g = map.groups()[r->group];
                auto it = fused.find(r->group);
                if (it == fused.end()) {
                    Tensor<C>& whole = owned_.emplace_back(detail::stacked_shape(g, shapes));  // [Σ rows, …]
                    it = fused.emplace(r->group, &whole).first;
                    tensors_.emplace_back(prefix + g.key, whole.cview());
                }
                index_t row = 0;
                for (std::size_t i = 0; i < r->part; ++i) row += shapes.at(g.parts[i])[0];
                be.to_host(src, it->second->view().slice(row, row + src.dim(0)));
            }
        });
    }

private:
    template <class U>
    void add_tensor(B& be, std::string name, ConstView<U> src) {
        using C = typename B::Compute;
        if constexpr (detail::is_host_tensor<typename B::Tensor>::value && std::is_same_v<U, C>) {
            tensors_.emplace_back(std::move(name), src);  // host memory of the written type: no copy
        } else {
            Tensor<C>& h = owned_.emplace_back(src.shape());
            be.to_host(src, h.view());
            tensors_.emplace_back(std::move(name), h.cview());
        }
    }

    std::deque<Tensor<typename B::Compute>> owned_;  // a deque never moves what it already holds
    std::vector<TensorToSave> tensors_;
};

/// Saves every parameter of `module` to `path` in the form `map` describes (keys under `prefix`),
/// F32 from float and 16-bit storage, F64 from double; load_mapped reads it back exactly.
template <Backend B, class M>
void save_mapped(B& be, M& module, const std::string& path, const TensorMap& map, const std::string& prefix = "",
                 const std::map<std::string, std::string>& metadata = {}) {
    MappedTensors<B> out;
    try {
        out.add(be, module, map, prefix);
    } catch (const IoError& e) {
        throw IoError("safetensors '" + path + "': " + e.what());
    }
    save_safetensors(path, out.tensors(), metadata);
}

}  // namespace mmalign::io
