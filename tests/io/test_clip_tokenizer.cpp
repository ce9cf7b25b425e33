// ClipTokenizer against Hugging Face's CLIPTokenizer (transformers 5.24.0, tokenizers 0.23.3):
// the ids and decode() of every corpus string, padded/truncated batches, the hub's older config
// layout, OpenAI's .gz vocabulary against the HF files, and the documented errors.
// Fixtures: tools/make_tokenizer_fixtures.py; tables: tools/gen_unicode_tables.py.
#include <doctest/doctest.h>

#include <mmalign/io/clip_tokenizer.hpp>
#include <mmalign/io/gzip.hpp>

#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>
#include "support/temp_dir.hpp"

namespace {

using mmalign::io::ClipTokenizer;
using Ids = std::vector<std::int32_t>;

const std::string dir = std::string(MMALIGN_FIXTURE_DIR) + "/clip_tokenizer";

std::vector<std::string> read_lines(const std::string& path) {
    std::ifstream f(path);
    REQUIRE_MESSAGE(f.good(), "cannot open " << path);
    std::vector<std::string> lines;
    for (std::string line; std::getline(f, line);) lines.push_back(line);
    return lines;
}

struct Fixture {
    std::vector<std::string> corpus;
    std::vector<nlohmann::json> records;  // hf_ids.jsonl after its metadata line
    nlohmann::json meta;
};

const Fixture& fixture() {
    static const Fixture fx = [] {
        Fixture f;
        for (const auto& line : read_lines(dir + "/corpus.txt")) f.corpus.push_back(nlohmann::json::parse(line).get<std::string>());
        auto lines = read_lines(dir + "/hf_ids.jsonl");
        f.meta = nlohmann::json::parse(lines.at(0)).at("meta");
        for (std::size_t i = 1; i < lines.size(); ++i) f.records.push_back(nlohmann::json::parse(lines[i]));
        return f;
    }();
    return fx;
}

const ClipTokenizer& hf_tokenizer() {
    static const ClipTokenizer t = ClipTokenizer::from_hf_folder(dir + "/hf");
    return t;
}

std::string show(const Ids& ids) {
    std::string s = "[";
    for (std::size_t i = 0; i < ids.size(); ++i) s += (i ? ", " : "") + std::to_string(ids[i]);
    return s + "]";
}

Ids with_specials(const ClipTokenizer& t, const std::string& text) {
    Ids ids = {t.bos_id()};
    for (auto id : t.encode(text)) ids.push_back(id);
    ids.push_back(t.eos_id());
    return ids;
}

// A scratch folder, removed at the end of the test.
std::string slurp(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    std::ostringstream ss;
    ss << f.rdbuf();
    return ss.str();
}

// A byte string literal without its terminating NUL (embedded zeros kept).
template <std::size_t N>
std::string bytes(const char (&s)[N]) {
    return std::string(s, N - 1);
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

}  // namespace

TEST_CASE("ClipTokenizer: ids and decode equal Hugging Face's on every corpus string") {
    const auto& fx = fixture();
    const auto& tok = hf_tokenizer();
    CHECK(fx.meta.at("transformers") == "5.24.0");
    CHECK(fx.meta.at("tokenizers") == "0.23.3");
    REQUIRE(fx.corpus.size() >= 2000);
    std::size_t compared = 0, id_mismatches = 0, decode_mismatches = 0;
    for (const auto& r : fx.records) {
        if (!r.contains("i") || r.contains("config")) continue;
        const std::string& text = fx.corpus.at(r.at("i").get<std::size_t>());
        Ids want = r.at("ids").get<Ids>();
        Ids got = with_specials(tok, text);
        ++compared;
        if (got != want && ++id_mismatches <= 5)
            MESSAGE("corpus line " << r.at("i").get<std::size_t>() + 1 << " " << nlohmann::json(text).dump() << "\n  HF:   "
                                   << show(want) << "\n  ours: " << show(got));
        std::string decoded = tok.decode(want);
        if (decoded != r.at("decode").get<std::string>() && ++decode_mismatches <= 5)
            MESSAGE("decode of corpus line " << r.at("i").get<std::size_t>() + 1 << "\n  HF:   " << r.at("decode").dump()
                                             << "\n  ours: " << nlohmann::json(decoded).dump());
    }
    MESSAGE(compared << " corpus strings compared: " << id_mismatches << " id mismatches, " << decode_mismatches
                     << " decode mismatches");
    CHECK(compared == fx.corpus.size());
    CHECK(id_mismatches == 0);
    CHECK(decode_mismatches == 0);
}

TEST_CASE("ClipTokenizer: batches equal Hugging Face's padding, truncation and attention_mask") {
    const auto& fx = fixture();
    const auto& tok = hf_tokenizer();
    std::size_t batches = 0;
    for (const auto& r : fx.records) {
        if (!r.contains("batch")) continue;
        std::vector<std::string> texts;
        for (auto i : r.at("batch").get<std::vector<std::size_t>>()) texts.push_back(fx.corpus.at(i));
        const auto& args = r.at("args");
        ClipTokenizer::Options opt;
        opt.truncate = args.value("truncation", false);
        opt.padding = args.at("padding").is_string() ? ClipTokenizer::Options::Padding::max_length
                                                     : ClipTokenizer::Options::Padding::longest;
        if (args.contains("max_length")) opt.context_length = args.at("max_length").get<mmalign::index_t>();
        auto b = tok(texts, opt);
        auto want_ids = r.at("input_ids").get<std::vector<Ids>>();
        auto want_mask = r.at("attention_mask").get<std::vector<Ids>>();
        CAPTURE(args.dump());
        CAPTURE(r.at("batch").dump());
        REQUIRE(b.input_ids.dim(0) == static_cast<mmalign::index_t>(want_ids.size()));
        REQUIRE(b.input_ids.dim(1) == static_cast<mmalign::index_t>(want_ids.at(0).size()));
        REQUIRE(b.attention_mask.shape() == b.input_ids.shape());
        for (std::size_t i = 0; i < want_ids.size(); ++i) {
            Ids got_ids(b.input_ids.data() + i * want_ids[i].size(), b.input_ids.data() + (i + 1) * want_ids[i].size());
            Ids got_mask(b.attention_mask.data() + i * want_ids[i].size(),
                         b.attention_mask.data() + (i + 1) * want_ids[i].size());
            CHECK(got_ids == want_ids[i]);
            CHECK(got_mask == want_mask[i]);
        }
        ++batches;
    }
    CHECK(batches >= 40);
}

TEST_CASE("ClipTokenizer: the default call is padding=True, truncation=True, max_length=77") {
    const auto& tok = hf_tokenizer();
    CHECK(tok.model_max_length() == 77);
    CHECK(tok.pad_id() == 49407);
    std::string long_text;
    for (int i = 0; i < 100; ++i) long_text += "a ";
    auto b = tok({"a cat", long_text});
    REQUIRE(b.input_ids.shape() == mmalign::Shape{2, 77});
    CHECK(b.input_ids(0, 0) == 49406);
    CHECK(b.input_ids(0, 3) == 49407);
    CHECK(b.input_ids(0, 76) == 49407);
    CHECK(b.attention_mask(0, 3) == 1);
    CHECK(b.attention_mask(0, 4) == 0);
    CHECK(b.input_ids(1, 75) == 320);
    CHECK(b.input_ids(1, 76) == 49407);
    CHECK(b.attention_mask(1, 76) == 1);

    auto empty = tok(std::vector<std::string>{});
    CHECK(empty.input_ids.shape() == mmalign::Shape{0, 0});
    auto fixed = tok({}, {.padding = ClipTokenizer::Options::Padding::max_length});
    CHECK(fixed.input_ids.shape() == mmalign::Shape{0, 77});
    auto same = tok({"a cat", "a dog"}, {.padding = ClipTokenizer::Options::Padding::none});
    CHECK(same.input_ids.shape() == mmalign::Shape{2, 4});

    using mmalign::ArgumentError;
    CHECK_THROWS_AS(tok({"a cat", "a big dog"}, {.padding = ClipTokenizer::Options::Padding::none}), ArgumentError);
    CHECK_THROWS_AS(tok({long_text}, {.truncate = false, .padding = ClipTokenizer::Options::Padding::max_length}),
                    ArgumentError);
    CHECK_THROWS_AS(tok({"a"}, {.context_length = 1}), ArgumentError);
    auto wide = tok({long_text, "a"}, {.truncate = false});
    CHECK(wide.input_ids.shape() == mmalign::Shape{2, 102});
}

TEST_CASE("ClipTokenizer: ids of openai/clip-vit-base-patch32 on known phrases (equal HF CLIPTokenizer)") {
    const auto& tok = hf_tokenizer();
    CHECK(with_specials(tok, "a photo of a cat") == Ids{49406, 320, 1125, 539, 320, 2368, 49407});
    CHECK(with_specials(tok, "hello world") == Ids{49406, 3306, 1002, 49407});
    CHECK(with_specials(tok, "You should've done this") == Ids{49406, 592, 1535, 1200, 1700, 589, 49407});
    CHECK(with_specials(tok, "2024 cats!!") == Ids{49406, 273, 271, 273, 275, 3989, 748, 49407});
    CHECK(with_specials(tok, "what's in the image") == Ids{49406, 768, 568, 530, 518, 2867, 49407});
    CHECK(tok.vocab_size() == 49408);
    CHECK(tok.bos_id() == 49406);
    CHECK(tok.eos_id() == 49407);
    CHECK(tok.token_to_id("cat</w>") == 2368);
    CHECK(tok.id_to_token(2368) == "cat</w>");
    CHECK(tok.decode(Ids{49406, 2368, 49407}, /*skip_special_tokens=*/true) == "cat");
}

TEST_CASE("ClipTokenizer: OpenAI's .gz vocabulary and the HF files give the same tokenizer") {
    const auto& fx = fixture();
    const auto& hf = hf_tokenizer();
    auto openai = ClipTokenizer::from_openai_bpe(dir + "/bpe_simple_vocab_16e6.txt.gz");
    REQUIRE(openai.vocab_size() == hf.vocab_size());
    std::size_t token_diffs = 0;
    for (std::int32_t id = 0; id < static_cast<std::int32_t>(hf.vocab_size()); ++id)
        token_diffs += openai.id_to_token(id) != hf.id_to_token(id);
    CHECK(token_diffs == 0);
    CHECK(openai.model_max_length() == 77);
    std::size_t diffs = 0;
    for (const auto& text : fx.corpus) {
        if (openai.encode(text) != hf.encode(text) && ++diffs <= 3)
            MESSAGE(nlohmann::json(text).dump() << "\n  openai: " << show(openai.encode(text)) << "\n  hf:     "
                                                << show(hf.encode(text)));
    }
    CHECK(diffs == 0);

    mmalign::test::TempDir tmp;  // the same file decompressed, and from_hf_files on the HF pair
    std::string plain = tmp.file("bpe.txt", mmalign::io::gunzip(slurp(dir + "/bpe_simple_vocab_16e6.txt.gz")));
    auto openai_plain = ClipTokenizer::from_openai_bpe(plain);
    auto files = ClipTokenizer::from_hf_files(dir + "/hf/vocab.json", dir + "/hf/merges.txt");
    for (std::size_t i = 0; i < fx.corpus.size(); i += 7) {
        CHECK(openai_plain.encode(fx.corpus[i]) == hf.encode(fx.corpus[i]));
        CHECK(files.encode(fx.corpus[i]) == hf.encode(fx.corpus[i]));
    }
}

TEST_CASE("ClipTokenizer: the hub's older tokenizer_config.json (AddedToken dicts, normalized=true)") {
    const auto& fx = fixture();
    mmalign::test::TempDir tmp;
    for (const char* name : {"vocab.json", "merges.txt"})
        std::filesystem::copy_file(dir + "/hf/" + name, tmp.path / name);
    std::filesystem::copy_file(dir + "/hub_style/tokenizer_config.json", tmp.path / "tokenizer_config.json");
    auto tok = ClipTokenizer::from_hf_folder(tmp.path.string());
    std::size_t compared = 0, mismatches = 0;
    for (const auto& r : fx.records) {
        if (r.value("config", "") != "hub_style") continue;
        std::string text = r.at("text").get<std::string>();
        Ids want = r.at("ids").get<Ids>(), got = with_specials(tok, text);
        ++compared;
        if (got != want && ++mismatches <= 5)
            MESSAGE(nlohmann::json(text).dump() << "\n  HF:   " << show(want) << "\n  ours: " << show(got));
    }
    CHECK(compared >= 200);
    CHECK(mismatches == 0);
    // <|startoftext|> is matched after lowercasing here, <|endoftext|> (pad, a plain string) is not.
    CHECK(tok.encode("<|STARTOFTEXT|>") == Ids{49406});
    CHECK(tok.encode("<|ENDOFTEXT|>") != Ids{49407});
}

TEST_CASE("ClipTokenizer: a folder with only tokenizer.json, as transformers v5 saves it") {
    const auto& fx = fixture();
    auto tok = ClipTokenizer::from_hf_folder(dir + "/small_tokenizer_json");
    CHECK(tok.vocab_size() == 512 + 1000 + 2);
    CHECK(tok.model_max_length() == 77);
    CHECK(tok.eos_id() == 1513);
    std::size_t compared = 0, mismatches = 0;
    for (const auto& r : fx.records) {
        if (r.value("config", "") != "small_tokenizer_json") continue;
        const std::string& text = fx.corpus.at(r.at("i").get<std::size_t>());
        Ids want = r.at("ids").get<Ids>(), got = with_specials(tok, text);
        ++compared;
        if (got != want && ++mismatches <= 5)
            MESSAGE(nlohmann::json(text).dump() << "\n  HF:   " << show(want) << "\n  ours: " << show(got));
    }
    CHECK(compared >= 500);
    CHECK(mismatches == 0);

    // A pipeline that is not CLIP's (the pre-v4.17 bare ByteLevel pre-tokenizer) is refused.
    mmalign::test::TempDir tmp;
    auto j = nlohmann::json::parse(slurp(dir + "/small_tokenizer_json/tokenizer.json"));
    j["pre_tokenizer"] = {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", true}, {"use_regex", true}};
    tmp.file("tokenizer.json", j.dump());
    std::string msg = error_of([&] { ClipTokenizer::from_hf_folder(tmp.path.string()); });
    CHECK(msg.find("pre_tokenizer is not CLIP's") != std::string::npos);
    CHECK(msg.find("tokenizer.json") != std::string::npos);
}

TEST_CASE("ClipTokenizer: invalid UTF-8 throws InvalidUtf8Error naming the byte offset") {
    const auto& tok = hf_tokenizer();
    struct Case {
        std::string bytes;
        std::size_t offset;
    };
    const Case cases[] = {
        {"\x80", 0},                    // continuation byte first
        {"ab\xC3", 2},                  // truncated 2-byte sequence
        {"abc\xC0\xAF", 3},             // overlong '/'
        {"a\xE0\x80\xAF", 1},           // overlong 3-byte
        {"ok \xED\xA0\x80", 3},         // UTF-16 surrogate D800
        {"\xF4\x90\x80\x80", 0},        // above U+10FFFF
        {"caf\xC3\xA9 \xFF", 6},        // 0xFF never valid
        {"\xE2\x82", 0},                // truncated at the end
        {"\xE2\x28\xA1", 0},            // bad continuation
        {"<|endoftext|>\xF8", 13},      // offsets count from the start of the whole text
    };
    for (const auto& c : cases) {
        CAPTURE(c.offset);
        try {
            (void)tok.encode(c.bytes);
            FAIL("no exception for invalid UTF-8 at " << c.offset);
        } catch (const mmalign::io::InvalidUtf8Error& e) {
            CHECK(e.offset() == c.offset);
            CHECK(std::string(e.what()).find("byte " + std::to_string(c.offset)) != std::string::npos);
        }
        CHECK_THROWS_AS(tok({std::string("fine"), c.bytes}), mmalign::ArgumentError);
    }
    CHECK(tok.encode(std::string("a\0b", 3)) == Ids{320, 444, 321});  // NUL is valid UTF-8 (byte-mapped to Ā)
    // decode() of ids whose bytes are not UTF-8 gives U+FFFD, as tokenizers' ByteLevel decoder does.
    CHECK(tok.decode(Ids{*tok.token_to_id("\xC3\x83")}) == "\xEF\xBF\xBD");
}

TEST_CASE("ClipTokenizer: missing or corrupt vocabulary files name the file and line") {
    mmalign::test::TempDir tmp;
    const std::string vocab = dir + "/hf/vocab.json", merges = dir + "/hf/merges.txt";
    auto has = [](const std::string& msg, const std::string& part) {
        INFO(msg);
        CHECK(msg.find(part) != std::string::npos);
    };
    std::string missing = (tmp.path / "nope.json").string();
    has(error_of([&] { ClipTokenizer::from_hf_files(missing, merges); }), missing);
    has(error_of([&] { ClipTokenizer::from_hf_folder(tmp.path.string()); }), "vocab.json");
    has(error_of([&] { ClipTokenizer::from_openai_bpe(missing); }), missing);

    std::string bad_json = tmp.file("bad.json", "{\"a\": 0,\n \"b\": 1,\n \"c\" 2}");
    std::string msg = error_of([&] { ClipTokenizer::from_hf_files(bad_json, merges); });
    has(msg, bad_json);
    has(msg, "line 3");
    has(error_of([&] { ClipTokenizer::from_hf_files(tmp.file("neg.json", "{\"a\": -1}"), merges); }), "\"a\"");
    has(error_of([&] { ClipTokenizer::from_hf_files(tmp.file("dup.json", "{\"a\": 0, \"b\": 0}"), merges); }), "id 0");

    std::string bad_merges = tmp.file("bad_merges.txt", "#version: 0.2\ni n\nt h\noops\na n\n");
    msg = error_of([&] { ClipTokenizer::from_hf_files(vocab, bad_merges); });
    has(msg, bad_merges);
    has(msg, "line 4");
    std::string unknown = tmp.file("unknown.txt", "#version: 0.2\ni n\nzz\xC3\xA9 q\n");
    msg = error_of([&] { ClipTokenizer::from_hf_files(vocab, unknown); });
    has(msg, "line 3");
    has(msg, "not in the vocabulary");
    has(error_of([&] { ClipTokenizer::from_hf_files(vocab, tmp.file("empty.txt", "#version: 0.2\n")); }), "no merges");

    std::string text = mmalign::io::gunzip(slurp(dir + "/bpe_simple_vocab_16e6.txt.gz"));
    std::size_t cut = 0;
    for (int i = 0; i < 1000; ++i) cut = text.find('\n', cut) + 1;
    msg = error_of([&] { ClipTokenizer::from_openai_bpe(tmp.file("short.txt", text.substr(0, cut))); });
    has(msg, "short.txt");
    has(msg, "48894");
    std::string three = text.substr(0, cut);
    three.insert(three.find('\n', three.find('\n') + 1), " x");  // line 2 gets three symbols
    msg = error_of([&] { ClipTokenizer::from_openai_bpe(tmp.file("three.txt", three)); });
    has(msg, "three.txt' line 2");

    std::string gz = slurp(dir + "/bpe_simple_vocab_16e6.txt.gz");
    std::string corrupt = gz;
    corrupt[corrupt.size() - 6] ^= 1;  // CRC-32 of the member
    msg = error_of([&] { ClipTokenizer::from_openai_bpe(tmp.file("crc.txt.gz", corrupt)); });
    has(msg, "crc.txt.gz");
    has(msg, "CRC-32");
    msg = error_of([&] { ClipTokenizer::from_openai_bpe(tmp.file("cut.txt.gz", gz.substr(0, gz.size() / 2))); });
    has(msg, "cut.txt.gz");
    has(msg, "at byte");
    has(error_of([&] { ClipTokenizer::from_hf_folder(dir + "/hf/vocab.json"); }), "tokenizer.json': no such file, nor vocab.json + merges.txt beside it");

    mmalign::test::TempDir folder;  // a config whose bos is not in the vocabulary
    for (const char* name : {"vocab.json", "merges.txt"})
        std::filesystem::copy_file(dir + "/hf/" + name, folder.path / name);
    folder.file("tokenizer_config.json", "{\"bos_token\": \"<s>\"}");
    has(error_of([&] { ClipTokenizer::from_hf_folder(folder.path.string()); }), "bos_token \"<s>\" is not in the vocabulary");
}

TEST_CASE("gunzip: stored, fixed-Huffman and empty members; corrupt input names the byte") {
    using mmalign::io::gunzip;
    const std::string stored = bytes("\x1f\x8b\x08\x00\x00\x00\x00\x00\x04\x03\x01\x0c\x00\xf3\xff\x73\x74\x6f\x72\x65\x64\x20"
                             "\x62\x6c\x6f\x63\x6b\x94\xa3\x24\x3d\x0c\x00\x00\x00");
    const std::string fixed = bytes("\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\x03\xcb\x48\xcd\xc9\xc9\x57\xc8\x40\x27\x01\xe3\x51"
                            "\x3d\x8d\x17\x00\x00\x00");
    const std::string empty = bytes("\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\x03\x03\x00\x00\x00\x00\x00\x00\x00\x00\x00");
    CHECK(gunzip(stored) == "stored block");
    CHECK(gunzip(fixed) == "hello hello hello hello");
    CHECK(gunzip(empty).empty());
    CHECK(gunzip(stored + fixed + std::string(4, '\0')) == "stored blockhello hello hello hello");
    std::string bad = stored;
    bad[13] ^= 0x01;  // NLEN no longer the complement of LEN
    CHECK(error_of([&] { gunzip(bad, "x.gz"); }).find("x.gz: corrupt gzip data at byte") != std::string::npos);
    CHECK_THROWS_AS(gunzip(std::string("\x1f\x8b", 2)), mmalign::IoError);
    CHECK_THROWS_AS(gunzip(fixed + "junk"), mmalign::IoError);
    CHECK_THROWS_AS(gunzip(fixed, "f", 10), mmalign::IoError);  // output cap
}
