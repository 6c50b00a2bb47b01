#include "medvlp/data/build.h"

#include "medvlp/data/manifest.h"
#include "medvlp/data/synthetic_cxr.h"

namespace medvlp::data {

core::Registry<DatasetPtr, const core::ConfigNode&, const std::string&>& dataset_registry() {
  static core::Registry<DatasetPtr, const core::ConfigNode&, const std::string&> registry("dataset");
  return registry;
}

DatasetPtr build_dataset(const core::ConfigNode& data, const std::string& split) {
  const std::string name = data.get_string("name");
  if (!dataset_registry().contains(name))
    data.fail("name", "unknown dataset \"" + name + "\"; known: " + core::join(dataset_registry().names()));
  return dataset_registry().create(name, data, split);
}

namespace {

DatasetPtr make_synthetic_cxr(const core::ConfigNode& node, const std::string& split) {
  SyntheticCxrOptions o;
  o.image_size = node.get_int("image_size", o.image_size, 32, 2048);
  o.seed = static_cast<uint64_t>(node.get_int("seed", 0, 0));
  o.train_size = node.get_int("train_size", o.train_size, 1);
  o.val_size = node.get_int("val_size", o.val_size, 1);
  o.test_size = node.get_int("test_size", o.test_size, 1);
  o.negation_rate = node.get_double("negation_rate", o.negation_rate, 0.0, 1.0);
  o.hedge_rate = node.get_double("hedge_rate", o.hedge_rate, 0.0, 1.0 / 3.0);
  o.augment = node.get_bool("augment", o.augment);
  o.shuffle_sentences = node.get_bool("shuffle_sentences", o.shuffle_sentences);
  const core::ConfigNode prevalence = node.child("prevalence");
  const auto& names = cxr_findings();
  for (const auto& key : prevalence.keys())
    if (std::find(names.begin(), names.end(), key) == names.end())
      prevalence.fail(key, "not a phantom finding; known: " + core::join(names));
  for (size_t k = 0; k < names.size(); ++k)
    o.prevalence[k] = prevalence.get_double(names[k], o.prevalence[k], 0.0, 1.0);
  return std::make_shared<SyntheticCxrDataset>(o, parse_split(split));
}

DatasetPtr make_manifest(const core::ConfigNode& node, const std::string& split) {
  const std::string path = node.get_string("manifest");
  const auto findings = node.get_strings("findings", cxr_findings());
  const std::string missing = node.get_choice("missing", "skip", {"skip", "fail"});
  return std::make_shared<ManifestDataset>(path, split, findings,
                                           missing == "fail" ? MissingPolicy::kFail : MissingPolicy::kSkip);
}

}  // namespace

MEDVLP_REGISTER(dataset_registry(), "synthetic_cxr", make_synthetic_cxr);
MEDVLP_REGISTER(dataset_registry(), "manifest", make_manifest);

}  // namespace medvlp::data
