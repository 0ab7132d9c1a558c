#version 450
// Forward: one workgroup per (b, h, query tile). The query tile's Qf rows
// stay in shared memory while key tiles (Kf, V, bias) stream through it with
// an online softmax, so no T x T matrix ever exists. Writes O and the row
// log-sum-exp (saved for backward).
#include "common.glsl"

// Shared layout (floats); attention.cpp's forward_shared_floats() mirrors it.
const uint OFF_Q = 0u;                      // Qf   [BR][WP]
const uint OFF_K = OFF_Q + BR * WP;         // Kf   [BC][WP]
const uint OFF_V = OFF_K + BC * WP;         // V    [BC][DP]
const uint OFF_S = OFF_V + BC * DP;         // logits, then P  [BR][CP]
const uint OFF_A = OFF_S + BR * CP;         // O accumulator   [BR][DP]
const uint OFF_M = OFF_A + BR * DP;         // running row max [BR]
const uint OFF_L = OFF_M + BR;              // running row sum [BR]
const uint OFF_AL = OFF_L + BR;             // rescale factor of this tile [BR]
const uint OFF_BIAS = OFF_AL + BR;          // w_disc d_j [BC]
const uint SMEM = OFF_BIAS + BC;
shared float sm[SMEM];

void main() {
  const uint tid = gl_LocalInvocationID.x;
  const uint T = pc.T;
  // Heaviest tiles (most keys along the causal triangle) first.
  const uint qt = pc.n_tiles - 1u - gl_WorkGroupID.x;
  const uint bh = head_index();
  if (head_past_end(bh)) return;
  const uint b = bh / pc.H, h = bh % pc.H;
  const uint i0 = qt * BR;
  const vec3 g = gates_of(b, h);

  for (uint e = tid; e < BR * W; e += NT) {
    const uint r = e / W, c = e % W;
    sm[OFF_Q + r * WP + c] = qf_at(bh, i0 + r, c, g);
  }
  for (uint e = tid; e < BR * D; e += NT) sm[OFF_A + (e / D) * DP + e % D] = 0.0;
  for (uint r = tid; r < BR; r += NT) {
    sm[OFF_M + r] = 0.0;
    sm[OFF_L + r] = 0.0;
  }

  const uint i_last = min(i0 + BR - 1u, T - 1u);
  for (uint kt = 0u; kt <= i_last / BC; ++kt) {
    const uint j0 = kt * BC;
    barrier();  // the previous tile's Kf/V/P are consumed
    for (uint e = tid; e < BC * W; e += NT) {
      const uint r = e / W, c = e % W;
      sm[OFF_K + r * WP + c] = kf_at(bh, j0 + r, c);
    }
    for (uint e = tid; e < BC * D; e += NT) {
      const uint r = e / D, c = e % D, j = j0 + r;
      sm[OFF_V + r * DP + c] = j < T ? float(v[(bh * T + j) * D + c]) : 0.0;
    }
    for (uint r = tid; r < BC; r += NT) {
      const uint j = j0 + r;
      sm[OFF_BIAS + r] = (RA != 0u && j < T) ? g.z * dsc[bh * T + j] : 0.0;
    }
    barrier();

    const uint kind = classify(i0, j0);
    for (uint e = tid; e < BR * BC; e += NT) {
      const uint r = e / BC, c = e % BC, i = i0 + r, j = j0 + c;
      float x = 0.0;
      if (i < T && j <= i) {
        const uint qo = OFF_Q + r * WP, ko = OFF_K + c * WP;
        for (uint t = 0u; t < D; ++t) x += sm[qo + t] * sm[ko + t];
        if (rec_on(kind, i, j))
          for (uint t = D; t < W; ++t) x += sm[qo + t] * sm[ko + t];
        x = x * pc.scale + sm[OFF_BIAS + c];
      }
      sm[OFF_S + r * CP + c] = x;
    }
    barrier();

    // Online softmax, one thread per row. kt == 0 always holds key 0 <= i,
    // so every live row has a finite max after the first tile; later tiles
    // may have no live key for a row (j0 > i): the max then stays put.
    for (uint r = tid; r < BR; r += NT) {
      const uint i = i0 + r;
      if (i >= T) {
        sm[OFF_AL + r] = 0.0;
        for (uint c = 0u; c < BC; ++c) sm[OFF_S + r * CP + c] = 0.0;
        continue;
      }
      const uint live = min(BC, i + 1u - min(i + 1u, j0));  // keys j0..min(i, j0+BC-1)
      const float m_old = sm[OFF_M + r];
      float mx = kt == 0u ? sm[OFF_S + r * CP] : m_old;
      for (uint c = 0u; c < live; ++c) mx = max(mx, sm[OFF_S + r * CP + c]);
      const float m_new = kt == 0u ? mx : max(m_old, mx);
      float sum = 0.0;
      for (uint c = 0u; c < BC; ++c) {
        const float p = c < live ? exp(sm[OFF_S + r * CP + c] - m_new) : 0.0;
        sm[OFF_S + r * CP + c] = p;
        sum += p;
      }
      const float alpha = kt == 0u ? 0.0 : exp(m_old - m_new);
      sm[OFF_AL + r] = alpha;
      sm[OFF_M + r] = m_new;
      sm[OFF_L + r] = sm[OFF_L + r] * alpha + sum;
    }
    barrier();

    for (uint e = tid; e < BR * D; e += NT) {
      const uint r = e / D, c = e % D;
      float a = sm[OFF_A + r * DP + c] * sm[OFF_AL + r];
      for (uint t = 0u; t < BC; ++t) a += sm[OFF_S + r * CP + t] * sm[OFF_V + t * DP + c];
      sm[OFF_A + r * DP + c] = a;
    }
  }
  barrier();

  for (uint e = tid; e < BR * D; e += NT) {
    const uint r = e / D, c = e % D, i = i0 + r;
    if (i < T) o[(bh * T + i) * D + c] = TO_STORE(sm[OFF_A + r * DP + c] / sm[OFF_L + r]);
  }
  for (uint r = tid; r < BR; r += NT) {
    const uint i = i0 + r;
    if (i < T) lse[bh * T + i] = sm[OFF_M + r] + log(sm[OFF_L + r]);
  }
}
