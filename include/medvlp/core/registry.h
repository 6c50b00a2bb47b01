#pragma once
// Named registries: components are built from config by name.

#include <functional>
#include <map>
#include <string>
#include <vector>

#include "medvlp/core/error.h"

namespace medvlp::core {

/// A name -> factory table for one kind of component (losses, encoders, datasets...).
/// Filled at static-init time by one registration line per component; an unknown name lists the known ones.
template <typename Product, typename... Args>
class Registry {
 public:
  using Factory = std::function<Product(Args...)>;

  explicit Registry(std::string kind) : kind_(std::move(kind)) {}

  void add(const std::string& name, Factory factory) {
    MEDVLP_CHECK(!factories_.count(name), kind_, " '", name, "' is registered twice");
    factories_.emplace(name, std::move(factory));
  }

  bool contains(const std::string& name) const { return factories_.count(name) > 0; }

  Product create(const std::string& name, Args... args) const {
    auto it = factories_.find(name);
    if (it == factories_.end()) {
      std::string known;
      for (const auto& entry : factories_) known += (known.empty() ? "" : ", ") + entry.first;
      throw Error(detail::concat("unknown ", kind_, " '", name, "'; known: ", known));
    }
    return it->second(std::forward<Args>(args)...);
  }

  std::vector<std::string> names() const {
    std::vector<std::string> out;
    for (const auto& entry : factories_) out.push_back(entry.first);
    return out;
  }

 private:
  std::string kind_;
  std::map<std::string, Factory> factories_;
};

/// "a, b, c": for listing known names in messages.
inline std::string join(const std::vector<std::string>& names, const std::string& sep = ", ") {
  std::string out;
  for (const auto& n : names) out += (out.empty() ? "" : sep) + n;
  return out;
}

/// Adds a factory to a registry when the library is loaded.
template <typename RegistryT>
struct Registration {
  Registration(RegistryT& registry, const std::string& name, typename RegistryT::Factory factory) {
    registry.add(name, std::move(factory));
  }
};

}  // namespace medvlp::core

#define MEDVLP_CONCAT_INNER(a, b) a##b
#define MEDVLP_CONCAT(a, b) MEDVLP_CONCAT_INNER(a, b)
/// Registers `factory` under `name` in `registry` (an lvalue) at static-init time.
#define MEDVLP_REGISTER(registry, name, factory)                                         \
  static ::medvlp::core::Registration<std::decay_t<decltype(registry)>> MEDVLP_CONCAT( \
      medvlp_registration_, __LINE__)(registry, name, factory)
