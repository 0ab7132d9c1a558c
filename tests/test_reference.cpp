// Tests for the float64 reference (backends/reference). This reference is the
// ground truth for every other kernel, so it is itself checked against things
// that do not depend on it: finite differences for every gradient element, a
// direct evaluation of the RA.md formulas, and structural properties
// (causality, T = 1, gate reductions).
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "ra/reference.hpp"

namespace {

using ra::ref::RaOptions;
using ra::ref::Shape;
using Vec = std::vector<double>;

Vec randn(std::mt19937_64& rng, std::size_t n, double mean = 0.0, double sd = 1.0) {
  std::normal_distribution<double> dist(mean, sd);
  Vec x(n);
  for (auto& e : x) e = dist(rng);
  return x;
}

struct Inputs {
  Shape s;
  RaOptions opt;
  Vec q, k, v, gates, d, dout;
};

// Gates scatter around the seeds' initialisation (0.5, 0.3, 0.2) so every
// gate is non-zero and distinct per head (and per batch when Gb == B).
Inputs make_inputs(std::uint64_t seed, Shape s, int gate_batch = 1, int window = -1) {
  std::mt19937_64 rng(seed);
  Inputs in;
  in.s = s;
  in.opt.gate_batch = gate_batch;
  in.opt.window = window;
  in.q = randn(rng, s.qkv_elems());
  in.k = randn(rng, s.qkv_elems());
  in.v = randn(rng, s.qkv_elems());
  in.d = randn(rng, s.row_elems());
  in.dout = randn(rng, s.qkv_elems());
  const double base[3] = {0.5, 0.3, 0.2};
  in.gates.resize(std::size_t(gate_batch) * s.H * 3);
  std::normal_distribution<double> noise(0.0, 0.3);
  for (std::size_t i = 0; i < in.gates.size(); ++i) in.gates[i] = base[i % 3] + noise(rng);
  return in;
}

Vec sdpa_out(const Inputs& in) {
  Vec o, lse;
  ra::ref::sdpa_forward(in.s, in.q, in.k, in.v, o, lse);
  return o;
}

Vec ra_out(const Inputs& in) {
  Vec o, lse;
  ra::ref::ra_forward(in.s, in.opt, in.q, in.k, in.v, in.gates, in.d, o, lse);
  return o;
}

// Central differences of loss = sum(dout * o) on every element of x, against
// the analytic gradient. The loss is linear in o, so (loss+ - loss-) is formed
// as sum(dout * (o+ - o-)): outputs the perturbation cannot reach cancel
// exactly instead of leaving ~eps * |loss| / h of rounding noise (~1e-8,
// which would swamp small gradients). What remains is truncation ~h^2 and
// rounding inside the touched outputs, both far below the tolerance; the
// absolute floor covers gradients that are exactly 0 (e.g. dq, dk at T = 1).
void check_gradient(const std::string& name, Vec& x, const Vec& analytic, const Vec& dout,
                    const std::function<Vec()>& forward) {
  REQUIRE(analytic.size() == x.size());
  constexpr double h = 1e-6, rtol = 1e-6, atol = 5e-9;
  for (std::size_t e = 0; e < x.size(); ++e) {
    const double saved = x[e];
    x[e] = saved + h;
    const Vec op = forward();
    x[e] = saved - h;
    const Vec om = forward();
    x[e] = saved;
    double diff = 0.0;
    for (std::size_t i = 0; i < dout.size(); ++i) diff += dout[i] * (op[i] - om[i]);
    const double fd = diff / (2 * h);
    const double an = analytic[e];
    INFO(name << "[" << e << "]: analytic " << an << ", finite difference " << fd);
    CHECK(std::abs(fd - an) <= rtol * std::max(std::abs(an), std::abs(fd)) + atol);
  }
}

// Logit of RA.md written out literally, independent of the reference code.
double ra_logit(const Inputs& in, int b, int h, int i, int j) {
  const Shape& s = in.s;
  const std::size_t base = (std::size_t(b) * s.H + h) * s.T;
  auto S = [&](int r, int c) {
    double acc = 0.0;
    for (int x = 0; x < s.D; ++x) acc += in.q[(base + r) * s.D + x] * in.k[(base + c) * s.D + x];
    return acc / std::sqrt(double(s.D));
  };
  const std::size_t g = (std::size_t(in.opt.gate_batch == 1 ? 0 : b) * s.H + h) * 3;
  const bool rec = in.opt.window < 0 || i - j <= in.opt.window;
  return in.gates[g] * S(i, j) + (rec ? in.gates[g + 1] * S(j, i) : 0.0) +
         in.gates[g + 2] * in.d[base + j];
}

}  // namespace

TEST_CASE("sdpa_backward matches finite differences on every element", "[reference][grad]") {
  const int T = GENERATE(1, 5, 7);
  const int D = GENERATE(3, 4, 8);
  // H != B so a swapped (b, h) index cannot hide behind a symmetric shape.
  Inputs in = make_inputs(1000 + 10 * T + D, Shape{2, 3, T, D});
  INFO("T = " << T << ", D = " << D);

  Vec dq, dk, dv;
  ra::ref::sdpa_backward(in.s, in.q, in.k, in.v, in.dout, dq, dk, dv);
  auto forward = [&] { return sdpa_out(in); };
  check_gradient("dq", in.q, dq, in.dout, forward);
  check_gradient("dk", in.k, dk, in.dout, forward);
  check_gradient("dv", in.v, dv, in.dout, forward);
}

TEST_CASE("ra_backward matches finite differences on every element", "[reference][grad]") {
  const int T = GENERATE(1, 5, 7);
  const int D = GENERATE(3, 4, 8);
  const int gate_batch = GENERATE(1, 2);
  // 0: reciprocity on the diagonal only; 2: a band; -1: everywhere.
  const int window = GENERATE(-1, 0, 2);
  Inputs in = make_inputs(2000 + 1000 * gate_batch + 100 * (window + 1) + 10 * T + D,
                          Shape{2, 3, T, D}, gate_batch, window);
  INFO("T = " << T << ", D = " << D << ", Gb = " << gate_batch << ", window = " << window);

  Vec dq, dk, dv, dd, dgates;
  ra::ref::ra_backward(in.s, in.opt, in.q, in.k, in.v, in.gates, in.d, in.dout, dq, dk, dv, dd,
                       dgates);
  REQUIRE(dd.size() == in.s.row_elems());
  REQUIRE(dgates.size() == in.gates.size());
  auto forward = [&] { return ra_out(in); };
  check_gradient("dq", in.q, dq, in.dout, forward);
  check_gradient("dk", in.k, dk, in.dout, forward);
  check_gradient("dv", in.v, dv, in.dout, forward);
  check_gradient("dd", in.d, dd, in.dout, forward);
  check_gradient("dgates", in.gates, dgates, in.dout, forward);
}

TEST_CASE("ra_forward matches a direct evaluation of the RA.md formula", "[reference][forward]") {
  const int gate_batch = GENERATE(1, 2);
  const int window = GENERATE(-1, 0, 1, 3);
  Inputs in = make_inputs(3000 + 10 * gate_batch + window, Shape{2, 3, 6, 5}, gate_batch, window);
  const Shape& s = in.s;
  Vec o, lse;
  ra::ref::ra_forward(s, in.opt, in.q, in.k, in.v, in.gates, in.d, o, lse);
  REQUIRE(o.size() == s.qkv_elems());
  REQUIRE(lse.size() == s.row_elems());

  for (int b = 0; b < s.B; ++b)
    for (int h = 0; h < s.H; ++h)
      for (int i = 0; i < s.T; ++i) {
        const std::size_t row = (std::size_t(b) * s.H + h) * s.T;
        // Inputs are O(1), so the unshifted exp is safe here.
        double z = 0.0;
        for (int j = 0; j <= i; ++j) z += std::exp(ra_logit(in, b, h, i, j));
        CHECK(lse[row + i] == Approx(std::log(z)).epsilon(1e-12).margin(1e-12));
        for (int c = 0; c < s.D; ++c) {
          double acc = 0.0;
          for (int j = 0; j <= i; ++j)
            acc += std::exp(ra_logit(in, b, h, i, j)) / z * in.v[(row + j) * s.D + c];
          CHECK(o[(row + i) * s.D + c] == Approx(acc).epsilon(1e-12).margin(1e-12));
        }
      }
}

TEST_CASE("ra_forward agrees with the folded formulation of RA.md", "[reference][forward]") {
  // Qf_i = [w_std Q_i, w_rec K_i], Kf_j = [K_j, Q_j]: RA is SDPA on 2D-wide
  // Q/K (with the scale of D, not 2D) plus a column bias. Kernels rely on it.
  Inputs in = make_inputs(3500, Shape{2, 3, 7, 4}, 2, -1);
  const Shape& s = in.s;
  Vec o, lse;
  ra::ref::ra_forward(s, in.opt, in.q, in.k, in.v, in.gates, in.d, o, lse);
  const double scale = 1.0 / std::sqrt(double(s.D));
  for (int b = 0; b < s.B; ++b)
    for (int h = 0; h < s.H; ++h) {
      const std::size_t row = (std::size_t(b) * s.H + h) * s.T;
      const std::size_t g = (std::size_t(b) * s.H + h) * 3;
      for (int i = 0; i < s.T; ++i) {
        double z = 0.0;
        for (int j = 0; j <= i; ++j) {
          double f = 0.0;
          for (int x = 0; x < s.D; ++x) {
            f += in.gates[g] * in.q[(row + i) * s.D + x] * in.k[(row + j) * s.D + x];
            f += in.gates[g + 1] * in.k[(row + i) * s.D + x] * in.q[(row + j) * s.D + x];
          }
          z += std::exp(scale * f + in.gates[g + 2] * in.d[row + j]);
        }
        CHECK(lse[row + i] == Approx(std::log(z)).epsilon(1e-12).margin(1e-12));
      }
    }
}

TEST_CASE("RA with gates (1, 0, 0) equals SDPA", "[reference][forward]") {
  const int gate_batch = GENERATE(1, 2);
  const int window = GENERATE(-1, 2);
  Inputs in = make_inputs(4000 + gate_batch * 10 + window, Shape{2, 3, 7, 8}, gate_batch, window);
  for (std::size_t g = 0; g < in.gates.size(); g += 3) {
    in.gates[g] = 1.0;
    in.gates[g + 1] = 0.0;
    in.gates[g + 2] = 0.0;
  }
  Vec o_sdpa, lse_sdpa, o_ra, lse_ra;
  ra::ref::sdpa_forward(in.s, in.q, in.k, in.v, o_sdpa, lse_sdpa);
  ra::ref::ra_forward(in.s, in.opt, in.q, in.k, in.v, in.gates, in.d, o_ra, lse_ra);
  REQUIRE(o_ra.size() == o_sdpa.size());
  REQUIRE(lse_ra.size() == lse_sdpa.size());
  for (std::size_t i = 0; i < o_ra.size(); ++i) CHECK(std::abs(o_ra[i] - o_sdpa[i]) <= 1e-12);
  for (std::size_t i = 0; i < lse_ra.size(); ++i)
    CHECK(std::abs(lse_ra[i] - lse_sdpa[i]) <= 1e-12);

  // The q/k/v gradients must agree too; RA's extra outputs reduce to what the
  // loss actually sees (dd is 0 since w_disc = 0).
  Vec dq, dk, dv, dq_ra, dk_ra, dv_ra, dd, dgates;
  ra::ref::sdpa_backward(in.s, in.q, in.k, in.v, in.dout, dq, dk, dv);
  ra::ref::ra_backward(in.s, in.opt, in.q, in.k, in.v, in.gates, in.d, in.dout, dq_ra, dk_ra,
                       dv_ra, dd, dgates);
  for (std::size_t i = 0; i < dq.size(); ++i) {
    CHECK(std::abs(dq_ra[i] - dq[i]) <= 1e-12);
    CHECK(std::abs(dk_ra[i] - dk[i]) <= 1e-12);
    CHECK(std::abs(dv_ra[i] - dv[i]) <= 1e-12);
  }
  for (double x : dd) CHECK(x == 0.0);
}

TEST_CASE("causality: inputs at position t never reach rows before t", "[reference][causal]") {
  // RA row i reads S_ji = Q_j.K_i with j <= i, so it too only touches
  // positions <= i: perturbing q, k, v (and d) at t must leave rows < t
  // bit-identical, while row t itself must move.
  const Shape s{2, 3, 6, 4};
  const int window = GENERATE(-1, 1);
  Inputs base = make_inputs(5000 + window, s, 2, window);
  Vec o0_sdpa, lse0_sdpa, o0_ra, lse0_ra;
  ra::ref::sdpa_forward(s, base.q, base.k, base.v, o0_sdpa, lse0_sdpa);
  ra::ref::ra_forward(s, base.opt, base.q, base.k, base.v, base.gates, base.d, o0_ra, lse0_ra);

  std::mt19937_64 rng(5100 + window);
  std::normal_distribution<double> noise(0.0, 1.0);
  for (int t = 0; t < s.T; ++t) {
    INFO("perturbed position t = " << t);
    Inputs in = base;
    for (std::size_t bh = 0; bh < std::size_t(s.B) * s.H; ++bh) {
      for (int x = 0; x < s.D; ++x) {
        const std::size_t e = (bh * s.T + t) * s.D + x;
        in.q[e] += noise(rng);
        in.k[e] += noise(rng);
        in.v[e] += noise(rng);
      }
      in.d[bh * s.T + t] += noise(rng);
    }
    Vec o_sdpa, lse_sdpa, o_ra, lse_ra;
    ra::ref::sdpa_forward(s, in.q, in.k, in.v, o_sdpa, lse_sdpa);
    ra::ref::ra_forward(s, in.opt, in.q, in.k, in.v, in.gates, in.d, o_ra, lse_ra);

    bool row_t_moved_sdpa = false, row_t_moved_ra = false;
    for (std::size_t bh = 0; bh < std::size_t(s.B) * s.H; ++bh)
      for (int i = 0; i <= t; ++i) {
        const std::size_t r = bh * s.T + i;
        for (int x = 0; x < s.D; ++x) {
          const std::size_t e = r * s.D + x;
          if (i < t) {
            CHECK(o_sdpa[e] == o0_sdpa[e]);
            CHECK(o_ra[e] == o0_ra[e]);
          } else {
            row_t_moved_sdpa |= o_sdpa[e] != o0_sdpa[e];
            row_t_moved_ra |= o_ra[e] != o0_ra[e];
          }
        }
        if (i < t) {
          CHECK(lse_sdpa[r] == lse0_sdpa[r]);
          CHECK(lse_ra[r] == lse0_ra[r]);
        }
      }
    CHECK(row_t_moved_sdpa);
    CHECK(row_t_moved_ra);
  }
}

TEST_CASE("T = 1: the output is v", "[reference][forward]") {
  const Shape s{3, 2, 1, 5};
  Inputs in = make_inputs(6000, s, 3, -1);
  Vec o, lse;
  ra::ref::sdpa_forward(s, in.q, in.k, in.v, o, lse);
  REQUIRE(o.size() == in.v.size());
  for (std::size_t i = 0; i < o.size(); ++i) CHECK(o[i] == Approx(in.v[i]).epsilon(1e-15));
  // A single logit is its own log-sum-exp.
  for (std::size_t r = 0; r < s.row_elems(); ++r) {
    double qk = 0.0;
    for (int x = 0; x < s.D; ++x) qk += in.q[r * s.D + x] * in.k[r * s.D + x];
    CHECK(lse[r] == Approx(qk / std::sqrt(double(s.D))).epsilon(1e-14));
  }

  ra::ref::ra_forward(s, in.opt, in.q, in.k, in.v, in.gates, in.d, o, lse);
  REQUIRE(o.size() == in.v.size());
  for (std::size_t i = 0; i < o.size(); ++i) CHECK(o[i] == Approx(in.v[i]).epsilon(1e-15));
  for (int b = 0; b < s.B; ++b)
    for (int h = 0; h < s.H; ++h)
      CHECK(lse[std::size_t(b) * s.H + h] == Approx(ra_logit(in, b, h, 0, 0)).epsilon(1e-14));
}

TEST_CASE("shared gates (Gb = 1) get the batch sum of per-batch gate gradients",
          "[reference][grad]") {
  const Shape s{3, 2, 5, 4};
  Inputs shared = make_inputs(7000, s, 1, 2);
  Inputs per_batch = shared;
  per_batch.opt.gate_batch = s.B;
  per_batch.gates.clear();
  for (int b = 0; b < s.B; ++b)
    per_batch.gates.insert(per_batch.gates.end(), shared.gates.begin(), shared.gates.end());

  Vec o1, lse1, o2, lse2;
  ra::ref::ra_forward(s, shared.opt, shared.q, shared.k, shared.v, shared.gates, shared.d, o1,
                      lse1);
  ra::ref::ra_forward(s, per_batch.opt, per_batch.q, per_batch.k, per_batch.v, per_batch.gates,
                      per_batch.d, o2, lse2);
  CHECK(o1 == o2);
  CHECK(lse1 == lse2);

  Vec dq, dk, dv, dd, g1, g2;
  ra::ref::ra_backward(s, shared.opt, shared.q, shared.k, shared.v, shared.gates, shared.d,
                       shared.dout, dq, dk, dv, dd, g1);
  ra::ref::ra_backward(s, per_batch.opt, per_batch.q, per_batch.k, per_batch.v, per_batch.gates,
                       per_batch.d, per_batch.dout, dq, dk, dv, dd, g2);
  REQUIRE(g1.size() == std::size_t(s.H) * 3);
  REQUIRE(g2.size() == std::size_t(s.B) * s.H * 3);
  for (std::size_t e = 0; e < g1.size(); ++e) {
    double sum = 0.0;
    for (int b = 0; b < s.B; ++b) sum += g2[b * g1.size() + e];
    CHECK(g1[e] == Approx(sum).epsilon(1e-13).margin(1e-14));
  }
}

TEST_CASE("a window covering the whole sequence equals no window", "[reference][forward]") {
  const Shape s{2, 3, 6, 4};
  Inputs none = make_inputs(8000, s, 2, -1);
  Inputs wide = none;
  wide.opt.window = s.T - 1;
  Vec o1, lse1, o2, lse2;
  ra::ref::ra_forward(s, none.opt, none.q, none.k, none.v, none.gates, none.d, o1, lse1);
  ra::ref::ra_forward(s, wide.opt, wide.q, wide.k, wide.v, wide.gates, wide.d, o2, lse2);
  CHECK(o1 == o2);
  CHECK(lse1 == lse2);

  // And one step narrower must differ (the corner (T-1, 0) loses its term).
  wide.opt.window = s.T - 2;
  ra::ref::ra_forward(s, wide.opt, wide.q, wide.k, wide.v, wide.gates, wide.d, o2, lse2);
  CHECK(o1 != o2);
}

TEST_CASE("large logits stay finite (row-max shifted softmax)", "[reference][forward]") {
  const Shape s{1, 2, 7, 4};
  Inputs in = make_inputs(9000, s, 1, -1);
  for (auto& x : in.q) x *= 1e3;  // logits of order 1e3: exp would overflow unshifted
  Vec o, lse;
  ra::ref::sdpa_forward(s, in.q, in.k, in.v, o, lse);
  for (double x : o) CHECK(std::isfinite(x));
  for (double x : lse) CHECK(std::isfinite(x));
  ra::ref::ra_forward(s, in.opt, in.q, in.k, in.v, in.gates, in.d, o, lse);
  for (double x : o) CHECK(std::isfinite(x));
  for (double x : lse) CHECK(std::isfinite(x));
  Vec dq, dk, dv, dd, dg;
  ra::ref::ra_backward(s, in.opt, in.q, in.k, in.v, in.gates, in.d, in.dout, dq, dk, dv, dd, dg);
  for (const Vec* g : {&dq, &dk, &dv, &dd, &dg})
    for (double x : *g) CHECK(std::isfinite(x));
}

#define REQUIRE_INVALID(expr, needle)              \
  do {                                             \
    REQUIRE_THROWS_AS(expr, std::invalid_argument); \
    REQUIRE_THROWS_WITH(expr, Catch::Contains(needle)); \
  } while (0)

TEST_CASE("bad inputs throw std::invalid_argument naming the argument", "[reference][errors]") {
  const Shape s{8, 2, 7, 16};
  Inputs in = make_inputs(10000, s, 1, -1);
  Vec o, lse, dq, dk, dv, dd, dg;
  Vec short_qkv(100, 1.0), short_row(3, 1.0);

  SECTION("the message states expected vs actual") {
    REQUIRE_THROWS_WITH(
        ra::ref::ra_forward(s, in.opt, short_qkv, in.k, in.v, in.gates, in.d, o, lse),
        "ra_forward: q has 100 elements, expected B*H*T*D = 8*2*7*16 = 1792");
    REQUIRE_THROWS_WITH(
        ra::ref::ra_forward(s, in.opt, in.q, in.k, in.v, in.gates, short_row, o, lse),
        "ra_forward: d has 3 elements, expected B*H*T = 8*2*7 = 112");
  }
  SECTION("wrong vector sizes") {
    REQUIRE_INVALID(ra::ref::sdpa_forward(s, short_qkv, in.k, in.v, o, lse), "q has");
    REQUIRE_INVALID(ra::ref::sdpa_forward(s, in.q, short_qkv, in.v, o, lse), "k has");
    REQUIRE_INVALID(ra::ref::sdpa_forward(s, in.q, in.k, short_qkv, o, lse), "v has");
    REQUIRE_INVALID(ra::ref::sdpa_backward(s, in.q, in.k, in.v, short_qkv, dq, dk, dv),
                    "dout has");
    REQUIRE_INVALID(ra::ref::sdpa_backward(s, short_qkv, in.k, in.v, in.dout, dq, dk, dv),
                    "sdpa_backward: q has");
    REQUIRE_INVALID(ra::ref::ra_forward(s, in.opt, in.q, short_qkv, in.v, in.gates, in.d, o, lse),
                    "k has");
    REQUIRE_INVALID(ra::ref::ra_forward(s, in.opt, in.q, in.k, in.v, short_row, in.d, o, lse),
                    "gates has");
    REQUIRE_INVALID(ra::ref::ra_forward(s, in.opt, in.q, in.k, in.v, in.gates, short_row, o, lse),
                    "d has");
    REQUIRE_INVALID(ra::ref::ra_backward(s, in.opt, in.q, in.k, in.v, in.gates, in.d, short_qkv,
                                         dq, dk, dv, dd, dg),
                    "ra_backward: dout has");
    REQUIRE_INVALID(ra::ref::ra_backward(s, in.opt, in.q, in.k, short_qkv, in.gates, in.d,
                                         in.dout, dq, dk, dv, dd, dg),
                    "v has");
    // Per-batch gates passed with Gb = 1 are the wrong size, not silently used.
    Vec per_batch_gates(std::size_t(s.B) * s.H * 3, 0.5);
    REQUIRE_INVALID(
        ra::ref::ra_forward(s, in.opt, in.q, in.k, in.v, per_batch_gates, in.d, o, lse),
        "gates has");
  }
  SECTION("gate_batch not in {1, B}") {
    for (int gb : {0, -1, 2, s.B + 1}) {
      INFO("gate_batch = " << gb);
      RaOptions opt;
      opt.gate_batch = gb;
      Vec gates(std::size_t(std::max(gb, 1)) * s.H * 3, 0.5);
      REQUIRE_INVALID(ra::ref::ra_forward(s, opt, in.q, in.k, in.v, gates, in.d, o, lse),
                      "gate_batch");
      REQUIRE_INVALID(ra::ref::ra_backward(s, opt, in.q, in.k, in.v, gates, in.d, in.dout, dq,
                                           dk, dv, dd, dg),
                      "gate_batch");
    }
  }
  SECTION("non-positive dimensions") {
    Vec empty;
    Shape t0{2, 2, 0, 4};
    REQUIRE_INVALID(ra::ref::sdpa_forward(t0, empty, empty, empty, o, lse), "T = 0");
    REQUIRE_INVALID(ra::ref::ra_forward(t0, RaOptions{}, empty, empty, empty, Vec(6, 0.5), empty,
                                        o, lse),
                    "T = 0");
    REQUIRE_INVALID(ra::ref::sdpa_backward(t0, empty, empty, empty, empty, dq, dk, dv), "T = 0");
    REQUIRE_INVALID(ra::ref::sdpa_forward(Shape{2, 2, 3, 0}, empty, empty, empty, o, lse),
                    "D = 0");
    REQUIRE_INVALID(ra::ref::sdpa_forward(Shape{-1, 2, 3, 4}, empty, empty, empty, o, lse),
                    "B = -1");
    REQUIRE_INVALID(ra::ref::sdpa_forward(Shape{1, 0, 3, 4}, empty, empty, empty, o, lse),
                    "H = 0");
  }
}

TEST_CASE("outputs are resized and may alias inputs", "[reference][forward]") {
  const Shape s{2, 3, 5, 4};
  Inputs in = make_inputs(11000, s, 2, 2);
  Vec o_ref, lse_ref;
  ra::ref::ra_forward(s, in.opt, in.q, in.k, in.v, in.gates, in.d, o_ref, lse_ref);

  Vec o(1, 42.0), lse(999, 42.0);  // wrong sizes on purpose
  ra::ref::ra_forward(s, in.opt, in.q, in.k, in.v, in.gates, in.d, o, lse);
  CHECK(o == o_ref);
  CHECK(lse == lse_ref);

  // Writing o over v must give the same result as a separate output.
  Vec v = in.v, lse2;
  ra::ref::ra_forward(s, in.opt, in.q, in.k, v, in.gates, in.d, v, lse2);
  CHECK(v == o_ref);
}

// Both discoverability forms feed d into RA; their gradients chain through
// dd. Checked end to end: finite differences of sum(dout * RA(..., d(params)))
// against ra_backward followed by the form's own backward.
TEST_CASE("discoverability forms: table and content gradients match finite differences") {
  for (int gb : {1, 2}) {
    Inputs in = make_inputs(4242 + gb, Shape{2, 3, 6, 4}, gb, -1);
    std::mt19937_64 rng(99 + gb);
    Vec table = randn(rng, std::size_t(in.s.H) * in.s.T);
    Vec u = randn(rng, std::size_t(in.s.H) * in.s.D, 0.0, 0.5);

    // table form: d = broadcast(table)
    auto out_table = [&]() {
      Inputs x = in;
      ra::ref::disc_table_forward(in.s, table, x.d);
      return ra_out(x);
    };
    Vec o, lse, dq, dk, dv, dd, dg, dtable;
    ra::ref::disc_table_forward(in.s, table, in.d);
    ra::ref::ra_backward(in.s, in.opt, in.q, in.k, in.v, in.gates, in.d, in.dout, dq, dk, dv, dd, dg);
    ra::ref::disc_table_backward(in.s, dd, dtable);
    check_gradient("dtable", table, dtable, in.dout, out_table);

    // content form: d = sigmoid(K . u); K reaches the output through both paths.
    auto out_content = [&]() {
      Inputs x = in;
      ra::ref::disc_content_forward(in.s, in.k, u, x.d);
      return ra_out(x);
    };
    ra::ref::disc_content_forward(in.s, in.k, u, in.d);
    ra::ref::ra_backward(in.s, in.opt, in.q, in.k, in.v, in.gates, in.d, in.dout, dq, dk, dv, dd, dg);
    Vec du;
    ra::ref::disc_content_backward(in.s, in.k, u, dd, dk, du);
    check_gradient("du", u, du, in.dout, out_content);
    check_gradient("dk (attention + content path)", in.k, dk, in.dout, out_content);
  }
}

TEST_CASE("discoverability forms reject wrong sizes, naming the argument") {
  using Catch::Contains;
  const Shape s{2, 3, 5, 4};
  Vec d, k(s.qkv_elems(), 0.1), u(std::size_t(s.H) * s.D, 0.2), dd(s.row_elems(), 1.0), du;
  REQUIRE_THROWS_WITH(ra::ref::disc_table_forward(s, Vec(7), d), Contains("table has 7"));
  REQUIRE_THROWS_WITH(ra::ref::disc_content_forward(s, k, Vec(3), d), Contains("u has 3"));
  Vec short_dk(5);
  REQUIRE_THROWS_WITH(ra::ref::disc_content_backward(s, k, u, dd, short_dk, du), Contains("dk has 5"));
}
