#pragma once
// The Loss interface: every objective is a torch module built by name from its config node.

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <torch/nn/module.h>

#include "medvlp/core/config.h"
#include "medvlp/core/registry.h"
#include "medvlp/data/sample.h"
#include "medvlp/models/encoded.h"

namespace medvlp::losses {

/// A loss value: the scalar to minimize plus named terms (detached) for logging.
struct LossOutput {
  at::Tensor total;                           // scalar
  std::map<std::string, at::Tensor> terms;    // scalars, e.g. {"i2t": ..., "logit_scale": ...}
  std::map<std::string, at::Tensor> extras;   // detached non-scalar outputs, e.g. attention maps
};

/// What a loss may need besides the batch: the distributed gather, so the same code runs on 1 or N ranks.
///
/// Gradient convention (the one of torch.distributed.nn.all_gather and open_clip): the backward of
/// all_gather sums the incoming gradients over ranks and returns this rank's slice. With DDP's
/// averaging of parameter gradients, N ranks then train exactly as one rank on the whole batch, both
/// when every rank computes the full loss and when each scores only its own rows ("local" mode).
struct LossContext {
  int64_t rank = 0;
  int64_t world_size = 1;
  int64_t step = 0;
  bool training = true;
  /// Concatenates a [b,...] tensor from every rank along dim 0 (equal b on every rank), keeping
  /// the gradient of the local part. Identity on one rank.
  std::function<at::Tensor(const at::Tensor&)> gather;

  at::Tensor all_gather(const at::Tensor& local) const { return gather ? gather(local) : local; }
  /// First row of this rank's part in a gathered tensor whose parts have `local_rows` rows.
  int64_t row_offset(int64_t local_rows) const { return rank * local_rows; }
};

/// Base class of every loss. forward() reads the Encoded fields it needs and throws,
/// naming the field and the loss, when one is missing.
class LossImpl : public torch::nn::Module {
 public:
  virtual LossOutput forward(const models::Encoded& encoded, const data::Batch& batch, const LossContext& context) = 0;
  /// Registry name, e.g. "clip".
  virtual std::string name() const = 0;
  /// The fields forward() reads, as "Encoded.<field>" and "Batch.<field>". The trainer loads and
  /// encodes only what some configured loss needs, and checks before training that the data and
  /// model can provide each one (an error names the loss, the field and the config key).
  virtual std::vector<std::string> needs() const { return {"Encoded.image_embed", "Encoded.text_embed"}; }

 protected:
  /// Throws "<loss>: needs Encoded.<field>, which the model did not produce" when `t` is undefined.
  void require(const at::Tensor& t, const std::string& field) const;
  /// Throws "loss <name>: needs Batch.<field>, which the data did not provide" when `t` is undefined.
  void require_batch(const at::Tensor& t, const std::string& field) const;
  /// Throws "loss <name>: <field> has shape [..], expected <expected>" unless `t` has `dims` dims
  /// and the given sizes (-1: any).
  void require_shape(const at::Tensor& t, const std::string& field, const std::vector<int64_t>& sizes,
                     const std::string& expected) const;
};
using LossPtr = std::shared_ptr<LossImpl>;

/// Registry of losses, built from the `options` node of a `losses` entry.
core::Registry<LossPtr, const core::ConfigNode&>& loss_registry();

/// One configured loss with its weight.
struct WeightedLoss {
  std::string name;
  double weight = 1.0;
  LossPtr loss;
};

/// What an experiment knows before it builds the losses: the model's sizes and the data's names.
struct LossEnvironment {
  int64_t token_dim = 0;               // channels of Encoded.image_tokens (VlpModel::token_dim())
  int64_t embed_dim = 0;               // the joint embedding size
  int64_t text_dim = 0;                // channels of the text encoder's features
  std::vector<std::string> anatomies;  // per-anatomy units in mask order (data.report.anatomies, else the dataset's)
  int64_t label_columns = 0;           // columns of Batch.labels (the dataset's findings)
  int64_t tag_columns = 0;             // columns of Batch.tags (data.report.tags); 0 without a report section
};

/// Option values a loss takes from the environment when its config entry leaves them out (a JSON
/// object; `written` is the entry's own options). Registered per loss name next to its factory:
/// MEDVLP_REGISTER(loss_option_registry(), "anatomy", fill_anatomy_options).
core::Registry<nlohmann::json, const nlohmann::json&, const LossEnvironment&>& loss_option_registry();

/// The options `loss_option_registry()` derives for loss `name` that `written` does not set; empty
/// for a loss that registered none.
nlohmann::json derived_loss_options(const std::string& name, const nlohmann::json& written, const LossEnvironment& env);

/// Builds the `losses` list: entries `{name, weight, options}`.
std::vector<WeightedLoss> build_losses(const core::ConfigNode& list);

}  // namespace medvlp::losses
