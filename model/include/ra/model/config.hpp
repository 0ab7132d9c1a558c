// GPT-2 configuration: sizes, presets, the attention kernel of every layer,
// and the layout of the one flat parameter buffer.
//
// No Kokkos here, so the float64 reference model (model/reference) and the
// trainer's command line can use it without a device.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

namespace ra::model {

// The two discoverability forms of the seeds (../shared/docs/RA.md):
// a learned table d[h, t] ([H, T_max], broadcast over the batch), or
// content-based d = sigmoid(K . u_h) with a learned u [H, D].
enum class DiscForm { table, content };

// What the trainer's annealing scale a (GPT2::set_reciprocity_scale) fades.
//   rec       effective gates (w_std, a w_rec, w_disc): the seeds' formula.
//             At a = 0 the logits are w_std S + w_disc d, which is not SDPA,
//             so the layer keeps running its RA kernel.
//   rec_disc  effective gates (w_std, a w_rec, a w_disc): at a = 0 the logits
//             are w_std S, which the SDPA kernel computes exactly on the
//             input (w_std Q, K, V), so the layer dispatches to SDPA
//             (sdpa_fused for fused RA variants, sdpa_open for ra_open).
// The default is rec_disc: it is the only one whose end point is standard
// attention and so the only one where annealing saves the reciprocal work.
enum class Anneal { rec, rec_disc };

// Storage type of the attention kernels' [B, H, T, D] tensors (q, k, v, o
// and their gradients):
//   scalar  the model's own Scalar (named "float": the trainer's models are float)
//   bf16    bf16 inside a float model, so the fused kernels take their
//           tensor-core path on CUDA; the layout kernels convert on the way
//           in and out, and gates, d, lse and their gradients stay float.
// bf16 needs a float model, fused variants in every layer (the open-coded
// kernels are float-only in the model) and a build with a real bf16 type
// (CUDA); validate() and GPT2's constructor say which one is missing.
enum class AttentionPrecision { scalar, bf16 };

// The linear layers' matrix products (every GEMM of the model outside the
// attention kernels: qkv, attention projection, MLP, LM head):
//   fp32  float operands and math, through KokkosBlas::gemm (cuBLAS SGEMM on
//         CUDA, the host BLAS elsewhere)
//   tf32  float storage, TF32 tensor-core math (10-bit operand mantissas,
//         fp32 accumulation): PyTorch's allow_tf32
//   bf16  bf16 copies of the weights and of the GEMMs' inputs, fp32
//         accumulation and fp32 outputs; master weights, optimizer state,
//         the residual stream and every non-GEMM layer stay float. This is
//         what PyTorch's bf16 autocast does for linear layers.
// tf32 and bf16 call cuBLAS directly (Kokkos Kernels cannot express them),
// so they need the CUDA execution space; see ra/model/matmul.hpp.
enum class MatmulPrecision { fp32, tf32, bf16 };

struct AttentionConfig {
  std::string variant = "sdpa_fused";  // every layer not listed in ra_layers
  // Layers (0-based, inclusive ranges) that use ra_variant instead:
  // "" none, "all", or a list like "4-8" or "0,2,5-7" (the seeds' hybrid).
  std::string ra_layers;
  std::string ra_variant = "ra_fused";
  int window = -1;  // ra_window's reciprocity window (required >= 0 by ra_window layers)
  DiscForm disc = DiscForm::table;
  Anneal anneal = Anneal::rec_disc;
  int tile = 0;     // fused kernels' tile (0: automatic), see ra::kk::Options
  AttentionPrecision precision = AttentionPrecision::scalar;
};

struct GPTConfig {
  std::string name = "custom";
  int L = 0;       // layers
  int H = 0;       // heads
  int C = 0;       // width (C = H * D)
  int T_max = 0;   // context (position table size)
  int V = 0;       // vocabulary
  int Vp = 0;      // padded vocabulary of the embedding / LM head (>= V; 0: padded_vocab(V))
  AttentionConfig attn;
  MatmulPrecision matmul = MatmulPrecision::fp32;

  int head_dim() const { return H > 0 ? C / H : 0; }
  int padded() const;  // Vp, or padded_vocab(V) when Vp is 0
  // Throws std::invalid_argument naming the first problem (sizes, C % H,
  // fused head dim <= 128, attention names, layer list, window, bf16
  // attention in a build without bf16 or with an open-coded layer, tf32 or
  // bf16 matmuls in a build without CUDA).
  void validate() const;
  // One line of key=value pairs (for run files and logs).
  std::string describe() const;
};

// V rounded up to a multiple of 128 (50257 -> 50304), as llm.c pads it.
int padded_vocab(int V);

// gpt2-124m (12 x 12 x 768, T 1024), gpt2-mini (6 x 6 x 384, T 512: one GPU
// in under an hour), gpt2-tiny (4 x 4 x 128, T 128: learns in minutes on a
// 2-core CPU); all with GPT-2's vocabulary 50257 padded to 50304.
GPTConfig preset(const std::string& name);
const std::vector<std::string>& preset_names();

DiscForm parse_disc_form(const std::string& name);  // "table" | "content"
Anneal parse_anneal(const std::string& name);       // "rec" | "rec_disc"
std::string disc_form_name(DiscForm f);
std::string anneal_name(Anneal a);
AttentionPrecision parse_attention_precision(const std::string& name);  // "float" | "bf16"
std::string attention_precision_name(AttentionPrecision p);
MatmulPrecision parse_matmul_precision(const std::string& name);  // "float" | "tf32" | "bf16"
std::string matmul_precision_name(MatmulPrecision p);
// Whether this build has a real bf16 type (RA_HAVE_BF16: CUDA builds).
bool build_has_bf16();

// "4-8" -> {4,5,6,7,8}; "0,2,5-7"; "all"; "" -> {}. Sorted, no duplicates.
// Throws std::invalid_argument for syntax errors and layers outside [0, L).
std::vector<int> parse_layer_list(const std::string& spec, int L);

// The attention kernel one layer runs.
struct LayerAttention {
  std::string variant;  // ra::kk::Variant name
  bool ra = false, fused = false;
  int window = -1;      // >= 0 only for ra_window
};
std::vector<LayerAttention> layer_attention(const GPTConfig& cfg);

// One named tensor in the flat parameter buffer.
struct ParamTensor {
  std::string name;           // "wte", "h3.qkv.w", "h3.gates", "lnf.b", ...
  std::size_t offset = 0;     // elements from the start of the buffer
  std::size_t size = 0;       // elements
  std::vector<int> shape;
  bool decay = false;         // AdamW weight decay applies (2-D weights only)
  int layer = -1;             // -1 for embeddings and the final LayerNorm
};

// The flat parameter buffer: every weight-decayed tensor first, in
// [0, n_decay), then the rest (biases, LayerNorm, RA gates and
// discoverability), so AdamW's decay mask is one comparison. Offsets are
// multiples of kAlign elements; the gaps are zero and stay zero.
struct ParamLayout {
  static constexpr std::size_t kAlign = 64;
  std::vector<ParamTensor> tensors;
  std::size_t total = 0, n_decay = 0;
  // Throws std::out_of_range naming the tensor when there is none.
  const ParamTensor& at(const std::string& name) const;
  bool has(const std::string& name) const;
};
// Per layer: h<l>.ln1.{w,b} [C], h<l>.qkv.{w [3C,C], b [3C]},
// h<l>.attn_proj.{w [C,C], b [C]}, h<l>.ln2.{w,b}, h<l>.fc.{w [4C,C], b [4C]},
// h<l>.fc_proj.{w [C,4C], b [C]}; RA layers also h<l>.gates [H,3]
// (w_std, w_rec, w_disc) and h<l>.disc_table [H,T_max] or h<l>.disc_u [H,D].
// Model: wte [Vp,C] (tied LM head), wpe [T_max,C], lnf.{w,b} [C].
ParamLayout param_layout(const GPTConfig& cfg);

}  // namespace ra::model
