#pragma once
// Datasets built from the `data` config section, by name.

#include <string>

#include "medvlp/core/config.h"
#include "medvlp/core/registry.h"
#include "medvlp/data/dataset.h"

namespace medvlp::data {

/// Registry of dataset adapters: (the `data` node, split name) -> dataset.
core::Registry<DatasetPtr, const core::ConfigNode&, const std::string&>& dataset_registry();

/// Builds split `split` ("train", "val", "test") of the dataset named by `data.name`.
DatasetPtr build_dataset(const core::ConfigNode& data, const std::string& split);

}  // namespace medvlp::data
