// A bigram language model as a generation::Decoder: the next token's logits depend only on the
// last token, so each row's cache is just that token. It prefers `last + 1`.
#include <cstdint>
#include <iostream>
#include <span>
#include <vector>

#include <mmalign/generation/generate.hpp>

namespace gen = mmalign::generation;
using mmalign::index_t;

struct BigramDecoder {
    index_t vocab = 6;               // 0 pad, 1 bos, 2-4 words, 5 eos
    std::vector<std::int32_t> last;  // [rows]: the cache, each row's last token

    index_t vocab_size() const { return vocab; }
    void start(index_t rows, index_t /*expand*/, index_t /*max_positions*/) { last.assign(rows, 0); }
    // ids [rows·n]: the next n tokens of every row (the prompt, then one token per row).
    void step(std::span<const std::int32_t> ids, std::span<const std::int32_t> /*keep*/, std::span<float> logits) {
        const auto rows = static_cast<index_t>(last.size());
        const index_t n = static_cast<index_t>(ids.size()) / rows;
        for (index_t r = 0; r < rows; ++r) {
            last[r] = ids[r * n + n - 1];
            for (index_t v = 0; v < vocab; ++v) logits[r * vocab + v] = v == last[r] + 1 ? 2.0f : 0.0f;
        }
    }
    // Beam search: row r continues old row rows[r].
    void reorder(std::span<const std::int32_t> rows) {
        std::vector<std::int32_t> moved;
        for (std::int32_t from : rows) moved.push_back(last[from]);
        last = moved;
    }
};
static_assert(gen::Decoder<BigramDecoder>);

void print(const char* name, const gen::Generated& g) {
    std::cout << name << ":";
    for (std::int32_t id : g.row(0)) std::cout << " " << id;
    std::cout << "\n";
}

int main() {
    BigramDecoder decoder;
    const std::vector<std::int32_t> prompt = {1};  // [batch 1, length 1]: bos
    gen::GenerationConfig config;                  // transformers' defaults: greedy
    config.eos_token_id = {5};
    config.pad_token_id = 0;
    config.max_new_tokens = 8;
    print("greedy", gen::generate(decoder, prompt, {}, 1, config));
    config.num_beams = 3;  // beam search; the best hypothesis comes first
    print("beam", gen::generate(decoder, prompt, {}, 1, config));
}
