// libFuzzer entry point for mmalign::io::Gpt2Tokenizer and its file readers. The first input byte
// picks what the rest is:
//   0: text, encoded (with and without special tokens) and decoded with the fixture tokenizer;
//   1: ids (little-endian int32), decoded with and without skipping special tokens;
//   2: merges.txt beside a small valid vocab.json;
//   3: vocab.json beside a small valid merges.txt;
//   4: tokenizer.json;
//   5: tokenizer_config.json beside the small valid vocabulary files;
//   6: "vocab.json \0 merges.txt \0 added_tokens.json \0 special_tokens_map.json" all fuzzed.
// A folder that loads is then used to encode and decode a fixed text and the input itself. The
// only exceptions allowed are the documented ones: IoError for a malformed file, ArgumentError
// (InvalidUtf8Error among them) for text that is not UTF-8 or a token the folder lacks. Any other
// exception, a sanitizer report or a broken invariant (an id the tokenizer does not know, a decode
// that is not UTF-8) is a finding.
#include <mmalign/io/gpt2_tokenizer.hpp>

#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>
#include <vector>

#ifndef MMALIGN_FIXTURE_DIR
#error "MMALIGN_FIXTURE_DIR must name tests/fixtures"
#endif

namespace {

using mmalign::io::Gpt2Tokenizer;

void require(bool ok) {
    if (!ok) std::abort();
}

bool valid_utf8(std::string_view s) { return !mmalign::io::detail::find_invalid_utf8(s).has_value(); }

// A byte-level vocabulary small enough to load on every execution: the 256 byte symbols, a few
// merged tokens and OPT's specials.
std::string small_vocab() {
    nlohmann::json v = nlohmann::json::object();
    std::int32_t id = 0;
    for (const char* s : {"<s>", "<pad>", "</s>", "<unk>"}) v[s] = id++;
    for (int b : mmalign::io::detail::bytes_in_table_order())
        v[mmalign::io::detail::byte_level_encode(std::string(1, static_cast<char>(b)))] = id++;
    for (const char* s : {"Ġt", "he", "Ġthe", "in", "Ġa"}) v[s] = id++;
    return v.dump();
}
const std::string small_merges = "#version: 0.2\nĠ t\nh e\nĠt he\ni n\nĠ a\n";

const std::string& folder() {
    static const std::string dir = [] {
        auto d = std::filesystem::temp_directory_path() / ("fuzz_gpt2_" + std::to_string(::getpid()));
        std::filesystem::create_directories(d);
        return d.string();
    }();
    return dir;
}

void write(const std::string& name, std::string_view content) {
    std::ofstream(folder() + "/" + name, std::ios::binary | std::ios::trunc).write(content.data(),
                                                                                   static_cast<std::streamsize>(content.size()));
}

void clear() {
    for (const char* f : {"vocab.json", "merges.txt", "tokenizer.json", "tokenizer_config.json", "added_tokens.json",
                          "special_tokens_map.json"})
        std::filesystem::remove(folder() + "/" + f);
}

void exercise(const Gpt2Tokenizer& tok, std::string_view text) {
    try {
        // Without special tokens every id is a vocabulary or added token (a post-processor's ids
        // are whatever tokenizer.json says, as in tokenizers).
        const auto plain = tok.encode(text, false);
        for (std::int32_t id : plain) require(tok.id_to_token(id) != "" || tok.find("") == id);
        const auto ids = tok.encode(text, true);
        require(ids.size() >= plain.size());
        require(valid_utf8(tok.decode(ids, true)) && valid_utf8(tok.decode(ids, false)));
    } catch (const mmalign::io::InvalidUtf8Error& e) {
        require(e.offset() < text.size() && !valid_utf8(text));
    }
    (void)tok.vocab_size();
}

void load_and_use(std::string_view rest) {
    try {
        const auto tok = Gpt2Tokenizer::from_folder(folder());
        exercise(tok, "Hello the world, <image> it's 42!\n");
        exercise(tok, rest);
    } catch (const mmalign::IoError&) {
    } catch (const mmalign::ArgumentError&) {  // e.g. a post-processor naming a token id the vocabulary lacks
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    static const Gpt2Tokenizer fixture = Gpt2Tokenizer::from_folder(MMALIGN_FIXTURE_DIR "/gpt2_bpe/opt_json");
    static const std::string vocab = small_vocab();
    if (size == 0) return 0;
    const std::string_view rest(reinterpret_cast<const char*>(data) + 1, size - 1);
    switch (data[0] % 7) {
        case 0:
            exercise(fixture, rest);
            break;
        case 1: {
            std::vector<std::int32_t> ids(rest.size() / 4);
            if (!ids.empty()) std::memcpy(ids.data(), rest.data(), ids.size() * 4);
            require(valid_utf8(fixture.decode(ids, true)) && valid_utf8(fixture.decode(ids, false)));
            break;
        }
        case 2:
            clear(), write("vocab.json", vocab), write("merges.txt", rest), load_and_use(rest);
            break;
        case 3:
            clear(), write("vocab.json", rest), write("merges.txt", small_merges), load_and_use(rest);
            break;
        case 4:
            clear(), write("tokenizer.json", rest), load_and_use(rest);
            break;
        case 5:
            clear(), write("vocab.json", vocab), write("merges.txt", small_merges), write("tokenizer_config.json", rest);
            load_and_use(rest);
            break;
        default: {
            clear();
            std::vector<std::string_view> parts;
            std::size_t start = 0;
            for (std::size_t i = 0; i <= rest.size() && parts.size() < 4; ++i)
                if (i == rest.size() || rest[i] == '\0') parts.push_back(rest.substr(start, i - start)), start = i + 1;
            const char* names[] = {"vocab.json", "merges.txt", "added_tokens.json", "special_tokens_map.json"};
            for (std::size_t k = 0; k < parts.size(); ++k) write(names[k], parts[k]);
            load_and_use(rest);
        }
    }
    return 0;
}
