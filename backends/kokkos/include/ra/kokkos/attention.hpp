// Public API of the Kokkos attention kernels: one class, five variants.
//
//   Variant       what it is                                        backward
//   sdpa_open     causal SDPA, open-coded: S = QK^T materialised     yes
//                 [T x T] per (b,h), softmax, P V (the seeds'
//                 unfused baseline; GEMMs through KokkosBlas)
//   sdpa_fused    causal SDPA, flash-style: a team owns a tile of    yes
//                 queries, streams K/V tiles through team scratch
//                 with an online softmax; never holds T x T
//   ra_open       Reciprocal Attention, open-coded (S both           yes
//                 triangles, L = w_std S + w_rec S^T + w_disc d)
//   ra_fused      RA in RA.md's folded form: causal attention on     yes
//                 Qf = [w_std Q, w_rec K], Kf = [K, Q] (2D wide)
//                 plus the column bias w_disc d
//   ra_window     ra_fused with reciprocity only where i - j <= w:   yes
//                 tiles outside the band skip the reciprocal half
//
// The kernels are templates on the storage type (float, double, bf16) and the
// Kokkos execution space; explicit instantiations live in instantiate_*.cpp,
// one file per execution space so they compile in parallel.
//
// Three paths implement the fused variants:
//   portable     Kokkos team kernels on TeamVectorGemm (every backend, every
//                precision; bf16 is converted to float in team scratch)
//   tensor-core  CUDA only, bf16: warp-level mma.sync inside the same Kokkos
//                TeamPolicy launch (detail/tensor_core.hpp); picked
//                automatically where it supports the shape, else portable.
//                Its backward is two kernels without atomics (deterministic);
//                Options::deterministic = false runs one key-owned kernel that
//                adds dQ by fp32 atomics instead (D <= 64; "fused-atomic").
//   fp32 tiled   CUDA only, float: register-tiled SIMT kernels (exact fp32
//                FMA, no TF32) in Kokkos TeamPolicy launches
//                (detail/fp32_tiled.hpp); picked automatically: the forward
//                for D <= 128, the backward for D <= 128 (SDPA) / D <= 64
//                (RA), else the portable backward with the reason in its path.
//   tensor-core tf32  CUDA only, float, opt-in (Options::tf32): forward
//                (D <= 128 SDPA / 64 RA) and backward (D <= 64) on
//                mma.sync.m16n8k8 with fp32 tiles (detail/tf32.hpp); other
//                shapes keep the fp32 tiled kernels, the reason in the path.
// Options::portable or a pinned Options::tile forces the portable path.
// TilePlan::path says which one ran.
#pragma once

#include <ra/shape.hpp>
#include <ra/tensor.hpp>
#include <ra/variant.hpp>

#include <string>
#include <vector>

#if defined(KOKKOS_ENABLE_CUDA)
namespace ra::kk::detail::tc {
struct Args;
}
#endif

namespace ra::kk {

// The variants and their names: ra/variant.hpp (shared with the Vulkan backend).
using ra::Variant;
using ra::all_variants;
using ra::variant_name;
using ra::parse_variant;
using ra::is_ra;
using ra::is_fused;

struct Options {
  int window = -1;     // ra_window: reciprocal term where 0 <= i - j <= window (required >= 0)
  int gate_batch = 1;  // Gb: 1 = gates per head, B = gates per (batch, head)
  int tile = 0;        // fused variants: 0 = from kernel_traits.hpp; 8/16/32/64 pins br = bc
                       // (pinning a tile also pins the portable path)
  bool portable = false;  // force the portable path even where a tensor-core path exists
  int tc_candidate = -1;      // tensor-core forward: -1 = kernel_traits.hpp's table, else the
                              // index of a compiled candidate (tuning sweeps; head dims 33..64)
  int tc_bwd_candidate = -1;  // tensor-core backward, likewise
  bool tf32 = false;  // float storage on CUDA, fused variants: the forward's and backward's
                      // products on the TF32 tensor cores (operands rounded to 10-bit
                      // mantissas, fp32 accumulation: PyTorch's allow_tf32)
  bool deterministic = true;  // false: the bf16 tensor-core backward (CUDA) may run as ONE
                              // key-owned kernel that adds dQ into an fp32 workspace by
                              // atomics (fewer tile products; run-to-run bits may differ).
                              // Every other path is deterministic and ignores it
};

// Every tensor a forward and backward pass touches, allocated together so a
// benchmark or test owns one object. SDPA variants ignore gates, d, dd, dgates.
// [B,H,T,D] tensors hold Scalar (the storage type); the small [B,H,T] and
// gate tensors hold accum_t<Scalar> (float for bf16).
template <class Scalar, class Exec>
struct AttentionTensors {
  using T4 = Tensor4<Scalar, Exec>;
  using T3 = Tensor3<accum_t<Scalar>, Exec>;
  T4 q, k, v;        // inputs [B,H,T,D]
  T3 gates;          // [Gb,H,3] (w_std, w_rec, w_disc)
  T3 d;              // [B,H,T]  discoverability bias per key
  T4 o;              // forward output
  T3 lse;            // [B,H,T] row log-sum-exp, saved for backward
  T4 dout;           // upstream gradient dL/dO
  T4 dq, dk, dv;     // gradients
  T3 dd, dgates;     // gradients of d and of the gates

  static AttentionTensors allocate(const Shape& s, int gate_batch);
};

// Throws std::invalid_argument naming the problem if the variant cannot run
// this shape/options: extents >= 1, fused variants need D <= 128, ra_window
// needs window >= 0, gate_batch is 1 or B. Cheap: allocates nothing.
void check_supported(Variant v, const Shape& s, const Options& opt);

// Fused-kernel tiling chosen for a problem (reported by ra-bench).
struct TilePlan {
  std::string path;            // "portable [(why not the fast path)]", "tensor-core bf16 ...",
                               // "fp32 tiled ..." or "open-coded"
  int br = 0, bc = 0;          // query rows x key columns per tile
  int team_size = 0, vector_length = 0;
  int scratch_level = 0;       // 0: on-chip (CUDA shared memory); 1: global fallback
  std::size_t scratch_bytes = 0;
};

template <class Scalar, class Exec>
class Attention {
 public:
  using Tensors = AttentionTensors<Scalar, Exec>;

  // Validates the combination (check_supported) and allocates the workspace once.
  Attention(Variant v, const Shape& s, const Options& opt = {}, const Exec& exec = Exec());

  // Reads q,k,v (+gates,d for RA); writes o, lse.
  void forward(const Tensors& t) const;
  // Reads q,k,v,gates,d,o,lse,dout; writes dq,dk,dv (+dd,dgates for RA).
  void backward(const Tensors& t) const;

  Variant variant() const { return variant_; }
  const Shape& shape() const { return shape_; }
  const Options& options() const { return opt_; }
  // Tiling of the fused forward / backward kernels (zeros for open-coded).
  TilePlan forward_plan() const { return fwd_plan_; }
  TilePlan backward_plan() const { return bwd_plan_; }
  // Device bytes of this object's workspace (open-coded: its T x T buffers;
  // fused: O(B H T) row terms and partial sums only).
  std::size_t workspace_bytes() const;

 private:
  void check_tensors(const Tensors& t, bool backward) const;
#if defined(KOKKOS_ENABLE_CUDA)
  detail::tc::Args tensor_core_args(const Tensors& t) const;
#endif

  Variant variant_;
  Shape shape_;
  Options opt_;
  Exec exec_;
  TilePlan fwd_plan_, bwd_plan_;
  bool tensor_core_fwd_ = false, tensor_core_bwd_ = false;
  bool fp32_tiled_fwd_ = false;  // float on CUDA: the fp32 tiled forward runs
  bool fp32_tiled_bwd_ = false;  // ... and the fp32 tiled backward
  bool tf32_fwd_ = false;        // float on CUDA with Options::tf32: the TF32 tensor-core forward
  bool tf32_bwd_ = false;        // ... and backward
  bool fused_bwd_ = false;       // bf16 on CUDA with !Options::deterministic: the single-pass backward
  // Workspace: open-coded T x T buffers; Delta_i = dO_i . O_i; gate partials;
  // the tensor-core and fp32 tiled RA backwards' float dQ/dK parts (key-owned
  // kernel -> query-owned kernel).
  Tensor4<Scalar, Exec> s_, p_, dp_;
  Tensor3<accum_t<Scalar>, Exec> delta_;
  Tensor4<accum_t<Scalar>, Exec> gate_partials_;  // [B, H, n_partials, 3]
  Tensor4<float, Exec> part_dq_, part_dk_;
  Tensor4<float, Exec> dqf_accum_;  // the single-pass backward's [B, H, T, W] atomics target
};

// Useful FLOPs of one pass (ra/variant.hpp says how they are counted), with
// these options' reciprocity window.
inline double forward_flops(Variant v, const Shape& s, const Options& opt) { return ra::forward_flops(v, s, opt.window); }
inline double backward_flops(Variant v, const Shape& s, const Options& opt) {
  return ra::backward_flops(v, s, opt.window);
}

}  // namespace ra::kk
