// libFuzzer target: the WordPiece and CLIP BPE tokenizers. First byte % 3 == 0: the rest is text,
// encoded, round-tripped through decode and encoded at a fixed length by both tokenizers over
// small vocabularies. 1: the rest is a vocabulary (vocab.txt, or vocab.json NUL merges.txt),
// loaded and, when it loads, used. 2: the rest is a Hugging Face tokenizer.json given to
// load_tokenizer. Only medvlp::Error may escape; ids must lie in the vocabulary.
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>

#include "medvlp/core/error.h"
#include "temp_file.h"
#include "medvlp/text/clip_bpe.h"
#include "medvlp/text/factory.h"
#include "medvlp/text/wordpiece.h"

namespace {
void use(const medvlp::text::Tokenizer& tok, const std::string& text) {
  const auto ids = tok.encode_plain(text);
  for (const int64_t id : ids)
    if (id < 0 || id >= tok.vocab_size()) __builtin_trap();
  (void)tok.decode(ids);
  (void)tok.encode({text, ""}, 8);
}

const medvlp::text::WordPieceTokenizer& wordpiece() {
  static const medvlp::text::WordPieceTokenizer t({"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "no", "pleural",
                                                   "effusion", "##s", "left", ".", ",", "pneumo", "##thorax", "é"});
  return t;
}

const medvlp::text::ClipBpeTokenizer& clip() {
  static const medvlp::text::ClipBpeTokenizer t(
      {{"<|startoftext|>", 0}, {"<|endoftext|>", 1}, {"n", 2}, {"o", 3}, {"no</w>", 4}, {"e", 5}, {"f", 6},
       {"ef", 7}, {"s</w>", 8}, {".</w>", 9}, {"o</w>", 10}, {"n</w>", 11}, {"e</w>", 12}, {"f</w>", 13}},
      {"n o</w>", "e f"});
  return t;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const std::string bytes(reinterpret_cast<const char*>(data) + 1, size - 1);
  if (data[0] % 3 == 2) {
    const std::string path = medvlp::fuzz::write_temp(bytes, "tok_fuzz", "_tokenizer.json");
    try {
      medvlp::text::TokenizerSpec spec;
      spec.model = path;
      // A file that is not a tokenizer.json then goes to WordPiece's reader: the SentencePiece
      // plugin is loaded with RTLD_DEEPBIND, which ASan refuses.
      spec.kind = "wordpiece";
      use(*medvlp::text::load_tokenizer(spec), "No pleural effusions, [MASK] left. Café");
    } catch (const medvlp::Error&) {
    }
    std::remove(path.c_str());
    return 0;
  }
  if (data[0] % 3 == 0) {
    try {
      use(wordpiece(), bytes);
    } catch (const medvlp::Error&) {
    }
    try {
      use(clip(), bytes);
    } catch (const medvlp::Error&) {
    }
    return 0;
  }
  const size_t nul = bytes.find('\0');
  std::string a, b;
  try {
    if (nul == std::string::npos) {
      a = medvlp::fuzz::write_temp(bytes, "tok_fuzz", "_vocab.txt");
      use(*medvlp::text::WordPieceTokenizer::load(a), "No pleural effusions, [MASK] left.");
    } else {
      a = medvlp::fuzz::write_temp(bytes.substr(0, nul), "tok_fuzz", "_vocab.json");
      b = medvlp::fuzz::write_temp(bytes.substr(nul + 1), "tok_fuzz", "_merges.txt");
      use(*medvlp::text::ClipBpeTokenizer::load(a, b), "No pleural effusions, left.");
    }
  } catch (const medvlp::Error&) {
  }
  if (!a.empty()) std::remove(a.c_str());
  if (!b.empty()) std::remove(b.c_str());
  return 0;
}
