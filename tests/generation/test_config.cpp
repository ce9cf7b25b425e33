// Tests of generation/config.hpp: transformers 5's defaults, its length rules
// (_prepare_generated_length) and the settings it refuses.
#include <doctest/doctest.h>

#include <string>

#include "mmalign/generation/config.hpp"

using namespace mmalign;
namespace gen = mmalign::generation;

TEST_CASE("a default GenerationConfig holds transformers' defaults: greedy, top_k 50, top_p 1, no penalties") {
    const gen::GenerationConfig c;
    CHECK(!c.max_length);
    CHECK(!c.max_new_tokens);
    CHECK(c.min_length == 0);
    CHECK(!c.min_new_tokens);
    CHECK(!c.do_sample);
    CHECK(c.num_beams == 1);
    CHECK(c.num_return_sequences == 1);
    CHECK(c.early_stopping == gen::EarlyStopping::heuristic);
    CHECK(c.length_penalty == 1.0);
    CHECK(c.repetition_penalty == 1.0);
    CHECK(c.no_repeat_ngram_size == 0);
    CHECK(c.temperature == 1.0);
    CHECK(c.top_k == 50);
    CHECK(c.top_p == 1.0);
    CHECK(c.eos_token_id.empty());
    CHECK(!c.pad_token_id);
    CHECK(c.problem().empty());
}

TEST_CASE("lengths: unset max_length is 20 new tokens capped at max_position_embeddings; max_new_tokens wins; min_new_tokens wins") {
    gen::GenerationConfig c;
    CHECK(gen::length_limits(c, 7).max_length == 27);
    c.max_position_embeddings = 24;
    CHECK(gen::length_limits(c, 7).max_length == 24);
    c.max_length = 30;  // set: counts the prompt, not capped
    CHECK(gen::length_limits(c, 7).max_length == 30);
    c.max_new_tokens = 5;
    CHECK(gen::length_limits(c, 7).max_length == 12);
    c.min_length = 9;
    CHECK(gen::length_limits(c, 7).min_length == 9);
    c.min_new_tokens = 4;
    CHECK(gen::length_limits(c, 7).min_length == 11);
}

TEST_CASE("problem() names the setting transformers would refuse") {
    auto why = [](auto&& edit) {
        gen::GenerationConfig c;
        edit(c);
        return c.problem();
    };
    CHECK(why([](auto& c) { c.max_new_tokens = 0; }) == "max_new_tokens must be greater than 0, found 0");
    CHECK(why([](auto& c) { c.num_beams = 0; }) == "num_beams must be positive, found 0");
    CHECK(why([](auto& c) { c.num_return_sequences = 2; }).find("greedy search returns one sequence") == 0);
    CHECK(why([](auto& c) {
              c.num_beams = 2;
              c.num_return_sequences = 3;
          }) == "num_return_sequences (3) must be <= num_beams (2)");
    CHECK(why([](auto& c) { c.repetition_penalty = 0; }).find("repetition_penalty must be a positive number") == 0);
    CHECK(why([](auto& c) {
              c.do_sample = true;
              c.top_p = 1.5;
          }).find("top_p must lie in [0, 1]") == 0);
    CHECK(why([](auto& c) { c.top_p = 1.5; }).empty());  // ignored unless sampling, as transformers does
    CHECK(why([](auto& c) { c.eos_token_id = {2, -1}; }) == "eos_token_id must be >= 0, found -1");
    CHECK(why([](auto& c) { c.pad_token_id = -3; }) == "pad_token_id must be >= 0, found -3");
}
