#pragma once
// Datasets built from the `data` config section, by name.

#include <string>

#include "medvlp/core/config.h"
#include "medvlp/core/registry.h"
#include "medvlp/data/dataset.h"

namespace medvlp::data {

/// Registry of dataset adapters: (the `data` node, split name) -> dataset.
core::Registry<DatasetPtr, const core::ConfigNode&, const std::string&>& dataset_registry();

/// Builds split `split` ("train", "val", "test") of the dataset named by `data.name`, with the
/// `data.transforms` steps; random steps augment the train split only, and none when `augment` is false.
DatasetPtr build_dataset(const core::ConfigNode& data, const std::string& split, bool augment = true);

}  // namespace medvlp::data
