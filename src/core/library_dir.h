#pragma once
// Where libmedvlp.so itself lies, so that files installed beside it (the sentencepiece plugin, the
// configs) are found wherever the build tree or the package is, not where it was configured to go.
#include <string>

namespace medvlp::core {

/// The folder of the loaded libmedvlp.so (dladdr), or "" when the loader cannot say.
std::string library_dir();

}  // namespace medvlp::core
