// examples/mmalign-blip2/training_args.hpp — what the training and evaluation commands of
// mmalign-blip2 are told (parsed in training.cpp, used there and in evaluation.cpp).
#pragma once

#include <filesystem>
#include <string>

#include <mmalign/io/blip2_processor.hpp>
#include <mmalign/train/training_arguments.hpp>

#include "../common/cli_options.hpp"

namespace mmalign::blip2cli {

struct Args {
    std::string command, model, language_model, data, image_root, results, questions, annotations, prompt,
        prompt_template{io::blip2_vqa_template}, image_pattern{"COCO_val2014_{:012}.jpg"};
    bool has_prompt = false, train_vit = false, json = false;
    long max_txt_len = 32, eval_batch = 8;
    int workers = 2, threads = 0;
    TrainingArguments train;
    cli::GenerationFlags gen;
};

/// `dir`/`name`.
inline std::string join(const std::string& dir, const std::string& name) {
    return (std::filesystem::path(dir) / name).string();
}

int eval_caption(const Args& a);
int eval_vqa(const Args& a);

}  // namespace mmalign::blip2cli
