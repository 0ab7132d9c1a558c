// Definitions of ra::model::GPT2. Included only by instantiate_*.cpp: users
// include gpt2.hpp and link the explicit instantiations.
//
// Annealing and the SDPA dispatch (GPTConfig::attn.anneal, set_reciprocity_scale):
// the trainer's scale a multiplies w_rec (and, under Anneal::rec_disc, w_disc)
// before the attention sees the gates, so the parameter gradients are
// a * dL/dw_eff. A layer runs the SDPA kernel instead of its RA kernel only
// when its RA logits are SDPA's logits for every parameter value:
//   L_ij = w_std S_ij + (a w_rec) S_ji + (a w_disc) d_j  with a = 0
//        = w_std S_ij  = s (w_std Q_i) . K_j,
// i.e. under rec_disc with a == 0 exactly. The layer then feeds the SDPA
// kernel q' = w_std q (folded in split_heads, one multiply), gets dq' from it
// and returns dq = w_std dq' and dw_std = sum dq' . q; the gradients of w_rec,
// w_disc and the discoverability parameters are exactly a * (...) = 0, so
// nothing is added. This is the same function and gradient as running the
// RA kernel with gates (w_std, 0, 0) (tested). The dispatch looks at the
// scale, not at the parameter values: a learned w_rec that happens to be 0
// still has a non-zero gradient, which only the RA kernel computes. Under
// Anneal::rec (the seeds' formula, w_disc not faded) a = 0 leaves the
// w_disc d_j bias, which SDPA cannot express, so the RA kernel keeps running.
#pragma once

#include <ra/kokkos/discoverability.hpp>
#include <ra/model/gpt2.hpp>
#include <ra/model/layers_impl.hpp>
#include <ra/rng.hpp>

#include <algorithm>
#include <chrono>
#include <limits>
#include <stdexcept>
#include <utility>

namespace ra::model {

template <class Scalar, class Exec>
struct GPT2<Scalar, Exec>::LayerParams {
  Vec ln1w, ln1b, qkvb, projb, ln2w, ln2b, fcb, fcprojb;
  Mat qkvw, projw, fcw, fcprojw;
  T3 gates;  // [1, H, 3] (w_std, w_rec, w_disc); empty for SDPA layers
  Mat disc;  // discoverability: table [H, T_max] or u [H, D]; empty for SDPA layers
};

template <class Scalar, class Exec>
struct GPT2<Scalar, Exec>::LayerActs {
  Mat ln1, qkv, atty, res2, ln2, fch, fch_gelu, res3;  // [N, width]
  Vec ln1_mean, ln1_rstd, ln2_mean, ln2_rstd;          // [N]
  T3 lse;                                               // [B, H, T]
  T3 d, gates_eff;  // RA layers: discoverability [B,H,T], effective gates [1,H,3]
  // bf16 matmuls: the GEMM inputs' bf16 copies (also what dW reads).
  Half ln1_half, atty_half, ln2_half, fch_gelu_half;
};

// Gradient buffers of one layer's backward, reused by every layer.
template <class Scalar, class Exec>
struct GPT2<Scalar, Exec>::Scratch {
  Mat dres;        // [N, C] gradient of the residual stream
  Mat dln;         // [N, C] gradient of a LayerNorm output / of the attention rows
  Mat dfch, dqkv;  // [N, 4C] and [N, 3C] views of one buffer
  T3 dd, dgates;   // [B, H, T], [1, H, 3]
  Mat du;          // [H, D] content-discoverability gradient before accumulation
  Vec work;        // deterministic column sums
};

template <class Scalar, class Exec>
template <class A>
struct GPT2<Scalar, Exec>::HeadStore {
  using Heads = Tensor4<A, Exec>;
  struct Layer {
    Heads q, k, v, o;  // [B, H, T, D]; o is kept for the backward
  };
  Kokkos::View<A*, Kokkos::LayoutRight, typename Exec::memory_space> buf;  // holds every tensor below
  std::vector<Layer> layers;
  Heads dout, dq, dk, dv;  // one layer's backward, reused by every layer
  // Layers running the same kernel share it (and its workspace); key variant/window.
  std::map<std::string, std::unique_ptr<kk::Attention<A, Exec>>> kernels;
};

namespace detail {

// Hands out aligned ranges of one flat buffer; with a null base it only
// counts, so the same code sizes the buffer and then carves it.
template <class Scalar>
class Carver {
 public:
  explicit Carver(Scalar* base) : base_(base) {}
  template <class View, class... Extents>
  View take(Extents... extents) {
    const std::size_t n = (std::size_t(extents) * ...);
    Scalar* p = base_ ? base_ + used_ : nullptr;
    used_ += (n + 63) / 64 * 64;  // 256-byte aligned rows for the GEMMs
    return p ? View(p, extents...) : View();
  }
  std::size_t used() const { return used_; }

 private:
  Scalar* base_;
  std::size_t used_ = 0;
};

// FNV-1a: a stable per-tensor seed from its name, so a tensor gets the same
// initial values whatever else the layout holds (SDPA and RA models built
// from one seed share every common weight).
inline std::uint64_t name_hash(const std::string& s) {
  std::uint64_t h = 1469598103934665603ull;
  for (unsigned char c : s) h = (h ^ c) * 1099511628211ull;
  return h;
}

inline bool ends_with(const std::string& s, const std::string& tail) {
  return s.size() >= tail.size() && s.compare(s.size() - tail.size(), tail.size(), tail) == 0;
}

}  // namespace detail

template <class Scalar, class Exec>
GPT2<Scalar, Exec>::GPT2(const GPTConfig& cfg, int B, int T, std::uint64_t seed, const Exec& exec)
    : cfg_(cfg), exec_(exec) {
  cfg_.validate();
  const bool bf16_attention = cfg_.attn.precision == AttentionPrecision::bf16;
  if (bf16_attention && !std::is_same_v<Scalar, float>)
    throw std::invalid_argument("GPT2 '" + cfg_.name + "': bf16 attention needs Scalar = float (this model is " +
                                precision_name<Scalar>() + ")");
  if (B < 1 || T < 1 || T > cfg_.T_max)
    throw std::invalid_argument("GPT2 '" + cfg_.name + "': batch B = " + std::to_string(B) +
                                ", T = " + std::to_string(T) + " but need B >= 1 and 1 <= T <= T_max = " +
                                std::to_string(cfg_.T_max));
  if (!Matmul<Scalar, Exec>::supports(cfg_.matmul))
    throw std::invalid_argument("GPT2 '" + cfg_.name + "': matmul precision " + matmul_precision_name(cfg_.matmul) +
                                " needs a float model on the CUDA execution space (this model is " +
                                precision_name<Scalar>() + " on " + Exec::name() + ")");
  bf16_matmul_ = cfg_.matmul == MatmulPrecision::bf16;
  layout_ = param_layout(cfg_);
  layer_attn_ = layer_attention(cfg_);
  B_ = B, T_ = T, N_ = B * T, D_ = cfg_.head_dim(), Vp_ = cfg_.padded();
  const std::size_t P = layout_.total;
  params_ = Vec("gpt2_params", P), grads_ = Vec("gpt2_grads", P);
  m_ = Vec("gpt2_adam_m", P), v_ = Vec("gpt2_adam_v", P);

  // Size the activations, allocate once, carve.
  auto carve = [&](Scalar* base) {
    detail::Carver<Scalar> c(base);
    const int N = N_, C = cfg_.C, H = cfg_.H, D = D_;
    encoded_ = c.template take<Mat>(N, C);
    // Under bf16 matmuls the GEMM inputs exist only as bf16 (LayerActs'
    // *_half): their float buffers get no memory.
    const int Cf = bf16_matmul_ ? 0 : C;
    acts_.assign(cfg_.L, LayerActs());
    for (int l = 0; l < cfg_.L; ++l) {
      auto& a = acts_[l];
      a.ln1 = c.template take<Mat>(N, Cf), a.ln1_mean = c.template take<Vec>(N);
      a.ln1_rstd = c.template take<Vec>(N), a.qkv = c.template take<Mat>(N, 3 * C);
      a.lse = c.template take<T3>(B, H, T);
      if (layer_attn_[l].ra) a.d = c.template take<T3>(B, H, T), a.gates_eff = c.template take<T3>(1, H, 3);
      a.atty = c.template take<Mat>(N, Cf), a.res2 = c.template take<Mat>(N, C);
      a.ln2 = c.template take<Mat>(N, Cf), a.ln2_mean = c.template take<Vec>(N);
      a.ln2_rstd = c.template take<Vec>(N), a.fch = c.template take<Mat>(N, 4 * C);
      a.fch_gelu = c.template take<Mat>(N, 4 * Cf), a.res3 = c.template take<Mat>(N, C);
    }
    lnf_ = c.template take<Mat>(N, Cf), lnf_mean_ = c.template take<Vec>(N);
    lnf_rstd_ = c.template take<Vec>(N), logits_ = c.template take<Mat>(N, Vp_);
    losses_ = c.template take<Vec>(N);
    auto& s = *scratch_;
    s.dres = c.template take<Mat>(N, C), s.dln = c.template take<Mat>(N, C);
    s.dfch = c.template take<Mat>(N, 4 * C);
    s.dqkv = base ? Mat(s.dfch.data(), N, 3 * C) : Mat();
    s.dd = c.template take<T3>(B, H, T), s.dgates = c.template take<T3>(1, H, 3);
    s.du = c.template take<Mat>(H, D);
    const std::size_t work = std::max(Ops::column_sum_work(N, 4 * C, 1), Ops::column_sum_work(N, C, 2));
    s.work = c.template take<Vec>(work);
    return c.used();
  };
  scratch_ = std::make_unique<Scratch>();
  const std::size_t n_acts = carve(nullptr);
  acts_buf_ = decltype(acts_buf_)("gpt2_activations", n_acts);
  carve(acts_buf_.data());

  if (bf16_matmul_) {
    // Every GEMM weight must lie in the decayed range that params_half_ copies.
    for (const auto& t : layout_.tensors)
      if (t.shape.size() == 2 && !t.decay && (detail::ends_with(t.name, ".w") || t.name == "wte"))
        throw std::logic_error("GPT2: GEMM weight " + t.name + " is outside the weight-decayed range");
    // Written before every read (forward casts, backward copies): no zero fill.
    const auto no_init = [](const char* label) { return Kokkos::view_alloc(Kokkos::WithoutInitializing, std::string(label)); };
    params_half_ = decltype(params_half_)(no_init("gpt2_params_bf16"), layout_.n_decay);
    auto carve_half = [&](bf16* base) {
      detail::Carver<bf16> c(base);
      const int N = N_, C = cfg_.C;
      for (auto& a : acts_) {
        a.ln1_half = c.template take<Half>(N, C), a.atty_half = c.template take<Half>(N, C);
        a.ln2_half = c.template take<Half>(N, C), a.fch_gelu_half = c.template take<Half>(N, 4 * C);
      }
      lnf_half_ = c.template take<Half>(N, C);
      return c.used();
    };
    half_buf_ = decltype(half_buf_)(no_init("gpt2_activations_bf16"), carve_half(nullptr));
    carve_half(half_buf_.data());
    dy_half_ = decltype(dy_half_)(no_init("gpt2_grad_bf16"), std::size_t(N_) * std::max(Vp_, 4 * cfg_.C));
  }

  inputs_ = IVec("gpt2_inputs", N_), targets_ = IVec("gpt2_targets", N_);
  bucket_token_ = IVec("gpt2_bucket_token", N_), bucket_start_ = IVec("gpt2_bucket_start", N_ + 1);
  bucket_rows_ = IVec("gpt2_bucket_rows", N_);

  // The one place that decides the attention's storage type.
  if (bf16_attention) {
    heads_bf16_ = std::make_unique<Bf16Heads>();
    allocate_heads(*heads_bf16_);
  } else {
    heads_ = std::make_unique<HeadStore<Scalar>>();
    allocate_heads(*heads_);
  }

  // Build every layer's kernel now, so a shape the kernels cannot run or a
  // workspace that does not fit fails here, not in the first step.
  with_heads([&](auto& heads) {
    for (const auto& la : layer_attn_) attention_kernel(heads, la.variant, la.window);
  });
  init_params(seed);
}

template <class Scalar, class Exec>
GPT2<Scalar, Exec>::~GPT2() = default;

template <class Scalar, class Exec>
typename GPT2<Scalar, Exec>::Vec GPT2<Scalar, Exec>::param(const std::string& name) const {
  const auto& t = layout_.at(name);
  return Vec(params_.data() + t.offset, t.size);
}

template <class Scalar, class Exec>
typename GPT2<Scalar, Exec>::Vec GPT2<Scalar, Exec>::grad(const std::string& name) const {
  const auto& t = layout_.at(name);
  return Vec(grads_.data() + t.offset, t.size);
}

template <class Scalar, class Exec>
typename GPT2<Scalar, Exec>::Mat GPT2<Scalar, Exec>::matrix(const Vec& flat,
                                                            const std::string& name) const {
  const auto& t = layout_.at(name);
  return Mat(flat.data() + t.offset, t.shape.at(0), t.shape.at(1));
}

template <class Scalar, class Exec>
typename GPT2<Scalar, Exec>::LayerParams GPT2<Scalar, Exec>::layer_params(const Vec& flat,
                                                                           int l) const {
  const std::string h = "h" + std::to_string(l) + ".";
  auto vec = [&](const char* what) {
    const auto& t = layout_.at(h + what);
    return Vec(flat.data() + t.offset, t.size);
  };
  LayerParams p;
  p.ln1w = vec("ln1.w"), p.ln1b = vec("ln1.b"), p.qkvb = vec("qkv.b"), p.projb = vec("attn_proj.b");
  p.ln2w = vec("ln2.w"), p.ln2b = vec("ln2.b"), p.fcb = vec("fc.b"), p.fcprojb = vec("fc_proj.b");
  p.qkvw = matrix(flat, h + "qkv.w"), p.projw = matrix(flat, h + "attn_proj.w");
  p.fcw = matrix(flat, h + "fc.w"), p.fcprojw = matrix(flat, h + "fc_proj.w");
  if (layer_attn_[l].ra) {
    p.gates = T3(flat.data() + layout_.at(h + "gates").offset, 1, cfg_.H, 3);
    p.disc = matrix(flat, h + (cfg_.attn.disc == DiscForm::table ? "disc_table" : "disc_u"));
  }
  return p;
}

template <class Scalar, class Exec>
void GPT2<Scalar, Exec>::init_params(std::uint64_t seed) {
  Kokkos::deep_copy(exec_, params_, Scalar(0));
  Kokkos::deep_copy(exec_, grads_, Scalar(0));
  Kokkos::deep_copy(exec_, m_, Scalar(0));
  Kokkos::deep_copy(exec_, v_, Scalar(0));
  step_ = 0;
  // GPT-2: weights N(0, 0.02), the two projections into the residual stream
  // N(0, 0.02 / sqrt(2 L)), biases 0, LayerNorm weights 1. RA: gates
  // (0.5, 0.3, 0.2) per head as in the seeds; the table starts at 0 (no
  // bias), u at N(0, 0.02) like any weight.
  const double resid_std = 0.02 / std::sqrt(2.0 * cfg_.L);
  for (const auto& t : layout_.tensors) {
    Vec view(params_.data() + t.offset, t.size);
    const std::uint64_t tseed = splitmix64(seed ^ detail::name_hash(t.name));
    if (t.decay || detail::ends_with(t.name, "disc_u")) {
      const bool resid = detail::ends_with(t.name, "attn_proj.w") || detail::ends_with(t.name, "fc_proj.w");
      fill_normal(exec_, view, tseed, resid ? resid_std : 0.02);
    } else if (detail::ends_with(t.name, "ln1.w") || detail::ends_with(t.name, "ln2.w") || t.name == "lnf.w") {
      Kokkos::deep_copy(exec_, view, Scalar(1));
    } else if (detail::ends_with(t.name, "gates")) {
      Ops::init_gates(exec_, view);
    }
  }
  // Padded vocabulary rows never see a token or a loss gradient: keep them 0.
  const auto& wte = layout_.at("wte");
  Kokkos::deep_copy(exec_,
                    Kokkos::subview(params_, std::make_pair(wte.offset + std::size_t(cfg_.V) * cfg_.C,
                                                            wte.offset + wte.size)),
                    Scalar(0));
  exec_.fence("GPT2::init_params");
}

template <class Scalar, class Exec>
void GPT2<Scalar, Exec>::set_batch(const std::vector<int>& inputs, const std::vector<int>& targets) {
  auto check = [&](const std::vector<int>& x, const char* what) {
    if (x.size() != std::size_t(N_))
      throw std::invalid_argument(std::string("GPT2::set_batch: ") + what + " has " +
                                  std::to_string(x.size()) + " tokens, expected B*T = " +
                                  std::to_string(N_));
  };
  check(inputs, "inputs");
  if (!targets.empty()) check(targets, "targets");
  set_batch(inputs.data(), targets.empty() ? nullptr : targets.data());
}

template <class Scalar, class Exec>
void GPT2<Scalar, Exec>::set_batch(const int* inputs, const int* targets) {
  if (!inputs) throw std::invalid_argument("GPT2::set_batch: inputs is null");
  auto check = [&](const int* x, const char* what) {
    for (int n = 0; n < N_; ++n)
      if (x[n] < 0 || x[n] >= cfg_.V)
        throw std::invalid_argument(std::string("GPT2::set_batch: ") + what + "[" + std::to_string(n) +
                                    "] = " + std::to_string(x[n]) + " is outside the vocabulary [0, " +
                                    std::to_string(cfg_.V) + ")");
  };
  check(inputs, "inputs");
  if (targets) check(targets, "targets");

  const TokenBuckets buckets = token_buckets(inputs, N_);
  n_buckets_ = int(buckets.token.size());
  auto upload = [&](const IVec& dst, const int* src, std::size_t n) {
    Kokkos::View<const int*, Kokkos::HostSpace, Kokkos::MemoryTraits<Kokkos::Unmanaged>> h(src, n);
    Kokkos::deep_copy(exec_, Kokkos::subview(dst, std::make_pair(std::size_t(0), n)), h);
  };
  const std::vector<int> no_targets(targets ? 0 : N_, 0);
  upload(inputs_, inputs, N_);
  upload(targets_, targets ? targets : no_targets.data(), N_);
  upload(bucket_token_, buckets.token.data(), buckets.token.size());
  upload(bucket_start_, buckets.start.data(), buckets.start.size());
  upload(bucket_rows_, buckets.rows.data(), buckets.rows.size());
  exec_.fence("GPT2::set_batch");  // the host buffers die here
  has_targets_ = targets != nullptr;
  batch_set_ = true;
  forward_done_ = false;
}

template <class Scalar, class Exec>
template <class Fn>
void GPT2<Scalar, Exec>::with_heads(Fn&& fn) const {
  if (heads_bf16_)
    fn(*heads_bf16_);
  else
    fn(*heads_);
}

template <class Scalar, class Exec>
template <class A>
void GPT2<Scalar, Exec>::allocate_heads(HeadStore<A>& heads) {
  using Heads = typename HeadStore<A>::Heads;
  const int B = B_, H = cfg_.H, T = T_, D = D_;
  // Same carving as the activations: size first, then allocate once.
  auto carve = [&](A* base) {
    detail::Carver<A> c(base);
    heads.layers.assign(cfg_.L, typename HeadStore<A>::Layer());
    for (auto& h : heads.layers) {
      h.q = c.template take<Heads>(B, H, T, D), h.k = c.template take<Heads>(B, H, T, D);
      h.v = c.template take<Heads>(B, H, T, D), h.o = c.template take<Heads>(B, H, T, D);
    }
    heads.dout = c.template take<Heads>(B, H, T, D), heads.dq = c.template take<Heads>(B, H, T, D);
    heads.dk = c.template take<Heads>(B, H, T, D), heads.dv = c.template take<Heads>(B, H, T, D);
    return c.used();
  };
  const std::size_t n = carve(nullptr);
  heads.buf = decltype(heads.buf)("gpt2_attention_heads", n);
  carve(heads.buf.data());
}

template <class Scalar, class Exec>
template <class A>
kk::Attention<A, Exec>& GPT2<Scalar, Exec>::attention_kernel(HeadStore<A>& heads, const std::string& variant,
                                                            int window) {
  const std::string key = variant + "/" + std::to_string(window);
  auto it = heads.kernels.find(key);
  if (it == heads.kernels.end()) {
    kk::Options opt;
    opt.window = window;
    opt.tile = cfg_.attn.tile;
    auto kernel = std::make_unique<kk::Attention<A, Exec>>(kk::parse_variant(variant),
                                                           Shape{B_, cfg_.H, T_, D_}, opt, exec_);
    it = heads.kernels.emplace(key, std::move(kernel)).first;
  }
  return *it->second;
}

template <class Scalar, class Exec>
bool GPT2<Scalar, Exec>::sdpa_dispatch(int l, double scale) const {
  return layer_attn_[l].ra && cfg_.attn.anneal == Anneal::rec_disc && scale == 0.0;
}

template <class Scalar, class Exec>
std::vector<std::string> GPT2<Scalar, Exec>::layer_kernels() const {
  std::vector<std::string> out;
  for (int l = 0; l < cfg_.L; ++l)
    out.push_back(sdpa_dispatch(l, rec_scale_) ? (layer_attn_[l].fused ? "sdpa_fused" : "sdpa_open")
                                               : layer_attn_[l].variant);
  return out;
}

template <class Scalar, class Exec>
void GPT2<Scalar, Exec>::set_reciprocity_scale(double a) {
  if (!(a >= 0.0 && a <= 1.0))
    throw std::invalid_argument("GPT2::set_reciprocity_scale: scale " + std::to_string(a) +
                                " is outside [0, 1]");
  rec_scale_ = a;
  // Build the SDPA kernels now rather than inside a pass (in the attention's
  // storage type: a fused RA layer in bf16 dispatches to sdpa_fused in bf16).
  const auto kernels = layer_kernels();
  with_heads([&](auto& heads) {
    for (int l = 0; l < cfg_.L; ++l)
      if (sdpa_dispatch(l, a)) attention_kernel(heads, kernels[l], -1);
  });
}

template <class Scalar, class Exec>
template <class Fn>
void GPT2<Scalar, Exec>::timed(double& ms, Fn&& fn) {
  if (!time_attention_) return fn();
  exec_.fence("GPT2: attention timing");
  const auto t0 = std::chrono::steady_clock::now();
  fn();
  exec_.fence("GPT2: attention timing");
  ms += std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

// The [B, H, T, D] tensors in the attention's storage type A; lse, gates, d
// and their gradients are Scalar (= accum_t<A>: float for bf16).
template <class Scalar, class Exec>
template <class A>
kk::AttentionTensors<A, Exec> GPT2<Scalar, Exec>::attention_tensors(const HeadStore<A>& heads, int l) const {
  const auto& a = acts_[l];
  const auto& s = *scratch_;
  const auto& h = heads.layers[l];
  kk::AttentionTensors<A, Exec> t;
  t.q = h.q, t.k = h.k, t.v = h.v, t.o = h.o, t.lse = a.lse, t.gates = a.gates_eff, t.d = a.d;
  t.dout = heads.dout, t.dq = heads.dq, t.dk = heads.dk, t.dv = heads.dv, t.dd = s.dd, t.dgates = s.dgates;
  return t;
}

template <class Scalar, class Exec>
template <class A>
kk::Attention<A, Exec>& GPT2<Scalar, Exec>::layer_kernel(HeadStore<A>& heads, int l) {
  if (!sdpa_dispatch(l, pass_scale_))
    return attention_kernel(heads, layer_attn_[l].variant, layer_attn_[l].window);
  return attention_kernel(heads, layer_attn_[l].fused ? "sdpa_fused" : "sdpa_open", -1);
}

template <class Scalar, class Exec>
void GPT2<Scalar, Exec>::disc_forward(int l, const LayerParams& p) {
  const auto& a = acts_[l];
  if (cfg_.attn.disc == DiscForm::content)
    Ops::disc_content_forward(exec_, a.qkv, p.disc, a.d);  // K from the Scalar rows, not the (maybe bf16) heads
  else
    Ops::disc_table_forward(exec_, p.disc, a.d);
}

template <class Scalar, class Exec>
void GPT2<Scalar, Exec>::disc_backward(int l, const LayerParams& p, const LayerParams& g) {
  const auto& a = acts_[l];
  const auto& s = *scratch_;
  if (cfg_.attn.disc == DiscForm::content) {
    // Adds the d = sigmoid(K.u) share to the K columns of dqkv (after merge_heads wrote them).
    Ops::disc_content_backward(exec_, a.qkv, p.disc, a.d, s.dd, s.dqkv, s.du);
    Ops::accumulate(exec_, Vec(g.disc.data(), g.disc.span()), Vec(s.du.data(), s.du.span()));
  } else {
    Ops::disc_table_backward(exec_, s.dd, g.disc);
  }
}

template <class Scalar, class Exec>
Scalar GPT2<Scalar, Exec>::disc_scale() const {
  return cfg_.attn.anneal == Anneal::rec_disc ? Scalar(pass_scale_) : Scalar(1);
}

template <class Scalar, class Exec>
typename GPT2<Scalar, Exec>::Operand GPT2<Scalar, Exec>::weight(const Mat& w) const {
  if (!bf16_matmul_) return Operand{w, {}};
  const std::size_t offset = std::size_t(w.data() - params_.data());
  return Operand{w, Half(params_half_.data() + offset, w.extent(0), w.extent(1))};
}

template <class Scalar, class Exec>
typename GPT2<Scalar, Exec>::Operand GPT2<Scalar, Exec>::saved(const Mat& x, const Half& half) const {
  return bf16_matmul_ ? Operand{x, half} : Operand{x, {}};
}

template <class Scalar, class Exec>
typename GPT2<Scalar, Exec>::Operand GPT2<Scalar, Exec>::grad_input(const Mat& dy) const {
  if (!bf16_matmul_) return Operand{dy, {}};
  const Half half(dy_half_.data(), dy.extent(0), dy.extent(1));
  Matmul<Scalar, Exec>::to_half(exec_, dy, half);
  return Operand{dy, half};
}

template <class Scalar, class Exec>
template <class A>
void GPT2<Scalar, Exec>::layer_forward(int l, HeadStore<A>& heads) {
  const auto p = layer_params(params_, l);
  const auto& a = acts_[l];
  const Mat in = l == 0 ? encoded_ : acts_[l - 1].res3;
  const bool ra = layer_attn_[l].ra, fold = sdpa_dispatch(l, pass_scale_);
  // Under bf16 matmuls the GEMM inputs (LayerNorm, GELU and attention rows)
  // are written as bf16 only: their float form would be read by nothing.
  if (bf16_matmul_)
    Ops::layernorm_forward_bf16(exec_, in, p.ln1w, p.ln1b, a.ln1_half, a.ln1_mean, a.ln1_rstd);
  else
    Ops::layernorm_forward(exec_, in, p.ln1w, p.ln1b, a.ln1, a.ln1_mean, a.ln1_rstd);
  const auto mm = cfg_.matmul;
  Ops::linear_forward(exec_, mm, saved(a.ln1, a.ln1_half), weight(p.qkvw), p.qkvb, a.qkv, Mat());
  if (ra) Ops::effective_gates(exec_, p.gates, a.gates_eff, Scalar(pass_scale_), disc_scale());
  const auto& h = heads.layers[l];
  // Writes the attention's storage type directly (bf16: no separate conversion pass).
  Ops::split_heads(exec_, a.qkv, h.q, h.k, h.v, fold ? a.gates_eff : T3());
  const auto t = attention_tensors(heads, l);
  auto& kernel = layer_kernel(heads, l);
  timed(attn_fwd_ms_, [&] {
    if (ra && !fold) disc_forward(l, p);
    kernel.forward(t);
  });
  if (bf16_matmul_)
    Ops::heads_to_rows(exec_, h.o, a.atty_half);
  else
    Ops::heads_to_rows(exec_, h.o, a.atty);
  Ops::linear_forward(exec_, mm, saved(a.atty, a.atty_half), weight(p.projw), p.projb, a.res2, in);
  if (bf16_matmul_)
    Ops::layernorm_forward_bf16(exec_, a.res2, p.ln2w, p.ln2b, a.ln2_half, a.ln2_mean, a.ln2_rstd);
  else
    Ops::layernorm_forward(exec_, a.res2, p.ln2w, p.ln2b, a.ln2, a.ln2_mean, a.ln2_rstd);
  Ops::linear_forward(exec_, mm, saved(a.ln2, a.ln2_half), weight(p.fcw), p.fcb, a.fch, Mat());
  if (bf16_matmul_)
    Ops::gelu_forward_bf16(exec_, a.fch, a.fch_gelu_half);
  else
    Ops::gelu_forward(exec_, a.fch, a.fch_gelu);
  Ops::linear_forward(exec_, mm, saved(a.fch_gelu, a.fch_gelu_half), weight(p.fcprojw), p.fcprojb, a.res3, a.res2);
}

template <class Scalar, class Exec>
template <class A>
void GPT2<Scalar, Exec>::layer_backward(int l, HeadStore<A>& heads) {
  const auto p = layer_params(params_, l), g = layer_params(grads_, l);
  const auto& a = acts_[l];
  const auto& s = *scratch_;
  const Mat in = l == 0 ? encoded_ : acts_[l - 1].res3;
  const bool ra = layer_attn_[l].ra, fold = sdpa_dispatch(l, pass_scale_);
  // s.dres holds dL/d(res3); the residual paths pass it through unchanged.
  const auto mm = cfg_.matmul;
  Ops::linear_backward(exec_, mm, grad_input(s.dres), saved(a.fch_gelu, a.fch_gelu_half), weight(p.fcprojw),
                       s.dfch, false, g.fcprojw, g.fcprojb, s.work);
  Ops::gelu_backward(exec_, a.fch, s.dfch, s.dfch);
  Ops::linear_backward(exec_, mm, grad_input(s.dfch), saved(a.ln2, a.ln2_half), weight(p.fcw), s.dln, false,
                       g.fcw, g.fcb, s.work);
  Ops::layernorm_backward(exec_, s.dln, a.res2, p.ln2w, a.ln2_mean, a.ln2_rstd, s.dres, g.ln2w, g.ln2b, s.work);
  Ops::linear_backward(exec_, mm, grad_input(s.dres), saved(a.atty, a.atty_half), weight(p.projw), s.dln, false,
                       g.projw, g.projb, s.work);
  Ops::rows_to_heads(exec_, s.dln, heads.dout);
  const auto t = attention_tensors(heads, l);
  auto& kernel = layer_kernel(heads, l);
  timed(attn_bwd_ms_, [&] {
    kernel.backward(t);
    if (ra && !fold) Ops::accumulate_gate_grads(exec_, s.dgates, g.gates, Scalar(pass_scale_), disc_scale());
  });
  if (fold) Ops::folded_wstd_grad(exec_, heads.dq, a.qkv, g.gates);
  // Back to Scalar rows; the discoverability's share of dK is added to them
  // afterwards, in Scalar (never rounded to the heads' storage type).
  Ops::merge_heads(exec_, heads.dq, heads.dk, heads.dv, s.dqkv, fold ? a.gates_eff : T3());
  if (ra && !fold) timed(attn_bwd_ms_, [&] { disc_backward(l, p, g); });
  Ops::linear_backward(exec_, mm, grad_input(s.dqkv), saved(a.ln1, a.ln1_half), weight(p.qkvw), s.dln, false,
                       g.qkvw, g.qkvb, s.work);
  Ops::layernorm_backward(exec_, s.dln, in, p.ln1w, a.ln1_mean, a.ln1_rstd, s.dres, g.ln1w, g.ln1b, s.work);
}

template <class Scalar, class Exec>
double GPT2<Scalar, Exec>::forward() {
  if (!batch_set_) throw std::logic_error("GPT2::forward: no batch (call set_batch first)");
  // The scale this pass runs with: backward uses the same one even if the
  // trainer changes the scale in between.
  pass_scale_ = rec_scale_;
  const Mat wte = matrix(params_, "wte"), wpe = matrix(params_, "wpe");
  // bf16 matmuls: this pass's bf16 weights from the float masters (whoever
  // changed params_ since: the optimizer, a checkpoint load, a test).
  if (bf16_matmul_) Matmul<Scalar, Exec>::to_half(exec_, params_.data(), params_half_.data(), layout_.n_decay);
  Ops::encoder_forward(exec_, inputs_, wte, wpe, encoded_, T_);
  with_heads([&](auto& heads) {
    for (int l = 0; l < cfg_.L; ++l) layer_forward(l, heads);
  });
  if (bf16_matmul_)
    Ops::layernorm_forward_bf16(exec_, acts_.back().res3, param("lnf.w"), param("lnf.b"), lnf_half_, lnf_mean_,
                                lnf_rstd_);
  else
    Ops::layernorm_forward(exec_, acts_.back().res3, param("lnf.w"), param("lnf.b"), lnf_, lnf_mean_, lnf_rstd_);
  Ops::linear_forward(exec_, cfg_.matmul, saved(lnf_, lnf_half_), weight(wte), Vec(), logits_, Mat());
  forward_done_ = true;
  if (!has_targets_) {
    exec_.fence("GPT2::forward");
    return std::numeric_limits<double>::quiet_NaN();
  }
  return Ops::crossentropy_forward(exec_, logits_, targets_, cfg_.V, losses_);
}

template <class Scalar, class Exec>
void GPT2<Scalar, Exec>::backward() {
  if (!forward_done_ || !has_targets_)
    throw std::logic_error("GPT2::backward: needs a forward() with targets since the last set_batch/backward");
  const auto& s = *scratch_;
  // probs -> dlogits; the loss is the mean over the N positions. In place,
  // or under bf16 matmuls straight into the bf16 copy the GEMMs read.
  const Mat wte = matrix(params_, "wte"), dwte = matrix(grads_, "wte");
  Operand dlogits{logits_, {}};
  if (bf16_matmul_) dlogits.half = Half(dy_half_.data(), N_, Vp_);
  Ops::crossentropy_backward(exec_, logits_, targets_, cfg_.V, Scalar(1.0 / N_), dlogits.half);
  Ops::linear_backward(exec_, cfg_.matmul, dlogits, saved(lnf_, lnf_half_), weight(wte), s.dln, false, dwte, Vec(),
                       s.work);
  Kokkos::deep_copy(exec_, s.dres, Scalar(0));
  Ops::layernorm_backward(exec_, s.dln, acts_.back().res3, param("lnf.w"), lnf_mean_, lnf_rstd_, s.dres,
                          grad("lnf.w"), grad("lnf.b"), s.work);
  with_heads([&](auto& heads) {
    for (int l = cfg_.L - 1; l >= 0; --l) layer_backward(l, heads);
  });
  Ops::encoder_backward(exec_, s.dres, bucket_token_, bucket_start_, bucket_rows_, n_buckets_, dwte,
                        matrix(grads_, "wpe"), T_);
  forward_done_ = false;  // the logits now hold their gradient
}

template <class Scalar, class Exec>
void GPT2<Scalar, Exec>::zero_grad() {
  Kokkos::deep_copy(exec_, grads_, Scalar(0));
}

template <class Scalar, class Exec>
double GPT2<Scalar, Exec>::grad_norm() const {
  return std::sqrt(Ops::sum_squares(exec_, grads_));
}

template <class Scalar, class Exec>
double GPT2<Scalar, Exec>::clip_grad_norm(double max_norm) {
  const double norm = grad_norm();
  if (max_norm > 0 && norm > max_norm) Ops::scale(exec_, grads_, Scalar(max_norm / norm));
  return norm;
}

template <class Scalar, class Exec>
void GPT2<Scalar, Exec>::step(const AdamWConfig& hp) {
  ++step_;
  Ops::adamw_update(exec_, params_, grads_, m_, v_, layout_.n_decay, hp, step_);
}

template <class Scalar, class Exec>
std::vector<LayerGates> GPT2<Scalar, Exec>::gate_means() const {
  const auto kernels = layer_kernels();
  std::vector<LayerGates> out(cfg_.L);
  for (int l = 0; l < cfg_.L; ++l) {
    out[l].layer = l, out[l].ra = layer_attn_[l].ra, out[l].kernel = kernels[l];
    if (!out[l].ra) continue;
    const auto g = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), param("h" + std::to_string(l) + ".gates"));
    for (int h = 0; h < cfg_.H; ++h) {
      out[l].w_std += g(3 * h + kStd) / cfg_.H;
      out[l].w_rec += g(3 * h + kRec) / cfg_.H;
      out[l].w_disc += g(3 * h + kDisc) / cfg_.H;
    }
  }
  return out;
}

template <class Scalar, class Exec>
typename GPT2<Scalar, Exec>::HostState GPT2<Scalar, Exec>::save_state() const {
  auto to_host = [](const Vec& v) {
    const auto h = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), v);
    return std::vector<Scalar>(h.data(), h.data() + h.size());
  };
  return HostState{to_host(params_), to_host(m_), to_host(v_), step_};
}

template <class Scalar, class Exec>
void GPT2<Scalar, Exec>::load_state(const HostState& st) {
  auto to_device = [&](const std::vector<Scalar>& src, const Vec& dst, const char* what) {
    if (src.size() != dst.size())
      throw std::invalid_argument(std::string("GPT2::load_state: ") + what + " has " +
                                  std::to_string(src.size()) + " elements, this model's layout has " +
                                  std::to_string(dst.size()) + " (" + cfg_.describe() + ")");
    Kokkos::View<const Scalar*, Kokkos::HostSpace, Kokkos::MemoryTraits<Kokkos::Unmanaged>> h(src.data(), src.size());
    Kokkos::deep_copy(exec_, dst, h);
  };
  if (st.step < 0) throw std::invalid_argument("GPT2::load_state: negative step count");
  to_device(st.params, params_, "params");
  to_device(st.m, m_, "adam m");
  to_device(st.v, v_, "adam v");
  exec_.fence("GPT2::load_state");
  step_ = st.step;
}

template <class Scalar, class Exec>
std::size_t GPT2<Scalar, Exec>::parameter_bytes() const {
  return 4 * layout_.total * sizeof(Scalar) + params_half_.span() * sizeof(bf16);
}

template <class Scalar, class Exec>
std::size_t GPT2<Scalar, Exec>::activation_bytes() const {
  std::size_t heads_bytes = 0;
  with_heads([&](auto& heads) { heads_bytes = heads.buf.span() * sizeof(typename decltype(heads.buf)::value_type); });
  return acts_buf_.span() * sizeof(Scalar) + heads_bytes + (half_buf_.span() + dy_half_.span()) * sizeof(bf16);
}

template <class Scalar, class Exec>
void GPT2<Scalar, Exec>::poison_activations() {
  Kokkos::deep_copy(exec_, acts_buf_, std::numeric_limits<Scalar>::quiet_NaN());
  with_heads([&](auto& heads) {
    using A = typename decltype(heads.buf)::non_const_value_type;
    // bf16 has no numeric_limits of its own here; a float NaN converts to a bf16 NaN.
    Kokkos::deep_copy(exec_, heads.buf, static_cast<A>(std::numeric_limits<float>::quiet_NaN()));
  });
  if (bf16_matmul_) Kokkos::deep_copy(exec_, half_buf_, static_cast<bf16>(std::numeric_limits<float>::quiet_NaN()));
  exec_.fence("GPT2::poison_activations");
  forward_done_ = false;
}

}  // namespace ra::model
