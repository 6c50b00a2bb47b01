#include "spm_plugin.h"

#include <sentencepiece_processor.h>
#include <sentencepiece_trainer.h>

#include <cstring>
#include <string>
#include <unordered_map>
#include <vector>

namespace {

void set_error(char* err, size_t err_len, const std::string& message) {
  if (!err || err_len == 0) return;
  std::strncpy(err, message.c_str(), err_len - 1);
  err[err_len - 1] = '\0';
}

class DocIterator : public sentencepiece::SentenceIterator {
 public:
  DocIterator(const char* const* docs, size_t n) : docs_(docs), n_(n) { load(); }
  bool done() const override { return index_ >= n_; }
  void Next() override {
    ++index_;
    load();
  }
  const std::string& value() const override { return current_; }
  sentencepiece::util::Status status() const override { return sentencepiece::util::Status(); }

 private:
  void load() {
    if (index_ < n_) current_ = docs_[index_];
  }
  const char* const* docs_;
  size_t n_;
  size_t index_ = 0;
  std::string current_;
};

}  // namespace

extern "C" {

void* medvlp_spm_load(const char* model_path, char* err, size_t err_len) {
  auto* processor = new sentencepiece::SentencePieceProcessor();
  const auto status = processor->Load(model_path);
  if (!status.ok()) {
    set_error(err, err_len, status.ToString());
    delete processor;
    return nullptr;
  }
  return processor;
}

int medvlp_spm_train(const char* const* docs, size_t n, const char* const* args, size_t n_args, char* err,
                     size_t err_len) {
  std::unordered_map<std::string, std::string> kwargs;
  for (size_t i = 0; i + 1 < 2 * n_args; i += 2) kwargs[args[i]] = args[i + 1];
  DocIterator iterator(docs, n);
  const auto status = sentencepiece::SentencePieceTrainer::Train(kwargs, &iterator);
  if (!status.ok()) {
    set_error(err, err_len, status.ToString());
    return 1;
  }
  return 0;
}

int medvlp_spm_encode(void* handle, const char* text, int32_t* ids, size_t cap, size_t* n, char* err, size_t err_len) {
  std::vector<int> out;
  const auto status = static_cast<sentencepiece::SentencePieceProcessor*>(handle)->Encode(text, &out);
  if (!status.ok()) {
    set_error(err, err_len, status.ToString());
    return 1;
  }
  *n = out.size();
  for (size_t i = 0; i < out.size() && i < cap; ++i) ids[i] = out[i];
  return 0;
}

int medvlp_spm_decode(void* handle, const int32_t* ids, size_t n, char* out, size_t cap, size_t* len, char* err,
                      size_t err_len) {
  std::vector<int> in(ids, ids + n);
  std::string text;
  const auto status = static_cast<sentencepiece::SentencePieceProcessor*>(handle)->Decode(in, &text);
  if (!status.ok()) {
    set_error(err, err_len, status.ToString());
    return 1;
  }
  *len = text.size();
  if (cap > 0) {
    const size_t copy = text.size() < cap - 1 ? text.size() : cap - 1;
    std::memcpy(out, text.data(), copy);
    out[copy] = '\0';
  }
  return 0;
}

void medvlp_spm_info(void* handle, int32_t* pieces, int32_t* pad, int32_t* bos, int32_t* eos) {
  auto* p = static_cast<sentencepiece::SentencePieceProcessor*>(handle);
  *pieces = p->GetPieceSize();
  *pad = p->pad_id();
  *bos = p->bos_id();
  *eos = p->eos_id();
}

void medvlp_spm_free(void* handle) { delete static_cast<sentencepiece::SentencePieceProcessor*>(handle); }

}  // extern "C"
