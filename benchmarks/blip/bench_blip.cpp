// bench_blip — full-size BLIP base inference on mmalign's CPU backend, for comparison with PyTorch
// eager (benchmarks/torch/blip.py) on the same weights, the same inputs and the same thread count.
// benchmarks/run_blip.sh runs them interleaved and prints the table.
//
//   bench_blip --dir DIR --task vision|caption|itm [--batch B] [--beams N] [--new-tokens N]
//              [--iters N] [--threads T] [--out PATH]
//
// DIR is what `blip.py make` writes: caption/ (a BlipForConditionalGeneration folder), itm/ (a
// BlipForImageTextRetrieval folder) and inputs.safetensors (pixel_values [8, 3, 384, 384], itm_ids and
// itm_mask [16, T] as F32). The tasks are blip.py's:
//   vision   caption model's image_embeds of the first B images (the vision model's last_hidden_state)
//   caption  caption model's generate() of the first B images, no prompt, num_beams N, min_new_tokens =
//            max_new_tokens = --new-tokens (so every run decodes exactly that many tokens)
//   itm      itm model: image_embeds of image 0, then itm_logits of all 16 texts against it
// One warm-up call, then --iters timed calls; prints one JSON line: per_s (images/s, texts/s for itm)
// from the median call, median_s, times_s, peak_rss_mb (getrusage: loading included), and for
// caption the generated ids and new_tokens_per_s. --out writes vision's "image_embeds" or itm's
// "itm_logits" as safetensors.
#include <mmalign/backend/cpu/backend.hpp>
#include <mmalign/io/safetensors.hpp>
#include <mmalign/models/blip_captioning.hpp>
#include <mmalign/models/blip_retrieval.hpp>

#include <sys/resource.h>

#include <algorithm>
#include <cstdio>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "../common/timed_calls.hpp"

using namespace mmalign;
using namespace mmalign::bench;
using Be = CpuBackend<float>;

namespace {

/// The first `n` images of pixel_values [Nmax, C, S, S].
Tensor<float> first_images(io::SafetensorsFile& inputs, index_t n) {
    Tensor<float> all = inputs.read<float>("pixel_values");  // [Nmax, C, S, S]
    if (all.dim(0) < n) throw ArgumentError("inputs.safetensors holds fewer images than --batch");
    Tensor<float> px(Shape{n, all.dim(1), all.dim(2), all.dim(3)});  // [n, C, S, S]
    std::copy(all.data(), all.data() + px.numel(), px.data());
    return px;
}

int run(int argc, char** argv) {
    const std::string dir = arg(argc, argv, "--dir", ""), task = arg(argc, argv, "--task", "vision"),
                      out_path = arg(argc, argv, "--out", "");
    const index_t B = std::stol(arg(argc, argv, "--batch", "1"));
    const index_t beams = std::stol(arg(argc, argv, "--beams", "1"));
    const index_t new_tokens = std::stol(arg(argc, argv, "--new-tokens", "20"));
    const long iters = std::stol(arg(argc, argv, "--iters", "3"));
    const int threads = std::stoi(arg(argc, argv, "--threads", "2"));
    if (dir.empty()) throw ArgumentError("--dir DIR is required");
    if (task != "vision" && task != "caption" && task != "itm") throw ArgumentError("--task must be vision, caption or itm");
    if (B < 1 || beams < 1 || new_tokens < 1 || iters < 1)
        throw ArgumentError("--batch, --beams, --new-tokens and --iters must be positive");

    Be be({.threads = threads});
    auto inputs = io::SafetensorsFile::open(dir + "/inputs.safetensors");
    nlohmann::json out = {{"impl", "mmalign"}, {"task", task}, {"threads", threads}, {"iters", iters}};
    std::vector<double> secs;
    index_t items = B;
    if (task == "itm") {
        const auto model = BlipForImageTextRetrieval<Be>::from_pretrained(be, dir + "/itm");
        const Tensor<float> px = first_images(inputs, 1);              // [1, C, S, S]
        const Tensor<float> idf = inputs.read<float>("itm_ids"), mf = inputs.read<float>("itm_mask");  // [Bt, T]
        const std::vector<std::int32_t> ids(idf.data(), idf.data() + idf.numel()), mask(mf.data(), mf.data() + mf.numel());
        items = idf.dim(0);
        Tensor<float> logits;  // [Bt, 2]
        secs = time_calls(iters, [&] {
            const auto img = model.image_embeds(be, px.cview());  // [1, N+1, Dv]
            logits = model.itm_logits(be, img.cview(), {ids, mask, items});
        });
        if (!out_path.empty()) io::save_safetensors(out_path, {{"itm_logits", logits.cview()}});
    } else {
        const auto model = BlipForConditionalGeneration<Be>::from_pretrained(be, dir + "/caption");
        const Tensor<float> px = first_images(inputs, B);  // [B, C, S, S]
        if (task == "vision") {
            Tensor<float> emb;  // [B, N+1, Dv]
            secs = time_calls(iters, [&] { emb = model.image_embeds(be, px.cview()); });
            if (!out_path.empty()) io::save_safetensors(out_path, {{"image_embeds", emb.cview()}});
        } else {
            generation::GenerationConfig options;
            options.num_beams = beams;
            options.min_new_tokens = new_tokens;
            options.max_new_tokens = new_tokens;
            generation::Generated g;
            secs = time_calls(iters, [&] { g = model.generate(be, px.cview(), {}, options); });
            std::vector<std::vector<std::int32_t>> ids;
            for (index_t r = 0; r < g.rows; ++r) ids.emplace_back(g.row(r).begin(), g.row(r).end());
            out["ids"] = ids;
            out["beams"] = beams;
            out["new_tokens_per_s"] = double(B * new_tokens) / median_of(secs);
        }
    }
    const double median = median_of(secs);
    rusage ru{};
    getrusage(RUSAGE_SELF, &ru);
    out["batch"] = items;
    out["per_s"] = double(items) / median;
    out["median_s"] = median;
    out["times_s"] = secs;
    out["peak_rss_mb"] = double(ru.ru_maxrss) / 1024.0;
    std::printf("%s\n", out.dump().c_str());
    return 0;
}

}  // namespace

int main(int argc, char** argv) try {
    if (argc < 2 || std::string(argv[1]) == "--help") {
        std::fprintf(stderr, "usage: bench_blip --dir DIR --task vision|caption|itm [--batch B] [--beams N] "
                             "[--new-tokens N] [--iters N] [--threads T] [--out PATH]\n");
        return 2;
    }
    return run(argc, argv);
} catch (const std::exception& e) {
    std::fprintf(stderr, "bench_blip: %s\n", e.what());
    return 1;
}
