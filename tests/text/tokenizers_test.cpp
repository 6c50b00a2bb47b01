// WordPiece, CLIP BPE and the Unicode helpers, against hand-derived expectations. Exact agreement
// with Hugging Face's implementation on >1,000 sentences is checked by tests/js/tokenizer_check.cjs.
#include <fstream>

#include <nlohmann/json.hpp>

#include <torch/torch.h>

#include "../testing_util.h"
#include "medvlp/text/clip_bpe.h"
#include "medvlp/text/factory.h"
#include "medvlp/text/unicode.h"
#include "medvlp/text/wordpiece.h"

namespace medvlp::text {
namespace {

using testing_util::TempDir;

std::vector<std::string> small_vocab() {
  return {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "un", "##aff", "##able", "the", "heart", "is", "enlarged",
          ".", ",", "!", "中", "cafe", "effusion", "##s", "no", "a", "##b", "##c", "1", "##5", "cm"};
}

void write(const std::string& path, const std::string& text) {
  std::ofstream(path, std::ios::binary) << text;
}

TEST(Unicode, Utf8ValidationFindsTheBadByte) {
  EXPECT_EQ(invalid_utf8_offset("abc"), std::string::npos);
  EXPECT_EQ(invalid_utf8_offset("a\xC3\xA9"), std::string::npos);
  EXPECT_EQ(invalid_utf8_offset("ab\xC0\xAF"), 2u);          // overlong '/'
  EXPECT_EQ(invalid_utf8_offset("\xED\xA0\x80"), 0u);        // surrogate
  EXPECT_EQ(invalid_utf8_offset("ok\xE2\x82"), 2u);          // truncated
  EXPECT_ERROR_CONTAINS(decode_utf8("x\xFF", "report r1"), "report r1: invalid UTF-8 at byte 1");
  EXPECT_EQ(encode_utf8(decode_utf8("na\xC3\xAFve \xF0\x9F\x98\x80")), "na\xC3\xAFve \xF0\x9F\x98\x80");
}

TEST(Unicode, LowerCasingAndNormalizationFollowUnicode) {
  EXPECT_EQ(encode_utf8(to_lower(decode_utf8("\xC3\x89TAT \xCE\xA3\xCE\x9F\xCE\xA3"))),  // ÉTAT ΣΟΣ -> final sigma
            "\xC3\xA9tat \xCF\x83\xCE\xBF\xCF\x82");
  EXPECT_EQ(nfd(decode_utf8("\xC3\xA9")).size(), 2u);
  EXPECT_EQ(encode_utf8(nfc(nfd(decode_utf8("\xC3\xA9")))), "\xC3\xA9");
  EXPECT_TRUE(is_punctuation(U'$'));    // ASCII symbol: BERT counts it
  EXPECT_TRUE(is_punctuation(U'\u00BF'));  // ¿ (Po)
  EXPECT_FALSE(is_punctuation(U'\u00B0'));  // ° is a symbol (So), not punctuation
  EXPECT_TRUE(is_whitespace(U'\u3000'));
  EXPECT_TRUE(is_control(U'\u200B'));   // zero width space is Cf
  EXPECT_TRUE(is_cjk(U'\u4E2D'));
}

TEST(WordPiece, PreTokenizerFollowsBert) {
  WordPieceOptions o;
  const auto words = bert_pre_tokenize("  H\xC3\xA9llo,\tW\xC3\xB6rld!\x01 \xE4\xB8\xAD\xE6\x96\x87x 1.5cm", o);
  const std::vector<std::string> expected = {"hello", ",", "world", "!", "\xE4\xB8\xAD", "\xE6\x96\x87", "x", "1", ".", "5cm"};
  EXPECT_EQ(words, expected);
  o.lowercase = false;
  EXPECT_EQ(bert_pre_tokenize("H\xC3\xA9llo", o), std::vector<std::string>{"H\xC3\xA9llo"});
  o.strip_accents = 1;
  EXPECT_EQ(bert_pre_tokenize("H\xC3\xA9llo", o), std::vector<std::string>{"Hello"});
}

TEST(WordPiece, GreedyLongestMatchFirst) {
  WordPieceTokenizer tok(small_vocab());
  EXPECT_EQ(tok.tokenize("Unaffable!"), (std::vector<std::string>{"un", "##aff", "##able", "!"}));
  EXPECT_EQ(tok.tokenize("The heart is ENLARGED."), (std::vector<std::string>{"the", "heart", "is", "enlarged", "."}));
  // A word with a piece missing is one [UNK], not a partial split.
  EXPECT_EQ(tok.tokenize("unaffx effusions"), (std::vector<std::string>{"[UNK]", "effusion", "##s"}));
  EXPECT_EQ(tok.tokenize("Caf\xC3\xA9 \xE4\xB8\xAD"), (std::vector<std::string>{"cafe", "\xE4\xB8\xAD"}));
  // Over-long words are [UNK] even when they could be split.
  std::string long_word = "a";
  for (int i = 0; i < 100; ++i) long_word += "b";
  EXPECT_EQ(tok.tokenize(long_word), std::vector<std::string>{"[UNK]"});
  EXPECT_EQ(tok.tokenize(long_word.substr(0, 100)).size(), 100u);
  // Special tokens written in the text stay whole.
  EXPECT_EQ(tok.tokenize("no [MASK] effusion"), (std::vector<std::string>{"no", "[MASK]", "effusion"}));
}

TEST(WordPiece, EncodeAddsSpecialsAndPads) {
  WordPieceTokenizer tok(small_vocab());
  const auto batch = tok.encode({"the heart", "un"}, 5);
  EXPECT_TRUE(torch::equal(batch.ids, torch::tensor({2, 8, 9, 3, 0, 2, 5, 3, 0, 0}, torch::kLong).view({2, 5})));
  EXPECT_TRUE(torch::equal(batch.mask, torch::tensor({1, 1, 1, 1, 0, 1, 1, 1, 0, 0}, torch::kLong).view({2, 5})));
  EXPECT_EQ(tok.decode(tok.encode_plain("The heart is unaffable , no !")), "the heart is unaffable, no!");
}

// Hugging Face's tokenizer.json (tokens checked against the JS reference in
// Tokenizers.MatchHuggingFaceTokenizersJs): its own options are used, and what medvlp does not
// implement is refused by name.
TEST(TokenizerJson, OptionsAreReadAndUnsupportedPipelinesNamed) {
  TempDir dir;
  const std::string vocab = R"("vocab": {"[PAD]": 0, "[UNK]": 1, "[CLS]": 2, "[SEP]": 3, "[MASK]": 4, "Café": 5, "café": 6})";
  write(dir.path() + "/cased.json",
        std::string(R"({"model": {"type": "WordPiece", "unk_token": "[UNK]", )") + vocab +
            R"(}, "normalizer": {"type": "BertNormalizer", "lowercase": false, "strip_accents": null},
               "pre_tokenizer": {"type": "BertPreTokenizer"}})");
  TokenizerSpec spec;
  spec.model = dir.path() + "/cased.json";
  EXPECT_EQ(load_tokenizer(spec)->encode_plain("Café café"), (std::vector<int64_t>{5, 6}));
  write(dir.path() + "/gpt2.json", R"({"model": {"type": "BPE", "vocab": {"a": 0}, "merges": []}})");
  spec.model = dir.path() + "/gpt2.json";
  EXPECT_ERROR_CONTAINS(load_tokenizer(spec), "gpt2.json: model: a BPE without end_of_word_suffix");
  write(dir.path() + "/nfkc.json", std::string(R"({"model": {"type": "WordPiece", )") + vocab +
                                       R"(}, "normalizer": {"type": "NFKC"}, "pre_tokenizer": {"type": "BertPreTokenizer"}})");
  spec.model = dir.path() + "/nfkc.json";
  EXPECT_ERROR_CONTAINS(load_tokenizer(spec), "nfkc.json: normalizer \"NFKC\": only BERT's");
  write(dir.path() + "/gap.json", R"({"model": {"type": "WordPiece", "vocab": {"[UNK]": 0, "x": 5}}})");
  spec.model = dir.path() + "/gap.json";
  EXPECT_ERROR_CONTAINS(load_tokenizer(spec), "gap.json: model.vocab: ids must be 0..1 once each");
  write(dir.path() + "/unigram.json", R"({"model": {"type": "Unigram", "vocab": {}}})");
  spec.model = dir.path() + "/unigram.json";
  EXPECT_ERROR_CONTAINS(load_tokenizer(spec), "model.type \"Unigram\": expected WordPiece or BPE");
}

// Hugging Face model folders (tokens checked against the JS reference in
// Tokenizers.MatchHuggingFaceTokenizersJs): tokenizer_config.json's special tokens, strings or
// AddedToken objects, are those of the vocabulary; a folder without a tokenizer says what it wants.
TEST(TokenizerFolder, ConfigSpecialTokensAndMissingFilesNamed) {
  TempDir dir;
  std::filesystem::create_directories(dir.path() + "/bert");
  write(dir.path() + "/bert/vocab.txt", "<pad>\n<unk>\n<s>\n</s>\n<mask>\nCafé\ncafé\n");
  write(dir.path() + "/bert/tokenizer_config.json",
        R"({"do_lower_case": false, "unk_token": "<unk>", "cls_token": "<s>", "sep_token": "</s>", "pad_token": "<pad>",
            "mask_token": {"__type": "AddedToken", "content": "<mask>"}})");
  TokenizerSpec spec;
  spec.model = dir.path() + "/bert";
  const auto t = load_tokenizer(spec);
  EXPECT_EQ(t->encode_plain("Café café <mask>"), (std::vector<int64_t>{5, 6, 4}));
  EXPECT_EQ(t->encode_plain("Cafe"), (std::vector<int64_t>{1}));  // cased: no accent stripping either
  write(dir.path() + "/bert/tokenizer_config.json", R"({"do_lower_case": "yes"})");
  EXPECT_ERROR_CONTAINS(load_tokenizer(spec), "tokenizer_config.json: do_lower_case: expected true or false, got \"yes\"");
  std::filesystem::create_directories(dir.path() + "/empty");
  spec.model = dir.path() + "/empty";
  EXPECT_ERROR_CONTAINS(load_tokenizer(spec), "/empty: no tokenizer in this folder: expected tokenizer.json, vocab.txt");
}

TEST(WordPiece, VocabularyFilesAreValidated) {
  TempDir dir;
  EXPECT_ERROR_CONTAINS(WordPieceTokenizer::load(dir.path() + "/none.txt"), "none.txt: cannot open");
  write(dir.path() + "/dup.txt", "[PAD]\n[UNK]\n[CLS]\n[SEP]\nx\nx\n");
  EXPECT_ERROR_CONTAINS(WordPieceTokenizer::load(dir.path() + "/dup.txt"), "\"x\" appears twice (lines 5 and 6)");
  write(dir.path() + "/nounk.txt", "[PAD]\n[CLS]\n[SEP]\nx\n");
  EXPECT_ERROR_CONTAINS(WordPieceTokenizer::load(dir.path() + "/nounk.txt"), "nounk.txt: WordPiece: the vocabulary has no unknown token");
  write(dir.path() + "/bad.txt", "[PAD]\n[UNK]\n\xFF\n");
  EXPECT_ERROR_CONTAINS(WordPieceTokenizer::load(dir.path() + "/bad.txt"), "bad.txt:3: invalid UTF-8");
  WordPieceTokenizer tok(small_vocab());
  tok.save(dir.path() + "/vocab.txt");
  EXPECT_EQ(WordPieceTokenizer::load(dir.path() + "/vocab.txt")->vocab(), small_vocab());
  EXPECT_ERROR_CONTAINS(tok.decode({999}), "id 999 outside the vocabulary");
}

TEST(WordPiece, TrainerLearnsTheCorpusDeterministically) {
  std::vector<std::string> corpus;
  for (int i = 0; i < 50; ++i) {
    corpus.push_back("There is a small left pleural effusion. No pneumothorax.");
    corpus.push_back("Moderate cardiomegaly. The lungs are clear without consolidation.");
  }
  WordPieceTrainOptions o;
  o.vocab_size = 120;
  const auto vocab = train_wordpiece(corpus, o);
  EXPECT_EQ(vocab, train_wordpiece(corpus, o));
  EXPECT_LE(vocab.size(), 120u);
  EXPECT_EQ(std::vector<std::string>(vocab.begin(), vocab.begin() + 5),
            (std::vector<std::string>{"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"}));
  WordPieceTokenizer tok(vocab);
  const auto ids = tok.encode_plain(corpus[0] + " " + corpus[1]);
  EXPECT_EQ(std::count(ids.begin(), ids.end(), tok.unk_id()), 0);
  // Frequent words become single tokens once there is room.
  EXPECT_EQ(tok.tokenize("effusion"), std::vector<std::string>{"effusion"});
  EXPECT_EQ(tok.decode(ids), "there is a small left pleural effusion. no pneumothorax. moderate cardiomegaly. the lungs are "
                             "clear without consolidation.");
}

// A CLIP vocabulary: the 256 byte characters and their word-final forms, then merged tokens.
struct ClipFiles {
  std::string vocab, merges;
};

ClipFiles write_clip(const std::string& dir, const std::vector<std::string>& merges) {
  std::vector<std::string> tokens;
  char32_t next = 256;
  for (int b = 0; b < 256; ++b) {
    const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
    tokens.push_back(encode_utf8(std::u32string(1, printable ? static_cast<char32_t>(b) : next++)));
  }
  const size_t base = tokens.size();
  for (size_t i = 0; i < base; ++i) tokens.push_back(tokens[i] + "</w>");
  for (const auto& m : merges) tokens.push_back(m.substr(0, m.find(' ')) + m.substr(m.find(' ') + 1));
  tokens.push_back("<|startoftext|>");
  tokens.push_back("<|endoftext|>");
  nlohmann::json j = nlohmann::json::object();
  for (size_t i = 0; i < tokens.size(); ++i) j[tokens[i]] = i;
  ClipFiles f{dir + "/vocab.json", dir + "/merges.txt"};
  write(f.vocab, j.dump());
  std::string m = "#version: 0.2\n";
  for (const auto& x : merges) m += x + "\n";
  write(f.merges, m);
  return f;
}

TEST(ClipBpe, MergesByRankWithWordEnds) {
  TempDir dir;
  const auto f = write_clip(dir.path(), {"h e", "l l", "he ll", "hell o</w>", "n o</w>"});
  auto tok = ClipBpeTokenizer::load(f.vocab, f.merges);
  EXPECT_EQ(tok->tokenize("Hello  HELLO, no!"),
            (std::vector<std::string>{"hello</w>", "hello</w>", ",</w>", "no</w>", "!</w>"}));
  // Letters run together, digits split one by one, contractions split off.
  EXPECT_EQ(tok->tokenize("he's 12"), (std::vector<std::string>{"h", "e</w>", "'", "s</w>", "1</w>", "2</w>"}));
  // Non-ASCII letters go through the byte table.
  EXPECT_EQ(tok->tokenize("\xC3\xA9").size(), 2u);
  EXPECT_EQ(tok->decode(tok->encode_plain("Hello,  caf\xC3\xA9 no!")), "hello , caf\xC3\xA9 no !");
  const auto batch = tok->encode({"no"}, 4);
  EXPECT_EQ(batch.ids[0][0].item<int64_t>(), tok->begin_id());
  EXPECT_EQ(batch.ids[0][2].item<int64_t>(), tok->end_id());
  EXPECT_EQ(batch.ids[0][3].item<int64_t>(), tok->pad_id());
  EXPECT_EQ(tok->encode_plain("<|startoftext|>no")[0], tok->begin_id());
}

TEST(ClipBpe, FilesAreValidated) {
  TempDir dir;
  write(dir.path() + "/v.json", "{\"a\": 0,");
  write(dir.path() + "/m.txt", "a b\n");
  EXPECT_ERROR_CONTAINS(ClipBpeTokenizer::load(dir.path() + "/v.json", dir.path() + "/m.txt"), "v.json: not valid JSON");
  write(dir.path() + "/v.json", "{\"a\": 0}");
  EXPECT_ERROR_CONTAINS(ClipBpeTokenizer::load(dir.path() + "/v.json", dir.path() + "/m.txt"), "has no <|startoftext|> token");
  write(dir.path() + "/v.json", "{\"a\": 0, \"<|startoftext|>\": 1, \"<|endoftext|>\": 2}");
  write(dir.path() + "/m.txt", "#version: 0.2\na b c\n");
  EXPECT_ERROR_CONTAINS(ClipBpeTokenizer::load(dir.path() + "/v.json", dir.path() + "/m.txt"), "merge 1 \"a b c\" is not two tokens");
  EXPECT_ERROR_CONTAINS(load_tokenizer({"clip_bpe", dir.path() + "/v.json", "", true}), "merges.txt not given");
  EXPECT_ERROR_CONTAINS(load_tokenizer({"gpt", "x", "", true}), "expected sentencepiece, wordpiece or clip_bpe");
}

}  // namespace
}  // namespace medvlp::text
