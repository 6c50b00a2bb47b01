#include "medvlp/losses/loss.h"

namespace medvlp::losses {

core::Registry<LossPtr, const core::ConfigNode&>& loss_registry() {
  static core::Registry<LossPtr, const core::ConfigNode&> registry("loss");
  return registry;
}

core::Registry<nlohmann::json, const nlohmann::json&, const LossEnvironment&>& loss_option_registry() {
  static core::Registry<nlohmann::json, const nlohmann::json&, const LossEnvironment&> registry("loss option filler");
  return registry;
}

nlohmann::json derived_loss_options(const std::string& name, const nlohmann::json& written, const LossEnvironment& env) {
  nlohmann::json out = nlohmann::json::object();
  if (!loss_option_registry().contains(name)) return out;
  const nlohmann::json derived = loss_option_registry().create(name, written, env);
  for (auto it = derived.begin(); it != derived.end(); ++it)
    if (!written.contains(it.key())) out[it.key()] = it.value();
  return out;
}

void LossImpl::require(const at::Tensor& t, const std::string& field) const {
  MEDVLP_CHECK(t.defined(), "loss ", name(), ": needs Encoded.", field, ", which the model did not produce");
}

void LossImpl::require_batch(const at::Tensor& t, const std::string& field) const {
  MEDVLP_CHECK(t.defined(), "loss ", name(), ": needs Batch.", field, ", which the data did not provide");
}

void LossImpl::require_shape(const at::Tensor& t, const std::string& field, const std::vector<int64_t>& sizes,
                             const std::string& expected) const {
  bool ok = t.dim() == static_cast<int64_t>(sizes.size());
  for (size_t i = 0; ok && i < sizes.size(); ++i) ok = sizes[i] < 0 || t.size(static_cast<int64_t>(i)) == sizes[i];
  MEDVLP_CHECK(ok, "loss ", name(), ": ", field, " has shape ", t.sizes(), ", expected ", expected);
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
    const core::ConfigNode options = item.child("options");
    try {
      w.loss = loss_registry().create(w.name, options);
    } catch (const Error& e) {
      throw Error("loss " + w.name + ": " + e.what());
    }
    for (const auto& key : options.unread_keys())
      options.fail(key, "not an option of loss \"" + w.name + "\"");
    out.push_back(std::move(w));
  }
  if (out.empty()) list.fail("", "expected at least one loss");
  return out;
}

}  // namespace medvlp::losses
