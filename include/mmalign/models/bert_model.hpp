// mmalign/models/bert_model.hpp — BERT (Devlin et al. 2019) as transformers' BertModel loads it
// (modeling_bert.py, configuration_bert.py): the encoders/bert_transformer.hpp tower with token
// types and a pooler, read from a Hugging Face folder (bert-base-uncased, all-MiniLM-L6-v2, …).
//
//   ids, token_type_ids, attention_mask [B, T] → last_hidden_state [B, T, D], pooler_output [B, D]
// config.json: BertConfig's fields; `add_cross_attention` gives every layer a cross-attention of
// width hidden_size; position_embedding_type must be "absolute" (the relative variants are not built).
// HF keys: embeddings.*, encoder.layer.{i}.*, pooler.dense.* (a "bert." prefix when the folder holds a
// task model: from_pretrained's `prefix`).
#pragma once

#include <string>

#include "mmalign/encoders/bert_transformer.hpp"
#include "mmalign/io/hf_config.hpp"
#include "mmalign/io/safetensors.hpp"

namespace mmalign {

template <Backend B>
struct BertModelConfig {
    typename BertTransformer<B>::Config bert = BertTransformer<B>::Config::bert();
    std::string position_embedding_type = "absolute";

    template <class F>
    void hf_fields(F&& f) {
        bert.hf_fields(f);
        f("add_cross_attention", bert.cross_attention);
        f("position_embedding_type", position_embedding_type);
    }
    std::string hf_problem() const {
        if (position_embedding_type != "absolute")
            return "position_embedding_type \"" + position_embedding_type + "\" is not supported (expected \"absolute\")";
        return bert.hf_problem();
    }
};

/// Loads a Hugging Face BERT folder into a BertTransformer (token types as the config says; the
/// pooler when the file has one — BertModel(add_pooling_layer=False) saves none). `prefix`: where
/// the tower's keys sit in the file, with its dot ("" for BertModel, "bert." for BertForMaskedLM).
template <Backend B>
BertTransformer<B> load_bert_model(B& be, const std::string& dir, const std::string& prefix = "") {
    BertModelConfig<B> c;
    io::read_hf_fields(c, io::load_hf_config(dir + "/config.json"));
    const auto source = io::Checkpoint::open(dir);
    c.bert.pooler = source.contains(prefix + c.bert.names.pooler + ".weight");
    BertTransformer<B> m(c.bert);
    io::load_parameters(be, m, source, prefix);
    return m;
}

}  // namespace mmalign
