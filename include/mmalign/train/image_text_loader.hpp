// mmalign/train/image_text_loader.hpp — batches of (image, caption) training pairs from a
// caption annotation file (io/caption_annotations.hpp): images decoded and put through BLIP-2's
// train transform (io/train_transform.hpp), captions through LAVIS's blip_caption
// (io/caption_text.hpp), on worker threads ahead of the training step.
//
// Determinism: the batch of global step s is a function of (annotations, config, s) only, never of
// the worker count or timing, so a resumed run (seek) sees exactly the data of the uninterrupted
// one. With N pairs (every caption of every image is one sample, in annotation order) and
// B = batches_per_epoch(): epoch = s / B; the epoch's order is a Fisher–Yates shuffle of the N
// pairs seeded by (seed, epoch) — the sampler semantics of torch's DistributedSampler (one
// permutation per epoch from seed + epoch, every pair once per epoch) on this library's generator;
// batch s % B takes the next batch_size positions of that order (the last one shorter when
// drop_last is off), and the sample at position p draws its crop and flip from a seed mixed
// from (seed, epoch, p).
//
// Workers: `workers` std::threads each build whole batches, claiming steps in order, at most
// max(prefetch, workers) steps ahead of the one next() returns; next() waits only when its step is
// not built yet. workers = 0 builds each batch in next() on the calling thread. A worker's failure
// is rethrown by the next() of that step as an IoError naming the annotation file, the entry and
// the image: "ImageTextLoader: 'train.json': entry 3: image 'images/x.png': no such file".
// The destructor stops and joins the workers.
#pragma once

#include <algorithm>
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <numeric>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "mmalign/core/error.hpp"
#include "mmalign/core/shape.hpp"
#include "mmalign/io/caption_annotations.hpp"
#include "mmalign/io/caption_text.hpp"
#include "mmalign/io/image.hpp"
#include "mmalign/io/train_transform.hpp"

namespace mmalign {

struct ImageTextLoaderConfig {
    std::string image_root;         // annotation "image" paths are relative to it
    index_t batch_size = 8;
    std::uint64_t seed = 0;
    int workers = 1;                // decoding threads; 0 = build batches in next()
    int prefetch = 2;               // batches built ahead of the current one (at least `workers`)
    bool drop_last = true;          // drop the last, shorter batch of an epoch
    bool shuffle = true;            // a new order of the pairs each epoch
    io::TrainTransformConfig transform{};
    std::size_t max_words = 50;     // blip_caption's max_words
    std::string prompt;             // blip_caption's prompt
};

struct ImageTextBatch {
    std::vector<float> pixels;              // [N, 3, S, S]
    std::vector<std::string> captions;      // [N], processed by blip_caption
    std::vector<std::string> image_ids;     // [N]
    std::vector<std::size_t> images;        // [N], index into annotations.images
    index_t size = 0;                       // N
    long epoch = 0, step = 0;               // step: the global step of this batch
};

namespace detail {

/// splitmix64's finaliser: a bijective mix of 64 bits (Steele, Lea, Flood, "Fast splittable
/// pseudorandom number generators", OOPSLA 2014), used to derive independent seeds.
constexpr std::uint64_t mix64(std::uint64_t z) {
    z += 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/// A seed for (seed, stream, epoch, position); stream separates the shuffle from the transforms.
constexpr std::uint64_t derive_seed(std::uint64_t seed, std::uint64_t stream, std::uint64_t epoch,
                                    std::uint64_t position) {
    return mix64(mix64(mix64(mix64(seed) ^ stream) ^ epoch) ^ position);
}

}  // namespace detail

class ImageTextLoader {
public:
    ImageTextLoader(const io::CaptionAnnotations& ann, ImageTextLoaderConfig c) : ann_(ann), c_(std::move(c)) {
        auto fail = [&](const std::string& what) { throw ArgumentError("ImageTextLoader: " + what); };
        if (const std::string why = c_.transform.problem(); !why.empty()) fail("transform: " + why);
        if (c_.batch_size < 1 || c_.batch_size > (index_t(1) << 20))
            fail("batch_size must be in [1, 2^20], found " + std::to_string(c_.batch_size));
        if (c_.workers < 0 || c_.workers > 256) fail("workers must be in [0, 256], found " + std::to_string(c_.workers));
        if (c_.prefetch < 1 || c_.prefetch > 1024)
            fail("prefetch must be in [1, 1024], found " + std::to_string(c_.prefetch));
        const index_t S = c_.transform.image_size;
        sample_floats_ = 3 * S * S;
        // A batch must fit in memory: refuse more than 2^31 floats (8 GiB) per batch up front.
        if (c_.batch_size > (index_t(1) << 31) / sample_floats_)
            fail("a batch of " + std::to_string(c_.batch_size) + " images of " + std::to_string(S) + "x" +
                 std::to_string(S) + " needs more than 2^31 floats");
        for (std::size_t i = 0; i < ann_.images.size(); ++i) {
            const io::CaptionRecord& r = ann_.images[i];
            if (r.caption_entry.size() != r.captions.size())
                fail("annotations '" + ann_.path + "': image " + std::to_string(i) + " has " +
                     std::to_string(r.captions.size()) + " captions but " + std::to_string(r.caption_entry.size()) +
                     " caption entries");
            for (std::size_t k = 0; k < r.captions.size(); ++k)
                pairs_.push_back({static_cast<std::uint32_t>(i), static_cast<std::uint32_t>(k)});
        }
        if (pairs_.empty()) fail("annotations '" + ann_.path + "' hold no (image, caption) pairs");
        const auto n = static_cast<long>(pairs_.size()), b = static_cast<long>(c_.batch_size);
        batches_ = c_.drop_last ? n / b : (n + b - 1) / b;
        if (batches_ == 0)
            fail("batch_size " + std::to_string(b) + " exceeds the " + std::to_string(n) + " pairs of '" + ann_.path +
                 "' and drop_last is on: an epoch has no batch");
        window_ = std::max(c_.prefetch, c_.workers);
        for (int w = 0; w < c_.workers; ++w) threads_.emplace_back([this] { work(); });
    }

    ~ImageTextLoader() {
        {
            std::lock_guard<std::mutex> lk(m_);
            stop_ = true;
        }
        cv_work_.notify_all();
        for (std::thread& t : threads_) t.join();
    }
    ImageTextLoader(const ImageTextLoader&) = delete;
    ImageTextLoader& operator=(const ImageTextLoader&) = delete;

    long batches_per_epoch() const { return batches_; }
    std::size_t pairs() const { return pairs_.size(); }
    const io::CaptionAnnotations& annotations() const { return ann_; }
    const ImageTextLoaderConfig& config() const { return c_; }

    /// The next batch returned is global step `step` (to resume).
    void seek(long step) {
        if (step < 0) throw ArgumentError("ImageTextLoader::seek: step must be >= 0, found " + std::to_string(step));
        {
            std::lock_guard<std::mutex> lk(m_);
            ++generation_;  // batches being built for the old position are dropped when they finish
            ready_.clear();
            next_step_ = claim_ = step;
        }
        cv_work_.notify_all();
    }

    /// The batch of the current step; the workers build the following ones meanwhile.
    ImageTextBatch next() {
        if (threads_.empty()) return build(next_step_++);
        std::unique_lock<std::mutex> lk(m_);
        cv_ready_.wait(lk, [&] { return ready_.count(next_step_) != 0; });
        auto node = ready_.extract(next_step_);
        ++next_step_;
        lk.unlock();
        cv_work_.notify_all();
        if (node.mapped().error) std::rethrow_exception(node.mapped().error);
        return std::move(*node.mapped().batch);
    }

    /// The batch of global step `step`, built on the calling thread (what a worker runs).
    ImageTextBatch build(long step) const {
        if (step < 0) throw ArgumentError("ImageTextLoader: step must be >= 0, found " + std::to_string(step));
        const long epoch = step / batches_, b = step % batches_;
        const auto n = pairs_.size();
        const std::size_t begin = static_cast<std::size_t>(b) * static_cast<std::size_t>(c_.batch_size);
        const std::size_t end = std::min(n, begin + static_cast<std::size_t>(c_.batch_size));
        const std::shared_ptr<const std::vector<std::uint32_t>> order = order_of(epoch);

        ImageTextBatch out;
        out.size = static_cast<index_t>(end - begin);
        out.epoch = epoch;
        out.step = step;
        out.pixels.resize(static_cast<std::size_t>(out.size * sample_floats_));
        for (std::size_t p = begin; p < end; ++p) {
            const Pair pair = pairs_[(*order)[p]];
            const io::CaptionRecord& r = ann_.images[pair.image];
            const std::size_t entry = r.caption_entry[pair.caption];
            const std::string image_path = c_.image_root.empty()
                                               ? r.image
                                               : (std::filesystem::path(c_.image_root) / r.image).string();
            auto fail = [&](const std::string& what) {
                throw IoError("ImageTextLoader: '" + ann_.path + "': entry " + std::to_string(entry) + ": image '" +
                              image_path + "': " + what);
            };
            std::error_code ec;
            const auto st = std::filesystem::status(image_path, ec);
            if (ec || !std::filesystem::exists(st)) fail("no such file");
            if (!std::filesystem::is_regular_file(st)) fail("not a regular file (a directory, FIFO or device)");
            float* dst = out.pixels.data() + (p - begin) * static_cast<std::size_t>(sample_floats_);  // [3, S, S]
            try {
                // LAVIS: Image.open(path).convert("RGB"), then the train transform.
                const io::Image rgb = io::to_rgb(io::load_image(image_path));
                io::train_transform(rgb, c_.transform,
                                    detail::derive_seed(c_.seed, stream_transform, static_cast<std::uint64_t>(epoch), p),
                                    dst);
                out.captions.push_back(io::blip_caption(r.captions[pair.caption], c_.max_words, c_.prompt));
            } catch (const std::exception& e) {
                fail(e.what());
            }
            out.image_ids.push_back(r.image_id);
            out.images.push_back(pair.image);
        }
        return out;
    }

private:
    struct Pair {
        std::uint32_t image, caption;
    };
    struct Slot {
        std::optional<ImageTextBatch> batch;
        std::exception_ptr error;
    };
    static constexpr std::uint64_t stream_shuffle = 1, stream_transform = 2;

    /// The order of the pairs in `epoch` (indices into pairs_), cached for the latest epochs.
    std::shared_ptr<const std::vector<std::uint32_t>> order_of(long epoch) const {
        std::lock_guard<std::mutex> lk(order_m_);
        for (const auto& [e, order] : orders_)
            if (e == epoch) return order;
        auto order = std::make_shared<std::vector<std::uint32_t>>(pairs_.size());
        std::iota(order->begin(), order->end(), 0u);
        if (c_.shuffle) {
            io::TransformRng rng(detail::derive_seed(c_.seed, stream_shuffle, static_cast<std::uint64_t>(epoch), 0));
            for (std::size_t i = order->size(); i > 1; --i) std::swap((*order)[i - 1], (*order)[rng.below(i)]);
        }
        if (orders_.size() >= 2) orders_.erase(orders_.begin());
        orders_.emplace_back(epoch, order);
        return order;
    }

    void work() {
        std::unique_lock<std::mutex> lk(m_);
        for (;;) {
            cv_work_.wait(lk, [&] { return stop_ || claim_ < next_step_ + window_; });
            if (stop_) return;
            const long step = claim_++;
            const std::uint64_t generation = generation_;
            lk.unlock();
            Slot slot;
            try {
                slot.batch = build(step);
            } catch (...) {
                slot.error = std::current_exception();
            }
            lk.lock();
            if (generation == generation_) {
                ready_.emplace(step, std::move(slot));
                cv_ready_.notify_all();
            }
        }
    }

    io::CaptionAnnotations ann_;
    ImageTextLoaderConfig c_;
    std::vector<Pair> pairs_;  // every (image, caption), in annotation order
    index_t sample_floats_ = 0;
    long batches_ = 0;
    long window_ = 1;

    mutable std::mutex order_m_;
    mutable std::vector<std::pair<long, std::shared_ptr<const std::vector<std::uint32_t>>>> orders_;

    std::mutex m_;
    std::condition_variable cv_work_, cv_ready_;
    long next_step_ = 0, claim_ = 0;
    std::uint64_t generation_ = 0;
    std::map<long, Slot> ready_;
    bool stop_ = false;
    std::vector<std::thread> threads_;  // last: started after everything above is ready
};

}  // namespace mmalign
