// The attention problem size, shared by every backend (no Kokkos here so the
// float64 reference and the run store can use it too).
#pragma once

#include <cstddef>
#include <stdexcept>
#include <string>

namespace ra {

struct Shape {
  int B = 1, H = 1, T = 1, D = 1;

  std::size_t qkv_elems() const { return std::size_t(B) * H * T * D; }
  std::size_t row_elems() const { return std::size_t(B) * H * T; }
  std::string str() const {
    return "B=" + std::to_string(B) + " H=" + std::to_string(H) + " T=" + std::to_string(T) +
           " D=" + std::to_string(D);
  }
  // Throws std::invalid_argument naming the first non-positive extent.
  void validate(const std::string& who) const {
    const char* names[] = {"B", "H", "T", "D"};
    const int vals[] = {B, H, T, D};
    for (int i = 0; i < 4; ++i)
      if (vals[i] < 1)
        throw std::invalid_argument(who + ": " + names[i] + " = " + std::to_string(vals[i]) +
                                    " but must be >= 1 (shape " + str() + ")");
  }
};

}  // namespace ra
