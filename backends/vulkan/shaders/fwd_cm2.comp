#version 450
// fp16-storage forward on workgroup-scope cooperative matrices with
// GL_NV_cooperative_matrix2 (NVIDIA tensor cores through the KHR coopmat
// types): the flash-style algorithm of fwd_cm.comp (one workgroup per (b, h,
// query tile of BR rows), key tiles of BC streamed, online softmax, writes O
// and lse with the same layout and meaning, so every backward reads them
// unchanged), but with whole-tile matrices and the coopmat2 operations
// instead of 16x16 fragments, an index map and shared-memory round trips:
//
//   - Q (and for RA, K) rows of the tile: BR x DG fp16 A matrices, loaded
//     once with coopMatLoadTensorNV; per key tile K^T (and for RA Q^T) as
//     DG x BC B matrices through a transposing tensor view, V as BC x DG.
//     Every load is clamped (gl_CooperativeMatrixClampModeConstantNV): rows
//     past T and columns past D read 0, so any T and D <= 128 need no
//     padding code; the O and lse stores through the same layouts drop them.
//   - Logits in fp32: S = s w_std Q_i.K_j + s w_rec K_i.Q_j (the folded
//     product of RA.md as two accumulators, gates in fp32; the reciprocal
//     half only on tiles that reach into the window band, masked per pair by
//     coopMatPerElementNV where the band edge crosses the tile), then one
//     coopMatPerElementNV for the causal / sequence-end mask and the bias
//     w_disc d_j.
//   - Softmax statistics per row as BR x NR accumulators whose every column
//     holds the row's value: row max and row sum by coopMatReduceNV, widened
//     to BC or DG columns by another row reduction (max of equal values)
//     where they meet S or O.
//   - P = exp(S - m) rounded to fp16 once; the same fp16 values feed the
//     row sum l and, converted accumulator -> A, O += P V.
//
// Workgroup scope: the driver splits each matrix over the workgroup's
// subgroups and stages operands through shared memory it reserves itself
// (VkPhysicalDeviceCooperativeMatrix2PropertiesNV::
// cooperativeMatrixWorkgroupScopeReservedSharedMemory); this kernel declares
// no shared memory. The workgroup size (spec constant 0) is one the device
// lists for workgroup-scope fp16 -> fp32 products (attention.cpp).
//
// Interface as fwd_cm.comp (common.glsl): bindings, push constants and spec
// constants {threads, D, W, BR, BC, RA}, plus G (id 6, below); dispatch
// (ceil(T / BR), B * H).
#extension GL_GOOGLE_include_directive : require
#extension GL_KHR_cooperative_matrix : require
#extension GL_NV_cooperative_matrix2 : require
#extension GL_KHR_memory_scope_semantics : require
#define RA_FP16
#include "common.glsl"

// The device's matrix granularity (N and K, at least 16; attention.cpp): the
// head dim is padded to it (clamped loads read 0 there) and it is the width
// of the per-row statistic matrices.
layout(constant_id = 6) const uint G = 16u;
const uint DG = (D + G - 1u) / G * G;
const uint NR = G;

#define ACC(r, c) coopmat<float, gl_ScopeWorkgroup, r, c, gl_MatrixUseAccumulator>
#define HACC(r, c) coopmat<float16_t, gl_ScopeWorkgroup, r, c, gl_MatrixUseAccumulator>
#define MAT_A(r, c) coopmat<float16_t, gl_ScopeWorkgroup, r, c, gl_MatrixUseA>
#define MAT_B(r, c) coopmat<float16_t, gl_ScopeWorkgroup, r, c, gl_MatrixUseB>
#define ROWS gl_CooperativeMatrixReduceRowNV
#define CLAMP gl_CooperativeMatrixClampModeConstantNV

const float NEG_BIG = -3.0e38;  // masked logit: exp(NEG_BIG - m) == 0, no inf arithmetic

// Timing cuts (issue 7), spec constant 7 from $RA_VK_CUT as in fwd_cm.comp,
// same numbers for the same part; 0, the default, is the real kernel. Every
// cut keeps the key loop and every tensor load (K^T, Q^T on RA tiles that
// reach the band, V); O and l still depend on what it keeps. Outputs are
// wrong by design, but finite (l is made >= 1 at the end).
//   1  no softmax: no reductions, exp or rescale; P = fp16(S) (masked 0)
//   2  no P V: no conversion of P to an A matrix, no O product (O is still
//      rescaled)
//   3  no S = Q K^T: no products; S = the scale (a push constant), then
//      masked and softmaxed as usual
//   4  loads only: the tensor loads, nothing else
//   5  no masking: no scale, band mask, causal mask or bias (gates' scale
//      on the reciprocal half neither)
//   6  no row statistics: none of the four row reductions, no rescale;
//      P = exp(S), O += P V (l stays 0)
//   7  O += C V with a constant fp16 A matrix C: no accumulator -> A
//      conversion of P (P still feeds l)
// Loads a cut leaves unused are summed in place (kept_k += K^T and Q^T
// matrices in cuts 3 and 4, kept_v += V in 2 and 4; DG x BC fp16 adds per
// tile, in the difference) and stored into dk / dv at the end, so they stay.
// attention.cpp's kForwardCutMax is the largest value.
layout(constant_id = 7) const uint CUT = 0u;

// Reductions (coopMatReduceNV) and element operations (coopMatPerElementNV).
float max2(const in float a, const in float b) { return max(a, b); }
float sum2(const in float a, const in float b) { return a + b; }
float el_log(const in uint r, const in uint c, const in float x) { return log(x); }
float el_exp(const in uint r, const in uint c, const in float x) { return exp(x); }
float el_max(const in uint r, const in uint c, const in float x, const in float y) { return max(x, y); }
float el_exp_sub(const in uint r, const in uint c, const in float x, const in float y) { return exp(x - y); }
float el_at_least_1(const in uint r, const in uint c, const in float x) { return abs(x) + 1.0; }  // cuts

// The reciprocal half of a tile whose element (0, 0) is (i0, j0): kept in
// the window band, 0 outside (ra_window tiles the band edge crosses).
float el_band(const in uint r, const in uint c, const in float x, const in uint i0, const in uint j0) {
  return in_band(i0 + r, j0 + c) ? x : 0.0;
}

// Causal and sequence-end mask, plus the bias w_disc d_j (RA; d_base = the
// (b, h) row of d).
float el_logit(const in uint r, const in uint c, const in float x, const in uint i0, const in uint j0,
               const in uint d_base, const in float w_disc) {
  const uint i = i0 + r, j = j0 + c;
  if (j > i || j >= pc.T) return CUT == 1u ? 0.0 : NEG_BIG;  // CUT 1: P = S, kept finite
  return RA != 0u ? x + w_disc * dsc[d_base + j] : x;
}

void main() {
  const uint T = pc.T;
  // Heaviest tiles (most keys along the causal triangle) first.
  const uint qt = pc.n_tiles - 1u - gl_WorkGroupID.x;
  const uint bh = head_index();
  if (head_past_end(bh)) return;
  const uint b = bh / pc.H, h = bh % pc.H;
  const uint i0 = qt * BR;
  const uint i_last = min(i0 + BR - 1u, T - 1u);
  const vec3 g = gates_of(b, h);

  // The whole buffer as one tensor, element offset 0: a per-(b, h) base
  // would have to be 16-byte aligned, which (b h T D) halves is not for
  // every T and D. [B H, T, D] for q, k, v, o; [B H, T, 1] for lse, whose
  // matrix columns past the first are dropped on store.
  tensorLayoutNV<3, CLAMP> rows_d = createTensorLayoutNV(3, CLAMP);
  rows_d = setTensorLayoutDimensionNV(rows_d, pc.B * pc.H, T, D);
  tensorLayoutNV<3, CLAMP> rows_1 = createTensorLayoutNV(3, CLAMP);
  rows_1 = setTensorLayoutDimensionNV(rows_1, pc.B * pc.H, T, 1u);
  // Rows j of a [.., T, D] slice as the columns of a DG x BC matrix.
  tensorViewNV<3, false, 0, 2, 1> transposed = createTensorViewNV(3, false, 0, 2, 1);

  const tensorLayoutNV<3, CLAMP> own = sliceTensorLayoutNV(rows_d, bh, 1u, i0, BR, 0u, DG);
  MAT_A(BR, DG) qa;  // Q_i
  MAT_A(BR, DG) ka;  // K_i (RA: the reciprocal half's query side)
  coopMatLoadTensorNV(qa, q, 0u, own);
  if (RA != 0u) coopMatLoadTensorNV(ka, k, 0u, own);

  const float s_std = pc.scale * g.x, s_rec = pc.scale * g.y;
  ACC(BR, DG) oacc = ACC(BR, DG)(0.0);
  ACC(BR, NR) macc = ACC(BR, NR)(-1e30);  // finite: the first rescale is exp(-huge) = 0
  ACC(BR, NR) lacc = ACC(BR, NR)(0.0);

  // Timing cuts only (CUT above): loads the cut leaves unused, summed.
  MAT_B(DG, BC) kept_k = MAT_B(DG, BC)(0.0);
  MAT_B(BC, DG) kept_v = MAT_B(BC, DG)(0.0);
  const bool cut_s = CUT == 3u || CUT == 4u;  // no S = Q K^T

  for (uint kt = 0u; kt <= i_last / BC; ++kt) {
    const uint j0 = kt * BC;
    const tensorLayoutNV<3, CLAMP> keys = sliceTensorLayoutNV(rows_d, bh, 1u, j0, BC, 0u, DG);
    const uint kind = classify(i0, j0);

    MAT_B(DG, BC) kb;
    coopMatLoadTensorNV(kb, k, 0u, keys, transposed);
    ACC(BR, BC) s;
    if (cut_s) {
      kept_k += kb;
      s = ACC(BR, BC)(pc.scale);
    } else {
      s = coopMatMulAdd(qa, kb, ACC(BR, BC)(0.0));
    }
    if (CUT != 5u) s = s * s_std;
    if (kind != TILE_PLAIN) {
      MAT_B(DG, BC) qb;
      coopMatLoadTensorNV(qb, q, 0u, keys, transposed);
      if (cut_s) {
        kept_k += qb;
      } else {
        ACC(BR, BC) s2 = coopMatMulAdd(ka, qb, ACC(BR, BC)(0.0));
        if (CUT == 5u) {
          s += s2;
        } else {
          if (kind == TILE_MIXED) coopMatPerElementNV(s2, s2, el_band, i0, j0);
          s += s2 * s_rec;
        }
      }
    }
    if (CUT == 4u) {
      MAT_B(BC, DG) vb;
      coopMatLoadTensorNV(vb, v, 0u, keys);
      kept_v += vb;
      continue;
    }
    // Keys past a query of the tile, or past T, exist only on the diagonal
    // and the last tile; RA adds the bias everywhere.
    if (CUT != 5u && (RA != 0u || j0 + BC - 1u > i0 || j0 + BC > T))
      coopMatPerElementNV(s, s, el_logit, i0, j0, bh * T, g.z);

    if (CUT == 1u || CUT == 6u) {
      // No row statistics: P = S (1) or exp(S) (6), straight into O += P V.
      ACC(BR, BC) p = s;
      if (CUT == 6u) coopMatPerElementNV(p, s, el_exp);
      MAT_B(BC, DG) vb;
      coopMatLoadTensorNV(vb, v, 0u, keys);
      oacc = coopMatMulAdd(MAT_A(BR, BC)(HACC(BR, BC)(p)), vb, oacc);
      continue;
    }

    // Online softmax. A row with no live key in this tile (BR > BC) keeps
    // its max (NEG_BIG < m), so its P is 0 and its rescale 1.
    ACC(BR, NR) mx;
    coopMatReduceNV(mx, s, ROWS, max2);
    ACC(BR, NR) m_new;
    coopMatPerElementNV(m_new, macc, el_max, mx);
    ACC(BR, NR) alpha;
    coopMatPerElementNV(alpha, macc - m_new, el_exp);
    ACC(BR, BC) m_wide;
    coopMatReduceNV(m_wide, m_new, ROWS, max2);
    ACC(BR, BC) p;
    coopMatPerElementNV(p, s, el_exp_sub, m_wide);
    // P in fp16 once: l sums exactly the values that go into O.
    const HACC(BR, BC) p16 = HACC(BR, BC)(p);
    ACC(BR, NR) psum;
    coopMatReduceNV(psum, ACC(BR, BC)(p16), ROWS, sum2);
    lacc = lacc * alpha + psum;
    ACC(BR, DG) alpha_d;
    coopMatReduceNV(alpha_d, alpha, ROWS, max2);
    MAT_B(BC, DG) vb;
    coopMatLoadTensorNV(vb, v, 0u, keys);
    if (CUT == 2u) {
      kept_v += vb;
      oacc = oacc * alpha_d;
    } else if (CUT == 7u) {
      oacc = coopMatMulAdd(MAT_A(BR, BC)(float16_t(pc.scale)), vb, oacc * alpha_d);
    } else {
      oacc = coopMatMulAdd(MAT_A(BR, BC)(p16), vb, oacc * alpha_d);
    }
    macc = m_new;
  }

  if (CUT != 0u) {
    // Timing cuts: finite outputs, and the unused loads stay live.
    coopMatPerElementNV(lacc, lacc, el_at_least_1);
    if (cut_s) coopMatStoreTensorNV(kept_k, dk, 0u, sliceTensorLayoutNV(rows_d, bh, 1u, i0, DG, 0u, BC));
    if (CUT == 2u || CUT == 4u)
      coopMatStoreTensorNV(kept_v, dv, 0u, sliceTensorLayoutNV(rows_d, bh, 1u, i0, BC, 0u, DG));
  }

  // O / l in fp16, lse = m + log l. Every row has key 0, so l >= 1 (rows
  // past T included; their stores are dropped).
  ACC(BR, DG) l_d;
  coopMatReduceNV(l_d, lacc, ROWS, max2);
  coopMatStoreTensorNV(HACC(BR, DG)(oacc / l_d), o, 0u, own);
  ACC(BR, NR) lse_rows;
  coopMatPerElementNV(lse_rows, lacc, el_log);
  coopMatStoreTensorNV(lse_rows + macc, lse, 0u, sliceTensorLayoutNV(rows_1, bh, 1u, i0, BR, 0u, NR));
}
