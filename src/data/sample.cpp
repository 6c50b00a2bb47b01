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

Batch Batch::to(const c10::Device& device, bool non_blocking) const {
  Batch out = *this;
  out.images = move(images, device, non_blocking);
  out.token_ids = move(token_ids, device, non_blocking);
  out.attention_mask = move(attention_mask, device, non_blocking);
  out.labels = move(labels, device, non_blocking);
  out.truth = move(truth, device, non_blocking);
  out.anatomy_masks = move(anatomy_masks, device, non_blocking);
  for (at::Tensor* t : {&out.report_hash, &out.report_normal, &out.anatomy_abnormal, &out.anatomy_text_hash,
                        &out.anatomy_normal, &out.entity_disease, &out.entity_mask})
    *t = move(*t, device, non_blocking);
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
