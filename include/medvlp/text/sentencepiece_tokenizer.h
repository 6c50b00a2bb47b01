#pragma once
// SentencePiece tokenizer (libsentencepiece): load a .model, or train one on a report corpus.

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "medvlp/text/tokenizer.h"

namespace medvlp::text {

/// Options for training a SentencePiece model on reports.
struct SentencePieceTrainOptions {
  int64_t vocab_size = 512;           // upper bound; small corpora get fewer pieces
  std::string model_type = "unigram";  // unigram | bpe | word | char
  double character_coverage = 1.0;
};

/// A SentencePiece model with ids pad=0, unk=1, bos=2, eos=3 when trained by medvlp;
/// a loaded model must define pad, bos and eos pieces. libsentencepiece is reached through a
/// small plugin (libmedvlp_spm.so, found next to libmedvlp.so or at $MEDVLP_SPM_PLUGIN) so its
/// embedded protobuf cannot clash with LibTorch's.
class SentencePieceTokenizer : public Tokenizer {
 public:
  /// Loads a .model file; medvlp::Error naming the file if it is missing or invalid.
  static std::shared_ptr<SentencePieceTokenizer> load(const std::string& model_path);
  /// Trains on `corpus` (one document per entry), writes `model_path`, returns the loaded model.
  /// Training is single-threaded so the same corpus always yields the same model.
  static std::shared_ptr<SentencePieceTokenizer> train(const std::vector<std::string>& corpus,
                                                       const std::string& model_path,
                                                       const SentencePieceTrainOptions& options = {});
  ~SentencePieceTokenizer() override;

  std::vector<int64_t> encode_plain(const std::string& text) const override;
  std::string decode(const std::vector<int64_t>& ids) const override;
  int64_t vocab_size() const override;
  int64_t pad_id() const override { return pad_; }
  int64_t begin_id() const override { return bos_; }
  int64_t end_id() const override { return eos_; }

 private:
  SentencePieceTokenizer() = default;
  std::shared_ptr<void> handle_;
  int64_t pieces_ = 0, pad_ = 0, bos_ = 2, eos_ = 3;
};

}  // namespace medvlp::text
