#include "medvlp/data/sample.h"

#include <torch/torch.h>

#include "medvlp/core/error.h"

namespace medvlp::data {

namespace {
at::Tensor move(const at::Tensor& t, const c10::Device& device, bool non_blocking) {
  return t.defined() ? t.to(device, non_blocking) : t;
}
}  // namespace

Batch Batch::to(const c10::Device& device, bool non_blocking) const {
  Batch out = *this;
  out.images = move(images, device, non_blocking);
  out.token_ids = move(token_ids, device, non_blocking);
  out.attention_mask = move(attention_mask, device, non_blocking);
  out.labels = move(labels, device, non_blocking);
  out.truth = move(truth, device, non_blocking);
  out.anatomy_masks = move(anatomy_masks, device, non_blocking);
  return out;
}

Batch collate(const std::vector<Sample>& samples) {
  MEDVLP_CHECK(!samples.empty(), "collate: no samples");
  Batch batch;
  std::vector<at::Tensor> images, labels, truth, masks;
  for (const auto& s : samples) {
    MEDVLP_CHECK(s.image.sizes() == samples.front().image.sizes(), "collate: sample ", s.id, " has image shape ",
                 s.image.sizes(), " but ", samples.front().id, " has ", samples.front().image.sizes(),
                 " (add a resize transform)");
    batch.ids.push_back(s.id);
    batch.patient_ids.push_back(s.patient_id);
    batch.reports.push_back(s.report);
    batch.boxes.push_back(s.boxes);
    images.push_back(s.image);
    labels.push_back(s.labels);
    if (s.truth.defined()) truth.push_back(s.truth);
    if (s.anatomy_masks.defined()) masks.push_back(s.anatomy_masks);
  }
  batch.images = torch::stack(images);
  batch.labels = torch::stack(labels);
  if (truth.size() == samples.size()) batch.truth = torch::stack(truth);
  if (masks.size() == samples.size()) batch.anatomy_masks = torch::stack(masks);
  return batch;
}

}  // namespace medvlp::data
