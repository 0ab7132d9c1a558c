// Non-template parts of the Kokkos attention API: which problems it takes.
#include <ra/kokkos/attention.hpp>

#include <stdexcept>

namespace ra::kk {

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

}  // namespace ra::kk
