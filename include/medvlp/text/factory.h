#pragma once
// One entry point for the tokenizers: kind + files -> a Tokenizer.

#include <memory>
#include <string>

#include "medvlp/text/tokenizer.h"

namespace medvlp::text {

/// Which tokenizer and its files. `model`: the SentencePiece .model, the WordPiece vocab.txt,
/// CLIP's vocab.json (with `merges`: CLIP's merges.txt), or a Hugging Face tokenizer.json, which
/// names its own kind and options (WordPiece with BERT's normalizer, or CLIP's BPE); `kind` and
/// `lowercase` are then not used.
struct TokenizerSpec {
  std::string kind = "sentencepiece";  // sentencepiece | wordpiece | clip_bpe
  std::string model;
  std::string merges;
  bool lowercase = true;  // WordPiece only (cased BERT vocabularies set false)
};

/// Loads the tokenizer; medvlp::Error naming the kind and file on failure.
std::shared_ptr<Tokenizer> load_tokenizer(const TokenizerSpec& spec);

}  // namespace medvlp::text
