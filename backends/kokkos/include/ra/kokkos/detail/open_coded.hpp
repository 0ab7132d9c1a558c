// Open-coded (unfused) causal SDPA and RA: the seeds' baseline, kept to show
// what fusion buys. The full T x T score matrix is materialised per (b, h);
// the products go through one strided-batched cuBLAS call each on CUDA and
// KokkosBlas::gemm per (b, h) elsewhere; the row-wise parts are small team kernels.
//
//   forward : S = s Q K^T (full square: RA needs S_ji too)
//             P_i = softmax_j<=i( w_std S_ij + w_rec [band] S_ji + w_disc d_j ),  lse_i
//             O = P V
//   backward: S, P recomputed from lse;  dP = dO V^T;  dV = P^T dO
//             dL = P (dP - Delta);  dS = w_std dL + w_rec [band] dL^T
//             dQ = s dS K;  dK = s dS^T Q;  gate and d gradients by row/column sums
#pragma once

#include <KokkosBlas3_gemm.hpp>
#if defined(KOKKOS_ENABLE_CUDA)
#include <KokkosBlas_tpl_spec.hpp>  // CudaBlasSingleton: Kokkos Kernels' cuBLAS handle
#include <cublas_v2.h>
#endif

#include <stdexcept>
#include <string>
#include <Kokkos_Core.hpp>
#include <ra/kokkos/attention.hpp>

namespace ra::kk::detail {

template <class Scalar, class Exec>
struct OpenCoded {
  using T4 = Tensor4<Scalar, Exec>;
  using T3 = Tensor3<Scalar, Exec>;
  using Policy = Kokkos::TeamPolicy<Exec>;
  using M = typename Policy::member_type;

  Exec exec;
  Shape s;
  bool ra;
  int window, gate_batch;

  // C(b,h) = alpha op(A(b,h)) op(B(b,h)) for every (b, h). On CUDA: one
  // strided-batched cuBLAS call per product (B*H matrices at a fixed stride;
  // Kokkos Kernels has no batched cuBLAS path); elsewhere one KokkosBlas::gemm
  // per (b, h).
  void batched_gemm(const char* ta, const char* tb, Scalar alpha, const T4& a, const T4& b,
                    const T4& c) const {
#if defined(KOKKOS_ENABLE_CUDA)
    if constexpr (std::is_same_v<Exec, Kokkos::Cuda>) {
      strided_batched_cublas(*ta == 'T', *tb == 'T', alpha, a, b, c);
      return;
    }
#endif
    for (int ib = 0; ib < s.B; ++ib)
      for (int ih = 0; ih < s.H; ++ih) {
        auto A = Kokkos::subview(a, ib, ih, Kokkos::ALL, Kokkos::ALL);
        auto Bm = Kokkos::subview(b, ib, ih, Kokkos::ALL, Kokkos::ALL);
        auto C = Kokkos::subview(c, ib, ih, Kokkos::ALL, Kokkos::ALL);
        KokkosBlas::gemm(exec, ta, tb, alpha, A, Bm, Scalar(0), C);
      }
  }

#if defined(KOKKOS_ENABLE_CUDA)
  // Row-major C = op(A) op(B) is column-major C^T = op(B)^T op(A)^T: the same
  // call with the operands swapped and each matrix's row length as its
  // leading dimension.
  void strided_batched_cublas(bool ta, bool tb, Scalar alpha, const T4& a, const T4& b,
                              const T4& c) const {
    const int m = c.extent_int(2), n = c.extent_int(3);
    const int k = ta ? a.extent_int(2) : a.extent_int(3);
    const int lda = a.extent_int(3), ldb = b.extent_int(3), ldc = n;
    const long long sa = (long long)a.extent(2) * a.extent(3), sb = (long long)b.extent(2) * b.extent(3),
                    sc = (long long)m * n;
    const int batch = s.B * s.H;
    const Scalar beta = 0;
    cublasHandle_t h = KokkosBlas::Impl::CudaBlasSingleton::singleton().handle;
    check_cublas(cublasSetStream(h, exec.cuda_stream()), "cublasSetStream");
    const cublasOperation_t opa = ta ? CUBLAS_OP_T : CUBLAS_OP_N, opb = tb ? CUBLAS_OP_T : CUBLAS_OP_N;
    if constexpr (std::is_same_v<Scalar, float>)
      check_cublas(cublasSgemmStridedBatched(h, opb, opa, n, m, k, &alpha, b.data(), ldb, sb, a.data(),
                                             lda, sa, &beta, c.data(), ldc, sc, batch),
                   "cublasSgemmStridedBatched");
    else
      check_cublas(cublasDgemmStridedBatched(h, opb, opa, n, m, k, &alpha, b.data(), ldb, sb, a.data(),
                                             lda, sa, &beta, c.data(), ldc, sc, batch),
                   "cublasDgemmStridedBatched");
  }
  static void check_cublas(cublasStatus_t st, const char* call) {
    if (st != CUBLAS_STATUS_SUCCESS)
      throw std::runtime_error(std::string("ra::kk open-coded attention: ") + call +
                               " failed with cuBLAS status " + std::to_string(int(st)));
  }
#endif

  Policy row_policy() const {
    const int vl = Policy::vector_length_max() < 32 ? Policy::vector_length_max() : 32;
    return Policy(exec, s.B * s.H * s.T, 1, vl);
  }

  // Row i of (b, h) as one team sees it: its gates and its logits
  //   L_ij = w_std S_ij + w_rec [band] S_ji + w_disc d_j  (SDPA: S_ij).
  struct RowLogits {
    T4 sm;
    T3 gates, d;
    int T, H, window, gate_batch;
    bool ra;
    struct Row {
      int b, h, i;
      Scalar ws, wr, wd;
    };
    KOKKOS_INLINE_FUNCTION Row row(int league) const {
      Row r{0, 0, league % T, Scalar(1), Scalar(0), Scalar(0)};
      r.b = league / T / H, r.h = (league / T) % H;
      if (ra) {
        const int g = gate_batch == 1 ? 0 : r.b;
        r.ws = gates(g, r.h, 0), r.wr = gates(g, r.h, 1), r.wd = gates(g, r.h, 2);
      }
      return r;
    }
    KOKKOS_INLINE_FUNCTION Scalar logit(const Row& r, int j) const {
      Scalar x = r.ws * sm(r.b, r.h, r.i, j);
      if (ra) {
        if (window < 0 || r.i - j <= window) x += r.wr * sm(r.b, r.h, j, r.i);
        x += r.wd * d(r.b, r.h, j);
      }
      return x;
    }
  };
  RowLogits row_logits(const T4& sm, const T3& gates, const T3& d) const {
    return RowLogits{sm, gates, d, s.T, s.H, window, gate_batch, ra};
  }

  // p(b,h,i,:) <- softmax of row i's logits (0 above the diagonal); lse(b,h,i).
  void softmax_rows(const T4& sm, const T4& p, const T3& gates, const T3& d, const T3& lse) const {
    const RowLogits lg = row_logits(sm, gates, d);
    const int T = s.T;
    Kokkos::parallel_for(
        "ra::open::softmax", row_policy(), KOKKOS_LAMBDA(const M& team) {
          const auto r = lg.row(team.league_rank());
          const int b = r.b, h = r.h, i = r.i;
          Scalar mx = -Kokkos::Experimental::infinity_v<Scalar>;
          Kokkos::parallel_reduce(
              Kokkos::TeamVectorRange(team, i + 1),
              [&](int j, Scalar& m) {
                const Scalar x = lg.logit(r, j);
                m = x > m ? x : m;
              },
              Kokkos::Max<Scalar>(mx));
          Scalar sum = 0;
          Kokkos::parallel_reduce(
              Kokkos::TeamVectorRange(team, T),
              [&](int j, Scalar& acc) {
                const Scalar e = j <= i ? Kokkos::exp(lg.logit(r, j) - mx) : Scalar(0);
                p(b, h, i, j) = e;
                acc += e;
              },
              sum);
          const Scalar inv = Scalar(1) / sum;
          Kokkos::parallel_for(Kokkos::TeamVectorRange(team, i + 1),
                               [&](int j) { p(b, h, i, j) *= inv; });
          Kokkos::single(Kokkos::PerTeam(team), [&]() { lse(b, h, i) = mx + Kokkos::log(sum); });
        });
  }

  // p(b,h,i,j) <- exp(L_ij - lse_i) for j <= i, else 0.
  void recompute_p(const T4& sm, const T4& p, const T3& gates, const T3& d, const T3& lse) const {
    const RowLogits lg = row_logits(sm, gates, d);
    const int T = s.T;
    Kokkos::parallel_for(
        "ra::open::recompute_p", row_policy(), KOKKOS_LAMBDA(const M& team) {
          const auto r = lg.row(team.league_rank());
          const Scalar l = lse(r.b, r.h, r.i);
          Kokkos::parallel_for(Kokkos::TeamVectorRange(team, T), [&](int j) {
            p(r.b, r.h, r.i, j) = j <= r.i ? Kokkos::exp(lg.logit(r, j) - l) : Scalar(0);
          });
        });
  }

  // dl <- P (dP - Delta) in place of p (dp unchanged).
  void dl_from_p(const T4& p, const T4& dp, const T3& delta) const {
    const int T = s.T, H = s.H;
    Kokkos::parallel_for(
        "ra::open::dl", row_policy(), KOKKOS_LAMBDA(const M& team) {
          const int i = team.league_rank() % T;
          const int bh = team.league_rank() / T;
          const int b = bh / H, h = bh % H;
          const Scalar di = delta(b, h, i);
          Kokkos::parallel_for(Kokkos::TeamVectorRange(team, i + 1),
                               [&](int j) { p(b, h, i, j) *= dp(b, h, i, j) - di; });
        });
  }

  // For RA: ds <- w_std dL + w_rec [band] dL^T (into dp's storage), and the
  // per-row partial sums of dw_std, dw_rec plus the per-key column sums that
  // give dd and dw_disc. For SDPA, dS = dL: nothing to do but point at it.
  void ra_grads(const T4& sm, const T4& dl, const T4& ds, const T3& gates, const T3& d,
                const T3& dd, const T4& partials) const {
    const int T = s.T, H = s.H;
    const int win = window, gb1 = gate_batch == 1;
    Kokkos::parallel_for(
        "ra::open::ds", row_policy(), KOKKOS_LAMBDA(const M& team) {
          const int a = team.league_rank() % T;
          const int bh = team.league_rank() / T;
          const int b = bh / H, h = bh % H;
          const int g = gb1 ? 0 : b;
          const Scalar ws = gates(g, h, 0), wr = gates(g, h, 1), wd = gates(g, h, 2);
          // Row a of dS: lower part from dL(a, c<=a), upper part from dL(c>=a, a).
          Kokkos::parallel_for(Kokkos::TeamVectorRange(team, T), [&](int c) {
            Scalar x = 0;
            if (c <= a) x += ws * dl(b, h, a, c);
            if (c >= a && (win < 0 || c - a <= win)) x += wr * dl(b, h, c, a);
            ds(b, h, a, c) = x;
          });
          // dw_std: sum_j dL_aj S_aj; dw_rec: sum_j dL_aj S_ja (band);
          // column a of dL: sum_i dL_ia -> dd_a and d_a * sum for dw_disc.
          Scalar sstd = 0, srec = 0, col = 0;
          Kokkos::parallel_reduce(
              Kokkos::TeamVectorRange(team, a + 1),
              [&](int j, Scalar& x) { x += dl(b, h, a, j) * sm(b, h, a, j); }, sstd);
          Kokkos::parallel_reduce(
              Kokkos::TeamVectorRange(team, a + 1),
              [&](int j, Scalar& x) {
                if (win < 0 || a - j <= win) x += dl(b, h, a, j) * sm(b, h, j, a);
              },
              srec);
          Kokkos::parallel_reduce(
              Kokkos::TeamVectorRange(team, a, T), [&](int j, Scalar& x) { x += dl(b, h, j, a); },
              col);
          Kokkos::single(Kokkos::PerTeam(team), [&]() {
            partials(b, h, a, 0) = sstd;
            partials(b, h, a, 1) = srec;
            partials(b, h, a, 2) = d(b, h, a) * col;
            dd(b, h, a) = wd * col;
          });
        });
  }
};

}  // namespace ra::kk::detail
