// Shared by the two backward kernels: the shared-memory layout and the tile
// step P = exp(L - lse), dP = dO V^T, dL = P (dP - Delta).
#include "common.glsl"

// Shared layout (floats); attention.cpp's backward_shared_floats() mirrors it.
const uint OFF_Q = 0u;                  // Qf    [BR][WP]
const uint OFF_DO = OFF_Q + BR * WP;    // dO    [BR][DP]
const uint OFF_K = OFF_DO + BR * DP;    // Kf    [BC][WP]
const uint OFF_V = OFF_K + BC * WP;     // V     [BC][DP]
const uint OFF_P = OFF_V + BC * DP;     // P     [BR][CP]
const uint OFF_DL = OFF_P + BR * CP;    // dL    [BR][CP]
const uint OFF_LSE = OFF_DL + BR * CP;  // lse   [BR]
const uint OFF_DEL = OFF_LSE + BR;      // Delta [BR]
const uint OFF_BIAS = OFF_DEL + BR;     // w_disc d_j [BC]
const uint OFF_COL = OFF_BIAS + BC;     // column sums of dL [BC]
const uint OFF_RED = OFF_COL + BC;      // per-thread partial sums [2 NT]
const uint SMEM = OFF_RED + 2u * NT;
shared float sm[SMEM];

// Qf rows, dO rows, lse and Delta of query tile i0 (zero past T).
void load_query_tile(uint bh, uint i0, vec3 g) {
  const uint tid = gl_LocalInvocationID.x, T = pc.T;
  for (uint e = tid; e < BR * W; e += NT) {
    const uint r = e / W, c = e % W;
    sm[OFF_Q + r * WP + c] = qf_at(bh, i0 + r, c, g);
  }
  for (uint e = tid; e < BR * D; e += NT) {
    const uint r = e / D, c = e % D, i = i0 + r;
    sm[OFF_DO + r * DP + c] = i < T ? float(dout[(bh * T + i) * D + c]) : 0.0;
  }
  for (uint r = tid; r < BR; r += NT) {
    const uint i = i0 + r;
    sm[OFF_LSE + r] = i < T ? lse[bh * T + i] : 0.0;
    sm[OFF_DEL + r] = i < T ? delta[bh * T + i] : 0.0;
  }
}

// Kf rows, V rows and the bias of key tile j0 (zero past T).
void load_key_tile(uint bh, uint j0, vec3 g) {
  const uint tid = gl_LocalInvocationID.x, T = pc.T;
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
}

// P and dL of the (i0, j0) tile into shared memory; zero off the causal part.
void dl_tile(uint kind, uint i0, uint j0) {
  const uint tid = gl_LocalInvocationID.x, T = pc.T;
  for (uint e = tid; e < BR * BC; e += NT) {
    const uint r = e / BC, c = e % BC, i = i0 + r, j = j0 + c;
    float p = 0.0, dl = 0.0;
    if (i < T && j <= i) {
      const uint qo = OFF_Q + r * WP, ko = OFF_K + c * WP;
      float x = 0.0;
      for (uint t = 0u; t < D; ++t) x += sm[qo + t] * sm[ko + t];
      if (rec_on(kind, i, j))
        for (uint t = D; t < W; ++t) x += sm[qo + t] * sm[ko + t];
      p = exp(x * pc.scale + sm[OFF_BIAS + c] - sm[OFF_LSE + r]);
      float dp = 0.0;
      const uint oo = OFF_DO + r * DP, vo = OFF_V + c * DP;
      for (uint t = 0u; t < D; ++t) dp += sm[oo + t] * sm[vo + t];
      dl = p * (dp - sm[OFF_DEL + r]);
    }
    sm[OFF_P + r * CP + c] = p;
    sm[OFF_DL + r * CP + c] = dl;
  }
}
