#include "library_dir.h"

#include <dlfcn.h>

namespace medvlp::core {

std::string library_dir() {
  Dl_info info{};
  if (::dladdr(reinterpret_cast<void*>(&library_dir), &info) == 0 || info.dli_fname == nullptr) return {};
  const std::string self = info.dli_fname;
  const auto slash = self.find_last_of('/');
  return slash == std::string::npos ? "." : self.substr(0, slash);
}

}  // namespace medvlp::core
