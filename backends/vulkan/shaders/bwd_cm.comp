#version 450
// Backward on cooperative matrices (GL_NV_cooperative_matrix, or with RA_CM_KHR
// GL_KHR_cooperative_matrix: cm_common.glsl; fp16 x fp16 ->
// fp32, 16x16x16 per subgroup): the same math and outputs as bwd_kv.comp and
// bwd_q.comp, one source for both kernels, because they are the same loop
// seen from the two sides of the score matrix:
//   query-owned (default):    own rows = queries i, streamed rows = keys j;
//     dQf_i += dL_ij Kf_j            -> dQ (+= w_std s dQf[0:D]), dK (+= w_rec s dQf[D:2D])
//     dw_std, dw_rec shares          = sum dL_ij s Q_i.K_j, sum dL_ij s K_i.Q_j (band)
//   key-owned (-DRA_CM_KEYS): own rows = keys j, streamed rows = queries i;
//     dKf_j += dL^T_ji Qf_i          -> dK = w_std s dKf[0:D], dQ = w_rec s dKf[D:2D]
//     dV_j  += P^T_ji dO_i,  col_j = sum_i dL_ij -> dd_j = w_disc col_j, dw_disc share
// Each block of 16 own x 16 streamed rows is computed in the own rows'
// orientation (queries x keys, or keys x queries), so no product needs a
// transpose in shared memory: S = F_own F_str^T per half, dP = G_own G_str^T
// (G = dO for queries, V for keys), then dL element-wise, then
// acc += dL F_str (and dV += P^T dO) with F_str as a row-major B.
//
// Gates: the folded rows here are UNGATED, F = [Q, K] for queries and
// [K, Q] for keys (exact fp16 inputs), and the two logit halves are kept
// apart in fp32 (Sa = Q_i.K_j, Sb = K_i.Q_j), so the gates enter in fp32:
// L = s (w_std Sa + w_rec Sb [band]) + w_disc d_j, dQ / dK get their gate at
// the store, and the gate gradients are fp32 sums of fp32 dL times fp32 Sa /
// Sb / d_j (they cancel heavily: sum_j dL_ij = 0 per row), never of fp16 dL.
//
// Per subgroup in registers for the whole kernel: its own rows' F (KW fp16
// A-fragments) and G (KD), staged through the streamed buffers before the
// loop; the accumulators (KW, plus KD for dV and one for the column sums).
// Per-element work reads each element's (row, column) from the index map
// (cm_common.glsl). Shared memory: the streamed F and G tiles, per-row lse /
// Delta / bias, one 16 x 20 fp32 scratch block per subgroup (index map,
// stores), reduction slots.
#ifdef RA_CM_KEYS
#define CM_OWN_ROWS BC
#else
#define CM_OWN_ROWS BR
#endif
// glslc enables #include itself; glslangValidator (the RA_CM_KHR builds) needs it asked for.
#extension GL_GOOGLE_include_directive : require
#include "cm_common.glsl"

#ifdef RA_CM_KEYS
const bool KEYS = true;
const uint OWN = BC, STR = BR;  // own key rows, streamed query rows
const uint OWN_FX = 1u, STR_FX = 0u, OWN_GX = 2u, STR_GX = 3u;  // [K, Q], V / [Q, K], dO
#else
const bool KEYS = false;
const uint OWN = BR, STR = BC;  // own query rows, streamed key rows
const uint OWN_FX = 0u, STR_FX = 1u, OWN_GX = 3u, STR_GX = 2u;  // [Q, K], dO / [K, Q], V
#endif
const uint NSB = STR / 16u;  // 16-row blocks of a streamed tile
// Row strides padded by 8 halves / 4 floats (16-byte aligned rows for the
// matrix loads, rows off the same bank), as in fwd_cm.comp.
const uint FS = W16 + 8u;
const uint GS = D16 + 8u;
const uint SS = 20u;
// kernel_traits.hpp's coopmat_backward_shared_bytes() mirrors these sizes.
// sf / sg as 16-byte chunks (CM_PUT16: one shared store per staged chunk,
// where eight 2-byte ones made fwd_cm's staging skeleton 16-40% slower, v25);
// offsets and strides stay in halves.
shared uvec4 sf[STR * FS / 8u];      // streamed folded rows (first: own rows, staged)
shared uvec4 sg[STR * GS / 8u];      // streamed dO / V rows
shared float ss[NSG * 16u * SS];     // per subgroup: index map, accumulator stores
shared float slse[BR], sdel[BR];     // per query row of its tile: lse log2(e), Delta
shared float sbias[BC];              // per key row of its tile: w_disc d_j log2(e)

// Own rows' per-row values in registers (spec constant 10, as fwd_cm.comp's
// ROWREG; attention.cpp sets 1 for the real kernels on NVIDIA unless
// $RA_VK_ROWSTATS=0): where the accumulators have the two-row layout
// (CM_ROW_LAYOUT), a lane's elements need the lse and Delta (query-owned) or
// the bias (key-owned) of two rows only, held in registers for the whole
// kernel instead of read from shared memory per element and block. Where
// the layout does not hold the outputs are NaN.
layout(constant_id = 10) const uint ROWREG = 0u;
// Per subgroup: its shares of dw_std and dw_rec (query-owned) or dw_disc (key-owned).
shared float sred[2u * NSG];

// 16-byte chunk e of the folded rows [x, other] from row0 (fx: x's
// buffer), and its place in sf; chunk e of the dO or V rows (gx), and its
// place in sg.
uvec4 f_chunk(uint bh, uint row0, uint e, uint fx) {
  const uint r = e / CW, c8 = e % CW;
  const bool second = c8 >= P8;
  return load8(second ? 1u - fx : fx, bh, row0 + r, second ? c8 - P8 : c8);
}
uint f_slot(uint e) { return (e / CW) * FS + 8u * (e % CW); }
uvec4 g_chunk(uint bh, uint row0, uint e, uint gx) { return load8(gx, bh, row0 + e / P8, e % P8); }
uint g_slot(uint e) { return (e / P8) * GS + 8u * (e % P8); }

// Rows row0 .. row0 + rows - 1: folded [x, other] into sf, dO or V (gx) into sg.
void stage(uint bh, uint row0, uint rows, uint fx, uint gx) {
  for (uint e = gl_LocalInvocationID.x; e < rows * CW; e += NT) CM_PUT16(sf, f_slot(e), f_chunk(bh, row0, e, fx));
  for (uint e = gl_LocalInvocationID.x; e < rows * P8; e += NT) CM_PUT16(sg, g_slot(e), g_chunk(bh, row0, e, gx));
}

const float LOG2E = 1.4426950408889634;

// The per-row scalars of sequence row x: (lse log2(e), Delta) of a query
// row, or (w_disc d_x log2(e), 0) of a key row (0 past T); lse and the bias
// times log2(e), so P = exp2 of one sum (BWD_EL). put_scalars stores them
// as row r of the tile (slse / sdel, or sbias).
vec2 row_scalars(uint bh, uint x, bool queries, float w_disc) {
  const uint T = pc.T;
  if (x >= T) return vec2(0.0);
  if (queries) return vec2(lse[bh * T + x] * LOG2E, delta[bh * T + x]);
  return vec2(RA != 0u ? w_disc * dsc[bh * T + x] * LOG2E : 0.0, 0.0);
}
void put_scalars(uint r, vec2 v, bool queries) {
  if (queries) {
    slse[r] = v.x;
    sdel[r] = v.y;
  } else {
    sbias[r] = v.x;
  }
}
void stage_scalars(uint bh, uint row0, uint rows, bool queries, float w_disc) {
  for (uint r = gl_LocalInvocationID.x; r < rows; r += NT)
    put_scalars(r, row_scalars(bh, row0 + r, queries, w_disc), queries);
}

// Software pipeline of the streamed loop (spec constant 8, as fwd_cm.comp's
// PREFETCH; attention.cpp sets it from $RA_VK_PREFETCH): each invocation
// loads its chunks of the next streamed tile into registers while the
// current one is computed, and stores them to shared memory after the
// barrier that ends the current tile's use. Without it every tile's global
// loads are waited out between two barriers, with nothing else in flight
// where one workgroup fills the SM (RA's 128-row tiles). Named registers on
// the tensor cores (as fwd_cm's: arrays indexed by an unrolled counter went
// to local memory there); a tile needing more than 16 chunks of a kind per
// invocation runs single-stage (the host's coopmat_prefetch_fits()
// says the same). Emulated: arrays.
layout(constant_id = 8) const uint PREFETCH = 1u;
const uint NFC = (STR * CW + NT - 1u) / NT;  // folded chunks per invocation and tile
const uint NGC = (STR * P8 + NT - 1u) / NT;  // dO / V chunks
const uint NSC = (STR + NT - 1u) / NT;       // row scalars
#ifdef RA_CM_EMULATE
const bool PF = PREFETCH != 0u;
#define BPF_DECL uvec4 pf[NFC], pg[NGC]; vec2 ps[NSC];
#define BPF_EACH(M, a) CM_UNROLL for (uint u_ = 0u; u_ < max(NFC, max(NGC, NSC)); ++u_) { M(u_, a) }
#define PFF(u) pf[u]
#define PFG(u) pg[u]
#define PFS(u) ps[u]
#else
const bool PF = PREFETCH != 0u && NFC <= 16u && NGC <= 16u && NSC <= 16u;
#define BPF_DECL CM_DECL16(uvec4, pf) CM_DECL16(uvec4, pg) CM_DECL16(vec2, ps)
#define BPF_EACH(M, a) CM_EACH16(M, a)
#define PFF(u) pf##u
#define PFG(u) pg##u
#define PFS(u) ps##u
#endif
// Invocation tid's u-th folded (into F(u)) and dO / V (into G(u)) chunk of
// n rows from row0_ of the buffers fx / gx, and their stores into sf / sg:
// the prefetch's and the own rows' staging (below) share them.
#define CHUNKS_FETCH(u, row0_, n, fx, gx, F, G)                                          \
  if (u < NFC && tid + u * NT < (n) * CW) F(u) = f_chunk(bh, row0_, tid + u * NT, fx);   \
  if (u < NGC && tid + u * NT < (n) * P8) G(u) = g_chunk(bh, row0_, tid + u * NT, gx);
#define CHUNKS_STORE(u, n, F, G)                                                         \
  if (u < NFC && tid + u * NT < (n) * CW) CM_PUT16(sf, f_slot(tid + u * NT), F(u));      \
  if (u < NGC && tid + u * NT < (n) * P8) CM_PUT16(sg, g_slot(tid + u * NT), G(u));
#define BPF_FETCH(u, row0_)                                  \
  CHUNKS_FETCH(u, row0_, STR, STR_FX, STR_GX, PFF, PFG)      \
  if (u < NSC && tid + u * NT < STR) PFS(u) = row_scalars(bh, row0_ + tid + u * NT, KEYS, g.z);
#define BPF_STORE(u, _)                  \
  CHUNKS_STORE(u, STR, PFF, PFG)         \
  if (u < NSC && tid + u * NT < STR) put_scalars(tid + u * NT, PFS(u), KEYS);

// The own rows' staging, a round of up to STR rows (row0_, `rows` in
// scope): every invocation's loads issued before its first shared store,
// into named registers as the prefetch's (stage()'s loop of load-store
// pairs waited out one global load per chunk, 12 a workgroup for RA's
// 128-row tiles: perf v30). Where a kind needs more than 16 registers,
// stage() does it. Emulated: arrays.
const bool OWN_BATCH = NFC <= 16u && NGC <= 16u;
#ifdef RA_CM_EMULATE
#define OWN_DECL uvec4 of[NFC], og[NGC];
#define OWN_EACH(M, a) CM_UNROLL for (uint u_ = 0u; u_ < max(NFC, NGC); ++u_) { M(u_, a) }
#define OFC(u) of[u]
#define OGC(u) og[u]
#else
#define OWN_DECL CM_DECL16(uvec4, of) CM_DECL16(uvec4, og)
#define OWN_EACH(M, a) CM_EACH16(M, a)
#define OFC(u) of##u
#define OGC(u) og##u
#endif
#define OWN_FETCH(u, row0_) CHUNKS_FETCH(u, row0_, rows, OWN_FX, OWN_GX, OFC, OGC)
#define OWN_STORE(u, _) CHUNKS_STORE(u, rows, OFC, OGC)

// The gradients as 16-byte chunks (descriptor aliasing, as q4 / k4 / v4):
// one load and one store per 8 halves.
layout(std430, binding = 8) restrict buffer BufDq4 { uvec4 dq4[]; };
layout(std430, binding = 9) restrict buffer BufDk4 { uvec4 dk4[]; };
layout(std430, binding = 10) restrict writeonly buffer BufDv4 { uvec4 dv4[]; };

const uint DST_DQ = 0u, DST_DK = 1u, DST_DV = 2u;

// Chunk e (< 32: row e / 2, half e % 2) of a 16 x 16 gradient block at rows
// go.. and columns col0.. (VEC rows): x, its index in dq4 / dk4 / dv4;
// false past T or D.
bool grad_chunk(uint bh, uint go, uint col0, uint e, out uint x) {
  const uint row = go + e / 2u, c = col0 + 8u * (e % 2u);
  x = ((bh * pc.T + row) * D + c) / 8u;
  return row < pc.T && c < D;
}

// The query-owned kernel's old dQ (block t < KD) or dK chunk at this lane's
// place in block t of its rows, as put_block reads it on 32-wide subgroups
// with whole-chunk rows (zeros elsewhere, where put_block loads in place).
uvec4 old_chunk(uint bh, uint go, uint t) {
  uint x;
  if (!VEC || SG != 32u || !grad_chunk(bh, go, 16u * (t % KD), gl_SubgroupInvocationID, x)) return uvec4(0u);
  return t < KD ? dq4[x] : dk4[x];
}

// The 16x16 block this subgroup just stored at its scratch rows, times mul,
// into rows go.. and columns col0.. of dst; add: onto what the key-owned
// kernel wrote there (it ran first). Where rows are whole 16-byte chunks
// (VEC) a lane moves 8 halves at a time, one chunk per lane on 32-wide
// subgroups: the query-owned kernel's read-modify-write then waits out one
// global load a block, where a loop over single halves waited out one per
// element, 8 a lane and block (~20% of RA's query-owned kernel, perf v30).
// pre: on 32-wide subgroups, this lane's old chunk (old_chunk), loaded
// before the first block's stores so that the blocks' loads overlap.
void put_block(uint bh, uint r0, uint go, uint col0, uint dst, bool add, float mul, uvec4 pre) {
  subgroup_sync();
  if (VEC) {
    for (uint e = gl_SubgroupInvocationID; e < 32u; e += SG) {
      uint x;
      if (!grad_chunk(bh, go, col0, e, x)) continue;
      const uint s0 = (r0 + e / 2u) * SS + 8u * (e % 2u);
      const uvec4 old = !add ? uvec4(0u) : SG == 32u ? pre : (dst == DST_DQ ? dq4[x] : dk4[x]);
      uvec4 w;
      [[unroll]] for (uint t = 0u; t < 4u; ++t) {
        const vec2 a = mul * vec2(ss[s0 + 2u * t], ss[s0 + 2u * t + 1u]);
        w[t] = packFloat2x16(f16vec2(add ? vec2(unpackFloat2x16(old[t])) + a : a));
      }
      if (dst == DST_DQ) dq4[x] = w;
      else if (dst == DST_DK) dk4[x] = w;
      else dv4[x] = w;
    }
  } else {
    for (uint e = gl_SubgroupInvocationID; e < 256u; e += SG) {
      const uint rr = e / 16u, c = col0 + e % 16u, row = go + rr;
      if (row >= pc.T || c >= D) continue;
      const uint x = (bh * pc.T + row) * D + c;
      const float a = mul * ss[(r0 + rr) * SS + e % 16u];
      if (dst == DST_DQ) dq[x] = float16_t(add ? float(dq[x]) + a : a);
      else if (dst == DST_DK) dk[x] = float16_t(add ? float(dk[x]) + a : a);
      else dv[x] = float16_t(a);
    }
  }
  subgroup_sync();  // the next block overwrites the scratch
}

// The key-owned kernel's dd_j = mul col_j (mul = w_disc, NaN where the
// layout checks failed) for key row j, and the term d_j col_j of dw_disc it
// returns (nothing and 0 past T).
float put_dd(uint bh, uint j, float col, float mul) {
  if (j >= pc.T) return 0.0;
  dd[bh * pc.T + j] = mul * col;
  return dsc[bh * pc.T + j] * col;
}

// One element of a streamed block against the own rows: P and dL in fp32,
// and their sums (the key loop's per-element work below, written out by
// CM_EACH_EL). qi: the row of slse / sdel; kj: the row of sbias.
// P = exp2(c_std Sa + c_rec Sb + (bias - lse) log2 e), c = s w log2 e.
// Branch-free: every element computes P and masks it (j > i, i past T) by
// a select, and the reciprocal half by `rec` (a constant unless BANDED). A
// block-level choice between a masked and an unmasked path (v29 and
// before) was a branch in the block loop, and NVIDIA's compiler copied the
// ~70 loop-carried accumulator registers at every block's end (the SASS,
// perf v30). The per-row and per-column values are read for every element
// (rows past T and padding columns were staged as finite values), so where
// the layout pairs them element e + 4 reuses element e's column value
// (CM_COL_VALUE; cache vec4s declared per block).
#ifdef RA_CM_KEYS
// Column sums of dL (dd): per own row, so with ROWREG's two-row layout two
// registers a lane (csA, csB; element e's row is a constant), else a
// fragment (the kernel sat at 255 registers with one, spilling, perf v30).
#define BWD_SUMS(e, dl, rec) \
  if (ROWREG != 0u) {        \
    if (in_row_b(e)) csB += dl; \
    else csA += dl;          \
  } else {                   \
    csum[e] += dl;           \
  }
// Own rows are keys: their bias in registers where ROWREG holds.
#define EL_BIAS(e, kj) (ROWREG != 0u ? (in_row_b(e) ? own_b.x : own_a.x) : sbias[kj])
#define EL_LSE(e, qi) CM_COL_VALUE(e, slse[qi], clse_, true)
#define EL_DEL(e, qi) CM_COL_VALUE(e, sdel[qi], cdel_, true)
#else
#define BWD_SUMS(e, dl, rec) \
  ws += dl * sa[e];          \
  wr += rec ? dl * sb[e] : 0.0;
// Own rows are queries: their lse and Delta in registers where ROWREG holds.
#define EL_BIAS(e, kj) CM_COL_VALUE(e, sbias[kj], cbias_, true)
#define EL_LSE(e, qi) (ROWREG != 0u ? (in_row_b(e) ? own_b.x : own_a.x) : slse[qi])
#define EL_DEL(e, qi) (ROWREG != 0u ? (in_row_b(e) ? own_b.y : own_a.y) : sdel[qi])
#endif
#define BWD_EL(e, _)                                                                    \
  if (e < NEL) {                                                                        \
    const uint f = ERC(e), rr = f >> 4u, cc = f & 15u;                                  \
    const uint i = KEYS ? sb0 + cc : go + rr, j = KEYS ? go + rr : sb0 + cc;            \
    const uint qi = KEYS ? 16u * cb + cc : r0 + rr;                                     \
    const uint kj = KEYS ? r0 + rr : 16u * cb + cc;                                     \
    const bool rec = RA != 0u && (BANDED == 0u || in_band(i, j));                        \
    const float off = (RA != 0u ? EL_BIAS(e, kj) : 0.0) - EL_LSE(e, qi);               \
    const float pe = exp2(c_std * sa[e] + (rec ? c_rec * sb[e] : 0.0) + off);           \
    const float p = i < T && j <= i ? pe : 0.0;                                         \
    const float dl = p * (dp[e] - EL_DEL(e, qi));                                       \
    BWD_SUMS(e, dl, rec)                                                                \
    sa[e] = p;                                                                          \
    sb[e] = rec ? dl : 0.0;                                                             \
    dp[e] = dl;                                                                         \
  }

// One 16-row block's score products, step u of KD for each chain: S's
// first half (sa = F_own F_str^T over the first D columns), with `rec` (a
// literal) the reciprocal half (sb, the second D columns), and dP (dp =
// G_own G_str^T). Written as one straight block per value of rec: chains
// split by a branch were computed one after the other, each HMMA waiting on
// the last (the SASS, perf v29).
#define SCORE_STEPS(rec)                                                   \
  CM_UNROLL for (uint u = 0u; u < KD; ++u) {                               \
    DECL_HB(fb);                                                           \
    CM_LOAD4(fb, sf, cb * 16u * FS + 16u * u, FS, true);                   \
    MMA(sa, fa[u], fb);                                                    \
    if (rec) {                                                             \
      DECL_HB(fr);                                                         \
      CM_LOAD4(fr, sf, cb * 16u * FS + 16u * (KD + u), FS, true);          \
      MMA(sb, fa[KD + u], fr);                                             \
    }                                                                      \
    DECL_HB(gb);                                                           \
    CM_LOAD4(gb, sg, cb * 16u * GS + 16u * u, GS, true);                   \
    MMA(dp, ga[u], gb);                                                    \
  }
// The block's gradient products, step u of KD: acc[u] += dL F_str, with
// `rec` acc[KD + u] += dL_band F_str's second half, and in the key-owned
// kernel dV[u] += P^T dO.
#ifdef RA_CM_KEYS
#define GRAD_DV_STEP(u)                                                    \
  {                                                                        \
    DECL_HB(gv);                                                           \
    CM_LOAD4(gv, sg, cb * 16u * GS + 16u * (u), GS, false);                \
    MMA(dva[u], ph, gv);                                                   \
  }
#else
#define GRAD_DV_STEP(u)
#endif
#define GRAD_STEPS(rec)                                                    \
  CM_UNROLL for (uint u = 0u; u < KD; ++u) {                               \
    DECL_HB(fb);                                                           \
    CM_LOAD4(fb, sf, cb * 16u * FS + 16u * u, FS, false);                  \
    MMA(acc[u], dlh, fb);                                                  \
    if (rec) {                                                             \
      DECL_HB(fr);                                                         \
      CM_LOAD4(fr, sf, cb * 16u * FS + 16u * (KD + u), FS, false);         \
      MMA(acc[KD + u], dlr, fr);                                           \
    }                                                                      \
    GRAD_DV_STEP(u)                                                        \
  }

void main() {
  const uint tid = gl_LocalInvocationID.x, lane = gl_SubgroupInvocationID, T = pc.T;
  // Heaviest tiles first: the last query tiles see the most keys, the first
  // key tiles the most queries.
  const uint ot = KEYS ? gl_WorkGroupID.x : pc.n_tiles - 1u - gl_WorkGroupID.x;
  const uint bh = head_index();
  if (head_past_end(bh)) return;
  const uint b = bh / pc.H, h = bh % pc.H;
  const vec3 g = gates_of(b, h);
#ifdef RA_CM_EMULATE
  el_rt = EL - (pc.n_tiles == 0u ? 1u : 0u);  // n_tiles >= 1: EL, unknown to the compiler
#endif
  const uint o0 = ot * OWN;             // own tile's first row
  const uint r0 = gl_SubgroupID * 16u;  // this subgroup's rows in it
  const uint go = o0 + r0;              // ... in the sequence
  const bool live = go < T;             // subgroup-uniform
  const uint go_last = min(go + 15u, T - 1u);

  DECL_F(idx);
  CM_INDEX_MAP(idx, ss, r0 * SS, SS);
  // NaN into every output where the fragments' length is not NEL or more
  // than 8 (the written-out element work below assumes both: cm_common.glsl).
  CM_ERC_DECL
  CM_EACH_EL(INIT_ERC_EL, _)
  uint rowA = 0u, rowB = 0u, selB = 0u;
  bool rowreg = false;
  if (ROWREG != 0u) CM_ROW_LAYOUT(rowA, rowB, selB, rowreg);
  // ... and where ROWREG's layout does not hold.
  const bool fits = CM_LENGTH_OK(idx) && CM_EL_FITS && (ROWREG == 0u || rowreg);
  const float ok = fits ? 1.0 : uintBitsToFloat(0x7fc00000u);
  // ROWREG: the own rows' values (EL_LSE, EL_DEL, EL_BIAS) of rows rowA /
  // rowB, as row_scalars gives them: (lse, Delta) or (bias, 0).
  vec2 own_a = vec2(0.0), own_b = vec2(0.0);
  if (ROWREG != 0u && live) {
    own_a = row_scalars(bh, go + rowA, !KEYS, g.z);
    own_b = row_scalars(bh, go + rowB, !KEYS, g.z);
  }
  const float c_std = pc.scale * g.x * LOG2E, c_rec = pc.scale * g.y * LOG2E;

  // Streamed tiles: key tiles 0 .. up to the own tile's last query, or
  // query tiles from the own tile's first key to the end.
  const uint st_first = KEYS ? o0 / STR : 0u;
  const uint st_end = KEYS ? (T + STR - 1u) / STR : min(o0 + OWN - 1u, T - 1u) / STR + 1u;
  // PREFETCH: the first streamed tile's loads, in flight during the own rows' staging.
  BPF_DECL
  if (PF && st_first < st_end) {
    BPF_EACH(BPF_FETCH, st_first * STR)
  }

  // Own rows into registers, staged through sf / sg STR rows at a time.
  DECL_HA_ARR(fa, KW);
  DECL_HA_ARR(ga, KD);
  OWN_DECL
  for (uint c0 = 0u; c0 < OWN; c0 += STR) {
    const uint rows = min(STR, OWN - c0);
    if (OWN_BATCH) {
      OWN_EACH(OWN_FETCH, o0 + c0)
    }
    barrier();  // sf / sg free (previous chunk's fragments loaded)
    if (OWN_BATCH) {
      OWN_EACH(OWN_STORE, _)
    } else {
      stage(bh, o0 + c0, rows, OWN_FX, OWN_GX);
    }
    barrier();
    if (r0 >= c0 && r0 < c0 + rows) {
      CM_UNROLL for (uint t = 0u; t < KW; ++t) CM_LOAD4(fa[t], sf, (r0 - c0) * FS + 16u * t, FS, false);
      CM_UNROLL for (uint t = 0u; t < KD; ++t) CM_LOAD4(ga[t], sg, (r0 - c0) * GS + 16u * t, GS, false);
    }
  }
  stage_scalars(bh, o0, OWN, !KEYS, g.z);  // read after the loop's first barrier

  DECL_F_ARR(acc, KW);  // dQf (query-owned) or dKf (key-owned), ungated, unscaled
  CM_UNROLL for (uint t = 0u; t < KW; ++t) FILL_F(acc[t], 0.0);
#ifdef RA_CM_KEYS
  DECL_F_ARR(dva, KD);
  CM_UNROLL for (uint t = 0u; t < KD; ++t) FILL_F(dva[t], 0.0);
  DECL_F(csum);  // per element: sum of dL over the streamed query rows (fp32)
  FILL_F(csum, 0.0);
  float csA = 0.0, csB = 0.0;  // ROWREG: the same per own row (rowA, rowB)
  float dshare = 0.0;  // this lane's terms of dw_disc (rows lane, lane + SG, ..)
#else
  float ws = 0.0, wr = 0.0;  // this lane's shares of dw_std / s, dw_rec / s
#endif

  for (uint st = st_first; st < st_end; ++st) {
    const uint s0 = st * STR;
    barrier();  // every subgroup is done with the previous tile (or the own rows)
    if (PF) {
      BPF_EACH(BPF_STORE, _)
    } else {
      stage(bh, s0, STR, STR_FX, STR_GX);
      stage_scalars(bh, s0, STR, KEYS, g.z);
    }
    barrier();
    // The next tile's loads, in flight while this one is computed; after
    // the last tile too (zeros past T, unused rows otherwise): no branch.
    if (PF) {
      BPF_EACH(BPF_FETCH, s0 + STR)
    }
    // Every subgroup runs every block of every streamed tile, also blocks
    // with no pair j <= i and rows past T: BWD_EL's masks give them P = dL
    // = 0, and rows past T are not stored. A branch around them (v28 and
    // before) made the compiler copy the loop-carried accumulators at every
    // tile's end, as in the forward (the SASS, perf v29).
    [[dont_unroll]] for (uint cb = 0u; cb < NSB; ++cb) {
      const uint sb0 = s0 + 16u * cb;
      // Whether any pair of the block is in ra_window's band (subgroup-
      // uniform; a constant unless BANDED): its reciprocal products run.
      const uint i_min = KEYS ? sb0 : go, j_max = KEYS ? go_last : sb0 + 15u;
      const bool rec_any = RA != 0u && (BANDED == 0u || int(i_min) - int(j_max) <= pc.window);

      DECL_F(sa);  // Q_i.K_j
      FILL_F(sa, 0.0);
      DECL_F(sb);  // K_i.Q_j (reciprocal half)
      FILL_F(sb, 0.0);
      DECL_F(dp);  // dO_i.V_j
      FILL_F(dp, 0.0);
      // B(k, n) = F_str[16 cb + n][16 t + k]: streamed rows are B's columns.
      // The two or three product chains step by step in one branch-free
      // block (SCORE_STEPS), so the compiler interleaves them.
      if (rec_any) {
        SCORE_STEPS(true)
      } else {
        SCORE_STEPS(false)
      }

      // P and dL per element in fp32, written back over the fragments
      // they came from (sa: P, sb: dL in the band, dp: dL); the fp16
      // copies for the products are made by whole-matrix conversions,
      // since NV cooperative matrices of different component types need
      // not share the element -> (row, column) map. Written out per
      // element (BWD_EL, CM_EACH_EL): a loop NVIDIA's compiler did not
      // unroll kept sa, sb and dp in local memory (v26).
      vec4 clse_, cdel_, cbias_;  // streamed columns' values (EL_LSE, EL_DEL, EL_BIAS)
      CM_EACH_EL(BWD_EL, _)
      DECL_HA(dlh);  // dL
      TO_H(dlh, dp);
      DECL_HA(dlr);  // dL in the band (the reciprocal half's)
      if (rec_any) TO_H(dlr, sb);
#ifdef RA_CM_KEYS
      DECL_HA(ph);   // P
      TO_H(ph, sa);
#endif

      // acc += dL F_str (row-major B: rows of the streamed tile); dV +=
      // P^T dO in the key-owned kernel. Independent accumulators, in one
      // branch-free block (GRAD_STEPS).
      if (rec_any) {
        GRAD_STEPS(true)
      } else {
        GRAD_STEPS(false)
      }
    }
  }

  // Stores, per subgroup through its scratch block; the gates and s in fp32.
  const uint sc = r0 * SS;
#ifdef RA_CM_KEYS
  if (live) {
    CM_UNROLL for (uint t = 0u; t < KW; ++t) {
      CM_STORE(acc[t], ss, sc, SS);
      // dK = w_std s dKf[0:D] (SDPA: w_std = 1); dQ's Kf part = w_rec s dKf[D:2D].
      if (t < KD) put_block(bh, r0, go, 16u * t, DST_DK, false, ok * g.x * pc.scale, uvec4(0u));
      else put_block(bh, r0, go, 16u * (t - KD), DST_DQ, false, ok * g.y * pc.scale, uvec4(0u));
    }
    CM_UNROLL for (uint t = 0u; t < KD; ++t) {
      CM_STORE(dva[t], ss, sc, SS);
      put_block(bh, r0, go, 16u * t, DST_DV, false, ok, uvec4(0u));
    }
    if (RA != 0u && ROWREG != 0u) {
      // Each row's sum across the four lanes sharing it (CM_ROW_LAYOUT);
      // the first of them writes dd_j = w_disc col_j and takes d_j col_j.
      [[unroll]] for (uint x = 1u; x <= 2u; ++x) {
        csA += subgroupShuffleXor(csA, x);
        csB += subgroupShuffleXor(csB, x);
      }
      if ((lane & 3u) == 0u) {
        dshare += put_dd(bh, go + rowA, csA, ok * g.z);
        dshare += put_dd(bh, go + rowB, csB, ok * g.z);
      }
    } else if (RA != 0u) {
      CM_STORE(csum, ss, sc, SS);
      subgroup_sync();
      // dd_j = w_disc col_j, and this lane's rows' terms d_j col_j of dw_disc.
      for (uint rr = lane; rr < 16u; rr += SG) {
        float s = 0.0;
        for (uint c = 0u; c < 16u; ++c) s += ss[(r0 + rr) * SS + c];
        dshare += put_dd(bh, go + rr, s, ok * g.z);
      }
    }
  }
  if (RA != 0u) {
    // This key tile's share of dw_disc, in a fixed order: lanes, then
    // subgroups. (One invocation summing the tile's rows, each term a
    // global load, left the SM idle for ~20 us a workgroup: perf v30.)
    const float sg_share = subgroup_sum_fixed(dshare);
    if (lane == 0u) sred[gl_SubgroupID] = sg_share;
    barrier();
    if (tid == 0u) {
      float s = 0.0;
      for (uint t = 0u; t < NSG; ++t) s += sred[t];
      partials[(bh * pc.n_tiles + ot) * 3u + 2u] = ok * s;
    }
  }
#else
  if (live) {
    // RA adds onto the key-owned kernel's dQ and dK: every block's old
    // chunks are loaded first, in named registers (written out: see
    // CM_EACH_EL), so the epilogue waits out one global load, not one a
    // block.
    CM_DECL16(uvec4, od)
#define OLD_FETCH(t, _) \
    if (RA != 0u && t < KW) od##t = old_chunk(bh, go, t);
    CM_EACH16(OLD_FETCH, _)
    CM_UNROLL for (uint t = 0u; t < KW; ++t) {
      CM_STORE(acc[t], ss, sc, SS);
      // dQ += w_std s dQf[0:D] (SDPA: dQ = s dQf), dK += w_rec s dQf[D:2D].
      if (t < KD) put_block(bh, r0, go, 16u * t, DST_DQ, RA != 0u, ok * g.x * pc.scale, CM_PICK16(od, t));
      else put_block(bh, r0, go, 16u * (t - KD), DST_DK, true, ok * g.y * pc.scale, CM_PICK16(od, t));
    }
  }
  if (RA != 0u) {
    // This query tile's shares of dw_std and dw_rec, summed in a fixed
    // order: lanes, then subgroups.
    const float sg_ws = subgroup_sum_fixed(ws), sg_wr = subgroup_sum_fixed(wr);
    if (lane == 0u) {
      sred[gl_SubgroupID] = sg_ws;
      sred[NSG + gl_SubgroupID] = sg_wr;
    }
    barrier();
    if (tid == 0u) {
      float s0 = 0.0, s1 = 0.0;
      for (uint t = 0u; t < NSG; ++t) {
        s0 += sred[t];
        s1 += sred[NSG + t];
      }
      partials[(bh * pc.n_tiles + ot) * 3u] = ok * pc.scale * s0;
      partials[(bh * pc.n_tiles + ot) * 3u + 1u] = ok * pc.scale * s1;
    }
  }
#endif
}
