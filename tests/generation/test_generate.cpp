// Tests of generation/generate.hpp: ids equal to transformers' GenerationMixin.generate on the
// fixture matrix of tools/make_generation_fixtures.py (greedy and beam search over a toy causal LM,
// tests/generation/toy_decoder.hpp), sampling checked against the filtered distributions the same
// script recorded from transformers' logits warpers, reproducibility per seed, the one-token step
// after the prompt, and the refusals transformers makes.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "generation/toy_decoder.hpp"
#include "mmalign/generation/config_json.hpp"
#include "mmalign/generation/generate.hpp"
#include "mmalign/generation/logits_processors.hpp"
#include "mmalign/io/json_fields.hpp"

using namespace mmalign;
namespace gen = mmalign::generation;
using test::ToyDecoder;
using test::ToyWeights;

namespace {

const std::string dir = std::string(MMALIGN_FIXTURE_DIR) + "/generation";

const ToyWeights& toy() {
    static const ToyWeights w = ToyWeights::load(dir + "/toy.safetensors");
    return w;
}
const nlohmann::json& fixture() {
    static const nlohmann::json j = io::read_json_file(dir + "/cases.json");
    return j;
}

struct Prompt {
    std::vector<std::int32_t> ids, keep;  // [B, T], [B, T] or empty
    index_t batch = 0, length = 0;
};

Prompt prompt(const std::string& name) {
    const nlohmann::json& p = fixture()["prompts"][name];
    Prompt out;
    out.batch = static_cast<index_t>(p["ids"].size());
    out.length = static_cast<index_t>(p["ids"][0].size());
    for (const auto& row : p["ids"])
        for (const auto& v : row) out.ids.push_back(v.get<std::int32_t>());
    if (!p["mask"].is_null())
        for (const auto& row : p["mask"])
            for (const auto& v : row) out.keep.push_back(v.get<std::int32_t>());
    return out;
}

/// A case's generate() kwargs read through the generation_config.json reader, with the toy
/// config's max_position_embeddings (what transformers caps the default max_length at).
gen::GenerationConfig config_of(const nlohmann::json& kwargs, const std::string& name) {
    gen::GenerationConfig c;
    gen::read_generation_fields(c, kwargs, "cases.json[" + name + "]");
    c.max_position_embeddings = fixture()["model"]["max_position_embeddings"].get<index_t>();
    return c;
}

gen::Generated run(ToyDecoder& d, const Prompt& p, const gen::GenerationConfig& c) {
    return gen::generate(d, p.ids, p.keep, p.batch, c);
}

std::string row_str(std::span<const std::int32_t> r) {
    std::string s;
    for (std::int32_t v : r) s += std::to_string(v) + " ";
    return s;
}

}  // namespace

TEST_CASE("the toy decoder satisfies the Decoder concept") {
    static_assert(gen::Decoder<ToyDecoder>);
    static_assert(!gen::Decoder<int>);
    CHECK(toy().vocab == fixture()["model"]["vocab_size"].get<index_t>());
}

TEST_CASE("greedy and beam search give transformers' ids, beam scores and step counts on every fixture case") {
    const nlohmann::json& cases = fixture()["cases"];
    // 136 cases: greedy (max_new_tokens, default lengths and their position cap, max_length,
    // min_new_tokens, min_length, repetition_penalty, no_repeat_ngram_size, two eos ids, pad ids 0, 3
    // and unset, no eos) and beam search (num_beams 2/3/4 × length_penalty 0.6/1/2 × early_stopping
    // true/false/"never", num_return_sequences, and the same processors and lengths), on prompts
    // padded left, padded right with an attention mask, unpadded with and without a mask.
    REQUIRE(cases.size() == 136);
    index_t beam_cases = 0, rows_checked = 0;
    for (const auto& cs : cases) {
        const std::string name = cs["name"].get<std::string>();
        CAPTURE(name);
        const gen::GenerationConfig c = config_of(cs["config"], name);
        const Prompt p = prompt(cs["prompt"].get<std::string>());
        ToyDecoder d(toy());
        const gen::Generated g = run(d, p, c);
        const auto& want = cs["sequences"];
        REQUIRE(g.rows == static_cast<index_t>(want.size()));
        REQUIRE(g.length == static_cast<index_t>(want[0].size()));
        CHECK(g.prompt_length == p.length);
        for (index_t r = 0; r < g.rows; ++r) {
            std::vector<std::int32_t> expected;
            for (const auto& v : want[static_cast<std::size_t>(r)]) expected.push_back(v.get<std::int32_t>());
            const auto got = g.row(r);
            CAPTURE(r);
            CAPTURE(row_str(expected));
            CAPTURE(row_str(got));
            CHECK(std::equal(got.begin(), got.end(), expected.begin(), expected.end()));
            ++rows_checked;
        }
        // As many decoding steps as transformers' forward passes: the same stopping rules fired at
        // the same step (early_stopping true ends a beam search before its ids could show it).
        CHECK(static_cast<index_t>(d.tokens_per_step.size()) == cs["steps"].get<index_t>());
        if (cs["sequences_scores"].is_null()) {
            CHECK(g.sequence_scores.empty());
        } else {
            ++beam_cases;
            REQUIRE(g.sequence_scores.size() == cs["sequences_scores"].size());
            for (std::size_t r = 0; r < g.sequence_scores.size(); ++r)
                CHECK(g.sequence_scores[r] == doctest::Approx(cs["sequences_scores"][r].get<double>()).epsilon(1e-5));
        }
    }
    CHECK(beam_cases == 101);
    MESSAGE("compared " << cases.size() << " cases (" << beam_cases << " beam search), " << rows_checked << " rows");
}

TEST_CASE("after the prompt every decoding step feeds one token per row, and no row runs past max_positions") {
    const Prompt p = prompt("left");
    for (index_t beams : {1, 3}) {
        CAPTURE(beams);
        gen::GenerationConfig c;
        c.num_beams = beams;
        c.max_new_tokens = 12;  // no eos: every step runs to the limit
        ToyDecoder d(toy());
        const gen::Generated g = run(d, p, c);
        const index_t R = p.batch * beams;
        CHECK(d.rows() == R);
        CHECK(d.expand() == beams);
        CHECK(d.max_positions() == p.length + 12 - 1);  // the last token is never fed back
        REQUIRE(d.tokens_per_step.size() == 12);       // the prompt, then 11 single tokens
        CHECK(d.tokens_per_step[0] == R * p.length);
        for (std::size_t s = 1; s < d.tokens_per_step.size(); ++s) CHECK(d.tokens_per_step[s] == R);
        CHECK(d.reorders == (beams > 1 ? 11 : 0));
        CHECK(g.length == p.length + 12);
        // What each row was fed is its sequence minus the last token: a reorder that lost track of
        // a beam would show here.
        if (beams == 1)
            for (index_t r = 0; r < R; ++r) {
                const auto row = g.row(r);
                CHECK(std::equal(d.history(r).begin(), d.history(r).end(), row.begin(), row.end() - 1));
            }
    }
}

TEST_CASE("beam search feeds every running beam its own history after the reorders") {
    // Without eos nothing finishes before max_length, so the best hypothesis is a continuation of one
    // of the last running beams: the decoder row that computed it must have been fed exactly that
    // hypothesis minus its last token.
    const Prompt p = prompt("right");
    gen::GenerationConfig c;
    c.num_beams = 3;
    c.max_new_tokens = 9;
    ToyDecoder d(toy());
    const gen::Generated g = run(d, p, c);
    for (index_t b = 0; b < p.batch; ++b) {
        const auto best = g.row(b);
        bool found = false;
        for (index_t j = 0; j < 3; ++j) {
            const auto& h = d.history(b * 3 + j);
            found = found || std::equal(h.begin(), h.end(), best.begin(), best.end() - 1);
        }
        CHECK(found);
    }
}

TEST_CASE("sampling processes the first step's logits into transformers' filtered distribution") {
    for (const auto& s : fixture()["sampling"]) {
        const std::string name = s["name"].get<std::string>();
        CAPTURE(name);
        gen::GenerationConfig c = config_of(s["config"], name);
        c.max_new_tokens = 1;
        c.eos_token_id = {fixture()["model"]["eos"].get<std::int32_t>()};
        std::vector<std::int32_t> ids;
        for (const auto& v : s["prompt"]) ids.push_back(v.get<std::int32_t>());
        ToyDecoder d(toy());
        d.start(1, 1, static_cast<index_t>(ids.size()));
        std::vector<float> scores(static_cast<std::size_t>(toy().vocab));
        d.step(ids, {}, scores);
        const gen::LogitsProcessors processors(c, gen::length_limits(c, static_cast<index_t>(ids.size())), c.eos_token_id, 1);
        processors.apply(ids, 0, scores);
        const float m = *std::max_element(scores.begin(), scores.end());
        double total = 0;
        for (float x : scores) total += std::exp(double(x) - m);
        for (std::size_t v = 0; v < scores.size(); ++v) {
            CAPTURE(v);
            const double want = s["probs"][v].get<double>();
            const double got = std::exp(double(scores[v]) - m) / total;
            CHECK((want == 0.0) == std::isinf(scores[v]));
            CHECK(got == doctest::Approx(want).epsilon(1e-6));
        }
    }
}

TEST_CASE("the first sampled token follows the filtered distribution over many seeds; filtered tokens never appear") {
    // N draws of token v: count ~ Binomial(N, p_v). A deviation |count/N − p_v| beyond
    // 5·sqrt(p_v(1 − p_v)/N) + 1/N has probability below 1e-6 per token (normal tail at 5σ, plus
    // one count of slack for the discreteness), so over 24 tokens × 5 settings a correct sampler
    // fails with probability below 1e-4; the seeds are fixed, so the outcome is deterministic.
    const index_t N = 20000;
    for (const auto& s : fixture()["sampling"]) {
        const std::string name = s["name"].get<std::string>();
        CAPTURE(name);
        gen::GenerationConfig c = config_of(s["config"], name);
        c.max_new_tokens = 1;
        c.eos_token_id = {fixture()["model"]["eos"].get<std::int32_t>()};
        c.pad_token_id = fixture()["model"]["pad"].get<std::int32_t>();
        std::vector<std::int32_t> ids;
        for (const auto& v : s["prompt"]) ids.push_back(v.get<std::int32_t>());
        std::vector<index_t> count(static_cast<std::size_t>(toy().vocab), 0);
        ToyDecoder d(toy());
        for (index_t seed = 0; seed < N; ++seed) {
            c.seed = static_cast<std::uint64_t>(seed) * 7919u + 1u;
            const gen::Generated g = gen::generate(d, ids, {}, 1, c);
            ++count[static_cast<std::size_t>(g.new_tokens(0)[0])];
        }
        for (std::size_t v = 0; v < count.size(); ++v) {
            CAPTURE(v);
            const double p = s["probs"][v].get<double>();
            const double freq = double(count[v]) / double(N);
            if (p == 0.0) {
                CHECK(count[v] == 0);
            } else {
                CHECK(std::abs(freq - p) <= 5 * std::sqrt(p * (1 - p) / double(N)) + 1.0 / double(N));
            }
        }
    }
}

TEST_CASE("the same seed gives the same ids, different seeds differ (sampling and beam sampling)") {
    const Prompt p = prompt("left");
    for (index_t beams : {1, 3}) {
        CAPTURE(beams);
        gen::GenerationConfig c;
        c.do_sample = true;
        c.num_beams = beams;
        c.num_return_sequences = beams == 1 ? 2 : 3;
        c.max_new_tokens = 12;
        c.top_k = 10;
        c.temperature = 1.2;
        c.eos_token_id = {2};
        c.pad_token_id = 0;
        ToyDecoder d(toy());
        c.seed = 7;
        const gen::Generated a = run(d, p, c);
        const gen::Generated b = run(d, p, c);
        c.seed = 8;
        const gen::Generated other = run(d, p, c);
        CHECK(a.rows == p.batch * c.num_return_sequences);
        CHECK(a.sequences == b.sequences);
        CHECK(a.sequence_scores == b.sequence_scores);
        CHECK(a.sequences != other.sequences);
        // Every row starts with its prompt; after a row's eos only pad (or, in beam search,
        // transformers' fill: eos, since the pad id is 0) follows.
        for (index_t r = 0; r < a.rows; ++r) {
            const auto row = a.row(r);
            const auto src = r / c.num_return_sequences;
            CHECK(std::equal(row.begin(), row.begin() + p.length, p.ids.begin() + src * p.length));
            const auto gen_part = a.new_tokens(r);
            const auto eos = std::find(gen_part.begin(), gen_part.end(), 2);
            if (eos != gen_part.end())
                for (auto it = eos + 1; it != gen_part.end(); ++it) CHECK(*it == (beams == 1 ? 0 : 2));
        }
    }
}

TEST_CASE("generate refuses what transformers refuses, naming the setting") {
    const Prompt p = prompt("left");
    ToyDecoder d(toy());
    auto message = [&](gen::GenerationConfig c, const Prompt& q) -> std::string {
        try {
            run(d, q, c);
        } catch (const Error& e) {
            return e.what();
        }
        return "";
    };
    gen::GenerationConfig c;
    c.num_return_sequences = 2;
    CHECK(message(c, p).find("greedy search returns one sequence per prompt") != std::string::npos);
    c.num_beams = 2;
    c.num_return_sequences = 3;
    CHECK(message(c, p).find("num_return_sequences (3) must be <= num_beams (2)") != std::string::npos);
    c = {};
    c.max_length = 7;  // the prompt is 7 long
    CHECK(message(c, p).find("the prompt is 7 tokens long, but max_length is 7") != std::string::npos);
    c = {};
    c.do_sample = true;
    c.temperature = 0;
    CHECK(message(c, p).find("temperature must be a positive number when sampling") != std::string::npos);
    c = {};
    c.eos_token_id = {24};
    CHECK(message(c, p).find("eos_token_id 24 outside the vocabulary [0, 24)") != std::string::npos);
    Prompt bad = p;
    bad.ids.pop_back();
    CHECK(message({}, bad).find("prompt_ids hold 20 ids, not batch 3") != std::string::npos);
    bad = p;
    bad.ids[0] = 99;
    CHECK(message({}, bad).find("prompt id 99 outside the vocabulary") != std::string::npos);
    bad = p;
    bad.keep.pop_back();
    CHECK(message({}, bad).find("prompt_keep holds 20 flags, expected 21") != std::string::npos);
}
