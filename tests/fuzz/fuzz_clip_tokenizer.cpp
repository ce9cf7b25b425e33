// libFuzzer entry point for mmalign::io::ClipTokenizer (and the gzip reader behind
// from_openai_bpe). The input is arbitrary bytes: it is encoded, batched and decoded with the
// fixture vocabulary, which is loaded once. The only exceptions allowed are the documented ones:
// InvalidUtf8Error for text that is not UTF-8 and IoError for a corrupt gzip stream. Any other
// exception, a sanitizer report, or a broken invariant (an id outside the vocabulary, a batch of
// the wrong shape, an error offset past the input) is a finding.
#include <mmalign/io/clip_tokenizer.hpp>
#include <mmalign/io/gzip.hpp>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#ifndef MMALIGN_FIXTURE_DIR
#error "MMALIGN_FIXTURE_DIR must name tests/fixtures"
#endif

namespace {

void require(bool ok) {
    if (!ok) std::abort();
}

bool valid_utf8(std::string_view s) {
    for (std::size_t i = 0; i < s.size();) {
        const char* why = nullptr;
        int n = mmalign::io::detail::utf8_length(s, i, &why);
        if (n == 0) return false;
        i += static_cast<std::size_t>(n);
    }
    return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    using mmalign::io::ClipTokenizer;
    static const ClipTokenizer tok = ClipTokenizer::from_hf_folder(MMALIGN_FIXTURE_DIR "/clip_tokenizer/hf");
    std::string_view text(reinterpret_cast<const char*>(data), size);

    if (mmalign::io::is_gzip(text)) {
        try {
            std::string out = mmalign::io::gunzip(text, "<fuzz input>", std::size_t{1} << 24);
            require(out.size() <= (std::size_t{1} << 24));
        } catch (const mmalign::IoError&) {
        }
    }

    try {
        std::vector<std::int32_t> ids = tok.encode(text);
        for (std::int32_t id : ids) require(id >= 0 && id < tok.vocab_size());
        auto batch = tok({std::string(text), "a photo of a cat"});
        std::size_t row = std::min<std::size_t>(ids.size() + 2, 77);
        require(batch.input_ids.dim(0) == 2 && batch.input_ids.dim(1) == static_cast<mmalign::index_t>(std::max<std::size_t>(row, 7)));
        require(batch.input_ids(0, 0) == tok.bos_id() && batch.input_ids(0, static_cast<mmalign::index_t>(row) - 1) == tok.eos_id());
        auto fixed = tok({std::string(text)}, {.context_length = 8, .padding = ClipTokenizer::Options::Padding::max_length});
        require(fixed.input_ids.dim(1) == 8);
        std::string decoded = tok.decode(ids);
        require(valid_utf8(decoded));  // invalid bytes come back as U+FFFD
        std::vector<std::int32_t> junk(ids.begin(), ids.end());
        junk.push_back(-1);
        junk.push_back(1 << 30);
        (void)tok.decode(junk, /*skip_special_tokens=*/true);
    } catch (const mmalign::io::InvalidUtf8Error& e) {
        require(e.offset() < size && !valid_utf8(text));
    }
    return 0;
}
