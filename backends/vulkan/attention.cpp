// ra::vk::Attention: plans, device buffers and command recording for the
// kernels in shaders/ (see attention.hpp for what each pass computes).
#include <ra/vulkan/attention.hpp>
#include <ra/vulkan/kernel_traits.hpp>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <utility>

namespace ra::vk {

const std::vector<Variant>& all_variants() {
  static const std::vector<Variant> v{Variant::sdpa_fused, Variant::ra_fused, Variant::ra_window};
  return v;
}

std::string precision_name(Precision p) { return p == Precision::fp16 ? "fp16" : "fp32"; }

std::string forward_path_name(ForwardPath p) {
  switch (p) {
    case ForwardPath::automatic: return "automatic";
    case ForwardPath::scalar: return "scalar";
    case ForwardPath::tiled: return "tiled";
    case ForwardPath::coopmat: return "coopmat";
    case ForwardPath::coopmat_emulated: return "coopmat_emulated";
    case ForwardPath::coopmat2: return "coopmat2";
  }
  return "?";
}

HostTensors HostTensors::allocate(const Shape& s, int gate_batch) {
  HostTensors t;
  const std::size_t n4 = s.qkv_elems(), n3 = s.row_elems(), ng = std::size_t(gate_batch) * s.H * 3;
  for (auto* x : {&t.q, &t.k, &t.v, &t.o, &t.dout, &t.dq, &t.dk, &t.dv}) x->assign(n4, 0.0f);
  for (auto* x : {&t.d, &t.lse, &t.dd}) x->assign(n3, 0.0f);
  for (auto* x : {&t.gates, &t.dgates}) x->assign(ng, 0.0f);
  return t;
}

void check_supported(Variant v, const Shape& s, const Options& opt) {
  const std::string who = "ra::vk::Attention(" + variant_name(v) + ")";
  s.validate(who);
  if (v == Variant::sdpa_open || v == Variant::ra_open)
    throw std::invalid_argument(who + ": the open-coded variants have no Vulkan kernels; use "
                                "sdpa_fused, ra_fused or ra_window (or the Kokkos backend)");
  if (opt.gate_batch != 1 && opt.gate_batch != s.B)
    throw std::invalid_argument(who + ": gate_batch = " + std::to_string(opt.gate_batch) +
                                " but must be 1 or B = " + std::to_string(s.B));
  if (v == Variant::ra_window && opt.window < 0)
    throw std::invalid_argument(who + ": window = " + std::to_string(opt.window) +
                                " but ra_window needs a window >= 0");
  if (v != Variant::ra_window && opt.window >= 0)
    throw std::invalid_argument(who + ": window = " + std::to_string(opt.window) +
                                " is only meaningful for ra_window");
  if (opt.tile != 0 && opt.tile != 8 && opt.tile != 16 && opt.tile != 32 && opt.tile != 64)
    throw std::invalid_argument(who + ": tile = " + std::to_string(opt.tile) +
                                " but must be 0 (automatic) or one of 8, 16, 32, 64");
  if (s.D > 128)
    throw std::invalid_argument(who + ": head dim D = " + std::to_string(s.D) +
                                " is not supported by the Vulkan kernels (D <= 128)");
}

// ---------------------------------------------------------------------------

namespace {

constexpr std::uint32_t kNaN32 = 0x7fc00000u;  // fp32 quiet NaN
constexpr std::uint32_t kNaN16 = 0x7e007e00u;  // two fp16 quiet NaNs

// Binding slots; shaders/common.glsl declares the same numbers.
enum Slot : std::uint32_t {
  kQ, kK, kV, kGates, kD, kO, kLse, kDout, kDq, kDk, kDv, kDd, kDgates, kDelta, kPartials, kAcc,
  kSlots
};
static_assert(kSlots == Context::kBindings, "one buffer per binding");

struct Push {
  std::uint32_t B, H, T;
  std::int32_t window;
  std::uint32_t gate_batch, n_tiles;
  float scale;
  std::uint32_t pad;
};
static_assert(sizeof(Push) == Context::kPushBytes, "push constant block size");

int ceil_div(int a, int b) { return (a + b - 1) / b; }

// 1..T rounded up to a power of two, at least 8: no tile larger than T needs.
int tile_cap(int T) {
  int c = 8;
  while (c < T && c < 64) c *= 2;
  return c;
}

std::uint16_t to_half(float f) {
  // Round to nearest even; handles subnormals, infinities and NaN.
  std::uint32_t x;
  std::memcpy(&x, &f, 4);
  const std::uint32_t sign = (x >> 16) & 0x8000u;
  std::uint32_t absx = x & 0x7fffffffu;
  if (absx >= 0x7f800000u) return std::uint16_t(sign | 0x7c00u | (absx > 0x7f800000u ? 0x200u : 0));
  if (absx >= 0x477ff000u) return std::uint16_t(sign | 0x7c00u);  // rounds past 65504: inf
  if (absx < 0x38800000u) {                                        // subnormal half (or zero)
    const float a = std::fabs(f) * 16777216.0f;                    // / 2^-24
    return std::uint16_t(sign | std::uint32_t(std::nearbyint(a)));
  }
  const std::uint32_t mant = absx & 0x7fffffu;
  std::uint32_t h = ((absx >> 23) - 112) << 10 | (mant >> 13);
  const std::uint32_t rest = mant & 0x1fffu;
  if (rest > 0x1000u || (rest == 0x1000u && (h & 1u))) ++h;
  return std::uint16_t(sign | h);
}

float from_half(std::uint16_t h) {
  const std::uint32_t sign = std::uint32_t(h & 0x8000u) << 16;
  const std::uint32_t e = (h >> 10) & 0x1fu, m = h & 0x3ffu;
  float f;
  if (e == 0) {
    f = std::ldexp(float(m), -24);
  } else if (e == 31) {
    f = m ? std::numeric_limits<float>::quiet_NaN() : std::numeric_limits<float>::infinity();
  } else {
    f = std::ldexp(float(m | 0x400u), int(e) - 25);
  }
  std::uint32_t x;
  std::memcpy(&x, &f, 4);
  x |= sign;
  std::memcpy(&f, &x, 4);
  return f;
}

// $RA_VK_CUT (attention.hpp, kForwardCutMax): 0 where unset or empty.
int forward_cut_from_env(const std::string& who) {
  const char* env = std::getenv("RA_VK_CUT");
  if (!env || !*env) return 0;
  const std::string e = env;
  if (e.size() == 1 && e[0] >= '0' && e[0] - '0' <= kForwardCutMax) return e[0] - '0';
  throw std::invalid_argument(who + ": RA_VK_CUT = '" + e + "' but must be one of 0.." +
                              std::to_string(kForwardCutMax) +
                              " (a timing cut of the coopmat forwards, docs/vulkan.md; "
                              "unset or 0: the real kernel)");
}

// $RA_VK_BWD_CUT (attention.hpp): 0 where unset or empty.
int backward_cut_from_env(const std::string& who) {
  const char* env = std::getenv("RA_VK_BWD_CUT");
  if (!env || !*env) return 0;
  const std::string e = env;
  if (e == "0" || e == "1" || e == "2") return e[0] - '0';
  throw std::invalid_argument(who + ": RA_VK_BWD_CUT = '" + e + "' but must be 0, 1 or 2 (a timing cut " +
                              "of the backward: 1 leaves out the key-owned kernel, 2 the query-owned " +
                              "one, docs/vulkan.md; unset or 0: the real backward)");
}

// A 0 / 1 switch of the coopmat kernels read from the environment
// (attention.hpp): `fallback` where unset or empty; any other value throws,
// naming the variable and what it picks.
bool switch_from_env(const char* name, bool fallback, const std::string& who, const char* what) {
  const char* env = std::getenv(name);
  if (!env || !*env) return fallback;
  const std::string e = env;
  if (e == "0" || e == "1") return e == "1";
  throw std::invalid_argument(who + ": " + name + " = '" + e + "' but must be 0 or 1 (" + what +
                              ", docs/vulkan.md; unset: " + (fallback ? "1" : "0") + ")");
}

// $RA_VK_GRID (attention.hpp): 0 where unset or empty.
int forward_grid_from_env(const std::string& who) {
  const char* env = std::getenv("RA_VK_GRID");
  if (!env || !*env) return 0;
  const std::string e = env;
  if (e == "0" || e == "1" || e == "2") return e[0] - '0';
  throw std::invalid_argument(who + ": RA_VK_GRID = '" + e + "' but must be 0, 1 or 2 (the coopmat " +
                              "forward's workgroup layout: 0 2-D, 1 1-D head-major, 2 1-D " +
                              "tile-major, docs/vulkan.md; unset: 0)");
}

// Whether the real coopmat kernels keep per-row values in registers
// (fwd_cm's and bwd_cm's spec constant ROWREG): on NVIDIA, whose
// accumulator layout the kernels' check (CM_ROW_LAYOUT) expects, unless
// $RA_VK_ROWSTATS=0 (`asked`); never in the emulated builds.
bool coopmat_row_registers(const DeviceInfo& dev, bool emulate, bool asked) {
  return asked && !emulate && dev.vendor_id == 0x10de;
}

// How NVIDIA's 16 x 16 fp32 accumulators split a lane's 8 elements between
// its two rows (bit k set: element k in the second; the kernels' CM_SELB,
// spec constant 12), so the real coopmat kernels choose per element at
// pipeline build time. Not documented by the driver: learnt on the H100
// (perf v28: of the 35 splits with 4 elements a row and element 0 in the
// first, only 0xF0, elements 0-3 in the first row and 4-7 in the second,
// gave finite outputs), and checked by every kernel (CM_ROW_LAYOUT: NaN
// outputs where it does not hold). $RA_VK_CM_SELB (0..255, decimal or 0x
// hex) overrides it, for a new device or driver.
constexpr std::uint32_t kNvidiaRowSplit = 0xF0;
std::uint32_t coopmat_row_split(const std::string& who) {
  const char* env = std::getenv("RA_VK_CM_SELB");
  if (!env || !*env) return kNvidiaRowSplit;
  char* end = nullptr;
  const unsigned long v = std::strtoul(env, &end, 0);
  if (*end || v > 255)
    throw std::invalid_argument(who + ": RA_VK_CM_SELB = '" + env + "' but must be 0..255 (the coopmat " +
                                "accumulators' row split, docs/vulkan.md; unset: " +
                                std::to_string(kNvidiaRowSplit) + ")");
  return std::uint32_t(v);
}

// $RA_VK_CM_ROWS / $RA_VK_CM_KEYS (attention.hpp): caps on the coopmat
// kernels' own and streamed rows; `fallback` where unset or empty.
int cm_tile_cap_from_env(const char* name, int fallback, const std::string& who, const char* what) {
  const char* env = std::getenv(name);
  if (!env || !*env) return fallback;
  const std::string e = env;
  for (int v = 16; v <= fallback; v *= 2)
    if (e == std::to_string(v)) return v;
  std::string allowed;
  for (int v = 16; v <= fallback; v *= 2) allowed += (v == 16 ? "" : v == fallback ? " or " : ", ") + std::to_string(v);
  throw std::invalid_argument(who + ": " + name + " = '" + e + "' but must be " + allowed + " (" + what +
                              ", docs/vulkan.md; unset: " + std::to_string(fallback) + ")");
}

}  // namespace

bool coopmat_khr_runs(const DeviceInfo& dev, const std::string& who) {
  const bool asked = switch_from_env("RA_VK_CM_KHR", true, who,
                                             "the coopmat kernels on KHR cooperative matrices where the device "
                                             "has coopmat2 and the build has them, 0 the NV ones");
  return asked && dev.coopmat2 && kernel_embedded("fwd_cm_khr") && kernel_embedded("bwd_cm_q_khr") &&
         kernel_embedded("bwd_cm_kv_khr");
}

bool Attention::forward_is_cm() const {
  return fwd_kernel_ == "fwd_cm" || fwd_kernel_ == "fwd_cm_khr" || fwd_kernel_ == "fwd_cm_emu";
}

struct Attention::Buffers {
  Buffer b[kSlots];
};

Attention::Attention(Variant v, const Shape& s, const Options& opt, std::shared_ptr<Context> ctx)
    : variant_(v), shape_(s), opt_(opt), ctx_(ctx ? std::move(ctx) : Context::shared()) {
  check_supported(v, s, opt);
  const std::string who = "ra::vk::Attention(" + variant_name(v) + ", " + s.str() + ")";
  const DeviceInfo& dev = ctx_->info();
  const bool ra = is_ra(v), fp16 = opt.precision == Precision::fp16;
  if (fp16 && !(dev.shader_float16 && dev.storage_16bit))
    throw std::invalid_argument(who + ": fp16 storage needs shaderFloat16 and "
                                "storageBuffer16BitAccess, which " + dev.name + " lacks");
  W_ = ra ? 2 * s.D : s.D;

  // Tiles: the traits table's largest that fits shared memory and T.
  const KernelTraits tr = kernel_traits(dev);
  auto plan = [&](bool backward) {
    TilePlan p;
    p.path = fp16 ? "scalar fp16-storage" : "scalar fp32";
    p.threads = tr.threads;
    for (int t : tr.tiles) {
      if (opt.tile != 0 && t != opt.tile) continue;
      if (opt.tile == 0 && t > tile_cap(s.T) && t != tr.tiles.back()) continue;
      const std::size_t bytes =
          4 * (backward ? backward_shared_floats(t, t, s.D, W_, tr.threads)
                        : forward_shared_floats(t, t, s.D, W_));
      if (bytes <= tr.shared_budget) {
        p.br = p.bc = t;
        p.shared_bytes = bytes;
        return p;
      }
    }
    const int t = opt.tile ? opt.tile : tr.tiles.back();
    throw std::invalid_argument(
        who + ": the " + (backward ? "backward" : "forward") + " kernel with tile " +
        std::to_string(t) + " needs " +
        std::to_string(4 * (backward ? backward_shared_floats(t, t, s.D, W_, tr.threads)
                                     : forward_shared_floats(t, t, s.D, W_))) +
        " bytes of shared memory; " + dev.name + " allows " + std::to_string(tr.shared_budget));
  };
  // The scalar forward's plan is only needed where no faster kernel runs: a
  // pinned tile it cannot hold is an error only then.
  std::string scalar_fwd_error;
  try {
    fwd_plan_ = plan(false);
  } catch (const std::invalid_argument& e) {
    scalar_fwd_error = e.what();
    fwd_plan_ = TilePlan{fp16 ? "scalar fp16-storage" : "scalar fp32"};
  }
  bwd_plan_ = plan(true);
  fwd_kernel_ = fp16 ? "fwd_f16" : "fwd";
  // Before the choice: the coopmat2 plan builds its pipeline, cut included.
  fwd_cut_ = forward_cut_from_env(who);
  fwd_prefetch_ = switch_from_env("RA_VK_PREFETCH", true, who,
                                          "the key loop of the coopmat forward: 0 single-stage, 1 prefetch");
  fwd_grid_ = forward_grid_from_env(who);
  cm_row_split_ = coopmat_row_split(who);
  fwd_rowstats_ = switch_from_env("RA_VK_ROWSTATS", true, who,
                                          "the coopmat forward's row statistics: 1 in registers where the "
                                          "device's accumulator layout allows, 0 through shared memory");
  cm_rows_ = cm_tile_cap_from_env("RA_VK_CM_ROWS", 128, who,
                                  "the most rows a coopmat workgroup owns, forward and backward");
  cm_keys_ = cm_tile_cap_from_env("RA_VK_CM_KEYS", 64, who,
                                  "the most rows a coopmat workgroup streams per tile, forward and backward");
  // Read on every device, so a bad value is refused everywhere.
  cm_khr_ = coopmat_khr_runs(dev, who);
  choose_forward(who, tr);
  // fwd_cm's key loop (spec constant PREFETCH) and workgroup layout (GRID),
  // in the path for ra-bench's tiles column.
  if (forward_is_cm()) {
    // The shader runs single-stage where the tile does not fit its
    // prefetch registers; the path says so.
    const bool fits = fwd_kernel_ == "fwd_cm_emu" ||
                      coopmat_prefetch_fits(fwd_plan_.br, fwd_plan_.bc, s.D, is_ra(variant_),
                                            int(fwd_plan_.threads / (fwd_plan_.br / 16)));
    if (fwd_prefetch_ && !fits) fwd_plan_.path += " single-stage (tile too large to prefetch)";
    else fwd_plan_.path += fwd_prefetch_ ? " prefetch" : " single-stage";
    if (!fwd_rowstats_) fwd_plan_.path += " shared-rowstats";
    if (fwd_grid_ != 0) {
      fwd_plan_.path += " grid=" + std::to_string(fwd_grid_);
      const std::size_t groups = std::size_t(ceil_div(s.T, fwd_plan_.br)) * s.B * s.H;
      if (groups > dev.max_group_count[0])
        throw std::invalid_argument(who + ": RA_VK_GRID=" + std::to_string(fwd_grid_) + " needs " +
                                    std::to_string(groups) + " workgroups in one row, more than " +
                                    "this device's maxComputeWorkGroupCount[0] = " +
                                    std::to_string(dev.max_group_count[0]));
    }
  } else {
    fwd_grid_ = 0;
  }
  if (fwd_cut_ != 0) {
    const std::string cut = "RA_VK_CUT=" + std::to_string(fwd_cut_);
    if (!forward_is_cm() && fwd_kernel_ != "fwd_cm2")
      throw std::invalid_argument(who + ": " + cut + " cuts down the coopmat forwards only (fwd_cm, "
                                  "fwd_cm_khr, fwd_cm2, fwd_cm_emu), but this forward runs on " + fwd_plan_.path +
                                  (fwd_plan_.note.empty() ? "" : " (" + fwd_plan_.note + ")"));
    // Cuts 8 and 9 split fwd_cm's prefetching skeleton (cut 4) into its loads
    // and its stores.
    if (fwd_cut_ >= 8 && (fwd_kernel_ == "fwd_cm2" || fwd_plan_.path.find(" prefetch") == std::string::npos))
      throw std::invalid_argument(who + ": " + cut + " splits fwd_cm's prefetching key loop, but this " +
                                  "forward runs on " + fwd_plan_.path);
    // In the path, so that no table row or run file passes for a real one.
    fwd_plan_.path += " CUT=" + std::to_string(fwd_cut_) + " (timing only, output wrong)";
  }
  if (fwd_kernel_ == "fwd" || fwd_kernel_ == "fwd_f16") {
    if (!scalar_fwd_error.empty())
      throw std::invalid_argument(scalar_fwd_error +
                                  (fwd_plan_.note.empty() ? "" : " (" + fwd_plan_.note + ")"));
  }
  if (fp16) plan_coopmat_backward(who, tr);
  else if (opt.backward_path == BackwardPath::coopmat_emulated)
    throw std::invalid_argument(who + ": the coopmat backward is fp16 only");
  bwd_cut_ = backward_cut_from_env(who);
  if (bwd_cut_ != 0)  // in the path, so that no table row or run file passes for a real one
    bwd_plan_.path += " BWD_CUT=" + std::to_string(bwd_cut_) + " (timing only, output wrong: no " +
                      (bwd_cut_ == 1 ? "key" : "query") + "-owned kernel)";

  // Device limits on the launch and the buffers. B*H is folded into the
  // dispatch's y and z (fold_heads).
  const std::size_t bh = std::size_t(s.B) * s.H;
  if (bh > std::size_t(dev.max_group_count[1]) * dev.max_group_count[2])
    throw std::invalid_argument(who + ": B*H = " + std::to_string(bh) +
                                " workgroups exceed this device's maxComputeWorkGroupCount[1] x [2] = " +
                                std::to_string(dev.max_group_count[1]) + " x " +
                                std::to_string(dev.max_group_count[2]));
  if (std::size_t(ceil_div(s.T, 8)) > dev.max_group_count[0])
    throw std::invalid_argument(who + ": T = " + std::to_string(s.T) + " needs more workgroups " +
                                "than maxComputeWorkGroupCount[0] allows");
  const std::size_t e4 = fp16 ? 2 : 4;
  const int n_tiles = ceil_div(s.T, bwd_plan_.br);
  std::size_t bytes[kSlots];
  for (Slot x : {kQ, kK, kV, kO, kDout, kDq, kDk, kDv}) bytes[x] = s.qkv_elems() * e4;
  for (Slot x : {kD, kLse, kDd, kDelta}) bytes[x] = s.row_elems() * 4;
  bytes[kGates] = bytes[kDgates] = std::size_t(opt.gate_batch) * s.H * 3 * 4;
  bytes[kPartials] = bh * n_tiles * 3 * 4;
  // fp32 accumulators: [dKf | dV] rows (key-owned kernel), dQf rows (query-owned)
  bytes[kAcc] = s.row_elems() * std::size_t(W_ + s.D) * 4;
  const std::size_t limit = std::min(dev.max_storage_buffer, dev.max_allocation ? dev.max_allocation
                                                                                : dev.max_storage_buffer);
  for (std::uint32_t x = 0; x < kSlots; ++x)
    if (bytes[x] > limit)
      throw std::invalid_argument(
          who + ": needs a " + std::to_string(bytes[x] >> 20) + " MiB storage buffer (binding " +
          std::to_string(x) + "), over " + dev.name + "'s limit of " + std::to_string(limit >> 20) +
          " MiB (maxStorageBufferRange / maxMemoryAllocationSize); use a smaller B, H or T");

  buf_ = std::make_unique<Buffers>();
  for (std::uint32_t x = 0; x < kSlots; ++x) buf_->b[x] = Buffer(*ctx_, bytes[x], false);

  VkDevice d = ctx_->device();
  VkDescriptorPoolSize ps{VK_DESCRIPTOR_TYPE_STORAGE_BUFFER, kSlots};
  VkDescriptorPoolCreateInfo pi{VK_STRUCTURE_TYPE_DESCRIPTOR_POOL_CREATE_INFO};
  pi.maxSets = 1;
  pi.poolSizeCount = 1;
  pi.pPoolSizes = &ps;
  RA_VK_CHECK(vkCreateDescriptorPool(d, &pi, nullptr, &desc_pool_));
  VkDescriptorSetLayout layout = ctx_->set_layout();
  VkDescriptorSetAllocateInfo ai{VK_STRUCTURE_TYPE_DESCRIPTOR_SET_ALLOCATE_INFO};
  ai.descriptorPool = desc_pool_;
  ai.descriptorSetCount = 1;
  ai.pSetLayouts = &layout;
  RA_VK_CHECK(vkAllocateDescriptorSets(d, &ai, &set_));
  VkDescriptorBufferInfo infos[kSlots];
  VkWriteDescriptorSet writes[kSlots];
  for (std::uint32_t x = 0; x < kSlots; ++x) {
    infos[x] = {buf_->b[x].handle(), 0, VK_WHOLE_SIZE};
    writes[x] = {VK_STRUCTURE_TYPE_WRITE_DESCRIPTOR_SET};
    writes[x].dstSet = set_;
    writes[x].dstBinding = x;
    writes[x].descriptorCount = 1;
    writes[x].descriptorType = VK_DESCRIPTOR_TYPE_STORAGE_BUFFER;
    writes[x].pBufferInfo = &infos[x];
  }
  vkUpdateDescriptorSets(d, kSlots, writes, 0, nullptr);
  if (dev.timestamp_period_ns > 0) queries_ = ctx_->create_timestamp_pool();
}

// The forward's kernel (attention.hpp, ForwardPath): the scalar plan is
// already in fwd_plan_; a faster kernel that can run replaces it, and the
// note says why each kernel before it in line did not run (so ra-bench and
// the tests can report which kernel ran and why).
void Attention::choose_forward(const std::string& who, const KernelTraits& tr) {
  const bool fp16 = opt_.precision == Precision::fp16;
  ForwardPath want = opt_.forward_path;
  std::string by = "Options::forward_path";
  if (want == ForwardPath::automatic) {
    if (const char* env = std::getenv("RA_VK_FORWARD"); env && *env) {
      const std::string e = env;
      if (e == "scalar") want = ForwardPath::scalar;
      else if (e == "tiled") want = ForwardPath::tiled;
      else if (e == "coopmat") want = ForwardPath::coopmat;
      else if (e == "coopmat2") want = ForwardPath::coopmat2;
      else if (e == "coopmat_emulated") want = ForwardPath::coopmat_emulated;
      else if (e != "auto" && e != "automatic")
        throw std::invalid_argument(who + ": RA_VK_FORWARD = '" + e +
                                    "' but must be scalar, tiled, coopmat, coopmat2, "
                                    "coopmat_emulated or auto");
      by = "RA_VK_FORWARD=" + e;
    }
  }
  if (want == ForwardPath::scalar) {
    fwd_plan_.note = "scalar forced (" + by + ")";
    return;
  }
  if (want == ForwardPath::coopmat_emulated && !fp16)
    throw std::invalid_argument(who + ": the emulated coopmat forward is fp16 only");
  std::string why;  // why not each kernel that comes before the one that runs
  auto skipped = [&why](const std::string& w) {
    if (!w.empty()) why += (why.empty() ? "" : "; ") + w;
  };
  if (!fp16 && (want == ForwardPath::coopmat || want == ForwardPath::coopmat2)) {
    skipped("the " + forward_path_name(want) + " forward is fp16 only");
  } else if (fp16 && want != ForwardPath::tiled) {
    const char* env = std::getenv("RA_VK_COOPMAT");
    if (want == ForwardPath::automatic && env && std::string(env) == "0") {
      skipped("coopmat off (RA_VK_COOPMAT=0)");
    } else {
      // coopmat2 on request only: on the H100 it ran 2.2-11x slower than the
      // v1 coopmat forward (docs/perf.md v23), so the automatic choice skips it.
      if (want == ForwardPath::coopmat2) {
        const std::string w = plan_coopmat2_forward();
        if (w.empty()) return;
        skipped("coopmat2: " + w);
      }
      const std::string w = plan_coopmat_forward(who, tr, want == ForwardPath::coopmat_emulated);
      if (w.empty()) {
        fwd_plan_.note = why;
        return;
      }
      skipped(w);
    }
  }
  skipped(plan_tiled_forward(tr));
  fwd_plan_.note = why;
}

// The register-tiled forward (shaders/fwd_tiled.comp) where the device and
// the options allow it.
std::string Attention::plan_tiled_forward(const KernelTraits& tr) {
  using Tr = TiledForwardTraits;
  const DeviceInfo& dev = ctx_->info();
  const std::uint32_t sg = dev.subgroup_size;
  if (!dev.subgroup_shuffle)
    return "tiled: no subgroup shuffles in compute shaders on " + dev.name;
  // Each row's 8 lanes must lie in one subgroup (row max / sum by shuffles),
  // and the 128 invocations must be whole subgroups.
  if (sg < 8 || sg % 8 != 0 || Tr::threads % sg != 0)
    return "tiled: subgroup size " + std::to_string(sg) +
           " (the tiled forward needs a multiple of 8 that divides " +
           std::to_string(Tr::threads) + ")";
  if (dev.max_invocations < std::uint32_t(Tr::threads))
    return "tiled: workgroups of " + std::to_string(Tr::threads) + " invocations not allowed";
  for (int vc : Tr::vc_candidates) {
    if (opt_.tile && vc != opt_.tile) continue;
    const std::size_t bytes = 4 * tiled_forward_shared_floats(shape_.D, vc);
    if (bytes > tr.shared_budget) continue;
    TilePlan p;
    p.path = opt_.precision == Precision::fp16 ? "tiled fp16-storage" : "tiled fp32";
    p.br = p.bc = Tr::tile, p.threads = Tr::threads, p.vc = vc, p.shared_bytes = bytes;
    fwd_plan_ = p;
    fwd_kernel_ = "fwd_tiled" + std::to_string(tiled_forward_dp(shape_.D)) +
                  (opt_.precision == Precision::fp16 ? "_f16" : "");
    return "";
  }
  return "tiled: no V chunk fits " + std::to_string(tr.shared_budget) + " bytes of shared memory" +
         (opt_.tile ? " with " + std::to_string(opt_.tile) + " V rows" : std::string());
}

// The fp16 forward on cooperative matrices where the device, the options
// and the shape allow it.
std::string Attention::plan_coopmat_forward(const std::string& who, const KernelTraits& tr,
                                            bool emulate) {
  const DeviceInfo& dev = ctx_->info();
  const Shape& s = shape_;
  std::string why = coopmat_refusal(emulate);
  const bool khr = !emulate && cm_khr_;
  TilePlan cm;
  if (why.empty()) {
    const int cap = std::max(16, tile_cap(s.T));
    // Rows: up to 128 once T passes 64 (then a 128-row tile leaves at most
    // half its subgroups idle), never past $RA_VK_CM_ROWS.
    const int row_cap = std::min(cm_rows_, s.T > 64 ? 128 : cap);
    // Row statistics in registers: their logit blocks need no shared memory.
    fwd_rowreg_ = coopmat_row_registers(dev, emulate, fwd_rowstats_);
    for (const auto& t : coopmat_tiles(is_ra(variant_), s.D)) {
      const int br = t[0], bc = t[1];
      if (opt_.tile ? (br != opt_.tile || bc != opt_.tile) : (br > row_cap || bc > std::min(cap, cm_keys_)))
        continue;
      const std::size_t bytes =
          coopmat_forward_shared_bytes(br, bc, s.D, is_ra(variant_), emulate, fwd_rowreg_);
      const std::uint32_t threads = std::uint32_t(br / 16) * std::max<std::uint32_t>(dev.subgroup_size, 1);
      if (bytes > tr.shared_budget || threads > dev.max_invocations) continue;
      cm.path = emulate ? "coopmat-emulated fp16-storage"
                        : khr ? "coopmat-khr fp16-storage" : "coopmat fp16-storage";
      cm.br = br, cm.bc = bc, cm.threads = int(threads), cm.shared_bytes = bytes;
      break;
    }
    if (cm.br == 0)
      why = "no coopmat tile fits " + std::to_string(tr.shared_budget) + " bytes of shared memory" +
            (opt_.tile ? " with tile " + std::to_string(opt_.tile) : std::string());
  }
  if (why.empty()) {
    fwd_plan_ = cm;
    fwd_kernel_ = emulate ? "fwd_cm_emu" : khr ? "fwd_cm_khr" : "fwd_cm";
  } else if (emulate) {
    throw std::invalid_argument(who + ": the emulated coopmat forward cannot run: " + why);
  }
  return why;
}

// The fp16 forward on coopmat2 (shaders/fwd_cm2.comp) where the device, the
// build and the options allow it.
std::string Attention::plan_coopmat2_forward() {
  const DeviceInfo& dev = ctx_->info();
  if (!dev.coopmat2) return dev.coopmat2_note;
  if (!kernel_embedded("fwd_cm2"))
    return "fwd_cm2 is not in this build (no glslang >= 15 at configure time: "
           "scripts/install-glslang.sh)";
  if (opt_.tile == 8) return "tile 8 pinned (coopmat2 tiles are multiples of 16)";
  // Matrix shapes (M x N x K): S = Q K^T br x bc x dg, O += P V
  // br x dg x bc, the per-row statistics br x gran; dg = D padded to gran
  // (fwd_cm2.comp's G, DG).
  const int gran = coopmat2_granularity(dev), dg = (shape_.D + gran - 1) / gran * gran;
  auto fits = [](int n, std::uint32_t g) { return n % int(std::max<std::uint32_t>(g, 1)) == 0; };
  const std::uint32_t* g = dev.coopmat2_granularity;
  const int cap = std::max(16, tile_cap(shape_.T));
  for (const auto& t : coopmat2_tiles(shape_.D)) {
    const int br = t[0], bc = t[1];
    if (opt_.tile ? (br != opt_.tile || bc != opt_.tile) : (br > cap || bc > cap)) continue;
    if (!(fits(br, g[0]) && fits(bc, g[1]) && fits(dg, g[1]) && fits(gran, g[1]) && fits(dg, g[2]) &&
          fits(bc, g[2])))
      continue;
    if (std::uint32_t(std::max({br, bc, dg})) > dev.coopmat2_max_dimension) continue;
    TilePlan p;
    p.path = "coopmat2 fp16-storage";
    p.br = br, p.bc = bc, p.threads = int(dev.coopmat2_threads), p.shared_bytes = 0;
    // The pipeline is built now (it is cached for run_forward): a driver that
    // rejects the kernel (it has never run on one yet) costs the coopmat2
    // path, not the forward.
    const TilePlan before = fwd_plan_;
    const std::string kernel_before = fwd_kernel_;
    fwd_plan_ = p;
    fwd_kernel_ = "fwd_cm2";
    try {
      ctx_->pipeline(fwd_kernel_, forward_spec());
    } catch (const VulkanError& e) {
      fwd_plan_ = before;
      fwd_kernel_ = kernel_before;
      return std::string("fwd_cm2 pipeline: ") + e.what();
    }
    return "";
  }
  return "no coopmat2 tile matches the granularity " + std::to_string(g[0]) + "x" +
         std::to_string(g[1]) + "x" + std::to_string(g[2]) + " (max dimension " +
         std::to_string(dev.coopmat2_max_dimension) + ")" +
         (opt_.tile ? " with tile " + std::to_string(opt_.tile) : std::string());
}

std::string Attention::coopmat_refusal(bool emulate) const {
  const DeviceInfo& dev = ctx_->info();
  if (!emulate && !dev.coopmat_f16) return dev.coopmat_note;
  if (!emulate && dev.subgroup_size != 32)
    // The kernels are written for any subgroup size, but rely on a workgroup
    // of NSG * subgroupSize invocations being NSG full subgroups, which
    // Vulkan 1.2 only promises in practice, on NVIDIA's 32-wide warps.
    return "subgroup size " + std::to_string(dev.subgroup_size) +
           "; the coopmat kernels are laid out for 32";
  if (opt_.tile == 8) return "tile 8 pinned (coopmat tiles are multiples of 16)";
  return "";
}

// The fp16 backward on cooperative matrices unless turned off (Options or
// $RA_VK_COOPMAT_BWD=0) where the device, options and shape allow it;
// otherwise the scalar plan stays and its note says why.
void Attention::plan_coopmat_backward(const std::string& who, const KernelTraits& tr) {
  const DeviceInfo& dev = ctx_->info();
  const Shape& s = shape_;
  const BackwardPath bp = opt_.backward_path;
  const bool emulate = bp == BackwardPath::coopmat_emulated;
  const char* env = std::getenv("RA_VK_COOPMAT_BWD");
  std::string why;
  if (bp == BackwardPath::scalar)
    why = "scalar forced (Options::backward_path)";
  else if (bp == BackwardPath::automatic && env && std::string(env) == "0")
    why = "coopmat backward turned off (RA_VK_COOPMAT_BWD=0)";
  else
    why = coopmat_refusal(emulate);
  const bool khr = !emulate && cm_khr_;
  TilePlan cm;
  if (why.empty()) {
    // Own x streamed rows, from the forward's candidates; no cap by T (one
    // pipeline per D and variant: fewer slow compiles on lavapipe; short
    // sequences leave some subgroups idle, which costs nothing that matters).
    for (const auto& t : coopmat_tiles(is_ra(variant_), s.D)) {
      const int own = t[0], str = t[1];
      if (opt_.tile && (own != opt_.tile || str != opt_.tile)) continue;
      if (own > cm_rows_ || str > cm_keys_) continue;
      const std::uint32_t threads = std::uint32_t(own / 16) * std::max<std::uint32_t>(dev.subgroup_size, 1);
      const std::size_t bytes =
          coopmat_backward_shared_bytes(own, str, s.D, is_ra(variant_), emulate);
      if (bytes > tr.shared_budget || threads > dev.max_invocations) continue;
      cm.path = emulate ? "coopmat-emulated fp16-storage"
                        : khr ? "coopmat-khr fp16-storage" : "coopmat fp16-storage";
      cm.br = own, cm.bc = str, cm.threads = int(threads), cm.shared_bytes = bytes;
      break;
    }
    if (cm.br == 0)
      why = "no coopmat backward tile fits " + std::to_string(tr.shared_budget) +
            " bytes of shared memory" +
            (opt_.tile ? " with tile " + std::to_string(opt_.tile) : std::string());
  }
  if (why.empty()) {
    bwd_plan_ = cm;
    bwd_cm_ = emulate ? "emulated" : khr ? "khr" : "coopmat";
    // The own rows' lse / Delta / bias in registers.
    bwd_rowreg_ = coopmat_row_registers(dev, emulate, fwd_rowstats_);
    // The streamed loop's prefetch ($RA_VK_PREFETCH, as the forward's) at
    // the head dims where it pays; a tile too large for its registers runs
    // single-stage, and says so.
    bwd_prefetch_ = fwd_prefetch_ && coopmat_backward_prefetch_pays(s.D);
    if (bwd_prefetch_ && !emulate &&
        !coopmat_prefetch_fits(cm.br, cm.bc, s.D, is_ra(variant_), int(dev.subgroup_size)))
      bwd_plan_.path += " single-stage (tile too large to prefetch)";
  } else if (emulate) {
    throw std::invalid_argument(who + ": the emulated coopmat backward cannot run: " + why);
  } else {
    bwd_plan_.note = why;
  }
}

Attention::~Attention() {
  if (!ctx_) return;
  VkDevice d = ctx_->device();
  if (queries_) vkDestroyQueryPool(d, queries_, nullptr);
  if (desc_pool_) vkDestroyDescriptorPool(d, desc_pool_, nullptr);
}

std::size_t Attention::workspace_bytes() const {
  return buf_->b[kAcc].bytes() + buf_->b[kDelta].bytes() + buf_->b[kPartials].bytes();
}

namespace {
// The dispatch's y and z for B*H workgroups (common.glsl's head_index):
// y = min(B*H, the device's limit), z = ceil(B*H / y); the kernels return at
// once in the (fewer than y) workgroups past B*H.
std::array<std::uint32_t, 2> fold_heads(std::size_t bh, const DeviceInfo& dev) {
  const std::size_t y = std::min<std::size_t>(bh, std::max<std::uint32_t>(dev.max_group_count[1], 1));
  return {std::uint32_t(y), std::uint32_t((bh + y - 1) / y)};
}

void compute_barrier(VkCommandBuffer cb) {
  VkMemoryBarrier mb{VK_STRUCTURE_TYPE_MEMORY_BARRIER};
  mb.srcAccessMask = VK_ACCESS_SHADER_WRITE_BIT;
  mb.dstAccessMask = VK_ACCESS_SHADER_READ_BIT | VK_ACCESS_SHADER_WRITE_BIT;
  vkCmdPipelineBarrier(cb, VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT,
                       VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT, 0, 1, &mb, 0, nullptr, 0, nullptr);
}
}  // namespace

void Attention::record_and_time(const std::function<void(VkCommandBuffer)>& record) {
  last_ms_ = submit_timed(1, queries_, record).front();
}

// `reps` repetitions of `record` in one command buffer, a compute barrier
// between consecutive ones, and a timestamp (bottom of pipe: once every
// command before it is done) before the first and after each: repetition r
// runs from timestamp r to r + 1. pool holds reps + 1 queries, or is null
// (no timestamps: all NaN).
std::vector<double> Attention::submit_timed(int reps, VkQueryPool pool,
                                            const std::function<void(VkCommandBuffer)>& record) {
  const auto n = std::uint32_t(reps) + 1;
  ctx_->submit_and_wait([&](VkCommandBuffer cb) {
    if (pool) vkCmdResetQueryPool(cb, pool, 0, n);
    vkCmdBindDescriptorSets(cb, VK_PIPELINE_BIND_POINT_COMPUTE, ctx_->pipeline_layout(), 0, 1, &set_, 0,
                            nullptr);
    for (int r = 0; r < reps; ++r) {
      if (r) compute_barrier(cb);  // r - 1 is done with every buffer
      if (pool) vkCmdWriteTimestamp(cb, VK_PIPELINE_STAGE_BOTTOM_OF_PIPE_BIT, pool, std::uint32_t(r));
      record(cb);
    }
    if (pool) vkCmdWriteTimestamp(cb, VK_PIPELINE_STAGE_BOTTOM_OF_PIPE_BIT, pool, n - 1);
  });
  std::vector<double> ms(std::size_t(reps), std::numeric_limits<double>::quiet_NaN());
  if (pool) {
    std::vector<std::uint64_t> ts(n);
    RA_VK_CHECK(vkGetQueryPoolResults(ctx_->device(), pool, 0, n, n * sizeof(std::uint64_t), ts.data(),
                                      sizeof(std::uint64_t), VK_QUERY_RESULT_64_BIT | VK_QUERY_RESULT_WAIT_BIT));
    for (std::size_t r = 0; r < ms.size(); ++r)
      ms[r] = double(ts[r + 1] - ts[r]) * ctx_->info().timestamp_period_ns * 1e-6;
  }
  return ms;
}


// The forward kernel's specialization constants (common.glsl's ids 0-5, and
// as id 6 the tiled forward's V rows per step or the coopmat2 forward's
// matrix granularity; id 7 the coopmat forwards' timing cut, where one is
// set (fwd_cm / fwd_cm_emu: always, 0 = the real kernel); id 8 fwd_cm's
// key-loop form ($RA_VK_PREFETCH), always for fwd_cm / fwd_cm_emu; id 9 their
// workgroup layout ($RA_VK_GRID), likewise; id 10 where their row statistics
// live ($RA_VK_ROWSTATS), likewise; id 12 their accumulators' row split
// (coopmat_row_split()), likewise; id 13 BANDED (1 for ra_window: tiles
// classified against the band at run time), likewise.
std::vector<std::uint32_t> Attention::forward_spec() const {
  const TilePlan& p = fwd_plan_;
  std::vector<std::uint32_t> spec{std::uint32_t(p.threads), std::uint32_t(shape_.D), std::uint32_t(W_),
                                  std::uint32_t(p.br), std::uint32_t(p.bc), is_ra(variant_) ? 1u : 0u};
  if (p.vc) spec.push_back(std::uint32_t(p.vc));
  if (fwd_kernel_ == "fwd_cm2") spec.push_back(std::uint32_t(coopmat2_granularity(ctx_->info())));
  if (fwd_cut_ != 0) {
    spec.resize(7, 0u);  // fwd_cm has no id 6 (an entry the shader lacks is ignored)
    spec.push_back(std::uint32_t(fwd_cut_));
  }
  if (forward_is_cm()) {
    spec.resize(8, 0u);  // ids 6 (absent in fwd_cm) and 7 (CUT, 0 unless set above)
    spec.push_back(fwd_prefetch_ ? 1u : 0u);
    spec.push_back(std::uint32_t(fwd_grid_));
    spec.push_back(fwd_rowreg_ ? 1u : 0u);
    spec.push_back(0u);  // id 11: not in fwd_cm
    spec.push_back(fwd_rowreg_ ? cm_row_split_ : 0u);  // 0: no split relied on
    spec.push_back(variant_ == Variant::ra_window ? 1u : 0u);  // id 13: BANDED
  }
  return spec;
}

void Attention::run_forward() {
  record_and_time([&](VkCommandBuffer cb) { record_forward(cb); });
}

void Attention::record_forward(VkCommandBuffer cb) {
  const Shape& s = shape_;
  const TilePlan& p = fwd_plan_;
  VkPipeline pipe = ctx_->pipeline(fwd_kernel_, forward_spec());
  const int n_tiles = ceil_div(s.T, p.br);
  Push push{std::uint32_t(s.B), std::uint32_t(s.H), std::uint32_t(s.T), opt_.window,
            std::uint32_t(opt_.gate_batch), std::uint32_t(n_tiles),
            float(1.0 / std::sqrt(double(s.D))), 0};
  vkCmdBindPipeline(cb, VK_PIPELINE_BIND_POINT_COMPUTE, pipe);
  vkCmdPushConstants(cb, ctx_->pipeline_layout(), VK_SHADER_STAGE_COMPUTE_BIT, 0, sizeof(push), &push);
  const auto yz = fold_heads(std::size_t(s.B) * s.H, ctx_->info());
  if (fwd_grid_ == 0)
    vkCmdDispatch(cb, std::uint32_t(n_tiles), yz[0], yz[1]);
  else
    vkCmdDispatch(cb, std::uint32_t(n_tiles * s.B * s.H), 1, 1);
}

void Attention::run_backward() {
  record_and_time([&](VkCommandBuffer cb) { record_backward(cb); });
}

std::vector<double> Attention::time_repetitions(int reps, bool with_backward) {
  if (reps < 1)
    throw std::invalid_argument("ra::vk::Attention::time_repetitions: reps = " + std::to_string(reps) +
                                " but must be >= 1");
  VkQueryPool pool = ctx_->info().timestamp_period_ns > 0 ? ctx_->create_timestamp_pool(std::uint32_t(reps) + 1)
                                                          : VK_NULL_HANDLE;
  struct Destroy {
    VkDevice d;
    VkQueryPool p;
    ~Destroy() {
      if (p) vkDestroyQueryPool(d, p, nullptr);
    }
  } destroy{ctx_->device(), pool};
  return submit_timed(reps, pool, [&](VkCommandBuffer cb) {
    record_forward(cb);
    if (with_backward) {
      compute_barrier(cb);  // the backward reads O and lse
      record_backward(cb);
    }
  });
}

void Attention::record_backward(VkCommandBuffer cb) {
  const Shape& s = shape_;
  const bool ra = is_ra(variant_);
  const std::string suffix = opt_.precision == Precision::fp16 ? "_f16" : "";
  const TilePlan& p = bwd_plan_;
  const std::vector<std::uint32_t> spec{std::uint32_t(p.threads), std::uint32_t(s.D),
                                        std::uint32_t(W_), std::uint32_t(p.br),
                                        std::uint32_t(p.bc), ra ? 1u : 0u};
  // The small kernels only need the workgroup size and D (shared pipelines).
  const std::vector<std::uint32_t> spec_small{std::uint32_t(p.threads), std::uint32_t(s.D),
                                              std::uint32_t(W_), 8, 8, ra ? 1u : 0u};
  VkPipeline delta = ctx_->pipeline("bwd_delta" + suffix, spec_small);
  VkPipeline kv, qk;
  if (bwd_cm_.empty()) {
    kv = ctx_->pipeline("bwd_kv" + suffix, spec);
    qk = ctx_->pipeline("bwd_q" + suffix, spec);
  } else {
    // bwd_cm.comp: spec constants BR = query rows, BC = key rows of a tile,
    // so the key-owned kernel (own keys, streamed queries) takes them swapped.
    auto name = [&](const char* which) {
      return std::string("bwd_cm_") + which + (bwd_cm_ == "emulated" ? "_emu" : bwd_cm_ == "khr" ? "_khr" : "");
    };
    // Id 8: PREFETCH, id 10: ROWREG, id 12: the row split, id 13: BANDED
    // (ra_window; bwd_cm.comp; ids 6, 7, 9, 11 are not in the shader).
    std::vector<std::uint32_t> spec_q = spec;
    spec_q.resize(10, 0u);
    spec_q[8] = bwd_prefetch_ ? 1u : 0u;
    spec_q.push_back(bwd_rowreg_ ? 1u : 0u);
    spec_q.push_back(0u);  // id 11: not in bwd_cm
    spec_q.push_back(bwd_rowreg_ ? cm_row_split_ : 0u);  // 0: no split relied on
    spec_q.push_back(variant_ == Variant::ra_window ? 1u : 0u);
    std::vector<std::uint32_t> spec_kv = spec_q;
    std::swap(spec_kv[3], spec_kv[4]);
    kv = ctx_->pipeline(name("kv"), spec_kv);
    qk = ctx_->pipeline(name("q"), spec_q);
  }
  VkPipeline gates = ra ? ctx_->pipeline("gate_grads", spec_small) : VK_NULL_HANDLE;
  const int n_tiles = ceil_div(s.T, p.br);
  Push push{std::uint32_t(s.B), std::uint32_t(s.H), std::uint32_t(s.T), opt_.window,
            std::uint32_t(opt_.gate_batch), std::uint32_t(n_tiles),
            float(1.0 / std::sqrt(double(s.D))), 0};
  const auto yz = fold_heads(std::size_t(s.B) * s.H, ctx_->info());
  vkCmdPushConstants(cb, ctx_->pipeline_layout(), VK_SHADER_STAGE_COMPUTE_BIT, 0, sizeof(push),
                     &push);
  vkCmdBindPipeline(cb, VK_PIPELINE_BIND_POINT_COMPUTE, delta);
  vkCmdDispatch(cb, std::uint32_t(ceil_div(s.T, p.threads)), yz[0], yz[1]);
  compute_barrier(cb);
  if (bwd_cut_ != 1) {  // $RA_VK_BWD_CUT (timing only) leaves one of the two out
    vkCmdBindPipeline(cb, VK_PIPELINE_BIND_POINT_COMPUTE, kv);
    vkCmdDispatch(cb, std::uint32_t(n_tiles), yz[0], yz[1]);
  }
  compute_barrier(cb);  // the query-owned kernel adds to the dQ/dK the key-owned one wrote
  if (bwd_cut_ != 2) {
    vkCmdBindPipeline(cb, VK_PIPELINE_BIND_POINT_COMPUTE, qk);
    vkCmdDispatch(cb, std::uint32_t(n_tiles), yz[0], yz[1]);
  }
  if (ra) {
    compute_barrier(cb);
    vkCmdBindPipeline(cb, VK_PIPELINE_BIND_POINT_COMPUTE, gates);
    vkCmdDispatch(cb, std::uint32_t(ceil_div(opt_.gate_batch * s.H * 3, p.threads)), 1, 1);
  }
}

namespace {
// [B,H,T,D] tensors in the storage type; the rest are fp32.
void put(Context& ctx, const Buffer& b, const std::vector<float>& x, bool half,
         std::size_t expect, const char* name) {
  if (x.size() != expect)
    throw std::invalid_argument(std::string("ra::vk::Attention: tensor ") + name + " has " +
                                std::to_string(x.size()) + " elements, expected " +
                                std::to_string(expect));
  if (!half) return ctx.upload(b, x.data(), x.size() * 4);
  std::vector<std::uint16_t> h(x.size());
  for (std::size_t i = 0; i < x.size(); ++i) h[i] = to_half(x[i]);
  ctx.upload(b, h.data(), h.size() * 2);
}
void get(Context& ctx, const Buffer& b, std::vector<float>& x, bool half, std::size_t n) {
  x.resize(n);
  if (!half) return ctx.download(b, x.data(), n * 4);
  std::vector<std::uint16_t> h(n);
  ctx.download(b, h.data(), n * 2);
  for (std::size_t i = 0; i < n; ++i) x[i] = from_half(h[i]);
}
}  // namespace

void Attention::upload(const Tensors& t, bool with_backward_inputs) {
  const Shape& s = shape_;
  const bool h = opt_.precision == Precision::fp16, ra = is_ra(variant_);
  const std::size_t n4 = s.qkv_elems(), n3 = s.row_elems();
  put(*ctx_, buf_->b[kQ], t.q, h, n4, "q");
  put(*ctx_, buf_->b[kK], t.k, h, n4, "k");
  put(*ctx_, buf_->b[kV], t.v, h, n4, "v");
  if (ra) {
    put(*ctx_, buf_->b[kGates], t.gates, false, std::size_t(opt_.gate_batch) * s.H * 3, "gates");
    put(*ctx_, buf_->b[kD], t.d, false, n3, "d");
  }
  if (with_backward_inputs) {
    put(*ctx_, buf_->b[kO], t.o, h, n4, "o");
    put(*ctx_, buf_->b[kLse], t.lse, false, n3, "lse");
    put(*ctx_, buf_->b[kDout], t.dout, h, n4, "dout");
  }
}

void Attention::download_forward(Tensors& t) {
  const bool h = opt_.precision == Precision::fp16;
  get(*ctx_, buf_->b[kO], t.o, h, shape_.qkv_elems());
  get(*ctx_, buf_->b[kLse], t.lse, false, shape_.row_elems());
}

void Attention::download_backward(Tensors& t) {
  const bool h = opt_.precision == Precision::fp16;
  const std::size_t n4 = shape_.qkv_elems();
  get(*ctx_, buf_->b[kDq], t.dq, h, n4);
  get(*ctx_, buf_->b[kDk], t.dk, h, n4);
  get(*ctx_, buf_->b[kDv], t.dv, h, n4);
  if (is_ra(variant_)) {
    get(*ctx_, buf_->b[kDd], t.dd, false, shape_.row_elems());
    get(*ctx_, buf_->b[kDgates], t.dgates, false, std::size_t(opt_.gate_batch) * shape_.H * 3);
  }
}

void Attention::poison_outputs() {
  const bool h = opt_.precision == Precision::fp16;
  for (Slot x : {kO, kDq, kDk, kDv}) ctx_->fill(buf_->b[x], h ? kNaN16 : kNaN32);
  for (Slot x : {kLse, kDd, kDgates}) ctx_->fill(buf_->b[x], kNaN32);
}

void Attention::forward(Tensors& t) {
  upload(t, false);
  run_forward();
  download_forward(t);
}

void Attention::backward(Tensors& t) {
  upload(t, true);
  run_backward();
  download_backward(t);
}

// ---------------------------------------------------------------------------

}  // namespace ra::vk
