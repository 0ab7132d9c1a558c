#version 450
// dgates[gb, h, x] = sum of the per-tile partials over the tiles and, for
// Gb = 1, over the batch; one thread per gate, fixed order: deterministic.
#include "common.glsl"

void main() {
  const uint id = gl_GlobalInvocationID.x;
  const uint G = pc.gate_batch;
  if (id >= G * pc.H * 3u) return;
  const uint x = id % 3u, h = (id / 3u) % pc.H, gb = id / (3u * pc.H);
  float s = 0.0;
  for (uint b = (G == 1u ? 0u : gb); b < (G == 1u ? pc.B : gb + 1u); ++b)
    for (uint t = 0u; t < pc.n_tiles; ++t) s += partials[((b * pc.H + h) * pc.n_tiles + t) * 3u + x];
  dgates[id] = s;
}
