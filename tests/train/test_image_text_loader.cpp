// tests/train/test_image_text_loader.cpp — the prefetching (image, caption) loader over
// tests/fixtures/caption_data/train.json (5 pairs of 3 images): batches that are a function of the
// step alone (any worker count, after seek), every pair once per epoch, the samples themselves
// (blip_caption of the caption, the train transform of the image), and errors that name the
// annotation file, entry and image.
#include <doctest/doctest.h>

#if !defined(MMALIGN_WITH_IMAGE)
TEST_CASE("image-text loader tests are skipped: mmalign::image was not configured (needs libjpeg, libpng)") {
    MESSAGE("mmalign::image not available; install libjpeg62-turbo-dev and libpng-dev");
}
#else

#include <sys/stat.h>

#include <algorithm>
#include <filesystem>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "mmalign/train/image_text_loader.hpp"
#include "support/errors.hpp"
#include "support/temp_dir.hpp"

using namespace mmalign;
using mmalign::test::io_error_of;

namespace {

const std::string fixture_dir = std::string(MMALIGN_FIXTURE_DIR) + "/caption_data";

ImageTextLoaderConfig small_config(int workers, int prefetch = 2) {
    ImageTextLoaderConfig c;
    c.image_root = fixture_dir;
    c.batch_size = 2;
    c.seed = 1234;
    c.workers = workers;
    c.prefetch = prefetch;
    c.transform.image_size = 16;
    return c;
}

std::vector<ImageTextBatch> take(ImageTextLoader& loader, int n) {
    std::vector<ImageTextBatch> out;
    for (int i = 0; i < n; ++i) out.push_back(loader.next());
    return out;
}

void check_same(const ImageTextBatch& a, const ImageTextBatch& b) {
    CHECK(a.step == b.step);
    CHECK(a.epoch == b.epoch);
    CHECK(a.size == b.size);
    CHECK(a.images == b.images);
    CHECK(a.captions == b.captions);
    CHECK(a.image_ids == b.image_ids);
    CHECK(a.pixels == b.pixels);  // bit for bit
}

}  // namespace

TEST_CASE("the batches are the same for 0, 1, 2 and 3 workers and any prefetch depth") {
    const auto ann = io::CaptionAnnotations::read(fixture_dir + "/train.json");
    ImageTextLoader reference(ann, small_config(0));
    CHECK(reference.batches_per_epoch() == 2);  // 5 pairs, batches of 2, drop_last
    const auto expected = take(reference, 7);
    for (int i = 0; i < 7; ++i) {
        CHECK(expected[static_cast<std::size_t>(i)].step == i);
        CHECK(expected[static_cast<std::size_t>(i)].epoch == i / 2);
        CHECK(expected[static_cast<std::size_t>(i)].size == 2);
    }
    for (const std::pair<int, int>& setting : {std::pair{1, 1}, {1, 2}, {2, 2}, {3, 1}, {2, 5}}) {
        const int workers = setting.first, prefetch = setting.second;
        CAPTURE(workers);
        CAPTURE(prefetch);
        ImageTextLoader loader(ann, small_config(workers, prefetch));
        const auto got = take(loader, 7);
        for (std::size_t i = 0; i < got.size(); ++i) check_same(got[i], expected[i]);
    }
}

TEST_CASE("seek(s) makes the next batch global step s, forwards, backwards and on a fresh loader") {
    const auto ann = io::CaptionAnnotations::read(fixture_dir + "/train.json");
    ImageTextLoader first(ann, small_config(2));
    const auto run = take(first, 8);

    ImageTextLoader resumed(ann, small_config(2));
    resumed.seek(5);
    check_same(resumed.next(), run[5]);
    check_same(resumed.next(), run[6]);
    resumed.seek(1);  // backwards, with batches 7.. already being built
    check_same(resumed.next(), run[1]);
    resumed.seek(7);
    check_same(resumed.next(), run[7]);
    CHECK_THROWS_AS(resumed.seek(-1), ArgumentError);
}

TEST_CASE("without drop_last every pair is seen exactly once per epoch, in a new order each epoch") {
    const auto ann = io::CaptionAnnotations::read(fixture_dir + "/train.json");
    ImageTextLoaderConfig c = small_config(2);
    c.drop_last = false;
    ImageTextLoader loader(ann, c);
    REQUIRE(loader.batches_per_epoch() == 3);  // 2 + 2 + 1
    std::set<std::vector<std::string>> orders;
    for (long epoch = 0; epoch < 4; ++epoch) {
        std::multiset<std::pair<std::size_t, std::string>> seen;
        std::vector<std::string> order;
        for (long b = 0; b < 3; ++b) {
            const ImageTextBatch batch = loader.next();
            CHECK(batch.epoch == epoch);
            CHECK(batch.size == (b == 2 ? 1 : 2));
            CHECK(batch.pixels.size() == static_cast<std::size_t>(batch.size * 3 * 16 * 16));
            for (index_t i = 0; i < batch.size; ++i) {
                seen.emplace(batch.images[static_cast<std::size_t>(i)], batch.captions[static_cast<std::size_t>(i)]);
                order.push_back(batch.captions[static_cast<std::size_t>(i)]);
            }
        }
        std::multiset<std::pair<std::size_t, std::string>> all;
        for (std::size_t i = 0; i < ann.images.size(); ++i)
            for (const std::string& cap : ann.images[i].captions) all.emplace(i, io::blip_caption(cap));
        CHECK(seen == all);
        orders.insert(order);
    }
    CHECK(orders.size() > 1);  // the epochs are shuffled differently
}

TEST_CASE("each sample is blip_caption of its caption and the train transform of its image under its own seed") {
    const auto ann = io::CaptionAnnotations::read(fixture_dir + "/train.json");
    ImageTextLoaderConfig c = small_config(1);
    c.shuffle = false;  // annotation order: pairs 0, 1 | 2, 3
    c.prompt = "a photo of ";
    c.max_words = 4;
    ImageTextLoader loader(ann, c);
    const ImageTextBatch b0 = loader.next(), b1 = loader.next();
    CHECK(b0.images == std::vector<std::size_t>{0, 0});  // a.png's two captions come first
    CHECK(b1.images == std::vector<std::size_t>{1, 1});
    CHECK(b0.captions == std::vector<std::string>{"a photo of a man riding a", "a photo of someone surfing a big"});
    CHECK(b0.image_ids == std::vector<std::string>{"coco_203564", "coco_203564"});
    CHECK(b1.image_ids == std::vector<std::string>{"42", "42"});
    const io::Image rgb = io::to_rgb(io::load_image(fixture_dir + "/images/a.png"));
    const std::size_t n = 3 * 16 * 16;
    std::vector<float> expected(n);  // [3, 16, 16]
    for (std::size_t p = 0; p < 2; ++p) {
        io::train_transform(rgb, c.transform, detail::derive_seed(c.seed, 2, 0, p), expected.data());
        CHECK(std::equal(expected.begin(), expected.end(), b0.pixels.begin() + static_cast<std::ptrdiff_t>(p * n)));
    }
    // The same image at two positions gets two different crops.
    CHECK(!std::equal(b0.pixels.begin(), b0.pixels.begin() + static_cast<std::ptrdiff_t>(n),
                      b0.pixels.begin() + static_cast<std::ptrdiff_t>(n)));
}

TEST_CASE("a missing, unreadable or corrupt image surfaces in next() naming the annotation file, entry and image") {
    mmalign::test::TempDir dir;
    std::filesystem::copy_file(fixture_dir + "/images/a.png", dir / "good.png");
    std::filesystem::create_directories(dir / "folder.png");
    dir.file("empty.png", "");
    REQUIRE(mkfifo((dir / "fifo.png").c_str(), 0600) == 0);  // would block an open: refused by its kind
    const std::string ann_path = dir.file("ann.json", R"([
        {"image": "good.png", "caption": "fine"},
        {"image": "missing.png", "caption": "gone"},
        {"image": "folder.png", "caption": "a directory"},
        {"image": "empty.png", "caption": "no bytes"},
        {"image": "fifo.png", "caption": "a pipe"}])");
    const auto ann = io::CaptionAnnotations::read(ann_path);
    ImageTextLoaderConfig c;
    c.image_root = dir.path.string();
    c.batch_size = 1;
    c.shuffle = false;
    c.workers = 2;
    c.transform.image_size = 8;
    ImageTextLoader loader(ann, c);
    CHECK(loader.next().captions == std::vector<std::string>{"fine"});
    const std::string prefix = "ImageTextLoader: '" + ann_path + "': ";
    CHECK(io_error_of([&] { (void)loader.next(); }) == prefix + "entry 1: image '" + (dir / "missing.png") + "': no such file");
    CHECK(io_error_of([&] { (void)loader.next(); }) ==
          prefix + "entry 2: image '" + (dir / "folder.png") + "': not a regular file (a directory, FIFO or device)");
    const std::string corrupt = io_error_of([&] { (void)loader.next(); });
    CHECK(corrupt.starts_with(prefix + "entry 3: image '" + (dir / "empty.png") + "': load_image: "));
    CHECK(corrupt.find("empty") != std::string::npos);
    CHECK(io_error_of([&] { (void)loader.next(); }) ==
          prefix + "entry 4: image '" + (dir / "fifo.png") + "': not a regular file (a directory, FIFO or device)");
    CHECK(loader.next().captions == std::vector<std::string>{"fine"});  // the next epoch goes on
}

TEST_CASE("settings that cannot make a batch are refused up front, and a busy loader shuts down cleanly") {
    const auto ann = io::CaptionAnnotations::read(fixture_dir + "/train.json");
    ImageTextLoaderConfig c = small_config(2);
    c.batch_size = 0;
    CHECK_THROWS_WITH_AS(ImageTextLoader(ann, c), "ImageTextLoader: batch_size must be in [1, 2^20], found 0",
                         ArgumentError);
    c.batch_size = 6;  // more than the 5 pairs, with drop_last
    CHECK_THROWS_WITH_AS(ImageTextLoader(ann, c),
                         ("ImageTextLoader: batch_size 6 exceeds the 5 pairs of '" + ann.path +
                          "' and drop_last is on: an epoch has no batch")
                             .c_str(),
                         ArgumentError);
    c.drop_last = false;
    CHECK(ImageTextLoader(ann, c).batches_per_epoch() == 1);
    c.batch_size = 2;
    c.workers = -1;
    CHECK_THROWS_AS(ImageTextLoader(ann, c), ArgumentError);
    c.workers = 3;
    c.prefetch = 8;
    { ImageTextLoader busy(ann, c); }  // destroyed while its workers fill the queue: joins, no hang
    ImageTextLoader one(ann, c);
    CHECK(one.next().step == 0);
}

#endif
