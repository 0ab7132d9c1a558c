// The Vulkan backend against the float64 reference: every variant, forward
// and every gradient, on awkward shapes (T not a multiple of any tile, T = 1,
// D in {16, 32, 64, 128}, Gb in {1, B}, windows), with every output
// NaN-poisoned on the device first and the validation layers on: any
// validation message fails the test. Runs on whatever device the runtime
// picks (lavapipe in CI; RA_VK_DEVICE selects another).
#include <ra/reference.hpp>
#include <ra/vulkan/attention.hpp>
#include <ra/vulkan/kernel_traits.hpp>

#include "reference_problem.hpp"

#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <iterator>
#include <limits>
#include <random>

using namespace ra;
using ra::testing::max_rel_error;
using ra::testing::ReferenceProblem;

namespace {

// One context for the whole file, validation on (the runtime records every
// message; check_clean() turns them into failures). RA_VK_VALIDATION=0 runs
// without the layer, for machines that lack it. No Vulkan device at all:
// every test says "SKIPPED:" (ctest reports it as skipped), since a build
// can have the headers and glslc but no driver.
std::shared_ptr<vk::Context> try_context() {
  static std::shared_ptr<vk::Context> ctx = []() -> std::shared_ptr<vk::Context> {
    vk::ContextOptions o;
    const char* env = std::getenv("RA_VK_VALIDATION");
    o.validation = env && std::string(env) == "0" ? 0 : 1;
    try {
      auto c = std::make_shared<vk::Context>(o);
      const auto& i = c->info();
      std::cerr << "test_vulkan: " << i.name << " (" << i.type_name() << ", Vulkan "
                << i.api_string() << ", " << i.driver_name << " " << i.driver_info << "), shared "
                << i.shared_memory_bytes << " B, subgroup " << i.subgroup_size
                << ", max storage buffer " << (i.max_storage_buffer >> 20) << " MiB, fp16 "
                << (i.shader_float16 && i.storage_16bit ? "yes" : "no") << ", validation "
                << (c->validation_enabled() ? "on" : "off") << "\n";
      return c;
    } catch (const vk::NoDeviceError& e) {
      std::cout << "SKIPPED: " << e.what() << "\n";
      return nullptr;
    }
  }();
  return ctx;
}
std::shared_ptr<vk::Context> context() { return try_context(); }
#define RA_REQUIRE_DEVICE() \
  if (!try_context()) return

void check_clean() {
  const auto msgs = context()->take_validation_messages();
  for (const auto& m : msgs) UNSCOPED_INFO(m);
  CHECK(msgs.empty());
}

// fp16 storage + arithmetic on this device; otherwise the calling test
// warns that it is skipped.
bool has_fp16() {
  const auto& dev = context()->info();
  if (dev.shader_float16 && dev.storage_16bit) return true;
  WARN(dev.name << " has no fp16 storage/arithmetic: skipped");
  return false;
}

// Sets (or with nullptr unsets) an environment variable for a scope and puts
// back what was there, so a test that reads one leaves the others alone.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const char* value) : name_(name) {
    const char* e = std::getenv(name);
    had_ = e != nullptr;
    if (had_) old_ = e;
    set(value);
  }
  ~ScopedEnv() { set(had_ ? old_.c_str() : nullptr); }
  const std::string& name() const { return name_; }
  ScopedEnv(const ScopedEnv&) = delete;
  ScopedEnv& operator=(const ScopedEnv&) = delete;
  void set(const char* value) {
    if (value) setenv(name_.c_str(), value, 1);
    else unsetenv(name_.c_str());
  }

 private:
  std::string name_, old_;
  bool had_ = false;
};

// A 0 / 1 switch of the coopmat forward read when an Attention is made
// (RA_VK_PREFETCH, RA_VK_ROWSTATS): every other value is refused, naming
// the variable and the value.
void check_switch_refusals(ScopedEnv& env) {
  for (const char* bad : {"2", "-1", "on", "1 ", "01"}) {
    env.set(bad);
    CHECK_THROWS_WITH(vk::Attention(vk::Variant::sdpa_fused, Shape{1, 1, 16, 16}, vk::Options{}, context()),
                      Catch::Contains(env.name() + " = '" + std::string(bad) + "'"));
  }
  env.set(nullptr);
}

std::uint64_t fresh_seed() {
  static std::random_device rd;
  return (std::uint64_t(rd()) << 32) ^ rd();
}

// The shared random problem (reference_problem.hpp); round_to_half rounds the
// inputs to fp16 first, so an fp16-storage kernel is judged on its arithmetic.
struct Problem : ReferenceProblem {
  Problem(const Shape& shape, int gate_batch, int window, bool ra, std::uint64_t seed, bool round_to_half)
      : ReferenceProblem(shape, gate_batch, window, ra, seed, round_to_half ? &round_half : nullptr) {}

  // Nearest fp16 value (inputs are ~N(0,1): normal range, no overflow).
  static double round_half(double x) {
    if (x == 0) return 0;
    const int e = std::ilogb(x);
    const double ulp = std::ldexp(1.0, std::max(e, -14) - 10);
    return std::nearbyint(x / ulp) * ulp;
  }
};

std::vector<float> to_float(const std::vector<double>& x) { return {x.begin(), x.end()}; }

struct Case {
  int B, H, T, D;
};

// want_path / want_bwd_path: the forward / backward plan's path the case
// must run on ("" = any).
void check_variant(vk::Variant v, const Case& c, int gate_batch, int window,
                   vk::Precision prec = vk::Precision::fp32, int tile = 0,
                   vk::ForwardPath fpath = vk::ForwardPath::automatic,
                   const std::string& want_path = "",
                   vk::BackwardPath bpath = vk::BackwardPath::automatic,
                   const std::string& want_bwd_path = "") {
  const Shape s{c.B, c.H, c.T, c.D};
  const std::uint64_t seed = fresh_seed();
  const bool ra = vk::is_ra(v), half = prec == vk::Precision::fp16;
  Problem p(s, gate_batch, window, ra, seed, half);

  vk::Options opt;
  opt.gate_batch = gate_batch;
  opt.window = window;
  opt.precision = prec;
  opt.tile = tile;
  opt.forward_path = fpath;
  opt.backward_path = bpath;
  vk::Attention attn(v, s, opt, context());
  const vk::TilePlan fp = attn.forward_plan(), bp = attn.backward_plan();
  INFO(vk::variant_name(v) << " " << vk::precision_name(prec) << " " << s.str()
                           << " Gb=" << gate_batch << " window=" << window << " forward "
                           << fp.path << " " << fp.br << "x" << fp.bc << " vc " << fp.vc << " ("
                           << fp.threads << " threads) backward " << bp.path << " " << bp.br << "x" << bp.bc
                           << " (" << bp.threads << " threads) seed=" << seed);
  if (!want_path.empty()) REQUIRE(fp.path == want_path);
  if (!want_bwd_path.empty()) REQUIRE(bp.path == want_bwd_path);
  auto t = vk::HostTensors::allocate(s, gate_batch);
  t.q = to_float(p.q), t.k = to_float(p.k), t.v = to_float(p.v), t.dout = to_float(p.dout);
  t.gates = to_float(p.gates), t.d = to_float(p.d);
  attn.poison_outputs();
  attn.forward(t);
  attn.backward(t);  // on the kernel's own O and lse, as in training

  // fp16: outputs are stored in fp16 (2^-11 relative) and O feeds Delta;
  // fp32 everywhere else. Gate gradients are long sums of terms that cancel
  // (see tests/test_kernels.cpp, bf16), so they get the looser bound too.
  const double tol = half ? 2e-2 : 2e-4;
  if (std::getenv("RA_VK_TEST_VERBOSE"))  // margins, for a new device or driver
    std::cerr << vk::variant_name(v) << " " << fp.path << (fp.vc ? " vc " + std::to_string(fp.vc) : "")
              << " / " << bp.path << " " << s.str()
              << " Gb=" << gate_batch << " w=" << window << ": o " << max_rel_error(t.o, p.o)
              << " lse " << max_rel_error(t.lse, p.lse) << " dq " << max_rel_error(t.dq, p.dq)
              << " dk " << max_rel_error(t.dk, p.dk) << " dv " << max_rel_error(t.dv, p.dv)
              << (ra ? " dd " + std::to_string(max_rel_error(t.dd, p.dd)) + " dgates " +
                           std::to_string(max_rel_error(t.dgates, p.dgates))
                     : std::string())
              << "\n";
  CHECK(max_rel_error(t.o, p.o) <= tol);
  CHECK(max_rel_error(t.lse, p.lse) <= tol);
  CHECK(max_rel_error(t.dq, p.dq) <= tol);
  CHECK(max_rel_error(t.dk, p.dk) <= tol);
  CHECK(max_rel_error(t.dv, p.dv) <= tol);
  if (ra) {
    CHECK(max_rel_error(t.dd, p.dd) <= tol);
    CHECK(max_rel_error(t.dgates, p.dgates) <= (half ? 5e-2 : tol));
  }
  check_clean();
}

// T in {1, 7, 64, 65, 100}, D in {16, 32, 64, 128}; small B and H so the
// whole file stays within seconds on lavapipe (2 cores, validation on).
const Case kCases[] = {
    {1, 1, 1, 16}, {2, 3, 7, 32}, {1, 2, 64, 64}, {2, 1, 65, 128},
    {1, 2, 100, 16}, {2, 2, 65, 32}, {1, 1, 100, 64}, {1, 1, 7, 128},
};

}  // namespace

// The scalar forward pinned (the automatic fp32 forward is the tiled one
// where the device allows it, tested below), then the backward on its O, lse.
TEST_CASE("Vulkan: every variant matches the float64 reference (fp32)", "[vulkan]") {
  RA_REQUIRE_DEVICE();
  const auto f32 = vk::Precision::fp32;
  const auto scalar = vk::ForwardPath::scalar;
  for (const Case& c : kCases) {
    check_variant(vk::Variant::sdpa_fused, c, 1, -1, f32, 0, scalar, "scalar fp32");
    check_variant(vk::Variant::ra_fused, c, 1, -1, f32, 0, scalar, "scalar fp32");
    check_variant(vk::Variant::ra_fused, c, c.B, -1, f32, 0, scalar, "scalar fp32");
    for (int w : {0, 5, 40})
      check_variant(vk::Variant::ra_window, c, w == 5 ? 1 : c.B, w, f32, 0, scalar, "scalar fp32");
  }
}

namespace {
// $RA_VK_FORWARD overrides the automatic forward: the checks of what the
// automatic choice is skip themselves then.
bool forward_env_set() {
  const char* e = std::getenv("RA_VK_FORWARD");
  return e && *e;
}

// Whether this device can run the register-tiled forward at all (subgroup
// shuffles, a subgroup size that is a multiple of 8 dividing 128); where it
// cannot, the tests check the fallback and its note instead.
bool tiled_runs(vk::Precision prec) {
  vk::Options opt;
  opt.precision = prec;
  opt.forward_path = vk::ForwardPath::tiled;
  vk::Attention probe(vk::Variant::sdpa_fused, {1, 1, 8, 16}, opt, context());
  if (probe.forward_plan().path.rfind("tiled", 0) == 0) return true;
  WARN(context()->info().name << ": no tiled forward (" << probe.forward_plan().note << ")");
  return false;
}

// The tiled forward's awkward shapes (B, H > 1 everywhere): T = 1, 7, 64,
// 65 (one row past the 64-row tile), 100, 130 (several key tiles, the last
// partial); D = 16, 32 (O padded to 32), 48, 64, 128, and 20 / 6 (not
// multiples of 8: zero-filled chunk ends; 6 not a multiple of 4 either:
// element-wise loads and stores instead of vec4).
const Case kTiledCases[] = {
    {2, 3, 1, 16}, {2, 2, 7, 32},  {2, 2, 64, 48}, {2, 3, 65, 64}, {2, 2, 100, 128},
    {3, 2, 130, 64}, {2, 2, 100, 20}, {2, 2, 65, 6}, {2, 2, 130, 32},
};

// Every fused variant on the tiled forward (want_path), gates per head and
// per batch, ra_window with its band edge inside a tile (5), across tiles
// (40) and on the diagonal (0); then the scalar backward on its O and lse.
void check_tiled_case(const Case& c, vk::Precision prec, int vc, const std::string& want_path) {
  const auto tiled = vk::ForwardPath::tiled;
  check_variant(vk::Variant::sdpa_fused, c, 1, -1, prec, vc, tiled, want_path);
  check_variant(vk::Variant::ra_fused, c, c.B, -1, prec, vc, tiled, want_path);
  check_variant(vk::Variant::ra_window, c, 1, 5, prec, vc, tiled, want_path);
  check_variant(vk::Variant::ra_window, c, c.B, 40, prec, vc, tiled, want_path);
  if (c.T > 64) check_variant(vk::Variant::ra_window, c, 1, 0, prec, vc, tiled, want_path);
}
}  // namespace

TEST_CASE("Vulkan: tiled forward matches the float64 reference (fp32)", "[vulkan][tiled]") {
  RA_REQUIRE_DEVICE();
  if (!tiled_runs(vk::Precision::fp32)) return;
  for (const Case& c : kTiledCases) check_tiled_case(c, vk::Precision::fp32, 0, "tiled fp32");
  // The automatic fp32 forward is the tiled one (unless $RA_VK_FORWARD says otherwise).
  if (!forward_env_set()) {
    vk::Attention automatic(vk::Variant::ra_fused, {2, 2, 65, 64}, {}, context());
    CHECK(automatic.forward_plan().path == "tiled fp32");
    CHECK(automatic.forward_plan().note.empty());
  }
  check_clean();
}

TEST_CASE("Vulkan: tiled forward, fp16 storage, matches the float64 reference", "[vulkan][tiled][fp16]") {
  RA_REQUIRE_DEVICE();
  if (!has_fp16() || !tiled_runs(vk::Precision::fp16)) return;
  for (const Case& c : {Case{2, 3, 7, 32}, Case{2, 2, 65, 64}, Case{2, 2, 100, 128}, Case{2, 2, 65, 6}})
    check_tiled_case(c, vk::Precision::fp16, 0, "tiled fp16-storage");
}

// The V rows per step (vc) are what changes from device to device (64 at
// D <= 64 on a 48 KiB NVIDIA GPU, 32 or 16 on lavapipe's 32 KiB): each one
// pinned (Options::tile; the scalar backward takes the same tile), where
// this device's shared memory holds it, on shapes with several key tiles.
TEST_CASE("Vulkan: tiled forward with every V chunk the table can pick", "[vulkan][tiled]") {
  RA_REQUIRE_DEVICE();
  if (!tiled_runs(vk::Precision::fp32)) return;
  const auto& dev = context()->info();
  for (int vc : {8, 16, 32, 64})
    for (const Case& c : {Case{2, 2, 130, 32}, Case{2, 2, 100, 64}, Case{2, 1, 70, 128}}) {
      vk::Options opt;
      opt.tile = vc, opt.forward_path = vk::ForwardPath::tiled;
      try {
        vk::Attention probe(vk::Variant::ra_fused, {c.B, c.H, c.T, c.D}, opt, context());
        if (probe.forward_plan().path != "tiled fp32") {
          WARN(dev.name << ": vc " << vc << " D " << c.D << ": " << probe.forward_plan().note);
          continue;
        }
        CHECK(probe.forward_plan().vc == vc);
      } catch (const std::invalid_argument& e) {  // the scalar backward's pinned tile
        WARN(dev.name << ": " << e.what());
        continue;
      }
      check_tiled_case(c, vk::Precision::fp32, vc, "tiled fp32");
    }
}

TEST_CASE("Vulkan: fp16 storage, fp32 sums (every variant)", "[vulkan][fp16]") {
  RA_REQUIRE_DEVICE();
  if (!has_fp16()) return;
  // The scalar forward pinned (on a device with cooperative matrices the
  // automatic choice is the coopmat kernel, tested below).
  const auto scalar = vk::ForwardPath::scalar;
  for (const Case& c : {Case{1, 1, 1, 16}, Case{2, 3, 7, 32}, Case{1, 2, 65, 64}, Case{2, 1, 100, 128}}) {
    check_variant(vk::Variant::sdpa_fused, c, 1, -1, vk::Precision::fp16, 0, scalar, "scalar fp16-storage");
    check_variant(vk::Variant::ra_fused, c, c.B, -1, vk::Precision::fp16, 0, scalar, "scalar fp16-storage");
    check_variant(vk::Variant::ra_window, c, 1, 5, vk::Precision::fp16, 0, scalar, "scalar fp16-storage");
  }
}

namespace {
// What the coopmat forward's plan path says after its key-loop form:
// " shared-rowstats" where $RA_VK_ROWSTATS=0, then " grid=N" where
// $RA_VK_GRID picks a 1-D layout (so the whole suite runs, and checks the
// real kernel, under either knob).
std::string cm_path_tail() {
  const char* r = std::getenv("RA_VK_ROWSTATS");
  const char* g = std::getenv("RA_VK_GRID");
  return std::string(r && std::string(r) == "0" ? " shared-rowstats" : "") +
         (g && (std::string(g) == "1" || std::string(g) == "2") ? " grid=" + std::string(g) : "");
}
// Its key-loop form: $RA_VK_PREFETCH (unset or empty: 1, the prefetching
// loop), then the layout.
std::string cm_loop() {
  const char* e = std::getenv("RA_VK_PREFETCH");
  return (e && std::string(e) == "0" ? " single-stage" : " prefetch") + cm_path_tail();
}
// The real coopmat kernels' path head: on KHR cooperative matrices where
// the device and build allow (and $RA_VK_CM_KHR is not 0), else NV ones.
std::string cm_real() {
  return vk::coopmat_khr_runs(context()->info()) ? "coopmat-khr fp16-storage" : "coopmat fp16-storage";
}

// The coopmat forward's awkward shapes: T = 1, 7 (inside one 16-row block),
// 65 (one row past a 64-row tile), 130 (past two, several key tiles);
// D = 16, 32, 64, 128, 40 (not a multiple of 16: zero-padded to 48) and 20
// (not a multiple of 8 either: rows are not whole 16-byte chunks, so the
// element-wise loads and stores run); ra_window with a band edge inside a
// tile (5) and across tiles (40). The emulated kernel (lavapipe, every CI
// run) takes the first six, which cover every T and D; the real one all.
const Case kCoopmatCases[] = {
    {1, 1, 1, 16}, {2, 3, 7, 32}, {1, 2, 65, 64}, {1, 1, 130, 128}, {2, 1, 130, 40},
    {1, 1, 65, 20}, {1, 2, 65, 16}, {2, 1, 7, 128}, {1, 1, 130, 32}, {1, 1, 130, 64},
    {1, 1, 65, 40},
};

// may_skip (the emulated kernel): a shape whose coopmat plan the device
// refuses (lavapipe's 32 KiB of shared memory holds no RA tile at D = 128)
// is skipped with a warning instead of failing, and only the first six
// cases run; the real kernel must run them all.
// fallback_ok: a shape whose plan falls back to another kernel (saying why in
// its note) is reported and skipped instead of failing.
void check_coopmat_cases(vk::ForwardPath fpath, const std::string& want_path, bool may_skip,
                         bool fallback_ok = false) {
  const auto f16 = vk::Precision::fp16;
  auto run = [&](vk::Variant v, const Case& c, int gate_batch, int window, int tile = 0) {
    if (may_skip || fallback_ok) {
      vk::Options opt;
      opt.precision = f16, opt.gate_batch = gate_batch, opt.window = window, opt.tile = tile;
      opt.forward_path = fpath;
      try {
        vk::Attention probe(v, {c.B, c.H, c.T, c.D}, opt, context());
        if (fallback_ok && probe.forward_plan().path != want_path) {
          WARN(vk::variant_name(v) << " " << c.T << "x" << c.D << ": " << probe.forward_plan().path << " ("
                                   << probe.forward_plan().note << ")");
          return;
        }
      } catch (const std::invalid_argument& e) {
        WARN(e.what());
        return;
      }
    }
    check_variant(v, c, gate_batch, window, f16, tile, fpath, want_path);
  };
  const std::size_t n_cases = may_skip ? 6 : std::size(kCoopmatCases);
  for (std::size_t i = 0; i < n_cases; ++i) {
    const Case& c = kCoopmatCases[i];
    run(vk::Variant::sdpa_fused, c, 1, -1);
    run(vk::Variant::ra_fused, c, c.B, -1);
    run(vk::Variant::ra_window, c, 1, 5);
    run(vk::Variant::ra_window, c, c.B, 40);
  }
  // Each square tile the coopmat kernel can take (br = bc = 16, 32, 64),
  // pinned, where the device's shared memory holds it (the scalar backward
  // must hold it too: opt.tile pins both).
  for (int tile : {16, 32, 64}) {
    vk::Options opt;
    opt.precision = f16, opt.tile = tile, opt.window = 9, opt.forward_path = fpath;
    try {
      vk::Attention probe(vk::Variant::ra_window, {1, 2, 77, 32}, opt, context());
      if (probe.forward_plan().path != want_path) {
        WARN("tile " << tile << ": " << probe.forward_plan().note);
        continue;
      }
    } catch (const std::invalid_argument& e) {
      WARN(e.what());
      continue;
    }
    run(vk::Variant::ra_window, {1, 2, 77, 32}, 1, 9, tile);
  }
}
}  // namespace

// The coopmat kernel's source with its matrix products done by plain lanes:
// everything but the cooperative-matrix instructions (staging, padding,
// masking, softmax through shared memory, subgroup synchronisation) checked
// on any fp16 device, lavapipe included. The backward runs on its O and lse.
TEST_CASE("Vulkan: coopmat forward, emulated products, matches the float64 reference",
          "[vulkan][fp16][coopmat]") {
  RA_REQUIRE_DEVICE();
  if (!has_fp16()) return;
  check_coopmat_cases(vk::ForwardPath::coopmat_emulated, "coopmat-emulated fp16-storage" + cm_loop(), true);
}

// $RA_VK_PREFETCH picks the coopmat forward's key loop (docs/vulkan.md,
// "The cooperative-matrix fp16 forward"): other values are refused naming
// the variable; on fwd_cm_emu (fwd_cm's source, so its loop too) both forms
// match the float64 reference and the path says which ran: T = 1, T inside
// one 16-row block and past whole 64-row tiles, D = 16, 32, 64, 40 (padded)
// and 20 (element-wise loads); SDPA, RA, ra_window with a band edge inside a
// tile and across tiles. The "[coopmat]" cases above run the form the
// environment picks on more shapes; here each (D, variant kind) is one more
// emulated pipeline per form (seconds on lavapipe), so the list stays short.
TEST_CASE("Vulkan: RA_VK_PREFETCH picks the coopmat forward's key loop, both forms correct",
          "[vulkan][fp16][coopmat][prefetch]") {
  RA_REQUIRE_DEVICE();
  using Catch::Contains;
  ScopedEnv prefetch("RA_VK_PREFETCH", nullptr);
  const Shape tiny{1, 1, 16, 16};
  vk::Options opt;
  check_switch_refusals(prefetch);
  // Kernels without the form say nothing of it.
  prefetch.set("0");
  CHECK(vk::Attention(vk::Variant::sdpa_fused, tiny, opt, context()).forward_plan().path.find("single") ==
        std::string::npos);
  if (!has_fp16()) return;
  struct Run {
    vk::Variant v;
    Case c;
    int gate_batch, window;
  };
  // Three pipelines per form (RA and ra_window share one; window is a push
  // constant), all also built by the "[coopmat]" case above for form 1.
  const Run runs[] = {{vk::Variant::sdpa_fused, {1, 1, 1, 16}, 1, -1},
                      {vk::Variant::ra_fused, {2, 1, 130, 40}, 2, -1},
                      {vk::Variant::ra_window, {2, 1, 130, 40}, 1, 5},
                      {vk::Variant::ra_window, {2, 1, 130, 40}, 2, 40},
                      {vk::Variant::sdpa_fused, {1, 1, 65, 20}, 1, -1}};
  for (const char* form : {"0", "1", ""}) {
    prefetch.set(form);
    const std::string want = std::string("coopmat-emulated fp16-storage ") +
                             (std::string(form) == "0" ? "single-stage" : "prefetch") + cm_path_tail();
    for (const Run& r : runs)
      check_variant(r.v, r.c, r.gate_batch, r.window, vk::Precision::fp16, 0, vk::ForwardPath::coopmat_emulated,
                    want);
  }
  check_clean();
}

// $RA_VK_GRID lays the coopmat forward's workgroups out in one of three
// orders (docs/vulkan.md); each must cover every (b*h, query tile) exactly
// once. Several heads and several query tiles (B=2, H=3, T=130: three
// 64-row tiles), so a wrong index map lands on the wrong rows or heads;
// fwd_cm_emu is fwd_cm's source, so its map too.
// fwd_cm holds the next tile's chunks in 16 named registers of each kind
// (PF in fwd_cm.comp); the host's check, which names the single-stage
// fallback in the path, must agree with the shader's NKC / NVC / NBC <= 16.
// Per invocation: Kf chunks bc * W16 / 8, V chunks bc * D16 / 8, bias bc,
// over br / 16 subgroups of 32.
TEST_CASE("Vulkan: the coopmat forward prefetches only tiles that fit its registers", "[vulkan][coopmat]") {
  CHECK(vk::coopmat_prefetch_fits(64, 64, 64, false, 32));   // Kf 4, V 4
  CHECK(vk::coopmat_prefetch_fits(64, 64, 64, true, 32));    // Kf 8
  CHECK(vk::coopmat_prefetch_fits(64, 32, 128, true, 32));   // Kf 8 (D128 RA's tile)
  CHECK(vk::coopmat_prefetch_fits(16, 16, 128, true, 32));   // Kf 16: the limit
  CHECK_FALSE(vk::coopmat_prefetch_fits(16, 32, 128, true, 32));   // Kf 32
  CHECK(vk::coopmat_prefetch_fits(16, 64, 64, false, 32));         // Kf 16
  CHECK_FALSE(vk::coopmat_prefetch_fits(16, 64, 128, false, 32));  // Kf 32, V 32
  CHECK_FALSE(vk::coopmat_prefetch_fits(16, 64, 40, true, 32));  // D 40 padded to 48: Kf 24
  // bwd_cm's streamed loop (own x streamed rows): folded chunks streamed *
  // W16 / 8, dO / V chunks streamed * D16 / 8, row scalars streamed, per
  // invocation; and the head dims where that prefetch pays (perf v27).
  CHECK(vk::coopmat_prefetch_fits(128, 64, 64, true, 32));       // F 4, G 2
  CHECK(vk::coopmat_prefetch_fits(64, 64, 64, true, 32));        // F 8, G 4
  CHECK(vk::coopmat_prefetch_fits(64, 32, 128, true, 32));       // F 8 (D128 RA's tile)
  CHECK_FALSE(vk::coopmat_prefetch_fits(16, 64, 128, true, 32)); // F 64
  CHECK(vk::coopmat_backward_prefetch_pays(64));
  CHECK_FALSE(vk::coopmat_backward_prefetch_pays(128));
}

// The coopmat tile table (kernel_traits.hpp): 128-row tiles first for RA
// at D <= 64 only (perf v27), never for SDPA or D > 64; they fit 48 KiB
// because the register row statistics (ROWREG) need 16 x 16 fp32 blocks
// only. $RA_VK_CM_ROWS / $RA_VK_CM_KEYS cap the plans' own / streamed rows:
// other values are refused naming the variable, and capped plans still
// match float64 (emulated kernels, any device with fp16). On an NVIDIA GPU
// the default RA plan at D64 is 128 x 64 on 256 invocations, SDPA's 64 x 32.
TEST_CASE("Vulkan: coopmat tiles, 128 rows for RA at D <= 64, capped by RA_VK_CM_ROWS / RA_VK_CM_KEYS",
          "[vulkan][fp16][coopmat][tiles]") {
  using Catch::Contains;
  const auto ra64 = vk::coopmat_tiles(true, 64);
  REQUIRE(ra64.size() == 9);
  CHECK(ra64.front() == std::array<int, 2>{128, 64});
  for (const auto& t : vk::coopmat_tiles(false, 64)) CHECK(t[0] <= 64);
  const auto sdpa64 = vk::coopmat_tiles(false, 64);
  CHECK(sdpa64.front() == std::array<int, 2>{64, 32});  // 32 keys first for SDPA at D <= 64 (perf v29)
  CHECK(sdpa64.size() == 7);                              // no candidate twice
  CHECK(vk::coopmat_tiles(false, 128).front() == std::array<int, 2>{64, 64});
  for (const auto& t : vk::coopmat_tiles(true, 128)) CHECK(t[0] <= 64);
  CHECK(vk::coopmat_forward_shared_bytes(128, 64, 64, true, false, true) <= 48 * 1024);
  CHECK(vk::coopmat_forward_shared_bytes(128, 64, 64, true, false, false) > 48 * 1024);
  CHECK(vk::coopmat_prefetch_fits(128, 64, 64, true, 32));  // Kf 4, V 2 on 256 invocations

  RA_REQUIRE_DEVICE();
  ScopedEnv rows("RA_VK_CM_ROWS", nullptr), keys("RA_VK_CM_KEYS", nullptr);
  const Shape tiny{1, 1, 16, 16};
  for (const char* bad : {"0", "8", "256", "64 ", "x"}) {
    rows.set(bad);
    CHECK_THROWS_WITH(vk::Attention(vk::Variant::sdpa_fused, tiny, vk::Options{}, context()),
                      Contains("RA_VK_CM_ROWS = '" + std::string(bad) + "'"));
  }
  rows.set(nullptr);
  for (const char* bad : {"128", "8", "x"}) {
    keys.set(bad);
    CHECK_THROWS_WITH(vk::Attention(vk::Variant::sdpa_fused, tiny, vk::Options{}, context()),
                      Contains("RA_VK_CM_KEYS = '" + std::string(bad) + "'"));
  }
  keys.set(nullptr);
  {
    // The KHR switch is read on every device, with or without coopmat2.
    ScopedEnv khr("RA_VK_CM_KHR", nullptr);
    for (const char* bad : {"2", "yes", "1 "}) {
      khr.set(bad);
      CHECK_THROWS_WITH(vk::Attention(vk::Variant::sdpa_fused, tiny, vk::Options{}, context()),
                        Contains("RA_VK_CM_KHR = '" + std::string(bad) + "'"));
    }
    khr.set("0");
    CHECK_FALSE(vk::coopmat_khr_runs(context()->info()));
  }
  if (!has_fp16()) return;
  const auto& dev = context()->info();
  if (dev.coopmat_f16 && dev.vendor_id == 0x10de) {
    vk::Options opt;
    opt.precision = vk::Precision::fp16;
    opt.forward_path = vk::ForwardPath::coopmat;
    const vk::Attention ra(vk::Variant::ra_fused, Shape{1, 1, 130, 64}, opt, context());
    CHECK((ra.forward_plan().br == 128 && ra.forward_plan().bc == 64 && ra.forward_plan().threads == 256));
    CHECK(ra.backward_plan().br == 128);
    const vk::Attention sdpa(vk::Variant::sdpa_fused, Shape{1, 1, 130, 64}, opt, context());
    CHECK((sdpa.forward_plan().br == 64 && sdpa.forward_plan().bc == 32));
    CHECK((sdpa.backward_plan().br == 64 && sdpa.backward_plan().bc == 32));
  }
  rows.set("32");
  keys.set("32");
  for (const vk::Variant v : {vk::Variant::sdpa_fused, vk::Variant::ra_fused}) {
    vk::Options opt;
    opt.precision = vk::Precision::fp16;
    opt.forward_path = vk::ForwardPath::coopmat_emulated;
    opt.backward_path = vk::BackwardPath::coopmat_emulated;
    const vk::Attention a(v, Shape{1, 2, 130, 16}, opt, context());
    CHECK((a.forward_plan().br == 32 && a.forward_plan().bc == 32));
    CHECK((a.backward_plan().br == 32 && a.backward_plan().bc == 32));
    check_variant(v, {1, 2, 130, 16}, 1, -1, vk::Precision::fp16, 0, vk::ForwardPath::coopmat_emulated,
                  "coopmat-emulated fp16-storage" + cm_loop(), vk::BackwardPath::coopmat_emulated);
  }
  check_clean();
}

TEST_CASE("Vulkan: RA_VK_GRID lays out the coopmat forward's workgroups, every layout correct",
          "[vulkan][fp16][coopmat][grid]") {
  RA_REQUIRE_DEVICE();
  using Catch::Contains;
  ScopedEnv grid("RA_VK_GRID", nullptr);
  ScopedEnv prefetch("RA_VK_PREFETCH", nullptr);
  const Shape tiny{1, 1, 16, 16};
  vk::Options opt;
  for (const char* bad : {"3", "-1", "x", "1 "}) {
    grid.set(bad);
    CHECK_THROWS_WITH(vk::Attention(vk::Variant::sdpa_fused, tiny, opt, context()),
                      Contains("RA_VK_GRID = '" + std::string(bad) + "'"));
  }
  // Kernels without the layout say nothing of it.
  grid.set("1");
  CHECK(vk::Attention(vk::Variant::sdpa_fused, tiny, opt, context()).forward_plan().path.find("grid") ==
        std::string::npos);
  if (!has_fp16()) return;
  for (const char* layout : {"1", "2"}) {
    grid.set(layout);
    const std::string want = std::string("coopmat-emulated fp16-storage prefetch grid=") + layout;
    check_variant(vk::Variant::sdpa_fused, {2, 3, 130, 16}, 1, -1, vk::Precision::fp16, 0,
                  vk::ForwardPath::coopmat_emulated, want);
    check_variant(vk::Variant::ra_fused, {2, 3, 130, 16}, 2, -1, vk::Precision::fp16, 0,
                  vk::ForwardPath::coopmat_emulated, want);
  }
  check_clean();
}

// The real cooperative-matrix forward (NV v1) where the device has
// VK_NV_cooperative_matrix (fp16 16x16x16 -> fp32, subgroup 32), asked for by
// ForwardPath::coopmat (also the automatic choice); elsewhere the
// fp16 forward must fall back to the next kernel in line and say why.
TEST_CASE("Vulkan: coopmat forward matches the float64 reference, or falls back and says why",
          "[vulkan][fp16][coopmat]") {
  RA_REQUIRE_DEVICE();
  if (!has_fp16()) return;
  const auto& dev = context()->info();
  const bool available = dev.coopmat_f16 && dev.subgroup_size == 32;
  vk::Options opt;
  opt.precision = vk::Precision::fp16;
  opt.forward_path = vk::ForwardPath::coopmat;
  vk::Attention probe(vk::Variant::sdpa_fused, {1, 1, 64, 64}, opt, context());
  const vk::TilePlan p = probe.forward_plan();
  std::cerr << "test_vulkan: coopmat fp16 forward on " << dev.name << ": " << p.path
            << (p.note.empty() ? "" : " [" + p.note + "]") << "\n";
  if (!available) {
    // Next in line: the tiled fp16 forward where the device runs it, and the
    // note says why not coopmat.
    const bool tiled = tiled_runs(vk::Precision::fp16);
    CHECK(p.path == (tiled ? "tiled fp16-storage" : "scalar fp16-storage"));
    CHECK(!p.note.empty());
    if (!dev.coopmat_f16 && tiled) CHECK(p.note == dev.coopmat_note);
    if (!dev.coopmat_f16) CHECK_THAT(p.note, Catch::StartsWith(dev.coopmat_note));
    WARN(dev.name << ": no coopmat forward (" << p.note << "); the " << p.path << " forward ran");
    return;
  }
  CHECK(p.path == cm_real() + cm_loop());
  CHECK(p.note.empty());
  check_coopmat_cases(vk::ForwardPath::coopmat, cm_real() + cm_loop(), false);
  check_clean();
}

// The coopmat2 forward (workgroup-scope matrices, VK_NV_cooperative_matrix2)
// where the device has it and the build embedded it (glslang >= 15), on
// the same cases as the v1 kernel; elsewhere a clean fallback that says why.
TEST_CASE("Vulkan: coopmat2 forward matches the float64 reference, or falls back and says why",
          "[vulkan][fp16][coopmat][coopmat2]") {
  RA_REQUIRE_DEVICE();
  if (!has_fp16()) return;
  const auto& dev = context()->info();
  vk::Options opt;
  opt.precision = vk::Precision::fp16;
  opt.forward_path = vk::ForwardPath::coopmat2;
  vk::Attention probe(vk::Variant::sdpa_fused, {1, 1, 64, 64}, opt, context());
  const vk::TilePlan p = probe.forward_plan();
  std::cerr << "test_vulkan: coopmat2 fp16 forward on " << dev.name << " (fwd_cm2 "
            << (vk::kernel_embedded("fwd_cm2") ? "built" : "not built") << "; workgroup-scope entry "
            << dev.coopmat2_threads << " invocations, granularity " << dev.coopmat2_granularity[0] << "x"
            << dev.coopmat2_granularity[1] << "x" << dev.coopmat2_granularity[2] << ", max dimension "
            << dev.coopmat2_max_dimension << "): " << p.path << " " << p.br << "x" << p.bc
            << (p.note.empty() ? "" : " [" + p.note + "]") << "\n";
  if (!(dev.coopmat2 && vk::kernel_embedded("fwd_cm2"))) {
    CHECK(p.path != "coopmat2 fp16-storage");
    CHECK_THAT(p.note, Catch::StartsWith("coopmat2: "));
    if (!dev.coopmat2) CHECK_THAT(p.note, Catch::Contains(dev.coopmat2_note));
    WARN(dev.name << ": no coopmat2 forward (" << p.note << "); the " << p.path << " forward ran");
    return;
  }
  CHECK(p.path == "coopmat2 fp16-storage");
  CHECK(p.note.empty());
  CHECK(p.threads == int(dev.coopmat2_threads));
  check_coopmat_cases(vk::ForwardPath::coopmat2, "coopmat2 fp16-storage", false, true);
  check_clean();
}

// The automatic fp16 forward: coopmat (v1), else tiled, else scalar (never
// coopmat2: slower on the H100, on request only); RA_VK_COOPMAT=0 skips
// coopmat; the note names every kernel skipped.
TEST_CASE("Vulkan: the automatic fp16 forward picks the first kernel that runs and says why",
          "[vulkan][fp16][coopmat]") {
  RA_REQUIRE_DEVICE();
  if (!has_fp16()) return;
  if (forward_env_set()) {
    WARN("RA_VK_FORWARD is set: the automatic fp16 forward is not checked");
    return;
  }
  const auto& dev = context()->info();
  auto env_is = [](const char* name, const char* value) {
    const char* e = std::getenv(name);
    return e && std::string(e) == value;
  };
  const bool cm_off = env_is("RA_VK_COOPMAT", "0"), no_cm2 = env_is("RA_VK_NO_CM2", "1");
  if (no_cm2) CHECK(!dev.coopmat2);
  const bool cm1 = !cm_off && dev.coopmat_f16 && dev.subgroup_size == 32;
  vk::Options opt;
  opt.precision = vk::Precision::fp16;
  vk::Attention a(vk::Variant::ra_fused, {1, 1, 64, 64}, opt, context());
  const vk::TilePlan p = a.forward_plan();
  std::cerr << "test_vulkan: automatic fp16 forward: " << p.path
            << (p.note.empty() ? "" : " [" + p.note + "]") << "\n";
  if (cm1) {
    CHECK(p.path == cm_real() + cm_loop());
    CHECK(p.note.empty());
  } else {
    CHECK(p.path == (tiled_runs(vk::Precision::fp16) ? "tiled fp16-storage" : "scalar fp16-storage"));
    if (cm_off) CHECK_THAT(p.note, Catch::StartsWith("coopmat off (RA_VK_COOPMAT=0)"));
    if (!cm_off && !dev.coopmat_f16) CHECK_THAT(p.note, Catch::Contains(dev.coopmat_note));
  }
  check_clean();
}

namespace {
// The coopmat backward's shapes: T = 1, 7, 65 (one row past 64), 130 (several
// own and streamed tiles); D = 16, 32, 64 and 40 (not a multiple of 16:
// zero-padded to 48). Every D and variant is one more pair of emulated
// pipelines (~8 s each to compile on lavapipe, 2 cores), so SDPA (the same
// code without the reciprocal half and gates) runs at one D only.
struct BwdCase {
  Case c;
  bool sdpa;
};
const BwdCase kCoopmatBwdCases[] = {
    {{1, 1, 1, 16}, false}, {{2, 3, 7, 32}, false}, {{1, 2, 65, 64}, false},
    {{2, 1, 130, 40}, false}, {{1, 1, 130, 16}, true},
};

// The backward's kernels on `bpath` after the forward on `fpath`; every
// variant, ra_window with windows 5 (band edge inside a tile) and 40
// (across tiles), gates per head and per batch.
void check_coopmat_bwd_cases(vk::ForwardPath fpath, vk::BackwardPath bpath,
                             const std::string& want_bwd_path, const BwdCase* cases, std::size_t n) {
  const auto f16 = vk::Precision::fp16;
  for (std::size_t i = 0; i < n; ++i) {
    const Case& c = cases[i].c;
    if (cases[i].sdpa) check_variant(vk::Variant::sdpa_fused, c, 1, -1, f16, 0, fpath, "", bpath, want_bwd_path);
    check_variant(vk::Variant::ra_fused, c, c.B, -1, f16, 0, fpath, "", bpath, want_bwd_path);
    check_variant(vk::Variant::ra_window, c, 1, 5, f16, 0, fpath, "", bpath, want_bwd_path);
    check_variant(vk::Variant::ra_window, c, c.B, 40, f16, 0, fpath, "", bpath, want_bwd_path);
  }
}
}  // namespace

// The coopmat backward's source with its products done by plain lanes, after
// the scalar fp16 forward (its pipelines are built by the tests above
// already): staging, index maps, masking, gate and column sums, stores.
TEST_CASE("Vulkan: coopmat backward, emulated products, matches the float64 reference",
          "[vulkan][fp16][coopmat]") {
  RA_REQUIRE_DEVICE();
  if (!has_fp16()) return;
  check_coopmat_bwd_cases(vk::ForwardPath::scalar, vk::BackwardPath::coopmat_emulated,
                          "coopmat-emulated fp16-storage", kCoopmatBwdCases,
                          std::size(kCoopmatBwdCases));
}

// The real coopmat backward (after the coopmat forward) where the device has
// VK_NV_cooperative_matrix; elsewhere it falls back to the scalar backward
// and says why. The automatic path takes it unless RA_VK_COOPMAT_BWD=0.
TEST_CASE("Vulkan: coopmat backward matches the float64 reference, or falls back and says why",
          "[vulkan][fp16][coopmat]") {
  RA_REQUIRE_DEVICE();
  if (!has_fp16()) return;
  const auto& dev = context()->info();
  const char* env = std::getenv("RA_VK_COOPMAT_BWD");
  const bool off = env && std::string(env) == "0";
  vk::Options opt;
  opt.precision = vk::Precision::fp16;
  vk::Attention automatic(vk::Variant::ra_fused, {1, 1, 64, 64}, opt, context());
  opt.backward_path = vk::BackwardPath::coopmat;
  vk::Attention probe(vk::Variant::ra_fused, {1, 1, 64, 64}, opt, context());
  const vk::TilePlan p = probe.backward_plan(), a = automatic.backward_plan();
  std::cerr << "test_vulkan: fp16 backward on " << dev.name << ": " << p.path
            << (p.note.empty() ? "" : " [" + p.note + "]") << "; automatic: " << a.path
            << (a.note.empty() ? "" : " [" + a.note + "]") << "\n";
  if (!(dev.coopmat_f16 && dev.subgroup_size == 32)) {
    CHECK(p.path == "scalar fp16-storage");
    CHECK(!p.note.empty());
    CHECK(a.path == "scalar fp16-storage");
    WARN(dev.name << ": no coopmat backward (" << p.note << "); the scalar fp16 backward ran");
    return;
  }
  CHECK(p.path == cm_real());
  CHECK(p.note.empty());
  CHECK(a.path == (off ? "scalar fp16-storage" : cm_real()));
  check_coopmat_bwd_cases(vk::ForwardPath::automatic, vk::BackwardPath::coopmat,
                          cm_real(), kCoopmatBwdCases, std::size(kCoopmatBwdCases));
  // D = 128 and more T on the real kernel (no compile cost there).
  const BwdCase more[] = {{{1, 1, 130, 128}, true}, {{2, 1, 7, 128}, false},
                          {{1, 1, 130, 64}, true}, {{1, 1, 65, 20}, true}};
  check_coopmat_bwd_cases(vk::ForwardPath::automatic, vk::BackwardPath::coopmat,
                          cm_real(), more, std::size(more));
  check_clean();
}

TEST_CASE("Vulkan: the forward plan names its kernel", "[vulkan]") {
  RA_REQUIRE_DEVICE();
  if (forward_env_set()) {
    WARN("RA_VK_FORWARD is set: the automatic forward's choice is not checked");
    return;
  }
  vk::Options opt;
  vk::Attention f32(vk::Variant::ra_fused, {1, 1, 16, 16}, opt, context());
  if (tiled_runs(vk::Precision::fp32)) {
    CHECK(f32.forward_plan().path == "tiled fp32");
    CHECK(f32.forward_plan().note.empty());
    CHECK(f32.forward_plan().vc > 0);
  } else {
    CHECK(f32.forward_plan().path == "scalar fp32");
    CHECK_THAT(f32.forward_plan().note, Catch::StartsWith("tiled: "));
  }
  opt.forward_path = vk::ForwardPath::scalar;
  vk::Attention f32s(vk::Variant::ra_fused, {1, 1, 16, 16}, opt, context());
  CHECK(f32s.forward_plan().path == "scalar fp32");
  CHECK_THAT(f32s.forward_plan().note, Catch::Contains("forced"));
  // coopmat asked for in fp32: the next kernel in line runs, saying why.
  opt.forward_path = vk::ForwardPath::coopmat;
  vk::Attention f32c(vk::Variant::ra_fused, {1, 1, 16, 16}, opt, context());
  CHECK(f32c.forward_plan().path == f32.forward_plan().path);
  CHECK_THAT(f32c.forward_plan().note, Catch::Contains("fp16 only"));
  opt.forward_path = vk::ForwardPath::coopmat2;
  vk::Attention f32c2(vk::Variant::ra_fused, {1, 1, 16, 16}, opt, context());
  CHECK(f32c2.forward_plan().path == f32.forward_plan().path);
  CHECK_THAT(f32c2.forward_plan().note, Catch::Contains("coopmat2 forward is fp16 only"));
  opt.forward_path = vk::ForwardPath::coopmat_emulated;
  CHECK_THROWS_WITH(vk::Attention(vk::Variant::ra_fused, {1, 1, 16, 16}, opt, context()),
                    Catch::Contains("fp16 only"));
  opt.forward_path = vk::ForwardPath::automatic;
  {
    // $RA_VK_FORWARD picks for the automatic path (restored afterwards).
    ScopedEnv env("RA_VK_FORWARD", "scalar");
    vk::Attention env_scalar(vk::Variant::ra_fused, {1, 1, 16, 16}, opt, context());
    CHECK(env_scalar.forward_plan().path == "scalar fp32");
    CHECK_THAT(env_scalar.forward_plan().note, Catch::Contains("RA_VK_FORWARD=scalar"));
    env.set("fast-please");
    CHECK_THROWS_WITH(vk::Attention(vk::Variant::ra_fused, {1, 1, 16, 16}, opt, context()),
                      Catch::Contains("RA_VK_FORWARD"));
  }
  if (!has_fp16()) return;
  opt.precision = vk::Precision::fp16;
  opt.forward_path = vk::ForwardPath::scalar;
  opt.backward_path = vk::BackwardPath::scalar;
  vk::Attention forced(vk::Variant::ra_fused, {1, 1, 16, 16}, opt, context());
  CHECK(forced.forward_plan().path == "scalar fp16-storage");
  CHECK_THAT(forced.forward_plan().note, Catch::Contains("forced"));
  CHECK(forced.backward_plan().path == "scalar fp16-storage");
  CHECK_THAT(forced.backward_plan().note, Catch::Contains("forced"));
  check_clean();
}

// $RA_VK_CUT (timing only: docs/vulkan.md, "Timing the coopmat forwards'
// parts"): values outside 0..kForwardCutMax, and any cut where the forward
// that runs has none (fp32 here), are refused with a message naming the
// variable; every cut runs on each coopmat forward the device has (the
// emulated one everywhere: the cuts' control flow and barriers under
// lavapipe and the validation layer), says so in its path and writes finite
// O and lse (ra-bench refuses non-finite ones). Unset, every other test
// checks that the kernels are the real ones.
TEST_CASE("Vulkan: RA_VK_CUT cuts the coopmat forwards down for timing, or is refused",
          "[vulkan][fp16][coopmat][cut]") {
  RA_REQUIRE_DEVICE();
  using Catch::Contains;
  ScopedEnv cut("RA_VK_CUT", nullptr), forward("RA_VK_FORWARD", nullptr);
  const Shape tiny{1, 1, 16, 16};
  vk::Options opt;
  {
    // $RA_VK_BWD_CUT: 1 or 2 leaves one backward kernel out and says so in
    // the backward's path; other values are refused naming the variable.
    ScopedEnv bwd_cut("RA_VK_BWD_CUT", nullptr);
    for (const char* bad : {"3", "-1", "x", "1 "}) {
      bwd_cut.set(bad);
      CHECK_THROWS_WITH(vk::Attention(vk::Variant::sdpa_fused, tiny, opt, context()),
                        Contains("RA_VK_BWD_CUT = '" + std::string(bad) + "'"));
    }
    bwd_cut.set("2");
    CHECK_THAT(vk::Attention(vk::Variant::ra_fused, tiny, opt, context()).backward_plan().path,
               Contains(" BWD_CUT=2 (timing only, output wrong: no query-owned kernel)"));
    bwd_cut.set("0");
    CHECK(vk::Attention(vk::Variant::ra_fused, tiny, opt, context()).backward_plan().path.find("BWD_CUT") ==
          std::string::npos);
  }
  for (const char* bad : {"10", "-1", "two", "1 ", "07"}) {
    cut.set(bad);
    CHECK_THROWS_WITH(vk::Attention(vk::Variant::sdpa_fused, tiny, opt, context()),
                      Contains("RA_VK_CUT = '" + std::string(bad) + "'") &&
                          Contains("0.." + std::to_string(vk::kForwardCutMax)));
  }
  cut.set("0");
  CHECK(vk::Attention(vk::Variant::sdpa_fused, tiny, opt, context()).forward_plan().path.find("CUT") ==
        std::string::npos);
  cut.set("3");
  CHECK_THROWS_WITH(vk::Attention(vk::Variant::sdpa_fused, tiny, opt, context()),
                    Contains("RA_VK_CUT=3") && Contains("coopmat forwards only"));
  if (!has_fp16()) return;

  const auto& dev = context()->info();
  struct Kernel {
    vk::ForwardPath path;
    std::string name;
  };
  std::vector<Kernel> kernels{{vk::ForwardPath::coopmat_emulated, "coopmat-emulated fp16-storage" + cm_loop()}};
  if (dev.coopmat_f16 && dev.subgroup_size == 32)
    kernels.push_back({vk::ForwardPath::coopmat, cm_real() + cm_loop()});
  if (dev.coopmat2 && vk::kernel_embedded("fwd_cm2"))
    kernels.push_back({vk::ForwardPath::coopmat2, "coopmat2 fp16-storage"});
  struct Run {
    vk::Variant v;
    Case c;
    int window;
  };
  // ra_window with a band edge inside a tile: every tile kind; the real
  // kernels also at the timing's D = 64 (the emulated ones would add minutes
  // of pipeline compiles on lavapipe).
  const Run every[] = {{vk::Variant::ra_window, {1, 2, 65, 16}, 5}};
  const Run real[] = {{vk::Variant::sdpa_fused, {1, 2, 130, 64}, -1},
                      {vk::Variant::ra_fused, {2, 1, 130, 64}, -1}};
  for (const Kernel& k : kernels)
    for (int n = 0; n <= vk::kForwardCutMax; ++n) {
      const std::string label = n ? " CUT=" + std::to_string(n) + " (timing only, output wrong)" : "";
      cut.set(std::to_string(n).c_str());
      std::vector<Run> runs(std::begin(every), std::end(every));
      if (k.path != vk::ForwardPath::coopmat_emulated) runs.insert(runs.end(), std::begin(real), std::end(real));
      for (const Run& r : runs) {
        const Shape s{r.c.B, r.c.H, r.c.T, r.c.D};
        vk::Options o;
        o.precision = vk::Precision::fp16, o.window = r.window, o.forward_path = k.path;
        if (n >= 8 && (k.path == vk::ForwardPath::coopmat2 || k.name.find(" prefetch") == std::string::npos)) {
          // Cuts 8 and 9 split fwd_cm's prefetching loop: refused elsewhere.
          CHECK_THROWS_WITH(vk::Attention(r.v, s, o, context()), Contains("prefetching key loop"));
          continue;
        }
        vk::Attention a(r.v, s, o, context());
        INFO(vk::variant_name(r.v) << " " << s.str() << " " << a.forward_plan().path << " ["
                                   << a.forward_plan().note << "]");
        CHECK(a.forward_plan().path == k.name + label);
        if (n == 0) continue;  // the real kernels: every other test
        Problem p(s, 1, r.window, vk::is_ra(r.v), fresh_seed(), true);
        auto t = vk::HostTensors::allocate(s, 1);
        t.q = to_float(p.q), t.k = to_float(p.k), t.v = to_float(p.v);
        t.gates = to_float(p.gates), t.d = to_float(p.d);
        a.poison_outputs();
        a.forward(t);
        auto finite = [](const std::vector<float>& x) {
          return std::all_of(x.begin(), x.end(), [](float e) { return std::isfinite(e); });
        };
        CHECK(finite(t.o));
        CHECK(finite(t.lse));
      }
    }
  check_clean();
}

TEST_CASE("Vulkan: every tile the table can pick, pinned (fp32, scalar forward)", "[vulkan]") {
  RA_REQUIRE_DEVICE();
  const auto& dev = context()->info();
  for (int tile : {8, 16, 32, 64})
    for (vk::Variant v : vk::all_variants()) {
      const int w = v == vk::Variant::ra_window ? 9 : -1;
      const Case c{1, 2, 77, 16};
      // Skip tiles this device's shared memory cannot hold (the constructor says so).
      vk::Options opt;
      opt.tile = tile, opt.window = w, opt.forward_path = vk::ForwardPath::scalar;
      try {
        vk::Attention probe(v, {c.B, c.H, c.T, c.D}, opt, context());
      } catch (const std::invalid_argument& e) {
        WARN(dev.name << ": " << e.what());
        continue;
      }
      check_variant(v, c, 1, w, vk::Precision::fp32, tile, vk::ForwardPath::scalar, "scalar fp32");
    }
}

// No atomics anywhere: two runs of the same problem give the same bits.
TEST_CASE("Vulkan: forward and backward are bit-for-bit deterministic", "[vulkan]") {
  RA_REQUIRE_DEVICE();
  const Shape s{2, 2, 100, 32};
  vk::Options opt;
  opt.gate_batch = 2, opt.window = 9;
  vk::Attention attn(vk::Variant::ra_window, s, opt, context());
  Problem p(s, 2, 9, true, fresh_seed(), false);
  auto run = [&] {
    auto t = vk::HostTensors::allocate(s, 2);
    t.q = to_float(p.q), t.k = to_float(p.k), t.v = to_float(p.v), t.dout = to_float(p.dout);
    t.gates = to_float(p.gates), t.d = to_float(p.d);
    attn.poison_outputs();
    attn.forward(t);
    attn.backward(t);
    return t;
  };
  const auto a = run(), b = run();
  for (auto m : {&vk::HostTensors::o, &vk::HostTensors::lse, &vk::HostTensors::dq,
                 &vk::HostTensors::dk, &vk::HostTensors::dv, &vk::HostTensors::dd,
                 &vk::HostTensors::dgates})
    CHECK(std::memcmp((a.*m).data(), (b.*m).data(), (a.*m).size() * sizeof(float)) == 0);
  check_clean();
}

// B*H past the workgroups one dispatch dimension allows
// (maxComputeWorkGroupCount[1], 65535 on lavapipe and NVIDIA): the kernels
// take (b, h) from y and z (common.glsl's head_index), and the workgroups
// past B*H return at once. Two more heads than the limit, T = 3, forward
// and backward of both variants against float64 (the scalar fp32 forward
// and the automatic one; the backward's three kernels).
TEST_CASE("Vulkan: B*H past maxComputeWorkGroupCount[1] folds into z, still correct", "[vulkan][heads]") {
  RA_REQUIRE_DEVICE();
  const std::uint32_t limit = context()->info().max_group_count[1];
  if (limit > 65535u) SUCCEED("this device allows " << limit << " workgroups in y: nothing to fold");
  if (limit > 65535u) return;
  // RA with gates per batch (Gb = B): with Gb = 1 the gate reduction is one
  // invocation summing B partials, a loop past lavapipe's limit on loop
  // iterations per invocation (gallivm stops such loops silently; from
  // B = 30000 here), which real GPUs do not have.
  const Case c{int(limit) + 2, 1, 3, 16};
  for (const auto fp : {vk::ForwardPath::scalar, vk::ForwardPath::automatic}) {
    check_variant(vk::Variant::sdpa_fused, c, 1, -1, vk::Precision::fp32, 0, fp);
    check_variant(vk::Variant::ra_fused, c, c.B, -1, vk::Precision::fp32, 0, fp);
  }
  check_clean();
}

TEST_CASE("Vulkan: bad input gets a clear error", "[vulkan]") {
  RA_REQUIRE_DEVICE();
  using Catch::Contains;
  auto make = [](vk::Variant v, Shape s, vk::Options o = {}) { vk::Attention a(v, s, o, context()); };
  REQUIRE_THROWS_WITH(make(vk::Variant::ra_open, {1, 1, 8, 16}), Contains("open-coded"));
  REQUIRE_THROWS_WITH(make(vk::Variant::sdpa_fused, {1, 1, 8, 256}), Contains("D = 256"));
  REQUIRE_THROWS_WITH(make(vk::Variant::ra_window, {1, 1, 8, 16}), Contains("window"));
  REQUIRE_THROWS_WITH(make(vk::Variant::sdpa_fused, {1, 1, 0, 16}), Contains("T = 0"));
  vk::Options gb;
  gb.gate_batch = 3;
  REQUIRE_THROWS_WITH(make(vk::Variant::ra_fused, {2, 1, 8, 16}, gb), Contains("gate_batch"));
  // A shape over the device's largest storage buffer is refused up front.
  // (One long head: B*H stays under the workgroup-count limit, and the fp32
  // accumulator rows, T x (W + D) floats, pass maxStorageBufferRange.)
  const std::size_t limit = context()->info().max_storage_buffer;
  const int T = int(std::min<std::size_t>(limit / (4 * 128) + 1, 1u << 30));
  REQUIRE_THROWS_WITH(make(vk::Variant::sdpa_fused, {1, 1, T, 64}), Contains("storage buffer"));
  // A device name nobody has.
  vk::ContextOptions none;
  none.device = "no-such-device-xyz";
  none.validation = 0;
  REQUIRE_THROWS_WITH(vk::Context(none), Contains("no-such-device-xyz"));
  vk::HostTensors t = vk::HostTensors::allocate({1, 1, 8, 16}, 1);
  t.q.resize(3);
  vk::Attention a(vk::Variant::sdpa_fused, {1, 1, 8, 16}, {}, context());
  REQUIRE_THROWS_WITH(a.forward(t), Contains("tensor q"));
  check_clean();
}

// Hidden ([.]): GPU time of every variant at the seeds' shape (B=8 H=12
// T=1024 D=64, or RA_VK_BENCH_T), fp32 and fp16, median of 5 runs from the
// timestamp queries. `test_vulkan "[vkbench]"`; ra-bench is the real driver.
TEST_CASE("Vulkan: timing at the seeds' shape", "[.][vkbench]") {
  RA_REQUIRE_DEVICE();
  const int T = std::getenv("RA_VK_BENCH_T") ? std::atoi(std::getenv("RA_VK_BENCH_T")) : 1024;
  const Shape s{8, 12, T, 64};
  std::mt19937 rng(1);
  std::normal_distribution<float> n01(0.f, 1.f);
  // Each precision with the automatic forward (tiled fp32; coopmat fp16
  // where the device has it, else tiled), then the tiled and scalar ones
  // pinned, for the comparison in one call; a pinned run that lands on a
  // kernel already timed for that precision and variant is skipped.
  const std::pair<vk::Precision, vk::ForwardPath> runs[] = {
      {vk::Precision::fp32, vk::ForwardPath::automatic}, {vk::Precision::fp32, vk::ForwardPath::scalar},
      {vk::Precision::fp16, vk::ForwardPath::automatic}, {vk::Precision::fp16, vk::ForwardPath::tiled},
      {vk::Precision::fp16, vk::ForwardPath::scalar}};
  std::vector<std::string> timed;
  for (const auto& [prec, fpath] : runs)
    for (vk::Variant v : vk::all_variants()) {
      vk::Options opt;
      opt.precision = prec;
      opt.forward_path = fpath;
      opt.window = v == vk::Variant::ra_window ? 128 : -1;
      vk::Attention attn(v, s, opt, context());
      const std::string key = vk::variant_name(v) + " " + attn.forward_plan().path;
      if (std::find(timed.begin(), timed.end(), key) != timed.end()) continue;
      timed.push_back(key);
      auto t = vk::HostTensors::allocate(s, 1);
      for (auto* x : {&t.q, &t.k, &t.v, &t.dout, &t.d})
        for (auto& e : *x) e = n01(rng);
      for (std::size_t i = 0; i < t.gates.size(); ++i) t.gates[i] = i % 3 == 0 ? 0.5f : i % 3 == 1 ? 0.3f : 0.2f;
      attn.forward(t);
      attn.upload(t, true);
      std::vector<double> f, b;
      for (int r = 0; r < 6; ++r) {
        attn.run_forward();
        f.push_back(attn.last_gpu_ms());
        attn.run_backward();
        b.push_back(attn.last_gpu_ms());
      }
      f.erase(f.begin()), b.erase(b.begin());  // first run: pipeline warm-up
      std::sort(f.begin(), f.end()), std::sort(b.begin(), b.end());
      std::cerr << "vkbench " << context()->info().name << " " << s.str() << " "
                << vk::variant_name(v) << " " << vk::precision_name(prec) << " forward "
                << attn.forward_plan().path << " " << attn.forward_plan().br << "x"
                << attn.forward_plan().bc << " (" << attn.forward_plan().threads
                << " threads), backward " << attn.backward_plan().path << " "
                << attn.backward_plan().br << "x" << attn.backward_plan().bc << ": fwd " << f[2] << " ms ("
                << vk::forward_flops(v, s, opt) / f[2] * 1e-6 << " GFLOP/s), bwd " << b[2]
                << " ms (" << vk::backward_flops(v, s, opt) / b[2] * 1e-6 << " GFLOP/s)\n";
    }
  check_clean();
}

// $RA_VK_PIPELINE_STATS=1: a context made then enables
// VK_KHR_pipeline_executable_properties where the device has it, and every
// pipeline it builds reports the driver's statistics (docs/vulkan.md,
// "Selecting a device, validation"); unset, nothing is enabled or captured.
TEST_CASE("Vulkan: RA_VK_PIPELINE_STATS reports each pipeline's statistics", "[vulkan][pipeline-stats]") {
  RA_REQUIRE_DEVICE();
  const Shape shape{1, 1, 20, 16};
  {
    ScopedEnv stats("RA_VK_PIPELINE_STATS", nullptr);
    vk::Context off;
    CHECK_FALSE(off.info().pipeline_stats);
    CHECK(off.info().pipeline_stats_note.find("RA_VK_PIPELINE_STATS=1") != std::string::npos);
  }
  ScopedEnv stats("RA_VK_PIPELINE_STATS", "1");
  vk::ContextOptions o;  // validation as for the suite's context
  const char* val = std::getenv("RA_VK_VALIDATION");
  o.validation = val && std::string(val) == "0" ? 0 : 1;
  auto ctx = std::make_shared<vk::Context>(o);
  INFO(ctx->info().name << ": " << ctx->info().pipeline_stats_note);
  const bool has = ctx->info().has_extension("VK_KHR_pipeline_executable_properties");
  if (!ctx->info().pipeline_stats) {
    CHECK(!ctx->info().pipeline_stats_note.empty());
    if (!has) CHECK(ctx->info().pipeline_stats_note.find("no VK_KHR_pipeline_executable_properties") != std::string::npos);
    WARN(ctx->info().name << ": no pipeline statistics (" << ctx->info().pipeline_stats_note << ")");
    return;
  }
  vk::Attention att(vk::Variant::sdpa_fused, shape, vk::Options{}, ctx);
  auto t = vk::HostTensors::allocate(shape, 1);
  att.forward(t);
  const auto lines = ctx->pipeline_statistics();
  REQUIRE(!lines.empty());
  for (const auto& l : lines) {
    INFO(l);
    CHECK(l.find(" = ") != std::string::npos);
  }
  CHECK(std::any_of(lines.begin(), lines.end(), [](const std::string& l) { return l.rfind("fwd", 0) == 0; }));
  const auto msgs = ctx->take_validation_messages();
  for (const auto& m : msgs) UNSCOPED_INFO(m);
  CHECK(msgs.empty());
}

// $RA_VK_PIPELINE_CACHE_DUMP=<folder>: every pipeline built while it is set
// is built into a cache of its own, whose data lands in <folder> as
// <kernel>-<spec constants, '_' between>.pcache (docs/vulkan.md, "Reading
// the driver's code"): at least the 16-byte header every Vulkan cache starts
// with, naming this device's vendor. A fresh context, so its pipelines are
// built here, not taken from the suite's.
TEST_CASE("Vulkan: RA_VK_PIPELINE_CACHE_DUMP writes each pipeline's cache data", "[vulkan][pipeline-stats]") {
  RA_REQUIRE_DEVICE();
  const Shape shape{1, 1, 20, 16};
  const std::filesystem::path dir =
      std::filesystem::temp_directory_path() / ("ra-vk-pcache-" + std::to_string(std::random_device{}()));
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  {
    ScopedEnv dump("RA_VK_PIPELINE_CACHE_DUMP", dir.c_str());
    vk::ContextOptions o;
    const char* val = std::getenv("RA_VK_VALIDATION");
    o.validation = val && std::string(val) == "0" ? 0 : 1;
    auto ctx = std::make_shared<vk::Context>(o);
    vk::Attention att(vk::Variant::sdpa_fused, shape, vk::Options{}, ctx);
    auto t = vk::HostTensors::allocate(shape, 1);
    att.forward(t);
    const auto msgs = ctx->take_validation_messages();
    for (const auto& m : msgs) UNSCOPED_INFO(m);
    CHECK(msgs.empty());
    int files = 0;
    for (const auto& e : std::filesystem::directory_iterator(dir)) {
      INFO(e.path());
      CHECK(e.path().extension() == ".pcache");
      CHECK(e.path().filename().string().rfind("fwd", 0) == 0);
      CHECK(e.path().filename().string().find(',') == std::string::npos);
      std::ifstream in(e.path(), std::ios::binary);
      std::uint32_t head[4] = {};
      in.read(reinterpret_cast<char*>(head), sizeof(head));
      REQUIRE(in.gcount() == sizeof(head));
      CHECK(head[1] == 1u);  // VK_PIPELINE_CACHE_HEADER_VERSION_ONE
      CHECK(head[2] == ctx->info().vendor_id);
      ++files;
    }
    CHECK(files >= 1);
  }
  std::filesystem::remove_all(dir);
}

// Attention::time_repetitions (ra-bench's default Vulkan timing): the
// repetitions recorded back to back give one time each, finite and positive
// where the queue has timestamps, and leave exactly the outputs of one
// forward + backward (every repetition overwrites them); reps < 1 refused.
TEST_CASE("Vulkan: back-to-back timed repetitions leave one run's outputs", "[vulkan][timing]") {
  RA_REQUIRE_DEVICE();
  const Shape s{2, 2, 70, 32};
  vk::Options opt;
  opt.gate_batch = 2;
  for (vk::Variant v : {vk::Variant::sdpa_fused, vk::Variant::ra_fused}) {
    INFO(vk::variant_name(v));
    vk::Attention attn(v, s, opt, context());
    auto t = vk::HostTensors::allocate(s, 2);
    auto fill = [](std::vector<float>& x, std::uint64_t seed) {
      std::mt19937_64 gen(seed);
      std::normal_distribution<float> nd;
      for (float& e : x) e = nd(gen);
    };
    fill(t.q, 11), fill(t.k, 12), fill(t.v, 13), fill(t.dout, 14), fill(t.d, 15);
    for (std::size_t i = 0; i < t.gates.size(); ++i) t.gates[i] = 0.2f + 0.1f * float(i % 3);
    attn.upload(t, true);
    attn.run_forward();
    attn.run_backward();
    auto once = vk::HostTensors::allocate(s, 2);
    attn.download_forward(once);
    attn.download_backward(once);

    CHECK_THROWS_WITH(attn.time_repetitions(0, true), Catch::Contains("reps = 0"));
    attn.poison_outputs();
    const auto ms = attn.time_repetitions(3, true);
    REQUIRE(ms.size() == 3);
    if (context()->info().timestamp_period_ns > 0)
      for (double x : ms) CHECK((std::isfinite(x) && x > 0));
    auto batch = vk::HostTensors::allocate(s, 2);
    attn.download_forward(batch);
    attn.download_backward(batch);
    CHECK(batch.o == once.o);
    CHECK(batch.lse == once.lse);
    CHECK(batch.dq == once.dq);
    CHECK(batch.dk == once.dk);
    CHECK(batch.dv == once.dv);
    if (v == vk::Variant::ra_fused) {
      CHECK(batch.dd == once.dd);
      CHECK(batch.dgates == once.dgates);
    }
    REQUIRE(attn.time_repetitions(2, false).size() == 2);
  }
  check_clean();
}

// $RA_VK_ROWSTATS picks where the coopmat forward keeps its softmax row
// statistics (docs/vulkan.md): bad values refused naming the variable; 0
// and 1 both match the float64 reference with the path saying which was
// asked for. On lavapipe (subgroup 8) the kernel's layout check always
// takes the shared-memory path; on an NVIDIA GPU "[coopmat]" runs the
// register path on every shape (and this case both).
TEST_CASE("Vulkan: RA_VK_ROWSTATS picks the coopmat forward's row statistics, both correct",
          "[vulkan][fp16][coopmat][rowstats]") {
  RA_REQUIRE_DEVICE();
  using Catch::Contains;
  ScopedEnv rowstats("RA_VK_ROWSTATS", nullptr);
  {
    // $RA_VK_CM_SELB, the accumulators' row split behind the register row
    // statistics: 0..255 (decimal or 0x hex), else refused naming it.
    ScopedEnv split("RA_VK_CM_SELB", nullptr);
    const Shape tiny{1, 1, 16, 16};
    for (const char* bad : {"256", "-1", "x", "0xF0g", "1.5"}) {
      split.set(bad);
      CHECK_THROWS_WITH(vk::Attention(vk::Variant::sdpa_fused, tiny, vk::Options{}, context()),
                        Contains("RA_VK_CM_SELB = '" + std::string(bad) + "'") && Contains("0..255"));
    }
    for (const char* good : {"0xF0", "240", "0"}) {
      split.set(good);
      CHECK_NOTHROW(vk::Attention(vk::Variant::sdpa_fused, tiny, vk::Options{}, context()));
    }
  }
  check_switch_refusals(rowstats);
  if (!has_fp16()) return;
  for (const char* form : {"0", "1"}) {
    rowstats.set(form);
    const bool dev_cm = context()->info().coopmat_f16;
    const vk::ForwardPath fp = dev_cm ? vk::ForwardPath::coopmat : vk::ForwardPath::coopmat_emulated;
    const std::string want = (dev_cm ? cm_real() : std::string("coopmat-emulated fp16-storage")) + cm_loop();
    check_variant(vk::Variant::ra_window, {2, 1, 130, 40}, 2, 40, vk::Precision::fp16, 0, fp, want);
    check_variant(vk::Variant::sdpa_fused, {1, 2, 65, 64}, 1, -1, vk::Precision::fp16, 0, fp, want);
  }
  check_clean();
}

// With validation on, a layer older than VK_NV_cooperative_matrix2 keeps the
// coopmat2 forward off and says why (Context::coopmat2_layer_note), so the
// validated suite does not fail for the layer's sake on NVIDIA GPUs (perf
// v25: Debian 12's 1.3.239 flags coopmat2's structures); newer layers, and
// runs without validation, keep it.
TEST_CASE("Vulkan: a validation layer older than coopmat2 keeps it off, saying why", "[vulkan][coopmat2]") {
  CHECK(vk::Context::coopmat2_layer_note(VK_MAKE_API_VERSION(0, 1, 4, 303)).empty());
  CHECK(vk::Context::coopmat2_layer_note(VK_MAKE_API_VERSION(0, 1, 4, 321)).empty());
  const std::string note = vk::Context::coopmat2_layer_note(VK_MAKE_API_VERSION(0, 1, 3, 239));
  CHECK_THAT(note, Catch::Contains("1.3.239") && Catch::Contains("VK_NV_cooperative_matrix2") &&
                       Catch::Contains("RA_VK_VALIDATION=0"));
  RA_REQUIRE_DEVICE();
  const auto& dev = context()->info();
  // The suite's context: where the device has coopmat2 and validation is on
  // with an old layer, the note is the layer's.
  const char* no_cm2 = std::getenv("RA_VK_NO_CM2");
  const bool forced_off = no_cm2 && *no_cm2 && std::string(no_cm2) != "0";
  if (context()->validation_enabled() && !forced_off && dev.has_extension("VK_NV_cooperative_matrix2") &&
      dev.has_extension("VK_KHR_cooperative_matrix") && !dev.coopmat2)
    CHECK(dev.coopmat2_note.find("validation") != std::string::npos);
}
