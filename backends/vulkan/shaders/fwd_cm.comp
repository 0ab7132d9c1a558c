#version 450
// Forward on cooperative matrices (GL_NV_cooperative_matrix, fp16 x fp16 ->
// fp32, 16x16x16 per subgroup): the same flash-style algorithm as fwd.comp
// (one workgroup per (b, h, query tile), Qf in shared memory, Kf / V tiles
// streamed, online softmax, writes O and lse), with the two tile products
// S = Qf Kf^T and O += P V on the tensor cores.
//
// Work split: the workgroup holds BR = 16 * NSG query rows; subgroup s owns
// rows 16s..16s+15 and does every product and softmax step of those rows on
// its own, so after the workgroup barriers that guard the shared Kf / V
// staging, subgroups only synchronise with themselves (subgroupBarrier).
// NV cooperative matrices have no per-element access, so the softmax goes
// through shared memory: the subgroup stores its 16 x BC logit block (fp32),
// its lanes turn it into P row by row (fp16, for the next product) and
// rescale the O rows, which also live in shared memory (fp32, loaded and
// stored as accumulators around each O += P V).
//
// fp16 storage only (q, k, v, o); Qf = [w_std Q, w_rec K] is rounded to fp16
// once when staged; logits, softmax, O and lse are fp32. Head dims that are
// not a multiple of 16 are zero-padded to D16 in shared memory (the padding
// adds nothing to either product).
//
// RA_CM_EMULATE builds the same kernel with the tile products done by the
// subgroup's lanes in fp32 instead of cooperative matrices: identical
// staging, masking, softmax and synchronisation, runnable on any device with
// fp16 (lavapipe), so everything but the matrix instructions is tested where
// no tensor cores exist.
#extension GL_KHR_shader_subgroup_basic : require
#extension GL_EXT_control_flow_attributes : require
#ifndef RA_CM_EMULATE
#extension GL_NV_cooperative_matrix : require
#extension GL_KHR_memory_scope_semantics : require
#endif
#define RA_FP16
#include "common.glsl"

// BR, BC: multiples of 16 (attention.cpp picks them). The workgroup is
// NSG subgroups (spec constant 0 = NSG * subgroup size).
const uint NSG = BR / 16u;
const uint D16 = (D + 15u) / 16u * 16u;     // D padded to whole 16-wide steps
const uint W16 = RA != 0u ? 2u * D16 : D16;  // folded width, each half padded
const uint KD = D16 / 16u;                   // 16-wide steps of one half
const uint KW = W16 / 16u;                   // ... of the whole folded row
// Row strides: 16-byte multiples (cooperative-matrix loads and stores want
// aligned rows), and 8 halves / 4 floats past the natural width so rows do
// not start on the same shared-memory bank.
const uint QS = W16 + 8u;  // Qf, Kf rows (halves)
const uint VS = D16 + 8u;  // V rows (halves)
const uint PS = BC + 8u;   // P rows (halves)
const uint SS = BC + 4u;   // logit rows (floats)
const uint OS = D16 + 4u;  // O accumulator rows (floats)
// kernel_traits.hpp's coopmat_forward_shared_bytes() mirrors these sizes.
shared float16_t sq[BR * QS];
shared float16_t sk[BC * QS];
shared float16_t sv[BC * VS];
shared float16_t sp[BR * PS];
shared float ss[BR * SS];
shared float ss2[(RA != 0u ? BR : 1u) * SS];  // reciprocal half of a band-edge tile
shared float so[BR * OS];
shared float sm_m[BR], sm_l[BR], sm_al[BR];  // running max, running sum, this tile's rescale
shared float sbias[BC];

// A block of this subgroup's rows is only read by the same subgroup.
void subgroup_sync() {
  subgroupMemoryBarrierShared();
  subgroupBarrier();
}

#ifndef RA_CM_EMULATE
#define HMAT fcoopmatNV<16, gl_ScopeSubgroup, 16, 16>
#define FMAT fcoopmatNV<32, gl_ScopeSubgroup, 16, 16>

// ss or ss2 [r0.., cb*16..] = Qf[r0.., 16 t0..16 t1) . Kf[cb*16.., same]^T
void tile_qk(uint r0, uint cb, uint t0, uint t1, bool second) {
  FMAT acc = FMAT(0.0);
  for (uint t = t0; t < t1; ++t) {
    HMAT a, b;
    coopMatLoadNV(a, sq, r0 * QS + t * 16u, QS, false);
    // B(k, n) = Kf[cb*16 + n][16t + k]: Kf rows are B's columns.
    coopMatLoadNV(b, sk, cb * 16u * QS + t * 16u, QS, true);
    acc = coopMatMulAddNV(a, b, acc);
  }
  if (second)
    coopMatStoreNV(acc, ss2, r0 * SS + cb * 16u, SS, false);
  else
    coopMatStoreNV(acc, ss, r0 * SS + cb * 16u, SS, false);
}

// so[r0.., db*16..] += P[r0.., 16 key blocks 0..ncb) . V[.., db*16..]
void tile_pv(uint r0, uint db, uint ncb) {
  FMAT acc;
  coopMatLoadNV(acc, so, r0 * OS + db * 16u, OS, false);
  for (uint cb = 0u; cb < ncb; ++cb) {
    HMAT a, b;
    coopMatLoadNV(a, sp, r0 * PS + cb * 16u, PS, false);
    coopMatLoadNV(b, sv, cb * 16u * VS + db * 16u, VS, false);
    acc = coopMatMulAddNV(a, b, acc);
  }
  coopMatStoreNV(acc, so, r0 * OS + db * 16u, OS, false);
}
#else
// The 16-long inner loops are unrolled: llvmpipe counts every loop
// iteration of an invocation against one limit of 65535 (gallivm's loop
// limiter) and silently leaves loops past it, which rolled loops here reach
// at D = 128 after a few key tiles.
void tile_qk(uint r0, uint cb, uint t0, uint t1, bool second) {
  for (uint e = gl_SubgroupInvocationID; e < 256u; e += gl_SubgroupSize) {
    const uint m = e / 16u, n = e % 16u;
    float acc = 0.0;
    for (uint t = t0; t < t1; ++t)
      [[unroll]] for (uint c = 0u; c < 16u; ++c)
        acc += float(sq[(r0 + m) * QS + t * 16u + c]) * float(sk[(cb * 16u + n) * QS + t * 16u + c]);
    if (second)
      ss2[(r0 + m) * SS + cb * 16u + n] = acc;
    else
      ss[(r0 + m) * SS + cb * 16u + n] = acc;
  }
}

void tile_pv(uint r0, uint db, uint ncb) {
  for (uint e = gl_SubgroupInvocationID; e < 256u; e += gl_SubgroupSize) {
    const uint m = e / 16u, n = e % 16u;
    float acc = so[(r0 + m) * OS + db * 16u + n];
    for (uint cb = 0u; cb < ncb; ++cb)
      [[unroll]] for (uint c = 0u; c < 16u; ++c)
        acc += float(sp[(r0 + m) * PS + cb * 16u + c]) * float(sv[(cb * 16u + c) * VS + db * 16u + n]);
    so[(r0 + m) * OS + db * 16u + n] = acc;
  }
}
#endif

// Padded folded rows: column c < D16 is the first half (padding zero past
// D), c >= D16 the reciprocal half (RA only). Zero past T.
float16_t qf16(uint bh, uint i, uint c, vec3 g) {
  if (i >= pc.T) return float16_t(0.0);
  const uint base = (bh * pc.T + i) * D;
  if (c < D16) return c < D ? float16_t(g.x * float(q[base + c])) : float16_t(0.0);
  c -= D16;
  return c < D ? float16_t(g.y * float(k[base + c])) : float16_t(0.0);
}
float16_t kf16(uint bh, uint j, uint c) {
  if (j >= pc.T) return float16_t(0.0);
  const uint base = (bh * pc.T + j) * D;
  if (c < D16) return c < D ? k[base + c] : float16_t(0.0);
  c -= D16;
  return c < D ? q[base + c] : float16_t(0.0);
}

// classify() of common.glsl for one subgroup's rows i0..i_last.
uint classify_rows(uint i0, uint i_last, uint j0) {
  if (RA == 0u) return TILE_PLAIN;
  if (pc.window < 0) return TILE_FULL;
  if (int(i_last) - int(j0) <= pc.window) return TILE_FULL;
  if (int(i0) - int(j0 + BC - 1u) > pc.window) return TILE_PLAIN;
  return TILE_MIXED;
}

void main() {
  const uint tid = gl_LocalInvocationID.x;
  const uint lane = gl_SubgroupInvocationID, nlanes = gl_SubgroupSize;
  const uint T = pc.T;
  // Heaviest tiles (most keys along the causal triangle) first.
  const uint qt = pc.n_tiles - 1u - gl_WorkGroupID.x;
  const uint bh = gl_WorkGroupID.y;
  const uint b = bh / pc.H, h = bh % pc.H;
  const uint i0 = qt * BR;
  const vec3 g = gates_of(b, h);

  for (uint e = tid; e < BR * W16; e += NT) {
    const uint r = e / W16, c = e % W16;
    sq[r * QS + c] = qf16(bh, i0 + r, c, g);
  }
  for (uint e = tid; e < BR * D16; e += NT) so[(e / D16) * OS + e % D16] = 0.0;
  for (uint r = tid; r < BR; r += NT) {
    // Finite, so the first live tile's rescale exp(m_old - m_new) is 0, not NaN.
    sm_m[r] = -1e30;
    sm_l[r] = 0.0;
  }

  const uint r0 = gl_SubgroupID * 16u;  // this subgroup's rows in the tile
  const uint gi0 = i0 + r0;             // ... and in the sequence
  const uint gi_last = min(gi0 + 15u, T - 1u);
  const uint i_last = min(i0 + BR - 1u, T - 1u);
  for (uint kt = 0u; kt <= i_last / BC; ++kt) {
    const uint j0 = kt * BC;
    barrier();  // every subgroup is done with the previous Kf / V
    for (uint e = tid; e < BC * W16; e += NT) {
      const uint r = e / W16, c = e % W16;
      sk[r * QS + c] = kf16(bh, j0 + r, c);
    }
    for (uint e = tid; e < BC * D16; e += NT) {
      const uint r = e / D16, c = e % D16, j = j0 + r;
      sv[r * VS + c] = (j < T && c < D) ? v[(bh * T + j) * D + c] : float16_t(0.0);
    }
    for (uint r = tid; r < BC; r += NT) {
      const uint j = j0 + r;
      sbias[r] = (RA != 0u && j < T) ? g.z * dsc[bh * T + j] : 0.0;
    }
    barrier();

    // Subgroup-uniform: rows past T, or all before this key tile, skip it
    // (their state is unchanged: no live key). An if, not a continue, so
    // the loop's barriers stay in plainly uniform control flow.
    if (gi0 < T && j0 <= gi_last) {
      const uint kind = classify_rows(gi0, gi_last, j0);
      // 16-key blocks with at least one key <= gi_last; the rest are masked whole.
      const uint ncb = min(BC / 16u, (gi_last - j0) / 16u + 1u);
      for (uint cb = 0u; cb < ncb; ++cb) {
        if (kind == TILE_MIXED) {
          tile_qk(r0, cb, 0u, KD, false);
          tile_qk(r0, cb, KD, KW, true);
        } else {
          tile_qk(r0, cb, 0u, kind == TILE_PLAIN ? KD : KW, false);
        }
      }
      subgroup_sync();

      // Online softmax, one lane per row (lanes 16.. idle on 32-wide subgroups).
      for (uint r = lane; r < 16u; r += nlanes) {
        const uint row = r0 + r, i = gi0 + r;
        if (i >= T) {
          sm_al[row] = 1.0;
          for (uint c = 0u; c < BC; ++c) sp[row * PS + c] = float16_t(0.0);
          continue;
        }
        const uint live = i >= j0 ? min(BC, i - j0 + 1u) : 0u;  // keys j0..min(i, j0+BC-1)
        const float m_old = sm_m[row];
        float mx = m_old;
        for (uint c = 0u; c < live; ++c) {
          float x = ss[row * SS + c];
          if (kind == TILE_MIXED && in_band(i, j0 + c)) x += ss2[row * SS + c];
          x = x * pc.scale + sbias[c];
          ss[row * SS + c] = x;
          mx = max(mx, x);
        }
        float sum = 0.0;
        for (uint c = 0u; c < BC; ++c) {
          // P in fp16 for the product; the row sum adds the same rounded values.
          const float16_t p = c < live ? float16_t(exp(ss[row * SS + c] - mx)) : float16_t(0.0);
          sp[row * PS + c] = p;
          sum += float(p);
        }
        const float alpha = exp(m_old - mx);
        sm_al[row] = alpha;
        sm_m[row] = mx;
        sm_l[row] = sm_l[row] * alpha + sum;
      }
      subgroup_sync();
      for (uint e = lane; e < 16u * D16; e += nlanes) {
        const uint row = r0 + e / D16;
        so[row * OS + e % D16] *= sm_al[row];
      }
      subgroup_sync();
      for (uint db = 0u; db < KD; ++db) tile_pv(r0, db, ncb);
    }
  }
  barrier();

  for (uint e = tid; e < BR * D; e += NT) {
    const uint r = e / D, c = e % D, i = i0 + r;
    if (i < T) o[(bh * T + i) * D + c] = float16_t(so[r * OS + c] / sm_l[r]);
  }
  for (uint r = tid; r < BR; r += NT) {
    const uint i = i0 + r;
    if (i < T) lse[bh * T + i] = sm_m[r] + log(sm_l[r]);
  }
}
