// io/detail/bpe.hpp: merges on hand-built rank tables give the merges the rules imply (lowest rank
// first, leftmost among equal ranks), the word affixes and the unknown-character policies of
// tokenizers' BPE model hold, and the cache returns what the model computes.
#include <doctest/doctest.h>

#include <mmalign/io/detail/bpe.hpp>

#include <string>
#include <vector>

namespace {

using namespace mmalign::io::detail;
using Ids = std::vector<std::int32_t>;

// A model over the given tokens (ids in order) and merges (rank in order), merged symbols by name.
void fill(BpeModel& m, const std::vector<std::string>& tokens, const std::vector<std::pair<std::string, std::string>>& merges) {
    for (std::size_t i = 0; i < tokens.size(); ++i) m.add_token(tokens[i], static_cast<std::int32_t>(i));
    for (std::size_t r = 0; r < merges.size(); ++r) {
        const auto& [a, b] = merges[r];
        m.add_merge(m.id_of(a), m.id_of(b), static_cast<std::int32_t>(r), m.id_of(m.merge_result(a, b)));
    }
}

Ids encode(const BpeModel& m, std::string_view word) {
    Ids out;
    m.encode_word(word, out);
    return out;
}

}  // namespace

TEST_CASE("bpe: the lowest-ranked pair merges first, wherever it is") {
    BpeModel m;
    // "abcd" with rules (c d) < (b c) < (a b): cd first, then no (b c) is left, then ab.
    fill(m, {"a", "b", "c", "d", "ab", "bc", "cd", "abcd"}, {{"c", "d"}, {"b", "c"}, {"a", "b"}, {"ab", "cd"}});
    CHECK(encode(m, "abcd") == Ids{m.id_of("abcd")});
    CHECK(encode(m, "abc") == Ids{m.id_of("a"), m.id_of("bc")});  // (b c) outranks (a b)
    CHECK(encode(m, "dcba") == Ids{3, 2, 1, 0});                  // no rule applies
}

TEST_CASE("bpe: equal pairs merge leftmost first, without overlapping") {
    BpeModel m;
    fill(m, {"a", "aa", "aaaa"}, {{"a", "a"}, {"aa", "aa"}});
    CHECK(encode(m, "aaa") == Ids{1, 0});  // aa a, not a aa
    CHECK(encode(m, "aaaaa") == Ids{2, 0});
    BpeMerges rules;
    rules.add(0, 0, 5, 1);
    rules.add(0, 0, 2, 1);  // a repeated pair keeps its last rank
    REQUIRE(rules.find(0, 0));
    CHECK(rules.find(0, 0)->rank == 2);
    CHECK(rules.find(0, 1) == nullptr);
}

TEST_CASE("bpe: tokenizers' 'unrelated' example merges to one symbol") {
    // The vocabulary and merges of tokenizers' test_tokenize_with_and_without_dropout (models/bpe/model.rs).
    BpeModel m;
    fill(m, {"u", "n", "r", "e", "l", "a", "t", "d", "re", "at", "ed", "un", "ated", "rel", "related", "unrelated"},
         {{"r", "e"}, {"a", "t"}, {"e", "d"}, {"u", "n"}, {"at", "ed"}, {"re", "l"}, {"rel", "ated"}, {"un", "related"}});
    CHECK(encode(m, "unrelated") == Ids{15});
    CHECK(m.initial_symbols("unrelated") == Ids{0, 1, 2, 3, 4, 5, 6, 3, 7});
}

TEST_CASE("bpe: the end-of-word suffix goes on the last symbol only, the prefix on all but the first") {
    BpeModel clip({.end_of_word_suffix = "</w>", .continuing_subword_prefix = ""});
    fill(clip, {"a", "b", "a</w>", "b</w>", "ab</w>"}, {{"a", "b</w>"}});
    CHECK(clip.initial_symbols("aba") == Ids{0, 1, 2});
    CHECK(encode(clip, "ab") == Ids{4});
    CHECK(encode(clip, "ba") == Ids{1, 2});
    BpeModel wp({.end_of_word_suffix = "", .continuing_subword_prefix = "##"});
    // tokenizers' test_bpe_with_continuing_subword_prefix.
    fill(wp, {"a", "##b", "##c", "ab", "abc"}, {{"a", "##b"}, {"ab", "##c"}});
    CHECK(wp.merge_result("ab", "##c") == "abc");
    CHECK(encode(wp, "ab") == Ids{3});
    CHECK(encode(wp, "abc") == Ids{4});
}

TEST_CASE("bpe: characters without a symbol become unk, fused or not, byte tokens, or nothing") {
    BpeModel m;
    fill(m, {"<unk>", "a", "b", "<0x63>"}, {});
    CHECK(m.initial_symbols("acxb") == Ids{1, 2});  // no unknown token: x and c (no byte fallback) dropped
    m.set_unknown({.id = 0, .fuse = false, .byte_fallback = false});
    CHECK(m.initial_symbols("accb") == Ids{1, 0, 0, 2});  // tokenizers' test_unk_not_fused
    m.set_unknown({.id = 0, .fuse = true, .byte_fallback = false});
    CHECK(m.initial_symbols("accb") == Ids{1, 0, 2});     // tokenizers' test_unk_get_fused
    CHECK(m.initial_symbols("\xC3\xA9\xC3\xA9") == Ids{0});
    m.set_unknown({.id = 0, .fuse = false, .byte_fallback = true});
    CHECK(m.initial_symbols("acx") == Ids{1, 3, 0});      // c has <0x63>; x has no byte token
    CHECK(m.initial_symbols("xc") == Ids{3, 0});          // as tokenizers: byte tokens come before a pending unk
}

TEST_CASE("bpe: a cached word gives the same ids as the first encoding") {
    BpeModel m;
    fill(m, {"l", "o", "w", "lo", "low"}, {{"l", "o"}, {"lo", "w"}});
    const Ids first = encode(m, "lowlow");
    CHECK(first == Ids{4, 4});
    CHECK(encode(m, "lowlow") == first);
    Ids out = {7};
    m.encode_word("low", out);
    m.encode_word("low", out);
    CHECK(out == Ids{7, 4, 4});
    CHECK(m.vocab_size() == 5);
    CHECK(m.id_bound() == 5);
    REQUIRE(m.token_of(3));
    CHECK(*m.token_of(3) == "lo");
    CHECK(m.token_of(5) == nullptr);
    CHECK(m.id_of("lw") == -1);
}
