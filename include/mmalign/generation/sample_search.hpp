// mmalign/generation/sample_search.hpp — one hypothesis per row, extended a token at a time: the
// argmax of the processed logits (greedy search) or a draw from them (do_sample). This is
// transformers' GenerationMixin._sample (generation/utils.py), which serves both.
//
// Per step: process every unfinished row's logits (generation/logits_processors.hpp), choose its
// token, give rows that already finished the pad id instead (when an eos id exists), append, and
// mark rows finished at an eos id or at max_length; stop when every row has finished. Rows end at
// different steps, so the returned matrix is as long as the longest row and the others carry pad
// ids after their eos. Every row, finished or not, feeds its token back (one per row: the O(length)
// cached step), as transformers appends the pad token of a finished row and keeps decoding it.
#pragma once

#include <algorithm>
#include <cstdint>
#include <span>
#include <vector>

#include "mmalign/generation/config.hpp"
#include "mmalign/generation/decoder.hpp"
#include "mmalign/generation/generated.hpp"
#include "mmalign/generation/logits_processors.hpp"
#include "mmalign/generation/prepared.hpp"
#include "mmalign/generation/sampling.hpp"

namespace mmalign::generation {

template <Decoder D>
Generated sample_search(D& decoder, const Prepared& p, const GenerationConfig& c) {
    const index_t R = p.rows, T = p.prompt_length, V = p.vocab, M = p.limits.max_length;
    const LogitsProcessors processors(c, p.limits, p.eos, 1);
    Rng rng(c.seed);

    std::vector<std::int32_t> seq(static_cast<std::size_t>(R * M));  // [R, M]: each row's ids so far
    for (index_t r = 0; r < R; ++r) std::ranges::copy(p.prompt_row(r), seq.begin() + r * M);
    std::vector<float> logits(static_cast<std::size_t>(R * V));  // [R, V]
    std::vector<std::int32_t> next(static_cast<std::size_t>(R));  // [R]
    std::vector<char> unfinished(static_cast<std::size_t>(R), 1);  // [R]
    const bool has_eos = !p.eos.empty();

    decoder.start(R, p.expand, M - 1);
    decoder.step(std::span<const std::int32_t>(p.ids), std::span<const std::int32_t>(p.keep), std::span<float>(logits));
    index_t len = T;
    while (true) {
        for (index_t r = 0; r < R; ++r) {
            std::int32_t token;
            if (has_eos && !unfinished[static_cast<std::size_t>(r)]) {
                token = *p.pad;
            } else {
                std::span<float> scores(logits.data() + r * V, static_cast<std::size_t>(V));
                processors.apply(std::span<const std::int32_t>(seq.data() + r * M, static_cast<std::size_t>(len)),
                                 p.penalty_from[static_cast<std::size_t>(r)], scores);
                token = static_cast<std::int32_t>(
                    c.do_sample ? sample_token(scores, rng)
                                : std::max_element(scores.begin(), scores.end()) - scores.begin());  // first maximum, as torch.argmax
            }
            seq[static_cast<std::size_t>(r * M + len)] = token;
            next[static_cast<std::size_t>(r)] = token;
        }
        ++len;
        bool any_unfinished = false;
        for (index_t r = 0; r < R; ++r) {
            char& u = unfinished[static_cast<std::size_t>(r)];
            if (len >= M || p.is_eos(next[static_cast<std::size_t>(r)])) u = 0;
            any_unfinished = any_unfinished || u;
        }
        if (!any_unfinished) break;
        decoder.step(std::span<const std::int32_t>(next), std::span<const std::int32_t>(), std::span<float>(logits));
    }

    Generated g;
    g.rows = R;
    g.length = len;
    g.prompt_length = T;
    g.sequences.resize(static_cast<std::size_t>(R * len));
    for (index_t r = 0; r < R; ++r)
        std::copy_n(seq.begin() + r * M, len, g.sequences.begin() + r * len);
    return g;
}

}  // namespace mmalign::generation
