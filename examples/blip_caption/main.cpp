// BLIP on a folder of images: a caption for each, an answer to a question about each, and
// text-to-image search where CLIP ranks every image and BLIP's image-text matching head re-ranks
// CLIP's top k (the retrieve-then-rerank of BLIP's k_test, Li et al. 2022, §5.1).
//
//   blip_caption --caption DIR [--prompt TEXT] [--vqa DIR --question TEXT]
//                [--clip DIR --itm DIR --query TEXT [--top-k K]] IMAGE|FOLDER...
// DIRs are Hugging Face folders as saved by transformers (BlipForConditionalGeneration,
// BlipForQuestionAnswering, CLIPModel, BlipForImageTextRetrieval). Generation uses transformers'
// defaults (greedy, up to 20 new tokens); mmalign-blip exposes every option.
#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <numeric>
#include <string>
#include <vector>

#include "mmalign/backend/cpu/backend.hpp"
#include "mmalign/io/blip_image_processor.hpp"
#include "mmalign/io/clip_image_processor.hpp"
#include "mmalign/io/clip_tokenizer.hpp"
#include "mmalign/io/image.hpp"
#include "mmalign/io/wordpiece_tokenizer.hpp"
#include "mmalign/models/blip_captioning.hpp"
#include "mmalign/models/blip_retrieval.hpp"
#include "mmalign/models/blip_vqa.hpp"
#include "mmalign/models/clip.hpp"

#include "../common/cli_options.hpp"
#include "../common/image_files.hpp"

using namespace mmalign;
using Be = CpuBackend<float>;
namespace fs = std::filesystem;

namespace {

struct Args {
    std::string caption, prompt, vqa, question, clip, itm, query;
    index_t top_k = 3;
    std::vector<std::string> images;
};

Args parse(int argc, char** argv) {
    Args a;
    for (int i = 1; i < argc; ++i) {
        const std::string k = argv[i];
        auto value = [&]() -> std::string {
            if (i + 1 >= argc) throw ArgumentError(k + " needs a value");
            return argv[++i];
        };
        if (k == "--caption") a.caption = value();
        else if (k == "--prompt") a.prompt = value();
        else if (k == "--vqa") a.vqa = value();
        else if (k == "--question") a.question = value();
        else if (k == "--clip") a.clip = value();
        else if (k == "--itm") a.itm = value();
        else if (k == "--query") a.query = value();
        else if (k == "--top-k") a.top_k = index_t(cli::integer(k, value(), 1, 1 << 20));  // images ranked by ITM
        else if (k.starts_with("--")) throw ArgumentError("unknown option " + k);
        else cli::add_images(k, a.images);  // a file, or a folder's image files in name order
    }
    if (a.images.empty()) throw ArgumentError("no images (give files or folders)");
    if (a.caption.empty() && a.vqa.empty() && a.itm.empty()) throw ArgumentError("nothing to do: give --caption, --vqa or --itm");
    return a;
}

/// The decoded texts of a generation, one per image (the prompt included, as HF's decode shows it).
std::vector<std::string> decode(const io::WordPieceTokenizer& tok, const generation::Generated& g) {
    std::vector<std::string> out;
    for (index_t r = 0; r < g.rows; ++r) out.push_back(tok.decode(g.row(r), true));
    return out;
}

}  // namespace

int main(int argc, char** argv) try {
    const Args a = parse(argc, argv);
    Be be;
    std::vector<io::Image> images;
    for (const auto& p : a.images) images.push_back(io::load_image(p));
    auto name = [&](std::size_t i) { return fs::path(a.images[i]).filename().string(); };

    if (!a.caption.empty()) {  // captions: image → BLIP ViT → causal BERT decoder, [DEC] first
        const auto model = BlipForConditionalGeneration<Be>::from_pretrained(be, a.caption);
        const auto tok = io::WordPieceTokenizer::from_hf_folder(a.caption);
        const auto pixels = io::preprocess(images, io::load_blip_image_processor_config(io::blip_image_processor_config_path(a.caption)));
        typename BlipForConditionalGeneration<Be>::Tokens prompt;
        io::WordPieceTokenizer::Batch enc;
        if (!a.prompt.empty()) {
            enc = tok(std::vector<std::string>(images.size(), a.prompt));
            prompt = {{enc.input_ids.data(), static_cast<std::size_t>(enc.input_ids.numel())},
                      {enc.attention_mask.data(), static_cast<std::size_t>(enc.attention_mask.numel())},
                      enc.input_ids.dim(0)};
        }
        const auto texts = decode(tok, model.generate(be, pixels.view(), prompt));
        for (std::size_t i = 0; i < texts.size(); ++i) std::printf("caption  %s: %s\n", name(i).c_str(), texts[i].c_str());
    }

    if (!a.vqa.empty()) {  // answers: the question encoded with the image, the answer decoded from it
        if (a.question.empty()) throw ArgumentError("--vqa needs --question");
        const auto model = BlipForQuestionAnswering<Be>::from_pretrained(be, a.vqa);
        const auto tok = io::WordPieceTokenizer::from_hf_folder(a.vqa);
        const auto pixels = io::preprocess(images, io::load_blip_image_processor_config(io::blip_image_processor_config_path(a.vqa)));
        const auto q = tok(std::vector<std::string>(images.size(), a.question));
        const auto texts = decode(tok, model.generate(be, pixels.view(),
                                                      {{q.input_ids.data(), static_cast<std::size_t>(q.input_ids.numel())},
                                                       {q.attention_mask.data(), static_cast<std::size_t>(q.attention_mask.numel())},
                                                       q.input_ids.dim(0)}));
        for (std::size_t i = 0; i < texts.size(); ++i)
            std::printf("answer   %s: %s -> %s\n", name(i).c_str(), a.question.c_str(), texts[i].c_str());
    }

    if (!a.itm.empty()) {  // search: CLIP's cosine ranks all images, BLIP's ITM re-ranks the top k
        if (a.clip.empty() || a.query.empty()) throw ArgumentError("--itm needs --clip and --query");
        const index_t N = static_cast<index_t>(images.size()), k = std::min(a.top_k, N);
        const auto clip = Clip<Be>::from_pretrained(be, a.clip);
        const auto clip_tok = io::ClipTokenizer::from_hf_folder(a.clip);
        const auto clip_px = io::preprocess(images, io::load_clip_image_processor_config(a.clip + "/preprocessor_config.json"));
        const auto ct = clip_tok({a.query});
        const auto out = clip.forward(be, clip_px.view(), {ct.input_ids.data(), static_cast<std::size_t>(ct.input_ids.numel())},
                                      {ct.attention_mask.data(), static_cast<std::size_t>(ct.attention_mask.numel())}, 1);
        std::vector<index_t> order(static_cast<std::size_t>(N));
        std::iota(order.begin(), order.end(), 0);
        std::stable_sort(order.begin(), order.end(),
                         [&](index_t x, index_t y) { return out.logits_per_text(0, x) > out.logits_per_text(0, y); });
        order.resize(static_cast<std::size_t>(k));

        const auto itm = BlipForImageTextRetrieval<Be>::from_pretrained(be, a.itm);
        const auto tok = io::WordPieceTokenizer::from_hf_folder(a.itm);
        std::vector<io::Image> top;
        for (index_t i : order) top.push_back(images[static_cast<std::size_t>(i)]);
        const auto px = io::preprocess(top, io::load_blip_image_processor_config(io::blip_image_processor_config_path(a.itm)));
        const auto t = tok(std::vector<std::string>(static_cast<std::size_t>(k), a.query));
        const auto logits = itm.itm_logits(be, itm.image_embeds(be, px.view()).view(),
                                           {{t.input_ids.data(), static_cast<std::size_t>(t.input_ids.numel())},
                                            {t.attention_mask.data(), static_cast<std::size_t>(t.attention_mask.numel())}, k});
        std::vector<double> match(static_cast<std::size_t>(k));  // softmax(logits)[:, 1]
        for (index_t i = 0; i < k; ++i) match[static_cast<std::size_t>(i)] = 1.0 / (1.0 + std::exp(logits(i, 0) - logits(i, 1)));
        std::vector<index_t> rerank(static_cast<std::size_t>(k));
        std::iota(rerank.begin(), rerank.end(), 0);
        std::stable_sort(rerank.begin(), rerank.end(),
                         [&](index_t x, index_t y) { return match[static_cast<std::size_t>(x)] > match[static_cast<std::size_t>(y)]; });
        std::printf("search   \"%s\": CLIP top %lld, re-ranked by BLIP ITM\n", a.query.c_str(), static_cast<long long>(k));
        for (index_t r = 0; r < k; ++r) {
            const index_t j = rerank[static_cast<std::size_t>(r)], i = order[static_cast<std::size_t>(j)];
            std::printf("  %lld. %s  itm %.4f  (CLIP rank %lld, logit %.4f)\n", static_cast<long long>(r + 1),
                        name(static_cast<std::size_t>(i)).c_str(), match[static_cast<std::size_t>(j)],
                        static_cast<long long>(j + 1), double(out.logits_per_text(0, i)));
        }
    }
    return 0;
} catch (const std::exception& e) {
    std::fprintf(stderr, "blip_caption: %s\n", e.what());
    return 1;
}
