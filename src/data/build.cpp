#include "medvlp/data/build.h"

#include <algorithm>
#include <array>

#include "medvlp/data/manifest.h"
#include "medvlp/data/shards.h"
#include "medvlp/data/synthetic_ct.h"
#include "medvlp/data/synthetic_cxr.h"
#include "medvlp/data/transforms.h"

namespace medvlp::data {

core::Registry<DatasetPtr, const core::ConfigNode&, const std::string&>& dataset_registry() {
  static core::Registry<DatasetPtr, const core::ConfigNode&, const std::string&> registry("dataset");
  return registry;
}

DatasetPtr build_dataset(const core::ConfigNode& data, const std::string& split, bool augment) {
  const std::string name = data.get_string("name");
  if (!dataset_registry().contains(name))
    data.fail("name", "unknown dataset \"" + name + "\"; known: " + core::join(dataset_registry().names()));
  DatasetPtr dataset = dataset_registry().create(name, data, split);
  if (!data.has("transforms")) return dataset;
  // Random steps augment the training split only; other splits get their evaluation form.
  Compose transforms = build_transforms(data.at("transforms"), static_cast<uint64_t>(data.get_int("seed", 0, 0)));
  return std::make_shared<TransformedDataset>(std::move(dataset), std::move(transforms), augment && split == "train");
}

namespace {

// `prevalence: {finding: p}` over a phantom's findings; unknown names fail listing the known ones.
template <size_t N>
void read_prevalence(const core::ConfigNode& node, const std::vector<std::string>& names, std::array<double, N>& out) {
  const core::ConfigNode prevalence = node.child("prevalence");
  for (const auto& key : prevalence.keys())
    if (std::find(names.begin(), names.end(), key) == names.end())
      prevalence.fail(key, "not a phantom finding; known: " + core::join(names));
  for (size_t k = 0; k < names.size() && k < N; ++k) out[k] = prevalence.get_double(names[k], out[k], 0.0, 1.0);
}

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
  read_prevalence(node, cxr_findings(), o.prevalence);
  return std::make_shared<SyntheticCxrDataset>(o, parse_split(split));
}

DatasetPtr make_synthetic_ct(const core::ConfigNode& node, const std::string& split) {
  SyntheticCtOptions o;
  const auto size = node.get_ints("size", {o.size[0], o.size[1], o.size[2]});
  if (size.size() != 3 || *std::min_element(size.begin(), size.end()) < 8)
    node.fail("size", "expected [D, H, W] with every size >= 8");
  const auto fov = node.get_doubles("field_of_view", {o.field_of_view[0], o.field_of_view[1], o.field_of_view[2]});
  if (fov.size() != 3 || *std::min_element(fov.begin(), fov.end()) <= 0)
    node.fail("field_of_view", "expected [D, H, W] in mm, all positive");
  for (size_t a = 0; a < 3; ++a) o.size[a] = size[a], o.field_of_view[a] = fov[a];
  o.seed = static_cast<uint64_t>(node.get_int("seed", 0, 0));
  o.train_size = node.get_int("train_size", o.train_size, 1);
  o.val_size = node.get_int("val_size", o.val_size, 1);
  o.test_size = node.get_int("test_size", o.test_size, 1);
  o.noise_hu = node.get_double("noise_hu", o.noise_hu, 0.0, 1000.0);
  read_prevalence(node, ct_findings(), o.prevalence);
  return std::make_shared<SyntheticCtDataset>(o, parse_split(split));
}

DatasetPtr make_manifest(const core::ConfigNode& node, const std::string& split) {
  ManifestDataset::Options o;
  const std::string path = node.get_string("manifest");
  o.findings = node.get_strings("findings", cxr_findings());
  o.anatomies = node.get_strings("anatomies", {});
  o.missing = node.get_choice("missing", "skip", {"skip", "fail"}) == "fail" ? MissingPolicy::kFail : MissingPolicy::kSkip;
  o.canonical = node.get_choice("orientation", "ras", {"ras", "native"}) == "ras";
  o.non_finite = node.get_choice("non_finite", "error", {"error", "zero"}) == "zero" ? NonFinitePolicy::kZero
                                                                                     : NonFinitePolicy::kError;
  o.nifti_channels = node.get_choice("nifti_4d", "refuse", {"refuse", "channels"}) == "channels";
  return std::make_shared<ManifestDataset>(path, split, std::move(o));
}

}  // namespace

MEDVLP_REGISTER(dataset_registry(), "synthetic_cxr", make_synthetic_cxr);
MEDVLP_REGISTER(dataset_registry(), "manifest", make_manifest);
MEDVLP_REGISTER(dataset_registry(), "synthetic_ct", make_synthetic_ct);
MEDVLP_REGISTER(dataset_registry(), "shards", [](const core::ConfigNode& node, const std::string& split) -> DatasetPtr {
  return std::make_shared<ShardDataset>(node.get_string("dir") + "/" + split);
});

}  // namespace medvlp::data
