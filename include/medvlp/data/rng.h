#pragma once
// A small deterministic generator: same numbers on every platform and standard library,
// unlike std::*_distribution, so phantoms and augmentations are reproducible everywhere.
#include <cmath>
#include <cstdint>

namespace medvlp::data {

inline uint64_t splitmix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

/// Hashes several integers into one seed.
inline uint64_t mix_seed(uint64_t a, uint64_t b, uint64_t c = 0, uint64_t d = 0) {
  return splitmix64(splitmix64(splitmix64(splitmix64(a) ^ b) ^ c) ^ d);
}

/// splitmix64 stream: uniform, Bernoulli, integer and normal draws (the transforms' and phantoms' generator).
class Rng {
 public:
  explicit Rng(uint64_t seed) : state_(seed) {}
  uint64_t next() { return splitmix64(state_++); }
  /// Uniform in [0,1).
  double uniform() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }
  double uniform(double lo, double hi) { return lo + (hi - lo) * uniform(); }
  bool bernoulli(double p) { return uniform() < p; }
  /// Uniform integer in [0, n).
  int64_t below(int64_t n) { return static_cast<int64_t>(uniform() * static_cast<double>(n)); }
  double normal() {
    const double u1 = 1.0 - uniform();
    const double u2 = uniform();
    return std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2);
  }
  template <typename T, size_t N>
  const T& pick(const T (&items)[N]) { return items[below(static_cast<int64_t>(N))]; }

 private:
  uint64_t state_;
};

}  // namespace medvlp::data
