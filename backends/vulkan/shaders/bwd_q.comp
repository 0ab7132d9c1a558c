#version 450
// Backward, query-owned: one workgroup per (b, h, query tile) walks the key
// tiles at or below it and accumulates dQf = s dL Kf (reciprocal half: dL
// masked to the band) for its own rows in acc_ws, then unfolds (RA.md):
//   dQ_i += w_std dQf_i[0:D]      (dQ already holds the key-owned kernel's Kf part)
//   dK_i += w_rec dQf_i[D:2D]
//   dw_std share = sum_i Q_i . dQf_i[0:D],  dw_rec share = sum_i K_i . dQf_i[D:2D]
// SDPA: dQ = dQf. One thread per accumulator element, fixed-order sums: deterministic.
#include "bwd_common.glsl"

void main() {
  const uint tid = gl_LocalInvocationID.x, T = pc.T;
  const uint qt = pc.n_tiles - 1u - gl_WorkGroupID.x;
  const uint bh = head_index();
  if (head_past_end(bh)) return;
  const uint b = bh / pc.H, h = bh % pc.H;
  const uint i0 = qt * BR;
  const vec3 g = gates_of(b, h);

  load_query_tile(bh, i0, g);
  for (uint e = tid; e < BR * W; e += NT) {
    const uint i = i0 + e / W;
    if (i < T) acc_ws[(bh * T + i) * W + e % W] = 0.0;
  }

  const uint i_last = min(i0 + BR - 1u, T - 1u);
  for (uint kt = 0u; kt <= i_last / BC; ++kt) {
    const uint j0 = kt * BC;
    barrier();
    load_key_tile(bh, j0, g);
    barrier();
    const uint kind = classify(i0, j0);
    dl_tile(kind, i0, j0);
    barrier();
    for (uint e = tid; e < BR * W; e += NT) {
      const uint r = e / W, c = e % W, i = i0 + r;
      if (i >= T || (c >= D && kind == TILE_PLAIN)) continue;
      float s = 0.0;
      if (c < D || kind == TILE_FULL) {
        for (uint t = 0u; t < BC; ++t) s += sm[OFF_DL + r * CP + t] * sm[OFF_K + t * WP + c];
      } else {
        for (uint t = 0u; t < BC; ++t)
          if (in_band(i, j0 + t)) s += sm[OFF_DL + r * CP + t] * sm[OFF_K + t * WP + c];
      }
      acc_ws[(bh * T + i) * W + c] += s * pc.scale;
    }
  }

  // The unfold reads accumulator elements another thread of this workgroup
  // wrote (a different element-to-thread mapping): make them visible. Only
  // this workgroup reads them, so a workgroup-scope barrier is the right one;
  // memoryBarrierBuffer() is device scope, which a device with the Vulkan
  // memory model enabled (the coopmat path) but not
  // vulkanMemoryModelDeviceScope must not be given (VUID-RuntimeSpirv-vulkanMemoryModel-06265).
  groupMemoryBarrier();
  barrier();
  float ws = 0.0, wr = 0.0;
  for (uint e = tid; e < BR * D; e += NT) {
    const uint r = e / D, c = e % D, i = i0 + r;
    if (i >= T) continue;
    const uint a = (bh * T + i) * W, base = (bh * T + i) * D;
    const float f0 = acc_ws[a + c];
    if (RA != 0u) {
      const float f1 = acc_ws[a + D + c];
      dq[base + c] = TO_STORE(float(dq[base + c]) + g.x * f0);
      dk[base + c] = TO_STORE(float(dk[base + c]) + g.y * f1);
      ws += float(q[base + c]) * f0;
      wr += float(k[base + c]) * f1;
    } else {
      dq[base + c] = TO_STORE(f0);
    }
  }
  if (RA != 0u) {
    sm[OFF_RED + tid] = ws;
    sm[OFF_RED + NT + tid] = wr;
    barrier();
    if (tid == 0u) {
      float s0 = 0.0, s1 = 0.0;
      for (uint t = 0u; t < NT; ++t) {
        s0 += sm[OFF_RED + t];
        s1 += sm[OFF_RED + NT + t];
      }
      partials[(bh * pc.n_tiles + qt) * 3u] = s0;
      partials[(bh * pc.n_tiles + qt) * 3u + 1u] = s1;
    }
  }
}
