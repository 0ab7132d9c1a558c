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

void check_supported(Variant v, const Shape& s, const Options& opt) {
  const std::string who = "ra::kk::Attention(" + variant_name(v) + ")";
  s.validate(who);
  if (opt.gate_batch != 1 && opt.gate_batch != s.B)
    throw std::invalid_argument(who + ": gate_batch = " + std::to_string(opt.gate_batch) +
                                " but must be 1 (gates per head) or B = " + std::to_string(s.B));
  if (v == Variant::ra_window && opt.window < 0)
    throw std::invalid_argument(who + ": window = " + std::to_string(opt.window) +
                                " but ra_window needs a window >= 0");
  if (v != Variant::ra_window && v != Variant::ra_open && opt.window >= 0)
    throw std::invalid_argument(who + ": window = " + std::to_string(opt.window) +
                                " is only meaningful for ra_window (and ra_open)");
  if (opt.tile != 0 && opt.tile != 8 && opt.tile != 16 && opt.tile != 32 && opt.tile != 64)
    throw std::invalid_argument(who + ": tile = " + std::to_string(opt.tile) +
                                " but must be 0 (automatic) or one of 8, 16, 32, 64");
  if (is_fused(v) && s.D > 128)
    throw std::invalid_argument(who + ": head dim D = " + std::to_string(s.D) +
                                " is not supported by fused kernels (D <= 128); use the "
                                "open-coded variant");
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
