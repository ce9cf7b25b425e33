// WordPieceTokenizer against Hugging Face (transformers 5.25.0 BertTokenizer, tokenizers 0.23.3):
// ids and decode() of every corpus string for BLIP's tokenizer (bert-base-uncased + [DEC]/[ENC])
// in its tokenizer.json and vocab.txt layouts, all-MiniLM-L6-v2's tokenizer.json read as tokenizers
// reads it, a cased vocabulary with and without accent stripping; padded, truncated and paired
// batches; the config layouts transformers reads; malformed files.
// Fixtures: tools/make_wordpiece_fixtures.py; tables: tools/gen_unicode_bert.py.
#include <doctest/doctest.h>

#include <mmalign/io/wordpiece_tokenizer.hpp>

#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "support/temp_dir.hpp"

namespace {

using mmalign::io::WordPieceTokenizer;
using Ids = std::vector<std::int32_t>;

const std::string dir = std::string(MMALIGN_FIXTURE_DIR) + "/wordpiece";

std::vector<std::string> read_lines(const std::string& path) {
    std::ifstream f(path);
    REQUIRE_MESSAGE(f.good(), "cannot open " << path);
    std::vector<std::string> lines;
    for (std::string line; std::getline(f, line);) lines.push_back(line);
    return lines;
}

struct Fixture {
    std::vector<std::string> corpus;
    std::vector<nlohmann::json> strings;  // one record per corpus line
    std::vector<nlohmann::json> batches, layouts;
    nlohmann::json meta;
};

const Fixture& fixture() {
    static const Fixture fx = [] {
        Fixture f;
        for (const auto& line : read_lines(dir + "/corpus.txt")) f.corpus.push_back(nlohmann::json::parse(line).get<std::string>());
        auto lines = read_lines(dir + "/expected.jsonl");
        f.meta = nlohmann::json::parse(lines.at(0)).at("meta");
        for (std::size_t i = 1; i < lines.size(); ++i) {
            auto r = nlohmann::json::parse(lines[i]);
            if (r.contains("i")) f.strings.push_back(std::move(r));
            else if (r.contains("batch")) f.batches.push_back(std::move(r));
            else f.layouts.push_back(std::move(r));
        }
        return f;
    }();
    return fx;
}

const WordPieceTokenizer& blip() {
    static const WordPieceTokenizer t = WordPieceTokenizer::from_hf_folder(dir + "/blip_tokenizer_json");
    return t;
}

std::string show(const Ids& ids) {
    std::string s = "[";
    for (std::size_t i = 0; i < ids.size(); ++i) s += (i ? ", " : "") + std::to_string(ids[i]);
    return s + "]";
}

std::string slurp(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    std::ostringstream ss;
    ss << f.rdbuf();
    return ss.str();
}

template <class F>
std::string error_of(F f) {
    try {
        f();
    } catch (const mmalign::Error& e) {
        return e.what();
    }
    return "(no exception)";
}

// Ids (special tokens added) and decode() of every corpus string against one variant's record
// fields; `ids_key` absent from a record means `fallback_key` holds the expected ids.
struct Tally {
    std::size_t compared = 0, ids = 0, decoded = 0;
};

Tally compare_corpus(const WordPieceTokenizer& tok, const char* ids_key, const char* fallback_key, const char* decode_key,
                     const char* decode_fallback) {
    const auto& fx = fixture();
    Tally t;
    for (const auto& r : fx.strings) {
        const auto i = r.at("i").get<std::size_t>();
        const std::string& text = fx.corpus.at(i);
        const Ids want = (r.contains(ids_key) ? r.at(ids_key) : r.at(fallback_key)).get<Ids>();
        const Ids got = tok.encode(text, /*add_special_tokens=*/true);
        ++t.compared;
        if (got != want && ++t.ids <= 5)
            MESSAGE("corpus line " << i + 1 << " " << nlohmann::json(text).dump() << "\n  HF:   " << show(want)
                                   << "\n  ours: " << show(got));
        const std::string want_text = (r.contains(decode_key) ? r.at(decode_key) : r.at(decode_fallback)).get<std::string>();
        const std::string decoded = tok.decode(want, /*skip_special_tokens=*/true);
        if (decoded != want_text && ++t.decoded <= 5)
            MESSAGE("decode of corpus line " << i + 1 << " " << show(want) << "\n  HF:   " << nlohmann::json(want_text).dump()
                                             << "\n  ours: " << nlohmann::json(decoded).dump());
    }
    return t;
}

}  // namespace

TEST_CASE("WordPieceTokenizer: BLIP's tokenizer (tokenizer.json folder) equals HF ids and decode on every corpus string") {
    const auto& fx = fixture();
    CHECK(fx.meta.at("transformers") == "5.25.0");
    CHECK(fx.meta.at("tokenizers") == "0.23.3");
    REQUIRE(fx.corpus.size() >= 2000);
    REQUIRE(fx.strings.size() == fx.corpus.size());
    const auto& tok = blip();
    Tally t = compare_corpus(tok, "blip", "blip", "decode", "decode");
    std::size_t decode_all = 0;
    for (const auto& r : fx.strings) {
        const std::string got = tok.decode(r.at("blip").get<Ids>(), /*skip_special_tokens=*/false);
        if (got != r.at("decode_all").get<std::string>() && ++decode_all <= 5)
            MESSAGE("decode (specials kept) of corpus line " << r.at("i").get<std::size_t>() + 1 << "\n  HF:   "
                                                             << r.at("decode_all").dump() << "\n  ours: " << nlohmann::json(got).dump());
    }
    MESSAGE("BLIP (bert-base-uncased + [DEC]/[ENC]): " << t.compared << " corpus strings checked, " << t.ids
                                                       << " id mismatches, " << t.decoded << " + " << decode_all
                                                       << " decode mismatches");
    CHECK(t.compared == fx.corpus.size());
    CHECK(t.ids == 0);
    CHECK(t.decoded == 0);
    CHECK(decode_all == 0);
}

TEST_CASE("WordPieceTokenizer: the vocab.txt layout (special_tokens_map.json, added_tokens.json) gives the tokenizer.json layout's ids") {
    const auto& fx = fixture();
    auto txt = WordPieceTokenizer::from_hf_folder(dir + "/blip_vocab_txt");
    const auto& json = blip();
    CHECK(txt.vocab_size() == json.vocab_size());
    CHECK(txt.bos_id() == json.bos_id());
    CHECK(txt.additional_special_ids() == json.additional_special_ids());
    CHECK(txt.model_max_length() == json.model_max_length());
    std::size_t token_diffs = 0;
    for (std::int32_t id = 0; id < static_cast<std::int32_t>(json.vocab_size()); ++id)
        token_diffs += txt.id_to_token(id) != json.id_to_token(id);
    CHECK(token_diffs == 0);
    Tally t = compare_corpus(txt, "blip", "blip", "decode", "decode");
    std::size_t same = 0;
    for (const auto& text : fx.corpus) same += txt.encode(text) == json.encode(text);
    MESSAGE("vocab.txt layout: " << t.compared << " corpus strings checked, " << t.ids << " id mismatches; "
                                 << same << " equal to the tokenizer.json layout's");
    CHECK(t.ids == 0);
    CHECK(t.decoded == 0);
    CHECK(same == fx.corpus.size());

    // from_vocab_txt with BLIP's settings in code is the same tokenizer.
    WordPieceTokenizer::Config c;
    c.bos_token = "[DEC]";
    c.additional_special_tokens = {"[ENC]"};
    c.model_max_length = 512;
    auto coded = WordPieceTokenizer::from_vocab_txt(dir + "/blip_vocab_txt/vocab.txt", c);
    CHECK(coded.vocab_size() == 30524);
    Tally tc = compare_corpus(coded, "blip", "blip", "decode", "decode");
    CHECK(tc.ids == 0);
    CHECK(tc.decoded == 0);
}

TEST_CASE("WordPieceTokenizer: all-MiniLM-L6-v2's tokenizer.json read as tokenizers reads it equals its ids and decode") {
    const auto& fx = fixture();
    auto raw = WordPieceTokenizer::from_tokenizer_json(dir + "/minilm/tokenizer.json");
    CHECK(raw.vocab_size() == 30522);
    CHECK(raw.pad_id() == 0);
    CHECK(!raw.bos_id());
    Tally t = compare_corpus(raw, "minilm", "blip", "minilm_decode", "decode");
    MESSAGE("all-MiniLM-L6-v2 tokenizer.json (tokenizers): " << t.compared << " corpus strings checked, " << t.ids
                                                             << " id mismatches, " << t.decoded << " decode mismatches");
    CHECK(t.compared == fx.corpus.size());
    CHECK(t.ids == 0);
    CHECK(t.decoded == 0);
    // transformers' BertTokenizer on the whole folder agrees (checked by the fixture script).
    auto folder = WordPieceTokenizer::from_hf_folder(dir + "/minilm");
    CHECK(folder.model_max_length() == 512);
    Tally tf = compare_corpus(folder, "minilm", "blip", "minilm_decode", "decode");
    CHECK(tf.ids == 0);
    CHECK(tf.decoded == 0);
}

TEST_CASE("WordPieceTokenizer: a cased vocabulary, accents stripped or kept, equals HF on every corpus string") {
    const auto& fx = fixture();
    auto strip = WordPieceTokenizer::from_hf_folder(dir + "/cased");
    CHECK(!strip.lowercases());
    CHECK(strip.strips_accents());
    Tally ts = compare_corpus(strip, "cased_strip", "cased_strip", "cased_strip_decode", "cased_strip_decode");
    auto keep_json = WordPieceTokenizer::from_tokenizer_json(dir + "/cased/keep_accents.tokenizer.json");
    Tally tj = compare_corpus(keep_json, "cased_keep", "cased_keep", "cased_keep_decode", "cased_keep_decode");
    WordPieceTokenizer::Config c;
    c.do_lower_case = false;
    c.strip_accents = false;
    auto keep_txt = WordPieceTokenizer::from_vocab_txt(dir + "/cased/vocab.txt", c);
    CHECK(!keep_txt.strips_accents());
    CHECK(blip().lowercases());
    CHECK(blip().strips_accents());
    Tally tt = compare_corpus(keep_txt, "cased_keep", "cased_keep", "cased_keep_decode", "cased_keep_decode");
    MESSAGE("cased: " << ts.compared << " corpus strings checked per variant; id mismatches: strip_accents " << ts.ids
                      << ", keep (tokenizer.json) " << tj.ids << ", keep (vocab.txt) " << tt.ids);
    CHECK(ts.compared == fx.corpus.size());
    CHECK(ts.ids == 0);
    CHECK(ts.decoded == 0);
    CHECK(tj.ids == 0);
    CHECK(tj.decoded == 0);
    CHECK(tt.ids == 0);
    CHECK(tt.decoded == 0);
}

TEST_CASE("WordPieceTokenizer: batches equal HF's padding, truncation, pairs, sides and masks") {
    const auto& fx = fixture();
    const auto& tok = blip();
    std::size_t checked = 0;
    for (const auto& r : fx.batches) {
        std::vector<std::string> texts, pairs;
        for (auto i : r.at("batch").get<std::vector<std::size_t>>()) texts.push_back(fx.corpus.at(i));
        if (r.contains("pairs"))
            for (auto i : r.at("pairs").get<std::vector<std::size_t>>()) pairs.push_back(fx.corpus.at(i));
        const auto& args = r.at("args");
        WordPieceTokenizer::Options opt;
        opt.truncate = args.value("truncation", false);
        opt.padding = args.at("padding").is_string() ? WordPieceTokenizer::Options::Padding::max_length
                                                     : WordPieceTokenizer::Options::Padding::longest;
        if (args.contains("max_length")) opt.max_length = args.at("max_length").get<mmalign::index_t>();
        opt.add_special_tokens = args.value("add_special_tokens", true);
        if (args.value("padding_side", "right") == "left") opt.padding_side = WordPieceTokenizer::Side::left;
        if (args.value("truncation_side", "right") == "left") opt.truncation_side = WordPieceTokenizer::Side::left;
        CAPTURE(args.dump());
        CAPTURE(r.at("batch").dump());
        auto b = pairs.empty() ? tok(texts, opt) : tok(texts, pairs, opt);
        const auto want_ids = r.at("input_ids").get<std::vector<Ids>>();
        REQUIRE(b.input_ids.dim(0) == static_cast<mmalign::index_t>(want_ids.size()));
        REQUIRE(b.input_ids.dim(1) == static_cast<mmalign::index_t>(want_ids.at(0).size()));
        for (const char* key : {"input_ids", "attention_mask", "token_type_ids"}) {
            const auto want = r.at(key).get<std::vector<Ids>>();
            const auto& got = std::string(key) == "input_ids" ? b.input_ids : std::string(key) == "attention_mask" ? b.attention_mask : b.token_type_ids;
            REQUIRE(got.shape() == b.input_ids.shape());
            const std::size_t width = want.at(0).size();
            for (std::size_t i = 0; i < want.size(); ++i) {
                CAPTURE(key);
                CHECK(Ids(got.data() + i * width, got.data() + (i + 1) * width) == want[i]);
            }
        }
        ++checked;
    }
    MESSAGE(checked << " batches checked");
    CHECK(checked >= 70);
}

TEST_CASE("WordPieceTokenizer: the config layouts transformers reads (legacy files, added_tokens_decoder flags, cleanup)") {
    const auto& fx = fixture();
    const auto texts = fx.meta.at("layout_texts").get<std::vector<std::string>>();
    REQUIRE(fx.layouts.size() >= 7);
    for (const auto& r : fx.layouts) {
        CAPTURE(r.at("layout").get<std::string>());
        mmalign::test::TempDir tmp;
        std::filesystem::copy_file(dir + "/blip_vocab_txt/vocab.txt", tmp.path / "vocab.txt");
        for (const auto& [name, text] : r.at("files").items()) tmp.file(name, text.get<std::string>());
        auto tok = WordPieceTokenizer::from_hf_folder(tmp.path.string());
        CHECK(tok.vocab_size() == r.at("vocab_size").get<mmalign::index_t>());
        const auto ids = r.at("ids").get<std::vector<Ids>>();
        for (std::size_t k = 0; k < texts.size(); ++k) {
            CAPTURE(texts[k]);
            CHECK(tok.encode(texts[k], true) == ids[k]);
            CHECK(tok.decode(ids[k], true) == r.at("decode").at(k).get<std::string>());
            CHECK(tok.decode(ids[k], false) == r.at("decode_all").at(k).get<std::string>());
        }
    }
}

TEST_CASE("WordPieceTokenizer: BLIP's special ids, known phrases and lookups (equal HF BertTokenizer)") {
    const auto& tok = blip();
    CHECK(tok.vocab_size() == 30524);
    CHECK(tok.cls_id() == 101);
    CHECK(tok.sep_id() == 102);
    CHECK(tok.pad_id() == 0);
    CHECK(tok.unk_id() == 100);
    CHECK(tok.mask_id() == 103);
    CHECK(tok.bos_id() == 30522);
    CHECK(!tok.eos_id());
    CHECK(tok.additional_special_ids() == Ids{30523});
    CHECK(tok.model_max_length() == 512);
    // The prompt of transformers' convert_blip_original_pytorch_to_hf.py and its question.
    CHECK(tok.encode("a picture of", true) == Ids{101, 1037, 3861, 1997, 102});
    CHECK(tok.encode("How many dogs are in this image?", true) == Ids{101, 2129, 2116, 6077, 2024, 1999, 2023, 3746, 1029, 102});
    // Its expected caption ids, decoded as processor.decode(ids, skip_special_tokens=True).
    CHECK(tok.decode(Ids{30522, 1037, 2450, 3564, 2006, 1996, 3509, 2007, 2014, 3899, 102}, true) ==
          "a woman sitting on the beach with her dog");
    CHECK(tok.token_to_id("##s") == 2015);
    CHECK(tok.token_to_id("[DEC]") == 30522);
    CHECK(!tok.token_to_id("nonexistenttoken"));
    CHECK(tok.id_to_token(30523) == "[ENC]");
    CHECK(tok.id_to_token(1037) == "a");
    CHECK(tok.id_to_token(-1).empty());
    CHECK(tok.id_to_token(30524).empty());
    CHECK(tok.decode(Ids{-5, 1037, 1 << 30, 3861}) == "a picture");  // unknown ids are skipped
}

TEST_CASE("WordPieceTokenizer: the default call pads to the longest row and truncates at model_max_length") {
    const auto& tok = blip();
    std::string long_text;
    for (int i = 0; i < 600; ++i) long_text += "cat ";
    auto b = tok({"a cat", long_text});
    REQUIRE(b.input_ids.shape() == mmalign::Shape{2, 512});
    CHECK(b.input_ids(0, 0) == 101);
    CHECK(b.input_ids(0, 3) == 102);
    CHECK(b.input_ids(0, 4) == 0);
    CHECK(b.attention_mask(0, 3) == 1);
    CHECK(b.attention_mask(0, 4) == 0);
    CHECK(b.input_ids(1, 510) == 4937);
    CHECK(b.input_ids(1, 511) == 102);
    CHECK(b.token_type_ids(1, 511) == 0);

    auto empty = tok(std::vector<std::string>{});
    CHECK(empty.input_ids.shape() == mmalign::Shape{0, 0});
    auto same = tok({"a cat", "a dog"}, {.padding = WordPieceTokenizer::Options::Padding::none});
    CHECK(same.input_ids.shape() == mmalign::Shape{2, 4});
    auto wide = tok({long_text, "a"}, {.truncate = false});
    CHECK(wide.input_ids.shape() == mmalign::Shape{2, 602});

    using mmalign::ArgumentError;
    CHECK_THROWS_AS(tok({"a cat", "a big dog"}, {.padding = WordPieceTokenizer::Options::Padding::none}), ArgumentError);
    CHECK_THROWS_AS(tok({long_text}, {.padding = WordPieceTokenizer::Options::Padding::max_length, .truncate = false}),
                    ArgumentError);
    CHECK_THROWS_AS(tok({"a"}, {.max_length = 1}), ArgumentError);  // no room for [CLS] and [SEP]
    CHECK_THROWS_AS(tok({"a", "b"}, {"c"}, {}), ArgumentError);
    // A tokenizer without model_max_length cannot pad to it.
    auto unlimited = WordPieceTokenizer::from_vocab_txt(dir + "/blip_vocab_txt/vocab.txt");
    CHECK(!unlimited.model_max_length());
    CHECK(unlimited({long_text}).input_ids.dim(1) == 602);
    CHECK_THROWS_AS(unlimited({"a"}, {.padding = WordPieceTokenizer::Options::Padding::max_length}), ArgumentError);
    // transformers' "no limit" values (1e30, and 1e9 in older files) mean none here too.
    for (const char* limit : {"1e30", "1000000000"}) {
        mmalign::test::TempDir f;
        std::filesystem::copy_file(dir + "/blip_vocab_txt/vocab.txt", f.path / "vocab.txt");
        f.file("tokenizer_config.json", std::string("{\"model_max_length\": ") + limit + "}");
        CHECK(!WordPieceTokenizer::from_hf_folder(f.path.string()).model_max_length());
    }
}

TEST_CASE("WordPieceTokenizer: invalid UTF-8 throws InvalidUtf8Error naming the byte offset") {
    const auto& tok = blip();
    struct Case {
        std::string bytes;
        std::size_t offset;
    };
    const Case cases[] = {{"\x80", 0}, {"ab\xC3", 2}, {"abc\xC0\xAF", 3}, {"ok \xED\xA0\x80", 3}, {"[DEC]\xF8", 5}};
    for (const auto& c : cases) {
        CAPTURE(c.offset);
        try {
            (void)tok.encode(c.bytes);
            FAIL("no exception for invalid UTF-8 at " << c.offset);
        } catch (const mmalign::io::InvalidUtf8Error& e) {
            CHECK(e.offset() == c.offset);
        }
        CHECK_THROWS_AS(tok({std::string("fine"), c.bytes}), mmalign::ArgumentError);
    }
    CHECK(tok.encode(std::string("a\0b", 3)) == Ids{11113});  // NUL is valid UTF-8, removed by clean_text: "ab"
}

TEST_CASE("WordPieceTokenizer: malformed files are refused with the file and field named") {
    mmalign::test::TempDir tmp;
    auto has = [](const std::string& msg, std::initializer_list<std::string> parts) {
        INFO(msg);
        CHECK(msg.find("WordPieceTokenizer") != std::string::npos);
        CHECK(msg.find('\n') == std::string::npos);
        for (const auto& p : parts) CHECK(msg.find(p) != std::string::npos);
    };
    auto vocab = [&](const std::string& name, const std::string& text) {
        return error_of([&] { WordPieceTokenizer::from_vocab_txt(tmp.file(name, text)); });
    };
    // vocab.txt
    has(vocab("dup.txt", "[PAD]\n[UNK]\ncat\ndog\ncat\n"), {"dup.txt", "line 5", "\"cat\"", "line 3"});
    has(vocab("blank.txt", "[PAD]\n[UNK]\n\ncat\n"), {"blank.txt", "line 3", "empty line"});
    has(vocab("utf8.txt", "[PAD]\n[UNK]\nca\xFFt\n"), {"utf8.txt", "line 3", "UTF-8"});
    has(vocab("nothing.txt", ""), {"nothing.txt", "the file is empty"});
    has(vocab("no_unk.txt", "[PAD]\ncat\n"), {"unk_token", "\"[UNK]\"", "not in the vocabulary"});
    has(error_of([&] { WordPieceTokenizer::from_vocab_txt((tmp.path / "absent.txt").string()); }), {"absent.txt", "no such file"});
    std::filesystem::create_directory(tmp.path / "a_dir.txt");
    has(error_of([&] { WordPieceTokenizer::from_vocab_txt((tmp.path / "a_dir.txt").string()); }), {"a_dir.txt", "not a regular file"});
    REQUIRE(::mkfifo((tmp.path / "fifo.txt").c_str(), 0600) == 0);  // opening it would block
    has(error_of([&] { WordPieceTokenizer::from_vocab_txt((tmp.path / "fifo.txt").string()); }), {"fifo.txt", "not a regular file"});
    {
        std::ofstream(tmp.path / "huge.txt") << "[UNK]\n";
        std::filesystem::resize_file(tmp.path / "huge.txt", (std::uintmax_t{32} << 20) + 1);  // sparse
        has(error_of([&] { WordPieceTokenizer::from_vocab_txt((tmp.path / "huge.txt").string()); }), {"huge.txt", "33554433 bytes"});
    }

    // tokenizer.json (from_tokenizer_json, and from_hf_folder's vocabulary)
    const auto minilm = nlohmann::json::parse(slurp(dir + "/minilm/tokenizer.json"));
    auto json_error = [&](const std::string& name, const nlohmann::json& j) {
        return error_of([&] { WordPieceTokenizer::from_tokenizer_json(tmp.file(name, j.dump())); });
    };
    auto edit = [&](auto f) {
        nlohmann::json j = minilm;
        f(j);
        return j;
    };
    has(json_error("bpe.json", edit([](auto& j) { j["model"]["type"] = "BPE"; })), {"bpe.json", "'model.type'", "\"WordPiece\"", "\"BPE\""});
    has(json_error("id_type.json", edit([](auto& j) { j["model"]["vocab"]["cat"] = "7"; })),
        {"id_type.json", "model.vocab.cat", "expected an integer id, found a string"});
    has(json_error("id_range.json", edit([](auto& j) { j["model"]["vocab"]["cat"] = 99999999; })),
        {"model.vocab.cat", "[0, 30522)", "99999999"});
    has(json_error("id_twice.json", edit([](auto& j) { j["model"]["vocab"]["cat"] = 0; })), {"model.vocab.cat", "id 0", "[PAD]"});
    has(json_error("vocab_list.json", edit([](auto& j) { j["model"]["vocab"] = 5; })), {"'model.vocab'", "found an integer"});
    has(json_error("norm.json", edit([](auto& j) { j["normalizer"] = {{"type", "Lowercase"}}; })), {"'normalizer'", "\"Lowercase\""});
    has(json_error("norm_flag.json", edit([](auto& j) { j["normalizer"]["lowercase"] = "yes"; })),
        {"'normalizer.lowercase'", "expected a boolean, found a string"});
    has(json_error("pre.json", edit([](auto& j) { j["pre_tokenizer"] = {{"type", "Whitespace"}}; })), {"'pre_tokenizer'", "\"Whitespace\""});
    has(json_error("post.json", edit([](auto& j) { j["post_processor"] = {{"type", "RobertaProcessing"}}; })), {"'post_processor'"});
    has(json_error("added.json", edit([](auto& j) { j["added_tokens"][0]["id"] = 7; })), {"added_tokens[0]", "\"[PAD]\"", "declared with id 7"});
    has(json_error("added_content.json", edit([](auto& j) { j["added_tokens"][1]["content"] = 3; })),
        {"'added_tokens[1].content'", "expected a string"});
    has(json_error("top.json", nlohmann::json::array()), {"top.json", "expected a JSON object", "found an array"});
    has(error_of([&] { WordPieceTokenizer::from_tokenizer_json(tmp.file("broken.json", "{\"model\": ")); }), {"broken.json", "not valid JSON"});

    // Folders: tokenizer_config.json, special_tokens_map.json, added_tokens.json.
    auto folder_error = [&](const std::map<std::string, std::string>& files) {
        mmalign::test::TempDir f;
        std::filesystem::copy_file(dir + "/blip_vocab_txt/vocab.txt", f.path / "vocab.txt");
        for (const auto& [name, text] : files) f.file(name, text);
        return error_of([&] { WordPieceTokenizer::from_hf_folder(f.path.string()); });
    };
    has(folder_error({{"tokenizer_config.json", R"({"do_lower_case": "yes"})"}}),
        {"tokenizer_config.json", "'do_lower_case'", "expected a boolean, found a string"});
    has(folder_error({{"tokenizer_config.json", R"({"strip_accents": 1})"}}), {"'strip_accents'", "expected a boolean or null"});
    has(folder_error({{"tokenizer_config.json", R"({"model_max_length": -5})"}}), {"'model_max_length'", "positive whole number", "-5"});
    has(folder_error({{"tokenizer_config.json", R"({"padding_side": "middle"})"}}), {"'padding_side'", "\"middle\""});
    has(folder_error({{"tokenizer_config.json", R"({"bos_token": 5})"}}), {"'bos_token'", "expected a string or an object"});
    has(folder_error({{"tokenizer_config.json", R"({"added_tokens_decoder": {"abc": {"content": "x"}}})"}}),
        {"'added_tokens_decoder'", "integer ids as keys", "\"abc\""});
    has(folder_error({{"tokenizer_config.json", R"({"unk_token": "[NOPE]"})"}}), {"unk_token", "\"[NOPE]\"", "not in the vocabulary"});
    has(folder_error({{"tokenizer_config.json", "[1, 2]"}}), {"tokenizer_config.json", "expected a JSON object"});
    has(folder_error({{"special_tokens_map.json", R"({"pad_token": {"lstrip": true}})"}}),
        {"special_tokens_map.json", "'pad_token.content'", "expected a string, found nothing"});
    has(folder_error({{"added_tokens.json", R"({"[DEC]": "30522"})"}}), {"added_tokens.json", "\"[DEC]\"", "integer id"});
    has(folder_error({{"added_tokens.json", R"({"[DEC]": 30600})"}}), {"added_tokens.json", "\"[DEC]\"", "declared with id 30600", "takes id 30522"});
    has(error_of([&] { WordPieceTokenizer::from_hf_folder(tmp.path.string() + "/a_dir.txt"); }), {"tokenizer.json': no such file, nor vocab.txt beside it"});
}
