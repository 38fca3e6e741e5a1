// eigenformer/eigenformer.hpp — umbrella header: the whole library.
//
// The core (core/, ops/, layers/, model/) and training (train/) need Eigen 3.4 only. The checkpoint
// readers in io/ also need nlohmann-json; they are included when it is available.
#pragma once

#include "eigenformer/core/error.hpp"
#include "eigenformer/core/parallel.hpp"
#include "eigenformer/core/types.hpp"
#include "eigenformer/io/float_elements.hpp"
#include "eigenformer/io/gguf.hpp"
#include "eigenformer/io/gguf_model.hpp"
#include "eigenformer/io/mapped_file.hpp"
#include "eigenformer/io/npy.hpp"
#include "eigenformer/layers/attention.hpp"
#include "eigenformer/layers/block.hpp"
#include "eigenformer/layers/embedding.hpp"
#include "eigenformer/layers/layer_norm.hpp"
#include "eigenformer/layers/linear.hpp"
#include "eigenformer/layers/lm_head.hpp"
#include "eigenformer/layers/mlp.hpp"
#include "eigenformer/layers/rms_norm.hpp"
#include "eigenformer/layers/rope.hpp"
#include "eigenformer/layers/swiglu_mlp.hpp"
#include "eigenformer/model/activations.hpp"
#include "eigenformer/model/config.hpp"
#include "eigenformer/model/decoder.hpp"
#include "eigenformer/model/kv_cache.hpp"
#include "eigenformer/model/sampler.hpp"
#include "eigenformer/model/training.hpp"
#include "eigenformer/model/weights.hpp"
#include "eigenformer/ops/cross_entropy.hpp"
#include "eigenformer/ops/gelu.hpp"
#include "eigenformer/ops/silu.hpp"
#include "eigenformer/ops/softmax.hpp"
#include "eigenformer/ops/transpose.hpp"
#include "eigenformer/quant/blocks.hpp"
#include "eigenformer/quant/k_quants.hpp"
#include "eigenformer/train/adamw.hpp"
#include "eigenformer/train/data.hpp"
#include "eigenformer/train/lr_schedule.hpp"
#include "eigenformer/train/trainer.hpp"

#if defined(__has_include)
#if __has_include(<nlohmann/json.hpp>)
#include "eigenformer/io/hf_gpt2.hpp"
#include "eigenformer/io/hf_llama.hpp"
#include "eigenformer/io/hf_model.hpp"
#include "eigenformer/io/model_file.hpp"
#include "eigenformer/io/safetensors.hpp"
#include "eigenformer/train/checkpoint.hpp"
#endif
#endif
