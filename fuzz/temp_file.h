#pragma once
// The fuzz targets whose readers take a path: the input written to a per-process temporary file.
#include <unistd.h>

#include <cstdio>
#include <string>

namespace medvlp::fuzz {

/// Writes `bytes` to /tmp/medvlp_<tag>_<pid><suffix> and returns the path (the caller removes it).
inline std::string write_temp(const std::string& bytes, const std::string& tag, const char* suffix) {
  const std::string path = "/tmp/medvlp_" + tag + "_" + std::to_string(::getpid()) + suffix;
  if (FILE* f = std::fopen(path.c_str(), "wb")) {
    std::fwrite(bytes.data(), 1, bytes.size(), f);
    std::fclose(f);
  }
  return path;
}

}  // namespace medvlp::fuzz
