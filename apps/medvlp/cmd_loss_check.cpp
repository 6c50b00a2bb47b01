// medvlp loss-check: evaluate a registered loss on tensors from a safetensors file and write the
// loss, its terms and the gradients with respect to every input, for comparison with Python.
#include <iostream>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "commands.h"
#include "medvlp/core/config.h"
#include "medvlp/core/device.h"
#include "medvlp/core/error.h"
#include "medvlp/io/safetensors.h"
#include "medvlp/losses/loss.h"
#include "medvlp/testing/loss_testing.h"

namespace medvlp::app {

Action add_loss_check(CLI::App& app) {
  struct Args {
    std::string loss, options = "{}", inputs, out, dtype = "float64", device = "cpu";
    bool list_inputs = false;
  };
  auto args = std::make_shared<Args>();
  app.add_option("--loss", args->loss, "registered loss name, e.g. clip (required unless --list-inputs)");
  app.add_option("--options", args->options, "the loss's options as JSON, e.g. '{\"temperature\": 0.1}'");
  app.add_option("--inputs", args->inputs, "safetensors file with the input tensors by name (required unless --list-inputs)");
  app.add_option("-o,--out", args->out,
                 "safetensors file to write: loss, term/<name>, grad/<input>, param/<name> (required unless --list-inputs)");
  app.add_option("--device", args->device, "cpu (default), cuda or cuda:N: where the loss and its inputs run");
  app.add_option("--dtype", args->dtype, "float64 (default) or float32: precision of loss and inputs")
      ->check(CLI::IsMember({"float64", "float32"}));
  app.add_flag("--list-inputs", args->list_inputs, "print the input names a loss can read and exit");
  return [args]() {
    if (args->list_inputs) {
      for (const auto& s : testing::input_specs())
        std::cout << s.name << "\t" << s.field << (s.per_sample ? "\tper-sample" : "")
                  << (s.differentiable ? "\tdifferentiable" : "") << "\n";
      return 0;
    }
    MEDVLP_CHECK(!args->loss.empty() && !args->inputs.empty() && !args->out.empty(),
                 "loss-check: --loss, --inputs and --out are required");
    const c10::Device device = core::select_device(args->device);
    nlohmann::json options;
    try {
      options = nlohmann::json::parse(args->options);
    } catch (const std::exception& e) {
      throw Error("loss-check: --options is not valid JSON: " + std::string(e.what()));
    }
    nlohmann::json list = nlohmann::json::array({{{"name", args->loss}, {"options", options}}});
    core::Config config = core::Config::from_json(nlohmann::json{{"losses", list}}, "--options");
    auto built = losses::build_losses(config.root().at("losses"));
    config.check_all_used();
    losses::LossImpl& loss = *built.front().loss;
    const auto dtype = args->dtype == "float64" ? torch::kDouble : torch::kFloat;
    loss.to(device, dtype);
    testing::NamedTensors inputs;
    for (const auto& [name, t] : io::load_safetensors(args->inputs).tensors)
      inputs[name] = t.is_floating_point() ? t.to(device, dtype) : t.to(device);
    const testing::LossEvaluation e = testing::evaluate(loss, inputs);
    testing::save_evaluation(args->out, inputs, e, false);
    std::cout << "loss " << args->loss << " = " << e.total << "\n";
    for (const auto& [name, v] : e.terms) std::cout << "  " << name << " = " << v << "\n";
    std::cout << "wrote " << e.grads.size() << " gradients to " << args->out << "\n";
    return 0;
  };
}

}  // namespace medvlp::app
