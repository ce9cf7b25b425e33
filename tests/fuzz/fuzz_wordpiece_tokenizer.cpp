// libFuzzer entry point for mmalign::io::WordPieceTokenizer. The input's first byte picks one of
// six roles for the rest of it:
//   0  text: encoded (alone, batched, paired, truncated, left-padded) and decoded by BLIP's
//      tokenizer (the fixture's bert-base-uncased + [DEC]/[ENC]) and a cased one, decoded ids
//      coming back as valid UTF-8; and its bytes as int32 ids, decoded whatever they are;
//   1  a vocab.txt, 2  a tokenizer.json, 3-5  the tokenizer_config.json, special_tokens_map.json
//      or added_tokens.json of a folder with a small vocab.txt: the loader either loads (and the
//      tokenizer then encodes and decodes) or throws IoError, in one line.
// The only exceptions allowed are those: InvalidUtf8Error for text that is not UTF-8 and IoError
// from a loader. Any other exception, a sanitizer report, or a broken invariant (an id outside
// the vocabulary, a batch of the wrong shape, an error offset past the input) is a finding.
// Seeds: tests/fuzz/corpus/fuzz_wordpiece_tokenizer/ (written by tools/make_wordpiece_fixtures.py,
// each file starting with its role byte).
#include <mmalign/io/wordpiece_tokenizer.hpp>

#include <unistd.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#ifndef MMALIGN_FIXTURE_DIR
#error "MMALIGN_FIXTURE_DIR must name tests/fixtures"
#endif

namespace {

using mmalign::io::WordPieceTokenizer;

void require(bool ok) {
    if (!ok) std::abort();
}

bool valid_utf8(std::string_view s) { return !mmalign::io::detail::find_invalid_utf8(s); }

// A scratch folder for the loader inputs, removed at exit.
const std::filesystem::path& scratch() {
    static const std::filesystem::path dir = [] {
        auto p = std::filesystem::temp_directory_path() / ("mmalign_fuzz_wordpiece_" + std::to_string(::getpid()));
        std::filesystem::create_directories(p);
        std::atexit([] {
            std::error_code ec;
            std::filesystem::remove_all(scratch(), ec);
        });
        return p;
    }();
    return dir;
}

std::string write(const std::string& name, std::string_view bytes) {
    const auto path = scratch() / name;
    std::ofstream(path, std::ios::binary | std::ios::trunc).write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    return path.string();
}

// Encodes and decodes `text`, checking the invariants. `bert` says the tokenizer wraps rows as
// [CLS] … [SEP] (a tokenizer.json's own template may be anything); `batches` adds a paired,
// truncated, left-padded batch and a fixed-width, left-truncated one.
void exercise(const WordPieceTokenizer& tok, std::string_view text, bool bert, bool batches) {
    try {
        const std::vector<std::int32_t> ids = tok.encode(text, true);
        for (std::int32_t id : ids) require(id >= 0 && id < tok.vocab_size());
        require(valid_utf8(tok.decode(ids, true)) && valid_utf8(tok.decode(ids, false)));
        if (bert) require(ids.size() >= 2 && ids.front() == tok.cls_id() && ids.back() == tok.sep_id());
        if (!batches) return;
        // Batches of a prefix (cut at a character boundary): the padding and truncation paths
        // depend on lengths, not on long texts, and this keeps each run fast.
        std::size_t cut = std::min<std::size_t>(text.size(), 48);
        while (cut > 0 && cut < text.size() && (static_cast<unsigned char>(text[cut]) & 0xC0) == 0x80) --cut;
        const std::string head(text.substr(0, cut));
        const std::vector<std::int32_t> head_ids = tok.encode(head, true);
        auto b = tok({head, "a cat"}, {std::string("dogs!"), head},
                     {.max_length = 9, .padding_side = WordPieceTokenizer::Side::left});
        require(b.input_ids.dim(0) == 2 && b.input_ids.dim(1) <= 9);
        require(b.attention_mask.shape() == b.input_ids.shape() && b.token_type_ids.shape() == b.input_ids.shape());
        require(b.input_ids(0, b.input_ids.dim(1) - 1) == tok.sep_id());
        auto fixed = tok({head}, {.padding = WordPieceTokenizer::Options::Padding::max_length,
                                               .max_length = 6, .truncation_side = WordPieceTokenizer::Side::left});
        require(fixed.input_ids.dim(1) == 6 && fixed.input_ids(0, 0) == tok.cls_id());
        // Left truncation keeps the last (at most 4) content ids, then [SEP], then padding.
        const std::size_t n = head_ids.size() - 2, k = std::min<std::size_t>(n, 4);
        for (std::size_t j = 0; j < k; ++j)
            require(fixed.input_ids(0, static_cast<mmalign::index_t>(1 + j)) == head_ids[1 + n - k + j]);
        require(fixed.input_ids(0, static_cast<mmalign::index_t>(1 + k)) == tok.sep_id());
    } catch (const mmalign::io::InvalidUtf8Error& e) {
        require(e.offset() < text.size() && !valid_utf8(text));
    }
}

// A loader either gives a tokenizer, which then encodes and decodes, or throws a one-line IoError.
template <class F>
void load_or_io_error(F load, std::string_view text, bool bert) {
    std::optional<WordPieceTokenizer> tok;
    try {
        tok.emplace(load());
    } catch (const mmalign::IoError& e) {
        require(std::strchr(e.what(), '\n') == nullptr);
        return;
    }
    exercise(*tok, text, bert, false);
    exercise(*tok, "Hello, [DEC] w\xC3\xB6rld! \xE7\x8C\xAB don't [MASK]", bert, bert);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    static const WordPieceTokenizer blip = WordPieceTokenizer::from_hf_folder(MMALIGN_FIXTURE_DIR "/wordpiece/blip_tokenizer_json");
    static const WordPieceTokenizer cased = WordPieceTokenizer::from_hf_folder(MMALIGN_FIXTURE_DIR "/wordpiece/cased");
    static const std::string small_vocab = [] {
        std::string v;
        for (const char* t : {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "cat", "##s", "dog", "!", "[DEC]", "the",
                              "##ing", "hello", ",", "'", "t", "don", "猫"})
            (v += t) += '\n';
        return v;
    }();
    // The first byte picks the role, the rest is the payload (the seeds carry their role byte).
    if (size == 0) return 0;
    const unsigned role = data[0] % 6;
    const std::string_view text(reinterpret_cast<const char*>(data) + 1, size - 1);
    switch (role) {
        case 0: {  // text, and the payload's bytes as ids
            exercise(blip, text, true, true);
            exercise(cased, text, true, false);
            std::vector<std::int32_t> ids(text.size() / sizeof(std::int32_t));
            if (!ids.empty()) std::memcpy(ids.data(), text.data(), ids.size() * sizeof(std::int32_t));
            require(valid_utf8(blip.decode(ids, true)) && valid_utf8(blip.decode(ids, false)));
            break;
        }
        case 1: {
            const std::string path = write("vocab.txt", text);
            load_or_io_error([&] { return WordPieceTokenizer::from_vocab_txt(path); }, text, true);
            break;
        }
        case 2: {
            const std::string path = write("fuzz.tokenizer.json", text);
            load_or_io_error([&] { return WordPieceTokenizer::from_tokenizer_json(path); }, text, false);
            break;
        }
        default: {  // one of a folder's files next to the small vocab.txt
            static constexpr const char* names[] = {"tokenizer_config.json", "special_tokens_map.json", "added_tokens.json"};
            const char* name = names[role - 3];
            const std::filesystem::path folder = scratch() / name;
            if (!std::filesystem::exists(folder / "vocab.txt")) {
                std::filesystem::create_directories(folder);
                std::ofstream(folder / "vocab.txt", std::ios::trunc) << small_vocab;
            }
            std::ofstream(folder / name, std::ios::binary | std::ios::trunc)
                .write(text.data(), static_cast<std::streamsize>(text.size()));
            load_or_io_error([&] { return WordPieceTokenizer::from_hf_folder(folder.string()); }, text, true);
        }
    }
    return 0;
}
