#include "medvlp/data/loader.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <set>

#include "../testing_util.h"
#include "medvlp/data/synthetic_cxr.h"
#include "medvlp/text/sentencepiece_tokenizer.h"

using namespace medvlp::data;

namespace {
std::shared_ptr<const Dataset> dataset() {
  SyntheticCxrOptions o;
  o.image_size = 32;
  o.train_size = 40;
  o.augment = true;
  o.shuffle_sentences = true;
  return std::make_shared<SyntheticCxrDataset>(o, Split::kTrain);
}

std::vector<Batch> epoch_batches(int64_t workers, int64_t epoch, int64_t first = 0) {
  LoaderOptions lo;
  lo.batch_size = 8;
  lo.workers = workers;
  lo.prefetch = 2;
  lo.seed = 3;
  Loader loader(dataset(), nullptr, lo);
  loader.start(epoch, first);
  std::vector<Batch> out;
  Batch b;
  while (loader.next(&b)) out.push_back(b);
  return out;
}
}  // namespace

TEST(Loader, OutputIsIdenticalWhateverTheNumberOfWorkers) {
  const auto serial = epoch_batches(0, 1);
  ASSERT_EQ(serial.size(), 5u);
  for (int64_t workers : {1, 3}) {
    const auto threaded = epoch_batches(workers, 1);
    ASSERT_EQ(threaded.size(), serial.size());
    for (size_t i = 0; i < serial.size(); ++i) {
      EXPECT_EQ(threaded[i].ids, serial[i].ids) << workers << " workers, batch " << i;
      EXPECT_EQ(threaded[i].reports, serial[i].reports);
      EXPECT_TRUE(torch::equal(threaded[i].images, serial[i].images));
    }
  }
}

TEST(Loader, EpochsShuffleDifferentlyAndAugmentDifferently) {
  const auto e0 = epoch_batches(2, 0);
  const auto e1 = epoch_batches(2, 1);
  EXPECT_NE(e0[0].ids, e1[0].ids);
  // The same case in two epochs: a different augmentation of the same patient.
  const auto ds = dataset();
  EXPECT_FALSE(torch::equal(ds->get(4, 0).image, ds->get(4, 1).image));
  EXPECT_EQ(ds->get(4, 0).labels.sum().item<float>(), ds->get(4, 1).labels.sum().item<float>());
}

TEST(Loader, StartsMidEpochExactlyWhereAFullPassWouldBe) {
  const auto full = epoch_batches(2, 2);
  const auto resumed = epoch_batches(2, 2, 3);
  ASSERT_EQ(resumed.size(), 2u);
  EXPECT_EQ(resumed[0].ids, full[3].ids);
  EXPECT_TRUE(torch::equal(resumed[1].images, full[4].images));
}

TEST(Loader, RanksSplitTheGlobalBatchWithoutOverlap) {
  LoaderOptions lo;
  lo.batch_size = 8;
  lo.world_size = 2;
  lo.workers = 0;
  std::set<int64_t> seen;
  for (int64_t rank : {0, 1}) {
    lo.rank = rank;
    Loader loader(dataset(), nullptr, lo);
    auto idx = loader.batch_indices(0, 0);
    EXPECT_EQ(idx.size(), 4u);
    seen.insert(idx.begin(), idx.end());
  }
  EXPECT_EQ(seen.size(), 8u);
}

TEST(Loader, TokenizesReportsWithATrainedSentencePieceModel) {
  medvlp::testing_util::TempDir dir;
  std::vector<std::string> corpus;
  for (int i = 0; i < 200; ++i) corpus.push_back(dataset()->get(i % 40, -1).report);
  auto tok = medvlp::text::SentencePieceTokenizer::train(corpus, dir.path() + "/t.model", {200, "unigram", 1.0});
  EXPECT_GT(tok->vocab_size(), 50);
  const auto again = medvlp::text::SentencePieceTokenizer::train(corpus, dir.path() + "/u.model", {200, "unigram", 1.0});
  EXPECT_EQ(tok->encode_plain("No pleural effusion."), again->encode_plain("No pleural effusion."));
  EXPECT_EQ(tok->decode(tok->encode_plain("no pleural effusion.")), "no pleural effusion.");
  LoaderOptions lo;
  lo.batch_size = 4;
  lo.max_text_len = 12;
  Loader loader(dataset(), tok, lo);
  loader.start(0);
  Batch b;
  ASSERT_TRUE(loader.next(&b));
  EXPECT_EQ(b.token_ids.sizes(), (std::vector<int64_t>{4, 12}));
  EXPECT_EQ(b.token_ids[0][0].item<int64_t>(), tok->begin_id());
  // Truncation keeps the end token.
  EXPECT_EQ(b.token_ids[0][11].item<int64_t>(), tok->end_id());
  EXPECT_ERROR_CONTAINS(medvlp::text::SentencePieceTokenizer::load(dir.path() + "/missing.model"),
                        "missing.model: cannot load SentencePiece model");
}
