#include "medvlp/text/sentencepiece_tokenizer.h"

#include <dlfcn.h>

#include <cstdlib>
#include <mutex>

#include "../core/library_dir.h"
#include "medvlp/core/error.h"
#include "spm_plugin/spm_plugin.h"

namespace medvlp::text {

namespace {

// The plugin's entry points, resolved once.
struct SpmApi {
  decltype(&medvlp_spm_load) load = nullptr;
  decltype(&medvlp_spm_train) train = nullptr;
  decltype(&medvlp_spm_encode) encode = nullptr;
  decltype(&medvlp_spm_decode) decode = nullptr;
  decltype(&medvlp_spm_info) info = nullptr;
  decltype(&medvlp_spm_free) free = nullptr;
};

std::string plugin_path() {
  if (const char* env = std::getenv("MEDVLP_SPM_PLUGIN")) return env;
  // The plugin is installed next to libmedvlp.so (build tree and install tree alike).
  const std::string dir = core::library_dir();
  return dir.empty() ? "libmedvlp_spm.so" : dir + "/libmedvlp_spm.so";
}

const SpmApi& api() {
  static SpmApi table;
  static std::once_flag once;
  static std::string failure;
  std::call_once(once, [] {
    const std::string path = plugin_path();
#if MEDVLP_SANITIZED
    // ASan refuses RTLD_DEEPBIND; a separate link-map namespace isolates the plugin's
    // protobuf just as well (the plugin is built without sanitizers for this).
    void* lib = ::dlmopen(LM_ID_NEWLM, path.c_str(), RTLD_NOW | RTLD_LOCAL);
#else
    void* lib = ::dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL | RTLD_DEEPBIND);
#endif
    if (!lib) {
      const char* why = ::dlerror();
      failure = "cannot load the sentencepiece plugin " + path + ": " + (why ? why : "unknown error") +
                " (set MEDVLP_SPM_PLUGIN to its path)";
      return;
    }
    table.load = reinterpret_cast<decltype(table.load)>(::dlsym(lib, "medvlp_spm_load"));
    table.train = reinterpret_cast<decltype(table.train)>(::dlsym(lib, "medvlp_spm_train"));
    table.encode = reinterpret_cast<decltype(table.encode)>(::dlsym(lib, "medvlp_spm_encode"));
    table.decode = reinterpret_cast<decltype(table.decode)>(::dlsym(lib, "medvlp_spm_decode"));
    table.info = reinterpret_cast<decltype(table.info)>(::dlsym(lib, "medvlp_spm_info"));
    table.free = reinterpret_cast<decltype(table.free)>(::dlsym(lib, "medvlp_spm_free"));
    if (!table.load || !table.train || !table.encode || !table.decode || !table.info || !table.free)
      failure = path + ": not a medvlp sentencepiece plugin (missing entry points)";
  });
  MEDVLP_CHECK(failure.empty(), failure);
  return table;
}

}  // namespace

SentencePieceTokenizer::~SentencePieceTokenizer() = default;

std::shared_ptr<SentencePieceTokenizer> SentencePieceTokenizer::load(const std::string& model_path) {
  const SpmApi& spm = api();
  char err[512] = {0};
  void* handle = spm.load(model_path.c_str(), err, sizeof(err));
  MEDVLP_CHECK(handle, model_path, ": cannot load SentencePiece model: ", err);
  std::shared_ptr<SentencePieceTokenizer> out(new SentencePieceTokenizer());
  out->handle_ = std::shared_ptr<void>(handle, spm.free);
  int32_t pieces = 0, pad = -1, bos = -1, eos = -1;
  spm.info(handle, &pieces, &pad, &bos, &eos);
  out->pieces_ = pieces;
  out->pad_ = pad;
  out->bos_ = bos;
  out->eos_ = eos;
  MEDVLP_CHECK(pad >= 0 && bos >= 0 && eos >= 0, model_path, ": the model must define pad, bos and eos pieces (got ids ",
               pad, ", ", bos, ", ", eos, ")");
  return out;
}

std::shared_ptr<SentencePieceTokenizer> SentencePieceTokenizer::train(const std::vector<std::string>& corpus,
                                                                       const std::string& model_path,
                                                                       const SentencePieceTrainOptions& options) {
  MEDVLP_CHECK(!corpus.empty(), "SentencePiece training: the corpus is empty");
  MEDVLP_CHECK(model_path.size() > 6 && model_path.substr(model_path.size() - 6) == ".model", model_path,
               ": SentencePiece model path must end in .model");
  const std::vector<std::string> args = {
      "model_prefix", model_path.substr(0, model_path.size() - 6),
      "vocab_size", std::to_string(options.vocab_size),
      "model_type", options.model_type,
      "character_coverage", std::to_string(options.character_coverage),
      "hard_vocab_limit", "false",  // a small report corpus may not support vocab_size pieces
      "pad_id", "0", "unk_id", "1", "bos_id", "2", "eos_id", "3",
      "num_threads", "1",           // single-threaded: the same corpus always yields the same model
      "minloglevel", "2",
      "normalization_rule_name", "nmt_nfkc_cf",  // case-folded: reports mix upper and lower case
  };
  std::vector<const char*> arg_ptrs, doc_ptrs;
  for (const auto& a : args) arg_ptrs.push_back(a.c_str());
  for (const auto& d : corpus) doc_ptrs.push_back(d.c_str());
  char err[512] = {0};
  const int rc = api().train(doc_ptrs.data(), doc_ptrs.size(), arg_ptrs.data(), args.size() / 2, err, sizeof(err));
  MEDVLP_CHECK(rc == 0, model_path, ": SentencePiece training failed: ", err);
  return load(model_path);
}

std::vector<int64_t> SentencePieceTokenizer::encode_plain(const std::string& text) const {
  std::vector<int32_t> ids(text.size() + 8);
  size_t n = 0;
  char err[512] = {0};
  MEDVLP_CHECK(api().encode(handle_.get(), text.c_str(), ids.data(), ids.size(), &n, err, sizeof(err)) == 0,
               "SentencePiece encode failed: ", err);
  if (n > ids.size()) {
    ids.resize(n);
    api().encode(handle_.get(), text.c_str(), ids.data(), ids.size(), &n, err, sizeof(err));
  }
  return {ids.begin(), ids.begin() + static_cast<std::ptrdiff_t>(n)};
}

std::string SentencePieceTokenizer::decode(const std::vector<int64_t>& ids) const {
  std::vector<int32_t> narrow;
  for (int64_t id : ids)
    if (id != pad_ && id != bos_ && id != eos_) narrow.push_back(static_cast<int32_t>(id));
  std::string out(narrow.size() * 16 + 16, '\0');
  size_t len = 0;
  char err[512] = {0};
  MEDVLP_CHECK(api().decode(handle_.get(), narrow.data(), narrow.size(), out.data(), out.size(), &len, err, sizeof(err)) == 0,
               "SentencePiece decode failed: ", err);
  if (len + 1 > out.size()) {
    out.assign(len + 1, '\0');
    api().decode(handle_.get(), narrow.data(), narrow.size(), out.data(), out.size(), &len, err, sizeof(err));
  }
  out.resize(len);
  return out;
}

int64_t SentencePieceTokenizer::vocab_size() const { return pieces_; }

}  // namespace medvlp::text
