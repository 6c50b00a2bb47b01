#include "medvlp/data/report_structure.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <fstream>

#include "../testing_util.h"
#include "medvlp/data/synthetic_cxr.h"
#include "medvlp/data/synthetic_ct.h"
#include "medvlp/text/report_io.h"
#include "medvlp/text/wordpiece.h"

using namespace medvlp;

namespace {

const std::vector<std::string> kCxrAnatomies = {"right upper lung", "right lower lung", "left upper lung",
                                                "left lower lung",  "heart",            "mediastinum",
                                                "pleura",           "bones"};

data::ReportStructureOptions cxr_options() {
  data::ReportStructureOptions o;
  o.lexicon = "chest_xray";
  o.knowledge = "chest_xray";
  for (const auto& a : kCxrAnatomies) o.anatomies.push_back({a, {}});
  o.tags = {"pleural effusion", "consolidation", "pneumothorax", "cardiomegaly", "nodule"};
  o.units = {true, true, true, true};
  return o;
}

const char* kReport =
    "FINDINGS: There is a small right pleural effusion. Patchy consolidation in the left lower lobe. "
    "The heart is normal in size. No pneumothorax.\n"
    "IMPRESSION: Possible nodule in the right upper lobe.";

size_t index_of(const std::string& anatomy) {
  return static_cast<size_t>(std::find(kCxrAnatomies.begin(), kCxrAnatomies.end(), anatomy) - kCxrAnatomies.begin());
}

}  // namespace

TEST(ReportStructure, AnatomyTextsCollectTheSentencesAboutEachAnatomyElseTheNormalTemplate) {
  const data::ReportStructurer s(cxr_options());
  const auto r = s.structure(kReport, "r1");
  ASSERT_FALSE(r->empty);
  EXPECT_EQ(r->anatomy_text[index_of("pleura")], "There is a small right pleural effusion.");
  EXPECT_EQ(r->anatomy_text[index_of("left lower lung")], "Patchy consolidation in the left lower lobe.");
  // An uncertain finding is described but does not make the anatomy abnormal.
  EXPECT_EQ(r->anatomy_text[index_of("right upper lung")], "Possible nodule in the right upper lobe.");
  // "The heart is normal in size" states no abnormality: fVLM's normal template.
  EXPECT_EQ(r->anatomy_text[index_of("heart")], "heart shows no significant abnormalities.");
  EXPECT_EQ(r->anatomy_text[index_of("bones")], "bones shows no significant abnormalities.");
  const std::vector<float> abnormal = {0, 0, 0, 1, 0, 0, 1, 0}, normal = {0, 1, 1, 0, 1, 1, 0, 1};
  EXPECT_EQ(r->anatomy_abnormal, abnormal);
  EXPECT_EQ(r->anatomy_normal, normal);
  EXPECT_EQ(r->sentences,
            (std::vector<std::string>{"There is a small right pleural effusion.",
                                      "Patchy consolidation in the left lower lobe.", "The heart is normal in size.",
                                      "No pneumothorax.", "Possible nodule in the right upper lobe."}));
}

TEST(ReportStructure, AStatementAboutTheLungsReachesEveryLungZoneButTheChestReachesNone) {
  const data::ReportStructurer s(cxr_options());
  const auto r = s.structure("Diffuse consolidation throughout the lungs.", "r2");
  for (const auto& zone : {"right upper lung", "right lower lung", "left upper lung", "left lower lung"}) {
    EXPECT_EQ(r->anatomy_text[index_of(zone)], "Diffuse consolidation throughout the lungs.") << zone;
    EXPECT_EQ(r->anatomy_abnormal[index_of(zone)], 1.f) << zone;
  }
  EXPECT_EQ(r->anatomy_abnormal[index_of("heart")], 0.f);
  EXPECT_EQ(r->anatomy_abnormal[index_of("bones")], 0.f);
}

TEST(ReportStructure, CoversMapAMaskToSeveralLexiconAnatomies) {
  data::ReportStructureOptions o = cxr_options();
  o.anatomies = {{"right side", {"right lung", "right pleura"}}, {"heart", {}}};
  const data::ReportStructurer s(o);
  const auto r = s.structure(kReport, "r1");
  EXPECT_EQ(r->anatomy_text[0],
            "There is a small right pleural effusion. Possible nodule in the right upper lobe.");
  EXPECT_EQ(r->anatomy_abnormal, (std::vector<float>{1, 0}));
  o.anatomies = {{"spleen", {}}};
  EXPECT_ERROR_CONTAINS(data::ReportStructurer{o}, "\"spleen\" is not an anatomy of lexicon chest_xray");
}

TEST(ReportStructure, EntitiesArePresentFindingsWithTheirKnowledgeAndTagsAreTheParserLabels) {
  const data::ReportStructurer s(cxr_options());
  const auto r = s.structure(kReport, "r1");
  ASSERT_EQ(r->entities.size(), 2u);
  EXPECT_EQ(r->entities[0].location, "right pleura");
  EXPECT_EQ(r->entities[0].detail, "small");
  EXPECT_EQ(r->entities[0].disease, "pleural effusion");
  EXPECT_EQ(r->entities[1].location, "left lower lung");
  EXPECT_EQ(r->entities[1].disease, "consolidation");
  const auto& diseases = s.disease_names();
  EXPECT_EQ(diseases[static_cast<size_t>(r->entity_disease[0])], "pleural effusion");
  EXPECT_EQ(diseases[static_cast<size_t>(r->entity_disease[1])], "consolidation");
  // Tags equal the parser's labels over the tag list: present 1, absent 0, uncertain/unmentioned -1.
  // "The heart is normal in size" states cardiomegaly absent; "Possible nodule" is uncertain.
  EXPECT_EQ(r->tags, (std::vector<float>{1, 1, 0, 0, -1}));
  const text::ReportParser parser(text::Lexicon::load(text::config_file("lexicons", "chest_xray")));
  EXPECT_EQ(r->tags, parser.parse(kReport).labels(s.options().tags));

  // A normal report yields one "no finding" entity.
  const auto normal = s.structure("The lungs are clear. No pleural effusion or pneumothorax.", "n");
  ASSERT_EQ(normal->entities.size(), 1u);
  EXPECT_EQ(diseases[static_cast<size_t>(normal->entity_disease[0])], "no finding");
}

TEST(ReportStructure, HeldOutFindingsLeaveTheEntityTextsButNotTheTags) {
  data::ReportStructureOptions o = cxr_options();
  o.hold_out = {"pleural effusion"};
  const data::ReportStructurer s(o);
  const auto r = s.structure(kReport, "r1");
  ASSERT_EQ(r->entities.size(), 1u);
  EXPECT_EQ(r->entities[0].disease, "consolidation");
  EXPECT_EQ(r->tags, (std::vector<float>{1, 1, 0, 0, -1}));  // tags still see it
  // A report whose only finding is held out says nothing to learn from: no entity, not "no finding".
  EXPECT_TRUE(s.structure("There is a large left pleural effusion.", "e")->entities.empty());
  ASSERT_EQ(s.structure("The lungs are clear.", "n")->entities.size(), 1u);
  o.hold_out = {"pleural effusions"};
  EXPECT_ERROR_CONTAINS(data::ReportStructurer{o}, "data.report.hold_out: \"pleural effusions\" is not a finding of lexicon chest_xray");
}

TEST(ReportStructure, ReportsThatCannotBeStructuredGiveAnEmptyStructureAndAreCounted) {
  const data::ReportStructurer s(cxr_options());
  for (const std::string& bad : {std::string(), std::string("FINDINGS:\nIMPRESSION:\n"), std::string("Effusion \xff\xfe.")}) {
    const auto r = s.structure(bad, "bad");
    EXPECT_TRUE(r->empty) << bad;
    EXPECT_TRUE(r->sentences.empty());
    EXPECT_EQ(r->anatomy_normal, std::vector<float>(kCxrAnatomies.size(), 0.f)) << "an empty report claims nothing";
    EXPECT_EQ(r->tags, std::vector<float>(5, -1.f));
  }
  EXPECT_EQ(s.empty_reports(), 3);
  // Structuring is cached: the same report again is not counted again.
  s.structure("", "bad");
  EXPECT_EQ(s.empty_reports(), 3);
  EXPECT_EQ(s.structured_reports(), 3);
}

TEST(ReportStructure, FillTokenizesEveryUnitWithMasksAndMasksEntitiesOnlyInTraining) {
  data::ReportStructureOptions o = cxr_options();
  o.max_sentences = 4;
  o.max_entities = 3;
  o.entity_mask = 0.5;
  const data::ReportStructurer s(o);
  std::vector<std::string> corpus = {kReport, "The lungs are clear.", "FINDINGS: Moderate cardiomegaly."};
  text::WordPieceTrainOptions wo;
  wo.vocab_size = 300;
  const text::WordPieceTokenizer tok(text::train_wordpiece(corpus, wo), wo.tokenizer);
  std::vector<data::Sample> samples(3);
  for (size_t i = 0; i < 3; ++i) samples[i].id = "s" + std::to_string(i), samples[i].report = corpus[i];
  data::Batch batch;
  s.fill(&batch, samples, tok, /*training=*/false, 7, 0);
  ASSERT_TRUE(batch.anatomy_ids.defined());
  EXPECT_EQ(batch.anatomy_ids.sizes(), (std::vector<int64_t>{3, 8, o.anatomy_max_len}));
  EXPECT_EQ(batch.sentence_ids.sizes(), (std::vector<int64_t>{3, 4, o.sentence_max_len}));
  EXPECT_EQ(batch.entity_ids.sizes(), (std::vector<int64_t>{3, 3, o.entity_max_len}));
  EXPECT_EQ(batch.tags.sizes(), (std::vector<int64_t>{3, 5}));
  // Sentences beyond max_sentences are dropped; padding units are masked out.
  EXPECT_EQ(batch.sentence_mask[0].sum().item<float>(), 4.f);
  EXPECT_EQ(batch.sentence_mask[1].sum().item<float>(), 1.f);
  EXPECT_EQ(batch.entity_mask[0].sum().item<float>(), 2.f);
  EXPECT_EQ(batch.entity_mask[2].sum().item<float>(), 1.f);
  // The tokens of the first anatomy text decode back to its text (lower-cased by the tokenizer).
  const auto r = s.structure(kReport, "s0");
  std::vector<int64_t> ids;
  const at::Tensor row = batch.anatomy_ids[0][static_cast<int64_t>(index_of("pleura"))];
  const at::Tensor keep = batch.anatomy_attention[0][static_cast<int64_t>(index_of("pleura"))];
  for (int64_t i = 1; i < row.size(0) && keep[i].item<int64_t>() == 1; ++i)
    if (row[i].item<int64_t>() != tok.end_id()) ids.push_back(row[i].item<int64_t>());
  EXPECT_EQ(tok.decode(ids), "there is a small right pleural effusion.");
  EXPECT_EQ(batch.anatomy_text_hash[0][static_cast<int64_t>(index_of("pleura"))].item<int64_t>(),
            data::text_hash(r->anatomy_text[index_of("pleura")]));

  // In evaluation entity texts are whole; in training some elements read "mask", as a function of
  // (seed, epoch, id) alone.
  data::Batch again, train_a, train_b, train_epoch;
  s.fill(&again, samples, tok, false, 7, 3);
  EXPECT_TRUE(torch::equal(batch.entity_ids, again.entity_ids));
  s.fill(&train_a, samples, tok, true, 7, 1);
  s.fill(&train_b, samples, tok, true, 7, 1);
  s.fill(&train_epoch, samples, tok, true, 7, 2);
  EXPECT_TRUE(torch::equal(train_a.entity_ids, train_b.entity_ids));
  EXPECT_FALSE(torch::equal(train_a.entity_ids, batch.entity_ids));
  EXPECT_FALSE(torch::equal(train_a.entity_ids, train_epoch.entity_ids));

  // Token ids are cached: a second fill (from the cache) equals the tokenizer's own encoding, and a
  // different tokenizer gets its own ids, not the cached ones.
  data::Batch cached;
  s.fill(&cached, samples, tok, false, 7, 0);
  EXPECT_TRUE(torch::equal(cached.anatomy_ids, batch.anatomy_ids));
  EXPECT_TRUE(torch::equal(cached.sentence_attention, batch.sentence_attention));
  const auto direct = tok.encode({r->anatomy_text[index_of("pleura")]}, o.anatomy_max_len);
  EXPECT_TRUE(torch::equal(cached.anatomy_ids[0][static_cast<int64_t>(index_of("pleura"))], direct.ids[0]));
  std::vector<std::string> other_corpus = {"quartz zebra xylophone jukebox effusion effusion pleural pleural"};
  other_corpus.insert(other_corpus.end(), corpus.begin(), corpus.end());
  const text::WordPieceTokenizer other(text::train_wordpiece(other_corpus, wo), wo.tokenizer);
  data::Batch by_other;
  s.fill(&by_other, samples, other, false, 7, 0);
  const auto other_direct = other.encode({r->anatomy_text[index_of("pleura")]}, o.anatomy_max_len);
  ASSERT_FALSE(torch::equal(other_direct.ids[0], direct.ids[0])) << "the two vocabularies should split it differently";
  EXPECT_TRUE(torch::equal(by_other.anatomy_ids[0][static_cast<int64_t>(index_of("pleura"))], other_direct.ids[0]));
}

TEST(ReportStructure, ImportedAnnotationsReplaceTheParserAndDisagreementsNameTheReportAndLine) {
  testing_util::TempDir dir;
  const std::string path = dir.path() + "/ann.jsonl";
  const std::string report = "Small left effusion. Heart normal.";
  {
    std::ofstream f(path);
    f << R"({"id": "a1", "sentences": [{"text": "Small left effusion.", "begin": 0, "end": 20}],)"
      << R"( "triplets": [{"anatomy": "left pleura", "finding": "pleural effusion", "existence": "present", "sentence": 0}]})"
      << "\n\n"
      << R"({"id": "a2", "triplets": [{"anatomy": "heart", "finding": "cardiomegaly", "existence": "present"}]})" << "\n";
  }
  data::ReportStructureOptions o = cxr_options();
  o.annotations = path;
  const data::ReportStructurer s(o);
  const auto a1 = s.structure(report, "a1");
  EXPECT_EQ(a1->anatomy_text[index_of("pleura")], "Small left effusion.");
  EXPECT_EQ(a1->tags, (std::vector<float>{1, -1, -1, -1, -1}));
  // Without sentences, the report is split by the parser and a triplet speaks for itself.
  const auto a2 = s.structure("Enlarged heart.", "a2");
  EXPECT_EQ(a2->anatomy_text[index_of("heart")], "cardiomegaly in the heart.");
  EXPECT_EQ(a2->sentences, (std::vector<std::string>{"Enlarged heart."}));
  EXPECT_ERROR_CONTAINS(s.structure(report, "a3"), "no annotation for report id \"a3\"");
  EXPECT_ERROR_CONTAINS(s.structure("Another report entirely.", "a1"), "ann.jsonl:1: report a1: sentences[0]");
  {
    std::ofstream f(path, std::ios::app);
    f << R"({"id": "a1", "triplets": []})" << "\n";
  }
  EXPECT_ERROR_CONTAINS(data::ReportStructurer{o}, "ann.jsonl:4: report a1 is annotated twice (first at");
}

TEST(ReportStructure, CtPhantomReportsGiveEachOrganItsSentence) {
  data::ReportStructureOptions o;
  o.lexicon = "chest_ct";
  for (const auto& a : data::ct_anatomies()) o.anatomies.push_back({a, {}});
  o.tags = data::ct_findings();
  const data::ReportStructurer s(o);
  data::SyntheticCtOptions co;
  co.size = {16, 32, 32};
  const data::SyntheticCtDataset ds(co, data::Split::kTrain);
  for (int64_t i = 0; i < 40; ++i) {
    const data::Sample sample = ds.get(i, -1);
    const auto r = s.structure(sample.report, sample.id);
    // The tags are the phantom's own labels, and an organ is abnormal exactly when a finding sits in it.
    for (size_t k = 0; k < o.tags.size(); ++k)
      EXPECT_EQ(r->tags[k] > 0, sample.labels[static_cast<int64_t>(k)].item<float>() > 0) << sample.report;
    const auto organ = [&](const std::string& name) {
      const auto& names = data::ct_anatomies();
      return r->anatomy_abnormal[static_cast<size_t>(std::find(names.begin(), names.end(), name) - names.begin())] > 0;
    };
    const auto has = [&](const std::string& finding) {
      const auto& names = data::ct_findings();
      return sample.labels[std::find(names.begin(), names.end(), finding) - names.begin()].item<float>() > 0;
    };
    EXPECT_EQ(organ("liver"), has("hepatic lesion")) << sample.report;
    EXPECT_EQ(organ("spleen"), has("splenomegaly")) << sample.report;
    EXPECT_EQ(organ("heart"), has("cardiomegaly")) << sample.report;
    EXPECT_EQ(organ("aorta"), has("aortic aneurysm")) << sample.report;
    EXPECT_EQ(organ("right kidney") || organ("left kidney"), has("kidney cyst")) << sample.report;
    EXPECT_EQ(organ("right lung") || organ("left lung"), has("lung nodule") || has("consolidation")) << sample.report;
  }
}
