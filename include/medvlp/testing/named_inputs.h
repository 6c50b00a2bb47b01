#pragma once
// Loss inputs as named tensors: the form `medvlp loss-check` reads from safetensors and the
// testing kit slices across ranks. Each name binds to one Encoded or Batch field.

#include <map>
#include <string>
#include <utility>
#include <vector>

#include <ATen/Tensor.h>

#include "medvlp/data/sample.h"
#include "medvlp/models/encoded.h"

namespace medvlp::testing {

/// Tensors by input name, e.g. {"image_embed": [B,D], "labels": [B,K], "grid": [2] int64}.
using NamedTensors = std::map<std::string, at::Tensor>;

/// One bindable input: its name, where it goes, whether it has a batch dimension, and whether
/// losses differentiate through it (gradient checks skip the others: masks, labels, frozen references).
struct InputSpec {
  std::string name;
  std::string field;  // "Encoded.image_embed", "Batch.labels", ...
  bool per_sample;
  bool differentiable;
};

/// Every name a loss can read.
const std::vector<InputSpec>& input_specs();

/// Builds the Encoded/Batch pair a loss consumes. Unknown names fail with the list of known ones.
std::pair<models::Encoded, data::Batch> bind_inputs(const NamedTensors& inputs);

/// Rows [begin, begin+count) of every per-sample input ("grid" is copied whole).
NamedTensors slice_batch(const NamedTensors& inputs, int64_t begin, int64_t count);

/// The batch size B of the inputs (dim 0 of per-sample inputs, which must agree).
int64_t batch_size(const NamedTensors& inputs);

}  // namespace medvlp::testing
