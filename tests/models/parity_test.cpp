// Numerical parity with the Python originals: tests/python/model_parity.py builds the model in
// Python with seeded random weights and writes its weights (original names), inputs and outputs;
// medvlp loads the weights through the name mapping and must reproduce the outputs (fp32, 1e-4).
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cstdio>

#include "../testing_util.h"
#include "medvlp/models/bert.h"
#include "medvlp/models/resnet.h"
#include "medvlp/models/vit.h"
#include "medvlp/models/weights.h"

using namespace medvlp::models;

namespace {

// Runs the fixture script; false with the script's message when it skips (exit 77).
bool fixtures(const std::string& model, const std::string& dir, std::string& message) {
  const std::string command = "/usr/bin/python3 " MEDVLP_SOURCE_DIR "/tests/python/model_parity.py " + model + " '" +
                              dir + "' 2>&1";
  FILE* pipe = ::popen(command.c_str(), "r");
  if (!pipe) throw std::runtime_error("cannot run " + command);
  char buffer[512];
  while (std::fgets(buffer, sizeof buffer, pipe)) message += buffer;
  const int status = ::pclose(pipe);
  const int code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  if (code == 127) message += "/usr/bin/python3 not found (Debian: python3-torch python3-torchvision)";
  if (code == 77 || code == 127) return false;
  if (code != 0) throw std::runtime_error(command + " failed (" + std::to_string(code) + "): " + message);
  std::printf("%s", message.c_str());
  return true;
}

double max_diff(const at::Tensor& a, const at::Tensor& b) {
  EXPECT_EQ(a.sizes(), b.sizes());
  return (a.to(torch::kDouble) - b.to(torch::kDouble)).abs().max().item<double>();
}

#define FIXTURES(model)                                             \
  medvlp::testing_util::TempDir dir;                                \
  std::string message;                                              \
  if (!fixtures(model, dir.path(), message)) MEDVLP_REFERENCE_MISSING(message); \
  const auto io = medvlp::io::load_safetensors(dir.path() + "/io.safetensors").tensors; \
  LoadOptions load;                                                 \
  load.source = model;

}  // namespace

TEST(Parity, ResNet50MatchesTorchvision) {
  FIXTURES("resnet50");
  load.format = "torchvision";
  ResNetOptions o;
  o.depth = 50, o.in_channels = 3, o.num_classes = 1000;
  ResNet net(o);
  const LoadReport r = load_weights_file(*net, "resnet", dir.path() + "/weights.safetensors", load);
  EXPECT_EQ(r.loaded.size(), 320u);
  net->eval();
  torch::NoGradGuard no_grad;
  EXPECT_LE(max_diff(net->logits(io.at("input")), io.at("logits")), 1e-4);
}

TEST(Parity, VitB16MatchesTorchvision) {
  FIXTURES("vit_b16");
  load.format = "torchvision";
  VitOptions o = vit_preset("vit_b16");
  o.in_channels = 3, o.num_classes = 1000;
  Vit vit(o);
  load_weights_file(*vit, "vit", dir.path() + "/weights.safetensors", load);
  vit->eval();
  torch::NoGradGuard no_grad;
  EXPECT_LE(max_diff(vit->logits(io.at("input")), io.at("logits")), 1e-4);
}

TEST(Parity, BertMatchesHuggingFaceBertModel) {
  FIXTURES("bert");
  load.format = "hf";
  BertOptions o;
  o.vocab_size = 1000, o.hidden = 256, o.layers = 4, o.heads = 4, o.intermediate = 1024, o.max_position = 128;
  o.max_len = 128;
  Bert bert(o);
  load_weights_file(*bert, "bert", dir.path() + "/weights.safetensors", load);
  bert->eval();
  torch::NoGradGuard no_grad;
  const at::Tensor last = bert->hidden_states(io.at("ids"), io.at("mask")).back();
  EXPECT_LE(max_diff(last, io.at("last_hidden")), 1e-4);
  EXPECT_LE(max_diff(bert->pooler(last), io.at("pooled")), 1e-4);
}

TEST(Parity, ClipTextMatchesHuggingFaceCLIPTextModel) {
  FIXTURES("clip_text");
  load.format = "hf";
  ClipTextOptions o;
  o.vocab_size = 1000, o.hidden = 256, o.layers = 4, o.heads = 4, o.intermediate = 1024, o.max_position = 77;
  o.eos_id = 999;
  ClipText clip(o);
  load_weights_file(*clip, "clip_text", dir.path() + "/weights.safetensors", load);
  clip->eval();
  torch::NoGradGuard no_grad;
  const TextFeatures f = clip->forward(io.at("ids"), io.at("mask"));
  EXPECT_LE(max_diff(f.tokens, io.at("last_hidden")), 1e-4);
  EXPECT_LE(max_diff(f.pooled, io.at("pooled")), 1e-4);
}
