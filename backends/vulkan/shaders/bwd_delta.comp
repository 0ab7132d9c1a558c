#version 450
// Delta_i = dO_i . O_i, one thread per row (x: rows of a head, y: b*H + h).
#include "common.glsl"

// The same o and dout buffers as 16-byte chunks (descriptor aliasing): a
// row in D / 8 (fp16) or D / 4 (fp32) loads instead of D. Element by
// element, each load instruction of a warp touched 32 rows' cache lines for
// 2 or 4 bytes of each (v28).
#ifdef RA_FP16
layout(std430, binding = 5) restrict readonly buffer BufO4 { uvec4 o4[]; };
layout(std430, binding = 7) restrict readonly buffer BufDout4 { uvec4 dout4[]; };
const uint PER_CHUNK = 8u;
float chunk_dot(uint a) {
  const uvec4 x = dout4[a], y = o4[a];
  float s = 0.0;
  for (uint t = 0u; t < 4u; ++t) s += dot(unpackHalf2x16(x[t]), unpackHalf2x16(y[t]));
  return s;
}
#else
layout(std430, binding = 5) restrict readonly buffer BufO4 { vec4 o4[]; };
layout(std430, binding = 7) restrict readonly buffer BufDout4 { vec4 dout4[]; };
const uint PER_CHUNK = 4u;
float chunk_dot(uint a) { return dot(dout4[a], o4[a]); }
#endif

void main() {
  const uint i = gl_GlobalInvocationID.x, bh = head_index();
  if (i >= pc.T || head_past_end(bh)) return;
  const uint base = (bh * pc.T + i) * D;
  float s = 0.0;
  if (D % PER_CHUNK == 0u) {
    for (uint c = 0u; c < D / PER_CHUNK; ++c) s += chunk_dot(base / PER_CHUNK + c);
  } else {
    for (uint c = 0u; c < D; ++c) s += float(dout[base + c]) * float(o[base + c]);
  }
  delta[bh * pc.T + i] = s;
}
