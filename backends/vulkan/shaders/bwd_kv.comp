#version 450
// Backward, key-owned: one workgroup per (b, h, key tile) walks every query
// tile at or below it and accumulates, for its own key rows only,
//   dV_j  += P^T dO                 dKf_j += s dL^T Qf  (reciprocal half: dL masked to the band)
//   col_j += sum_i dL_ij            (-> dd_j = w_disc col_j and this tile's share of dw_disc)
// dKf = [dK part, dQ part] (Kf = [K, Q]); the query-owned kernel adds the
// rest. Each accumulator element belongs to one thread for the whole
// kernel (fp32, in acc_ws), so nothing is shared and no atomics are needed:
// the result is deterministic.
#include "bwd_common.glsl"

void main() {
  const uint tid = gl_LocalInvocationID.x, T = pc.T;
  const uint kt = gl_WorkGroupID.x;
  const uint bh = head_index();
  if (head_past_end(bh)) return;
  const uint b = bh / pc.H, h = bh % pc.H;
  const uint j0 = kt * BC;
  const vec3 g = gates_of(b, h);
  const uint AW = W + D;  // accumulator row: [dKf (W) | dV (D)]

  load_key_tile(bh, j0, g);
  for (uint r = tid; r < BC; r += NT) sm[OFF_COL + r] = 0.0;
  for (uint e = tid; e < BC * AW; e += NT) {
    const uint j = j0 + e / AW;
    if (j < T) acc_ws[(bh * T + j) * AW + e % AW] = 0.0;
  }

  for (uint qt = j0 / BR; qt < pc.n_tiles; ++qt) {
    const uint i0 = qt * BR;
    barrier();
    load_query_tile(bh, i0, g);
    barrier();
    const uint kind = classify(i0, j0);
    dl_tile(kind, i0, j0);
    barrier();
    for (uint e = tid; e < BC * AW; e += NT) {
      const uint r = e / AW, c = e % AW, j = j0 + r;
      if (j >= T) continue;
      float s = 0.0;
      if (c < D) {
        for (uint t = 0u; t < BR; ++t) s += sm[OFF_DL + t * CP + r] * sm[OFF_Q + t * WP + c];
        s *= pc.scale;
      } else if (c < W) {
        if (kind == TILE_PLAIN) continue;
        for (uint t = 0u; t < BR; ++t)
          if (kind == TILE_FULL || in_band(i0 + t, j))
            s += sm[OFF_DL + t * CP + r] * sm[OFF_Q + t * WP + c];
        s *= pc.scale;
      } else {
        for (uint t = 0u; t < BR; ++t) s += sm[OFF_P + t * CP + r] * sm[OFF_DO + t * DP + c - W];
      }
      acc_ws[(bh * T + j) * AW + c] += s;
    }
    if (RA != 0u)
      for (uint r = tid; r < BC; r += NT) {
        float s = 0.0;
        for (uint t = 0u; t < BR; ++t) s += sm[OFF_DL + t * CP + r];
        sm[OFF_COL + r] += s;
      }
  }

  // Outputs: dK = dKf[0:D], dQ = dKf[D:2D] (RA; the query-owned kernel adds
  // w_std dQf[0:D]), dV.
  for (uint e = tid; e < BC * AW; e += NT) {
    const uint r = e / AW, c = e % AW, j = j0 + r;
    if (j >= T) continue;
    const float a = acc_ws[(bh * T + j) * AW + c];
    const uint base = (bh * T + j) * D;
    if (c < D) dk[base + c] = TO_STORE(a);
    else if (c < W) dq[base + c - D] = TO_STORE(a);
    else dv[base + c - W] = TO_STORE(a);
  }
  if (RA != 0u) {
    for (uint r = tid; r < BC; r += NT) {
      const uint j = j0 + r;
      if (j < T) dd[bh * T + j] = g.z * sm[OFF_COL + r];
    }
    barrier();
    // This tile's share of dw_disc = sum_j d_j col_j, summed in a fixed order.
    if (tid == 0u) {
      float s = 0.0;
      for (uint r = 0u; r < BC && j0 + r < T; ++r) s += dsc[bh * T + j0 + r] * sm[OFF_COL + r];
      partials[(bh * pc.n_tiles + kt) * 3u + 2u] = s;
    }
  }
}
