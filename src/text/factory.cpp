#include "medvlp/text/factory.h"

#include <unordered_map>

#include <nlohmann/json.hpp>

#include "medvlp/core/error.h"
#include "medvlp/io/files.h"
#include "medvlp/text/clip_bpe.h"
#include "medvlp/text/sentencepiece_tokenizer.h"
#include "medvlp/text/wordpiece.h"

namespace medvlp::text {

namespace {

// Hugging Face's tokenizer.json when `path` is one (a JSON object with a "model" object), else null.
std::shared_ptr<Tokenizer> load_tokenizer_json(const std::string& path) {
  if (!io::has_suffix(path, ".json")) return nullptr;
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(io::read_file(path));
  } catch (const nlohmann::json::exception& e) {
    throw Error(path + ": invalid JSON (" + e.what() + ")");
  }
  if (!j.is_object() || !j.contains("model") || !j["model"].is_object()) return nullptr;  // CLIP's vocab.json
  try {
    const nlohmann::json& model = j["model"];
    const std::string type = model.value("type", std::string());
    MEDVLP_CHECK(model.contains("vocab") && model["vocab"].is_object(), path, ": model.vocab: expected a token -> id map");
    if (type == "WordPiece") {
      std::vector<std::string> vocab(model["vocab"].size());
      for (const auto& [token, id] : model["vocab"].items()) {
        MEDVLP_CHECK(id.is_number_integer() && id.get<int64_t>() >= 0 && id.get<size_t>() < vocab.size() &&
                         vocab[id.get<size_t>()].empty(),
                     path, ": model.vocab: ids must be 0..", vocab.size() - 1, " once each (\"", token, "\")");
        vocab[id.get<size_t>()] = token;
      }
      WordPieceOptions o;
      o.unk = model.value("unk_token", o.unk);
      o.continuing_prefix = model.value("continuing_subword_prefix", o.continuing_prefix);
      o.max_input_chars_per_word = model.value("max_input_chars_per_word", o.max_input_chars_per_word);
      const nlohmann::json& norm = j.contains("normalizer") ? j["normalizer"] : nlohmann::json();
      if (norm.is_null()) {
        o.lowercase = false, o.clean_text = false, o.handle_chinese_chars = false, o.strip_accents = 0;
      } else {
        MEDVLP_CHECK(norm.value("type", std::string()) == "BertNormalizer", path, ": normalizer \"",
                     norm.value("type", std::string("?")), "\": only BERT's (BertNormalizer) is supported with WordPiece");
        o.lowercase = norm.value("lowercase", true);
        o.clean_text = norm.value("clean_text", true);
        o.handle_chinese_chars = norm.value("handle_chinese_chars", true);
        o.strip_accents = !norm.contains("strip_accents") || norm["strip_accents"].is_null() ? -1
                          : norm["strip_accents"].get<bool>()                                  ? 1
                                                                                               : 0;
      }
      const nlohmann::json& pre = j.contains("pre_tokenizer") ? j["pre_tokenizer"] : nlohmann::json();
      MEDVLP_CHECK(pre.is_object() && pre.value("type", std::string()) == "BertPreTokenizer", path,
                   ": pre_tokenizer: only BERT's (BertPreTokenizer) is supported with WordPiece");
      return std::make_shared<WordPieceTokenizer>(std::move(vocab), o);
    }
    if (type == "BPE") {
      // CLIP's byte-level BPE with "</w>" word ends is the one medvlp implements (its NFC /
      // white-space / lower-case normalizer and word pattern are built in).
      MEDVLP_CHECK(model.value("end_of_word_suffix", std::string()) == "</w>", path,
                   ": model: a BPE without end_of_word_suffix \"</w>\" (GPT-2 style) is not supported; CLIP's is");
      std::unordered_map<std::string, int64_t> vocab;
      for (const auto& [token, id] : model["vocab"].items()) {
        MEDVLP_CHECK(id.is_number_integer(), path, ": model.vocab.", token, ": expected an integer id");
        vocab[token] = id.get<int64_t>();
      }
      std::vector<std::string> merges;
      MEDVLP_CHECK(model.contains("merges") && model["merges"].is_array(), path, ": model.merges: expected a list");
      for (const auto& m : model["merges"]) {
        if (m.is_string()) merges.push_back(m.get<std::string>());  // "a b" (tokenizers < 0.20)
        else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string())
          merges.push_back(m[0].get<std::string>() + " " + m[1].get<std::string>());  // ["a", "b"]
        else throw Error(path + ": model.merges: expected \"a b\" or [\"a\", \"b\"], got " + m.dump());
      }
      return std::make_shared<ClipBpeTokenizer>(std::move(vocab), merges);
    }
    throw Error(path + ": model.type \"" + type + "\": expected WordPiece or BPE");
  } catch (const nlohmann::json::exception& e) {
    throw Error(path + ": unexpected value (" + e.what() + ")");
  }
}

// A special token in tokenizer_config.json: a string, or an AddedToken object {"content": ...}.
std::string special_token(const nlohmann::json& config, const char* key, const std::string& fallback,
                          const std::string& path) {
  if (!config.contains(key) || config[key].is_null()) return fallback;
  const nlohmann::json& v = config[key];
  if (v.is_string()) return v.get<std::string>();
  if (v.is_object() && v.contains("content") && v["content"].is_string()) return v["content"].get<std::string>();
  throw Error(path + ": " + key + ": expected a token string or {\"content\": ...}, got " + v.dump());
}

// A Hugging Face model folder: its tokenizer.json when it has one (the fast tokenizer, complete),
// else the slow tokenizer's files with tokenizer_config.json's options, as transformers reads them.
std::shared_ptr<Tokenizer> load_tokenizer_folder(const std::string& dir) {
  const auto in = [&](const char* name) { return dir + "/" + name; };
  if (io::path_exists(in("tokenizer.json"))) {
    auto t = load_tokenizer_json(in("tokenizer.json"));
    MEDVLP_CHECK(t != nullptr, in("tokenizer.json"), ": expected a Hugging Face tokenizer (an object with a \"model\")");
    return t;
  }
  nlohmann::json config = nlohmann::json::object();
  if (io::path_exists(in("tokenizer_config.json"))) {
    try {
      config = nlohmann::json::parse(io::read_file(in("tokenizer_config.json")));
    } catch (const nlohmann::json::exception& e) {
      throw Error(in("tokenizer_config.json") + ": invalid JSON (" + e.what() + ")");
    }
    MEDVLP_CHECK(config.is_object(), in("tokenizer_config.json"), ": expected a JSON object");
  }
  const std::string cfg = in("tokenizer_config.json");
  const auto flag = [&](const char* key, bool fallback) {
    if (!config.contains(key) || config[key].is_null()) return fallback;
    MEDVLP_CHECK(config[key].is_boolean(), cfg, ": ", key, ": expected true or false, got ", config[key].dump());
    return config[key].get<bool>();
  };
  if (io::path_exists(in("vocab.txt"))) {  // BertTokenizer
    WordPieceOptions o;
    o.lowercase = flag("do_lower_case", true);
    o.handle_chinese_chars = flag("tokenize_chinese_chars", true);
    if (config.contains("strip_accents") && !config["strip_accents"].is_null())
      o.strip_accents = flag("strip_accents", false) ? 1 : 0;
    o.unk = special_token(config, "unk_token", o.unk, cfg);
    o.cls = special_token(config, "cls_token", o.cls, cfg);
    o.sep = special_token(config, "sep_token", o.sep, cfg);
    o.pad = special_token(config, "pad_token", o.pad, cfg);
    o.mask = special_token(config, "mask_token", o.mask, cfg);
    return WordPieceTokenizer::load(in("vocab.txt"), o);
  }
  if (io::path_exists(in("vocab.json")) && io::path_exists(in("merges.txt")))  // CLIPTokenizer
    return ClipBpeTokenizer::load(in("vocab.json"), in("merges.txt"));
  for (const char* name : {"spiece.model", "sentencepiece.bpe.model", "tokenizer.model"})
    if (io::path_exists(in(name))) return SentencePieceTokenizer::load(in(name));
  throw Error(dir + ": no tokenizer in this folder: expected tokenizer.json, vocab.txt (BERT), vocab.json + "
                    "merges.txt (CLIP) or a SentencePiece model (spiece.model, sentencepiece.bpe.model, tokenizer.model)");
}

}  // namespace

std::shared_ptr<Tokenizer> load_tokenizer(const TokenizerSpec& spec) {
  MEDVLP_CHECK(!spec.model.empty(), "tokenizer ", spec.kind, ": no model/vocabulary file given");
  // A Hugging Face model folder says itself which tokenizer it holds.
  if (io::is_directory(spec.model)) return load_tokenizer_folder(spec.model);
  // A Hugging Face tokenizer.json names its own kind and options.
  if (spec.merges.empty())
    if (auto hf = load_tokenizer_json(spec.model)) return hf;
  if (spec.kind == "sentencepiece") return SentencePieceTokenizer::load(spec.model);
  if (spec.kind == "wordpiece") {
    WordPieceOptions o;
    o.lowercase = spec.lowercase;
    return WordPieceTokenizer::load(spec.model, o);
  }
  if (spec.kind == "clip_bpe") {
    MEDVLP_CHECK(!spec.merges.empty(), "tokenizer clip_bpe: merges.txt not given (text.merges)");
    return ClipBpeTokenizer::load(spec.model, spec.merges);
  }
  throw Error("tokenizer \"" + spec.kind + "\": expected sentencepiece, wordpiece or clip_bpe");
}

}  // namespace medvlp::text
