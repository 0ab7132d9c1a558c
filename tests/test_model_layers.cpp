// The GPT-2 layers (ra::model::Layers) against the float64 reference loops
// (model/reference), in float and double, every output poisoned with NaN
// first and every accumulated gradient starting from random values; and the
// reference layers' gradients against finite differences.
#include "model_testing.hpp"

#include <ra/model/layers.hpp>
#include <ra/model/reference.hpp>

#include <catch2/catch.hpp>

#include <cmath>
#include <functional>
#include <limits>

using namespace ra;
using namespace ra::testing;
namespace mref = ra::model::ref;

namespace {

std::vector<double> plus(std::vector<double> a, const std::vector<double>& b) {
  for (std::size_t i = 0; i < a.size(); ++i) a[i] += b[i];
  return a;
}

// Central differences of f at every element of x against the analytic grad.
double fd_error(const std::function<double()>& f, std::vector<double>& x,
                const std::vector<double>& grad, double h = 1e-6) {
  double err = 0, scale = 1e-3;
  for (std::size_t i = 0; i < x.size(); ++i) {
    const double keep = x[i];
    x[i] = keep + h;
    const double up = f();
    x[i] = keep - h;
    const double down = f();
    x[i] = keep;
    err = std::max(err, std::abs((up - down) / (2 * h) - grad[i]));
    scale = std::max(scale, std::abs(grad[i]));
  }
  return err / scale;
}

// x as Scalar would hold it: what a copy-only kernel must reproduce exactly.
template <class Scalar>
std::vector<double> rounded(std::vector<double> x) {
  for (auto& e : x) e = double(Scalar(e));
  return x;
}

double dot(const std::vector<double>& a, const std::vector<double>& b) {
  double s = 0;
  for (std::size_t i = 0; i < a.size(); ++i) s += a[i] * b[i];
  return s;
}

}  // namespace

TEMPLATE_TEST_CASE("model layers: token and position embedding", "[model][layers]", float, double) {
  using Ops = model::Layers<TestType, Exec>;
  const int B = 3, T = 7, N = B * T, C = 8, V = 10, Vp = 16;
  const auto tokens = random_tokens(N, V / 2, 11);  // half the ids: many repeats
  const auto wte = randn(std::size_t(Vp) * C, 1), wpe = randn(std::size_t(T) * C, 2);
  const auto dout = randn(std::size_t(N) * C, 3);
  const auto dwte0 = randn(wte.size(), 4), dwpe0 = randn(wpe.size(), 5);
  std::vector<double> out, dwte = dwte0, dwpe = dwpe0;
  mref::encoder_forward(N, T, C, tokens, wte, wpe, out);
  mref::encoder_backward(N, T, C, tokens, dout, dwte, dwpe);

  auto tok = make_ivec<typename Ops::IVec>(tokens);
  auto Wte = make_view<typename Ops::Mat>(wte, Vp, C), Wpe = make_view<typename Ops::Mat>(wpe, T, C);
  typename Ops::Mat Out("out", N, C);
  fill_nan(Out);
  Ops::encoder_forward(Exec(), tok, Wte, Wpe, Out, T);
  const auto buckets = model::token_buckets(tokens.data(), N);
  auto Dwte = make_view<typename Ops::Mat>(dwte0, Vp, C), Dwpe = make_view<typename Ops::Mat>(dwpe0, T, C);
  Ops::encoder_backward(Exec(), make_view<typename Ops::Mat>(dout, N, C),
                        make_ivec<typename Ops::IVec>(buckets.token),
                        make_ivec<typename Ops::IVec>(buckets.start),
                        make_ivec<typename Ops::IVec>(buckets.rows), int(buckets.token.size()), Dwte,
                        Dwpe, T);
  const double tol = model_tolerance<TestType>();
  CHECK(max_rel_error(download(Out), out) <= tol);
  CHECK(max_rel_error(download(Dwte), dwte) <= tol);
  CHECK(max_rel_error(download(Dwpe), dwpe) <= tol);
  CHECK(buckets.token.size() <= std::size_t(V / 2));
}

TEMPLATE_TEST_CASE("model layers: LayerNorm forward and backward", "[model][layers]", float, double) {
  using Ops = model::Layers<TestType, Exec>;
  using Mat = typename Ops::Mat;
  using Vec = typename Ops::Vec;
  const int N = 150, C = 48;  // N spans three 64-row chunks of the column sums
  const auto x = randn(std::size_t(N) * C, 1, 2.0, 0.5), w = randn(C, 2, 0.5, 1.0);
  const auto b = randn(C, 3, 0.5), dout = randn(std::size_t(N) * C, 4);
  const auto dx0 = randn(x.size(), 5), dw0 = randn(C, 6), db0 = randn(C, 7);
  std::vector<double> out, mean, rstd, dx = dx0, dw = dw0, db = db0;
  mref::layernorm_forward(N, C, x, w, b, out, mean, rstd);
  mref::layernorm_backward(N, C, dout, x, w, mean, rstd, dx, dw, db);

  auto X = make_view<Mat>(x, N, C);
  auto W = make_view<Vec>(w, C), Bv = make_view<Vec>(b, C);
  Mat Out("out", N, C);
  Vec Mean("mean", N), Rstd("rstd", N), work("work", Ops::column_sum_work(N, C, 2));
  fill_nan(Out), fill_nan(Mean), fill_nan(Rstd), fill_nan(work);
  Ops::layernorm_forward(Exec(), X, W, Bv, Out, Mean, Rstd);
  auto Dx = make_view<Mat>(dx0, N, C);
  auto Dw = make_view<Vec>(dw0, C), Db = make_view<Vec>(db0, C);
  Ops::layernorm_backward(Exec(), make_view<Mat>(dout, N, C), X, W, Mean, Rstd, Dx, Dw, Db, work);
  const double tol = model_tolerance<TestType>();
  CHECK(max_rel_error(download(Out), out) <= tol);
  CHECK(max_rel_error(download(Mean), mean) <= tol);
  CHECK(max_rel_error(download(Rstd), rstd) <= tol);
  CHECK(max_rel_error(download(Dx), dx) <= tol);
  CHECK(max_rel_error(download(Dw), dw) <= tol);
  CHECK(max_rel_error(download(Db), db) <= tol);
}

TEMPLATE_TEST_CASE("model layers: linear (GEMM) with bias and fused residual", "[model][layers]",
                   float, double) {
  using Ops = model::Layers<TestType, Exec>;
  using Mat = typename Ops::Mat;
  using Vec = typename Ops::Vec;
  const int N = 70, K = 24, M = 40;
  const auto x = randn(std::size_t(N) * K, 1), w = randn(std::size_t(M) * K, 2, 0.3);
  const auto b = randn(M, 3), res = randn(std::size_t(N) * M, 4), dy = randn(std::size_t(N) * M, 5);
  const auto dw0 = randn(w.size(), 6), db0 = randn(M, 7), dx_acc0 = randn(x.size(), 8);
  std::vector<double> y, dx(x.size(), 0.0), dw = dw0, db = db0;
  mref::linear_forward(N, K, M, x, w, b, y);
  mref::linear_backward(N, K, M, dy, x, w, dx, dw, &db);
  const double tol = model_tolerance<TestType>();

  auto X = make_view<Mat>(x, N, K), W = make_view<Mat>(w, M, K), R = make_view<Mat>(res, N, M);
  auto Bv = make_view<Vec>(b, M);
  Mat Y("y", N, M), Y2("y2", N, M);
  fill_nan(Y), fill_nan(Y2);
  Ops::linear_forward(Exec(), X, W, Bv, Y, Mat());
  Ops::linear_forward(Exec(), X, W, Bv, Y2, R);
  CHECK(max_rel_error(download(Y), y) <= tol);
  CHECK(max_rel_error(download(Y2), plus(y, res)) <= tol);
  std::vector<double> y_nobias;
  mref::linear_forward(N, K, M, x, w, {}, y_nobias);
  fill_nan(Y);
  Ops::linear_forward(Exec(), X, W, Vec(), Y, Mat());
  CHECK(max_rel_error(download(Y), y_nobias) <= tol);

  Mat Dx("dx", N, K);
  fill_nan(Dx);  // overwritten (GEMM with beta = 0 must not read it)
  auto Dw = make_view<Mat>(dw0, M, K);
  auto Db = make_view<Vec>(db0, M);
  Vec work("work", Ops::column_sum_work(N, M, 1));
  fill_nan(work);
  auto Dy = make_view<Mat>(dy, N, M);
  Ops::linear_backward(Exec(), Dy, X, W, Dx, false, Dw, Db, work);
  CHECK(max_rel_error(download(Dx), dx) <= tol);
  CHECK(max_rel_error(download(Dw), dw) <= tol);
  CHECK(max_rel_error(download(Db), db) <= tol);
  auto DxAcc = make_view<Mat>(dx_acc0, N, K);
  Ops::linear_backward(Exec(), Dy, X, W, DxAcc, true, Dw, Vec(), work);
  CHECK(max_rel_error(download(DxAcc), plus(dx_acc0, dx)) <= tol);
}

TEMPLATE_TEST_CASE("model layers: GELU (tanh) forward and backward", "[model][layers]", float, double) {
  using Ops = model::Layers<TestType, Exec>;
  using Mat = typename Ops::Mat;
  const int N = 33, M = 20;
  const auto x = randn(std::size_t(N) * M, 1, 2.0), dy = randn(x.size(), 2);
  std::vector<double> y, dx(x.size(), 0.0);
  mref::gelu_forward(x, y);
  mref::gelu_backward(x, dy, dx);
  auto X = make_view<Mat>(x, N, M);
  Mat Y("y", N, M), Dx("dx", N, M);
  fill_nan(Y), fill_nan(Dx);
  Ops::gelu_forward(Exec(), X, Y);
  Ops::gelu_backward(Exec(), X, make_view<Mat>(dy, N, M), Dx);
  auto InPlace = make_view<Mat>(dy, N, M);
  Ops::gelu_backward(Exec(), X, InPlace, InPlace);
  const double tol = model_tolerance<TestType>();
  CHECK(max_rel_error(download(Y), y) <= tol);
  CHECK(max_rel_error(download(Dx), dx) <= tol);
  CHECK(max_rel_error(download(InPlace), dx) <= tol);
}

TEMPLATE_TEST_CASE("model layers: qkv split into heads, merge, rows <-> heads, folded w_std",
                   "[model][layers]", float, double) {
  using Ops = model::Layers<TestType, Exec>;
  using Mat = typename Ops::Mat;
  using T3 = typename Ops::T3;
  using T4 = typename Ops::T4;
  const int B = 2, H = 3, T = 5, D = 4, C = H * D, N = B * T;
  const auto qkv = randn(std::size_t(N) * 3 * C, 1), gates = randn(std::size_t(H) * 3, 2, 0.2, 0.5);
  auto at4 = [&](int b, int h, int t, int c) { return ((std::size_t(b) * H + h) * T + t) * D + c; };
  std::vector<double> q(std::size_t(N) * C), k(q.size()), v(q.size()), qf(q.size());
  for (int b = 0; b < B; ++b)
    for (int h = 0; h < H; ++h)
      for (int t = 0; t < T; ++t)
        for (int c = 0; c < D; ++c) {
          const std::size_t row = std::size_t(b) * T + t, col = std::size_t(h) * D + c;
          q[at4(b, h, t, c)] = qkv[row * 3 * C + col];
          qf[at4(b, h, t, c)] = qkv[row * 3 * C + col] * gates[3 * h + kStd];
          k[at4(b, h, t, c)] = qkv[row * 3 * C + C + col];
          v[at4(b, h, t, c)] = qkv[row * 3 * C + 2 * C + col];
        }
  auto Qkv = make_view<Mat>(qkv, N, 3 * C);
  auto G = make_view<T3>(gates, 1, H, 3);
  T4 Q("q", B, H, T, D), K("k", B, H, T, D), V("v", B, H, T, D);
  fill_nan(Q), fill_nan(K), fill_nan(V);
  Ops::split_heads(Exec(), Qkv, Q, K, V, T3());
  CHECK(download(Q) == rounded<TestType>(q));
  CHECK(download(K) == rounded<TestType>(k));
  CHECK(download(V) == rounded<TestType>(v));
  Ops::split_heads(Exec(), Qkv, Q, K, V, G);
  CHECK(max_rel_error(download(Q), qf) <= model_tolerance<TestType>());

  // merge is split's transpose: merge(q, k, v) with no fold gives qkv back;
  // with the fold it scales the q third by w_std again.
  Mat Dqkv("dqkv", N, 3 * C);
  fill_nan(Dqkv);
  Ops::merge_heads(Exec(), make_view<T4>(q, B, H, T, D), K, V, Dqkv, T3());
  CHECK(download(Dqkv) == rounded<TestType>(qkv));
  Ops::merge_heads(Exec(), make_view<T4>(q, B, H, T, D), K, V, Dqkv, G);
  auto merged = download(Dqkv);
  for (int row = 0; row < N; ++row)
    for (int col = 0; col < C; ++col)
      CHECK(std::abs(merged[std::size_t(row) * 3 * C + col] -
                     qkv[std::size_t(row) * 3 * C + col] * gates[3 * (col / D) + kStd]) <= 1e-6);

  // o [B,H,T,D] -> rows [N, C] -> back.
  Mat Rows("rows", N, C);
  fill_nan(Rows);
  Ops::heads_to_rows(Exec(), V, Rows);
  const auto rows = download(Rows);
  for (int b = 0; b < B; ++b)
    for (int t = 0; t < T; ++t)
      for (int col = 0; col < C; ++col)
        CHECK(rows[(std::size_t(b) * T + t) * C + col] == download(V)[at4(b, col / D, t, col % D)]);
  T4 Back("back", B, H, T, D);
  fill_nan(Back);
  Ops::rows_to_heads(Exec(), Rows, Back);
  CHECK(download(Back) == rounded<TestType>(v));

  // dw_std of q' = w_std q: sum over (b, t, c) of dq' . q, added to dgates.
  const auto dq = randn(q.size(), 3), dgates0 = randn(gates.size(), 4);
  std::vector<double> dgates = dgates0;
  for (int b = 0; b < B; ++b)
    for (int h = 0; h < H; ++h)
      for (int t = 0; t < T; ++t)
        for (int c = 0; c < D; ++c) dgates[3 * h + kStd] += dq[at4(b, h, t, c)] * q[at4(b, h, t, c)];
  auto Dg = make_view<T3>(dgates0, 1, H, 3);
  Ops::folded_wstd_grad(Exec(), make_view<T4>(dq, B, H, T, D), Qkv, Dg);
  CHECK(max_rel_error(download(Dg), dgates) <= model_tolerance<TestType>());
}

TEMPLATE_TEST_CASE("model layers: RA gates under annealing, discoverability table prefix",
                   "[model][layers]", float, double) {
  using Ops = model::Layers<TestType, Exec>;
  using T3 = typename Ops::T3;
  using Mat = typename Ops::Mat;
  const int B = 2, H = 3, T = 5, T_max = 8;
  const auto gates = randn(std::size_t(H) * 3, 1), dg_eff = randn(gates.size(), 2);
  const auto dg0 = randn(gates.size(), 3);
  const double a = 0.25, ad = 0.5;
  std::vector<double> eff = gates, dg = dg0;
  for (int h = 0; h < H; ++h) {
    eff[3 * h + kRec] *= a, eff[3 * h + kDisc] *= ad;
    dg[3 * h + kStd] += dg_eff[3 * h + kStd];
    dg[3 * h + kRec] += a * dg_eff[3 * h + kRec];
    dg[3 * h + kDisc] += ad * dg_eff[3 * h + kDisc];
  }
  T3 Eff("eff", 1, H, 3);
  fill_nan(Eff);
  Ops::effective_gates(Exec(), make_view<T3>(gates, 1, H, 3), Eff, TestType(a), TestType(ad));
  auto Dg = make_view<T3>(dg0, 1, H, 3);
  Ops::accumulate_gate_grads(Exec(), make_view<T3>(dg_eff, 1, H, 3), Dg, TestType(a), TestType(ad));
  const double tol = model_tolerance<TestType>();
  CHECK(max_rel_error(download(Eff), eff) <= tol);
  CHECK(max_rel_error(download(Dg), dg) <= tol);

  typename Ops::Vec Init("init", 3 * H);
  Ops::init_gates(Exec(), Init);
  const auto init = download(Init);
  for (int h = 0; h < H; ++h) {
    CHECK(init[3 * h + kStd] == TestType(0.5));
    CHECK(init[3 * h + kRec] == TestType(0.3));
    CHECK(init[3 * h + kDisc] == TestType(0.2));
  }

  const auto table = randn(std::size_t(H) * T_max, 4), dd = randn(std::size_t(B) * H * T, 5);
  const auto dtable0 = randn(table.size(), 6);
  std::vector<double> d(dd.size()), dtable = dtable0;
  for (int b = 0; b < B; ++b)
    for (int h = 0; h < H; ++h)
      for (int t = 0; t < T; ++t) {
        d[(std::size_t(b) * H + h) * T + t] = table[std::size_t(h) * T_max + t];
        dtable[std::size_t(h) * T_max + t] += dd[(std::size_t(b) * H + h) * T + t];
      }
  T3 Dv("d", B, H, T);
  fill_nan(Dv);
  Ops::disc_table_forward(Exec(), make_view<Mat>(table, H, T_max), Dv);
  auto Dtable = make_view<Mat>(dtable0, H, T_max);
  Ops::disc_table_backward(Exec(), make_view<T3>(dd, B, H, T), Dtable);
  CHECK(download(Dv) == rounded<TestType>(d));
  CHECK(max_rel_error(download(Dtable), dtable) <= tol);
}

TEMPLATE_TEST_CASE("model layers: softmax cross-entropy ignores the padded vocabulary",
                   "[model][layers]", float, double) {
  using Ops = model::Layers<TestType, Exec>;
  using Mat = typename Ops::Mat;
  const int N = 13, V = 50, Vp = 64;
  auto logits = randn(std::size_t(N) * Vp, 1, 3.0);
  const auto targets = random_tokens(N, V, 2);
  std::vector<double> probs, losses, dlogits(logits.size(), 0.0);
  const double loss = mref::crossentropy_forward(N, V, Vp, logits, targets, probs, losses);
  mref::crossentropy_backward(N, V, Vp, probs, targets, 1.0 / N, dlogits);
  // Padded logits are garbage the kernel must never read.
  for (int n = 0; n < N; ++n)
    for (int v = V; v < Vp; ++v) logits[std::size_t(n) * Vp + v] = std::nan("");
  auto L = make_view<Mat>(logits, N, Vp);
  typename Ops::Vec Losses("losses", N);
  fill_nan(Losses);
  const double got = Ops::crossentropy_forward(Exec(), L, make_ivec<typename Ops::IVec>(targets), V, Losses);
  const double tol = model_tolerance<TestType>();
  CHECK(std::abs(got - loss) / std::max(std::abs(loss), 1.0) <= tol);
  CHECK(max_rel_error(download(L), probs) <= tol);
  CHECK(max_rel_error(download(Losses), losses) <= tol);
  Ops::crossentropy_backward(Exec(), L, make_ivec<typename Ops::IVec>(targets), V, TestType(1.0 / N));
  CHECK(max_rel_error(download(L), dlogits) <= tol);
}

TEMPLATE_TEST_CASE("model layers: AdamW step, gradient norm and scaling", "[model][layers]", float,
                   double) {
  using Ops = model::Layers<TestType, Exec>;
  using Vec = typename Ops::Vec;
  const std::size_t n = 200, n_decay = 120;
  auto p = randn(n, 1), g = randn(n, 2), m = randn(n, 3, 0.1);
  auto v = randn(n, 4, 0.1);
  for (auto& e : v) e = std::abs(e);
  model::AdamWConfig hp;
  hp.lr = 1e-2, hp.weight_decay = 0.1;
  const long step = 3;
  auto P = make_view<Vec>(p, n), G = make_view<Vec>(g, n), M = make_view<Vec>(m, n), Vv = make_view<Vec>(v, n);
  for (std::size_t i = 0; i < n; ++i) {
    m[i] = hp.beta1 * m[i] + (1 - hp.beta1) * g[i];
    v[i] = hp.beta2 * v[i] + (1 - hp.beta2) * g[i] * g[i];
    const double mhat = m[i] / (1 - std::pow(hp.beta1, step)), vhat = v[i] / (1 - std::pow(hp.beta2, step));
    p[i] -= hp.lr * (mhat / (std::sqrt(vhat) + hp.eps) + (i < n_decay ? hp.weight_decay * p[i] : 0.0));
  }
  Ops::adamw_update(Exec(), P, G, M, Vv, n_decay, hp, step);
  const double tol = model_tolerance<TestType>();
  CHECK(max_rel_error(download(P), p) <= tol);
  CHECK(max_rel_error(download(M), m) <= tol);
  CHECK(max_rel_error(download(Vv), v) <= tol);

  const double ss = dot(g, g);
  CHECK(std::abs(Ops::sum_squares(Exec(), G) - ss) / ss <= tol);
  Ops::scale(Exec(), G, TestType(0.5));
  for (auto& e : g) e *= 0.5;
  CHECK(max_rel_error(download(G), g) <= tol);
}

TEST_CASE("model reference layers: gradients match finite differences", "[model][reference]") {
  const int N = 4, C = 5, K = 3, V = 6, Vp = 8;
  const double tol = 1e-6;
  SECTION("LayerNorm") {
    auto x = randn(std::size_t(N) * C, 1, 1.5), w = randn(C, 2, 0.5, 1.0), b = randn(C, 3);
    const auto r = randn(x.size(), 4);
    auto loss = [&] {
      std::vector<double> out, mean, rstd;
      mref::layernorm_forward(N, C, x, w, b, out, mean, rstd);
      return dot(out, r);
    };
    std::vector<double> out, mean, rstd, dx(x.size(), 0.0), dw(C, 0.0), db(C, 0.0);
    mref::layernorm_forward(N, C, x, w, b, out, mean, rstd);
    mref::layernorm_backward(N, C, r, x, w, mean, rstd, dx, dw, db);
    CHECK(fd_error(loss, x, dx) <= tol);
    CHECK(fd_error(loss, w, dw) <= tol);
    CHECK(fd_error(loss, b, db) <= tol);
  }
  SECTION("linear") {
    auto x = randn(std::size_t(N) * K, 1), w = randn(std::size_t(C) * K, 2), b = randn(C, 3);
    const auto r = randn(std::size_t(N) * C, 4);
    auto loss = [&] {
      std::vector<double> y;
      mref::linear_forward(N, K, C, x, w, b, y);
      return dot(y, r);
    };
    std::vector<double> dx(x.size(), 0.0), dw(w.size(), 0.0), db(C, 0.0);
    mref::linear_backward(N, K, C, r, x, w, dx, dw, &db);
    CHECK(fd_error(loss, x, dx) <= tol);
    CHECK(fd_error(loss, w, dw) <= tol);
    CHECK(fd_error(loss, b, db) <= tol);
  }
  SECTION("GELU") {
    auto x = randn(std::size_t(N) * C, 1, 2.0);
    const auto r = randn(x.size(), 2);
    auto loss = [&] {
      std::vector<double> y;
      mref::gelu_forward(x, y);
      return dot(y, r);
    };
    std::vector<double> dx(x.size(), 0.0);
    mref::gelu_backward(x, r, dx);
    CHECK(fd_error(loss, x, dx) <= tol);
  }
  SECTION("softmax cross-entropy") {
    auto z = randn(std::size_t(N) * Vp, 1, 2.0);
    const auto targets = random_tokens(N, V, 2);
    auto loss = [&] {
      std::vector<double> p, l;
      return mref::crossentropy_forward(N, V, Vp, z, targets, p, l);
    };
    std::vector<double> p, l, dz(z.size(), 0.0);
    mref::crossentropy_forward(N, V, Vp, z, targets, p, l);
    mref::crossentropy_backward(N, V, Vp, p, targets, 1.0 / N, dz);
    CHECK(fd_error(loss, z, dz) <= tol);
  }
  SECTION("embedding") {
    const int T = 2;
    const auto tokens = random_tokens(N, 3, 1);
    auto wte = randn(std::size_t(Vp) * C, 1), wpe = randn(std::size_t(T) * C, 2);
    const auto r = randn(std::size_t(N) * C, 3);
    auto loss = [&] {
      std::vector<double> out;
      mref::encoder_forward(N, T, C, tokens, wte, wpe, out);
      return dot(out, r);
    };
    std::vector<double> dwte(wte.size(), 0.0), dwpe(wpe.size(), 0.0);
    mref::encoder_backward(N, T, C, tokens, r, dwte, dwpe);
    CHECK(fd_error(loss, wte, dwte) <= tol);
    CHECK(fd_error(loss, wpe, dwpe) <= tol);
  }
}
