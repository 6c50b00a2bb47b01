// libFuzzer target: the text module's files that users write or import: a lexicon YAML, a
// knowledge YAML, a cue YAML and an annotations JSONL (e.g. from a language model), picked by the
// first byte. Each must load or throw medvlp::Error; what loads is then used.
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string>

#include <nlohmann/json.hpp>

#include "medvlp/core/error.h"
#include "temp_file.h"
#include "medvlp/text/knowledge.h"
#include "medvlp/text/report_parser.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const std::string bytes(reinterpret_cast<const char*>(data) + 1, size - 1);
  std::string path;
  try {
    switch (data[0] % 4) {
      case 0: {
        path = medvlp::fuzz::write_temp(bytes, "text_fuzz", "_lexicon.yaml");
        const medvlp::text::ReportParser parser(medvlp::text::Lexicon::load(path));
        (void)parser.parse("No pleural effusion. Small left pneumothorax, possibly atelectasis.", "fuzz");
        break;
      }
      case 1: {
        path = medvlp::fuzz::write_temp(bytes, "text_fuzz", "_knowledge.yaml");
        const auto table = medvlp::text::KnowledgeTable::load(path);
        for (const auto& e : table.entries()) {
          (void)table.prompt(e.finding);
          (void)table.description(e.finding);
          (void)table.attribute_similarity(e.finding, table.entries().front().finding);
        }
        break;
      }
      case 2: {
        path = medvlp::fuzz::write_temp(bytes, "text_fuzz", "_cues.yaml");
        const auto cues = medvlp::text::CueSet::load(path);
        (void)cues->existence("There is no evidence of pneumothorax.", "pneumothorax");
        break;
      }
      default: {
        path = medvlp::fuzz::write_temp(bytes, "text_fuzz", "_annotations.jsonl");
        for (const auto& report : medvlp::text::read_annotations(path))
          (void)medvlp::text::to_json(report, {"pneumothorax"}).dump();
        break;
      }
    }
  } catch (const medvlp::Error&) {
  }
  if (!path.empty()) std::remove(path.c_str());
  return 0;
}
