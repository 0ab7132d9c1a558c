// The attention variants every backend speaks of: their names and the useful
// FLOPs of one pass. One definition for the Kokkos and Vulkan backends, the
// drivers and the model (ra::kk and ra::vk use these names).
#pragma once

#include <ra/shape.hpp>

#include <stdexcept>
#include <string>
#include <vector>

namespace ra {

enum class Variant { sdpa_open, sdpa_fused, ra_open, ra_fused, ra_window };

inline const std::vector<Variant>& all_variants() {
  static const std::vector<Variant> v = {Variant::sdpa_open, Variant::sdpa_fused, Variant::ra_open,
                                         Variant::ra_fused, Variant::ra_window};
  return v;
}

inline std::string variant_name(Variant v) {
  switch (v) {
    case Variant::sdpa_open: return "sdpa_open";
    case Variant::sdpa_fused: return "sdpa_fused";
    case Variant::ra_open: return "ra_open";
    case Variant::ra_fused: return "ra_fused";
    case Variant::ra_window: return "ra_window";
  }
  return "?";
}

// Throws std::invalid_argument listing the valid names.
inline Variant parse_variant(const std::string& name) {
  std::string known;
  for (Variant v : all_variants()) {
    if (variant_name(v) == name) return v;
    known += (known.empty() ? "" : ", ") + variant_name(v);
  }
  throw std::invalid_argument("unknown attention variant '" + name + "' (known: " + known + ")");
}

inline bool is_ra(Variant v) { return v != Variant::sdpa_open && v != Variant::sdpa_fused; }
inline bool is_fused(Variant v) { return v != Variant::sdpa_open && v != Variant::ra_open; }

// Useful FLOPs of one pass, counted as in RA.md (2 flops per multiply-add,
// causal pairs j <= i only, T(T+1)/2 of them per (b, h)):
//   SDPA forward  QK^T + PV                       = 4 D pairs
//   RA forward    + the reciprocal half of QK^T   = 6 D pairs (band pairs only
//                 with a reciprocity window: ra_window, or ra_open given one)
//   backward      recomputed logits + dV + dP + dQ + dK (RA: the logits, dQf and
//                 dKf products are 2D wide on band pairs)
// Open-coded variants do more arithmetic than this (full squares); they are
// credited with the same useful FLOPs so GFLOP/s compare like with like.
// window: the reciprocity window (-1: none).
namespace detail {
inline double causal_pairs(const Shape& s) { return 0.5 * double(s.T) * (double(s.T) + 1); }
inline double band_pairs(const Shape& s, int window) {
  if (window < 0 || window >= s.T) return causal_pairs(s);
  const double w = window, T = s.T;
  return 0.5 * w * (w + 1) + (T - w) * (w + 1);  // rows i < w see i + 1 pairs; the rest w + 1
}
inline double rec_pairs(Variant v, const Shape& s, int window) {
  if (!is_ra(v)) return 0;
  return v == Variant::ra_fused ? causal_pairs(s) : band_pairs(s, window);
}
}  // namespace detail

inline double forward_flops(Variant v, const Shape& s, int window) {
  return double(s.B) * s.H * 2 * s.D * (2 * detail::causal_pairs(s) + detail::rec_pairs(v, s, window));
}

inline double backward_flops(Variant v, const Shape& s, int window) {
  // logits, dQ and dK each carry the reciprocal half; dV and dP do not.
  return double(s.B) * s.H * 2 * s.D * (5 * detail::causal_pairs(s) + 3 * detail::rec_pairs(v, s, window));
}

}  // namespace ra
