#version 450
// Register-tiled forward ("tiled"): the algorithm and outputs of fwd.comp
// (one workgroup per (b, h, query tile), Kf / V tiles streamed, online
// softmax, O and the natural-log lse), scheduled like a CUDA-core SGEMM, as
// backends/kokkos/fp32_tiled_cuda.cpp's exact-fp32 forward is. fp32 math;
// fp32 storage, or fp16 storage with RA_FP16.
//
// Geometry: 128 invocations, a 64 x 64 logits tile (BR = BC = 64, the spec
// constants are set so by attention.cpp). Invocation t = (ty, tx) =
// (t / 8, t % 8) owns logits rows 4ty..4ty+3 and columns {4tx..4tx+3} u
// {32+4tx..32+4tx+3} (a 4 x 8 micro-tile: 32 fp32 accumulators in
// registers), and O rows 4ty..4ty+3, columns 32m+4tx..+3 (m < DP/32: 16 or
// 32 or 64 more). Per k step an invocation reads one vec4 of Qf and two of Kf
// from shared memory for 32 FMAs; a 32-wide subgroup's 4 ty x 8 tx read
// 4 + 8 + 8 distinct vec4. The two column vec4 are 32 apart so that the 8 tx
// read 128 contiguous bytes. The 8 invocations of a row are 8 consecutive
// lanes of one subgroup (t counts subgroup by subgroup, see main), so the
// row max and sum are three xor-shuffles and no shared memory.
//
// Shared memory (floats; kernel_traits.hpp's tiled_forward_shared_floats()
// mirrors it):
//   union of: 2 stages x [Qf chunk | Kf chunk] (KC = 8 k-values x 64 rows,
//             k-major, row length LD = 68: vec4-aligned rows, and the
//             transposing stores of the loader hit 32 different banks)
//             and V, VC rows x DP (VC: spec constant 6, 64 / 32 / 16 / 8,
//             the most the device's budget holds)
//   Pt:       the probabilities transposed (key-major, LD)
//   bias:     w_disc d_j of the key tile
// Qf is not kept resident: both operands stream through the chunk stages
// for every key tile, which keeps RA's W = 2D within budget at every D.
// The loader scales the Qf half by its gate in registers (w_std Q | w_rec
// K), so the products are plain FMAs. V shares the stages' space: it is
// staged after the logits are done (one barrier more per key tile than
// separate regions, for ~8 KiB less shared memory per workgroup: more
// workgroups per SM, and the layout fits lavapipe's 32 KiB).
//
// Per key tile: barrier; bias; per chunk c: store the prefetched registers
// to stage c & 1, barrier, load chunk c + 1 into registers, FMA on stage
// c & 1 (stage c & 1 was last read by chunk c - 2, which every invocation
// finished before the barrier of chunk c - 1); prefetch chunk 0 of the next
// tile; softmax in registers; P^T -> Pt; per V chunk: barrier, stage V,
// barrier, O += P V. RA tiles that use the reciprocal half run its chunks
// first; a mixed tile (the band's edge crosses it) zeroes them outside the
// band before the w_std half accumulates on top; plain tiles run the D-wide
// half only.
//
// D: any 1..128 (spec constant); DP (32, 64 or 128: a macro, so every
// register array and unrolled loop has a compile-time size) pads O and V
// with zeros. Rows of 16 bytes (D % 4 == 0) load and store as vec4 (fp16:
// f16vec4, 8 bytes); other D element by element.
//
// Masked logits are -3e38, not -inf (Vulkan does not promise inf
// arithmetic): exp2(-3e38 - m) is 0 for any finite row max m.
#extension GL_KHR_shader_subgroup_basic : require
#extension GL_KHR_shader_subgroup_shuffle : require
#extension GL_EXT_control_flow_attributes : require
#include "common.glsl"

#ifndef RA_DP
#error "RA_DP (32, 64 or 128) must be defined"
#endif
const uint DPAD = RA_DP;
const uint NO = DPAD / 32u;  // vec4 column groups of O per invocation
const uint KC = 8u;          // k-values per chunk
const uint LD = 68u;         // k-major row length of the stages and Pt
const uint TB = 64u;         // BR = BC: the logits tile (attention.cpp sets both to 64)
layout(constant_id = 6) const uint VC = 64;  // V rows per staged chunk (divides 64)

const uint STAGE = 2u * KC * LD;  // floats of one stage: [Qf chunk | Kf chunk]
const uint UNION = VC * DPAD > 2u * STAGE ? VC * DPAD : 2u * STAGE;
const uint OFF_PT = UNION;
const uint OFF_BIAS = OFF_PT + TB * LD;
shared vec4 sm4[(OFF_BIAS + TB) / 4u];

#ifdef RA_FP16
#define V4T f16vec4
#else
#define V4T vec4
#endif
// The q, k, v and o buffers seen as 4-element rows (descriptor aliasing):
// one load or store instruction per 4 elements.
layout(std430, binding = 0) restrict readonly buffer BufQ4 { V4T q4[]; };
layout(std430, binding = 1) restrict readonly buffer BufK4 { V4T k4[]; };
layout(std430, binding = 2) restrict readonly buffer BufV4 { V4T v4[]; };
layout(std430, binding = 5) restrict writeonly buffer BufO4 { V4T o4[]; };

const bool VEC = D % 4u == 0u;  // every row a whole number of 4-element groups
const float NEG_BIG = -3.0e38;
const float LOG2E = 1.4426950408889634;
const float LN2 = 0.6931471805599453;

// Columns k..k+3 of row i of q (x = 0), k (1) or v (2); zero past T and D.
vec4 load4(uint x, uint bh, uint i, uint c) {
  if (i >= pc.T || c >= D) return vec4(0.0);
  const uint base = (bh * pc.T + i) * D;
  if (VEC) {
    const uint a = (base + c) / 4u;
    if (x == 0u) return vec4(q4[a]);
    if (x == 1u) return vec4(k4[a]);
    return vec4(v4[a]);
  }
  vec4 r;
  [[unroll]] for (uint e = 0u; e < 4u; ++e) {
    const uint cc = c + e;
    float y = 0.0;
    if (cc < D) y = x == 0u ? float(q[base + cc]) : (x == 1u ? float(k[base + cc]) : float(v[base + cc]));
    r[e] = y;
  }
  return r;
}

// Column (within the key tile) of accumulator n of invocation tx.
uint s_col(uint tx, uint n) { return 4u * tx + n + (n >= 4u ? 28u : 0u); }

float row_max(float x) {  // over the 8 lanes sharing a row
  x = max(x, subgroupShuffleXor(x, 1u));
  x = max(x, subgroupShuffleXor(x, 2u));
  return max(x, subgroupShuffleXor(x, 4u));
}
float row_sum(float x) {
  x += subgroupShuffleXor(x, 1u);
  x += subgroupShuffleXor(x, 2u);
  return x + subgroupShuffleXor(x, 4u);
}

// Chunk c of key tile j0 for the loader's row lr and k-values lk..lk+3:
// Qf_i = [w_std Q_i, w_rec K_i] and Kf_j = [K_j, Q_j], the reciprocal half
// first on tiles that use it (kind), nh chunks per half, zero past D and T.
void load_chunk(uint bh, uint i0, uint j0, uint kind, uint c, uint nh, uint lr, uint lk, vec3 g,
                out vec4 pq, out vec4 pk) {
  const bool rec = RA != 0u && kind != TILE_PLAIN && c < nh;
  const uint k = (c % nh) * KC + lk;
  pq = load4(rec ? 1u : 0u, bh, i0 + lr, k);
  pk = load4(rec ? 0u : 1u, bh, j0 + lr, k);
  if (RA != 0u) pq *= rec ? g.y : g.x;
}

// O_i = acc / l and lse_i = m + log l (natural log) for row i of this
// invocation (l: its lane's share of the row sum, summed here over the 8
// lanes of the row, by every lane: call it outside any row test).
void finish_row(uint i, uint tx, uint bh, float l_share, float m_row, float acc[4u * NO]) {
  const float lsum = row_sum(l_share);
  if (i >= pc.T) return;
  const float inv = 1.0 / lsum;
  const uint base = (bh * pc.T + i) * D;
  [[unroll]] for (uint mo = 0u; mo < NO; ++mo) {
    const uint c = 32u * mo + 4u * tx;
    const vec4 y = vec4(acc[4u * mo], acc[4u * mo + 1u], acc[4u * mo + 2u], acc[4u * mo + 3u]) * inv;
    if (VEC) {
      if (c < D) o4[(base + c) / 4u] = V4T(y);
    } else {
      [[unroll]] for (uint e = 0u; e < 4u; ++e)
        if (c + e < D) o[base + c + e] = TO_STORE(y[e]);
    }
  }
  if (tx == 0u) lse[bh * pc.T + i] = (m_row + log2(lsum)) * LN2;
}

void main() {
  // The invocation index counted subgroup by subgroup, so that t / 8 (a row
  // group) always lies inside one subgroup whatever order the device gives
  // subgroups within the workgroup (attention.cpp checks that the subgroup
  // size is a multiple of 8 and divides 128).
  const uint tid = gl_SubgroupID * gl_SubgroupSize + gl_SubgroupInvocationID;
  const uint ty = tid >> 3u, tx = tid & 7u;
  const uint T = pc.T;
  const uint qt = pc.n_tiles - 1u - gl_WorkGroupID.x;  // heaviest tiles first
  const uint bh = head_index();
  if (head_past_end(bh)) return;
  const uint b = bh / pc.H, h = bh % pc.H;
  const uint i0 = qt * TB;
  const vec3 g = gates_of(b, h);
  const uint nh = (D + KC - 1u) / KC;  // chunks per half

  // The chunk loader (load_chunk): row lr of the 64, k-values lk..lk+3 of
  // the chunk, one vec4 of the Qf side and one of the Kf side, prefetched
  // into registers one chunk ahead.
  const uint lr = tid >> 1u, lk = (tid & 1u) * 4u;
  vec4 pq = vec4(0.0), pk = vec4(0.0);

  float oacc[4][4u * NO];
  float m[4], l[4];
  [[unroll]] for (uint r = 0u; r < 4u; ++r) {
    m[r] = NEG_BIG;
    l[r] = 0.0;
    [[unroll]] for (uint c = 0u; c < 4u * NO; ++c) oacc[r][c] = 0.0;
  }
  const uint i_last = min(i0 + TB - 1u, T - 1u), kt_last = i_last / TB;

  uint kind = classify(i0, 0u);
  load_chunk(bh, i0, 0u, kind, 0u, nh, lr, lk, g, pq, pk);
  for (uint kt = 0u; kt <= kt_last; ++kt) {
    const uint j0 = kt * TB;
    barrier();  // the previous tile's P V is done with the stages / V, Pt and bias
    if (RA != 0u && tid < TB) {
      const uint j = j0 + tid;
      sm4[(OFF_BIAS + tid) / 4u][tid % 4u] = j < T ? g.z * dsc[bh * T + j] : 0.0;
    }

    float s[4][8];
    [[unroll]] for (uint r = 0u; r < 4u; ++r)
      [[unroll]] for (uint n = 0u; n < 8u; ++n) s[r][n] = 0.0;
    const uint nc = kind == TILE_PLAIN ? nh : 2u * nh;
    for (uint c = 0u; c < nc; ++c) {
      // Transposing stores (k-major), one float each.
      const uint st = (c & 1u) * STAGE;
      [[unroll]] for (uint e = 0u; e < 4u; ++e) {
        const uint fa = st + (lk + e) * LD + lr, fb = fa + KC * LD;
        sm4[fa / 4u][fa % 4u] = pq[e];
        sm4[fb / 4u][fb % 4u] = pk[e];
      }
      barrier();
      if (c + 1u < nc) load_chunk(bh, i0, j0, kind, c + 1u, nh, lr, lk, g, pq, pk);
      if (RA != 0u && kind == TILE_MIXED && c == nh) {
        // The reciprocal half is complete: keep it only inside the band.
        [[unroll]] for (uint r = 0u; r < 4u; ++r)
          [[unroll]] for (uint n = 0u; n < 8u; ++n)
            if (int(i0 + 4u * ty + r) - int(j0 + s_col(tx, n)) > pc.window) s[r][n] = 0.0;
      }
      const uint qa = st / 4u + ty, kb = (st + KC * LD) / 4u + tx;
      // Pairs of k steps: all eight unrolled would let the compiler hoist 24
      // vec4 loads (96 registers) ahead of the FMAs.
      for (uint k2 = 0u; k2 < KC; k2 += 2u) {
        [[unroll]] for (uint u = 0u; u < 2u; ++u) {
          const uint kr = (k2 + u) * (LD / 4u);
          const vec4 a = sm4[qa + kr];
          const vec4 b0 = sm4[kb + kr];
          const vec4 b1 = sm4[kb + kr + 8u];
          [[unroll]] for (uint r = 0u; r < 4u; ++r) {
            [[unroll]] for (uint n = 0u; n < 4u; ++n) {
              s[r][n] = fma(a[r], b0[n], s[r][n]);
              s[r][n + 4u] = fma(a[r], b1[n], s[r][n + 4u]);
            }
          }
        }
      }
    }
    // Chunk 0 of the next tile, in flight during the softmax and P V.
    const uint next = kt < kt_last ? classify(i0, j0 + TB) : TILE_PLAIN;
    if (kt < kt_last) load_chunk(bh, i0, j0 + TB, next, 0u, nh, lr, lk, g, pq, pk);

    // Online softmax in the log2 domain: x = (s Qf.Kf + w_disc d_j) log2 e.
    vec4 bias0 = vec4(0.0), bias1 = vec4(0.0);
    if (RA != 0u) {
      bias0 = sm4[OFF_BIAS / 4u + tx];
      bias1 = sm4[OFF_BIAS / 4u + 8u + tx];
    }
    [[unroll]] for (uint r = 0u; r < 4u; ++r) {
      const uint i = i0 + 4u * ty + r;
      float mx = NEG_BIG;
      [[unroll]] for (uint n = 0u; n < 8u; ++n) {
        const uint j = j0 + s_col(tx, n);
        const float bias = n < 4u ? bias0[n] : bias1[n - 4u];
        const float logit = RA != 0u ? fma(s[r][n], pc.scale, bias) : s[r][n] * pc.scale;
        const float x = (j <= i && j < T) ? logit * LOG2E : NEG_BIG;
        s[r][n] = x;
        mx = max(mx, x);
      }
      // Every row inside T sees key j0 <= i0 <= i in every tile it visits,
      // so m_new is a real logit and masked entries give exp2(...) = 0.
      const float m_new = max(m[r], row_max(mx));
      const float alpha = exp2(m[r] - m_new);
      m[r] = m_new;
      float sum = 0.0;
      [[unroll]] for (uint n = 0u; n < 8u; ++n) {
        const float p = exp2(s[r][n] - m_new);
        s[r][n] = p;
        sum += p;
      }
      l[r] = l[r] * alpha + sum;  // this lane's share; summed over the row at the end
      [[unroll]] for (uint c = 0u; c < 4u * NO; ++c) oacc[r][c] *= alpha;
    }
    // P^T into Pt: column c of the tile is row c of Pt, this invocation's 4 rows one vec4.
    [[unroll]] for (uint n = 0u; n < 8u; ++n)
      sm4[(OFF_PT + s_col(tx, n) * LD) / 4u + ty] = vec4(s[0][n], s[1][n], s[2][n], s[3][n]);

    // O += P V, VC key rows of V at a time (V shares the stages' space).
    for (uint vc = 0u; vc < TB / VC; ++vc) {
      barrier();  // the stages (or the previous V rows) are free
      for (uint e = tid; e < VC * (DPAD / 4u); e += 128u) {
        const uint r = e / (DPAD / 4u), c4 = e % (DPAD / 4u);
        sm4[e] = load4(2u, bh, j0 + vc * VC + r, 4u * c4);
      }
      barrier();  // Pt and these V rows are visible to every invocation
      const uint pt = OFF_PT / 4u + vc * VC * (LD / 4u) + ty;
      for (uint k4 = 0u; k4 < VC; k4 += 4u) {
        [[unroll]] for (uint u = 0u; u < 4u; ++u) {
          const vec4 p = sm4[pt + (k4 + u) * (LD / 4u)];
          [[unroll]] for (uint mo = 0u; mo < NO; ++mo) {
            const vec4 vv = sm4[(k4 + u) * (DPAD / 4u) + 8u * mo + tx];
            [[unroll]] for (uint r = 0u; r < 4u; ++r)
              [[unroll]] for (uint e = 0u; e < 4u; ++e)
                oacc[r][4u * mo + e] = fma(p[r], vv[e], oacc[r][4u * mo + e]);
          }
        }
      }
    }
    kind = next;
  }

  // Written out per row (not a loop): glslc leaves a loop with subgroup
  // operations rolled, and a rolled loop would index the accumulator arrays
  // dynamically (local memory instead of registers).
  finish_row(i0 + 4u * ty, tx, bh, l[0], m[0], oacc[0]);
  finish_row(i0 + 4u * ty + 1u, tx, bh, l[1], m[1], oacc[1]);
  finish_row(i0 + 4u * ty + 2u, tx, bh, l[2], m[2], oacc[2]);
  finish_row(i0 + 4u * ty + 3u, tx, bh, l[3], m[3], oacc[3]);
}
