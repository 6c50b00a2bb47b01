#include "medvlp/testing/named_inputs.h"

#include <torch/torch.h>

#include "medvlp/core/error.h"
#include "medvlp/core/registry.h"

namespace medvlp::testing {

const std::vector<InputSpec>& input_specs() {
  static const std::vector<InputSpec> specs = {
      {"image_embed", "Encoded.image_embed", true, true},
      {"text_embed", "Encoded.text_embed", true, true},
      {"image_tokens", "Encoded.image_tokens", true, true},
      {"grid", "Encoded.grid", false, false},
      {"word_image_tokens", "Encoded.word_image_tokens", true, true},
      {"text_tokens", "Encoded.text_tokens", true, true},
      {"word_mask", "Encoded.word_mask", true, false},
      {"anatomy_image", "Encoded.anatomy_image", true, true},
      {"anatomy_text", "Encoded.anatomy_text", true, true},
      {"anatomy_present", "Encoded.anatomy_present", true, false},
      {"sentence_embed", "Encoded.sentence_embed", true, true},
      {"sentence_mask", "Encoded.sentence_mask", true, false},
      {"entity_embed", "Encoded.entity_embed", true, true},
      {"entity_reference", "Encoded.entity_reference", true, false},
      {"labels", "Batch.labels", true, false},
      {"anatomy_masks", "Batch.anatomy_masks", true, false},
      {"report_hash", "Batch.report_hash", true, false},
      {"report_normal", "Batch.report_normal", true, false},
      {"anatomy_abnormal", "Batch.anatomy_abnormal", true, false},
      {"anatomy_text_hash", "Batch.anatomy_text_hash", true, false},
      {"anatomy_normal", "Batch.anatomy_normal", true, false},
      {"anatomy_described", "Batch.anatomy_described", true, false},
      {"entity_disease", "Batch.entity_disease", true, false},
      {"entity_mask", "Batch.entity_mask", true, false},
      {"tags", "Batch.tags", true, false},
  };
  return specs;
}

namespace {
const InputSpec* find_spec(const std::string& name) {
  for (const auto& s : input_specs())
    if (s.name == name) return &s;
  return nullptr;
}
}  // namespace

std::pair<models::Encoded, data::Batch> bind_inputs(const NamedTensors& inputs) {
  models::Encoded e;
  data::Batch b;
  std::map<std::string, at::Tensor*> slots = {
      {"image_embed", &e.image_embed},       {"text_embed", &e.text_embed},
      {"image_tokens", &e.image_tokens},     {"text_tokens", &e.text_tokens},
      {"word_image_tokens", &e.word_image_tokens},
      {"word_mask", &e.word_mask},           {"anatomy_image", &e.anatomy_image},
      {"anatomy_text", &e.anatomy_text},     {"anatomy_present", &e.anatomy_present},
      {"sentence_embed", &e.sentence_embed}, {"sentence_mask", &e.sentence_mask},
      {"entity_embed", &e.entity_embed},     {"entity_reference", &e.entity_reference},
      {"labels", &b.labels},                 {"anatomy_masks", &b.anatomy_masks},
      {"report_hash", &b.report_hash},       {"report_normal", &b.report_normal},
      {"anatomy_abnormal", &b.anatomy_abnormal}, {"anatomy_text_hash", &b.anatomy_text_hash},
      {"anatomy_normal", &b.anatomy_normal}, {"anatomy_described", &b.anatomy_described},
      {"entity_disease", &b.entity_disease},
      {"entity_mask", &b.entity_mask},       {"tags", &b.tags}};
  for (const auto& [name, tensor] : inputs) {
    if (name == "grid") {
      MEDVLP_CHECK(tensor.dim() == 1 && (tensor.numel() == 2 || tensor.numel() == 3),
                   "input grid: expected 2 or 3 sizes, got shape ", tensor.sizes());
      const at::Tensor g = tensor.to(torch::kLong).cpu().contiguous();
      e.grid.assign(g.data_ptr<int64_t>(), g.data_ptr<int64_t>() + g.numel());
      continue;
    }
    auto slot = slots.find(name);
    if (slot == slots.end()) {
      std::vector<std::string> known;
      for (const auto& s : input_specs()) known.push_back(s.name);
      throw Error("input \"" + name + "\" is not a loss input; known: " + core::join(known));
    }
    *slot->second = tensor;
  }
  const int64_t B = batch_size(inputs);
  for (int64_t i = 0; i < B; ++i) b.ids.push_back(std::to_string(i));
  return {e, b};
}

int64_t batch_size(const NamedTensors& inputs) {
  int64_t B = -1;
  std::string first;
  for (const auto& [name, tensor] : inputs) {
    const InputSpec* spec = find_spec(name);
    if (!spec || !spec->per_sample) continue;
    MEDVLP_CHECK(tensor.dim() >= 1, "input ", name, ": a per-sample input needs a batch dimension, got a scalar");
    if (B < 0) {
      B = tensor.size(0);
      first = name;
    }
    MEDVLP_CHECK(tensor.size(0) == B, "input ", name, " has ", tensor.size(0), " rows but ", first, " has ", B);
  }
  return std::max<int64_t>(B, 0);
}

NamedTensors slice_batch(const NamedTensors& inputs, int64_t begin, int64_t count) {
  NamedTensors out;
  for (const auto& [name, tensor] : inputs) {
    const InputSpec* spec = find_spec(name);
    out[name] = spec && spec->per_sample ? tensor.narrow(0, begin, count).clone() : tensor.clone();
  }
  return out;
}

}  // namespace medvlp::testing
