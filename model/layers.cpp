// Host-side helpers of the GPT-2 layers (no Kokkos kernels here).
#include <ra/model/layers.hpp>

#include <algorithm>
#include <utility>

namespace ra::model {

TokenBuckets token_buckets(const int* tokens, int n) {
  std::vector<std::pair<int, int>> by_token(n);
  for (int i = 0; i < n; ++i) by_token[i] = {tokens[i], i};
  std::sort(by_token.begin(), by_token.end());
  TokenBuckets b;
  b.rows.resize(n);
  for (int i = 0; i < n; ++i) {
    if (i == 0 || by_token[i].first != by_token[i - 1].first) {
      b.token.push_back(by_token[i].first);
      b.start.push_back(i);
    }
    b.rows[i] = by_token[i].second;
  }
  b.start.push_back(n);
  return b;
}

}  // namespace ra::model
