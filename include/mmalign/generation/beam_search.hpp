// mmalign/generation/beam_search.hpp — beam search (and beam sampling) as transformers 5 computes it:
// GenerationMixin._beam_search and its helpers _get_top_k_continuations,
// _get_running_beams_for_next_iteration, _update_finished_beams, _check_early_stop_heuristic and
// _beam_search_has_unfinished_sequences (generation/utils.py), step for step and in float32, so
// the same scores give the same choices.
//
// Per prompt: num_beams running beams (only the first starts live: the others start at −1e9) and
// num_beams finished slots (starting empty at −1e9). Each step:
//  1. every running row's logits → log_softmax → the logits processors → + the beam's score;
//  2. the best K = max(2, 1 + number of eos ids) × num_beams continuations over all beams × tokens
//     (beam sampling: K draws without replacement from their softmax, then sorted), so that at least
//     num_beams of them do not end;
//  3. a continuation ends when its token is an eos id or the sequence reaches max_length;
//  4. the next running beams: the best num_beams continuations, ended ones pushed down by −1e9;
//  5. the finished slots: the old ones and the ended continuations among the first num_beams,
//     each scored sum(log p) / (generated length)^length_penalty — pushed down by −1e9 once the
//     prompt may not improve (its slots full under early_stopping true, or the heuristic below says
//     no running beam can beat them) — keep the best num_beams;
//  6. the prompt stops improving when its best running beam, scored at the current generated length
//     (at max_length − prompt when early_stopping is "never" and length_penalty > 0), does not beat
//     its worst finished slot; the search stops when no prompt can improve, when early_stopping
//     is true and every slot of every prompt is finished, or when every continuation ended.
// The decoder's rows follow their beams through reorder() before the next step feeds each running
// beam's new token. The result holds the best num_return_sequences finished slots of each prompt,
// cut to the prompt plus the longest generated part among them and filled past each one's end with
// transformers' fill value, `pad_token_id or eos_token_id[0]` (so eos when the pad id is 0).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <span>
#include <vector>

#include "mmalign/generation/config.hpp"
#include "mmalign/generation/decoder.hpp"
#include "mmalign/generation/generated.hpp"
#include "mmalign/generation/logits_processors.hpp"
#include "mmalign/generation/prepared.hpp"
#include "mmalign/generation/sampling.hpp"

namespace mmalign::generation {

namespace detail {

/// transformers' "very large negative" of beam search (−1.0e9, exact in float32).
inline constexpr float beam_floor = -1.0e9f;

/// Indices of the k largest of `v`, best first; equal values in index order (torch.topk, sorted).
inline std::vector<index_t> top_indices(std::span<const float> v, index_t k) {
    std::vector<index_t> idx(v.size());
    std::iota(idx.begin(), idx.end(), index_t(0));
    std::partial_sort(idx.begin(), idx.begin() + k, idx.end(), [&](index_t a, index_t b) {
        const float x = v[static_cast<std::size_t>(a)], y = v[static_cast<std::size_t>(b)];
        return x > y || (x == y && a < b);
    });
    idx.resize(static_cast<std::size_t>(k));
    return idx;
}

/// length^length_penalty, as the float32 divisor torch makes of Python's `int ** float`.
inline float length_divisor(index_t length, double length_penalty) {
    return static_cast<float>(std::pow(static_cast<double>(length), length_penalty));
}

}  // namespace detail

template <Decoder D>
Generated beam_search(D& decoder, const Prepared& p, const GenerationConfig& c) {
    using detail::beam_floor;
    const index_t B = p.batch, N = c.num_beams, T = p.prompt_length, V = p.vocab, M = p.limits.max_length;
    const index_t R = B * N;  // p.expand == num_beams: num_return_sequences <= num_beams here
    const index_t n_eos = static_cast<index_t>(p.eos.size());
    const index_t K = std::max<index_t>(2, 1 + n_eos) * N;
    if (K > N * V)
        throw ArgumentError("generate: beam search keeps " + std::to_string(K) + " candidates per step, more than num_beams × vocabulary (" +
                            std::to_string(N * V) + ")");
    // transformers: `pad_token_id or eos_token_id[0] if eos_token_id is not None else -1`, where
    // pad_token_id is already eos_token_id[0] when unset; a pad id of 0 is falsy, hence eos.
    const std::int32_t fill = p.eos.empty() ? -1 : (p.pad && *p.pad != 0 ? *p.pad : p.eos[0]);
    // Beam sampling keeps at least one non-eos token through top-k/top-p: eos count + 1, or 2 without
    // eos ids (_get_logits_processor).
    const LogitsProcessors processors(c, p.limits, p.eos, n_eos > 0 ? n_eos + 1 : 2);
    Rng rng(c.seed);

    // Running beams and finished slots of every prompt: sequences [B·N, M] (prompt, then fill), scores [B·N].
    std::vector<std::int32_t> running(static_cast<std::size_t>(R * M), fill), finished;
    for (index_t r = 0; r < R; ++r) std::ranges::copy(p.prompt_row(r), running.begin() + r * M);
    finished = running;
    std::vector<float> running_score(static_cast<std::size_t>(R), 0.0f), finished_score(static_cast<std::size_t>(R), beam_floor);
    for (index_t b = 0; b < B; ++b)
        for (index_t j = 1; j < N; ++j) running_score[static_cast<std::size_t>(b * N + j)] = beam_floor;
    std::vector<char> is_finished(static_cast<std::size_t>(R), 0);             // [B·N]
    std::vector<index_t> finished_generated(static_cast<std::size_t>(R), 0);  // [B·N]: generated tokens of each slot's hypothesis
    std::vector<char> may_improve(static_cast<std::size_t>(B), 1);            // [B]: is_early_stop_heuristic_unsatisfied

    std::vector<float> logits(static_cast<std::size_t>(R * V));  // [R, V]
    // One prompt's continuations: scores [K], scores with ended ones pushed down [K], old slots then
    // continuations scored as finished [N + K], their beam and token [K]; which ended, every prompt [B, K].
    std::vector<float> candidate(static_cast<std::size_t>(K)), running_candidate(static_cast<std::size_t>(K)),
        merged(static_cast<std::size_t>(N + K));
    std::vector<index_t> cand_beam(static_cast<std::size_t>(K)), cand_token(static_cast<std::size_t>(K));
    std::vector<char> cand_ends(static_cast<std::size_t>(B * K));
    // The next step's state, swapped in after every prompt is done: [R, M], [R, M], [R] × 4.
    std::vector<std::int32_t> next_running(running.size()), next_finished(finished.size());
    std::vector<float> next_running_score(running_score.size()), next_finished_score(finished_score.size());
    std::vector<char> next_is_finished(is_finished.size());
    std::vector<index_t> next_generated(finished_generated.size());
    // Per new running row [R]: the old row it continues (for reorder) and its new token (the next feed).
    std::vector<std::int32_t> origin(static_cast<std::size_t>(R)), last_tokens(static_cast<std::size_t>(R));

    decoder.start(R, p.expand, M - 1);
    decoder.step(std::span<const std::int32_t>(p.ids), std::span<const std::int32_t>(p.keep), std::span<float>(logits));
    index_t len = T;
    while (true) {
        // 1. Accumulated log-probabilities of every continuation.
        for (index_t r = 0; r < R; ++r) {
            std::span<float> row(logits.data() + r * V, static_cast<std::size_t>(V));
            log_softmax(row);
            processors.apply(std::span<const std::int32_t>(running.data() + r * M, static_cast<std::size_t>(len)),
                             p.penalty_from[static_cast<std::size_t>(r)], row);
            const float s = running_score[static_cast<std::size_t>(r)];
            for (float& x : row) x += s;
        }
        const float divisor = detail::length_divisor(len + 1 - T, c.length_penalty);
        for (index_t b = 0; b < B; ++b) {
            const std::span<const float> all(logits.data() + b * N * V, static_cast<std::size_t>(N * V));  // [N·V]
            // 2. The K best (or sampled) continuations.
            std::vector<index_t> picked;
            if (c.do_sample) {
                picked = sample_distinct(all, K, rng);
                std::stable_sort(picked.begin(), picked.end(), [&](index_t x, index_t y) {
                    return all[static_cast<std::size_t>(x)] > all[static_cast<std::size_t>(y)];
                });
            } else {
                picked = detail::top_indices(all, K);
            }
            char* ends = cand_ends.data() + b * K;
            for (index_t k = 0; k < K; ++k) {
                const auto i = static_cast<std::size_t>(k);
                candidate[i] = all[static_cast<std::size_t>(picked[i])];
                cand_beam[i] = picked[i] / V;
                cand_token[i] = picked[i] % V;
                // 3. Ends at eos or max_length.
                ends[k] = len + 1 >= M || p.is_eos(static_cast<std::int32_t>(cand_token[i]));
                running_candidate[i] = candidate[i] + (ends[k] ? beam_floor : 0.0f);
            }
            auto continuation = [&](index_t k, std::int32_t* out) {
                const index_t from = b * N + cand_beam[static_cast<std::size_t>(k)];
                std::copy_n(running.begin() + from * M, M, out);
                out[len] = static_cast<std::int32_t>(cand_token[static_cast<std::size_t>(k)]);
            };
            // 4. Next running beams.
            const std::vector<index_t> keep = detail::top_indices(running_candidate, N);
            for (index_t j = 0; j < N; ++j) {
                const index_t k = keep[static_cast<std::size_t>(j)], r = b * N + j;
                continuation(k, next_running.data() + r * M);
                next_running_score[static_cast<std::size_t>(r)] = running_candidate[static_cast<std::size_t>(k)];
                origin[static_cast<std::size_t>(r)] = static_cast<std::int32_t>(b * N + cand_beam[static_cast<std::size_t>(k)]);
                last_tokens[static_cast<std::size_t>(r)] = static_cast<std::int32_t>(cand_token[static_cast<std::size_t>(k)]);
            }
            // 5. Finished slots: the old ones, then the K continuations scored as finished.
            bool all_full = true;
            for (index_t j = 0; j < N; ++j) all_full = all_full && is_finished[static_cast<std::size_t>(b * N + j)];
            const bool full = all_full && c.early_stopping == EarlyStopping::finished;
            for (index_t j = 0; j < N; ++j) merged[static_cast<std::size_t>(j)] = finished_score[static_cast<std::size_t>(b * N + j)];
            for (index_t k = 0; k < K; ++k) {
                const bool just_finished = ends[k] && k < N;
                float s = candidate[static_cast<std::size_t>(k)] / divisor;
                s += full ? beam_floor : 0.0f;
                s += may_improve[static_cast<std::size_t>(b)] ? 0.0f : beam_floor;
                s += just_finished ? 0.0f : beam_floor;
                merged[static_cast<std::size_t>(N + k)] = s;
            }
            const std::vector<index_t> best = detail::top_indices(merged, N);
            for (index_t j = 0; j < N; ++j) {
                const index_t m = best[static_cast<std::size_t>(j)], r = b * N + j;
                const auto rs = static_cast<std::size_t>(r);
                next_finished_score[rs] = merged[static_cast<std::size_t>(m)];
                if (m < N) {
                    const index_t old = b * N + m;
                    std::copy_n(finished.begin() + old * M, M, next_finished.begin() + r * M);
                    next_is_finished[rs] = is_finished[static_cast<std::size_t>(old)];
                    next_generated[rs] = finished_generated[static_cast<std::size_t>(old)];
                } else {
                    const index_t k = m - N;
                    continuation(k, next_finished.data() + r * M);
                    next_is_finished[rs] = ends[k] && k < N;
                    next_generated[rs] = len + 1 - T;
                }
            }
        }
        running.swap(next_running);
        running_score.swap(next_running_score);
        finished.swap(next_finished);
        finished_score.swap(next_finished_score);
        is_finished.swap(next_is_finished);
        finished_generated.swap(next_generated);
        ++len;

        // 6. Whether each prompt may still improve, and whether the search goes on.
        const index_t hypothetical = c.early_stopping == EarlyStopping::never && c.length_penalty > 0.0 ? M - T : len - T;
        const float hypothetical_divisor = detail::length_divisor(hypothetical, c.length_penalty);
        bool any_may_improve = false, every_slot_finished = true;
        for (index_t b = 0; b < B; ++b) {
            const float best_running = running_score[static_cast<std::size_t>(b * N)] / hypothetical_divisor;
            float worst = finished_score[static_cast<std::size_t>(b * N)];
            for (index_t j = 1; j < N; ++j) worst = std::min(worst, finished_score[static_cast<std::size_t>(b * N + j)]);
            bool beats_one = false;
            for (index_t j = 0; j < N; ++j) {
                const bool done = is_finished[static_cast<std::size_t>(b * N + j)];
                beats_one = beats_one || best_running > (done ? worst : beam_floor);
                every_slot_finished = every_slot_finished && done;
            }
            char& mi = may_improve[static_cast<std::size_t>(b)];
            mi = mi && beats_one;
            any_may_improve = any_may_improve || mi;
        }
        const bool all_ended = std::all_of(cand_ends.begin(), cand_ends.end(), [](char e) { return e != 0; });
        const bool open_beam = !(every_slot_finished && c.early_stopping == EarlyStopping::finished);
        if (!(any_may_improve && open_beam && !all_ended)) break;

        decoder.reorder(std::span<const std::int32_t>(origin));
        decoder.step(std::span<const std::int32_t>(last_tokens), std::span<const std::int32_t>(), std::span<float>(logits));
    }

    // The best num_return_sequences slots of each prompt, cut to the longest generated part.
    const index_t S = c.num_return_sequences;
    index_t longest = 0;
    for (index_t b = 0; b < B; ++b)
        for (index_t j = 0; j < S; ++j) longest = std::max(longest, finished_generated[static_cast<std::size_t>(b * N + j)]);
    Generated g;
    g.rows = B * S;
    g.length = T + longest;
    g.prompt_length = T;
    g.sequences.resize(static_cast<std::size_t>(g.rows * g.length));
    g.sequence_scores.resize(static_cast<std::size_t>(g.rows));
    for (index_t b = 0; b < B; ++b)
        for (index_t j = 0; j < S; ++j) {
            const index_t from = b * N + j, to = b * S + j;
            std::copy_n(finished.begin() + from * M, g.length, g.sequences.begin() + to * g.length);
            g.sequence_scores[static_cast<std::size_t>(to)] = finished_score[static_cast<std::size_t>(from)];
        }
    return g;
}

}  // namespace mmalign::generation
