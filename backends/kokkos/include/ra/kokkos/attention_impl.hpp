// Definitions of ra::kk::Attention. Included only by instantiate_*.cpp: users
// include attention.hpp and link the explicit instantiations.
#pragma once

#include <ra/kokkos/attention.hpp>
#include <ra/kokkos/detail/fp32_tiled.hpp>
#include <ra/kokkos/detail/fused.hpp>
#include <ra/kokkos/detail/open_coded.hpp>
#include <ra/kokkos/detail/tensor_core.hpp>
#include <ra/kokkos/detail/tf32.hpp>
#include <ra/kokkos/tuned_traits.hpp>
#include <ra/kokkos/kernel_traits.hpp>

#include <algorithm>
#include <cmath>
#include <sstream>
#include <stdexcept>

namespace ra::kk {

template <class Scalar, class Exec>
AttentionTensors<Scalar, Exec> AttentionTensors<Scalar, Exec>::allocate(const Shape& s,
                                                                        int gate_batch) {
  s.validate("AttentionTensors::allocate");
  AttentionTensors t;
  auto t4 = [&](const char* name) { return T4(std::string(name), s.B, s.H, s.T, s.D); };
  auto t3 = [&](const char* name) { return T3(std::string(name), s.B, s.H, s.T); };
  t.q = t4("q"), t.k = t4("k"), t.v = t4("v"), t.o = t4("o"), t.dout = t4("dout");
  t.dq = t4("dq"), t.dk = t4("dk"), t.dv = t4("dv");
  t.d = t3("d"), t.lse = t3("lse"), t.dd = t3("dd");
  t.gates = T3("gates", gate_batch, s.H, 3);
  t.dgates = T3("dgates", gate_batch, s.H, 3);
  return t;
}

namespace detail {

// Largest tile of the traits table whose scratch fits level 0; else level 1.
// forced > 0 pins the tile (an experiment knob: Options::tile).
template <class Exec, class Bytes>
TilePlan plan_tiles(const Bytes& bytes_for_tile, int forced) {
  constexpr KernelTraits tr = kernel_traits<Exec>();
  using Policy = Kokkos::TeamPolicy<Exec>;
  const std::size_t cap = std::min<std::size_t>(tr.scratch_budget, Policy::scratch_size_max(0));
  TilePlan p;
  p.vector_length = std::min(tr.vector_length, Policy::vector_length_max());
  for (int t : tr.tiles) {
    p.br = p.bc = forced > 0 ? forced : t;
    p.scratch_bytes = bytes_for_tile(p.br);
    if (forced > 0 || p.scratch_bytes <= cap) break;
  }
  p.scratch_level = p.scratch_bytes <= cap ? 0 : 1;
  p.team_size = tr.team_size == 0 ? p.br : tr.team_size;
  return p;
}

// True on Kokkos::Cuda with storage type Want: where the CUDA-only kernels exist.
template <class Scalar, class Exec, class Want>
constexpr bool cuda_with_storage() {
#if defined(KOKKOS_ENABLE_CUDA)
  return std::is_same_v<Exec, Kokkos::Cuda> && std::is_same_v<Scalar, Want>;
#else
  return false;
#endif
}
// The tensor-core kernels (bf16 mma.sync) take bf16 storage.
template <class Scalar, class Exec>
constexpr bool has_tensor_core_path() {
  return cuda_with_storage<Scalar, Exec, bf16>();
}
// The fp32 tiled forward (register-tiled SIMT, exact fp32) takes float storage.
template <class Scalar, class Exec>
constexpr bool has_fp32_tiled_path() {
  return cuda_with_storage<Scalar, Exec, float>();
}

template <class Exec>
Kokkos::TeamPolicy<Exec> team_policy(const Exec& exec, int league, const TilePlan& p) {
  Kokkos::TeamPolicy<Exec> pol(exec, league, p.team_size, p.vector_length);
  return pol.set_scratch_size(p.scratch_level, Kokkos::PerTeam(p.scratch_bytes));
}

}  // namespace detail

template <class Scalar, class Exec>
Attention<Scalar, Exec>::Attention(Variant v, const Shape& s, const Options& opt, const Exec& exec)
    : variant_(v), shape_(s), opt_(opt), exec_(exec) {
  check_supported(v, s, opt);
  if (opt.tf32 && (!detail::has_fp32_tiled_path<Scalar, Exec>() || !is_fused(v)))
    throw std::invalid_argument("ra::kk::Attention(" + variant_name(v) + "): Options::tf32 is the "
                                "TF32 tensor-core path of the fused variants in float storage "
                                "on CUDA (this is " + precision_name<Scalar>() + " storage on " +
                                Exec::name() + ")");
  const int W = is_ra(v) ? 2 * s.D : s.D;
  if constexpr (!std::is_same_v<Scalar, accum_t<Scalar>>) {
    if (!is_fused(v))
      throw std::invalid_argument("ra::kk::Attention(" + variant_name(v) + "): " +
                                  precision_name<Scalar>() +
                                  " storage is supported by the fused variants only; the "
                                  "open-coded ones take float or double");
  }
  if (is_fused(v)) {
    using F = detail::FusedForward<Scalar, Exec>;
    using KV = detail::FusedBwdKV<Scalar, Exec>;
    using Q = detail::FusedBwdQ<Scalar, Exec>;
    const bool mixed = v == Variant::ra_window;
    fwd_plan_ = detail::plan_tiles<Exec>(
        [&](int t) { return F::scratch_bytes(t, t, s.D, W, mixed); }, opt.tile);
    bwd_plan_ = detail::plan_tiles<Exec>([&](int t) {
      return std::max(KV::scratch_bytes(t, t, s.D, W), Q::scratch_bytes(t, t, s.D, W));
    }, opt.tile);
    fwd_plan_.path = bwd_plan_.path = "portable";
    int n_tiles = (s.T + bwd_plan_.br - 1) / bwd_plan_.br;
#if defined(KOKKOS_ENABLE_CUDA)
    // The CUDA kernels (tensor-core bf16, fp32 tiled, TF32) run unless a tile
    // is pinned (an experiment on the portable kernels), the caller asks for
    // the portable path, or the shape is one they cannot take -- then the
    // reason is in the plan's path. Forward and backward decide separately
    // (either may run beside the portable other: same o and lse).
    const bool ra = is_ra(v);
    [[maybe_unused]] const bool wanted = !opt.portable && opt.tile == 0;
    // RA's float key-owned backward kernels (fp32 tiled, TF32) hand their
    // shares of dQ and dK to the query-owned ones through these workspaces
    // (the bf16 ones through dq and dk themselves).
    [[maybe_unused]] auto allocate_cross_parts = [&] {
      if (!ra) return;
      part_dq_ = Tensor4<float, Exec>("part_dq", s.B, s.H, s.T, s.D);
      part_dk_ = Tensor4<float, Exec>("part_dk", s.B, s.H, s.T, s.D);
    };
    if constexpr (detail::has_tensor_core_path<Scalar, Exec>()) {
      // A tuned-traits file (RA_TUNED_TRAITS) picks the candidate where the
      // caller did not; opt_ keeps what runs, opt what was asked for.
      const int tuned_fwd = opt.tc_candidate < 0 ? detail::tc::tuned_candidate(ra, s.D, false) : -1;
      const int tuned_bwd = opt.tc_bwd_candidate < 0 ? detail::tc::tuned_candidate(ra, s.D, true) : -1;
      if (tuned_fwd >= 0) opt_.tc_candidate = tuned_fwd;
      if (tuned_bwd >= 0) opt_.tc_bwd_candidate = tuned_bwd;
      // ra_window's own kernels where the table has them (they replace RA's
      // entries, tuned or not; a requested candidate still wins).
      const int window_fwd = detail::tc::window_forward_candidate(v, s.D);
      const int window_bwd = detail::tc::window_backward_candidate(v, s.D);
      if (opt.tc_candidate < 0 && window_fwd >= 0) opt_.tc_candidate = window_fwd;
      if (opt.tc_bwd_candidate < 0 && window_bwd >= 0) opt_.tc_bwd_candidate = window_bwd;
      const std::string why_fwd = detail::tc::unsupported(ra, s.D, false, opt_.tc_candidate);
      const std::string why_bwd = detail::tc::unsupported(ra, s.D, true, opt_.tc_bwd_candidate);
      tensor_core_fwd_ = wanted && why_fwd.empty();
      tensor_core_bwd_ = wanted && why_bwd.empty();
      const std::string tuned_note = " (tuned: " + TunedTraits::from_environment().source() + ")";
      if (tensor_core_fwd_) {
        fwd_plan_ = detail::tc::forward_plan(ra, s.D, opt_.tc_candidate);
        if (tuned_fwd >= 0 && window_fwd < 0) fwd_plan_.path += tuned_note;
      } else if (wanted) {
        fwd_plan_.path = "portable (" + why_fwd + ")";
      }
      if (tensor_core_bwd_) {
        bwd_plan_ = detail::tc::backward_plan(ra, s.D, opt_.tc_bwd_candidate);
        if (tuned_bwd >= 0 && window_bwd < 0) bwd_plan_.path += tuned_note;
        n_tiles = detail::tc::backward_partials(ra, s.D, s.T, opt_.tc_bwd_candidate);
        // Options::deterministic = false: the single-pass (atomic dQ) backward
        // where it has a kernel; a requested candidate is a deterministic one.
        if (!opt.deterministic) {
          const std::string why_fused = opt.tc_bwd_candidate >= 0
                                            ? "a backward candidate is requested"
                                            : detail::tc::fused_unsupported(ra, s.D);
          fused_bwd_ = why_fused.empty();
          if (fused_bwd_) {
            bwd_plan_ = detail::tc::fused_backward_plan(ra, s.D);
            n_tiles = detail::tc::fused_backward_partials(ra, s.D, s.T);
            dqf_accum_ = Tensor4<float, Exec>("dqf_accum", s.B, s.H, s.T, W);
          } else {
            bwd_plan_.path += " (fused-atomic not taken: " + why_fused + ")";
          }
        }
      } else if (wanted) {
        bwd_plan_.path = "portable (" + why_bwd + ")";
      }
    }
    if constexpr (detail::has_fp32_tiled_path<Scalar, Exec>()) {
      const std::string why = detail::fp32t::unsupported(ra, s.D);
      fp32_tiled_fwd_ = wanted && why.empty();
      if (fp32_tiled_fwd_)
        fwd_plan_ = detail::fp32t::forward_plan(ra, s.D);
      else if (wanted)
        fwd_plan_.path = "portable (" + why + ")";
      // Options::tf32 (opt-in) puts the forward on the TF32 tensor cores; a
      // shape it cannot take keeps the exact path, which says why.
      if (opt.tf32 && wanted) {
        const std::string why_tf32 = detail::tf32::unsupported(ra, s.D);
        tf32_fwd_ = why_tf32.empty();
        if (tf32_fwd_)
          fwd_plan_ = detail::tf32::forward_plan(ra, s.D);
        else
          fwd_plan_.path += " (tf32 not taken: " + why_tf32 + ")";
      }
      const std::string why_bwd = detail::fp32t::backward_unsupported(ra, s.D);
      fp32_tiled_bwd_ = wanted && why_bwd.empty();
      if (fp32_tiled_bwd_) {
        bwd_plan_ = detail::fp32t::backward_plan(ra, s.D);
        n_tiles = detail::fp32t::backward_partials(s.T);
        allocate_cross_parts();
      } else if (wanted) {
        bwd_plan_.path = "portable (" + why_bwd + ")";
      }
      // ... and its backward too, with the exact backward's arguments and
      // outputs; shapes it cannot take keep the exact backward, which says why.
      if (opt.tf32 && wanted) {
        const std::string why_tf32 = detail::tf32::backward_unsupported(ra, s.D);
        tf32_bwd_ = why_tf32.empty() && fp32_tiled_bwd_;  // the first implies the second
        if (tf32_bwd_) {
          bwd_plan_ = detail::tf32::backward_plan(ra, s.D);
          n_tiles = detail::tf32::backward_partials(s.T);
        } else {
          bwd_plan_.path += " (tf32 not taken: " + why_tf32 + ")";
        }
      }
    }
#endif
    // Tuning requests (a compiled candidate) never fall back silently.
    auto refuse = [&](const char* knob, int value, const TilePlan& plan) {
      throw std::invalid_argument(
          "ra::kk::Attention(" + variant_name(v) + "): " + knob + " = " + std::to_string(value) +
          " but the tensor-core kernel does not run here (" +
          (detail::has_tensor_core_path<Scalar, Exec>() ? plan.path : std::string("needs bf16 on CUDA")) +
          ")");
    };
    if (opt.tc_candidate >= 0 && !tensor_core_fwd_) refuse("tc_candidate", opt.tc_candidate, fwd_plan_);
    if (opt.tc_bwd_candidate >= 0 && !tensor_core_bwd_)
      refuse("tc_bwd_candidate", opt.tc_bwd_candidate, bwd_plan_);
    gate_partials_ = Tensor4<accum_t<Scalar>, Exec>("gate_partials", s.B, s.H, n_tiles, 3);
  } else {
    // Too large a T x T workspace fails here with Kokkos' allocation error (label open_*).
    s_ = Tensor4<Scalar, Exec>("open_S", s.B, s.H, s.T, s.T);
    p_ = Tensor4<Scalar, Exec>("open_P", s.B, s.H, s.T, s.T);
    dp_ = Tensor4<Scalar, Exec>("open_dP", s.B, s.H, s.T, s.T);
    gate_partials_ = Tensor4<accum_t<Scalar>, Exec>("gate_partials", s.B, s.H, s.T, 3);
    fwd_plan_.path = bwd_plan_.path = "open-coded";
  }
  delta_ = Tensor3<accum_t<Scalar>, Exec>("delta", s.B, s.H, s.T);
}

template <class Scalar, class Exec>
void Attention<Scalar, Exec>::check_tensors(const Tensors& t, bool backward) const {
  const std::string who = "ra::kk::Attention(" + variant_name(variant_) + ")::" +
                          (backward ? "backward" : "forward");
  const Shape& s = shape_;
  auto expect = [&](const char* name, const auto& view, std::initializer_list<std::size_t> dims) {
    std::ostringstream want, got;
    bool ok = view.rank() == dims.size();
    std::size_t r = 0;
    for (std::size_t n : dims) {
      want << (r ? "," : "") << n;
      if (r < view.rank() && view.extent(r) != n) ok = false;
      ++r;
    }
    for (std::size_t i = 0; i < view.rank(); ++i) got << (i ? "," : "") << view.extent(i);
    if (!ok)
      throw std::invalid_argument(who + ": tensor '" + name + "' has shape [" + got.str() +
                                  "], expected [" + want.str() + "] for " + s.str());
  };
  const std::size_t B = s.B, H = s.H, T = s.T, D = s.D;
  expect("q", t.q, {B, H, T, D});
  expect("k", t.k, {B, H, T, D});
  expect("v", t.v, {B, H, T, D});
  expect("o", t.o, {B, H, T, D});
  expect("lse", t.lse, {B, H, T});
  if (is_ra(variant_)) {
    expect("gates", t.gates, {std::size_t(opt_.gate_batch), H, 3});
    expect("d", t.d, {B, H, T});
  }
  if (backward) {
    expect("dout", t.dout, {B, H, T, D});
    expect("dq", t.dq, {B, H, T, D});
    expect("dk", t.dk, {B, H, T, D});
    expect("dv", t.dv, {B, H, T, D});
    if (is_ra(variant_)) {
      expect("dd", t.dd, {B, H, T});
      expect("dgates", t.dgates, {std::size_t(opt_.gate_batch), H, 3});
    }
  }
}

template <class Scalar, class Exec>
void Attention<Scalar, Exec>::forward(const Tensors& t) const {
  check_tensors(t, false);
  const Shape& s = shape_;
  const bool ra = is_ra(variant_);
#if defined(KOKKOS_ENABLE_CUDA)
  if constexpr (detail::has_tensor_core_path<Scalar, Exec>()) {
    if (tensor_core_fwd_) {
      detail::tc::forward(exec_, tensor_core_args(t));
      return;
    }
  }
  if constexpr (detail::has_fp32_tiled_path<Scalar, Exec>()) {
    if (tf32_fwd_ || fp32_tiled_fwd_) {  // both take the same arguments
      detail::fp32t::Args a;
      a.q = t.q.data(), a.k = t.k.data(), a.v = t.v.data();
      a.o = t.o.data(), a.lse = t.lse.data();
      if (ra) a.gates = t.gates.data(), a.d = t.d.data();
      a.B = s.B, a.H = s.H, a.T = s.T, a.D = s.D;
      a.ra = ra;
      a.window = variant_ == Variant::ra_window ? opt_.window : -1;
      a.gate_batch = opt_.gate_batch;
      if (tf32_fwd_)
        detail::tf32::forward(exec_, a);
      else
        detail::fp32t::forward(exec_, a);
      return;
    }
  }
#endif
  if (is_fused(variant_)) {
    using Acc = accum_t<Scalar>;
    detail::FusedForward<Scalar, Exec> f;
    f.q = t.q, f.k = t.k, f.v = t.v, f.gates = t.gates, f.d = t.d;
    f.B = s.B, f.H = s.H, f.T = s.T, f.D = s.D, f.W = ra ? 2 * s.D : s.D;
    f.ra = ra, f.window = opt_.window, f.gate_batch = opt_.gate_batch;
    f.scale = Acc(1) / std::sqrt(Acc(s.D));
    f.br = fwd_plan_.br, f.bc = fwd_plan_.bc, f.scratch_level = fwd_plan_.scratch_level;
    f.n_qtiles = (s.T + f.br - 1) / f.br, f.n_ktiles = (s.T + f.bc - 1) / f.bc;
    f.o = t.o, f.lse = t.lse;
    Kokkos::parallel_for("ra::fused::forward",
                         detail::team_policy(exec_, s.B * s.H * f.n_qtiles, fwd_plan_), f);
    return;
  }
  if constexpr (std::is_same_v<Scalar, accum_t<Scalar>>) {  // bf16 is refused at construction
    detail::OpenCoded<Scalar, Exec> oc{exec_, s, ra, opt_.window, opt_.gate_batch};
    oc.batched_gemm("N", "T", Scalar(1) / std::sqrt(Scalar(s.D)), t.q, t.k, s_);
    oc.softmax_rows(s_, p_, t.gates, t.d, t.lse);
    oc.batched_gemm("N", "N", Scalar(1), p_, t.v, t.o);
  }
}

namespace detail {
// Delta_i = dO_i . O_i, the softmax-backward row term (accumulated in accum_t).
// A row per team thread, its D columns across the thread's vector lanes: on
// CUDA 32 lanes read a row's contiguous elements together (a thread-per-row
// loop strided by D through memory took 68 us at B8 H12 T1024 D64 on an H100,
// 4x its bandwidth floor); on the host a lane is a plain loop.
template <class Scalar, class Exec>
void row_delta(const Exec& exec, const Tensor4<Scalar, Exec>& dout, const Tensor4<Scalar, Exec>& o,
               const Tensor3<accum_t<Scalar>, Exec>& delta) {
  using Acc = accum_t<Scalar>;
  using Policy = Kokkos::TeamPolicy<Exec>;
  const int H = o.extent_int(1), T = o.extent_int(2), D = o.extent_int(3);
  const int rows = o.extent_int(0) * H * T;
  constexpr bool host = Kokkos::SpaceAccessibility<Kokkos::HostSpace, typename Exec::memory_space>::accessible;
  const int lanes = host ? 1 : std::min(32, Policy::vector_length_max());
  const int per_team = host ? 1 : 256 / lanes;  // rows (team threads) per team
  Kokkos::parallel_for(
      "ra::delta", Policy(exec, (rows + per_team - 1) / per_team, per_team, lanes),
      KOKKOS_LAMBDA(const typename Policy::member_type& m) {
        const int r = m.league_rank() * per_team + m.team_rank();
        if (r >= rows) return;
        const int i = r % T, h = (r / T) % H, b = r / (T * H);
        Acc acc = 0;
        Kokkos::parallel_reduce(
            Kokkos::ThreadVectorRange(m, D),
            [&](int c, Acc& sum) { sum += Acc(dout(b, h, i, c)) * Acc(o(b, h, i, c)); }, acc);
        Kokkos::single(Kokkos::PerThread(m), [&]() { delta(b, h, i) = acc; });
      });
}

// dgates(g, h, :) = sum over the batch group and the tile/row partials: a team
// per output, its threads over (batch, partial) -- a thread per output summed
// up to B * n_used values in sequence (11 us for 36 outputs on an H100).
template <class Scalar, class Exec>
void reduce_gates(const Exec& exec, const Tensor4<Scalar, Exec>& partials,
                  const Tensor3<Scalar, Exec>& dgates, int n_used) {
  using Policy = Kokkos::TeamPolicy<Exec>;
  const int B = partials.extent_int(0), H = partials.extent_int(1);
  const int Gb = dgates.extent_int(0);
  const int per_output = Gb == 1 ? B * n_used : n_used;  // terms of one output
  Kokkos::parallel_for(
      "ra::reduce_gates", Policy(exec, Gb * H * 3, Kokkos::AUTO),
      KOKKOS_LAMBDA(const typename Policy::member_type& m) {
        const int r = m.league_rank();
        const int g = r % 3, h = (r / 3) % H, gb = r / (3 * H);
        Scalar acc = 0;
        Kokkos::parallel_reduce(
            Kokkos::TeamThreadRange(m, per_output),
            [&](int x, Scalar& sum) {
              const int b = Gb == 1 ? x / n_used : gb, t = x % n_used;
              sum += partials(b, h, t, g);
            },
            acc);
        Kokkos::single(Kokkos::PerTeam(m), [&]() { dgates(gb, h, g) = acc; });
      });
}
}  // namespace detail

template <class Scalar, class Exec>
void Attention<Scalar, Exec>::backward(const Tensors& t) const {
  check_tensors(t, true);
  const Shape& s = shape_;
  const bool ra = is_ra(variant_);
  using Acc = accum_t<Scalar>;
  const Acc scale = Acc(1) / std::sqrt(Acc(s.D));
#if defined(KOKKOS_ENABLE_CUDA)
  if constexpr (detail::has_tensor_core_path<Scalar, Exec>()) {
    if (tensor_core_bwd_) {
      detail::tc::row_delta(exec_, t.dout.data(), t.o.data(), delta_.data(), s.B * s.H * s.T, s.D);
      Kokkos::deep_copy(exec_, gate_partials_, 0.f);  // slots a kernel does not own stay 0
      if (fused_bwd_) {
        Kokkos::deep_copy(exec_, dqf_accum_, 0.f);  // the atomics' target
        detail::tc::fused_backward(exec_, tensor_core_args(t));
      } else {
        detail::tc::backward(exec_, tensor_core_args(t));
      }
      if (ra) detail::reduce_gates(exec_, gate_partials_, t.dgates, gate_partials_.extent_int(2));
      return;
    }
  }
#endif
  detail::row_delta(exec_, t.dout, t.o, delta_);
#if defined(KOKKOS_ENABLE_CUDA)
  if constexpr (detail::has_fp32_tiled_path<Scalar, Exec>()) {
    if (fp32_tiled_bwd_ || tf32_bwd_) {  // both take the same arguments
      detail::fp32t::BwdArgs a;
      a.q = t.q.data(), a.k = t.k.data(), a.v = t.v.data(), a.dout = t.dout.data();
      a.lse = t.lse.data(), a.delta = delta_.data();
      a.dq = t.dq.data(), a.dk = t.dk.data(), a.dv = t.dv.data();
      if (ra) {
        a.gates = t.gates.data(), a.d = t.d.data(), a.dd = t.dd.data();
        a.part_dq = part_dq_.data(), a.part_dk = part_dk_.data();
      }
      a.gate_partials = gate_partials_.data();
      a.n_partials = gate_partials_.extent_int(2);
      a.B = s.B, a.H = s.H, a.T = s.T, a.D = s.D;
      a.ra = ra;
      a.window = variant_ == Variant::ra_window ? opt_.window : -1;
      a.gate_batch = opt_.gate_batch;
      if (tf32_bwd_)  // both write every gate-partial slot: no zeroing
        detail::tf32::backward(exec_, a);
      else
        detail::fp32t::backward(exec_, a);
      if (ra) detail::reduce_gates(exec_, gate_partials_, t.dgates, gate_partials_.extent_int(2));
      return;
    }
  }
#endif

  if (is_fused(variant_)) {
    detail::FusedBwdKV<Scalar, Exec> kv;
    kv.q = t.q, kv.k = t.k, kv.v = t.v, kv.gates = t.gates, kv.d = t.d;
    kv.B = s.B, kv.H = s.H, kv.T = s.T, kv.D = s.D, kv.W = ra ? 2 * s.D : s.D;
    kv.ra = ra, kv.window = opt_.window, kv.gate_batch = opt_.gate_batch, kv.scale = scale;
    kv.br = bwd_plan_.br, kv.bc = bwd_plan_.bc, kv.scratch_level = bwd_plan_.scratch_level;
    kv.n_qtiles = (s.T + kv.br - 1) / kv.br, kv.n_ktiles = (s.T + kv.bc - 1) / kv.bc;
    kv.lse = t.lse, kv.delta = delta_, kv.dout = t.dout;
    kv.dq = t.dq, kv.dk = t.dk, kv.dv = t.dv, kv.dd = t.dd, kv.gate_partials = gate_partials_;
    Kokkos::parallel_for("ra::fused::backward_kv",
                         detail::team_policy(exec_, s.B * s.H * kv.n_ktiles, bwd_plan_), kv);

    detail::FusedBwdQ<Scalar, Exec> bq;
    static_cast<detail::FusedCommon<Scalar, Exec>&>(bq) = kv;
    bq.lse = t.lse, bq.delta = delta_, bq.dout = t.dout, bq.dq = t.dq, bq.dk = t.dk;
    bq.gate_partials = gate_partials_;
    Kokkos::parallel_for("ra::fused::backward_q",
                         detail::team_policy(exec_, s.B * s.H * kv.n_qtiles, bwd_plan_), bq);
    if (ra) detail::reduce_gates(exec_, gate_partials_, t.dgates, kv.n_qtiles);
    return;
  }

  if constexpr (std::is_same_v<Scalar, accum_t<Scalar>>) {  // bf16 is refused at construction
  detail::OpenCoded<Scalar, Exec> oc{exec_, s, ra, opt_.window, opt_.gate_batch};
  oc.batched_gemm("N", "T", scale, t.q, t.k, s_);
  oc.recompute_p(s_, p_, t.gates, t.d, t.lse);
  oc.batched_gemm("N", "T", Scalar(1), t.dout, t.v, dp_);  // dP = dO V^T
  oc.batched_gemm("T", "N", Scalar(1), p_, t.dout, t.dv);  // dV = P^T dO
  oc.dl_from_p(p_, dp_, delta_);                           // p_ <- dL
  Tensor4<Scalar, Exec> ds = p_;                           // SDPA: dS = dL
  if (ra) {
    oc.ra_grads(s_, p_, dp_, t.gates, t.d, t.dd, gate_partials_);  // dp_ <- dS
    ds = dp_;
    detail::reduce_gates(exec_, gate_partials_, t.dgates, s.T);
  }
  oc.batched_gemm("N", "N", scale, ds, t.k, t.dq);
  oc.batched_gemm("T", "N", scale, ds, t.q, t.dk);
  }
}

template <class Scalar, class Exec>
std::size_t Attention<Scalar, Exec>::workspace_bytes() const {
  auto bytes = [](const auto& v) { return v.span() * sizeof(typename std::decay_t<decltype(v)>::value_type); };
  return bytes(s_) + bytes(p_) + bytes(dp_) + bytes(delta_) + bytes(gate_partials_) +
         bytes(part_dq_) + bytes(part_dk_) + bytes(dqf_accum_);
}

#if defined(KOKKOS_ENABLE_CUDA)
template <class Scalar, class Exec>
detail::tc::Args Attention<Scalar, Exec>::tensor_core_args(const Tensors& t) const {
  detail::tc::Args a;
  a.q = t.q.data(), a.k = t.k.data(), a.v = t.v.data(), a.dout = t.dout.data();
  a.o = t.o.data(), a.dq = t.dq.data(), a.dk = t.dk.data(), a.dv = t.dv.data();
  if constexpr (std::is_same_v<accum_t<Scalar>, float>) {
    a.gates = t.gates.data(), a.d = t.d.data(), a.lse = t.lse.data(), a.lse_in = t.lse.data();
    a.delta = delta_.data(), a.dd = t.dd.data(), a.gate_partials = gate_partials_.data();
  }
  a.dqf_accum = dqf_accum_.data();
  a.n_partials = gate_partials_.extent_int(2);
  a.B = shape_.B, a.H = shape_.H, a.T = shape_.T, a.D = shape_.D;
  a.ra = is_ra(variant_);
  a.window = variant_ == Variant::ra_window ? opt_.window : -1;
  a.gate_batch = opt_.gate_batch;
  a.candidate = opt_.tc_candidate;
  a.bwd_candidate = opt_.tc_bwd_candidate;
  return a;
}
#endif

}  // namespace ra::kk
