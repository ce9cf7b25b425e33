// libFuzzer entry point for the caption data readers: each input is
//   1. parsed as a coco_karpathy annotation file (CaptionAnnotations::parse): it either reads or
//      throws IoError; one that reads must be consistent (every image named and captioned, one
//      entry per caption, entries in range, pairs() their count) and every caption must go through
//      blip_caption (the JSON parser only lets valid UTF-8 through);
//   2. given to blip_caption as raw text with max_words from its first byte: it either throws
//      InvalidUtf8Error or returns text without the characters LAVIS strips, without upper-case
//      ASCII, without a leading or trailing space and with at most max_words words.
// Anything else, a sanitizer report or a broken invariant is a finding.
// Seeds: tests/fuzz/corpus/fuzz_caption_annotations/ (both forms of the format).
#include <mmalign/io/caption_annotations.hpp>
#include <mmalign/io/caption_text.hpp>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

namespace {

void require(bool ok) {
    if (!ok) std::abort();
}

void check_caption(std::string_view text, std::size_t max_words) {
    std::string out;
    try {
        out = mmalign::io::blip_caption(text, max_words);
    } catch (const mmalign::io::InvalidUtf8Error&) {
        return;
    }
    for (char ch : out) {
        require(!(ch >= 'A' && ch <= 'Z'));
        require(std::string_view(".!\"()*#:;~").find(ch) == std::string_view::npos);
    }
    require(out.empty() || (out.front() != ' ' && out.back() != ' '));
    std::size_t words = out.empty() ? 0 : 1;
    for (char ch : out) words += ch == ' ';
    require(words <= (max_words == 0 ? 0 : max_words));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view text(reinterpret_cast<const char*>(data), size);
    try {
        const auto ann = mmalign::io::CaptionAnnotations::parse(text, "fuzz.json");
        std::size_t pairs = 0;
        require(!ann.images.empty());
        for (const auto& r : ann.images) {
            require(!r.image.empty());
            require(!r.captions.empty());
            require(r.caption_entry.size() == r.captions.size());
            for (std::size_t e : r.caption_entry) require(e >= r.entry);
            for (const std::string& c : r.captions) (void)mmalign::io::blip_caption(c, 50, "a photo of ");
            pairs += r.captions.size();
        }
        require(ann.pairs() == pairs);
    } catch (const mmalign::IoError&) {
    }
    check_caption(text.empty() ? text : text.substr(1), size == 0 ? 50 : static_cast<std::size_t>(data[0] % 64));
    return 0;
}
