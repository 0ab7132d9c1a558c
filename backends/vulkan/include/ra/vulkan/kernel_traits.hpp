// Tile shapes and workgroup size of the Vulkan kernels, from the device's
// limits, in ONE table (as backends/kokkos/include/ra/kokkos/kernel_traits.hpp
// does for Kokkos): the shaders are shared, only these numbers change from
// device to device.
//
// A plan is picked per problem: the largest square tile from `tiles` whose
// shared-memory footprint (forward_shared_floats / backward_shared_floats,
// which mirror the layouts in shaders/fwd.comp and shaders/bwd_common.glsl)
// fits `shared_budget`, and no larger than T needs.
#pragma once

#include <ra/vulkan/runtime.hpp>

#include <algorithm>
#include <array>
#include <cstddef>
#include <vector>

namespace ra::vk {

struct KernelTraits {
  std::array<int, 4> tiles;   // candidate br = bc, largest first
  std::size_t shared_budget;  // bytes of workgroup shared memory a plan may use
  int threads;                // invocations per workgroup (spec constant 0)
};

inline KernelTraits kernel_traits(const DeviceInfo& dev) {
  const std::size_t limit = dev.shared_memory_bytes;
  KernelTraits t{{64, 32, 16, 8}, limit, 64};
  if (dev.vendor_id == 0x10de) {
    // NVIDIA: 48 KiB is what a workgroup gets without an opt-in (Vulkan
    // reports exactly that); 4 warps per workgroup.
    t.shared_budget = std::min<std::size_t>(limit, 48 * 1024);
    t.threads = 128;
  } else if (dev.type == VK_PHYSICAL_DEVICE_TYPE_CPU) {
    // lavapipe: a workgroup runs on one CPU thread in SIMD-8 chunks, so a
    // small group keeps both cores busy on the test shapes.
    t.threads = 64;
  } else if (dev.subgroup_size > 0) {
    // AMD (wave64) and others: at least two subgroups per workgroup.
    t.threads = int(std::max<std::uint32_t>(64, 2 * dev.subgroup_size));
  }
  t.threads = int(std::min<std::uint32_t>(std::uint32_t(t.threads), dev.max_invocations));
  return t;
}

// Shared floats of the forward kernel (shaders/fwd.comp) for tile br x bc.
inline std::size_t forward_shared_floats(int br, int bc, int D, int W) {
  const std::size_t wp = W + 1, dp = D + 1, cp = bc + 1;
  return br * wp + bc * wp + bc * dp + br * cp + br * dp + 3 * std::size_t(br) + bc;
}

// Shared floats of the backward kernels (shaders/bwd_common.glsl).
inline std::size_t backward_shared_floats(int br, int bc, int D, int W, int threads) {
  const std::size_t wp = W + 1, dp = D + 1, cp = bc + 1;
  return br * wp + br * dp + bc * wp + bc * dp + 2 * br * cp + 2 * std::size_t(br) + 2 * bc +
         2 * std::size_t(threads);
}

// The register-tiled forward (shaders/fwd_tiled.comp): a fixed 64 x 64
// logits tile on 128 invocations (4 x 8 accumulators each, rows shared by 8
// consecutive lanes of a subgroup), KC = 8 k-values per staged chunk, rows
// of LD = 68 floats. What varies per device is VC, the V rows staged per
// step (vc_candidates, the first that fits the budget): V shares its space
// with the two chunk stages, so VC = 64 at DP = 64 costs no more than the
// stages do at DP = 128 with VC = 32.
struct TiledForwardTraits {
  static constexpr int tile = 64, threads = 128, kc = 8, ld = 68;
  static constexpr std::array<int, 4> vc_candidates{64, 32, 16, 8};
};

// O / V columns of the tiled forward for head dim D: 32, 64 or 128 (the
// shader is compiled once per padded width, fwd_tiled<DP>).
inline int tiled_forward_dp(int D) { return D <= 32 ? 32 : D <= 64 ? 64 : 128; }

// Shared floats of shaders/fwd_tiled.comp with VC V rows per step: the
// union of the two [Qf | Kf] chunk stages and the V rows, the transposed
// probabilities Pt (64 x LD), the bias (64).
inline std::size_t tiled_forward_shared_floats(int D, int vc) {
  using Tr = TiledForwardTraits;
  const std::size_t stages = 2 * 2 * Tr::kc * Tr::ld, v = std::size_t(vc) * tiled_forward_dp(D);
  return std::max(stages, v) + std::size_t(Tr::tile) * Tr::ld + Tr::tile;
}

// The coopmat kernels (shaders/fwd_cm.comp, bwd_cm.comp): own rows (16 per
// subgroup) x streamed rows, both multiples of 16, preferred first: more
// subgroups per workgroup (one staged tile shared by more rows, so fewer
// bytes staged and fewer barriers per row), then longer streamed tiles
// (fewer workgroup barriers per key). The first that fits the shared budget,
// the caps ($RA_VK_CM_ROWS / $RA_VK_CM_KEYS) and T runs.
// 128-row tiles only for RA at D <= 64, where they were measured to pay
// (perf v27, H100, T=4096: RA forward -2-3%, forward+backward -2% against
// 64 rows): RA stages twice SDPA's bytes per key (Kf = [K, Q]). SDPA ran
// 4% / 15% slower with them (one 256-invocation workgroup per SM where two
// of 128 overlap each other's barriers); D = 128 was not measured.
// SDPA at D <= 64 streams 32 keys per tile first (perf v29, H100, KHR
// kernels, T=4096: forward 1.16 -> 1.06 ms, forward+backward 4.53 -> 4.25;
// RA ran 21% / 12% slower with 32 keys, so it keeps 64).
inline std::vector<std::array<int, 2>> coopmat_tiles(bool ra, int D) {
  std::vector<std::array<int, 2>> t;
  if (ra && D <= 64) t = {{128, 64}, {128, 32}};
  if (!ra && D <= 64) t = {{64, 32}};
  for (const auto& x : {std::array<int, 2>{64, 64}, {64, 32}, {32, 64}, {32, 32}, {16, 64}, {16, 32}, {16, 16}})
    if (std::find(t.begin(), t.end(), x) == t.end()) t.push_back(x);
  return t;
}

// Shared bytes of shaders/fwd_cm.comp (its strides: rows padded by 8 halves
// or 4 floats; D padded to a multiple of 16): the Kf tile (which also stages
// Qf), the V tile, one fp32 block per subgroup (16 x bc logits for the
// shared-memory row statistics; 16 x 16 where they live in registers,
// `rowreg`), per-row max / rescale, the bias; the emulated build adds a
// 2 KiB product scratch per subgroup.
inline std::size_t coopmat_forward_shared_bytes(int br, int bc, int D, bool ra, bool emulated,
                                                bool rowreg) {
  const std::size_t d16 = std::size_t(D + 15) / 16 * 16, w16 = ra ? 2 * d16 : d16;
  const std::size_t qs = w16 + 8, vs = d16 + 8, ss = rowreg ? 20 : bc + 4;
  const std::size_t halves = bc * qs + bc * vs;
  const std::size_t floats =
      br * ss + 2 * std::size_t(br) + bc + (emulated ? std::size_t(br / 16) * 512 : 0);
  return 2 * halves + 4 * floats;
}

// Whether the coopmat kernels' prefetching loops have registers for a tile
// of `own` rows (16 per subgroup) x `streamed` rows: each invocation holds
// its share of the next streamed tile's folded chunks (Kf, or the
// backward's F: width 2 D16 for RA), its dO / V chunks and its per-row
// scalars (bias; lse and Delta) in at most 16 named registers of each kind
// (CM_DECL16 in cm_common.glsl; named, since NVIDIA's compiler put the
// arrays they replaced in local memory). Past that fwd_cm and bwd_cm run
// single-stage and their paths say so. The emulated builds keep arrays and
// always fit.
inline bool coopmat_prefetch_fits(int own, int streamed, int D, bool ra, int subgroup) {
  const int threads = own / 16 * subgroup;
  const int d16 = (D + 15) / 16 * 16, w16 = ra ? 2 * d16 : d16;
  const auto per_invocation = [&](int n) { return (n + threads - 1) / threads; };
  return per_invocation(streamed * w16 / 8) <= 16 && per_invocation(streamed * d16 / 8) <= 16 &&
         per_invocation(streamed) <= 16;
}

// Whether bwd_cm's prefetch pays at head dim D (H100, T=4096, perf v27):
// at D = 64 RA's backward ran 13% faster with it, SDPA's 1%; at D = 128 its
// registers spill (300-1000 bytes a lane) and RA's backward ran 34% slower,
// SDPA's 15%. Between the two: not measured, off.
inline bool coopmat_backward_prefetch_pays(int D) { return D <= 64; }

// The coopmat2 forward (shaders/fwd_cm2.comp): br query rows x bc keys of
// one workgroup-scope matrix each, the coopmat forward's candidates up to
// 64 rows (more rows per workgroup first: K^T / V loads shared by more rows). It
// declares no shared memory (the driver stages workgroup-scope operands in
// memory it reserves), so the budget does not limit it; registers do: per
// invocation the Q (and RA: K) rows, O and two logit tiles. At D > 64
// 32-row tiles come first, halving those (a guess, not measured).
inline std::array<std::array<int, 2>, 7> coopmat2_tiles(int D) {
  if (D > 64) return {{{32, 64}, {32, 32}, {64, 64}, {64, 32}, {16, 64}, {16, 32}, {16, 16}}};
  return {{{64, 64}, {64, 32}, {32, 64}, {32, 32}, {16, 64}, {16, 32}, {16, 16}}};
}

// The coopmat2 forward's padding of D and width of its per-row statistics
// (fwd_cm2.comp's G): the device's N and K granularity of workgroup-scope
// fp16 products, at least 16 (the usual 16 x 16 x 16 step).
inline int coopmat2_granularity(const DeviceInfo& dev) {
  return int(std::max<std::uint32_t>({16, dev.coopmat2_granularity[1], dev.coopmat2_granularity[2]}));
}

// Shared bytes of shaders/bwd_cm.comp, the larger of its two kernels: own
// rows (16 per subgroup) and streamed rows (both multiples of 16). The
// streamed folded and dO / V tiles (which also stage the own rows), one
// 16 x 20 fp32 scratch block per subgroup, lse and Delta per query row, the
// bias per key row, two reduction slots per subgroup; the emulated build
// adds a 2 KiB product scratch per subgroup.
inline std::size_t coopmat_backward_shared_bytes(int own, int streamed, int D, bool ra, bool emulated) {
  const std::size_t d16 = std::size_t(D + 15) / 16 * 16, w16 = ra ? 2 * d16 : d16;
  const std::size_t nsg = std::size_t(own) / 16;
  const std::size_t halves = streamed * (w16 + 8) + streamed * (d16 + 8);
  // query-owned: 2 own + 1 streamed per-row scalars; key-owned: 2 streamed + 1 own
  const std::size_t rows = 2 * std::size_t(std::max(own, streamed)) + std::min(own, streamed);
  const std::size_t floats = nsg * 16 * 20 + rows + 2 * nsg + (emulated ? nsg * 512 : 0);
  return 2 * halves + 4 * floats;
}

}  // namespace ra::vk
