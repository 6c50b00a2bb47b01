#include "medvlp/text/tokenizer.h"

#include <torch/torch.h>

#include "medvlp/core/error.h"

namespace medvlp::text {

TokenBatch Tokenizer::encode(const std::vector<std::string>& texts, int64_t max_len) const {
  MEDVLP_CHECK(max_len >= 2, "tokenizer: max_len must be at least 2 (begin and end tokens), got ", max_len);
  const auto batch = static_cast<int64_t>(texts.size());
  at::Tensor ids = torch::full({batch, max_len}, pad_id(), torch::kLong);
  at::Tensor mask = torch::zeros({batch, max_len}, torch::kLong);
  auto ids_a = ids.accessor<int64_t, 2>();
  auto mask_a = mask.accessor<int64_t, 2>();
  for (int64_t b = 0; b < batch; ++b) {
    std::vector<int64_t> body = encode_plain(texts[static_cast<size_t>(b)]);
    if (static_cast<int64_t>(body.size()) > max_len - 2) body.resize(static_cast<size_t>(max_len - 2));
    int64_t pos = 0;
    ids_a[b][pos++] = begin_id();
    for (int64_t id : body) ids_a[b][pos++] = id;
    ids_a[b][pos++] = end_id();
    for (int64_t i = 0; i < pos; ++i) mask_a[b][i] = 1;
  }
  return {ids, mask};
}

}  // namespace medvlp::text
