#include "medvlp/losses/loss.h"

namespace medvlp::losses {

core::Registry<LossPtr, const core::ConfigNode&>& loss_registry() {
  static core::Registry<LossPtr, const core::ConfigNode&> registry("loss");
  return registry;
}

void LossImpl::require(const at::Tensor& t, const std::string& field) const {
  MEDVLP_CHECK(t.defined(), "loss ", name(), ": needs Encoded.", field, ", which the model did not produce");
}

std::vector<WeightedLoss> build_losses(const core::ConfigNode& list) {
  if (!list.is_list()) list.fail("", "expected a list of {name, weight, options}");
  std::vector<WeightedLoss> out;
  for (const auto& item : list.items()) {
    WeightedLoss w;
    w.name = item.get_string("name");
    w.weight = item.get_double("weight", 1.0, 0.0, 1e6);
    if (!loss_registry().contains(w.name))
      item.fail("name", "unknown loss \"" + w.name + "\"; known: " + core::join(loss_registry().names()));
    w.loss = loss_registry().create(w.name, item.child("options"));
    out.push_back(std::move(w));
  }
  if (out.empty()) list.fail("", "expected at least one loss");
  return out;
}

}  // namespace medvlp::losses
