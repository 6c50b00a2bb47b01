// Weight loading under the original libraries' names: renaming, strict reports, adaptations,
// export round trips, and the composed model's freezing and config-driven loading.
#include "medvlp/models/weights.h"

#include <filesystem>
#include <fstream>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "../testing_util.h"
#include "medvlp/core/config.h"
#include "medvlp/models/bert.h"
#include "medvlp/models/resnet.h"
#include "medvlp/models/vit.h"
#include "medvlp/models/vlp_model.h"

using namespace medvlp::models;
using medvlp::io::TensorMap;

namespace {

VitOptions small_vit(int64_t in_channels = 1) {
  VitOptions o;
  o.image_size = {32, 32}, o.patch_size = {8, 8}, o.in_channels = in_channels;
  o.dim = 32, o.depth = 2, o.heads = 4, o.num_classes = 5;
  return o;
}

LoadOptions format(const std::string& f, bool strict = true) {
  LoadOptions o;
  o.format = f, o.strict = strict, o.source = "w.safetensors";
  return o;
}

}  // namespace

TEST(Weights, TorchvisionVitNamesRoundTrip) {
  torch::manual_seed(0);
  Vit a(small_vit()), b(small_vit());
  a->eval(), b->eval();
  const TensorMap exported = export_weights(*a, "vit", "torchvision");
  for (const char* name : {"class_token", "conv_proj.weight", "encoder.pos_embedding",
                           "encoder.layers.encoder_layer_1.self_attention.in_proj_weight",
                           "encoder.layers.encoder_layer_0.mlp.3.bias", "encoder.ln.weight", "heads.head.bias"})
    EXPECT_EQ(exported.count(name), 1u) << name;
  EXPECT_EQ(exported.size(), a->named_parameters().size());
  medvlp::testing_util::TempDir dir;
  medvlp::io::save_safetensors(dir.path() + "/vit.safetensors", exported);
  const LoadReport r = load_weights_file(*b, "vit", dir.path() + "/vit.safetensors", format("torchvision"));
  EXPECT_TRUE(r.complete()) << r.summary();
  const at::Tensor x = torch::randn({2, 1, 32, 32});
  EXPECT_TRUE(torch::equal(a->logits(x), b->logits(x)));
}

TEST(Weights, StrictLoadNamesEveryProblemAndChangesNothing) {
  torch::manual_seed(0);
  ResNetOptions o;
  o.depth = 18, o.in_channels = 1;
  ResNet net(o);
  TensorMap tensors = export_weights(*net, "resnet", "torchvision");
  tensors.erase("layer2.0.bn1.running_mean");
  tensors["layer9.0.conv1.weight"] = torch::zeros({1});
  tensors["layer1.0.conv1.weight"] = torch::zeros({64, 64, 5, 5});
  tensors["bn1.weight"] = torch::full({64}, 7.0);
  const at::Tensor before = net->named_parameters()["bn1.weight"].clone();
  EXPECT_ERROR_CONTAINS(load_weights(*net, "resnet", tensors, format("torchvision")),
                        "w.safetensors: weights (format torchvision) do not match the resnet encoder");
  try {
    load_weights(*net, "resnet", tensors, format("torchvision"));
  } catch (const medvlp::Error& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("missing [layer2.0.bn1.running_mean]"), std::string::npos) << m;
    EXPECT_NE(m.find("unexpected [layer9.0.conv1.weight]"), std::string::npos) << m;
    EXPECT_NE(m.find("layer1.0.conv1.weight: checkpoint [64, 64, 5, 5] vs model [64, 64, 3, 3]"), std::string::npos)
        << m;
  }
  EXPECT_TRUE(torch::equal(net->named_parameters()["bn1.weight"], before));  // nothing half-loaded
  // Non-strict: what matches is loaded, the rest reported.
  const LoadReport r = load_weights(*net, "resnet", tensors, format("torchvision", false));
  EXPECT_EQ(r.missing.size(), 1u);
  EXPECT_EQ(r.unexpected.size(), 1u);
  EXPECT_EQ(r.mismatched.size(), 1u);
  EXPECT_TRUE(torch::equal(net->named_parameters()["bn1.weight"], torch::full({64}, 7.0)));
  EXPECT_ERROR_CONTAINS(load_weights(*net, "resnet", tensors, format("hf")),
                        "format \"hf\" is not known for resnet encoders (known: medvlp, timm, torchvision)");
}

TEST(Weights, HalfPrecisionFilesLoadIntoFloatParameters) {
  torch::manual_seed(0);
  Vit a(small_vit()), b(small_vit());
  TensorMap half;
  for (const auto& [name, t] : export_weights(*a, "vit", "timm")) half[name] = t.to(torch::kBFloat16);
  medvlp::testing_util::TempDir dir;
  medvlp::io::save_safetensors(dir.path() + "/bf16.safetensors", half);
  EXPECT_TRUE(load_weights_file(*b, "vit", dir.path() + "/bf16.safetensors", format("timm")).complete());
  const at::Tensor w = b->named_parameters()["blocks.0.attn.qkv.weight"];
  EXPECT_EQ(w.scalar_type(), torch::kFloat);
  EXPECT_TRUE(torch::equal(w, half["blocks.0.attn.qkv.weight"].to(torch::kFloat)));
}

// Hugging Face's sharded layout (transformers' save_pretrained with max_shard_size): shards named
// model-0000K-of-0000N.safetensors and model.safetensors.index.json whose "weight_map" names each
// tensor's shard. Read from the index or from the folder, the weights equal the unsharded file's.
TEST(Weights, ShardedCheckpointsAndModelFoldersAsHuggingFaceWritesThem) {
  torch::manual_seed(0);
  Vit a(small_vit()), b(small_vit()), c(small_vit());
  const TensorMap all = export_weights(*a, "vit", "timm");
  medvlp::testing_util::TempDir dir;
  const std::string folder = dir.path() + "/vit-small";
  std::filesystem::create_directories(folder);
  TensorMap first, second;
  nlohmann::json map = nlohmann::json::object();
  size_t k = 0;
  for (const auto& [name, t] : all) {
    const bool one = k++ < all.size() / 2;
    (one ? first : second)[name] = t;
    map[name] = one ? "model-00001-of-00002.safetensors" : "model-00002-of-00002.safetensors";
  }
  medvlp::io::save_safetensors(folder + "/model-00001-of-00002.safetensors", first);
  medvlp::io::save_safetensors(folder + "/model-00002-of-00002.safetensors", second);
  const auto write_index = [&](const nlohmann::json& weight_map) {
    std::ofstream(folder + "/model.safetensors.index.json")
        << nlohmann::json{{"metadata", {{"total_size", 0}}}, {"weight_map", weight_map}}.dump(2);
  };
  write_index(map);
  const TensorMap read = read_weight_tensors(folder);
  ASSERT_EQ(read.size(), all.size());
  for (const auto& [name, t] : all) EXPECT_TRUE(torch::equal(read.at(name), t)) << name;
  EXPECT_TRUE(load_weights_file(*b, "vit", folder + "/model.safetensors.index.json", format("timm")).complete());
  for (const auto& item : a->named_parameters())
    EXPECT_TRUE(torch::equal(b->named_parameters()[item.key()], item.value())) << item.key();

  // A folder with one model.safetensors is read as that file.
  medvlp::testing_util::TempDir single;
  medvlp::io::save_safetensors(single.path() + "/model.safetensors", all);
  EXPECT_TRUE(load_weights_file(*c, "vit", single.path(), format("timm")).complete());

  // Broken layouts name the index and what is wrong.
  const std::string index = folder + "/model.safetensors.index.json";
  nlohmann::json moved = map;
  moved[all.begin()->first] = "model-00002-of-00002.safetensors";
  write_index(moved);
  EXPECT_ERROR_CONTAINS(read_weight_tensors(index),
                        index + ": weight_map puts " + all.begin()->first + " in model-00002-of-00002.safetensors, "
                                "which does not hold it");
  nlohmann::json missing = map;
  missing[all.begin()->first] = "model-00003-of-00003.safetensors";
  write_index(missing);
  EXPECT_ERROR_CONTAINS(read_weight_tensors(index), index + ": shard model-00003-of-00003.safetensors (1 tensor, e.g. " +
                                                        all.begin()->first + ") is missing");
  medvlp::io::save_safetensors(folder + "/model-00002-of-00002.safetensors", all);  // also holds the first shard's
  write_index(map);
  EXPECT_ERROR_CONTAINS(read_weight_tensors(index), "and by another shard");
  std::ofstream(index) << "{\"weight_map\": [1, 2]}";
  EXPECT_ERROR_CONTAINS(read_weight_tensors(index), index + ": expected a JSON object with a \"weight_map\" object");
  std::ofstream(index) << "{\"weight_map\": {\"x\": \"../model.safetensors\"}}";
  EXPECT_ERROR_CONTAINS(read_weight_tensors(index), "is not a file name beside the index");
  EXPECT_ERROR_CONTAINS(read_weight_tensors(dir.path()), "must hold model.safetensors or model.safetensors.index.json");
}

TEST(Weights, RgbStemAndAnotherGridAreAdapted) {
  torch::manual_seed(0);
  Vit rgb(small_vit(3)), gray(small_vit(1));
  TensorMap tensors = export_weights(*rgb, "vit", "timm");
  LoadReport r = load_weights(*gray, "vit", tensors, format("timm"));
  ASSERT_EQ(r.adapted.size(), 1u) << r.summary();
  EXPECT_TRUE(torch::allclose(gray->named_parameters()["patch_embed.proj.weight"],
                              tensors["patch_embed.proj.weight"].sum(1, true)));
  // A gray image through the summed stem equals the RGB network on the image replicated thrice.
  gray->eval(), rgb->eval();
  const at::Tensor x = torch::randn({1, 1, 32, 32});
  EXPECT_TRUE(torch::allclose(gray->forward(x).pooled, rgb->forward(x.expand({1, 3, 32, 32})).pooled, 1e-4, 1e-5));
  // Weights made for 16-pixel inputs (a 2x2 grid) load into the 4x4 grid with a resampled embedding.
  VitOptions small = small_vit(1);
  small.image_size = {16, 16};
  Vit other(small);
  r = load_weights(*gray, "vit", export_weights(*other, "vit", "timm"), format("timm"));
  ASSERT_EQ(r.adapted.size(), 1u) << r.summary();
  EXPECT_EQ(r.adapted[0], "pos_embed: [1, 5, 32] -> [1, 17, 32]");
  EXPECT_TRUE(torch::allclose(gray->named_parameters()["pos_embed"],
                              VitImpl::resample_position_embedding(other->named_parameters()["pos_embed"], {2, 2}, {4, 4})));
}

TEST(Weights, HuggingFaceBertCheckpointsWithPrefixesAndHeads) {
  torch::manual_seed(0);
  BertOptions o;
  o.vocab_size = 40, o.hidden = 16, o.layers = 1, o.heads = 2, o.intermediate = 32, o.max_position = 20;
  o.max_len = 20;
  o.pooling = "attention";
  Bert a(o), b(o);
  TensorMap hf;
  for (const auto& [name, t] : export_weights(*a, "bert", "hf", a->extra_parameters())) {
    std::string n = "bert." + name;
    const auto ln = n.find("LayerNorm.weight");
    if (ln != std::string::npos) n = n.substr(0, ln) + "LayerNorm.gamma";  // a TF-converted checkpoint
    hf[n] = t;
  }
  hf["cls.predictions.bias"] = torch::zeros({40});
  hf["bert.embeddings.position_ids"] = torch::arange(20).unsqueeze(0);
  LoadOptions opts = format("hf");
  opts.keep_missing = b->extra_parameters();  // the attention pool is medvlp's own
  const LoadReport r = load_weights(*b, "bert", hf, opts);
  EXPECT_TRUE(r.complete()) << r.summary();
  EXPECT_EQ(r.dropped.size(), 2u);
  b->eval(), a->eval();
  const at::Tensor ids = torch::randint(0, 40, {2, 6});
  const at::Tensor mask = torch::ones({2, 6}, torch::kLong);
  EXPECT_TRUE(torch::equal(a->hidden_states(ids, mask).back(), b->hidden_states(ids, mask).back()));
  EXPECT_EQ(import_name("clip_text", "hf", "vision_model.encoder.layers.0.mlp.fc1.weight"), "");
  EXPECT_EQ(import_name("clip_text", "hf", "text_model.final_layer_norm.bias"), "text_model.final_layer_norm.bias");
}

TEST(VlpModel, BuildsZooEncodersLoadsWeightsAndFreezes) {
  torch::manual_seed(0);
  medvlp::testing_util::TempDir dir;
  ResNetOptions o;
  o.depth = 18, o.in_channels = 3, o.num_classes = 1000;
  ResNet imagenet(o);
  TensorMap weights = export_weights(*imagenet, "resnet", "torchvision");
  medvlp::io::save_safetensors(dir.path() + "/r18.safetensors", weights);
  const std::string yaml = "model:\n  embed_dim: 16\n  anatomy_pooling: true\n  freeze: ['image.layer1.*', 'image.conv1.*']\n"
                           "  image: {name: resnet18, weights: " + dir.path() + "/r18.safetensors, weights_format: torchvision, weights_strict: false}\n"
                           "  text: {name: bert, hidden: 32, layers: 2, heads: 4, intermediate: 64, max_position: 32}\n";
  medvlp::core::Config config = medvlp::core::Config::parse(yaml, "test.yaml");
  VlpModel model = build_model(config.root().at("model"), 100);
  config.check_all_used();
  // fc is not in the encoder (num_classes 0) and conv1 is summed to one channel.
  const at::Tensor conv1 = model->named_parameters()["image.conv1.weight"];
  EXPECT_TRUE(torch::allclose(conv1, weights["conv1.weight"].sum(1, true)));
  EXPECT_TRUE(torch::equal(model->named_parameters()["image.layer2.1.bn2.bias"], weights["layer2.1.bn2.bias"]));
  EXPECT_FALSE(conv1.requires_grad());
  EXPECT_FALSE(model->named_parameters()["image.layer1.0.conv2.weight"].requires_grad());
  EXPECT_TRUE(model->named_parameters()["image.layer2.0.conv1.weight"].requires_grad());
  EXPECT_ERROR_CONTAINS(model->freeze({"image.layr1.*"}), "freeze: pattern \"image.layr1.*\" matches no parameter");

  medvlp::data::Batch batch;
  batch.images = torch::randn({2, 1, 64, 64});
  batch.token_ids = torch::randint(0, 100, {2, 8});
  batch.attention_mask = torch::ones({2, 8}, torch::kLong);
  batch.anatomy_masks = torch::zeros({2, 3, 64, 64});
  batch.anatomy_masks.narrow(2, 0, 32).fill_(1);
  Encoded e = model->forward(batch);
  EXPECT_EQ(e.image_embed.sizes(), (std::vector<int64_t>{2, 16}));
  EXPECT_EQ(e.anatomy_image.sizes(), (std::vector<int64_t>{2, 3, 16}));
  EXPECT_TRUE(torch::allclose(e.anatomy_image.norm(2, -1), torch::ones({2, 3}), 1e-5, 1e-5));
  EXPECT_EQ(e.grid, (std::vector<int64_t>{2, 2}));

  // A strict load of a checkpoint for another network names the config key and the file.
  medvlp::core::Config bad = medvlp::core::Config::parse(
      "model:\n  image: {name: resnet34, weights: " + dir.path() + "/r18.safetensors, weights_format: torchvision}\n"
      "  text: {name: bert, hidden: 32, layers: 1, heads: 4, intermediate: 64, max_position: 32}\n", "bad.yaml");
  EXPECT_ERROR_CONTAINS(build_model(bad.root().at("model"), 100), "model.image.weights (" + dir.path() + "/r18.safetensors)");
}

TEST(VlpModel, EncodesTextUnitsLikeSeparateReportsAndSkipsPadding) {
  // Anatomy texts, sentences and entities go through one deduplicated, chunked pass: each unit must
  // come out as if it were encoded alone, and padding units must stay zero.
  const auto config = medvlp::core::Config::parse(R"(
model:
  embed_dim: 8
  local_dim: 6
  entity_reference: true
  text_chunk: 3
  image: {name: small_cnn, channels: [4, 8]}
  text: {name: small_transformer, dim: 8, layers: 1, heads: 2, ff_dim: 16, max_len: 12}
)", "units.yaml");
  torch::manual_seed(3);
  VlpModel model = build_model(config.root().at("model"), 50);
  model->eval();
  const int64_t B = 2, U = 4, L = 7;
  at::Tensor ids = torch::randint(3, 50, {B, U, L}, torch::kLong);
  ids[1][2] = ids[0][1].clone();  // a repeated unit (the normal template, say)
  ids[1][3] = ids[0][1].clone();
  at::Tensor attention = torch::ones({B, U, L}, torch::kLong);
  attention[0][3].narrow(0, 4, 3).zero_();  // a shorter unit
  at::Tensor units = torch::ones({B, U});
  units[1][3] = 0;  // padding
  medvlp::data::Batch batch;
  batch.images = torch::rand({B, 1, 32, 32});
  batch.token_ids = torch::randint(3, 50, {B, L}, torch::kLong);
  batch.attention_mask = torch::ones({B, L}, torch::kLong);
  batch.anatomy_ids = ids;
  batch.anatomy_attention = attention;
  batch.entity_ids = ids;
  batch.entity_attention = attention;
  batch.entity_mask = units;
  batch.sentence_ids = ids;
  batch.sentence_attention = attention;
  batch.sentence_mask = units;
  torch::NoGradGuard no_grad;
  const Encoded e = model->forward(batch);
  ASSERT_EQ(e.anatomy_text.sizes(), (std::vector<int64_t>{B, U, 8}));
  ASSERT_EQ(e.sentence_embed.sizes(), (std::vector<int64_t>{B, U, 6}));
  for (int64_t b = 0; b < B; ++b)
    for (int64_t u = 0; u < U; ++u) {
      const at::Tensor alone = model->encode_texts(ids[b][u].unsqueeze(0), attention[b][u].unsqueeze(0))[0];
      EXPECT_TRUE(torch::allclose(e.anatomy_text[b][u], alone, 1e-5, 1e-6)) << b << "," << u;
      if (units[b][u].item<float>() > 0) {
        EXPECT_TRUE(torch::allclose(e.entity_embed[b][u], alone, 1e-5, 1e-6)) << b << "," << u;
        EXPECT_NEAR(e.entity_reference[b][u].norm().item<float>(), 1.0, 1e-5);
      } else {
        EXPECT_EQ(e.entity_embed[b][u].abs().sum().item<float>(), 0.f);
        EXPECT_EQ(e.sentence_embed[b][u].abs().sum().item<float>(), 0.f);
      }
    }
  EXPECT_EQ(e.image_tokens.size(2), 6);  // local heads map image tokens and words into one space
  EXPECT_EQ(e.text_tokens.size(2), 6);
}

TEST(VlpModel, TokenStagesAreTheEncodersEarlierMapsThroughTheirOwnHeads) {
  // AFLoc's layout: sentences against ResNet's layer3 (1 stage back), words against layer2 (2 back),
  // the global embedding from layer4. The maps are recomputed here through torchvision's named
  // submodules, apart from the encoder's own forward.
  const auto config = medvlp::core::Config::parse(R"(
model:
  embed_dim: 8
  local_dim: 8
  token_stage: 1
  word_token_stage: 2
  image: {name: resnet18, in_channels: 1}
  text: {name: small_transformer, dim: 8, layers: 1, heads: 2, ff_dim: 8, max_len: 12}
)", "stages.yaml");
  torch::manual_seed(5);
  VlpModel model = build_model(config.root().at("model"), 50);
  model->eval();
  medvlp::data::Batch batch;
  batch.images = torch::randn({2, 1, 64, 96});
  batch.token_ids = torch::randint(3, 50, {2, 7}, torch::kLong);
  batch.attention_mask = torch::ones({2, 7}, torch::kLong);
  torch::NoGradGuard no_grad;
  const Encoded e = model->forward(batch);

  auto modules = model->image_encoder()->named_children();
  const auto run = [&](const std::string& name, const at::Tensor& x) {
    return modules[name]->as<torch::nn::SequentialImpl>()->forward(x);
  };
  auto* conv1 = modules["conv1"]->as<torch::nn::Conv2dImpl>();
  auto* bn1 = modules["bn1"]->as<torch::nn::BatchNorm2dImpl>();
  const at::Tensor x = torch::max_pool2d(torch::relu(bn1->forward(conv1->forward(batch.images))), 3, 2, 1);
  const at::Tensor layer2 = run("layer2", run("layer1", x));  // [2,128,8,12]
  const at::Tensor layer3 = run("layer3", layer2);            // [2,256,4,6]
  const auto params = model->named_parameters();
  const auto head = [&](const std::string& name, const at::Tensor& map) {
    return torch::nn::functional::linear(map.flatten(2).transpose(1, 2), params[name + ".weight"], params[name + ".bias"]);
  };
  EXPECT_EQ(e.grid, (std::vector<int64_t>{4, 6}));
  EXPECT_EQ(e.word_grid, (std::vector<int64_t>{8, 12}));
  ASSERT_EQ(e.image_tokens.sizes(), (std::vector<int64_t>{2, 24, 8}));
  ASSERT_EQ(e.word_image_tokens.sizes(), (std::vector<int64_t>{2, 96, 8}));
  EXPECT_TRUE(torch::allclose(e.image_tokens, head("image_local", layer3), 1e-5, 1e-5));
  EXPECT_TRUE(torch::allclose(e.word_image_tokens, head("image_word_local", layer2), 1e-5, 1e-5));
  EXPECT_TRUE(torch::equal(e.word_patches(), e.word_image_tokens));
  // The global embedding still pools the last stage.
  const at::Tensor layer4 = run("layer4", layer3);
  EXPECT_TRUE(torch::allclose(e.image_embed, model->encode_images(batch.images), 1e-5, 1e-6));
  EXPECT_EQ(params["image_local.weight"].size(1), 256);
  EXPECT_EQ(params["image_word_local.weight"].size(1), 128);
  EXPECT_EQ(layer4.size(1), model->image_encoder()->out_dim());
  // Localization's word maps compare the words with the stage they were trained against.
  std::vector<int64_t> map_grid;
  model->patch_similarity(batch.images, batch.token_ids, batch.attention_mask, "tokens", &map_grid);
  EXPECT_EQ(map_grid, (std::vector<int64_t>{8, 12}));
  // Sentence maps: the sentence level's patches against each text as one sentence unit.
  const at::Tensor smap = model->patch_similarity(batch.images, batch.token_ids, batch.attention_mask, "sentences", &map_grid);
  EXPECT_EQ(map_grid, (std::vector<int64_t>{4, 6}));
  const auto unit_rows = [](const at::Tensor& t) { return t / t.norm(2, -1, true); };
  const at::Tensor pooled = model->text_encoder()->forward(batch.token_ids, batch.attention_mask).pooled;  // [2,8]
  const at::Tensor sentence =
      unit_rows(torch::nn::functional::linear(pooled, params["text_local.weight"], params["text_local.bias"]));
  const at::Tensor expected = torch::einsum("bnc,tc->btn", {unit_rows(head("image_local", layer3)), sentence});
  EXPECT_TRUE(torch::allclose(smap, expected, 1e-5, 1e-5));

  // One stage for both: no separate word tokens.
  const auto same = medvlp::core::Config::parse(
      "model: {local_dim: 8, token_stage: 1, image: {name: small_cnn, channels: [4, 8, 16]},"
      " text: {name: small_transformer, dim: 8, layers: 1, heads: 2, ff_dim: 8, max_len: 12}}", "same.yaml");
  VlpModel one = build_model(same.root().at("model"), 50);
  medvlp::data::Batch small = batch;
  small.images = torch::randn({2, 1, 32, 32});
  const Encoded f = one->forward(small);
  EXPECT_EQ(f.grid, (std::vector<int64_t>{8, 8}));  // stride-1 stem, stages at 16, 8, 4
  EXPECT_FALSE(f.word_image_tokens.defined());
  EXPECT_TRUE(torch::equal(f.word_patches(), f.image_tokens));
}

TEST(VlpModel, TokenStagesOutsideTheEncoderAreConfigErrors) {
  const auto build = [](const std::string& model_yaml) {
    const auto c = medvlp::core::Config::parse("model: " + model_yaml, "bad.yaml");
    return build_model(c.root().at("model"), 50);
  };
  const std::string text = "text: {name: small_transformer, dim: 8, layers: 1, heads: 2, ff_dim: 8, max_len: 12}";
  EXPECT_ERROR_CONTAINS(build("{token_stage: 3, image: {name: small_cnn, channels: [4, 8, 16]}, " + text + "}"),
                        "model.token_stage: image encoder \"small_cnn\" has 3 stages; expected 0 (the last) to 2, got 3");
  EXPECT_ERROR_CONTAINS(
      build("{word_token_stage: 1, image: {name: vit_s16, image_size: [32, 32], depth: 1}, " + text + "}"),
      "model.word_token_stage: image encoder \"vit_s16\" hands out its last tokens only");
  EXPECT_ERROR_CONTAINS(build("{word_token_stage: 1, image: {name: small_cnn, channels: [4, 8]}, " + text + "}"),
                        "model.word_token_stage: aligns words with another stage (1) than the image tokens (0), which "
                        "needs local heads");
}
