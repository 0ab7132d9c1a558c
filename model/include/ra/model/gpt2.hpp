// GPT-2 on Kokkos: one flat parameter buffer with named views into it, one
// flat activation buffer, explicit forward and backward per layer, AdamW.
//
//   embeddings (wte + wpe) -> L pre-LN blocks -> final LN -> LM head (tied to
//   wte) -> softmax cross-entropy over the first V of Vp logits, mean over B*T
//   block: x += proj(attn(split(qkv(ln1(x)))));  x += fc_proj(gelu(fc(ln2(x))))
//
// Each layer's attention is one ra::kk::Variant (GPTConfig::attn). A model is
// built for one batch shape (B, T <= T_max): the attention kernels allocate
// their workspace per shape. Layers running the same kernel share one
// ra::kk::Attention (and so one workspace): a pass runs its layers one after
// another, and backward recomputes what it needs from the saved lse.
// attn.precision = bf16 keeps the attention's [B, H, T, D] tensors in bf16
// (float models on CUDA builds): see HeadStore below.
//
// Typical training step (what ra-train does):
//   model.set_batch(inputs, targets);       // B*T token ids each, row n = b*T + t
//   double loss = model.forward();
//   model.zero_grad();  model.backward();
//   double norm = model.clip_grad_norm(1.0);
//   model.set_reciprocity_scale(a);         // annealing, any time before forward
//   model.step({lr, ...});
#pragma once

#include <ra/kokkos/attention.hpp>
#include <ra/model/config.hpp>
#include <ra/model/layers.hpp>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <type_traits>
#include <vector>

namespace ra::model {

// Mean RA gate parameters of one layer over its heads (raw parameters; the
// attention sees w_rec * scale, and w_disc * scale under Anneal::rec_disc).
struct LayerGates {
  int layer = 0;
  bool ra = false;          // false: an SDPA layer (no gates; the means are 0)
  std::string kernel;       // the kernel the next forward runs for this layer
  double w_std = 0, w_rec = 0, w_disc = 0;
};

template <class Scalar, class Exec>
class GPT2 {
 public:
  using Ops = Layers<Scalar, Exec>;
  using Vec = typename Ops::Vec;
  using Mat = typename Ops::Mat;
  using T3 = typename Ops::T3;
  using T4 = typename Ops::T4;
  using IVec = typename Ops::IVec;
  using Half = typename Matmul<Scalar, Exec>::Half;  // bf16 [rows, cols], for bf16 matmuls

  // Validates the config (std::invalid_argument naming the problem), lays
  // out and initialises the parameters from seed (GPT-2's scheme, the
  // counter-based RNG: the same weights on every backend), allocates the
  // activations for batches of B sequences of T tokens.
  GPT2(const GPTConfig& cfg, int B, int T, std::uint64_t seed, const Exec& exec = Exec());
  ~GPT2();
  GPT2(const GPT2&) = delete;
  GPT2& operator=(const GPT2&) = delete;

  const GPTConfig& config() const { return cfg_; }
  const ParamLayout& layout() const { return layout_; }
  int batch() const { return B_; }
  int seq_len() const { return T_; }

  // Re-initialises every parameter from seed and clears the optimizer state.
  void init_params(std::uint64_t seed);

  // B*T token ids each. Ids must lie in [0, V); targets may be null (forward
  // then computes logits only and returns NaN; backward refuses).
  void set_batch(const int* inputs, const int* targets);
  void set_batch(const std::vector<int>& inputs, const std::vector<int>& targets);

  // Forward pass; returns the mean cross-entropy over the B*T positions.
  // Afterwards probs() holds the softmax (logits only when there were no targets).
  double forward();
  // Backward pass of the last forward; ADDS into grads() (zero_grad() first,
  // or call several times to accumulate micro-batches).
  void backward();
  void zero_grad();

  // Global L2 norm of grads(); clip_grad_norm scales grads by
  // max_norm / norm when norm > max_norm and returns the norm before clipping.
  double grad_norm() const;
  double clip_grad_norm(double max_norm);

  // One AdamW step with hp.lr; weight decay on the 2-D weights only (not on
  // biases, LayerNorm, RA gates or discoverability parameters).
  void step(const AdamWConfig& hp);
  long optimizer_steps() const { return step_; }

  // Reciprocity annealing: effective w_rec = a * w_rec (and w_disc = a *
  // w_disc under Anneal::rec_disc) in every RA layer. Under rec_disc, a = 0
  // exactly makes each RA layer run the SDPA kernel (see gpt2_impl.hpp).
  // Takes effect at the next forward (a backward uses its forward's scale).
  void set_reciprocity_scale(double a);
  double reciprocity_scale() const { return rec_scale_; }
  std::vector<LayerGates> gate_means() const;
  // The kernel (variant name) each layer runs on the next forward.
  std::vector<std::string> layer_kernels() const;

  // Flat buffers, layout().total elements each; named tensors are ranges of
  // them (layout().at(name)). params and the AdamW moments m, v plus
  // optimizer_steps() are the whole training state.
  Vec params() const { return params_; }
  Vec grads() const { return grads_; }
  Vec adam_m() const { return m_; }
  Vec adam_v() const { return v_; }
  Vec param(const std::string& name) const;  // the range of params() holding that tensor
  Vec grad(const std::string& name) const;

  // Host copies for checkpoints: the parameters, the AdamW moments and step
  // count. load_state checks the sizes (std::invalid_argument).
  struct HostState {
    std::vector<Scalar> params, m, v;
    long step = 0;
  };
  HostState save_state() const;
  void load_state(const HostState& s);

  // Probabilities [B*T, Vp] after forward (0 beyond V); per-position losses [B*T].
  Mat probs() const { return logits_; }
  Vec losses() const { return losses_; }

  // Fenced time spent in the attention kernels (and discoverability), summed
  // since the last reset; only measured while enabled (fences cost speed).
  void set_attention_timing(bool on) { time_attention_ = on; }
  double attention_forward_ms() const { return attn_fwd_ms_; }
  double attention_backward_ms() const { return attn_bwd_ms_; }
  void reset_attention_timing() { attn_fwd_ms_ = attn_bwd_ms_ = 0; }
  // Device bytes of parameters + grads + optimizer state (+ the bf16 weight
  // copies under bf16 matmuls), and of activations (+ their bf16 copies).
  std::size_t parameter_bytes() const;
  std::size_t activation_bytes() const;

  // Tests: fill every activation and scratch buffer with NaN, so anything a
  // pass reads before writing shows up in its results.
  void poison_activations();

 private:
  struct LayerParams;
  struct LayerActs;
  struct Scratch;
  // The attention's [B, H, T, D] tensors (every layer's q, k, v, o; one
  // layer's dout, dq, dk, dv) and its kernels, in storage type A.
  template <class A>
  struct HeadStore;
  // attn.precision = bf16 runs the attention in bf16 (float models only; for
  // a double model this type is never built). On host builds bf16 is float.
  using Bf16Heads = HeadStore<std::conditional_t<std::is_same_v<Scalar, float>, bf16, Scalar>>;

  LayerParams layer_params(const Vec& flat, int l) const;
  Mat matrix(const Vec& flat, const std::string& name) const;
  // Calls fn with the one HeadStore this model's attention precision uses.
  template <class Fn>
  void with_heads(Fn&& fn) const;
  template <class A>
  void allocate_heads(HeadStore<A>& heads);
  template <class A>
  kk::Attention<A, Exec>& attention_kernel(HeadStore<A>& heads, const std::string& variant, int window);
  template <class A>
  kk::Attention<A, Exec>& layer_kernel(HeadStore<A>& heads, int l);
  template <class A>
  kk::AttentionTensors<A, Exec> attention_tensors(const HeadStore<A>& heads, int l) const;
  bool sdpa_dispatch(int l, double scale) const;
  template <class A>
  void layer_forward(int l, HeadStore<A>& heads);
  template <class A>
  void layer_backward(int l, HeadStore<A>& heads);
  void disc_forward(int l, const LayerParams& p);
  void disc_backward(int l, const LayerParams& p, const LayerParams& g);
  Scalar disc_scale() const;  // what multiplies w_disc in this pass: the scale under rec_disc, else 1
  template <class Fn>
  void timed(double& ms, Fn&& fn);
  // GEMM operands in the model's matmul precision (GPTConfig::matmul).
  // weight: a 2-D weight of params_ with its bf16 copy (under bf16).
  // saved: a forward activation, which under bf16 exists only as its bf16
  // form (written so by its producer). grad_input: an output gradient, cast
  // into the shared scratch copy under bf16.
  using Operand = typename Ops::Operand;
  Operand weight(const Mat& w) const;
  Operand saved(const Mat& x, const Half& half) const;
  Operand grad_input(const Mat& dy) const;

  GPTConfig cfg_;
  ParamLayout layout_;
  std::vector<LayerAttention> layer_attn_;
  int B_, T_, N_, D_, Vp_;
  Exec exec_;
  Vec params_, grads_, m_, v_;
  Kokkos::View<Scalar*, Kokkos::LayoutRight, typename Exec::memory_space> acts_buf_;
  std::vector<LayerActs> acts_;
  std::unique_ptr<Scratch> scratch_;
  Mat encoded_, lnf_, logits_;
  Vec lnf_mean_, lnf_rstd_, losses_;
  IVec inputs_, targets_, bucket_token_, bucket_start_, bucket_rows_;
  int n_buckets_ = 0;
  bool batch_set_ = false, has_targets_ = false, forward_done_ = false;
  // Exactly one of these is allocated: the only place that decides the
  // attention's storage type (the constructor, from attn.precision).
  std::unique_ptr<HeadStore<Scalar>> heads_;
  std::unique_ptr<Bf16Heads> heads_bf16_;
  // bf16 matmuls only (empty otherwise): bf16 copies of the weights
  // [0, n_decay) of params_ (refreshed at every forward), of the GEMM inputs
  // (carved per layer, see LayerActs) and one scratch for output gradients.
  bool bf16_matmul_ = false;
  Kokkos::View<bf16*, Kokkos::LayoutRight, typename Exec::memory_space> params_half_, half_buf_;
  Half lnf_half_;
  Kokkos::View<bf16*, Kokkos::LayoutRight, typename Exec::memory_space> dy_half_;
  double rec_scale_ = 1.0, pass_scale_ = 1.0;  // set by the trainer; used by the last forward
  long step_ = 0;
  bool time_attention_ = false;
  double attn_fwd_ms_ = 0, attn_bwd_ms_ = 0;
};

}  // namespace ra::model
