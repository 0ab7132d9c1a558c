// Float64 reference for causal SDPA and Reciprocal Attention (RA).
//
// Plain loops, no tiling, no cleverness: this is the ground truth every other
// kernel is checked against (docs: ../shared/docs/RA.md, "Forward"/"Backward").
// All tensors are dense row-major std::vector<double>:
//   q, k, v, o, dq, dk, dv, dout : [B, H, T, D]
//   lse                          : [B, H, T]      row log-sum-exp of the logits
//   d, dd                        : [B, H, T]      discoverability bias per key
//   gates, dgates                : [Gb, H, 3]     (w_std, w_rec, w_disc); Gb is 1
//                                  (shared by the batch) or B (per batch and head)
// Logits (j <= i only; j > i is masked):
//   S_ij = Q_i.K_j / sqrt(D)
//   SDPA: L_ij = S_ij
//   RA:   L_ij = w_std S_ij + w_rec [i - j <= window] S_ji + w_disc d_j
// window < 0 means "no window" (full reciprocity, the RA.md definition).
#pragma once

#include <cstddef>
#include <ra/shape.hpp>

#include <cstdint>
#include <vector>

namespace ra::ref {

using Shape = ra::Shape;  // [B, H, T, D], shared with every backend (core/include/ra/shape.hpp)

struct RaOptions {
  int gate_batch = 1;  // Gb: 1 (gates per head) or B (per batch and head)
  int window = -1;     // reciprocal term only where i - j <= window; < 0: everywhere
};

// Throws std::invalid_argument naming the bad value for wrong sizes, T/D/B/H <= 0.
void sdpa_forward(const Shape& s, const std::vector<double>& q, const std::vector<double>& k,
                  const std::vector<double>& v, std::vector<double>& o, std::vector<double>& lse);

void sdpa_backward(const Shape& s, const std::vector<double>& q, const std::vector<double>& k,
                   const std::vector<double>& v, const std::vector<double>& dout,
                   std::vector<double>& dq, std::vector<double>& dk, std::vector<double>& dv);

void ra_forward(const Shape& s, const RaOptions& opt, const std::vector<double>& q,
                const std::vector<double>& k, const std::vector<double>& v,
                const std::vector<double>& gates, const std::vector<double>& d,
                std::vector<double>& o, std::vector<double>& lse);

void ra_backward(const Shape& s, const RaOptions& opt, const std::vector<double>& q,
                 const std::vector<double>& k, const std::vector<double>& v,
                 const std::vector<double>& gates, const std::vector<double>& d,
                 const std::vector<double>& dout, std::vector<double>& dq,
                 std::vector<double>& dk, std::vector<double>& dv, std::vector<double>& dd,
                 std::vector<double>& dgates);

// The two discoverability forms of the seeds (RA.md), producing d [B, H, T]:
//   table:   d[b,h,t] = table[h,t]                 table: [H, T], learned
//   content: d[b,h,t] = sigmoid(K[b,h,t,:] . u[h])  u: [H, D], learned
// Backward maps dd [B, H, T] to the parameters; the content form also adds
// its share to dk (the attention's own dk is computed separately, so the
// caller passes that in and gets the sum back).
void disc_table_forward(const Shape& s, const std::vector<double>& table, std::vector<double>& d);
void disc_table_backward(const Shape& s, const std::vector<double>& dd,
                         std::vector<double>& dtable);
void disc_content_forward(const Shape& s, const std::vector<double>& k,
                          const std::vector<double>& u, std::vector<double>& d);
void disc_content_backward(const Shape& s, const std::vector<double>& k,
                           const std::vector<double>& u, const std::vector<double>& dd,
                           std::vector<double>& dk, std::vector<double>& du);

}  // namespace ra::ref
