// Non-template parts of the Kokkos attention API: variant names and FLOP counts.
#include <ra/kokkos/attention.hpp>

#include <stdexcept>

namespace ra::kk {

const std::vector<Variant>& all_variants() {
  static const std::vector<Variant> v = {Variant::sdpa_open, Variant::sdpa_fused, Variant::ra_open,
                                         Variant::ra_fused, Variant::ra_window};
  return v;
}

std::string variant_name(Variant v) {
  switch (v) {
    case Variant::sdpa_open: return "sdpa_open";
    case Variant::sdpa_fused: return "sdpa_fused";
    case Variant::ra_open: return "ra_open";
    case Variant::ra_fused: return "ra_fused";
    case Variant::ra_window: return "ra_window";
  }
  return "?";
}

Variant parse_variant(const std::string& name) {
  std::string known;
  for (Variant v : all_variants()) {
    if (variant_name(v) == name) return v;
    known += (known.empty() ? "" : ", ") + variant_name(v);
  }
  throw std::invalid_argument("unknown attention variant '" + name + "' (known: " + known + ")");
}

namespace {
// Causal pairs per (b, h), and those inside a reciprocity window (i - j <= w).
double causal_pairs(const Shape& s) { return 0.5 * double(s.T) * (double(s.T) + 1); }
double band_pairs(const Shape& s, int window) {
  if (window < 0 || window >= s.T) return causal_pairs(s);
  const double w = window, T = s.T;
  // rows i < w see i+1 pairs; rows i >= w see w+1.
  return 0.5 * w * (w + 1) + (T - w) * (w + 1);
}
double rec_pairs(Variant v, const Shape& s, const Options& opt) {
  if (!is_ra(v)) return 0;
  return (v == Variant::ra_fused) ? causal_pairs(s) : band_pairs(s, opt.window);
}
}  // namespace

double forward_flops(Variant v, const Shape& s, const Options& opt) {
  const double bh = double(s.B) * s.H, D = s.D;
  return bh * 2 * D * (2 * causal_pairs(s) + rec_pairs(v, s, opt));
}

double backward_flops(Variant v, const Shape& s, const Options& opt) {
  const double bh = double(s.B) * s.H, D = s.D;
  // logits, dQ and dK each carry the reciprocal half; dV and dP do not.
  return bh * 2 * D * (5 * causal_pairs(s) + 3 * rec_pairs(v, s, opt));
}

}  // namespace ra::kk
