// Image and text encoders of the model zoo: published sizes, shapes, the properties users rely on.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "../testing_util.h"
#include "medvlp/models/bert.h"
#include "medvlp/models/resnet.h"
#include "medvlp/models/vit.h"

using namespace medvlp::models;

namespace {

int64_t count(const torch::nn::Module& m) {
  int64_t n = 0;
  for (const auto& p : m.parameters()) n += p.numel();
  return n;
}

ResNetOptions resnet(int64_t depth, int64_t dims = 2, int64_t in = 3, int64_t classes = 1000) {
  ResNetOptions o;
  o.depth = depth, o.dims = dims, o.in_channels = in, o.num_classes = classes;
  return o;
}

VitOptions tiny_vit(int64_t dims = 2) {
  VitOptions o;
  o.dims = dims;
  o.image_size = dims == 2 ? std::vector<int64_t>{32, 32} : std::vector<int64_t>{8, 32, 32};
  o.patch_size = dims == 2 ? std::vector<int64_t>{8, 8} : std::vector<int64_t>{4, 8, 8};
  o.in_channels = 1, o.dim = 32, o.depth = 2, o.heads = 4;
  return o;
}

BertOptions tiny_bert() {
  BertOptions o;
  o.vocab_size = 50, o.hidden = 32, o.layers = 3, o.heads = 4, o.intermediate = 64, o.max_position = 40;
  o.max_len = 40;
  return o;
}

ClipTextOptions tiny_clip() {
  ClipTextOptions o;
  o.vocab_size = 50, o.hidden = 32, o.layers = 2, o.heads = 4, o.intermediate = 64, o.max_position = 16;
  o.eos_id = 49;
  return o;
}

// Sum of all parameter gradients after one backward of `loss`, for comparing two runs.
std::vector<at::Tensor> grads(torch::nn::Module& m) {
  std::vector<at::Tensor> out;
  for (auto& p : m.parameters()) out.push_back(p.grad().defined() ? p.grad().clone() : torch::zeros_like(p));
  return out;
}

}  // namespace

TEST(ResNet, ParameterCountsMatchTorchvision) {
  // torchvision's published sizes, classifier included.
  EXPECT_EQ(count(*ResNet(resnet(18))), 11689512);
  EXPECT_EQ(count(*ResNet(resnet(34))), 21797672);
  EXPECT_EQ(count(*ResNet(resnet(50))), 25557032);
  EXPECT_EQ(count(*ResNet(resnet(101))), 44549160);
}

TEST(ResNet, TorchvisionParameterNames) {
  ResNet net(resnet(50));
  const auto names = net->named_parameters().keys();
  const auto buffers = net->named_buffers().keys();
  for (const char* name : {"conv1.weight", "bn1.weight", "layer1.0.conv3.weight", "layer1.0.downsample.0.weight",
                           "layer1.0.downsample.1.bias", "layer4.2.bn3.bias", "fc.weight", "fc.bias"})
    EXPECT_NE(std::find(names.begin(), names.end(), name), names.end()) << name;
  EXPECT_NE(std::find(buffers.begin(), buffers.end(), "layer3.5.bn2.running_var"), buffers.end());
  EXPECT_NE(std::find(buffers.begin(), buffers.end(), "bn1.num_batches_tracked"), buffers.end());
}

TEST(ResNet, TokensOnTheStride32GridIn2DAnd3D) {
  torch::manual_seed(0);
  ResNet net2(resnet(18, 2, 1, 0));
  ImageFeatures f = net2->forward(torch::randn({2, 1, 64, 96}));
  EXPECT_EQ(f.grid, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(f.tokens.sizes(), (std::vector<int64_t>{2, 6, 512}));
  EXPECT_TRUE(torch::allclose(f.pooled, f.tokens.mean(1)));
  ResNetOptions o3 = resnet(18, 3, 1, 0);
  o3.stem_stride = {1, 2, 2};
  ResNet net3(o3);
  f = net3->forward(torch::randn({1, 1, 16, 64, 64}));  // depth: stride 16 with a stride-1 stem
  EXPECT_EQ(f.grid, (std::vector<int64_t>{1, 2, 2}));
  EXPECT_EQ(net3->out_dim(), 512);
  EXPECT_ERROR_CONTAINS(net3->forward(torch::randn({1, 1, 64, 64})), "resnet: expected volumes [B,1,D,H,W]");
}

TEST(Vit, ParameterCountsMatchTimmAndTorchvision) {
  for (auto [name, expected] : std::vector<std::pair<std::string, int64_t>>{
           {"vit_s16", 22050664}, {"vit_b16", 86567656}, {"vit_l16", 304326632}}) {
    VitOptions o = vit_preset(name);
    o.num_classes = 1000;
    EXPECT_EQ(count(*Vit(o)), expected) << name;
  }
}

TEST(Vit, OtherInputSizesResampleThePositionEmbedding) {
  torch::manual_seed(0);
  Vit vit(tiny_vit());
  vit->eval();
  ImageFeatures f = vit->forward(torch::randn({2, 1, 48, 40}));
  EXPECT_EQ(f.grid, (std::vector<int64_t>{6, 5}));
  EXPECT_EQ(f.tokens.sizes(), (std::vector<int64_t>{2, 30, 32}));
  // Resampling to the grid it was made for is the identity; to another grid it keeps the class entry.
  const at::Tensor pos = torch::randn({1, 17, 8});
  EXPECT_TRUE(torch::equal(VitImpl::resample_position_embedding(pos, {4, 4}, {4, 4}), pos));
  const at::Tensor up = VitImpl::resample_position_embedding(pos, {4, 4}, {8, 8});
  EXPECT_EQ(up.sizes(), (std::vector<int64_t>{1, 65, 8}));
  EXPECT_TRUE(torch::equal(up.narrow(1, 0, 1), pos.narrow(1, 0, 1)));
  // A constant embedding stays constant under interpolation.
  const at::Tensor flat = torch::ones({1, 17, 8});
  EXPECT_TRUE(torch::allclose(VitImpl::resample_position_embedding(flat, {4, 4}, {6, 3}), torch::ones({1, 19, 8})));
}

TEST(Vit, VolumesArePatchedIntoSlabs) {
  torch::manual_seed(0);
  Vit vit(tiny_vit(3));
  ImageFeatures f = vit->forward(torch::randn({1, 1, 8, 32, 32}));
  EXPECT_EQ(f.grid, (std::vector<int64_t>{2, 4, 4}));
  EXPECT_EQ(f.tokens.sizes(), (std::vector<int64_t>{1, 32, 32}));
  const auto names = vit->named_parameters().keys();
  EXPECT_NE(std::find(names.begin(), names.end(), "blocks.1.attn.qkv.weight"), names.end());
  EXPECT_EQ(vit->named_parameters()["patch_embed.proj.weight"].sizes(), (std::vector<int64_t>{32, 1, 4, 8, 8}));
}

TEST(Vit, CheckpointedBlocksGiveTheSameGradients) {
  torch::manual_seed(0);
  VitOptions o = tiny_vit();
  Vit plain(o);
  o.checkpoint = true;
  Vit ckpt(o);
  torch::NoGradGuard no_grad;
  for (auto& p : ckpt->named_parameters()) p.value().copy_(plain->named_parameters()[p.key()]);
  const at::Tensor x = torch::randn({2, 1, 32, 32});
  torch::AutoGradMode enable(true);
  (plain->forward(x).tokens.pow(2).sum() + plain->forward(x).pooled.sum()).backward();
  (ckpt->forward(x).tokens.pow(2).sum() + ckpt->forward(x).pooled.sum()).backward();
  const auto a = grads(*plain), b = grads(*ckpt);
  for (size_t i = 0; i < a.size(); ++i) EXPECT_TRUE(torch::allclose(a[i], b[i], 1e-5, 1e-6)) << i;
}

TEST(Bert, BaseUncasedHasThePublishedParameterCount) {
  EXPECT_EQ(count(*Bert(BertOptions{})), 109482240);
}

TEST(Bert, PaddingDoesNotChangeRealTokens) {
  torch::manual_seed(0);
  Bert bert(tiny_bert());
  bert->eval();
  const at::Tensor ids = torch::randint(1, 50, {1, 7});
  const at::Tensor padded = torch::cat({ids, torch::zeros({1, 5}, ids.options())}, 1);
  const at::Tensor mask = torch::ones({1, 7}, torch::kLong);
  const at::Tensor padded_mask = torch::cat({mask, torch::zeros({1, 5}, torch::kLong)}, 1);
  TextFeatures a = bert->forward(ids, mask), b = bert->forward(padded, padded_mask);
  EXPECT_TRUE(torch::allclose(a.tokens, b.tokens.narrow(1, 0, 7), 1e-5, 1e-5));
  EXPECT_TRUE(torch::allclose(a.pooled, b.pooled, 1e-5, 1e-5));
}

TEST(Bert, PoolingsSumOfLastLayersAndTruncation) {
  torch::manual_seed(0);
  BertOptions o = tiny_bert();
  o.sum_last_layers = 2;
  o.pooling = "mean";
  o.max_len = 6;
  Bert bert(o);
  bert->eval();
  const at::Tensor ids = torch::randint(1, 50, {2, 9});
  at::Tensor mask = torch::ones({2, 9}, torch::kLong);
  mask[1].narrow(0, 4, 5).zero_();
  TextFeatures f = bert->forward(ids, mask);
  ASSERT_EQ(f.tokens.sizes(), (std::vector<int64_t>{2, 6, 32}));  // cut to max_len
  const auto states = bert->hidden_states(ids, mask);
  ASSERT_EQ(states.size(), 4u);
  EXPECT_TRUE(torch::allclose(f.tokens, states[3] + states[2]));
  EXPECT_TRUE(torch::allclose(f.pooled[1], f.tokens[1].narrow(0, 0, 4).mean(0), 1e-5, 1e-6));
  EXPECT_ERROR_CONTAINS(Bert([] {
                          BertOptions bad = tiny_bert();
                          bad.sum_last_layers = 9;
                          return bad;
                        }()),
                        "bert: sum_last_layers must be in [1, 3]");
}

TEST(Bert, CheckpointingReplaysDropout) {
  torch::manual_seed(0);
  BertOptions o = tiny_bert();
  o.dropout = 0.3;
  Bert plain(o);
  o.checkpoint = true;
  Bert ckpt(o);
  {
    torch::NoGradGuard no_grad;
    for (auto& p : ckpt->named_parameters()) p.value().copy_(plain->named_parameters()[p.key()]);
  }
  const at::Tensor ids = torch::randint(1, 50, {2, 8});
  const at::Tensor mask = torch::ones({2, 8}, torch::kLong);
  torch::manual_seed(7);
  plain->forward(ids, mask).tokens.pow(2).sum().backward();
  torch::manual_seed(7);
  ckpt->forward(ids, mask).tokens.pow(2).sum().backward();
  const auto a = grads(*plain), b = grads(*ckpt);
  for (size_t i = 0; i < a.size(); ++i) EXPECT_TRUE(torch::allclose(a[i], b[i], 1e-5, 1e-6)) << i;
  // The random stream after the step is the same as without checkpointing.
  torch::manual_seed(7);
  plain->forward(ids, mask).tokens.sum().backward();
  const at::Tensor after_plain = torch::rand({4});
  torch::manual_seed(7);
  ckpt->forward(ids, mask).tokens.sum().backward();
  EXPECT_TRUE(torch::equal(torch::rand({4}), after_plain));
}

TEST(ClipText, CausalAndPooledAtTheFirstEndOfText) {
  torch::manual_seed(0);
  ClipText clip(tiny_clip());
  clip->eval();
  at::Tensor ids = torch::randint(1, 48, {2, 10});
  ids[0][5] = 49;  // eos of row 0; row 1 has none and pools its last real token
  at::Tensor mask = torch::ones({2, 10}, torch::kLong);
  mask[1].narrow(0, 8, 2).zero_();
  TextFeatures f = clip->forward(ids, mask);
  EXPECT_TRUE(torch::equal(f.pooled[0], f.tokens[0][5]));
  EXPECT_TRUE(torch::equal(f.pooled[1], f.tokens[1][7]));
  // Changing a later token leaves earlier positions alone.
  at::Tensor changed = ids.clone();
  changed[0][8] = 3;
  TextFeatures g = clip->forward(changed, mask);
  EXPECT_TRUE(torch::allclose(g.tokens[0].narrow(0, 0, 8), f.tokens[0].narrow(0, 0, 8), 1e-5, 1e-6));
  EXPECT_FALSE(torch::allclose(g.tokens[0][8], f.tokens[0][8]));
  // Inputs longer than the position table are cut.
  EXPECT_EQ(clip->forward(torch::randint(1, 48, {1, 20}), torch::ones({1, 20}, torch::kLong)).tokens.size(1), 16);
}

TEST(AnatomyPool, AveragesTheTokensInsideEachMask) {
  torch::manual_seed(0);
  const at::Tensor tokens = torch::randn({1, 4, 3});  // 2x2 grid of 4x4-pixel cells
  at::Tensor masks = torch::zeros({1, 2, 8, 8});
  masks[0][0].narrow(0, 0, 4).fill_(1);                 // the top row of cells
  masks[0][1].narrow(0, 4, 4).narrow(1, 0, 2).fill_(1);  // half of the bottom-left cell: 8 pixels
  AnatomyFeatures a = anatomy_pool(tokens, {2, 2}, masks, 10);
  EXPECT_TRUE(torch::allclose(a.features[0][0], (tokens[0][0] + tokens[0][1]) / 2));
  EXPECT_TRUE(torch::allclose(a.features[0][1], tokens[0][2]));
  EXPECT_TRUE(torch::equal(a.present, torch::tensor({{1.0f, 0.0f}})));
  EXPECT_ERROR_CONTAINS(anatomy_pool(tokens, {2, 3}, masks), "4 tokens do not fill the grid [2, 3]");
}
