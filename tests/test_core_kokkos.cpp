// The Kokkos-facing core services: the counter-based RNG is the same on every
// execution space and thread count, the device timer measures what it wraps.
#include <ra/checks.hpp>
#include <ra/rng.hpp>
#include <ra/tensor.hpp>
#include <ra/timer.hpp>
#include <ra/kokkos/kernel_traits.hpp>
#include <ra/kokkos/tuned_traits.hpp>

#include "kokkos_testing.hpp"

#include <catch2/catch.hpp>

#include <chrono>
#include <sstream>
#include <cmath>
#include <thread>

using namespace ra;

TEST_CASE("fill_normal draws the same numbers on every execution space", "[core][rng]") {
  const Shape s{2, 3, 17, 5};
  Tensor4<double, Kokkos::Serial> a("a", s.B, s.H, s.T, s.D);
  Tensor4<double, Kokkos::DefaultExecutionSpace> b("b", s.B, s.H, s.T, s.D);
  fill_normal(Kokkos::Serial(), a, 77);
  fill_normal(Kokkos::DefaultExecutionSpace(), b, 77);
  const auto x = testing::download(a), y = testing::download(b);
  // Element i depends only on (seed, i): bit-identical across host spaces and
  // thread counts; a GPU's log/cos may differ from the host's in the last bit.
  if (std::is_same_v<Kokkos::DefaultExecutionSpace::memory_space, Kokkos::HostSpace>)
    CHECK(x == y);
  else
    CHECK(testing::max_rel_error(y, x) <= 1e-14);

  // Standard normal to within sampling error, and a new seed gives new numbers.
  double mean = 0, var = 0;
  for (double v : x) mean += v;
  mean /= x.size();
  for (double v : x) var += (v - mean) * (v - mean);
  var /= x.size();
  CHECK(std::abs(mean) < 0.15);
  CHECK(std::abs(var - 1.0) < 0.2);
  fill_normal(Kokkos::Serial(), a, 78);
  CHECK(testing::download(a) != x);
}

TEST_CASE("DeviceTimer covers the work it wraps", "[core][timer]") {
  Kokkos::DefaultHostExecutionSpace host;
  DeviceTimer<Kokkos::DefaultHostExecutionSpace> timer(host);
  const double ms = timer.time_ms([] { std::this_thread::sleep_for(std::chrono::milliseconds(20)); });
  CHECK(ms >= 19.0);
  CHECK(ms < 2000.0);

  // On the default space (CUDA events on a GPU build) a real kernel takes > 0.
  using Exec = Kokkos::DefaultExecutionSpace;
  Exec exec;
  DeviceTimer<Exec> dev_timer(exec);
  Kokkos::View<double*, Exec::memory_space> v("v", 1 << 20);
  const double kernel_ms = dev_timer.time_ms([&] { fill_normal(exec, v, 1); });
  CHECK(kernel_ms > 0.0);
}

TEST_CASE("count_nonfinite finds NaN and Inf", "[core][checks]") {
  using Exec = Kokkos::DefaultExecutionSpace;
  Kokkos::View<float*, Exec::memory_space> v("v", 1000);
  fill_normal(Exec(), v, 3);
  CHECK(count_nonfinite(Exec(), v) == 0);
  auto h = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), v);
  h(7) = std::numeric_limits<float>::quiet_NaN();
  h(999) = std::numeric_limits<float>::infinity();
  Kokkos::deep_copy(v, h);
  CHECK(count_nonfinite(Exec(), v) == 2);
}

TEST_CASE("Tuned-traits files: entries per architecture, and every malformed line named", "[core][tuned]") {
  using ra::kk::TunedTraits;
  std::istringstream good(
      "# ra-kokkos tuned traits v1\n"
      "# arch kind pass candidate\n"
      "sm_90  sdpa fwd 2   # H100 sweep\n"
      "\n"
      "sm_90  ra   bwd 3\n"
      "sm_86  ra   fwd 0\n");
  const TunedTraits t = TunedTraits::parse(good, "good.txt");
  CHECK_FALSE(t.empty());
  CHECK(t.source() == "good.txt");
  CHECK(t.candidate("sm_90", false, false) == 2);
  CHECK(t.candidate("sm_90", true, true) == 3);
  CHECK(t.candidate("sm_86", true, false) == 0);
  CHECK(t.candidate("sm_90", true, false) == -1);  // no entry: the built-in table
  CHECK(t.candidate("sm_80", false, false) == -1);  // other GPUs: ignored

  auto error_of = [](const std::string& text) {
    std::istringstream in(text);
    try {
      TunedTraits::parse(in, "bad.txt");
    } catch (const std::invalid_argument& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  using Catch::Contains;
  CHECK_THAT(error_of("sm_90 sdpa fwd\n"), Contains("bad.txt, line 1: needs four fields"));
  CHECK_THAT(error_of("\nsm90 sdpa fwd 1\n"), Contains("line 2: architecture 'sm90'"));
  CHECK_THAT(error_of("sm_90 mha fwd 1\n"), Contains("kind 'mha' is neither sdpa nor ra"));
  CHECK_THAT(error_of("sm_90 ra back 1\n"), Contains("pass 'back' is neither fwd nor bwd"));
  CHECK_THAT(error_of("sm_90 ra bwd " + std::to_string(ra::kk::kBackwardCandidates) + "\n"),
             Contains("is not compiled (bwd has 0.." + std::to_string(ra::kk::kBackwardCandidates - 1) + ")"));
  CHECK_THAT(error_of("sm_90 ra fwd 1 2\n"), Contains("unexpected '2'"));
  CHECK_THAT(error_of("sm_90 ra fwd 1\nsm_90 ra fwd 2\n"), Contains("line 2: a second entry for sm_90 ra fwd"));
  CHECK_THROWS_WITH(TunedTraits::load("/nonexistent/traits.txt"),
                    Contains("cannot open '/nonexistent/traits.txt' (RA_TUNED_TRAITS)"));
}
