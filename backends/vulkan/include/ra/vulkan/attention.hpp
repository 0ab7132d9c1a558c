// Public API of the Vulkan attention kernels, shaped like ra::kk::Attention
// (backends/kokkos/include/ra/kokkos/attention.hpp) so tests and drivers
// treat both backends alike: a variant, a shape, options, forward, backward.
//
//   Variant       Vulkan kernel
//   sdpa_fused    flash-style causal SDPA: a workgroup owns a query tile and
//                 streams key/value tiles through shared memory (online softmax)
//   ra_fused      RA in RA.md's folded form (Qf = [w_std Q, w_rec K],
//                 Kf = [K, Q], 2D wide, plus the bias w_disc d)
//   ra_window     ra_fused with reciprocity only where i - j <= window
//                 (tiles outside the band skip the reciprocal half)
//   sdpa_open, ra_open: not on Vulkan (std::invalid_argument says so)
//
// Backward is deterministic (no atomics): a key-owned kernel (dV, dK, the Kf
// half of dQ, dd, dw_disc shares), a query-owned kernel (the rest of dQ and
// dK, dw_std / dw_rec shares) and a fixed-order gate reduction.
//
// Tensors are host std::vector<float> in the layouts of backends/reference
// ([B,H,T,D], [B,H,T], [Gb,H,3]); forward/backward upload what they read and
// download what they write. For timing, the device-resident steps
// (upload / run_* / download_*) are public too, and run_* records the GPU
// time of its command buffer with timestamp queries (last_gpu_ms).
#pragma once

#include <ra/shape.hpp>
#include <ra/vulkan/runtime.hpp>

#include <ra/variant.hpp>

#include <memory>
#include <string>
#include <vector>

namespace ra::vk {

// The variants and their names: ra/variant.hpp (shared with ra::kk).
using ra::Variant;
using ra::variant_name;
using ra::parse_variant;
using ra::is_ra;
// The variants this backend runs (the fused ones).
const std::vector<Variant>& all_variants();

// Storage of the [B,H,T,D] tensors on the device; sums are always fp32.
enum class Precision { fp32, fp16 };
std::string precision_name(Precision p);

// The forward's kernel.
//   automatic: fp16, the coopmat2 kernel (shaders/fwd_cm2.comp) where the
//     device has it (DeviceInfo::coopmat2; $RA_VK_NO_CM2=1 turns it off
//     there) and the build embedded it (glslang >= 15); else the
//     cooperative-matrix kernel
//     (shaders/fwd_cm.comp) where the device has it (DeviceInfo::coopmat_f16,
//     subgroup size 32); neither where $RA_VK_COOPMAT is 0; otherwise (and
//     always for fp32) the
//     register-tiled kernel (shaders/fwd_tiled.comp) where it can run
//     (subgroup shuffles, a subgroup size that is a multiple of 8 dividing
//     128, a V chunk within shared memory); otherwise the scalar one
//     (shaders/fwd.comp). $RA_VK_FORWARD = scalar | tiled | coopmat |
//     coopmat2 | coopmat_emulated picks as the values below do (automatic
//     only).
//   scalar: always the scalar kernel (comparisons).
//   tiled: the register-tiled kernel where it can run (fp32 or fp16), else
//     the scalar one.
//   coopmat: the cooperative-matrix kernel (NV v1) where it can run (fp16
//     only), else as automatic without it (and without coopmat2).
//   coopmat2: the coopmat2 kernel where it can run (fp16 only), else as
//     automatic without it.
//   coopmat_emulated: the coopmat kernel's code with its matrix products done
//     by plain lanes, on any device with fp16 (tests its staging, masking and
//     softmax where no tensor cores exist); fp16 only, throws where it
//     cannot run.
// Where the kernel asked for (or the automatic first choice) cannot run,
// forward_plan().note says why; forward_plan().path names what runs.
//
// $RA_VK_CUT = 1..kForwardCutMax (any path; read when an Attention is made)
// cuts the coopmat forwards (fwd_cm, fwd_cm2, fwd_cm_emu) down for timing:
// one part of their per-key-tile work left out (the list is in
// shaders/fwd_cm.comp and docs/vulkan.md), outputs wrong by design;
// forward_plan().path then ends in "CUT=<n> (timing only, output wrong)".
// Unset, empty or 0: the real kernels. Another value, or a cut where the
// forward that runs is not a coopmat one, throws std::invalid_argument.
//
// $RA_VK_PREFETCH = 0 | 1 (read when an Attention is made) picks the key
// loop of the coopmat forward (fwd_cm, fwd_cm_emu; spec constant PREFETCH):
// 1, the default (unset or empty), loads the next key tile into registers
// while the current one is computed; 0 is the single-stage loop (load,
// store, barrier, compute). forward_plan().path ends in " prefetch" or
// " single-stage" for those kernels (before any CUT). It also picks the
// coopmat backward's streamed loop (bwd_cm) at head dims up to 64, where
// that prefetch pays (kernel_traits.hpp; backward_plan().path adds
// " single-stage (tile too large to prefetch)" where a tile does not fit its
// registers); other kernels ignore it. Another value throws
// std::invalid_argument naming the variable.
//
// $RA_VK_CM_ROWS = 16 | 32 | 64 | 128 and $RA_VK_CM_KEYS = 16 | 32 | 64
// (read when an Attention is made) cap the rows one workgroup of the coopmat
// kernels owns (fwd_cm's query rows, bwd_cm's own rows; 16 per subgroup;
// unset or empty: 128) and streams per tile (keys, or the key-owned
// backward's queries; unset or empty: 64), for tile A/Bs. The tiles the
// plans pick are in forward_plan() / backward_plan(). Another value throws
// std::invalid_argument naming the variable.
//
// $RA_VK_GRID = 0 | 1 | 2 (read when an Attention is made) lays out the
// coopmat forward's workgroups (fwd_cm, fwd_cm_emu; spec constant GRID), to
// measure how the order in which the GPU starts them moves the L2's working
// set: 0, the default (unset or empty), a 2-D grid (x: query tile, y: b*h);
// 1, one row of workgroups, the query tiles of one head consecutive; 2, one
// row, the heads of one query tile consecutive. forward_plan().path ends in
// " grid=1" or " grid=2" for those kernels (before any CUT); other kernels
// ignore it. Another value throws std::invalid_argument naming the variable,
// as does a 1-D grid longer than the device's maxComputeWorkGroupCount[0].
//
// $RA_VK_ROWSTATS = 0 | 1 (read when an Attention is made): where the
// coopmat forward (fwd_cm, fwd_cm_emu; spec constant ROWREG) keeps its
// softmax row statistics. 1, the default (unset or empty): in registers on
// NVIDIA (each row in one quad of lanes, a lane's elements split between
// its two rows as $RA_VK_CM_SELB says; the kernel checks both on its index
// map and writes NaN outputs where they do not hold); 0: always through
// shared memory, and forward_plan().path adds " shared-rowstats". Another
// value throws std::invalid_argument.
//
// $RA_VK_CM_SELB = 0..255 (decimal or 0x hex; read when an Attention is
// made): the row split of the coopmat kernels' fp32 accumulators (bit k set
// where a lane's element k lies in its second row; spec constant CM_SELB of
// fwd_cm and bwd_cm). Unset or empty: NVIDIA's, 0xF0. Another value throws
// std::invalid_argument naming the variable.
//
// $RA_VK_BWD_CUT = 1 | 2 (read when an Attention is made; timing only): the
// backward leaves out its key-owned (1) or query-owned (2) kernel, so each
// one's share of the backward's time is the difference; outputs wrong,
// backward_plan().path ends in " BWD_CUT=<n> (timing only, ...)". Unset,
// empty or 0: the real backward. Another value throws
// std::invalid_argument naming the variable.
constexpr int kForwardCutMax = 9;
enum class ForwardPath { automatic, scalar, tiled, coopmat, coopmat_emulated, coopmat2 };
std::string forward_path_name(ForwardPath p);

// The fp16 backward's kernels. automatic: the cooperative-matrix one
// (shaders/bwd_cm.comp) where the device has it (as the forward:
// DeviceInfo::coopmat_f16, subgroup size 32), unless $RA_VK_COOPMAT_BWD is 0,
// else the scalar one; coopmat: the cooperative-matrix one where the device
// has it, whatever the variable says; scalar: always the
// scalar kernels; coopmat_emulated: the coopmat kernels' code with plain
// lanes doing the products, on any fp16 device (tests). Where the coopmat
// backward cannot run, backward_plan().note says why.
enum class BackwardPath { automatic, scalar, coopmat, coopmat_emulated };

struct Options {
  int window = -1;     // ra_window: reciprocal term where 0 <= i - j <= window (required >= 0)
  int gate_batch = 1;  // Gb: 1 = gates per head, B = gates per (batch, head)
  // 0 = from kernel_traits.hpp; 8/16/32/64 pins br = bc of the scalar kernels
  // (coopmat: 16/32/64); the tiled forward (64 x 64 logits) takes it as its V
  // rows per step.
  int tile = 0;
  Precision precision = Precision::fp32;
  ForwardPath forward_path = ForwardPath::automatic;
  BackwardPath backward_path = BackwardPath::automatic;
};

// Every tensor a forward and backward pass touches (host side). SDPA
// variants ignore gates, d, dd, dgates.
struct HostTensors {
  std::vector<float> q, k, v;  // [B,H,T,D]
  std::vector<float> gates;    // [Gb,H,3]
  std::vector<float> d;        // [B,H,T]
  std::vector<float> o, lse;   // forward outputs
  std::vector<float> dout;     // upstream gradient
  std::vector<float> dq, dk, dv, dd, dgates;
  static HostTensors allocate(const Shape& s, int gate_batch);
};

// Throws std::invalid_argument naming the problem if the variant cannot run
// this shape/options on any device: extents >= 1, fused variants only,
// D <= 128, ra_window needs window >= 0, gate_batch is 1 or B.
void check_supported(Variant v, const Shape& s, const Options& opt);

// Whether the real coopmat kernels (forward and backward) run on KHR
// cooperative matrices (fwd_cm_khr, bwd_cm_q_khr, bwd_cm_kv_khr: the same
// sources built with RA_CM_KHR by glslang >= 15) rather than NV ones: where
// this build has them, the device has coopmat2 (DeviceInfo::coopmat2; its
// conversions make the fp32 logits the fp16 A operand) and
// $RA_VK_CM_KHR is not 0. NVIDIA's driver transposes every NV B fragment
// with MOVM instructions before each product; KHR fragments load in place
// (docs/vulkan.md, "Reading the driver's code"). Throws
// std::invalid_argument, starting with `who`, for a value of $RA_VK_CM_KHR
// other than 0 or 1 (Attention's constructor asks on every device).
bool coopmat_khr_runs(const DeviceInfo& dev, const std::string& who = "ra::vk::coopmat_khr_runs");

struct TilePlan {
  // "scalar fp32" / "scalar fp16-storage" / "tiled fp32" /
  // "tiled fp16-storage" / "coopmat fp16-storage" (NV cooperative
  // matrices) / "coopmat-khr fp16-storage" (KHR ones, coopmat_khr_runs()) /
  // "coopmat-emulated fp16-storage" / "coopmat2 fp16-storage"; the coopmat
  // forwards (not coopmat2) followed by " prefetch" or " single-stage"
  std::string path;
  // Why not the faster kernels (each skipped one's reason, "; "-separated:
  // no VK_NV_cooperative_matrix2, no VK_NV_cooperative_matrix, forced, not
  // asked for (backward), ...); "" where the first choice runs.
  std::string note;
  // Scalar and coopmat forward: query rows x key rows of a tile. Tiled
  // forward: 64 x 64, and vc = V rows staged per step. Coopmat backward:
  // br = rows a workgroup owns (queries in the query-owned kernel, keys in
  // the key-owned one), bc = rows it streams per step.
  int br = 0, bc = 0, threads = 0, vc = 0;
  std::size_t shared_bytes = 0;
};

struct KernelTraits;  // kernel_traits.hpp

class Attention {
 public:
  using Tensors = HostTensors;

  // Validates (check_supported, then the device's limits: shared memory,
  // buffer range, workgroup counts, fp16 support) and allocates every device
  // buffer once. ctx = nullptr uses Context::shared().
  Attention(Variant v, const Shape& s, const Options& opt = {},
            std::shared_ptr<Context> ctx = nullptr);
  ~Attention();
  Attention(const Attention&) = delete;
  Attention& operator=(const Attention&) = delete;

  // Reads q,k,v (+gates,d for RA); writes o, lse.
  void forward(Tensors& t);
  // Reads q,k,v,gates,d,o,lse,dout; writes dq,dk,dv (+dd,dgates for RA).
  void backward(Tensors& t);

  // Device-resident steps.
  void upload(const Tensors& t, bool with_backward_inputs);
  void run_forward();
  void run_backward();
  void download_forward(Tensors& t);
  void download_backward(Tensors& t);
  // Sets every output buffer to NaN, so a value a kernel forgets to write
  // fails a comparison instead of passing as a stale one (tests).
  void poison_outputs();
  // GPU milliseconds of the last run_* (timestamp queries); NaN if the
  // queue has no timestamps.
  double last_gpu_ms() const { return last_ms_; }
  // GPU milliseconds of each of `reps` repetitions (the forward, then the
  // backward where `with_backward`) recorded back to back into one command
  // buffer, a timestamp between consecutive ones, so the GPU does not wait
  // for the host between repetitions as it does between run_* calls (one
  // submit-and-wait each; on the H100 both ways gave the same medians, perf
  // v25). Each repetition's time runs from the end of the one before to its
  // own end. All NaN if the queue has no timestamps; the outputs are the
  // last repetition's.
  std::vector<double> time_repetitions(int reps, bool with_backward);

  Variant variant() const { return variant_; }
  const Shape& shape() const { return shape_; }
  const Options& options() const { return opt_; }
  TilePlan forward_plan() const { return fwd_plan_; }
  TilePlan backward_plan() const { return bwd_plan_; }
  std::size_t workspace_bytes() const;
  Context& context() const { return *ctx_; }

 private:
  struct Buffers;
  void choose_forward(const std::string& who, const KernelTraits& tr);
  // Each returns "" and sets fwd_plan_ / fwd_kernel_ if its kernel can run,
  // else why it cannot.
  std::string plan_coopmat_forward(const std::string& who, const KernelTraits& tr, bool emulate);
  std::string plan_tiled_forward(const KernelTraits& tr);
  std::string plan_coopmat2_forward();
  std::vector<std::uint32_t> forward_spec() const;
  // The forward is fwd_cm.comp's (fwd_cm, fwd_cm_khr or fwd_cm_emu).
  bool forward_is_cm() const;
  void plan_coopmat_backward(const std::string& who, const KernelTraits& tr);
  // Why no coopmat kernel may run ("" if one may): the device and options
  // checks the forward and backward share.
  std::string coopmat_refusal(bool emulate) const;
  void record_forward(VkCommandBuffer cb);
  void record_backward(VkCommandBuffer cb);
  void record_and_time(const std::function<void(VkCommandBuffer)>& record);
  std::vector<double> submit_timed(int reps, VkQueryPool pool,
                                   const std::function<void(VkCommandBuffer)>& record);

  Variant variant_;
  Shape shape_;
  Options opt_;
  std::shared_ptr<Context> ctx_;
  TilePlan fwd_plan_, bwd_plan_;
  std::string fwd_kernel_;  // embedded kernel name of the forward
  int fwd_cut_ = 0;         // $RA_VK_CUT (timing cut of the coopmat forwards)
  bool fwd_prefetch_ = true;  // $RA_VK_PREFETCH (fwd_cm's key loop)
  int fwd_grid_ = 0;          // $RA_VK_GRID (fwd_cm's workgroup layout)
  bool fwd_rowstats_ = true;  // $RA_VK_ROWSTATS (fwd_cm's row statistics in registers)
  bool fwd_rowreg_ = false;   // ... and whether the plan uses them (spec constant ROWREG)
  std::uint32_t cm_row_split_ = 0;  // the coopmat accumulators' row split (spec constant CM_SELB)
  int cm_rows_ = 128;         // $RA_VK_CM_ROWS (most rows a coopmat workgroup owns)
  int cm_keys_ = 64;          // $RA_VK_CM_KEYS (most rows it streams per tile)
  bool cm_khr_ = false;       // the real coopmat kernels on KHR matrices (coopmat_khr_runs())
  std::string bwd_cm_;      // "" (scalar backward), "coopmat", "khr" or "emulated"
  bool bwd_rowreg_ = false; // bwd_cm's own-row values in registers (spec constant ROWREG)
  bool bwd_prefetch_ = false;  // bwd_cm's streamed loop prefetched (spec constant PREFETCH)
  int bwd_cut_ = 0;            // $RA_VK_BWD_CUT (timing: one backward kernel left out)
  int W_ = 0;
  std::unique_ptr<Buffers> buf_;
  VkDescriptorPool desc_pool_ = VK_NULL_HANDLE;
  VkDescriptorSet set_ = VK_NULL_HANDLE;
  VkQueryPool queries_ = VK_NULL_HANDLE;
  double last_ms_ = 0;
};

// Useful FLOPs of one pass (ra/variant.hpp), with these options' window.
inline double forward_flops(Variant v, const Shape& s, const Options& opt) { return ra::forward_flops(v, s, opt.window); }
inline double backward_flops(Variant v, const Shape& s, const Options& opt) {
  return ra::backward_flops(v, s, opt.window);
}

}  // namespace ra::vk
