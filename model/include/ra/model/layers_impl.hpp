// Definitions of ra::model::Layers. Included only by instantiate_*.cpp:
// users include layers.hpp and link the explicit instantiations.
#pragma once

#include <ra/model/layers.hpp>
#include <ra/model/matmul_impl.hpp>


#include <cmath>

namespace ra::model {

namespace detail {

// Rows per partial sum of a deterministic column sum: small enough that the
// first pass has N/64 * M independent threads, large enough that the second
// pass (over N/64 partials per column) is short.
constexpr int kRowChunk = 64;

// out_k[m] += sum_n f(n, m)[k] for k < NS, without atomics: each thread sums
// one column of one 64-row chunk, then one thread per column adds the chunks
// in order. Neighbouring threads read neighbouring columns (coalesced).
template <int NS, class Scalar, class Exec, class Vec, class F>
void column_sums(const Exec& exec, int N, int M, const F& f, const Vec& out0, const Vec& out1,
                 const Vec& work) {
  const int n_chunks = (N + kRowChunk - 1) / kRowChunk;
  Kokkos::parallel_for(
      "ra::model::column_sums_partial", Kokkos::RangePolicy<Exec>(exec, 0, n_chunks * M),
      KOKKOS_LAMBDA(int r) {
        const int m = r % M, chunk = r / M;
        Scalar acc[NS] = {};
        const int end = (chunk + 1) * kRowChunk < N ? (chunk + 1) * kRowChunk : N;
        for (int n = chunk * kRowChunk; n < end; ++n) f(n, m, acc);
        for (int k = 0; k < NS; ++k) work((std::size_t(chunk) * NS + k) * M + m) = acc[k];
      });
  Kokkos::parallel_for(
      "ra::model::column_sums_total", Kokkos::RangePolicy<Exec>(exec, 0, M), KOKKOS_LAMBDA(int m) {
        for (int k = 0; k < NS; ++k) {
          Scalar acc = 0;
          for (int chunk = 0; chunk < n_chunks; ++chunk)
            acc += work((std::size_t(chunk) * NS + k) * M + m);
          if (k == 0)
            out0(m) += acc;
          else
            out1(m) += acc;
        }
      });
}


// Online softmax statistics of a row: running max m and sum of exp(x - m).
// A team reduces its row in one read with this (instead of one pass for the
// max and another for the sum): the LM head's [N, 50304] logits are the
// largest tensor of the model, so every pass over them costs ~0.7 ms on an H100.
template <class Scalar>
struct MaxSum {
  Scalar m, s;
};

template <class Scalar>
struct OnlineSoftmax {
  using reducer = OnlineSoftmax;
  using value_type = MaxSum<Scalar>;
  using result_view_type = Kokkos::View<value_type, Kokkos::HostSpace, Kokkos::MemoryUnmanaged>;
  value_type& ref;
  KOKKOS_INLINE_FUNCTION explicit OnlineSoftmax(value_type& r) : ref(r) {}
  KOKKOS_INLINE_FUNCTION static void add(value_type& acc, Scalar x) {
    if (x > acc.m) {
      acc.s = acc.s * Kokkos::exp(acc.m - x) + Scalar(1);
      acc.m = x;
    } else {
      acc.s += Kokkos::exp(x - acc.m);
    }
  }
  KOKKOS_INLINE_FUNCTION void join(value_type& dst, const value_type& src) const {
    if (src.s == Scalar(0)) return;  // an empty partial (init) adds nothing
    if (dst.s == Scalar(0)) {
      dst = src;
      return;
    }
    const Scalar m = dst.m > src.m ? dst.m : src.m;
    dst.s = dst.s * Kokkos::exp(dst.m - m) + src.s * Kokkos::exp(src.m - m);
    dst.m = m;
  }
  KOKKOS_INLINE_FUNCTION void init(value_type& v) const {
    v.m = Kokkos::Experimental::finite_min_v<Scalar>;
    v.s = Scalar(0);
  }
  KOKKOS_INLINE_FUNCTION value_type& reference() const { return ref; }
  KOKKOS_INLINE_FUNCTION result_view_type view() const { return result_view_type(&ref); }
  KOKKOS_INLINE_FUNCTION bool references_scalar() const { return true; }
};

}  // namespace detail

template <class Scalar, class Exec>
std::size_t Layers<Scalar, Exec>::column_sum_work(int N, int M, int n_sums) {
  return std::size_t((N + detail::kRowChunk - 1) / detail::kRowChunk) * M * n_sums;
}

template <class Scalar, class Exec>
void Layers<Scalar, Exec>::encoder_forward(const Exec& exec, const IVec& tokens, const Mat& wte,
                                           const Mat& wpe, const Mat& out, int T) {
  const int C = out.extent_int(1);
  Kokkos::parallel_for(
      "ra::model::encoder_forward", Kokkos::RangePolicy<Exec>(exec, 0, out.extent(0) * C),
      KOKKOS_LAMBDA(std::size_t r) {
        const int c = int(r % C), n = int(r / C);
        out(n, c) = wte(tokens(n), c) + wpe(n % T, c);
      });
}

template <class Scalar, class Exec>
void Layers<Scalar, Exec>::encoder_backward(const Exec& exec, const Mat& dout,
                                            const IVec& bucket_token, const IVec& bucket_start,
                                            const IVec& bucket_rows, int n_buckets,
                                            const Mat& dwte, const Mat& dwpe, int T) {
  const int N = dout.extent_int(0), C = dout.extent_int(1), B = N / T;
  Kokkos::parallel_for(
      "ra::model::encoder_backward_wpe", Kokkos::RangePolicy<Exec>(exec, 0, T * C),
      KOKKOS_LAMBDA(int r) {
        const int c = r % C, t = r / C;
        Scalar acc = 0;
        for (int b = 0; b < B; ++b) acc += dout(b * T + t, c);
        dwpe(t, c) += acc;
      });
  Kokkos::parallel_for(
      "ra::model::encoder_backward_wte", Kokkos::RangePolicy<Exec>(exec, 0, n_buckets * C),
      KOKKOS_LAMBDA(int r) {
        const int c = r % C, u = r / C;
        Scalar acc = 0;
        for (int i = bucket_start(u); i < bucket_start(u + 1); ++i) acc += dout(bucket_rows(i), c);
        dwte(bucket_token(u), c) += acc;
      });
}

namespace detail {
// v in the output's element type: itself when that is Scalar, else through
// float (bf16 copies for the GEMMs; bf16 converts from float).
template <class O, class S>
KOKKOS_INLINE_FUNCTION O convert_to(S v) {
  if constexpr (std::is_same_v<O, S>)
    return v;
  else
    return static_cast<O>(static_cast<float>(v));
}

// LayerNorm forward into an output of any element type (float rows, or the
// bf16 copy the next GEMM reads under bf16 matmuls).
template <class Scalar, class Exec, class Mat, class Vec, class Out>
void layernorm_forward_to(const Exec& exec, const Mat& x, const Vec& w, const Vec& b, const Out& out,
                          const Vec& mean, const Vec& rstd, double eps_d) {
  using Policy = Kokkos::TeamPolicy<Exec>;
  using O = typename Out::non_const_value_type;
  const int C = x.extent_int(1);
  const Scalar eps = Scalar(eps_d);
  Kokkos::parallel_for(
      "ra::model::layernorm_forward", Policy(exec, x.extent_int(0), Kokkos::AUTO),
      KOKKOS_LAMBDA(const typename Policy::member_type& team) {
        const int n = team.league_rank();
        Scalar sum = 0;
        Kokkos::parallel_reduce(
            Kokkos::TeamThreadRange(team, C), [&](int c, Scalar& s) { s += x(n, c); }, sum);
        const Scalar mu = sum / C;
        Scalar sq = 0;
        Kokkos::parallel_reduce(
            Kokkos::TeamThreadRange(team, C),
            [&](int c, Scalar& s) { s += (x(n, c) - mu) * (x(n, c) - mu); }, sq);
        const Scalar rs = Scalar(1) / Kokkos::sqrt(sq / C + eps);
        Kokkos::parallel_for(Kokkos::TeamThreadRange(team, C), [&](int c) {
          out(n, c) = convert_to<O>((x(n, c) - mu) * rs * w(c) + b(c));
        });
        Kokkos::single(Kokkos::PerTeam(team), [&]() {
          mean(n) = mu;
          rstd(n) = rs;
        });
      });
}
}  // namespace detail

template <class Scalar, class Exec>
void Layers<Scalar, Exec>::layernorm_forward(const Exec& exec, const Mat& x, const Vec& w,
                                             const Vec& b, const Mat& out, const Vec& mean,
                                             const Vec& rstd) {
  detail::layernorm_forward_to<Scalar>(exec, x, w, b, out, mean, rstd, kLayerNormEps);
}

template <class Scalar, class Exec>
void Layers<Scalar, Exec>::layernorm_forward_bf16(const Exec& exec, const Mat& x, const Vec& w,
                                                  const Vec& b, const Half& out, const Vec& mean,
                                                  const Vec& rstd) {
  detail::layernorm_forward_to<Scalar>(exec, x, w, b, out, mean, rstd, kLayerNormEps);
}

template <class Scalar, class Exec>
void Layers<Scalar, Exec>::layernorm_backward(const Exec& exec, const Mat& dout, const Mat& x,
                                              const Vec& w, const Vec& mean, const Vec& rstd,
                                              const Mat& dx, const Vec& dw, const Vec& db,
                                              const Vec& work) {
  using Policy = Kokkos::TeamPolicy<Exec>;
  const int N = x.extent_int(0), C = x.extent_int(1);
  // dx = rstd * (g - mean(g) - xhat * mean(g * xhat)), g = dout * w.
  Kokkos::parallel_for(
      "ra::model::layernorm_backward_dx", Policy(exec, N, Kokkos::AUTO),
      KOKKOS_LAMBDA(const typename Policy::member_type& team) {
        const int n = team.league_rank();
        const Scalar mu = mean(n), rs = rstd(n);
        Scalar g_sum = 0, gx_sum = 0;
        Kokkos::parallel_reduce(
            Kokkos::TeamThreadRange(team, C), [&](int c, Scalar& s) { s += dout(n, c) * w(c); },
            g_sum);
        Kokkos::parallel_reduce(
            Kokkos::TeamThreadRange(team, C),
            [&](int c, Scalar& s) { s += dout(n, c) * w(c) * (x(n, c) - mu) * rs; }, gx_sum);
        const Scalar g_mean = g_sum / C, gx_mean = gx_sum / C;
        Kokkos::parallel_for(Kokkos::TeamThreadRange(team, C), [&](int c) {
          const Scalar xhat = (x(n, c) - mu) * rs;
          dx(n, c) += rs * (dout(n, c) * w(c) - g_mean - xhat * gx_mean);
        });
      });
  detail::column_sums<2, Scalar, Exec>(
      exec, N, C,
      KOKKOS_LAMBDA(int n, int c, Scalar(&acc)[2]) {
        acc[0] += dout(n, c) * (x(n, c) - mean(n)) * rstd(n);
        acc[1] += dout(n, c);
      },
      dw, db, work);
}

template <class Scalar, class Exec>
void Layers<Scalar, Exec>::linear_forward(const Exec& exec, MatmulPrecision p, const Operand& x,
                                          const Operand& w, const Vec& b, const Mat& y,
                                          const Mat& residual) {
  const int M = y.extent_int(1);
  const bool has_b = b.extent(0) > 0, has_res = residual.extent(0) > 0;
  // A team per row: no 64-bit index division per element, which made a
  // flat RangePolicy version of this pass run at half the memory bandwidth.
  using Policy = Kokkos::TeamPolicy<Exec>;
  if (has_b || has_res)
    Kokkos::parallel_for(
        "ra::model::linear_init", Policy(exec, y.extent_int(0), Kokkos::AUTO),
        KOKKOS_LAMBDA(const typename Policy::member_type& team) {
          const int n = team.league_rank();
          Kokkos::parallel_for(Kokkos::TeamThreadRange(team, M), [&](int m) {
            y(n, m) = (has_res ? residual(n, m) : Scalar(0)) + (has_b ? b(m) : Scalar(0));
          });
        });
  Matmul<Scalar, Exec>::gemm(exec, p, 'N', 'T', Scalar(1), x, w, Scalar(has_b || has_res ? 1 : 0), y);
}

template <class Scalar, class Exec>
void Layers<Scalar, Exec>::linear_forward(const Exec& exec, const Mat& x, const Mat& w,
                                          const Vec& b, const Mat& y, const Mat& residual) {
  linear_forward(exec, MatmulPrecision::fp32, Operand{x, {}}, Operand{w, {}}, b, y, residual);
}

template <class Scalar, class Exec>
void Layers<Scalar, Exec>::linear_backward(const Exec& exec, MatmulPrecision p, const Operand& dy,
                                           const Operand& x, const Operand& w, const Mat& dx,
                                           bool accumulate_dx, const Mat& dw, const Vec& db,
                                           const Vec& work) {
  using MM = Matmul<Scalar, Exec>;
  MM::gemm(exec, p, 'N', 'N', Scalar(1), dy, w, Scalar(accumulate_dx ? 1 : 0), dx);
  MM::gemm(exec, p, 'T', 'N', Scalar(1), dy, x, Scalar(1), dw);
  const Mat g = dy.full;
  if (db.extent(0) > 0)
    detail::column_sums<1, Scalar, Exec>(
        exec, g.extent_int(0), g.extent_int(1),
        KOKKOS_LAMBDA(int n, int m, Scalar(&acc)[1]) { acc[0] += g(n, m); }, db, db, work);
}

template <class Scalar, class Exec>
void Layers<Scalar, Exec>::linear_backward(const Exec& exec, const Mat& dy, const Mat& x,
                                           const Mat& w, const Mat& dx, bool accumulate_dx,
                                           const Mat& dw, const Vec& db, const Vec& work) {
  linear_backward(exec, MatmulPrecision::fp32, Operand{dy, {}}, Operand{x, {}}, Operand{w, {}}, dx,
                  accumulate_dx, dw, db, work);
}

namespace detail {
constexpr double kGeluScale = 0.7978845608028654;  // sqrt(2 / pi)
}

namespace detail {
// GELU forward into float or bf16 (as LayerNorm above).
template <class Scalar, class Exec, class O>
void gelu_forward_to(const Exec& exec, const Scalar* xs, O* ys, std::size_t n) {
  Kokkos::parallel_for(
      "ra::model::gelu_forward", Kokkos::RangePolicy<Exec>(exec, 0, n), KOKKOS_LAMBDA(std::size_t i) {
        const Scalar v = xs[i];
        const Scalar u = Scalar(kGeluScale) * (v + Scalar(0.044715) * v * v * v);
        ys[i] = convert_to<O>(Scalar(0.5) * v * (Scalar(1) + Kokkos::tanh(u)));
      });
}
}  // namespace detail

template <class Scalar, class Exec>
void Layers<Scalar, Exec>::gelu_forward(const Exec& exec, const Mat& x, const Mat& y) {
  detail::gelu_forward_to<Scalar>(exec, x.data(), y.data(), x.span());
}

template <class Scalar, class Exec>
void Layers<Scalar, Exec>::gelu_forward_bf16(const Exec& exec, const Mat& x, const Half& y) {
  detail::gelu_forward_to<Scalar>(exec, x.data(), y.data(), x.span());
}

template <class Scalar, class Exec>
void Layers<Scalar, Exec>::gelu_backward(const Exec& exec, const Mat& x, const Mat& dy,
                                         const Mat& dx) {
  const Scalar* xs = x.data();
  const Scalar* dys = dy.data();
  Scalar* dxs = dx.data();
  Kokkos::parallel_for(
      "ra::model::gelu_backward", Kokkos::RangePolicy<Exec>(exec, 0, x.span()),
      KOKKOS_LAMBDA(std::size_t i) {
        const Scalar v = xs[i];
        const Scalar u = Scalar(detail::kGeluScale) * (v + Scalar(0.044715) * v * v * v);
        const Scalar th = Kokkos::tanh(u);
        const Scalar du = Scalar(detail::kGeluScale) * (Scalar(1) + Scalar(3 * 0.044715) * v * v);
        const Scalar grad = Scalar(0.5) * (Scalar(1) + th) + Scalar(0.5) * v * (Scalar(1) - th * th) * du;
        dxs[i] = grad * dys[i];
      });
}

// The head-layout kernels convert between Scalar and the attention's storage
// type A explicitly (Kokkos' bhalf_t converts only explicitly; for A = Scalar
// the casts are no-ops).
template <class Scalar, class Exec>
template <class A>
void Layers<Scalar, Exec>::split_heads(const Exec& exec, const Mat& qkv, const Tensor4<A, Exec>& q,
                                       const Tensor4<A, Exec>& k, const Tensor4<A, Exec>& v,
                                       const T3& q_gates) {
  const int H = q.extent_int(1), T = q.extent_int(2), D = q.extent_int(3), C = H * D;
  const bool fold = q_gates.extent(0) > 0;
  Kokkos::parallel_for(
      "ra::model::split_heads", Kokkos::RangePolicy<Exec>(exec, 0, q.span()),
      KOKKOS_LAMBDA(std::size_t r) {
        const int c = int(r % D), t = int(r / D % T), h = int(r / D / T % H), b = int(r / D / T / H);
        const int row = b * T + t, col = h * D + c;
        q(b, h, t, c) = static_cast<A>(qkv(row, col) * (fold ? q_gates(0, h, kStd) : Scalar(1)));
        k(b, h, t, c) = static_cast<A>(qkv(row, C + col));
        v(b, h, t, c) = static_cast<A>(qkv(row, 2 * C + col));
      });
}

template <class Scalar, class Exec>
template <class A>
void Layers<Scalar, Exec>::merge_heads(const Exec& exec, const Tensor4<A, Exec>& dq,
                                       const Tensor4<A, Exec>& dk, const Tensor4<A, Exec>& dv,
                                       const Mat& dqkv, const T3& q_gates) {
  const int H = dq.extent_int(1), T = dq.extent_int(2), D = dq.extent_int(3), C = H * D;
  const bool fold = q_gates.extent(0) > 0;
  // One thread per dqkv row element of the q third: writes are coalesced.
  Kokkos::parallel_for(
      "ra::model::merge_heads", Kokkos::RangePolicy<Exec>(exec, 0, dqkv.extent(0) * C),
      KOKKOS_LAMBDA(std::size_t r) {
        const int col = int(r % C), row = int(r / C);
        const int h = col / D, c = col % D, b = row / T, t = row % T;
        dqkv(row, col) = static_cast<Scalar>(dq(b, h, t, c)) * (fold ? q_gates(0, h, kStd) : Scalar(1));
        dqkv(row, C + col) = static_cast<Scalar>(dk(b, h, t, c));
        dqkv(row, 2 * C + col) = static_cast<Scalar>(dv(b, h, t, c));
      });
}

template <class Scalar, class Exec>
template <class A, class Out>
void Layers<Scalar, Exec>::heads_to_rows(const Exec& exec, const Tensor4<A, Exec>& o, const Out& y) {
  using Y = typename Out::non_const_value_type;
  const int H = o.extent_int(1), T = o.extent_int(2), D = o.extent_int(3), C = H * D;
  Kokkos::parallel_for(
      "ra::model::heads_to_rows", Kokkos::RangePolicy<Exec>(exec, 0, y.extent(0) * C),
      KOKKOS_LAMBDA(std::size_t r) {
        const int col = int(r % C), row = int(r / C);
        y(row, col) = detail::convert_to<Y>(static_cast<accum_t<A>>(o(row / T, col / D, row % T, col % D)));
      });
}

template <class Scalar, class Exec>
template <class A>
void Layers<Scalar, Exec>::rows_to_heads(const Exec& exec, const Mat& y, const Tensor4<A, Exec>& o) {
  const int H = o.extent_int(1), T = o.extent_int(2), D = o.extent_int(3);
  Kokkos::parallel_for(
      "ra::model::rows_to_heads", Kokkos::RangePolicy<Exec>(exec, 0, o.span()),
      KOKKOS_LAMBDA(std::size_t r) {
        const int c = int(r % D), t = int(r / D % T), h = int(r / D / T % H), b = int(r / D / T / H);
        o(b, h, t, c) = static_cast<A>(y(b * T + t, h * D + c));
      });
}

template <class Scalar, class Exec>
template <class A>
void Layers<Scalar, Exec>::folded_wstd_grad(const Exec& exec, const Tensor4<A, Exec>& dq, const Mat& qkv,
                                            const T3& dgates) {
  using Policy = Kokkos::TeamPolicy<Exec>;
  const int B = dq.extent_int(0), H = dq.extent_int(1), T = dq.extent_int(2), D = dq.extent_int(3);
  Kokkos::parallel_for(
      "ra::model::folded_wstd_grad", Policy(exec, H, Kokkos::AUTO),
      KOKKOS_LAMBDA(const typename Policy::member_type& team) {
        const int h = team.league_rank();
        Scalar sum = 0;
        Kokkos::parallel_reduce(
            Kokkos::TeamThreadRange(team, B * T * D),
            [&](int r, Scalar& s) {
              const int c = r % D, t = (r / D) % T, b = r / (D * T);
              s += static_cast<Scalar>(dq(b, h, t, c)) * qkv(b * T + t, h * D + c);
            },
            sum);
        Kokkos::single(Kokkos::PerTeam(team), [&]() { dgates(0, h, kStd) += sum; });
      });
}

// Same arithmetic, in the same order, as kk::disc_content_forward/backward on
// the split K (which is the qkv K exactly in Scalar): reading K from the rows
// keeps d and du in Scalar when the attention's K is bf16.
template <class Scalar, class Exec>
void Layers<Scalar, Exec>::disc_content_forward(const Exec& exec, const Mat& qkv, const Mat& u,
                                                const T3& d) {
  const int B = d.extent_int(0), H = d.extent_int(1), T = d.extent_int(2), D = u.extent_int(1), C = H * D;
  Kokkos::parallel_for(
      "ra::model::disc_content_forward", Kokkos::RangePolicy<Exec>(exec, 0, B * H * T),
      KOKKOS_LAMBDA(int r) {
        const int t = r % T, h = (r / T) % H, b = r / (T * H);
        Scalar x = 0;
        for (int c = 0; c < D; ++c) x += qkv(b * T + t, C + h * D + c) * u(h, c);
        d(b, h, t) = Scalar(1) / (Scalar(1) + Kokkos::exp(-x));
      });
}

template <class Scalar, class Exec>
void Layers<Scalar, Exec>::disc_content_backward(const Exec& exec, const Mat& qkv, const Mat& u,
                                                 const T3& d, const T3& dd, const Mat& dqkv,
                                                 const Mat& du) {
  const int B = d.extent_int(0), H = d.extent_int(1), T = d.extent_int(2), D = u.extent_int(1), C = H * D;
  Kokkos::parallel_for(
      "ra::model::disc_content_backward_dk", Kokkos::RangePolicy<Exec>(exec, 0, B * T * C),
      KOKKOS_LAMBDA(int r) {
        const int col = r % C, row = r / C, h = col / D, c = col % D, b = row / T, t = row % T;
        const Scalar g = dd(b, h, t) * d(b, h, t) * (Scalar(1) - d(b, h, t));
        dqkv(row, C + col) += g * u(h, c);
      });
  Kokkos::parallel_for(
      "ra::model::disc_content_backward_du", Kokkos::RangePolicy<Exec>(exec, 0, H * D), KOKKOS_LAMBDA(int r) {
        const int c = r % D, h = r / D;
        Scalar acc = 0;
        for (int b = 0; b < B; ++b)
          for (int t = 0; t < T; ++t) {
            const Scalar dv = d(b, h, t);
            acc += dd(b, h, t) * dv * (Scalar(1) - dv) * qkv(b * T + t, C + h * D + c);
          }
        du(h, c) = acc;
      });
}

template <class Scalar, class Exec>
void Layers<Scalar, Exec>::effective_gates(const Exec& exec, const T3& gates, const T3& eff,
                                           Scalar rec_scale, Scalar disc_scale) {
  Kokkos::parallel_for(
      "ra::model::effective_gates", Kokkos::RangePolicy<Exec>(exec, 0, gates.extent(1)),
      KOKKOS_LAMBDA(int h) {
        eff(0, h, kStd) = gates(0, h, kStd);
        eff(0, h, kRec) = rec_scale * gates(0, h, kRec);
        eff(0, h, kDisc) = disc_scale * gates(0, h, kDisc);
      });
}

template <class Scalar, class Exec>
void Layers<Scalar, Exec>::accumulate_gate_grads(const Exec& exec, const T3& dgates_eff,
                                                 const T3& dgates, Scalar rec_scale,
                                                 Scalar disc_scale) {
  Kokkos::parallel_for(
      "ra::model::gate_grads", Kokkos::RangePolicy<Exec>(exec, 0, dgates.extent(1)),
      KOKKOS_LAMBDA(int h) {
        dgates(0, h, kStd) += dgates_eff(0, h, kStd);
        dgates(0, h, kRec) += rec_scale * dgates_eff(0, h, kRec);
        dgates(0, h, kDisc) += disc_scale * dgates_eff(0, h, kDisc);
      });
}

template <class Scalar, class Exec>
void Layers<Scalar, Exec>::init_gates(const Exec& exec, const Vec& gates) {
  Kokkos::parallel_for(
      "ra::model::init_gates", Kokkos::RangePolicy<Exec>(exec, 0, gates.extent(0)),
      KOKKOS_LAMBDA(int i) {
        gates(i) = i % 3 == kStd ? Scalar(0.5) : i % 3 == kRec ? Scalar(0.3) : Scalar(0.2);
      });
}

template <class Scalar, class Exec>
void Layers<Scalar, Exec>::disc_table_forward(const Exec& exec, const Mat& table, const T3& d) {
  const int H = d.extent_int(1), T = d.extent_int(2);
  Kokkos::parallel_for(
      "ra::model::disc_table_forward", Kokkos::RangePolicy<Exec>(exec, 0, d.span()),
      KOKKOS_LAMBDA(int r) {
        const int t = r % T, h = (r / T) % H, b = r / (T * H);
        d(b, h, t) = table(h, t);
      });
}

template <class Scalar, class Exec>
void Layers<Scalar, Exec>::disc_table_backward(const Exec& exec, const T3& dd, const Mat& dtable) {
  const int B = dd.extent_int(0), H = dd.extent_int(1), T = dd.extent_int(2);
  Kokkos::parallel_for(
      "ra::model::disc_table_backward", Kokkos::RangePolicy<Exec>(exec, 0, H * T),
      KOKKOS_LAMBDA(int r) {
        const int t = r % T, h = r / T;
        Scalar acc = 0;
        for (int b = 0; b < B; ++b) acc += dd(b, h, t);
        dtable(h, t) += acc;
      });
}

template <class Scalar, class Exec>
void Layers<Scalar, Exec>::accumulate(const Exec& exec, const Vec& dst, const Vec& src) {
  Kokkos::parallel_for(
      "ra::model::accumulate", Kokkos::RangePolicy<Exec>(exec, 0, dst.extent(0)),
      KOKKOS_LAMBDA(std::size_t i) { dst(i) += src(i); });
}

template <class Scalar, class Exec>
double Layers<Scalar, Exec>::crossentropy_forward(const Exec& exec, const Mat& logits,
                                                  const IVec& targets, int V, const Vec& losses) {
  using Policy = Kokkos::TeamPolicy<Exec>;
  const int N = logits.extent_int(0), Vp = logits.extent_int(1);
  Kokkos::parallel_for(
      "ra::model::crossentropy_forward", Policy(exec, N, Kokkos::AUTO),
      KOKKOS_LAMBDA(const typename Policy::member_type& team) {
        const int n = team.league_rank();
        const Scalar target_logit = logits(n, targets(n));
        detail::MaxSum<Scalar> st;
        Kokkos::parallel_reduce(
            Kokkos::TeamThreadRange(team, V),
            [&](int v, detail::MaxSum<Scalar>& acc) { detail::OnlineSoftmax<Scalar>::add(acc, logits(n, v)); },
            detail::OnlineSoftmax<Scalar>(st));
        const Scalar mx = st.m, sum = st.s;
        // The reduction above ends in a team barrier: every thread has read
        // its logits before any is overwritten by its probability.
        const Scalar inv = Scalar(1) / sum;
        Kokkos::parallel_for(Kokkos::TeamThreadRange(team, Vp), [&](int v) {
          logits(n, v) = v < V ? Kokkos::exp(logits(n, v) - mx) * inv : Scalar(0);
        });
        Kokkos::single(Kokkos::PerTeam(team),
                       [&]() { losses(n) = Kokkos::log(sum) + mx - target_logit; });
      });
  double total = 0;
  Kokkos::parallel_reduce(
      "ra::model::mean_loss", Kokkos::RangePolicy<Exec>(exec, 0, N),
      KOKKOS_LAMBDA(int n, double& s) { s += double(losses(n)); }, total);
  return total / N;
}

template <class Scalar, class Exec>
void Layers<Scalar, Exec>::crossentropy_backward(const Exec& exec, const Mat& probs,
                                                 const IVec& targets, int V, Scalar dloss) {
  crossentropy_backward(exec, probs, targets, V, dloss, Half());
}

template <class Scalar, class Exec>
void Layers<Scalar, Exec>::crossentropy_backward(const Exec& exec, const Mat& probs,
                                                 const IVec& targets, int V, Scalar dloss,
                                                 const Half& out) {
  using Policy = Kokkos::TeamPolicy<Exec>;
  const int Vp = probs.extent_int(1);
  const bool to_half = out.extent(0) > 0;
  Kokkos::parallel_for(
      "ra::model::crossentropy_backward", Policy(exec, probs.extent_int(0), Kokkos::AUTO),
      KOKKOS_LAMBDA(const typename Policy::member_type& team) {
        const int n = team.league_rank(), target = targets(n);
        Kokkos::parallel_for(Kokkos::TeamThreadRange(team, Vp), [&](int v) {
          const Scalar p = probs(n, v) - (v == target ? Scalar(1) : Scalar(0));
          const Scalar g = v < V ? p * dloss : Scalar(0);
          if (to_half)
            out(n, v) = static_cast<bf16>(static_cast<float>(g));
          else
            probs(n, v) = g;
        });
      });
}

template <class Scalar, class Exec>
void Layers<Scalar, Exec>::adamw_update(const Exec& exec, const Vec& params, const Vec& grads,
                                        const Vec& m, const Vec& v, std::size_t n_decay,
                                        const AdamWConfig& hp, long step) {
  const Scalar lr = Scalar(hp.lr), b1 = Scalar(hp.beta1), b2 = Scalar(hp.beta2);
  const Scalar eps = Scalar(hp.eps), wd = Scalar(hp.weight_decay);
  const Scalar bc1 = Scalar(1 - std::pow(hp.beta1, double(step)));
  const Scalar bc2 = Scalar(1 - std::pow(hp.beta2, double(step)));
  Kokkos::parallel_for(
      "ra::model::adamw", Kokkos::RangePolicy<Exec>(exec, 0, params.extent(0)),
      KOKKOS_LAMBDA(std::size_t i) {
        const Scalar g = grads(i);
        const Scalar mi = b1 * m(i) + (Scalar(1) - b1) * g;
        const Scalar vi = b2 * v(i) + (Scalar(1) - b2) * g * g;
        m(i) = mi, v(i) = vi;
        const Scalar update = (mi / bc1) / (Kokkos::sqrt(vi / bc2) + eps);
        params(i) -= lr * (update + (i < n_decay ? wd * params(i) : Scalar(0)));
      });
}

template <class Scalar, class Exec>
double Layers<Scalar, Exec>::sum_squares(const Exec& exec, const Vec& x) {
  double total = 0;
  Kokkos::parallel_reduce(
      "ra::model::sum_squares", Kokkos::RangePolicy<Exec>(exec, 0, x.extent(0)),
      KOKKOS_LAMBDA(std::size_t i, double& s) { s += double(x(i)) * double(x(i)); }, total);
  return total;
}

template <class Scalar, class Exec>
void Layers<Scalar, Exec>::scale(const Exec& exec, const Vec& x, Scalar s) {
  Kokkos::parallel_for(
      "ra::model::scale", Kokkos::RangePolicy<Exec>(exec, 0, x.extent(0)),
      KOKKOS_LAMBDA(std::size_t i) { x(i) *= s; });
}

}  // namespace ra::model
