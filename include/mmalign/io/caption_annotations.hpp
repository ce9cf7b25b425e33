// mmalign/io/caption_annotations.hpp — image–caption annotation files in LAVIS's `coco_karpathy`
// format (lavis/datasets/datasets/caption_datasets.py), which custom caption data also uses:
// a JSON array of entries, each an object with
//   "image":    the image file, relative to an image root ("val2014/COCO_val2014_000000391895.jpg");
//   "caption":  one caption (the train split: one entry per (image, caption) pair) or a list of
//               captions (the val/test splits: one entry per image);
//   "image_id": optional, a string ("coco_203564") or an integer, kept as text.
// Entries are grouped by their "image" string in first-appearance order. An entry without
// "image_id" gets the one LAVIS's COCOCapEvalDataset derives from the file name,
// int(image.split("/")[-1].strip(".jpg").split("_")[-1]) ("…_000000391895.jpg" → "391895"), and
// the image string itself when that is not a number. Two entries of the same image that both give
// an image_id must give the same one.
//
// Fields other than these three are skipped, whatever they hold. The file must be a regular file
// of at most max_annotation_file_bytes (a FIFO would block the open, /dev/zero never ends;
// io/detail/tokenizer_files.hpp's bounded read), and it is parsed as a stream of SAX events
// straight into the records: memory holds the file's text and the captions, never a JSON document
// (which takes several times the file's size). Every error is one IoError line naming the file,
// and the entry index and field where one is at fault:
//   CaptionAnnotations: 'train.json': entry 3: "caption": expected a string or a non-empty list of strings, found an integer (5)
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include <nlohmann/json.hpp>

#include "mmalign/core/error.hpp"
#include "mmalign/io/detail/tokenizer_files.hpp"

namespace mmalign::io {

/// The largest annotation file read: well above COCO's Karpathy train split (tens of MB). The
/// records take a few times the file's size in memory (up to about ten times for entries of a few
/// bytes each, by the per-string and per-record overheads), so this also bounds what a hostile
/// file can make the reader allocate.
inline constexpr std::uintmax_t max_annotation_file_bytes = std::uintmax_t(1) << 30;

/// One image and all its captions.
struct CaptionRecord {
    std::string image;                       // path relative to the image root, as in the file
    std::vector<std::string> captions;       // raw, as in the file (blip_caption processes them)
    std::string image_id;                    // as text ("coco_203564", "42")
    std::size_t entry = 0;                   // index of the first JSON entry of this image
    std::vector<std::size_t> caption_entry{};  // the JSON entry of each caption (for messages)
};

struct CaptionAnnotations {
    std::string path;
    std::vector<CaptionRecord> images;  // grouped by image, first-appearance order

    /// Total (image, caption) pairs: the training samples.
    std::size_t pairs() const {
        std::size_t n = 0;
        for (const CaptionRecord& r : images) n += r.captions.size();
        return n;
    }

    /// Reads an annotation file (see the top of this header).
    static CaptionAnnotations read(const std::string& path) {
        const std::string text = detail::read_tokenizer_file(path, who, max_annotation_file_bytes);
        return parse(text, path);
    }

    /// Parses the text of an annotation file; `path` names it in messages.
    static CaptionAnnotations parse(std::string_view text, const std::string& path);

    static constexpr std::string_view who = "CaptionAnnotations";
};

namespace detail {

/// The image_id LAVIS's COCOCapEvalDataset derives from an image path (see the top), as text.
inline std::string derived_image_id(const std::string& image) {
    std::string_view name(image);
    if (const auto slash = name.rfind('/'); slash != std::string_view::npos) name.remove_prefix(slash + 1);
    // str.strip(".jpg") strips any of the characters '.', 'j', 'p', 'g' from both ends.
    constexpr std::string_view set = ".jpg";
    while (!name.empty() && set.find(name.front()) != std::string_view::npos) name.remove_prefix(1);
    while (!name.empty() && set.find(name.back()) != std::string_view::npos) name.remove_suffix(1);
    if (const auto us = name.rfind('_'); us != std::string_view::npos) name.remove_prefix(us + 1);
    if (name.empty() || name.find_first_not_of("0123456789") != std::string_view::npos) return image;
    const auto nz = name.find_first_not_of('0');
    return nz == std::string_view::npos ? std::string("0") : std::string(name.substr(nz));
}

}  // namespace detail

namespace detail {

/// The reader's SAX handler: builds the records while nlohmann's parser streams the file, so memory
/// holds the captions once instead of a whole JSON document (several times the file's size).
class CaptionAnnotationsSax final : public nlohmann::json_sax<nlohmann::json> {
public:
    CaptionAnnotationsSax(const std::string& path, CaptionAnnotations& out) : path_(path), out_(out) {}

    bool null() override { return value(Kind::null); }
    bool boolean(bool) override { return value(Kind::boolean); }
    bool number_integer(number_integer_t v) override { return value(Kind::integer, nullptr, nlohmann::json(v).dump()); }
    bool number_unsigned(number_unsigned_t v) override { return value(Kind::integer, nullptr, nlohmann::json(v).dump()); }
    bool number_float(number_float_t v, const string_t&) override {
        return value(Kind::number, nullptr, nlohmann::json(v).dump());
    }
    bool string(string_t& v) override { return value(Kind::string, &v); }
    bool binary(binary_t&) override { fail("not valid JSON: binary data"); }
    bool start_object(std::size_t) override { return value(Kind::object); }
    bool start_array(std::size_t) override { return value(Kind::array); }
    bool key(string_t& k) override {
        if (skip_ == 0) key_ = std::move(k);
        return true;
    }
    bool end_object() override { return end(); }
    bool end_array() override { return end(); }
    bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception& e) override {
        fail("not valid JSON: " + json_error_text(e.what()));
    }

private:
    enum class Kind { null, boolean, integer, number, string, object, array };

    /// The kind of a value for messages, as json_value_kind words it.
    static std::string describe(Kind k, const std::string& number) {
        switch (k) {
            case Kind::null: return "null";
            case Kind::boolean: return "a boolean";
            case Kind::integer: return "an integer (" + number + ")";
            case Kind::number: return "a number (" + number + ")";
            case Kind::string: return "a string";
            case Kind::object: return "an object";
            case Kind::array: return "an array";
        }
        return "a value";
    }

    [[noreturn]] void fail(const std::string& what) const { tokenizer_file_fail(CaptionAnnotations::who, path_, what); }
    std::string at() const { return "entry " + std::to_string(entries_) + ": "; }
    [[noreturn]] void field_fail(const std::string& what) const { fail(at() + "\"" + key_ + "\": " + what); }

    /// Every value: a scalar, or the start of an object or array. depth_ counts the containers
    /// around it: 0 the document, 1 an entry, 2 a field of an entry, 3 an item of a caption list.
    bool value(Kind k, std::string* s = nullptr, const std::string& number = {}) {
        const bool container = k == Kind::object || k == Kind::array;
        if (skip_ > 0) {  // inside a field this reader does not use
            skip_ += container;
            return true;
        }
        switch (depth_) {
            case 0:
                if (k != Kind::array) fail("expected a JSON array of entries at the top, found " + describe(k, number));
                break;
            case 1:
                if (k != Kind::object) fail(at() + "expected an object, found " + describe(k, number));
                image_.clear();
                captions_.clear();
                image_id_.clear();
                has_image_ = has_caption_ = id_given_ = false;
                break;
            case 2:
                if (key_ == "image") {
                    if (k != Kind::string) field_fail("expected a string, found " + describe(k, number));
                    image_ = std::move(*s);
                    has_image_ = true;
                } else if (key_ == "caption") {
                    if (k != Kind::string && k != Kind::array)
                        field_fail("expected a string or a non-empty list of strings, found " + describe(k, number));
                    captions_.clear();
                    if (k == Kind::string) captions_.push_back(std::move(*s));
                    has_caption_ = true;
                } else if (key_ == "image_id") {
                    if (k == Kind::string)
                        image_id_ = std::move(*s);
                    else if (k == Kind::integer)
                        image_id_ = number;
                    else if (k != Kind::null)
                        field_fail("expected a string or an integer, found " + describe(k, number));
                    id_given_ = k != Kind::null;
                } else if (container) {
                    skip_ = 1;
                    return true;
                }
                break;
            default:  // an item of the caption list (every other nested container is skipped)
                if (k != Kind::string)
                    field_fail("item " + std::to_string(captions_.size()) + ": expected a string, found " +
                               describe(k, number));
                captions_.push_back(std::move(*s));
                break;
        }
        depth_ += container;
        return true;
    }

    bool end() {
        if (skip_ > 0) {
            --skip_;
            return true;
        }
        --depth_;
        if (depth_ == 2 && captions_.empty())
            field_fail("expected a string or a non-empty list of strings, found an empty list");
        if (depth_ == 1) {
            finish_entry();
            ++entries_;
        }
        if (depth_ == 0 && entries_ == 0) fail("the array holds no entries");
        return true;
    }

    void finish_entry() {
        if (!has_image_) fail(at() + "missing the field \"image\"");
        if (!has_caption_) fail(at() + "missing the field \"caption\"");
        key_ = "image";
        if (image_.empty()) field_fail("is empty");
        if (image_.find('\0') != std::string::npos) field_fail("contains a NUL character");
        key_ = "image_id";
        const std::size_t e = entries_;
        auto [it, inserted] = by_image_.try_emplace(image_, out_.images.size());
        if (inserted) {
            out_.images.push_back(
                CaptionRecord{image_, {}, id_given_ ? image_id_ : derived_image_id(image_), e, {}});
            id_given_of_.push_back(id_given_);
        } else if (id_given_) {
            CaptionRecord& r = out_.images[it->second];
            if (id_given_of_[it->second] && r.image_id != image_id_)
                field_fail(json_quoted(image_id_) + " differs from " + json_quoted(r.image_id) +
                           ", given for the same image by entry " + std::to_string(r.entry));
            r.image_id = image_id_;
            id_given_of_[it->second] = true;
        }
        CaptionRecord& r = out_.images[it->second];
        for (std::string& c : captions_) {
            r.captions.push_back(std::move(c));
            r.caption_entry.push_back(e);
        }
    }

    const std::string& path_;
    CaptionAnnotations& out_;
    int depth_ = 0;
    std::size_t skip_ = 0;   // containers open inside an unused field
    std::size_t entries_ = 0;
    std::string key_;
    // The entry being read.
    std::string image_, image_id_;
    std::vector<std::string> captions_;
    bool has_image_ = false, has_caption_ = false, id_given_ = false;
    // Per record: its index by image, and whether an entry gave its image_id.
    std::unordered_map<std::string, std::size_t> by_image_;
    std::vector<bool> id_given_of_;
};

}  // namespace detail

inline CaptionAnnotations CaptionAnnotations::parse(std::string_view text, const std::string& path) {
    if (text.empty()) detail::tokenizer_file_fail(who, path, "the file is empty");
    CaptionAnnotations out;
    out.path = path;
    detail::CaptionAnnotationsSax sax(path, out);
    nlohmann::json::sax_parse(text, &sax);
    return out;
}

}  // namespace mmalign::io
