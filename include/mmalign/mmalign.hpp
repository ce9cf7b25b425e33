// mmalign/mmalign.hpp — the umbrella header: every CPU part of mmalign that needs no link library.
// CUDA parts live under mmalign/backend/cuda/ and need nvcc; they are never included here.
#pragma once

#include "mmalign/core/backend.hpp"
#include "mmalign/core/error.hpp"
#include "mmalign/core/ops.hpp"
#include "mmalign/core/parameter.hpp"
#include "mmalign/core/shape.hpp"
#include "mmalign/core/tensor.hpp"

#include "mmalign/backend/cpu/backend.hpp"
#include "mmalign/backend/cpu/backend16.hpp"

#include "mmalign/nn/attention.hpp"
#include "mmalign/nn/embedding.hpp"
#include "mmalign/nn/layer_norm.hpp"
#include "mmalign/nn/linear.hpp"
#include "mmalign/nn/mlp.hpp"
#include "mmalign/nn/scaled_cosine_similarity.hpp"
#include "mmalign/nn/sublayer.hpp"
#include "mmalign/nn/transformer_block.hpp"
#include "mmalign/nn/transformer_stack.hpp"

#include "mmalign/encoders/text_transformer.hpp"
#include "mmalign/encoders/vision_transformer.hpp"
#include "mmalign/models/clip.hpp"
#include "mmalign/models/clip_contrastive.hpp"

#include "mmalign/generation/config_json.hpp"
#include "mmalign/generation/generate.hpp"

#include "mmalign/objectives/contrastive.hpp"
#include "mmalign/objectives/language_modeling.hpp"
#include "mmalign/objectives/matching.hpp"
#include "mmalign/objectives/query_text_contrastive.hpp"

#include "mmalign/train/adamw.hpp"
#include "mmalign/train/checkpoint.hpp"
#include "mmalign/train/loss_scaler.hpp"
#include "mmalign/train/gradients.hpp"
#include "mmalign/train/progress.hpp"
#include "mmalign/train/schedule.hpp"
#include "mmalign/train/train_step.hpp"
#include "mmalign/train/trainer.hpp"

// Outside data. io/image.hpp is not included here: it needs libjpeg-turbo and libpng at link
// time (target mmalign::image).
#include "mmalign/io/clip_tokenizer.hpp"
#include "mmalign/io/gpt2_tokenizer.hpp"
#include "mmalign/io/hf_config.hpp"
#include "mmalign/io/idx.hpp"
#include "mmalign/io/safetensors.hpp"
#include "mmalign/io/tensor_map.hpp"
#include "mmalign/io/wordpiece_tokenizer.hpp"

// Evaluation metrics (pycocoevalcap's caption metrics, the VQAv2 accuracy).
#include "mmalign/eval/caption_metrics.hpp"
#include "mmalign/eval/result_files.hpp"
#include "mmalign/eval/vqa_accuracy.hpp"
