// BLIP-2 on a folder of images: a caption for each, an answer to a question about each (the same
// OPT model, prompted "Question: {} Answer:"), and the images ranked against a text query by the
// Q-Former's image-text matching head (Li et al. 2023, §3.2), with the contrastive cosine beside it.
//
//   blip2_caption --model DIR [--prompt TEXT] [--question TEXT] [--itm DIR --query TEXT] IMAGE|FOLDER...
// DIR is a Hugging Face Blip2ForConditionalGeneration folder (e.g. Salesforce/blip2-opt-2.7b), the
// --itm DIR a Blip2ForImageTextRetrieval one (Salesforce/blip2-itm-vit-g). Generation uses
// transformers' defaults (greedy, up to 20 new tokens); mmalign-blip2 exposes every option.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <numeric>
#include <string>
#include <vector>

#include "mmalign/backend/cpu/backend.hpp"
#include "mmalign/io/blip2_processor.hpp"
#include "mmalign/io/blip_image_processor.hpp"
#include "mmalign/io/image.hpp"
#include "mmalign/io/wordpiece_tokenizer.hpp"
#include "mmalign/models/blip2_generation.hpp"
#include "mmalign/models/blip2_retrieval.hpp"

#include "../common/image_files.hpp"
#include "../common/token_rows.hpp"

using namespace mmalign;
using Be = CpuBackend<float>;
namespace fs = std::filesystem;

namespace {

struct Args {
    std::string model, prompt, question, itm, query;
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
        if (k == "--model") a.model = value();
        else if (k == "--prompt") a.prompt = value();
        else if (k == "--question") a.question = value();
        else if (k == "--itm") a.itm = value();
        else if (k == "--query") a.query = value();
        else if (k.starts_with("--")) throw ArgumentError("unknown option " + k);
        else cli::add_images(k, a.images);  // a file, or a folder's image files in name order
    }
    if (a.images.empty()) throw ArgumentError("no images (give files or folders)");
    if (a.model.empty() && a.itm.empty()) throw ArgumentError("nothing to do: give --model and/or --itm");
    if (a.model.empty() && (!a.prompt.empty() || !a.question.empty())) throw ArgumentError("--prompt and --question need --model");
    if (a.itm.empty() != a.query.empty()) throw ArgumentError("--itm and --query go together");
    return a;
}

}  // namespace

int main(int argc, char** argv) try {
    const Args a = parse(argc, argv);
    Be be;
    std::vector<io::Image> images;
    for (const auto& p : a.images) images.push_back(io::load_image(p));
    const auto n = static_cast<index_t>(images.size());
    auto name = [&](index_t i) { return fs::path(a.images[static_cast<std::size_t>(i)]).filename().string(); };

    if (!a.model.empty()) {  // image → ViT → Q-Former's queries → soft prompt → OPT
        const auto model = Blip2ForConditionalGeneration<Be>::from_pretrained(be, a.model);
        const auto processor = io::Blip2Processor::from_folder(a.model);  // GPT-2 BPE + image processing
        const Tensor<float> pixels = io::preprocess(images, processor.image_processor());  // [N, 3, S, S]
        // The answer (or caption) is what follows the prompt: decode the new tokens only.
        auto run = [&](const std::string& prompt) {
            std::vector<std::string> out;
            io::Blip2Text t;  // [<image> × Q, </s>, prompt] per image
            if (!prompt.empty()) t = processor.encode(std::vector<std::string>(images.size(), prompt));
            const auto g = model.generate(be, pixels.view(), {t.ids, t.attention_mask, t.batch});
            for (index_t r = 0; r < g.rows; ++r) out.push_back(processor.tokenizer().decode(g.new_tokens(r), true));
            return out;
        };
        const auto captions = run(a.prompt);
        for (index_t i = 0; i < n; ++i)
            std::printf("caption  %s: %s%s\n", name(i).c_str(), a.prompt.empty() ? "" : (a.prompt + " ").c_str(),
                        captions[static_cast<std::size_t>(i)].c_str());
        if (!a.question.empty()) {
            const auto answers = run(io::vqa_prompt(a.question));  // "Question: {} Answer:"
            for (index_t i = 0; i < n; ++i)
                std::printf("answer   %s: %s -> %s\n", name(i).c_str(), a.question.c_str(),
                            answers[static_cast<std::size_t>(i)].c_str());
        }
    }

    if (!a.itm.empty()) {  // every image against the query: ITM probability and ITC cosine
        const auto model = Blip2ForImageTextRetrieval<Be>::from_pretrained(be, a.itm);
        const auto tokenizer = io::WordPieceTokenizer::from_hf_folder(a.itm);  // the Q-Former's BERT vocabulary
        const Tensor<float> pixels = io::preprocess(
            images, io::load_blip_image_processor_config(io::blip_image_processor_config_path(a.itm)));  // [N, 3, S, S]
        const auto t = tokenizer(std::vector<std::string>(images.size(), a.query));  // [CLS] query [SEP], N rows
        const auto texts = cli::token_rows<Blip2Tokens>(t);
        const auto embeds = model.image_embeds(be, pixels.view());     // [N, P+1, Dv]
        const auto logits = model.itm_logits(be, embeds.view(), texts);  // [N, 2]: image i with row i
        const Blip2Tokens one{texts.ids.first(static_cast<std::size_t>(t.input_ids.dim(1))),
                              texts.attention_mask.first(static_cast<std::size_t>(t.input_ids.dim(1))), 1};
        const auto cosine = model.itc_scores(be, embeds.view(), one);  // [N, 1]
        std::vector<double> match(static_cast<std::size_t>(n));       // softmax(logits)[:, 1]
        for (index_t i = 0; i < n; ++i)
            match[static_cast<std::size_t>(i)] = 1.0 / (1.0 + std::exp(double(logits(i, 0)) - double(logits(i, 1))));
        std::vector<index_t> order(static_cast<std::size_t>(n));
        std::iota(order.begin(), order.end(), 0);
        std::stable_sort(order.begin(), order.end(), [&](index_t x, index_t y) {
            return match[static_cast<std::size_t>(x)] > match[static_cast<std::size_t>(y)];
        });
        std::printf("search   \"%s\": %lld images ranked by BLIP-2 ITM\n", a.query.c_str(), static_cast<long long>(n));
        for (index_t r = 0; r < n; ++r) {
            const index_t i = order[static_cast<std::size_t>(r)];
            std::printf("  %lld. %s  itm %.6f  itc %+.6f\n", static_cast<long long>(r + 1), name(i).c_str(),
                        match[static_cast<std::size_t>(i)], double(cosine(i, 0)));
        }
    }
    return 0;
} catch (const std::exception& e) {
    std::fprintf(stderr, "blip2_caption: %s\n", e.what());
    return 1;
}
