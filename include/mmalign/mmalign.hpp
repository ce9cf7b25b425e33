// mmalign/mmalign.hpp — the umbrella header: every CPU part of mmalign.
// CUDA parts live under mmalign/backend/cuda/ and need nvcc; they are never included here.
#pragma once

#include "mmalign/core/backend.hpp"
#include "mmalign/core/error.hpp"
#include "mmalign/core/ops.hpp"
#include "mmalign/core/parameter.hpp"
#include "mmalign/core/shape.hpp"
#include "mmalign/core/tensor.hpp"

#include "mmalign/backend/cpu/backend.hpp"

#include "mmalign/nn/attention.hpp"
#include "mmalign/nn/embedding.hpp"
#include "mmalign/nn/layer_norm.hpp"
#include "mmalign/nn/linear.hpp"
#include "mmalign/nn/mlp.hpp"
#include "mmalign/nn/transformer_block.hpp"
#include "mmalign/nn/transformer_stack.hpp"
