// Sentence embeddings with a BERT checkpoint from Hugging Face (all-MiniLM-L6-v2, bert-base-uncased, …):
// WordPiece tokenization (io/wordpiece_tokenizer.hpp), the BERT tower (models/bert_model.hpp), mean
// pooling over the attention mask and L2 normalisation — what sentence-transformers computes for
// all-MiniLM-L6-v2 (its modules.json: Transformer → Pooling(mean) → Normalize).
//
//   sentence_embeddings --model DIR [--dump FILE] [SENTENCE]...
// prints the cosine similarity of every pair of sentences; --dump writes input_ids, attention_mask
// and last_hidden_state to a safetensors file (tools/check_bert_real_weights.py compares it with
// transformers' BertModel).
#include <cmath>
#include <cstdio>
#include <exception>
#include <string>
#include <vector>

#include "mmalign/backend/cpu/backend.hpp"
#include "mmalign/io/safetensors.hpp"
#include "mmalign/io/wordpiece_tokenizer.hpp"
#include "mmalign/models/bert_model.hpp"

using namespace mmalign;

int main(int argc, char** argv) try {
    std::string model_dir, dump;
    std::vector<std::string> sentences;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        if ((a == "--model" || a == "--dump") && i + 1 < argc) (a == "--model" ? model_dir : dump) = argv[++i];
        else if (a == "--help") {
            std::printf("usage: sentence_embeddings --model DIR [--dump FILE] [SENTENCE]...\n"
                        "DIR: a Hugging Face BERT folder (config.json, model.safetensors, tokenizer.json or vocab.txt)\n");
            return 0;
        } else sentences.push_back(a);
    }
    if (model_dir.empty()) throw ArgumentError("--model DIR is required (see --help)");
    if (sentences.empty())
        sentences = {"A man is eating food.", "A man is eating a piece of bread.", "The girl is carrying a baby.",
                     "A monkey is playing drums."};
    CpuBackend<float> be;
    const auto tokenizer = io::WordPieceTokenizer::from_hf_folder(model_dir);
    const auto bert = load_bert_model(be, model_dir);
    const auto batch = tokenizer(sentences);
    const index_t N = batch.input_ids.dim(0), T = batch.input_ids.dim(1), D = bert.config.hidden;
    Tensor<float> hidden(Shape{N, T, D});  // [N, T, D]
    bert.forward(be, {.ids = {batch.input_ids.data(), static_cast<std::size_t>(N * T)},
                      .attention_mask = {batch.attention_mask.data(), static_cast<std::size_t>(N * T)},
                      .batch = N,
                      .token_type_ids = {batch.token_type_ids.data(), static_cast<std::size_t>(N * T)}},
                 hidden.view(), {});
    // Mean over the tokens the mask keeps, then unit length.
    Tensor<float> emb(Shape{N, D});  // [N, D]
    emb.zero();
    for (index_t n = 0; n < N; ++n) {
        double count = 0, norm = 0;
        for (index_t t = 0; t < T; ++t)
            if (batch.attention_mask(n, t)) {
                count += 1;
                for (index_t d = 0; d < D; ++d) emb(n, d) += hidden(n, t, d);
            }
        for (index_t d = 0; d < D; ++d) norm += double(emb(n, d) /= float(count)) * emb(n, d);
        for (index_t d = 0; d < D; ++d) emb(n, d) /= float(std::max(std::sqrt(norm), 1e-12));
    }
    for (index_t i = 0; i < N; ++i)
        for (index_t j = i + 1; j < N; ++j) {
            double cos = 0;
            for (index_t d = 0; d < D; ++d) cos += double(emb(i, d)) * emb(j, d);
            std::printf("%.4f  \"%s\" ~ \"%s\"\n", cos, sentences[i].c_str(), sentences[j].c_str());
        }
    if (!dump.empty()) {
        Tensor<float> ids(Shape{N, T}), mask(Shape{N, T});  // [N, T] as floats (exact below 2^24)
        for (index_t i = 0; i < N * T; ++i) ids.data()[i] = float(batch.input_ids.data()[i]), mask.data()[i] = float(batch.attention_mask.data()[i]);
        io::save_safetensors(dump, {{"input_ids", ids.view()}, {"attention_mask", mask.view()},
                                    {"last_hidden_state", hidden.view()}, {"sentence_embedding", emb.view()}});
    }
    return 0;
} catch (const std::exception& e) {
    std::fprintf(stderr, "sentence_embeddings: %s\n", e.what());
    return 1;
}
