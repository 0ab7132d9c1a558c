// Every Kokkos attention variant, forward and every gradient, against the
// float64 reference on fresh random inputs of awkward shapes, in float and
// double, on every execution space this build enables.
#include "kokkos_testing.hpp"

#include <ra/kokkos/discoverability.hpp>

#include <catch2/catch.hpp>

#include <ra/kokkos/kernel_traits.hpp>

#include <random>

using namespace ra;
using namespace ra::testing;

namespace {

struct Case {
  int B, H, T, D;
};
// T in {1, 7, 64, 100, 257} (tile-aligned and not), D in {16, 32, 64, 128},
// several B and H; sized so the whole file runs in about a minute on 2 cores.
const Case kCases[] = {
    {1, 1, 1, 16},  {2, 3, 7, 32},   {1, 2, 64, 64},  {2, 1, 100, 128}, {1, 2, 257, 16},
    {1, 1, 257, 64}, {3, 2, 100, 32}, {1, 1, 7, 128}, {2, 2, 64, 16},  {1, 1, 1, 128},
};

std::uint64_t fresh_seed() {
  static std::random_device rd;
  return (std::uint64_t(rd()) << 32) ^ rd();
}

// Every output of a forward + backward against the problem's float64 answers.
template <class Tensors>
void check_outputs(const Tensors& t, const Problem& p, bool ra, double tol, double gate_tol) {
  CHECK(max_rel_error(download(t.o), p.o) <= tol);
  CHECK(max_rel_error(download(t.lse), p.lse) <= tol);
  CHECK(max_rel_error(download(t.dq), p.dq) <= tol);
  CHECK(max_rel_error(download(t.dk), p.dk) <= tol);
  CHECK(max_rel_error(download(t.dv), p.dv) <= tol);
  if (ra) {
    CHECK(max_rel_error(download(t.dd), p.dd) <= tol);
    CHECK(max_rel_error(download(t.dgates), p.dgates) <= gate_tol);
  }
}

template <class Scalar, class Exec>
void check_variant(kk::Variant v, const Case& c, int gate_batch, int window, int tile = 0) {
  const Shape s{c.B, c.H, c.T, c.D};
  const std::uint64_t seed = fresh_seed();
  const bool ra = kk::is_ra(v);
  const int gb = gate_batch == 1 ? 1 : c.B;
  INFO(kk::variant_name(v) << " on " << Exec::name() << " " << precision_name<Scalar>() << " "
                           << s.str() << " Gb=" << gb << " window=" << window << " tile=" << tile
                           << " seed=" << seed);
  Problem p(s, gb, window, ra, seed);
  auto t = make_tensors<Scalar, Exec>(p);

  kk::Options opt;
  opt.gate_batch = gb;
  opt.window = window;
  opt.tile = tile;
  kk::Attention<Scalar, Exec> attn(v, s, opt);
  attn.forward(t);
  attn.backward(t);
  Kokkos::fence();

  check_outputs(t, p, ra, tolerance<Scalar>(), tolerance<Scalar>());
}

template <class Scalar, class Exec>
void check_all_variants() {
  for (const Case& c : kCases) {
    for (kk::Variant v : kk::all_variants()) {
      if (!kk::is_ra(v)) {
        check_variant<Scalar, Exec>(v, c, 1, -1);
      } else if (v == kk::Variant::ra_window) {
        for (int w : {0, 5, 40}) check_variant<Scalar, Exec>(v, c, c.B, w);
      } else {
        check_variant<Scalar, Exec>(v, c, 1, -1);
        check_variant<Scalar, Exec>(v, c, c.B, -1);
      }
    }
  }
  // Every tile the table can pick, pinned, on a T that is a multiple of none.
  for (int tile : {8, 16, 32, 64})
    for (kk::Variant v : {kk::Variant::sdpa_fused, kk::Variant::ra_fused, kk::Variant::ra_window})
      check_variant<Scalar, Exec>(v, {1, 2, 77, 32}, 1, v == kk::Variant::ra_window ? 9 : -1, tile);
  // The open-coded RA honours a window too.
  check_variant<Scalar, Exec>(kk::Variant::ra_open, {2, 2, 100, 32}, 1, 7);
}

// The fused variants with each gate layout and ra_window's band at 0 (mixed,
// plain and full tiles) and 40: the runs the fast paths are compared over.
struct FusedRun {
  kk::Variant v;
  bool per_batch_gates;
  int window;
};
const FusedRun kFusedRuns[] = {{kk::Variant::sdpa_fused, false, -1}, {kk::Variant::ra_fused, false, -1},
                               {kk::Variant::ra_fused, true, -1},    {kk::Variant::ra_window, true, 0},
                               {kk::Variant::ra_window, false, 40}};

}  // namespace

#if defined(KOKKOS_ENABLE_CUDA)
#define RA_TEST_SPACES Kokkos::Cuda, Kokkos::Serial
#elif defined(KOKKOS_ENABLE_OPENMP)
#define RA_TEST_SPACES Kokkos::Serial, Kokkos::OpenMP
#else
#define RA_TEST_SPACES Kokkos::Serial
#endif

TEMPLATE_TEST_CASE("every variant matches the float64 reference (float)", "[kernels]",
                   RA_TEST_SPACES) {
  check_all_variants<float, TestType>();
}

TEMPLATE_TEST_CASE("every variant matches the float64 reference (double)", "[kernels]",
                   RA_TEST_SPACES) {
  check_all_variants<double, TestType>();
}

#if defined(RA_HAVE_BF16)
// bf16 storage: the fused variants (the tensor-core kernels on CUDA where they
// take the shape, the portable kernels elsewhere and as the fallback), on
// head dims that exercise every path: 16/32/64/128 (tuned), 48/96 (padded to
// the next tuned width), 40 (padded, not a multiple of 16), 20 (not a
// multiple of 8: portable fallback), T not a multiple of any tile.
// Gate gradients are sums over all T^2 pairs of dL times S whose exact row
// sums cancel (sum_j P_ij (dP_ij - Delta_i) = 0), and Delta_i = dO_i . O_i is
// taken from the bf16-stored O: its rounding (2^-9 relative) shifts every
// term of a row alike, so the small result moves by up to ~2% of max(|ref|, 1)
// (worst of 2232 draws on an H100: 0.0203, docs/perf.md v6) although each
// term is exact to fp32. The same holds for any bf16 flash backward.
constexpr double kBf16GateTolerance = 5e-2;

// Returns the backward's plan path.
template <class Exec>
std::string check_bf16(kk::Variant v, const Case& c, int gate_batch, int window, bool portable,
                       int candidate = -1, int bwd_candidate = -1, bool deterministic = true) {
  const Shape s{c.B, c.H, c.T, c.D};
  const std::uint64_t seed = fresh_seed();
  const bool ra = kk::is_ra(v);
  Problem p(s, gate_batch, window, ra, seed, /*round_to_bf16=*/true);
  auto t = make_tensors<bf16, Exec>(p);
  kk::Options opt;
  opt.gate_batch = gate_batch, opt.window = window, opt.portable = portable;
  opt.tc_candidate = candidate;
  opt.tc_bwd_candidate = bwd_candidate;
  opt.deterministic = deterministic;
  kk::Attention<bf16, Exec> attn(v, s, opt);
  INFO(kk::variant_name(v) << " on " << Exec::name() << " bf16 " << s.str() << " Gb=" << gate_batch
                           << " window=" << window << " seed=" << seed << " paths "
                           << attn.forward_plan().path << " / " << attn.backward_plan().path);
  attn.forward(t);
  attn.backward(t);
  Kokkos::fence();
  check_outputs(t, p, ra, tolerance<bf16>(), kBf16GateTolerance);
  return attn.backward_plan().path;
}

TEMPLATE_TEST_CASE("bf16 storage matches the float64 reference (fused variants)", "[kernels][bf16]",
                   RA_TEST_SPACES) {
  using Exec = TestType;
  const Case cases[] = {{1, 1, 1, 16},  {2, 3, 7, 32},   {1, 2, 64, 64},  {2, 1, 100, 128},
                        {1, 2, 257, 48}, {1, 1, 257, 64}, {3, 2, 100, 96}, {1, 1, 7, 128},
                        {2, 2, 65, 64},  {1, 1, 130, 40}, {1, 1, 50, 20}};
  for (const Case& c : cases) {
    check_bf16<Exec>(kk::Variant::sdpa_fused, c, 1, -1, false);
    check_bf16<Exec>(kk::Variant::ra_fused, c, 1, -1, false);
    check_bf16<Exec>(kk::Variant::ra_fused, c, c.B, -1, false);
    for (int w : {0, 5, 40}) check_bf16<Exec>(kk::Variant::ra_window, c, c.B, w, false);
  }
  // The portable kernels in bf16, where the tensor-core ones would run.
  for (kk::Variant v : {kk::Variant::sdpa_fused, kk::Variant::ra_fused, kk::Variant::ra_window})
    check_bf16<Exec>(v, {2, 2, 100, 64}, 1, v == kk::Variant::ra_window ? 9 : -1, true);
}

#if defined(KOKKOS_ENABLE_CUDA)
// Every compiled configuration a tuning sweep may pick (ra-bench
// --tc-candidates) is held to the reference before anyone times it.
TEST_CASE("every tensor-core candidate matches the float64 reference", "[kernels][bf16]") {
  for (int cand = 0; cand < kk::kBackwardCandidates; ++cand)
    for (const Case& c : {Case{2, 2, 100, 64}, Case{1, 1, 257, 48}, Case{1, 2, 1, 64}}) {
      check_bf16<Kokkos::Cuda>(kk::Variant::sdpa_fused, c, 1, -1, false, -1, cand);
      check_bf16<Kokkos::Cuda>(kk::Variant::ra_fused, c, c.B, -1, false, -1, cand);
      check_bf16<Kokkos::Cuda>(kk::Variant::ra_window, c, 1, 9, false, -1, cand);
    }
  for (int cand = 0; cand < kk::kForwardCandidates; ++cand)
    for (const Case& c : {Case{2, 2, 100, 64}, Case{1, 1, 257, 48}, Case{1, 2, 1, 64}}) {
      check_bf16<Kokkos::Cuda>(kk::Variant::sdpa_fused, c, 1, -1, false, cand);
      check_bf16<Kokkos::Cuda>(kk::Variant::ra_fused, c, c.B, -1, false, cand);
      check_bf16<Kokkos::Cuda>(kk::Variant::ra_window, c, 1, 9, false, cand);
    }
  using Catch::Contains;
  REQUIRE_THROWS_WITH(check_bf16<Kokkos::Cuda>(kk::Variant::ra_fused, {1, 1, 8, 128}, 1, -1, false, 0),
                      Contains("tc_candidate = 0"));
}

// ra_window's own kernels (kernel_traits.hpp: window) run the band tiles and
// then the plain ones in a loop of their own: enough key tiles (at 128 keys)
// that the plain loop's steady state runs, T off the tile, windows from a
// band inside one tile to one across three; through the table too.
TEST_CASE("the window kernels match the reference over many tiles", "[kernels][bf16]") {
  for (int cand : {-1, 21})
    for (int w : {0, 100, 300})
      check_bf16<Kokkos::Cuda>(kk::Variant::ra_window, {1, 2, 777, 64}, 1, w, false, cand, cand < 0 ? -1 : 23);
  check_bf16<Kokkos::Cuda>(kk::Variant::ra_window, {2, 1, 1000, 40}, 2, 128, false);
  // The backward pair (#23): band tiles of 32, plain ones of 64, the switch
  // between them at every offset a window can put it; gates per batch.
  for (int w : {0, 31, 64, 97, 200}) check_bf16<Kokkos::Cuda>(kk::Variant::ra_window, {2, 1, 333, 64}, 2, w, false, -1, 23);
#if defined(KOKKOS_ARCH_HOPPER90)
  // ... and the table gives them to ra_window wherever they can run.
  const auto& prop = Kokkos::Cuda().cuda_device_prop();
  const bool runs = prop.major == 9 && prop.minor == 0 && Kokkos::TeamPolicy<Kokkos::Cuda>::scratch_size_max(0) > 64 * 1024;
  kk::Options opt;
  opt.window = 16;
  kk::Attention<bf16, Kokkos::Cuda> attn(kk::Variant::ra_window, Shape{1, 1, 64, 64}, opt);
  INFO(attn.backward_plan().path);
  CHECK((attn.backward_plan().path.find("#23") != std::string::npos &&
         attn.backward_plan().path.find(" window") != std::string::npos) == runs);
#endif
}

// The traits table picks the sm_90a warpgroup forward and dQ kernel in HOPPER90
// builds: on a compute-capability-9.0 GPU they must run (not fall back
// unnoticed), anywhere else the mma.sync kernels run and the plans say why.
TEST_CASE("the bf16 kernels run wgmma exactly where they can", "[kernels][bf16]") {
  const auto& prop = Kokkos::Cuda().cuda_device_prop();
  const bool cc90 = prop.major == 9 && prop.minor == 0;
  for (kk::Variant v : {kk::Variant::sdpa_fused, kk::Variant::ra_fused}) {
    kk::Attention<bf16, Kokkos::Cuda> attn(v, Shape{1, 1, 64, 64}, kk::Options{});
    const std::string path = attn.forward_plan().path, bwd = attn.backward_plan().path;
    INFO(kk::variant_name(v) << ": " << path << " / " << bwd << " on compute capability " << prop.major
                             << "." << prop.minor);
#if defined(KOKKOS_ARCH_HOPPER90)
    CHECK((path.find(" wgmma ") != std::string::npos) == cc90);
    CHECK((path.find("no sm_90a kernel") != std::string::npos) == !cc90);
    CHECK((bwd.find(" q-wgmma") != std::string::npos) == cc90);
    CHECK((bwd.find("no sm_90a kernel") != std::string::npos) == !cc90);
#else
    CHECK(path.find("wgmma") == std::string::npos);
    CHECK(bwd.find("wgmma") == std::string::npos);
#endif
  }
}

// Entries that take more than 48 KiB of shared memory per team (big_smem) need
// the project's Kokkos patch (cmake/kokkos-4.6.01-shmem-optin.patch), which
// raises TeamPolicy's scratch_size_max(0) to the GPU's opt-in limit: with it
// they run on a compute-capability-9.0 GPU; without it the 48 KiB wgmma entry
// runs and the plan says why. (The kernels themselves are held to the
// reference by the candidate test above.)
TEST_CASE("big_smem candidates run where Kokkos gives them the shared memory", "[kernels][bf16]") {
  const auto& prop = Kokkos::Cuda().cuda_device_prop();
  const bool cc90 = prop.major == 9 && prop.minor == 0;
  const bool patched = Kokkos::TeamPolicy<Kokkos::Cuda>::scratch_size_max(0) > 64 * 1024;
  for (kk::Variant v : {kk::Variant::sdpa_fused, kk::Variant::ra_fused}) {
    kk::Options opt;
    opt.tc_candidate = 16;      // big_smem forward entries
    opt.tc_bwd_candidate = 17;  // big_smem backward entries
    kk::Attention<bf16, Kokkos::Cuda> attn(v, Shape{1, 1, 64, 64}, opt);
    const std::string path = attn.forward_plan().path, bwd = attn.backward_plan().path;
    INFO(kk::variant_name(v) << ": " << path << " / " << bwd << "; scratch_size_max(0) = "
                             << Kokkos::TeamPolicy<Kokkos::Cuda>::scratch_size_max(0));
#if defined(KOKKOS_ARCH_HOPPER90)
    if (cc90) {
      CHECK((path.find("big-smem") != std::string::npos) == patched);
      CHECK((path.find("big_smem entry needs") != std::string::npos) == !patched);
      CHECK((bwd.find("big-smem") != std::string::npos) == patched);
      CHECK((bwd.find("big_smem entry needs") != std::string::npos) == !patched);
    }
#endif
    CHECK((path.find("big-smem") == std::string::npos || cc90));
  }
}
#endif

// Options::deterministic = false: on CUDA the single-pass backward (one
// key-owned kernel, dQ and RA's dK cross part added into an fp32 workspace by
// atomics) at head dims <= 64; elsewhere (the host's portable kernels, D = 128)
// the option is accepted and the deterministic path runs, saying why.
TEMPLATE_TEST_CASE("the single-pass bf16 backward (atomic dQ) matches the float64 reference",
                   "[kernels][bf16][atomic]", RA_TEST_SPACES) {
  using Exec = TestType;
  const bool cuda = !std::is_same_v<Exec, Kokkos::Serial>;  // bf16 builds are CUDA + Serial
  // Every T of {1, 7, 64, 65, 100, 130, 257} and D of {16, 32, 48, 64} (padded
  // to 32 and 64), T not a multiple of the 32- or 64-query tiles.
  const Case cases[] = {{1, 1, 1, 16},   {2, 3, 7, 32},   {1, 2, 64, 64},  {2, 2, 65, 48},
                        {3, 2, 100, 16}, {1, 1, 130, 64}, {1, 2, 257, 32}, {1, 1, 257, 64},
                        {2, 1, 65, 64},  {1, 2, 100, 48}, {1, 1, 130, 32}, {2, 1, 7, 64}};
  for (const Case& c : cases) {
    auto check = [&](kk::Variant v, int gate_batch, int window) {
      const std::string path = check_bf16<Exec>(v, c, gate_batch, window, false, -1, -1, false);
      INFO(kk::variant_name(v) << " " << (Shape{c.B, c.H, c.T, c.D}).str() << " backward " << path);
      if (cuda)
        CHECK_THAT(path, Catch::StartsWith("tensor-core bf16 fused-atomic"));
      else
        CHECK_THAT(path, Catch::StartsWith("portable") && !Catch::Contains("fused-atomic"));
    };
    check(kk::Variant::sdpa_fused, 1, -1);
    check(kk::Variant::ra_fused, 1, -1);
    check(kk::Variant::ra_fused, c.B, -1);
    for (int w : {0, 5, 40}) check(kk::Variant::ra_window, c.B, w);
  }
  if (cuda) {
    // D = 128 has no single-pass kernel (48 KiB): the deterministic one runs and says why.
    const std::string path = check_bf16<Exec>(kk::Variant::sdpa_fused, {1, 2, 100, 128}, 1, -1, false,
                                              -1, -1, false);
    CHECK_THAT(path, Catch::StartsWith("tensor-core bf16") && Catch::Contains("fused-atomic not taken"));
  }
}

#if defined(KOKKOS_ENABLE_CUDA)
// The atomics add in whatever order the teams arrive: two runs may differ in
// the fp32 sums' last bits, so in at most a bf16 rounding of each output.
TEST_CASE("the single-pass bf16 backward repeats to bf16 rounding", "[kernels][bf16][atomic]") {
  for (kk::Variant v : {kk::Variant::sdpa_fused, kk::Variant::ra_fused, kk::Variant::ra_window}) {
    const Shape s{2, 3, 257, 64};
    const bool ra = kk::is_ra(v);
    const int window = v == kk::Variant::ra_window ? 9 : -1;
    Problem p(s, s.B, window, ra, fresh_seed(), /*round_to_bf16=*/true);
    auto t = make_tensors<bf16, Kokkos::Cuda>(p);
    kk::Options opt;
    opt.gate_batch = s.B, opt.window = window, opt.deterministic = false;
    kk::Attention<bf16, Kokkos::Cuda> attn(v, s, opt);
    INFO(kk::variant_name(v) << " backward " << attn.backward_plan().path);
    REQUIRE_THAT(attn.backward_plan().path, Catch::StartsWith("tensor-core bf16 fused-atomic"));
    attn.forward(t);
    attn.backward(t);
    Kokkos::fence();
    const auto dq = download(t.dq), dk = download(t.dk), dv = download(t.dv);
    const auto dd = download(t.dd), dgates = download(t.dgates);
    poison(t);
    attn.forward(t);
    attn.backward(t);
    Kokkos::fence();
    constexpr double kBf16Ulp = 1.0 / 128;  // a bf16 rounding flip, relative to the largest |x|
    CHECK(max_rel_error(download(t.dq), dq) <= kBf16Ulp);
    CHECK(max_rel_error(download(t.dk), dk) <= kBf16Ulp);
    CHECK(max_rel_error(download(t.dv), dv) <= kBf16Ulp);
    if (ra) {
      CHECK(max_rel_error(download(t.dd), dd) <= kBf16Ulp);
      CHECK(max_rel_error(download(t.dgates), dgates) <= 1e-4);  // fp32 sums of the same partials
    }
  }
}
#endif

TEMPLATE_TEST_CASE("bf16 picks the tensor-core path on CUDA and says why not elsewhere",
                   "[kernels][bf16]", RA_TEST_SPACES) {
  using Exec = TestType;
  using A = kk::Attention<bf16, Exec>;
  const bool cuda = !std::is_same_v<Exec, Kokkos::Serial>;  // bf16 builds are CUDA + Serial
  kk::Options opt;
  const std::string fwd = A(kk::Variant::ra_fused, Shape{1, 2, 64, 64}, opt).forward_plan().path;
  CHECK_THAT(fwd, Catch::StartsWith(cuda ? "tensor-core bf16" : "portable"));
  if (cuda) {
    // D = 20 cannot use 16-byte rows; RA backward at D = 128 has no kernel yet.
    CHECK_THAT(A(kk::Variant::ra_fused, Shape{1, 2, 64, 20}).forward_plan().path,
               Catch::Contains("not a multiple of 8"));
    CHECK_THAT(A(kk::Variant::ra_fused, Shape{1, 2, 64, 128}).backward_plan().path,
               Catch::Contains("portable ("));
  }
  REQUIRE_THROWS_WITH(A(kk::Variant::sdpa_open, Shape{1, 2, 16, 32}),
                      Catch::Contains("fused variants only"));
}

#endif  // RA_HAVE_BF16

// Options::deterministic = false only changes the bf16 tensor-core backward:
// every other path (float here, on every space of the build) accepts it, runs
// as before and says nothing of fused-atomic.
TEMPLATE_TEST_CASE("deterministic = false is accepted and ignored off the bf16 tensor cores",
                   "[kernels][atomic]", RA_TEST_SPACES) {
  using Exec = TestType;
  for (kk::Variant v : {kk::Variant::sdpa_fused, kk::Variant::ra_fused, kk::Variant::ra_window}) {
    const Shape s{2, 2, 65, 32};
    const bool ra = kk::is_ra(v);
    const int window = v == kk::Variant::ra_window ? 5 : -1;
    Problem p(s, 1, window, ra, fresh_seed());
    auto t = make_tensors<float, Exec>(p);
    kk::Options opt;
    opt.window = window;
    const std::string path = kk::Attention<float, Exec>(v, s, opt).backward_plan().path;
    opt.deterministic = false;
    kk::Attention<float, Exec> attn(v, s, opt);
    INFO(kk::variant_name(v) << " on " << Exec::name() << " backward " << attn.backward_plan().path);
    CHECK(attn.backward_plan().path == path);
    attn.forward(t);
    attn.backward(t);
    Kokkos::fence();
    check_outputs(t, p, ra, tolerance<float>(), tolerance<float>());
  }
}

// The fp32 tiled kernels (CUDA, float storage): the fused variants' forward
// and backward unless the caller pins the portable kernels (Options::portable,
// a tile); RA's backward at D > 64 falls back with its reason; every other
// space and precision stays portable.
template <class Exec>
constexpr bool is_cuda_space() {
#if defined(KOKKOS_ENABLE_CUDA)
  return std::is_same_v<Exec, Kokkos::Cuda>;
#else
  return false;
#endif
}

TEMPLATE_TEST_CASE("float picks the fp32 tiled kernels on CUDA and the portable ones elsewhere",
                   "[kernels][fp32tiled]", RA_TEST_SPACES) {
  using Exec = TestType;
  using A = kk::Attention<float, Exec>;
  using Catch::StartsWith;
  const bool cuda = is_cuda_space<Exec>();
  const Shape s{1, 2, 65, 48};
  for (kk::Variant v : {kk::Variant::sdpa_fused, kk::Variant::ra_fused, kk::Variant::ra_window}) {
    INFO(kk::variant_name(v) << " on " << Exec::name());
    kk::Options opt;
    opt.window = v == kk::Variant::ra_window ? 5 : -1;
    CHECK_THAT(A(v, s, opt).forward_plan().path, StartsWith(cuda ? "fp32 tiled" : "portable"));
    CHECK_THAT(A(v, s, opt).backward_plan().path, StartsWith(cuda ? "fp32 tiled" : "portable"));
    // RA's backward at D > 64 is not tiled: portable, saying why (SDPA's is).
    const Shape wide{1, 2, 65, 128};
    if (cuda)
      CHECK_THAT(A(v, wide, opt).backward_plan().path,
                 StartsWith(kk::is_ra(v) ? "portable (fp32 tiled backward: RA needs D <= 64" : "fp32 tiled"));
    kk::Options portable = opt;
    portable.portable = true;
    CHECK_THAT(A(v, s, portable).forward_plan().path, StartsWith("portable"));
    CHECK_THAT(A(v, s, portable).backward_plan().path, StartsWith("portable"));
    kk::Options pinned = opt;
    pinned.tile = 32;
    CHECK_THAT(A(v, s, pinned).forward_plan().path, StartsWith("portable"));
    CHECK_THAT(A(v, s, pinned).backward_plan().path, StartsWith("portable"));
  }
  using D64 = kk::Attention<double, Exec>;
  CHECK_THAT(D64(kk::Variant::sdpa_fused, s).forward_plan().path, StartsWith("portable"));
}

// The tiled kernels against the portable ones, both float, forward and
// backward, on shapes that are awkward for their 64 x 64 tiles and 4-float
// loads: T in {1, 7, 65, 130, 257}, D padded to 32/64/128 internally (16, 20,
// 48, 96), exact (64, 128), and D = 7 (rows not 16-byte aligned: element
// loads); ra_window's band at 0 and 40 (mixed, plain and full tiles), gates
// per head and per (b, h). RA at D > 64 runs the portable backward (checked by
// its path) and still compares the tiled forward. Each side is run on its own
// outputs (the portable backward on the portable forward's o and lse).
// Tolerance 2e-4 relative to max(|x|, 1): both are fp32 with different
// summation orders (and exp2 vs exp). The gate gradients get 5e-4: each is a
// sum over all T^2 pairs of dL times a logit half whose exact row sums cancel
// (sum_j P_ij (dP_ij - Delta_i) = 0), so a small result carries the rounding
// of large terms; each side is within 2e-4 of the float64 answer (the float
// reference tests), so two of them may differ by up to twice that.
// Host builds only check the path.
TEMPLATE_TEST_CASE("the fp32 tiled kernels match the portable kernels", "[kernels][fp32tiled]",
                   RA_TEST_SPACES) {
  using Exec = TestType;
  using A = kk::Attention<float, Exec>;
  using Catch::StartsWith;
  if constexpr (!is_cuda_space<Exec>()) {
    CHECK_THAT(A(kk::Variant::ra_fused, Shape{1, 1, 7, 20}).forward_plan().path, StartsWith("portable"));
  } else {
    const Case cases[] = {{1, 1, 1, 16},   {2, 2, 7, 20},  {1, 2, 65, 48},  {2, 1, 130, 64},
                          {1, 1, 257, 96}, {1, 2, 65, 128}, {1, 1, 130, 7}, {2, 1, 257, 64}};
    for (const Case& c : cases)
      for (const FusedRun& r : kFusedRuns) {
        const Shape s{c.B, c.H, c.T, c.D};
        const bool ra = kk::is_ra(r.v);
        const int gb = r.per_batch_gates ? c.B : 1;
        const std::uint64_t seed = fresh_seed();
        Problem p(s, gb, r.window, ra, seed);
        auto tiled = make_tensors<float, Exec>(p);
        auto port = make_tensors<float, Exec>(p);
        kk::Options opt;
        opt.gate_batch = gb, opt.window = r.window;
        A fast(r.v, s, opt);
        opt.portable = true;
        A slow(r.v, s, opt);
        INFO(kk::variant_name(r.v) << " " << s.str() << " Gb=" << gb << " window=" << r.window
                                   << " seed=" << seed << " path " << fast.forward_plan().path);
        REQUIRE_THAT(fast.forward_plan().path, StartsWith("fp32 tiled"));
        INFO("backward path " << fast.backward_plan().path);
        REQUIRE_THAT(fast.backward_plan().path, StartsWith(ra && c.D > 64 ? "portable (" : "fp32 tiled"));
        fast.forward(tiled);
        slow.forward(port);
        fast.backward(tiled);
        slow.backward(port);
        Kokkos::fence();
        CHECK(max_rel_error(download(tiled.o), download(port.o)) <= 2e-4);
        CHECK(max_rel_error(download(tiled.lse), download(port.lse)) <= 2e-4);
        CHECK(max_rel_error(download(tiled.dq), download(port.dq)) <= 2e-4);
        CHECK(max_rel_error(download(tiled.dk), download(port.dk)) <= 2e-4);
        CHECK(max_rel_error(download(tiled.dv), download(port.dv)) <= 2e-4);
        if (ra) {
          CHECK(max_rel_error(download(tiled.dd), download(port.dd)) <= 2e-4);
          CHECK(max_rel_error(download(tiled.dgates), download(port.dgates)) <= 5e-4);
        }
      }
  }
}

// Options::tf32: the TF32 tensor-core forward and backward against the
// float64 reference on awkward shapes (T not a multiple of the 64-row tile or
// of the streamed tiles, T = 1, D padded to 32/64/128), every window and gate
// layout, all outputs NaN-poisoned first (make_tensors). Tolerance 2e-3
// relative to max(|ref|, 1) -- issue 5's tf32 bound: operands are rounded to
// 10-bit mantissas (relative error <= 2^-11 each). The gate gradients get
// 1e-2 for the reason bf16's do (see kBf16GateTolerance): each is a sum over
// T^2 pairs of dL times a logit half whose rows cancel exactly, and
// Delta = dO . O reads the TF32 forward's O. Where a TF32 kernel cannot run
// (D not a multiple of 4; forward: RA at D > 64; backward: D > 64) the exact
// path runs and its plan says why; host builds refuse the option.
TEMPLATE_TEST_CASE("tf32 forward and backward match the float64 reference", "[kernels][tf32]",
                   RA_TEST_SPACES) {
  using Exec = TestType;
  using A = kk::Attention<float, Exec>;
  using Catch::Contains;
  using Catch::StartsWith;
  kk::Options tf32;
  tf32.tf32 = true;
  if constexpr (!is_cuda_space<Exec>()) {
    CHECK_THROWS_WITH(A(kk::Variant::ra_fused, Shape{1, 1, 7, 16}, tf32), Contains("Options::tf32"));
  } else {
    CHECK_THROWS_WITH(A(kk::Variant::sdpa_open, Shape{1, 1, 7, 16}, tf32), Contains("Options::tf32"));
    const A odd(kk::Variant::sdpa_fused, Shape{1, 1, 7, 7}, tf32);
    CHECK_THAT(odd.forward_plan().path,
               StartsWith("fp32 tiled") && Contains("tf32 not taken: head dim D = 7"));
    CHECK_THAT(odd.backward_plan().path,
               StartsWith("fp32 tiled") && Contains("tf32 not taken: head dim D = 7"));
    const A wide_ra(kk::Variant::ra_fused, Shape{1, 1, 7, 96}, tf32);
    CHECK_THAT(wide_ra.forward_plan().path,
               StartsWith("fp32 tiled") && Contains("tf32 not taken: RA at head dim D = 96"));
    CHECK_THAT(wide_ra.backward_plan().path,
               StartsWith("portable (") && Contains("tf32 not taken: RA at head dim D = 96"));
    const Case cases[] = {{1, 1, 1, 16},    {2, 2, 7, 20},   {1, 2, 65, 48}, {2, 1, 130, 64},
                          {1, 1, 257, 128}, {2, 1, 257, 32}, {1, 2, 100, 64}, {1, 1, 33, 96},
                          {1, 1, 80, 16},   {2, 1, 17, 64}};
    for (const Case& c : cases)
      for (const FusedRun& r : kFusedRuns) {
        const Shape s{c.B, c.H, c.T, c.D};
        const bool ra = kk::is_ra(r.v);
        if (ra && c.D > 64) continue;  // checked above: the exact path runs
        const int gb = r.per_batch_gates ? c.B : 1;
        const std::uint64_t seed = fresh_seed();
        Problem p(s, gb, r.window, ra, seed);
        auto t = make_tensors<float, Exec>(p);
        kk::Options opt = tf32;
        opt.gate_batch = gb, opt.window = r.window;
        A attn(r.v, s, opt);
        INFO(kk::variant_name(r.v) << " " << s.str() << " Gb=" << gb << " window=" << r.window
                                   << " seed=" << seed << " path " << attn.forward_plan().path
                                   << " backward path " << attn.backward_plan().path);
        REQUIRE_THAT(attn.forward_plan().path, StartsWith("tensor-core tf32"));
        if (c.D <= 64)
          REQUIRE_THAT(attn.backward_plan().path, StartsWith("tensor-core tf32"));
        else
          REQUIRE_THAT(attn.backward_plan().path,
                       StartsWith("fp32 tiled") && Contains("tf32 not taken: head dim D = "));
        attn.forward(t);
        attn.backward(t);
        Kokkos::fence();
        check_outputs(t, p, ra, 2e-3, 1e-2);
      }
  }
}

TEMPLATE_TEST_CASE("ra_window with a window covering T equals ra_fused", "[kernels]",
                   RA_TEST_SPACES) {
  using Exec = TestType;
  const Shape s{2, 2, 100, 32};
  Problem p(s, 1, -1, true, fresh_seed());
  auto a = make_tensors<double, Exec>(p);
  auto b = make_tensors<double, Exec>(p);
  kk::Attention<double, Exec>(kk::Variant::ra_fused, s).forward(a);
  kk::Options wide;
  wide.window = s.T;
  kk::Attention<double, Exec>(kk::Variant::ra_window, s, wide).forward(b);
  CHECK(max_rel_error(download(a.o), download(b.o)) <= 1e-13);
}

TEMPLATE_TEST_CASE("bad arguments throw with a message naming the problem", "[kernels]",
                   RA_TEST_SPACES) {
  using Exec = TestType;
  using A = kk::Attention<float, Exec>;
  using Catch::Contains;
  const Shape ok{1, 2, 16, 32};
  REQUIRE_THROWS_WITH(A(kk::Variant::sdpa_fused, Shape{1, 2, 0, 32}), Contains("T = 0"));
  REQUIRE_THROWS_WITH(A(kk::Variant::ra_fused, Shape{1, 2, 16, 256}), Contains("D = 256"));
  kk::Options no_window;
  REQUIRE_THROWS_WITH(A(kk::Variant::ra_window, ok, no_window), Contains("window"));
  kk::Options bad_gb;
  bad_gb.gate_batch = 3;
  REQUIRE_THROWS_WITH(A(kk::Variant::ra_fused, ok, bad_gb), Contains("gate_batch = 3"));
  REQUIRE_THROWS_WITH(kk::parse_variant("flash"), Contains("sdpa_fused"));
  kk::Options bad_tile;
  bad_tile.tile = 12;
  REQUIRE_THROWS_WITH(A(kk::Variant::sdpa_fused, ok, bad_tile), Contains("tile = 12"));

  // Tensors of the wrong shape: the message names the tensor and both shapes.
  auto t = kk::AttentionTensors<float, Exec>::allocate(Shape{1, 2, 16, 16}, 1);
  REQUIRE_THROWS_WITH(A(kk::Variant::sdpa_fused, ok).forward(t), Contains("'q'"));
  auto t2 = kk::AttentionTensors<float, Exec>::allocate(ok, 1);
  t2.d = typename kk::AttentionTensors<float, Exec>::T3("d", 1, 2, 15);
  REQUIRE_THROWS_WITH(A(kk::Variant::ra_open, ok).forward(t2), Contains("'d'"));
  t2.dgates = typename kk::AttentionTensors<float, Exec>::T3("dgates", 2, 2, 3);
  REQUIRE_NOTHROW(A(kk::Variant::sdpa_open, ok).forward(t2));  // SDPA ignores RA tensors
}

// The two execution spaces of this build run the same kernels on the same
// inputs and must agree far more tightly than either agrees with float64:
// host builds compare Serial with OpenMP, CUDA builds Cuda with Serial.
template <class Scalar>
void check_spaces_agree(double tol) {
#if defined(KOKKOS_ENABLE_CUDA)
  using A = Kokkos::Cuda;
  using B = Kokkos::Serial;
#elif defined(KOKKOS_ENABLE_OPENMP)
  using A = Kokkos::Serial;
  using B = Kokkos::OpenMP;
#else
  using A = Kokkos::Serial;
  using B = Kokkos::Serial;
#endif
  const Shape s{2, 3, 100, 64};
  for (kk::Variant v : kk::all_variants()) {
    kk::Options opt;
    opt.window = v == kk::Variant::ra_window ? 17 : -1;
    opt.gate_batch = 2;
    Problem p(s, opt.gate_batch, opt.window, kk::is_ra(v), fresh_seed());
    auto ta = make_tensors<Scalar, A>(p);
    auto tb = make_tensors<Scalar, B>(p);
    kk::Attention<Scalar, A> aa(v, s, opt);
    kk::Attention<Scalar, B> ab(v, s, opt);
    aa.forward(ta), aa.backward(ta), ab.forward(tb), ab.backward(tb);
    Kokkos::fence();
    INFO(kk::variant_name(v) << ": " << A::name() << " vs " << B::name() << " "
                             << precision_name<Scalar>());
    CHECK(max_rel_error(download(ta.o), download(tb.o)) <= tol);
    CHECK(max_rel_error(download(ta.lse), download(tb.lse)) <= tol);
    CHECK(max_rel_error(download(ta.dq), download(tb.dq)) <= tol);
    CHECK(max_rel_error(download(ta.dk), download(tb.dk)) <= tol);
    CHECK(max_rel_error(download(ta.dv), download(tb.dv)) <= tol);
    if (kk::is_ra(v)) {
      CHECK(max_rel_error(download(ta.dd), download(tb.dd)) <= tol);
      CHECK(max_rel_error(download(ta.dgates), download(tb.dgates)) <= tol);
    }
  }
}

TEST_CASE("the build's execution spaces agree with each other", "[kernels][backends]") {
  // Stated tolerances: 1e-5 (float) and 1e-13 (double), relative to max(|x|, 1);
  // differences come only from summation order (cuBLAS vs KokkosBlas, thread
  // layout of reductions).
  check_spaces_agree<float>(1e-5);
  check_spaces_agree<double>(1e-13);
}

TEMPLATE_TEST_CASE("discoverability forms match the reference", "[kernels][disc]", RA_TEST_SPACES) {
  using Exec = TestType;
  for (const Shape s : {Shape{2, 3, 7, 16}, Shape{1, 2, 100, 64}}) {
    std::mt19937_64 rng(fresh_seed());
    std::normal_distribution<double> n01;
    auto randn = [&](std::size_t n, double sd) {
      std::vector<double> x(n);
      for (auto& e : x) e = sd * n01(rng);
      return x;
    };
    const auto k = randn(s.qkv_elems(), 1), dk0 = randn(s.qkv_elems(), 1), dd = randn(s.row_elems(), 1);
    const auto table = randn(std::size_t(s.H) * s.T, 1), u = randn(std::size_t(s.H) * s.D, 0.3);
    std::vector<double> d_tab, dtable, d_con, du, dk = dk0;
    ref::disc_table_forward(s, table, d_tab);
    ref::disc_table_backward(s, dd, dtable);
    ref::disc_content_forward(s, k, u, d_con);
    ref::disc_content_backward(s, k, u, dd, dk, du);

    auto check = [&](auto tag) {
      using Scalar = decltype(tag);
      INFO(Exec::name() << " " << precision_name<Scalar>() << " " << s.str());
      Exec exec;
      kk::Matrix<Scalar, Exec> tab_v("table", s.H, s.T), dtab_v("dtable", s.H, s.T);
      kk::Matrix<Scalar, Exec> u_v("u", s.H, s.D), du_v("du", s.H, s.D);
      Tensor3<Scalar, Exec> d_v("d", s.B, s.H, s.T), dd_v("dd", s.B, s.H, s.T);
      Tensor4<Scalar, Exec> k_v("k", s.B, s.H, s.T, s.D), dk_v("dk", s.B, s.H, s.T, s.D);
      upload(table, tab_v), upload(u, u_v), upload(dd, dd_v), upload(k, k_v), upload(dk0, dk_v);
      const double tol = tolerance<Scalar>();
      kk::disc_table_forward(exec, tab_v, d_v);
      CHECK(max_rel_error(download(d_v), d_tab) <= tol);
      kk::disc_table_backward(exec, dd_v, dtab_v);
      CHECK(max_rel_error(download(dtab_v), dtable) <= tol);
      kk::disc_content_forward(exec, k_v, u_v, d_v);
      CHECK(max_rel_error(download(d_v), d_con) <= tol);
      kk::disc_content_backward(exec, k_v, u_v, d_v, dd_v, dk_v, du_v);
      CHECK(max_rel_error(download(dk_v), dk) <= tol);
      CHECK(max_rel_error(download(du_v), du) <= tol);
      kk::Matrix<Scalar, Exec> bad("u", s.H, s.D + 1);
      REQUIRE_THROWS_WITH(kk::disc_content_forward(exec, k_v, bad, d_v), Catch::Contains("u extent 1"));
    };
    check(float{});
    check(double{});
  }
}

