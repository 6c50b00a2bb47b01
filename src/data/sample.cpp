#include "medvlp/data/sample.h"

#include <cctype>

#include <torch/torch.h>

#include "medvlp/core/error.h"

namespace medvlp::data {

namespace {
at::Tensor move(const at::Tensor& t, const c10::Device& device, bool non_blocking) {
  return t.defined() ? t.to(device, non_blocking) : t;
}
}  // namespace

std::vector<at::Tensor*> Batch::tensors() {
  return {&images,           &token_ids,      &attention_mask,    &labels,           &truth,
          &anatomy_masks,    &report_hash,    &report_normal,     &anatomy_abnormal, &anatomy_text_hash,
          &anatomy_normal,   &anatomy_described,   &entity_disease, &entity_mask,       &anatomy_ids,      &anatomy_attention,
          &sentence_ids,     &sentence_attention, &sentence_mask, &entity_ids,       &entity_attention,
          &tags};
}

Batch Batch::to(const c10::Device& device, bool non_blocking) const {
  Batch out = *this;
  for (at::Tensor* t : out.tensors()) *t = move(*t, device, non_blocking);
  return out;
}

int64_t text_hash(const std::string& text) {
  // FNV-1a over the lower-cased text with runs of white space folded to one space, so that
  // reports differing only in layout pair as identical.
  uint64_t h = 1469598103934665603ULL;
  bool pending_space = false, started = false;
  for (unsigned char c : text) {
    if (std::isspace(c)) {
      pending_space = started;
      continue;
    }
    if (pending_space) {
      h = (h ^ static_cast<unsigned char>(' ')) * 1099511628211ULL;
      pending_space = false;
    }
    started = true;
    h = (h ^ static_cast<unsigned char>(std::tolower(c))) * 1099511628211ULL;
  }
  return static_cast<int64_t>(h & 0x7fffffffffffffffULL);
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
  std::vector<int64_t> hashes;
  for (const auto& r : batch.reports) hashes.push_back(text_hash(r));
  batch.report_hash = torch::tensor(hashes, torch::kLong);
  // A report is normal when it states no finding present.
  batch.report_normal = (batch.labels > 0).sum(1).eq(0).to(torch::kFloat);
  return batch;
}

}  // namespace medvlp::data
