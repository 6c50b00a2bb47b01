#include "medvlp/text/factory.h"

#include "medvlp/core/error.h"
#include "medvlp/text/clip_bpe.h"
#include "medvlp/text/sentencepiece_tokenizer.h"
#include "medvlp/text/wordpiece.h"

namespace medvlp::text {

std::shared_ptr<Tokenizer> load_tokenizer(const TokenizerSpec& spec) {
  MEDVLP_CHECK(!spec.model.empty(), "tokenizer ", spec.kind, ": no model/vocabulary file given");
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
