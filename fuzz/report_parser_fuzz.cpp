// libFuzzer target: any bytes as a radiology report, through sections, sentences, the triplet
// parser, the existence engine and BERT's pre-tokenizer. Only medvlp::Error may escape.
#include <cstdint>
#include <string>

#include "medvlp/core/error.h"
#include "medvlp/text/report_parser.h"
#include "medvlp/text/wordpiece.h"

namespace {
const medvlp::text::ReportParser& parser() {
  static const medvlp::text::ReportParser p(medvlp::text::Lexicon::load(MEDVLP_LEXICON_DIR "/chest_xray.yaml"));
  return p;
}
const medvlp::text::ReportParser& ct_parser() {
  static const medvlp::text::ReportParser p(medvlp::text::Lexicon::load(MEDVLP_LEXICON_DIR "/chest_ct.yaml"));
  return p;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  try {
    const auto report = parser().parse(text, "fuzz");
    for (const auto& t : report.triplets)
      if (t.begin > t.end || t.end > text.size() || t.sentence < 0 || t.sentence >= static_cast<int>(report.sentences.size()))
        __builtin_trap();
    ct_parser().parse(text, "fuzz");
  } catch (const medvlp::Error&) {
  }
  try {
    const size_t tab = text.find('\t');
    if (tab != std::string::npos) parser().lexicon().impl();  // keep the lexicon alive
    static const auto cues = medvlp::text::CueSet::load(MEDVLP_LEXICON_DIR "/cues.yaml");
    if (tab != std::string::npos) cues->existence(text.substr(0, tab), text.substr(tab + 1));
  } catch (const medvlp::Error&) {
  }
  try {
    medvlp::text::bert_pre_tokenize(text, {});
  } catch (const medvlp::Error&) {
  }
  return 0;
}
