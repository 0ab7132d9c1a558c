// The GPT-2 layers as Kokkos kernels, forward and backward, on 2-D row-major
// activations [N, width] with N = B * T rows (row n = b * T + t).
//
// Conventions:
// * Backward functions ACCUMULATE parameter gradients (dw += ...), so
//   gradient accumulation over micro-batches is a loop of backward calls
//   between GPT2::zero_grad()s. Activation gradients are overwritten unless a
//   function says "+=".
// * Every reduction over rows (bias and LayerNorm parameter gradients,
//   embedding gradients) is done in a fixed order without atomics: results
//   are bit-reproducible run to run on a given backend and thread count.
// * Linear layers' GEMMs go through ra::model::Matmul (matmul.hpp):
//   KokkosBlas::gemm in fp32 (cuBLAS on CUDA, the host BLAS elsewhere), or
//   cuBLAS directly for tf32 and bf16.
//
// Definitions are in layers_impl.hpp, instantiated in instantiate_*.cpp.
#pragma once

#include <ra/model/matmul.hpp>
#include <ra/tensor.hpp>

#include <Kokkos_Core.hpp>

#include <cstddef>
#include <vector>

namespace ra::model {

// Rows grouped by token for the deterministic embedding backward: bucket u
// holds token[u] at rows rows[start[u] .. start[u+1]) (ascending within a
// bucket); token.size() buckets, start has one more entry. Host-side.
struct TokenBuckets {
  std::vector<int> token, start, rows;
};
TokenBuckets token_buckets(const int* tokens, int n);

// AdamW hyperparameters; lr is the rate of this step (the trainer's schedule sets it).
struct AdamWConfig {
  double lr = 3e-4, beta1 = 0.9, beta2 = 0.95, eps = 1e-8, weight_decay = 0.1;
};

template <class Scalar, class Exec>
struct Layers {
  using Mem = typename Exec::memory_space;
  using Vec = Kokkos::View<Scalar*, Kokkos::LayoutRight, Mem>;
  using Mat = Kokkos::View<Scalar**, Kokkos::LayoutRight, Mem>;
  using T3 = Tensor3<Scalar, Exec>;
  using T4 = Tensor4<Scalar, Exec>;
  using IVec = Kokkos::View<int*, Kokkos::LayoutRight, Mem>;

  static constexpr double kLayerNormEps = 1e-5;

  // out[n, :] = wte[tokens[n], :] + wpe[n % T, :]
  static void encoder_forward(const Exec& exec, const IVec& tokens, const Mat& wte, const Mat& wpe,
                              const Mat& out, int T);
  // dwpe[t, :] += sum_b dout[b*T + t, :];  dwte[tok, :] += sum of dout over the
  // rows holding tok. The rows are grouped by token beforehand (on the host,
  // see token_buckets): bucket u holds token bucket_token[u] at rows
  // bucket_rows[bucket_start[u] .. bucket_start[u+1]), so every dwte row is
  // summed by one thread in a fixed order -- no atomics.
  static void encoder_backward(const Exec& exec, const Mat& dout, const IVec& bucket_token,
                               const IVec& bucket_start, const IVec& bucket_rows, int n_buckets,
                               const Mat& dwte, const Mat& dwpe, int T);

  // out = (x - mean) * rstd * w + b per row; saves mean and rstd.
  static void layernorm_forward(const Exec& exec, const Mat& x, const Vec& w, const Vec& b,
                                const Mat& out, const Vec& mean, const Vec& rstd);
  // The same with a bf16 output: under bf16 matmuls the next GEMM reads only
  // that, so the float rows are never written (nor cast afterwards).
  using Half = typename Matmul<Scalar, Exec>::Half;
  static void layernorm_forward_bf16(const Exec& exec, const Mat& x, const Vec& w, const Vec& b,
                                     const Half& out, const Vec& mean, const Vec& rstd);
  // dx += d(LN)/dx . dout; dw += sum_rows dout * xhat; db += sum_rows dout.
  // work: column_sum_work(N, C, 2) elements.
  static void layernorm_backward(const Exec& exec, const Mat& dout, const Mat& x, const Vec& w,
                                 const Vec& mean, const Vec& rstd, const Mat& dx, const Vec& dw,
                                 const Vec& db, const Vec& work);

  // y = residual + x W^T + b, x [N, K], W [M, K], y [N, M]. b and residual may
  // be empty views (no bias / no residual). Fusing the residual add into the
  // GEMM (y starts as residual + b, GEMM with beta = 1) saves a pass over y.
  // The GEMM runs in precision p on the operands' float or bf16 form (see
  // Matmul::Operand); the Mat overloads are the fp32 case.
  using Operand = typename Matmul<Scalar, Exec>::Operand;
  static void linear_forward(const Exec& exec, MatmulPrecision p, const Operand& x, const Operand& w,
                             const Vec& b, const Mat& y, const Mat& residual);
  static void linear_forward(const Exec& exec, const Mat& x, const Mat& w, const Vec& b,
                             const Mat& y, const Mat& residual);
  // dx = dy W (or dx += dy W when accumulate_dx); dW += dy^T x; db += column
  // sums of dy (db may be empty; summed from dy.full, never from bf16).
  // work: column_sum_work(N, M, 1) elements.
  static void linear_backward(const Exec& exec, MatmulPrecision p, const Operand& dy, const Operand& x,
                              const Operand& w, const Mat& dx, bool accumulate_dx, const Mat& dw,
                              const Vec& db, const Vec& work);
  static void linear_backward(const Exec& exec, const Mat& dy, const Mat& x, const Mat& w,
                              const Mat& dx, bool accumulate_dx, const Mat& dw, const Vec& db,
                              const Vec& work);

  // GELU, tanh form: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))).
  static void gelu_forward(const Exec& exec, const Mat& x, const Mat& y);
  static void gelu_forward_bf16(const Exec& exec, const Mat& x, const Half& y);  // bf16 output, as above
  // dx = gelu'(x) * dy; dx may be dy itself (in place).
  static void gelu_backward(const Exec& exec, const Mat& x, const Mat& dy, const Mat& dx);

  // The head-layout kernels below take the [B, H, T, D] tensors in any
  // storage type A: the model's Scalar, or bf16 when the attention runs in
  // bf16 (GPTConfig::attn.precision). They convert on the way in and out, so
  // the bf16 attention costs no extra pass over memory.
  template <class A>
  using Heads = Tensor4<A, Exec>;

  // qkv [B*T, 3C] -> q, k, v [B, H, T, D] (columns [0,C) q, [C,2C) k, [2C,3C)
  // v; head h at h*D). When q_gates is not empty, q of head h is multiplied by
  // q_gates(0, h, kStd): how an annealed RA layer folds w_std into SDPA.
  template <class A>
  static void split_heads(const Exec& exec, const Mat& qkv, const Heads<A>& q, const Heads<A>& k,
                          const Heads<A>& v, const T3& q_gates);
  // The inverse for gradients: dqkv from dq, dk, dv (dq scaled back by
  // q_gates(0, h, kStd) when given).
  template <class A>
  static void merge_heads(const Exec& exec, const Heads<A>& dq, const Heads<A>& dk, const Heads<A>& dv,
                          const Mat& dqkv, const T3& q_gates);
  // o [B, H, T, D] -> y [B*T, C] and back (the attention output and its gradient).
  // y: float rows, or their bf16 copy under bf16 matmuls (Out = Half).
  template <class A, class Out>
  static void heads_to_rows(const Exec& exec, const Heads<A>& o, const Out& y);
  template <class A>
  static void rows_to_heads(const Exec& exec, const Mat& y, const Heads<A>& o);
  // dgates(0, h, kStd) += sum_{b,t,c} dq[b,h,t,c] * q_raw[b*T+t, h*D+c]: the
  // w_std gradient of the folded q = w_std q_raw (q_raw from the qkv buffer).
  template <class A>
  static void folded_wstd_grad(const Exec& exec, const Heads<A>& dq, const Mat& qkv, const T3& dgates);

  // Content-based discoverability d[b,h,t] = sigmoid(K[b,h,t,:] . u[h,:])
  // with K read from the qkv rows (columns [C, 2C)), in Scalar whatever the
  // attention's storage type. Backward: du[h,:] = sum_{b,t} g K[b,h,t,:] and
  // the K share dqkv[:, C + h*D + c] += g u[h,c] with g = dd d (1 - d); call
  // it after merge_heads wrote dqkv.
  static void disc_content_forward(const Exec& exec, const Mat& qkv, const Mat& u, const T3& d);
  static void disc_content_backward(const Exec& exec, const Mat& qkv, const Mat& u, const T3& d,
                                    const T3& dd, const Mat& dqkv, const Mat& du);

  // RA parameters. Effective gates seen by the attention kernel:
  // (w_std, rec_scale * w_rec, disc_scale * w_disc) per head; the gradient
  // pass applies the same chain rule: dgates += (1, rec_scale, disc_scale) * dgates_eff.
  static void effective_gates(const Exec& exec, const T3& gates, const T3& eff, Scalar rec_scale,
                              Scalar disc_scale);
  static void accumulate_gate_grads(const Exec& exec, const T3& dgates_eff, const T3& dgates,
                                    Scalar rec_scale, Scalar disc_scale);
  // The seeds' initial gates (0.5, 0.3, 0.2) in every head of a [H*3] range.
  static void init_gates(const Exec& exec, const Vec& gates);
  // Discoverability table [H, T_max] read for T <= T_max positions:
  // d[b,h,t] = table[h,t]; dtable[h,t] += sum_b dd[b,h,t]. (The kernels in
  // ra/kokkos/discoverability.hpp take a table of exactly T columns.)
  static void disc_table_forward(const Exec& exec, const Mat& table, const T3& d);
  static void disc_table_backward(const Exec& exec, const T3& dd, const Mat& dtable);
  // dst += src, element-wise over equal spans.
  static void accumulate(const Exec& exec, const Vec& dst, const Vec& src);

  // Softmax cross-entropy over the first V of Vp columns. logits are replaced
  // by the probabilities (0 in the padded columns); losses[n] = -log p[n, target[n]].
  // Returns the mean loss over the N rows.
  static double crossentropy_forward(const Exec& exec, const Mat& logits, const IVec& targets,
                                     int V, const Vec& losses);
  // probs -> dlogits in place: (p - onehot(target)) * dloss for v < V, 0 beyond.
  static void crossentropy_backward(const Exec& exec, const Mat& probs, const IVec& targets, int V,
                                    Scalar dloss);
  // The same, written as bf16 into out [N, Vp] (probs untouched): the LM
  // head's bf16 GEMMs read only that, so the float gradient is never stored.
  static void crossentropy_backward(const Exec& exec, const Mat& probs, const IVec& targets, int V,
                                    Scalar dloss, const Half& out);

  // One AdamW step (decoupled weight decay, bias correction for step t >= 1)
  // over the flat buffers; weight decay only on elements [0, n_decay).
  static void adamw_update(const Exec& exec, const Vec& params, const Vec& grads, const Vec& m,
                           const Vec& v, std::size_t n_decay, const AdamWConfig& hp, long step);

  // sum x_i^2 accumulated in double; x *= s.
  static double sum_squares(const Exec& exec, const Vec& x);
  static void scale(const Exec& exec, const Vec& x, Scalar s);

  // Scratch (elements) for deterministic column sums of an [N, M] matrix, n_sums at once.
  static std::size_t column_sum_work(int N, int M, int n_sums);
};

}  // namespace ra::model
