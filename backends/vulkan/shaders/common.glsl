// Shared by every attention kernel: specialization constants (the tile shape
// is fixed per pipeline so loops have compile-time bounds), push constants
// (the problem, which changes per call without a new pipeline), the buffer
// bindings (one layout for all kernels so one descriptor set serves a whole
// forward + backward), and the per-element building blocks.
//
// Layout conventions match backends/kokkos and backends/reference:
//   q, k, v, o, dout, dq, dk, dv  [B,H,T,D]     lse, d, dd, delta  [B,H,T]
//   gates, dgates                 [Gb,H,3]      (w_std, w_rec, w_disc)
// RA runs in RA.md's folded form, W = 2D wide:
//   Qf_i = [w_std Q_i, w_rec K_i],  Kf_j = [K_j, Q_j],  L_ij = s Qf_i.Kf_j + w_disc d_j
// SDPA is the same kernel with W = D, Qf = Q, Kf = K and no bias.

#extension GL_GOOGLE_include_directive : require

layout(local_size_x_id = 0) in;
layout(constant_id = 1) const uint D = 64;   // head dim
layout(constant_id = 2) const uint W = 64;   // folded width: D (SDPA) or 2D (RA)
layout(constant_id = 3) const uint BR = 16;  // query rows per tile
layout(constant_id = 4) const uint BC = 16;  // key rows per tile
layout(constant_id = 5) const uint RA = 0;   // 1: gates, reciprocal half and bias

const uint NT = gl_WorkGroupSize.x;
// Shared tiles are row-padded by one float: threads walking a column of a
// tile whose row length is a multiple of the bank count would otherwise all
// hit one shared-memory bank.
const uint WP = W + 1;
const uint DP = D + 1;
const uint CP = BC + 1;

layout(push_constant) uniform Push {
  uint B, H, T;
  int window;       // < 0: reciprocity everywhere; else only where i - j <= window
  uint gate_batch;  // Gb: 1 (gates per head) or B
  uint n_tiles;     // ceil(T / BR) (tiles are square: BR == BC)
  float scale;      // 1 / sqrt(D)
} pc;

// The (b, h) a workgroup works on: the dispatch folds B*H into y and z
// (attention.cpp, fold_heads: y = min(B*H, maxComputeWorkGroupCount[1]),
// z = ceil(B*H / y)), so B*H may pass the 65535 workgroups one dimension
// allows. Workgroups past B*H (at most y - 1 of them) return at once:
// workgroup-uniform, before any barrier.
uint head_index() { return gl_WorkGroupID.y + gl_WorkGroupID.z * gl_NumWorkGroups.y; }
bool head_past_end(uint bh) { return bh >= pc.B * pc.H; }

#ifdef RA_FP16
#extension GL_EXT_shader_16bit_storage : require
#extension GL_EXT_shader_explicit_arithmetic_types_float16 : require
#define STORE_T float16_t
#define TO_STORE(x) float16_t(x)
#else
#define STORE_T float
#define TO_STORE(x) (x)
#endif

// [B,H,T,D] tensors hold the storage type; everything else is fp32.
layout(std430, binding = 0) restrict buffer BufQ { STORE_T q[]; };
layout(std430, binding = 1) restrict buffer BufK { STORE_T k[]; };
layout(std430, binding = 2) restrict buffer BufV { STORE_T v[]; };
layout(std430, binding = 3) restrict buffer BufGates { float gates[]; };
layout(std430, binding = 4) restrict buffer BufDisc { float dsc[]; };
layout(std430, binding = 5) restrict buffer BufO { STORE_T o[]; };
layout(std430, binding = 6) restrict buffer BufLse { float lse[]; };
layout(std430, binding = 7) restrict buffer BufDout { STORE_T dout[]; };
layout(std430, binding = 8) restrict buffer BufDq { STORE_T dq[]; };
layout(std430, binding = 9) restrict buffer BufDk { STORE_T dk[]; };
layout(std430, binding = 10) restrict buffer BufDv { STORE_T dv[]; };
layout(std430, binding = 11) restrict buffer BufDd { float dd[]; };
layout(std430, binding = 12) restrict buffer BufDgates { float dgates[]; };
layout(std430, binding = 13) restrict buffer BufDelta { float delta[]; };     // dO_i . O_i
layout(std430, binding = 14) restrict buffer BufPart { float partials[]; };  // [B,H,n_tiles,3]
layout(std430, binding = 15) restrict buffer BufAcc { float acc_ws[]; };     // fp32 gradient accumulators

const uint TILE_PLAIN = 0u;  // no pair in the band: first D columns only (SDPA cost)
const uint TILE_MIXED = 1u;  // the band's edge crosses the tile: both halves, masked per pair
const uint TILE_FULL = 2u;   // every pair in the band: one W-wide product

vec3 gates_of(uint b, uint h) {
  if (RA == 0u) return vec3(1.0, 0.0, 0.0);
  const uint base = ((pc.gate_batch == 1u ? 0u : b) * pc.H + h) * 3u;
  return vec3(gates[base], gates[base + 1u], gates[base + 2u]);
}

bool in_band(uint i, uint j) { return pc.window < 0 || int(i) - int(j) <= pc.window; }

// Tiles are classified once, so work outside the band is skipped, not masked.
uint classify(uint i0, uint j0) {
  if (RA == 0u) return TILE_PLAIN;
  if (pc.window < 0) return TILE_FULL;
  const uint i_last = min(i0 + BR - 1u, pc.T - 1u);
  if (int(i_last) - int(j0) <= pc.window) return TILE_FULL;
  if (int(i0) - int(j0 + BC - 1u) > pc.window) return TILE_PLAIN;
  return TILE_MIXED;
}

bool rec_on(uint kind, uint i, uint j) {
  return kind == TILE_FULL || (kind == TILE_MIXED && in_band(i, j));
}

// Element (row, col) of Qf for query row i (zero past T).
float qf_at(uint bh, uint i, uint c, vec3 g) {
  if (i >= pc.T) return 0.0;
  const uint base = (bh * pc.T + i) * D;
  return c < D ? g.x * float(q[base + c]) : g.y * float(k[base + c - D]);
}
// Element of Kf for key row j (zero past T).
float kf_at(uint bh, uint j, uint c) {
  if (j >= pc.T) return 0.0;
  const uint base = (bh * pc.T + j) * D;
  return c < D ? float(k[base + c]) : float(q[base + c - D]);
}
