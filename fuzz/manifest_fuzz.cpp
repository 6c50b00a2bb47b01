// libFuzzer target: JSONL manifest lines (what dataset builders and export scripts write). Every
// line must parse into an entry, be skipped (blank, other split) or throw medvlp::Error naming it.
#include <cstddef>
#include <cstdint>
#include <string>

#include "medvlp/core/error.h"
#include "medvlp/data/manifest.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::vector<std::string> findings = {"pneumothorax", "pleural effusion", "nodule"};
  const std::string text(reinterpret_cast<const char*>(data), size);
  size_t start = 0;
  for (int line = 1; start <= text.size(); ++line) {
    size_t end = text.find('\n', start);
    if (end == std::string::npos) end = text.size();
    try {
      const auto entry = medvlp::data::parse_manifest_line(text.substr(start, end - start), "fuzz.jsonl:" + std::to_string(line),
                                                           "/data", "train", findings, line % 2 == 0);
      if (entry && (entry->image_path.empty() || (!entry->labels.empty() && entry->labels.size() != findings.size())))
        __builtin_trap();
      if (entry)
        for (const auto& b : entry->boxes)
          if (b.finding < 0 || b.finding >= static_cast<int64_t>(findings.size())) __builtin_trap();
    } catch (const medvlp::Error&) {
    }
    start = end + 1;
  }
  return 0;
}
