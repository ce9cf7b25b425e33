// Gpt2Tokenizer against transformers 5.25's GPT2Tokenizer (tokenizers 0.23.3) on a byte-level BPE
// trained on real text, in OPT's two folder layouts: the ids (with and without special tokens) and
// both decodes of every corpus string, decode of id lists encode never produces, the GPT-2 regex
// on hand-checked cases, and the errors for malformed folders.
// Fixtures: tools/make_gpt2_fixtures.py.
#include <doctest/doctest.h>

#include <mmalign/io/gpt2_tokenizer.hpp>
#include <mmalign/io/gzip.hpp>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "support/corpus_fixture.hpp"
#include "support/errors.hpp"
#include "support/temp_dir.hpp"

namespace {

using mmalign::io::Gpt2Tokenizer;
using mmalign::test::TempDir;
using Ids = std::vector<std::int32_t>;

const std::string dir = std::string(MMALIGN_FIXTURE_DIR) + "/gpt2_bpe";

using mmalign::test::show_ids;

const mmalign::test::CorpusFixture& fixture() {
    static const auto fx = mmalign::test::read_corpus_fixture(dir + "/corpus.txt", dir + "/expected.jsonl");
    return fx;
}

std::string slurp(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(f), {});
}

// Checks every corpus record against one load form; `files` selects the opt_files decodes where
// they differ (<image> is not special there).
void check_corpus(const Gpt2Tokenizer& tok, bool files) {
    const auto& fx = fixture();
    std::size_t checked = 0, id_mismatches = 0, decode_mismatches = 0;
    for (const auto& r : fx.records) {
        if (!r.contains("i")) continue;
        const std::string& text = fx.corpus.at(r["i"].get<std::size_t>());
        const Ids want = r["ids"].get<Ids>();
        const Ids want_plain = r.contains("plain") ? r["plain"].get<Ids>() : Ids(want.begin() + 1, want.end());
        const Ids got = tok.encode(text), got_plain = tok.encode(text, false);
        const std::string skip = r.contains("dec_skip") ? r["dec_skip"].get<std::string>() : text;
        const std::string keep = r.contains("dec_keep") ? r["dec_keep"].get<std::string>() : "</s>" + skip;
        const std::string want_skip = files && r.contains("files_dec_skip") ? r["files_dec_skip"].get<std::string>() : skip;
        const std::string want_keep = files && r.contains("files_dec_keep") ? r["files_dec_keep"].get<std::string>() : keep;
        ++checked;
        if (got != want || got_plain != want_plain) {
            ++id_mismatches;
            if (id_mismatches <= 5)
                MESSAGE("text " << nlohmann::json(text).dump() << ": got " << show_ids(got) << " want " << show_ids(want));
        }
        if (tok.decode(want, true) != want_skip || tok.decode(want, false) != want_keep) {
            ++decode_mismatches;
            if (decode_mismatches <= 5)
                MESSAGE("decode of " << show_ids(want) << ": got " << nlohmann::json(tok.decode(want, true)).dump() << " / "
                                     << nlohmann::json(tok.decode(want, false)).dump());
        }
    }
    CHECK(checked == fx.meta["strings"].get<std::size_t>());
    CHECK(checked >= 2000);
    CHECK(id_mismatches == 0);
    CHECK(decode_mismatches == 0);
}

}  // namespace

TEST_CASE("tokenizer.json folder: every corpus string encodes and decodes as transformers' GPT2Tokenizer") {
    check_corpus(Gpt2Tokenizer::from_folder(dir + "/opt_json"), false);
}

TEST_CASE("vocab.json + merges.txt folder with the Hub's older configs matches transformers too") {
    check_corpus(Gpt2Tokenizer::from_folder(dir + "/opt_files"), true);
}

TEST_CASE("decode of arbitrary id lists (split multi-byte characters, specials inside, unknown ids) matches HF") {
    const auto json_tok = Gpt2Tokenizer::from_folder(dir + "/opt_json");
    const auto files_tok = Gpt2Tokenizer::from_folder(dir + "/opt_files");
    std::size_t n = 0;
    for (const auto& r : fixture().records) {
        if (!r.contains("decode_ids")) continue;
        const Ids ids = r["decode_ids"].get<Ids>();
        ++n;
        CHECK_MESSAGE(json_tok.decode(ids, true) == r["dec_skip"].get<std::string>(), show_ids(ids));
        CHECK_MESSAGE(json_tok.decode(ids, false) == r["dec_keep"].get<std::string>(), show_ids(ids));
        const std::string files_keep = r.value("files_dec_keep", r["dec_keep"].get<std::string>());
        CHECK_MESSAGE(files_tok.decode(ids, false) == files_keep, show_ids(ids));
    }
    CHECK(n >= 100);
}

TEST_CASE("add_prefix_space and the lstrip / rstrip / single_word / normalized flags of added tokens act as in HF") {
    const auto tok = Gpt2Tokenizer::from_folder(dir + "/opt_flags");
    CHECK(tok.vocab_size() == 4002);
    std::size_t n = 0, mismatches = 0;
    for (const auto& r : fixture().records) {
        if (!r.contains("flags_text")) continue;
        const std::string text = r["flags_text"].get<std::string>();
        const Ids want = r["ids"].get<Ids>();
        const Ids got = tok.encode(text);
        ++n;
        if (got != want || tok.decode(want, true) != r["dec_skip"].get<std::string>() ||
            tok.decode(want, false) != r["dec_keep"].get<std::string>()) {
            if (++mismatches <= 5) MESSAGE("text " << nlohmann::json(text).dump() << ": got " << show_ids(got) << " want " << show_ids(want));
        }
    }
    CHECK(n == 319);
    CHECK(mismatches == 0);
}

TEST_CASE("OPT's special tokens, sizes and flags come from the folder's configs") {
    for (const char* form : {"opt_json", "opt_files"}) {
        const auto tok = Gpt2Tokenizer::from_folder(dir + "/" + form);
        CHECK(tok.bos_id() == 2);  // </s>, as OPT's configs say
        CHECK(tok.eos_id() == 2);
        CHECK(tok.pad_id() == 1);
        CHECK(tok.token_to_id("<image>") == 4000);
        CHECK(tok.vocab_size() == fixture().meta["len_tokenizer"].get<mmalign::index_t>());
        CHECK(tok.add_bos_token());
        CHECK_FALSE(tok.add_eos_token());
        CHECK_FALSE(tok.find("no such token").has_value());
        CHECK_THROWS_AS(tok.token_to_id("no such token"), mmalign::ArgumentError);
        CHECK(tok.encode("").size() == 1);
        CHECK(tok.encode("", false).empty());
    }
    CHECK(Gpt2Tokenizer::from_folder(dir + "/opt_json").padding_side() == mmalign::io::PaddingSide::left);
    CHECK(Gpt2Tokenizer::from_folder(dir + "/opt_files").padding_side() == mmalign::io::PaddingSide::right);
}

TEST_CASE("text that is not valid UTF-8 is refused with the byte offset") {
    const auto tok = Gpt2Tokenizer::from_folder(dir + "/opt_json");
    CHECK_THROWS_AS(tok.encode(std::string("ok\xff", 3)), mmalign::io::InvalidUtf8Error);
    CHECK_THROWS_AS(tok.encode(std::string("\xed\xa0\x80", 3)), mmalign::ArgumentError);  // a surrogate
}

TEST_CASE("malformed folders give one-line errors naming the file and what is wrong") {
    const std::string vocab = slurp(dir + "/opt_files/vocab.json");
    const std::string merges = slurp(dir + "/opt_files/merges.txt");
    const std::string tiny_json =
        R"({"model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2}, "merges": [["a", "b"]]}, )";
    struct Case {
        const char* what;
        std::vector<std::pair<std::string, std::string>> files;  // name, content; "<dir>" makes a folder
        std::vector<std::string> message_parts;
    };
    const std::vector<Case> cases = {
        {"empty folder", {}, {"tokenizer.json': no such file, nor vocab.json + merges.txt"}},
        {"vocab.json without merges.txt", {{"vocab.json", vocab}}, {"merges.txt': no such file (vocab.json needs it"}},
        {"empty merges.txt", {{"vocab.json", vocab}, {"merges.txt", "#version: 0.2\n"}}, {"merges.txt", "no merges"}},
        {"a merge naming a symbol the vocabulary lacks", {{"vocab.json", vocab}, {"merges.txt", merges + "zzzq zzzr\n"}},
         {"merges.txt", "line", "'zzzq' is not in the vocabulary"}},
        {"a merge line with three symbols", {{"vocab.json", vocab}, {"merges.txt", "#version: 0.2\na b c\n"}},
         {"merges.txt' line 2", "expected two space-separated symbols"}},
        {"invalid UTF-8 in merges.txt", {{"vocab.json", vocab}, {"merges.txt", "#version: 0.2\n\xc3 a\n"}},
         {"merges.txt' line 2", "invalid UTF-8"}},
        {"vocab.json that is not an object", {{"vocab.json", "[1, 2]"}, {"merges.txt", merges}},
         {"vocab.json", "non-empty JSON object", "found an array"}},
        {"a negative id", {{"vocab.json", R"({"a": -1})"}, {"merges.txt", merges}}, {"vocab.json", "has id -1", "expected an integer"}},
        {"an absurd id", {{"vocab.json", R"({"a": 0, "b": 2000000000})"}, {"merges.txt", merges}},
         {"vocab.json", "far beyond the vocabulary size"}},
        {"two tokens with one id", {{"vocab.json", R"({"a": 0, "b": 0})"}, {"merges.txt", merges}}, {"vocab.json", "is given to both"}},
        {"invalid UTF-8 in a vocabulary token", {{"vocab.json", "{\"\xff\": 0}"}, {"merges.txt", merges}}, {"vocab.json", "not valid JSON"}},
        {"tokenizer.json that is not JSON", {{"tokenizer.json", "{\"model\": "}}, {"tokenizer.json", "not valid JSON"}},
        {"tokenizer.json whose model is WordPiece", {{"tokenizer.json", R"({"model": {"type": "WordPiece", "vocab": {"a": 0}}})"}},
         {"tokenizer.json", "model.type", "\"BPE\"", "WordPiece"}},
        {"tokenizer.json without merges", {{"tokenizer.json", R"({"model": {"type": "BPE", "vocab": {"a": 0}}})"}},
         {"tokenizer.json", "model.merges is missing"}},
        {"an unknown post-processor", {{"tokenizer.json", tiny_json + R"("post_processor": {"type": "Mystery"}})"}},
         {"tokenizer.json", "post_processor.type", "Mystery", "not supported"}},
        {"a tokenizer class of another model",
         {{"vocab.json", vocab}, {"merges.txt", merges}, {"tokenizer_config.json", R"({"tokenizer_class": "BertTokenizer"})"}},
         {"tokenizer_config.json", "tokenizer_class", "GPT2Tokenizer", "BertTokenizer"}},
        {"a bad padding_side", {{"vocab.json", vocab}, {"merges.txt", merges}, {"tokenizer_config.json", R"({"padding_side": "middle"})"}},
         {"tokenizer_config.json", "padding_side", "middle"}},
        {"a special token that is neither a string nor a token dict",
         {{"vocab.json", vocab}, {"merges.txt", merges}, {"tokenizer_config.json", R"({"bos_token": 5})"}},
         {"tokenizer_config.json", "bos_token", "found an integer"}},
        {"merges.txt is a directory", {{"vocab.json", vocab}, {"merges.txt", "<dir>"}}, {"merges.txt", "not a regular file"}},
    };
    for (const auto& c : cases) {
        CAPTURE(c.what);
        TempDir t;
        for (const auto& [name, content] : c.files) {
            if (content == "<dir>") std::filesystem::create_directory(t.path / name);
            else t.file(name, content);
        }
        const std::string msg = mmalign::test::io_error_of([&] { (void)Gpt2Tokenizer::from_folder(t.path.string()); });
        CHECK_MESSAGE(msg.find('\n') == std::string::npos, msg);
        for (const auto& p : c.message_parts) CHECK_MESSAGE(msg.find(p) != std::string::npos, msg << " lacks " << p);
    }
}

TEST_CASE("a folder without configs takes GPT2Tokenizer's defaults: no bos added, <|endoftext|> appended to the vocabulary") {
    TempDir t;
    t.file("vocab.json", slurp(dir + "/opt_files/vocab.json"));
    t.file("merges.txt", slurp(dir + "/opt_files/merges.txt"));
    const auto tok = Gpt2Tokenizer::from_folder(t.path.string());
    CHECK_FALSE(tok.add_bos_token());
    CHECK(tok.bos_id() == 4000);  // transformers adds the default "<|endoftext|>" after the vocabulary
    CHECK(tok.vocab_size() == 4001);
    CHECK_FALSE(tok.pad_id_if_any().has_value());
    CHECK_THROWS_AS(tok.pad_id(), mmalign::ArgumentError);
    const auto opt = Gpt2Tokenizer::from_folder(dir + "/opt_files");
    CHECK(tok.encode("Hello world") == opt.encode("Hello world", false));
}

TEST_CASE("OpenAI's GPT-2 vocabulary (50,257 tokens, 50,000 merges) gives transformers' ids on the whole corpus") {
    const std::string real = std::string(MMALIGN_FIXTURE_DIR) + "/gpt2_real";
    TempDir t;
    for (const char* name : {"vocab.json", "merges.txt"})
        t.file(name, mmalign::io::gunzip(slurp(real + "/" + name + ".gz"), name, std::size_t{16} << 20));
    t.file("tokenizer_config.json", slurp(real + "/tokenizer_config.json"));
    const auto tok = Gpt2Tokenizer::from_folder(t.path.string());
    std::istringstream text(mmalign::io::gunzip(slurp(real + "/expected.jsonl.gz"), "expected.jsonl.gz", std::size_t{64} << 20));
    mmalign::test::CorpusFixture expected;
    mmalign::test::read_expectations(mmalign::test::read_lines(text), expected);
    const auto& meta = expected.meta;
    CHECK(tok.vocab_size() == meta["len_tokenizer"].get<mmalign::index_t>());
    CHECK(tok.vocab_size() == 50257);
    CHECK_FALSE(tok.add_bos_token());  // GPT-2's own config prepends nothing
    std::size_t n = 0, id_mismatches = 0, decode_mismatches = 0;
    const auto& corpus = fixture().corpus;
    for (const auto& r : expected.records) {
        const std::string& text = corpus.at(r["i"].get<std::size_t>());
        const Ids want = r["ids"].get<Ids>();
        const Ids got = tok.encode(text);
        if (got != want && ++id_mismatches <= 5)
            MESSAGE("text " << nlohmann::json(text).dump() << ": got " << show_ids(got) << " want " << show_ids(want));
        if (tok.decode(want, /*skip_special_tokens=*/false) != r.value("decode", text)) ++decode_mismatches;
        ++n;
    }
    CHECK(n == meta["strings"].get<std::size_t>());
    CHECK(n >= 2000);
    CHECK(id_mismatches == 0);
    CHECK(decode_mismatches == 0);
}
