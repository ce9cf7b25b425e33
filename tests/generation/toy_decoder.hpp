// The toy causal LM of tools/make_generation_fixtures.py, as a generation::Decoder.
//
// For a row of ids x with keep flags m (1 token / 0 padding; generated tokens are kept):
//   before_t = kept tokens before t,  ctx_t = mean of F[x_s] over the kept s < t (0 if none),
//   h_t = tanh(E[x_t] + P[min(before_t, 63)] + ctx_t),  logits_t = W h_t + b   (float64 → float32).
// The cache of a row is its running context sum and kept count, so a step costs O(new tokens) —
// and it records what each step was fed, which the tests read: the prompt once, then one token per
// row. reorder() moves every row's cache (sum, count, positions, history) with its beam.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "mmalign/core/error.hpp"
#include "mmalign/core/shape.hpp"
#include "mmalign/core/tensor.hpp"
#include "mmalign/io/safetensors.hpp"

namespace mmalign::test {

struct ToyWeights {
    index_t vocab = 0, hidden = 0, positions = 0;
    Tensor<double> token, context, position, out_weight, out_bias;  // [V, D], [V, D], [P, D], [V, D], [V]

    static ToyWeights load(const std::string& path) {
        const auto f = io::SafetensorsFile::open(path);
        ToyWeights w{0, 0, 0, f.read<double>("token"), f.read<double>("context"), f.read<double>("position"),
                     f.read<double>("out_weight"), f.read<double>("out_bias")};
        w.vocab = w.token.shape()[0];
        w.hidden = w.token.shape()[1];
        w.positions = w.position.shape()[0];
        return w;
    }
};

class ToyDecoder {
public:
    explicit ToyDecoder(const ToyWeights& w) : w_(&w) {}

    index_t vocab_size() const { return w_->vocab; }

    void start(index_t rows, index_t expand, index_t max_positions) {
        if (rows <= 0 || expand <= 0 || rows % expand != 0)
            throw ArgumentError("ToyDecoder: " + std::to_string(rows) + " rows are not a multiple of expand " + std::to_string(expand));
        rows_ = rows;
        expand_ = expand;
        max_positions_ = max_positions;
        sum_.assign(static_cast<std::size_t>(rows * w_->hidden), 0.0);
        count_.assign(static_cast<std::size_t>(rows), 0);
        fed_.assign(static_cast<std::size_t>(rows), 0);
        history_.assign(static_cast<std::size_t>(rows), {});
        tokens_per_step.clear();
        reorders = 0;
    }

    void step(std::span<const std::int32_t> ids, std::span<const std::int32_t> keep, std::span<float> logits) {
        const index_t R = rows_, V = w_->vocab, D = w_->hidden;
        if (R == 0) throw ArgumentError("ToyDecoder: step before start");
        const auto n = static_cast<index_t>(ids.size());
        if (n == 0 || n % R != 0 || (!keep.empty() && static_cast<index_t>(keep.size()) != n) ||
            static_cast<index_t>(logits.size()) != R * V)
            throw ShapeError("ToyDecoder: step with " + std::to_string(n) + " ids, " + std::to_string(keep.size()) +
                             " keep flags and " + std::to_string(logits.size()) + " logits for " + std::to_string(R) + " rows");
        const index_t Tn = n / R;
        tokens_per_step.push_back(n);
        std::vector<double> h(static_cast<std::size_t>(D));
        for (index_t r = 0; r < R; ++r) {
            double* sum = sum_.data() + r * D;
            for (index_t t = 0; t < Tn; ++t) {
                const std::int32_t x = ids[static_cast<std::size_t>(r * Tn + t)];
                const bool kept = keep.empty() || keep[static_cast<std::size_t>(r * Tn + t)] != 0;
                if (x < 0 || x >= V) throw ArgumentError("ToyDecoder: id " + std::to_string(x) + " outside the vocabulary");
                if (++fed_[static_cast<std::size_t>(r)] > max_positions_)
                    throw ArgumentError("ToyDecoder: row " + std::to_string(r) + " fed past max_positions " +
                                        std::to_string(max_positions_));
                history_[static_cast<std::size_t>(r)].push_back(x);
                const index_t before = count_[static_cast<std::size_t>(r)];
                const index_t pos = std::min(before, w_->positions - 1);
                const double m = kept ? 1.0 : 0.0;
                // The script's float64 arithmetic in its order: an inclusive cumulative sum minus the
                // token's own term, divided by max(1, before).
                for (index_t d = 0; d < D; ++d) {
                    const double fx = w_->context.data()[x * D + d] * m;
                    sum[d] += fx;
                    const double ctx = (sum[d] - fx) / static_cast<double>(std::max<index_t>(before, 1));
                    h[static_cast<std::size_t>(d)] =
                        std::tanh(w_->token.data()[x * D + d] + w_->position.data()[pos * D + d] + ctx);
                }
                if (kept) ++count_[static_cast<std::size_t>(r)];
                if (t + 1 < Tn) continue;
                for (index_t v = 0; v < V; ++v) {
                    double z = 0;
                    for (index_t d = 0; d < D; ++d) z += h[static_cast<std::size_t>(d)] * w_->out_weight.data()[v * D + d];
                    logits[static_cast<std::size_t>(r * V + v)] = static_cast<float>(z + w_->out_bias.data()[v]);
                }
            }
        }
    }

    void reorder(std::span<const std::int32_t> rows) {
        const index_t R = rows_, D = w_->hidden;
        if (static_cast<index_t>(rows.size()) != R) throw ShapeError("ToyDecoder: reorder needs one source row per row");
        std::vector<double> sum(sum_.size());
        std::vector<index_t> count(count_.size()), fed(fed_.size());
        std::vector<std::vector<std::int32_t>> history(history_.size());
        for (index_t r = 0; r < R; ++r) {
            const std::int32_t from = rows[static_cast<std::size_t>(r)];
            if (from < 0 || from >= R) throw ArgumentError("ToyDecoder: reorder from row " + std::to_string(from));
            std::copy_n(sum_.begin() + from * D, D, sum.begin() + r * D);
            count[static_cast<std::size_t>(r)] = count_[static_cast<std::size_t>(from)];
            fed[static_cast<std::size_t>(r)] = fed_[static_cast<std::size_t>(from)];
            history[static_cast<std::size_t>(r)] = history_[static_cast<std::size_t>(from)];
        }
        sum_.swap(sum);
        count_.swap(count);
        fed_.swap(fed);
        history_.swap(history);
        ++reorders;
    }

    /// Every id row r was fed so far (after reorders, the history of the beam it continues).
    const std::vector<std::int32_t>& history(index_t r) const { return history_[static_cast<std::size_t>(r)]; }
    index_t rows() const { return rows_; }
    index_t expand() const { return expand_; }
    index_t max_positions() const { return max_positions_; }

    std::vector<index_t> tokens_per_step;  ///< ids fed by each step() call
    index_t reorders = 0;

private:
    const ToyWeights* w_;
    index_t rows_ = 0, expand_ = 1, max_positions_ = 0;
    std::vector<double> sum_;   // [R, D]: running sum of the kept tokens' context embeddings
    std::vector<index_t> count_, fed_;
    std::vector<std::vector<std::int32_t>> history_;
};

}  // namespace mmalign::test
