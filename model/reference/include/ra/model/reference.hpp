// Float64 reference GPT-2: plain loops, no Kokkos, used only by tests as the
// ground truth for the Kokkos layers and the whole model (same parameter
// layout, same attention definitions via backends/reference).
//
// Matrices are dense row-major std::vector<double> with N = B*T rows. Every
// backward ADDS into its gradient outputs (callers zero them), like the
// Kokkos layers do for parameter gradients.
#pragma once

#include <ra/model/config.hpp>

#include <vector>

namespace ra::model::ref {

using Buf = std::vector<double>;

// out[n, :] = wte[tok[n], :] + wpe[n % T, :]
void encoder_forward(int N, int T, int C, const std::vector<int>& tokens, const Buf& wte,
                     const Buf& wpe, Buf& out);
void encoder_backward(int N, int T, int C, const std::vector<int>& tokens, const Buf& dout,
                      Buf& dwte, Buf& dwpe);

void layernorm_forward(int N, int C, const Buf& x, const Buf& w, const Buf& b, Buf& out, Buf& mean,
                       Buf& rstd);
void layernorm_backward(int N, int C, const Buf& dout, const Buf& x, const Buf& w, const Buf& mean,
                        const Buf& rstd, Buf& dx, Buf& dw, Buf& db);

// y = x W^T + b; x [N, K], W [M, K]; b may be empty.
void linear_forward(int N, int K, int M, const Buf& x, const Buf& w, const Buf& b, Buf& y);
void linear_backward(int N, int K, int M, const Buf& dy, const Buf& x, const Buf& w, Buf& dx,
                     Buf& dw, Buf* db);

void gelu_forward(const Buf& x, Buf& y);
void gelu_backward(const Buf& x, const Buf& dy, Buf& dx);

// Softmax over the first V of Vp columns; returns the mean loss.
double crossentropy_forward(int N, int V, int Vp, const Buf& logits, const std::vector<int>& targets,
                            Buf& probs, Buf& losses);
void crossentropy_backward(int N, int V, int Vp, const Buf& probs, const std::vector<int>& targets,
                           double dloss, Buf& dlogits);

// The whole model on one batch (B sequences of T tokens): returns the mean
// loss and adds dL/dparams into grads (layout param_layout(cfg)). rec_scale
// is the annealing scale (GPT2::set_reciprocity_scale); the RA layers always
// run the RA definition with the effective gates (no dispatch here: this is
// what the Kokkos model's SDPA dispatch must agree with).
double gpt2_forward_backward(const GPTConfig& cfg, int B, int T, const Buf& params,
                             const std::vector<int>& inputs, const std::vector<int>& targets,
                             double rec_scale, Buf& grads);

}  // namespace ra::model::ref
