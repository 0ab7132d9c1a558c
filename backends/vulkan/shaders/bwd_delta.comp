#version 450
// Delta_i = dO_i . O_i, one thread per row (x: rows of a head, y: b*H + h).
#include "common.glsl"

void main() {
  const uint i = gl_GlobalInvocationID.x, bh = head_index();
  if (i >= pc.T || head_past_end(bh)) return;
  const uint base = (bh * pc.T + i) * D;
  float s = 0.0;
  for (uint c = 0u; c < D; ++c) s += float(dout[base + c]) * float(o[base + c]);
  delta[bh * pc.T + i] = s;
}
