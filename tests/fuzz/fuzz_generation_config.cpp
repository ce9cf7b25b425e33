// libFuzzer entry point for mmalign/generation: each input is read as JSON
//   1. as a generation_config.json (read_generation_fields) and as a model's config.json
//      (generation_config_from_model_config): each either reads or throws IoError; a config that
//      reads must survive to_json → read unchanged;
//   2. a config that reads and that generate() accepts (GenerationConfig::problem empty; lengths,
//      beams and returns kept small so one input stays fast) drives generate() over a small bigram
//      decoder with a left-padded batch of two prompts: any strategy, length rule, penalty or
//      early_stopping value the input spells.
// Allowed exceptions: IoError from the readers, ArgumentError from generate() (ids outside the
// vocabulary, a prompt longer than max_length, too few candidates for beam sampling). Anything
// else, a sanitizer report, or a broken invariant of the result (its shape, the prompt kept at the
// front of every row, ids outside the vocabulary other than beam search's fill) is a finding.
// Seeds: tests/fuzz/corpus/fuzz_generation_config/ (generation_config.json and config.json forms).
#include <mmalign/generation/config_json.hpp>
#include <mmalign/generation/generate.hpp>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <span>
#include <vector>

namespace {

namespace gen = mmalign::generation;
using mmalign::index_t;

void require(bool ok) {
    if (!ok) std::abort();
}

/// Logits from a fixed table over (last token, number of tokens fed): deterministic, every token
/// reachable, eos ids among them.
struct BigramDecoder {
    static constexpr index_t vocab = 8;
    std::vector<std::int32_t> last;
    std::vector<index_t> fed;
    index_t max_positions = 0;

    index_t vocab_size() const { return vocab; }
    void start(index_t rows, index_t expand, index_t positions) {
        require(rows > 0 && expand > 0 && rows % expand == 0);
        last.assign(static_cast<std::size_t>(rows), 0);
        fed.assign(static_cast<std::size_t>(rows), 0);
        max_positions = positions;
    }
    void step(std::span<const std::int32_t> ids, std::span<const std::int32_t> keep, std::span<float> logits) {
        const auto rows = static_cast<index_t>(last.size());
        require(rows > 0 && ids.size() % static_cast<std::size_t>(rows) == 0);
        require(keep.empty() || keep.size() == ids.size());
        require(logits.size() == static_cast<std::size_t>(rows * vocab));
        const index_t n = static_cast<index_t>(ids.size()) / rows;
        for (index_t r = 0; r < rows; ++r) {
            const std::int32_t t = ids[static_cast<std::size_t>(r * n + n - 1)];
            require(t >= 0 && t < vocab);
            last[static_cast<std::size_t>(r)] = t;
            index_t& f = fed[static_cast<std::size_t>(r)];
            f += n;
            require(f <= max_positions);
            for (index_t v = 0; v < vocab; ++v)
                logits[static_cast<std::size_t>(r * vocab + v)] = static_cast<float>(((t * 5 + v * 3 + f) % 7) - 3) * 0.7f;
        }
    }
    void reorder(std::span<const std::int32_t> rows) {
        require(rows.size() == last.size());
        std::vector<std::int32_t> l;
        std::vector<index_t> f;
        for (std::int32_t r : rows) {
            require(r >= 0 && static_cast<std::size_t>(r) < last.size());
            l.push_back(last[static_cast<std::size_t>(r)]);
            f.push_back(fed[static_cast<std::size_t>(r)]);
        }
        last = l;
        fed = f;
    }
};

bool small(const gen::GenerationConfig& c) {
    auto at_most = [](const std::optional<index_t>& v, index_t limit) { return !v || *v <= limit; };
    return at_most(c.max_length, 24) && at_most(c.max_new_tokens, 24) && c.num_beams <= 6 &&
           c.num_return_sequences <= 6 && c.no_repeat_ngram_size <= 8 && c.min_length <= 40 && at_most(c.min_new_tokens, 40);
}

void run_generate(gen::GenerationConfig c) {
    c.max_position_embeddings = 16;  // the default max_length then stops at 16
    if (!c.problem().empty() || !small(c)) return;
    const std::vector<std::int32_t> ids = {0, 3, 4, 5, 6, 7};   // [2, 3], the first left-padded
    const std::vector<std::int32_t> keep = {0, 1, 1, 1, 1, 1};  // [2, 3]
    BigramDecoder d;
    gen::Generated g;
    try {
        g = gen::generate(d, ids, keep, 2, c);
    } catch (const mmalign::ArgumentError&) {
        return;
    }
    // Greedy and sampling add at least one token; beam search may end with no finished hypothesis
    // (every continuation scored -inf, e.g. all banned), returning the prompts alone, as transformers does.
    require(g.rows == 2 * c.num_return_sequences && g.prompt_length == 3 && g.length >= (c.num_beams > 1 ? 3 : 4));
    require(g.sequences.size() == static_cast<std::size_t>(g.rows * g.length));
    require(g.sequence_scores.size() == (c.num_beams > 1 ? static_cast<std::size_t>(g.rows) : 0u));
    for (index_t r = 0; r < g.rows; ++r) {
        const auto row = g.row(r);
        const auto src = static_cast<std::size_t>(r / c.num_return_sequences) * 3;
        for (std::size_t t = 0; t < 3; ++t) require(row[t] == ids[src + t]);
        for (std::int32_t t : g.new_tokens(r)) require((t >= 0 && t < BigramDecoder::vocab) || (t == -1 && c.num_beams > 1));
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const nlohmann::json j = nlohmann::json::parse(data, data + size, nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded()) return 0;
    gen::GenerationConfig c;
    try {
        gen::read_generation_fields(c, j, "generation_config.json");
        gen::GenerationConfig back;
        gen::read_generation_fields(back, gen::to_json(c), "round trip");
        require(gen::to_json(back) == gen::to_json(c));
        run_generate(c);
    } catch (const mmalign::IoError&) {
    }
    try {
        run_generate(gen::generation_config_from_model_config(j, "config.json"));
    } catch (const mmalign::IoError&) {
    }
    return 0;
}
