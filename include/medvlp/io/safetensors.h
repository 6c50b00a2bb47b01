#pragma once
// safetensors read/write: the weight format shared with Python (safetensors, transformers, timm).

#include <map>
#include <string>

#include <ATen/Tensor.h>

namespace medvlp::io {

/// Named tensors in name order; safetensors files list them sorted too.
using TensorMap = std::map<std::string, at::Tensor>;

/// The contents of one safetensors file: CPU tensors plus the string-to-string "__metadata__".
struct SafetensorsFile {
  TensorMap tensors;
  std::map<std::string, std::string> metadata;
};

/// Writes CPU copies of `tensors` (F64/F32/F16/BF16/I64/I32/I16/I8/U8/BOOL) to `path`.
void save_safetensors(const std::string& path, const TensorMap& tensors,
                      const std::map<std::string, std::string>& metadata = {});

/// Reads and validates a file: header size, JSON, dtypes, shapes and byte ranges are checked
/// against the file size before any allocation, so a hostile file yields medvlp::Error, not a crash.
SafetensorsFile load_safetensors(const std::string& path);

/// Maps a file into memory (private copy-on-write pages) with the same checks as load_safetensors;
/// the tensors view the mapping, which lives as long as any of them. For large read-mostly data.
SafetensorsFile map_safetensors(const std::string& path);

/// Parses an in-memory safetensors image; `name` is used in messages.
SafetensorsFile parse_safetensors(const std::string& bytes, const std::string& name);

}  // namespace medvlp::io
