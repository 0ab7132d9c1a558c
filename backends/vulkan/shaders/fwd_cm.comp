#version 450
// Forward on cooperative matrices (GL_NV_cooperative_matrix, or with RA_CM_KHR
// GL_KHR_cooperative_matrix: cm_common.glsl; fp16 x fp16 ->
// fp32, 16x16x16 per subgroup): the same flash-style algorithm as fwd.comp
// (one workgroup per (b, h, query tile), Kf / V tiles streamed through shared
// memory, online softmax, writes O and lse), with S = Qf Kf^T and O += P V
// on the tensor cores.
//
// Work split: the workgroup holds BR = 16 * NSG query rows; subgroup s owns
// rows 16s..16s+15 and keeps everything of those rows in registers:
//   - its Qf rows as KW fp16 A-fragments, loaded once (Qf is staged through
//     the Kf buffer before the key loop, so it costs no shared memory);
//   - O as KD fp32 accumulators and the row sums l as one more (P times a
//     matrix of ones: every column of it is the row sum of the fp16 P that
//     went into O), both across all key tiles.
// NV cooperative matrices say nothing about which (row, column) an
// invocation's element i is, but two matrices of one type share the
// mapping, so the kernel learns it once: it loads a 16x16 fp32 matrix whose
// element (r, c) holds 16 r + c (`idx`). Element-wise, per-row work (scale,
// bias, causal / band mask, exp(x - m_row), the rescale of O and l by
// exp(m_old - m_new)) then runs on the accumulators in registers. The only
// shared-memory round trip per key tile is the logit block for the row
// maxima (two lanes per row, one shuffle; none where ROWREG holds); O never
// leaves registers until the end.
//
// Logits stay unscaled until the exponential: the bias is staged as
// bias / scale, the running maxima are in the same units, and
// exp2(x * scale * log2(e) - m * scale * log2(e)) is one FFMA and one EX2 per
// element. Blocks wholly below the diagonal (and off a band edge) skip the
// masks. Everything indexed per element, per 16-key block or per prefetch
// register is written out by macros (CM_EACH_EL, EACH_BLOCK, PF_EACH)
// rather than looped: NVIDIA's compiler ignored [[unroll]] on those loops
// and kept the fragments and registers they index in local memory (v26:
// 256-384 bytes a lane; none now; SDPA's forward 1.8x, RA's 2x faster).
//
// fp16 storage only (q, k, v, o); Qf = [w_std Q, w_rec K] is rounded to fp16
// once when staged; logits, softmax, O, l and lse are fp32. Head dims that
// are not a multiple of 16 are zero-padded to D16 in shared memory. Global
// loads move 16 bytes (8 halves) per invocation where a row is a whole
// number of 16-byte chunks (D % 8 == 0), else element by element.
//
// RA_CM_EMULATE builds the same kernel with the matrices as plain per-lane
// arrays (element i of lane L is element L + SG i of the row-major 16x16
// matrix) and the products done through a per-subgroup shared scratch:
// identical staging, index maps, masking, softmax, rescaling and
// synchronisation, runnable on any device with fp16 (lavapipe), so
// everything but the matrix instructions is tested where no tensor cores
// exist.
#define CM_OWN_ROWS BR
// glslc enables #include itself; glslangValidator (the RA_CM_KHR builds) needs it asked for.
#extension GL_GOOGLE_include_directive : require
#include "cm_common.glsl"

layout(std430, binding = 5) restrict writeonly buffer BufO4 { uvec4 o4[]; };

// BR, BC: multiples of 16 (attention.cpp picks them). The workgroup is
// NSG subgroups of SG lanes (spec constant 0 = NSG * subgroup size).
const uint NCB = BC / 16u;                   // 16-key blocks of a key tile
// Row statistics in registers (spec constant 10; attention.cpp sets 1 for
// the real kernel on NVIDIA unless $RA_VK_ROWSTATS=0): every lane's elements
// of a 16 x 16 fp32 accumulator lie in two rows, shared with the lanes
// L ^ 1, L ^ 2, L ^ 3, which between them hold all 16 columns of both (the
// layout of NVIDIA's accumulators), so a row's maximum is a lane-local max
// and two xor-shuffles, and the running maxima and rescale factors stay in
// registers: no logit block through shared memory, no serial 32-step scan
// per row, no shared reads per element. The kernel still checks that layout
// on its index map and writes NaN where it does not hold (no shared logit
// block to fall back on: ss is sized for 16 x 16 blocks then). With 0 the
// shared-memory path below runs; both give the same result.
layout(constant_id = 10) const uint ROWREG = 1u;
// Row strides: 16-byte multiples (cooperative-matrix loads and stores want
// aligned rows), 8 halves / 4 floats past the natural width so rows do not
// start on the same shared-memory bank.
const uint QS = W16 + 8u;  // Kf rows (and Qf rows while staged) (halves)
const uint VS = D16 + 8u;  // V rows (halves)
// Logit rows (floats): a 16 x BC block per subgroup where the row
// statistics go through shared memory; with ROWREG (above) only the 16 x 16
// blocks of the index map and the epilogue, which frees the room that lets
// 128-row tiles fit the 48 KiB budget.
const uint SS = ROWREG != 0u ? 20u : BC + 4u;
// kernel_traits.hpp's coopmat_forward_shared_bytes() mirrors these sizes.
// Kf and V as 16-byte chunks (CM_PUT16: one shared store per chunk).
shared uvec4 sk[BC * QS / 8u];
shared uvec4 sv[BC * VS / 8u];
shared float ss[BR * SS];          // per subgroup: logits, index table, l, O out
shared float sm_m[BR], sm_al[BR];  // running max; this tile's rescale (at the end: l)
shared float sbias[BC];

const float NEG_BIG = -3.0e38;  // masked logit: exp2((NEG_BIG - m) c) == 0

// Timing cuts (issue 7: where does this kernel's time go?). Spec constant 7,
// set by attention.cpp from $RA_VK_CUT; 0, the default, is the real kernel.
// Any other value removes one part of the per-key-tile work, so its cost is
// the difference to CUT = 0. Every cut keeps the key loop, the Kf / V / bias
// staging and both workgroup barriers; O and l still depend on what the cut
// keeps, so the compiler cannot drop the loop. Outputs are wrong by design
// (but finite: l is made >= 1 at the end, masked logits are 0 where P is S),
// and ra-bench labels such runs "CUT=<n> (timing only, output wrong)".
//   1  no softmax: no logit store, row max, rescale or exp; P = fp16(S)
//   2  no P V: no V fragment loads, no O products (l += P 1 stays)
//   3  no S = Qf Kf^T: no Kf fragment loads, no products; S = the scale (a
//      push constant, so nothing folds), then masked and softmaxed as usual
//   4  staging only: the key loop's global loads, shared stores and
//      barriers; nothing per subgroup
//   5  no masking: S goes unscaled, unbiased, unmasked into the softmax
//      (ra_window: the reciprocal half of band-edge tiles then goes unused)
//   6  no row statistics: no logit store, row max or rescale; P = exp(S)
//   7  O += C V with a constant fp16 C instead of P (P still feeds l)
//   8  global loads only: cut 4 without its shared stores (the loaded
//      chunks are xor-folded into `keep` instead); barriers kept
//   9  shared stores only: cut 4 without its global loads (the stored
//      chunks are made from the tile and lane numbers); barriers kept
// 8 and 9 split cut 4's skeleton and need the prefetching loop (the host
// refuses them with RA_VK_PREFETCH=0 and on fwd_cm2).
// Every cut != 0 also sums two staged halves per lane and tile (one of sk,
// one of sv) into `keep`, which reaches l at the end: staged tiles a cut
// leaves unread stay live. The Qf fragments loaded before the loop are dead
// in cuts 3 and 4 (a one-time cost).
// attention.cpp's kForwardCutMax is the largest value.
layout(constant_id = 7) const uint CUT = 0u;

// Software pipeline of the key loop (spec constant 8, set by attention.cpp
// from $RA_VK_PREFETCH). 0: single-stage, every tile's global loads are
// issued after the barrier that frees shared memory and waited out before
// the next barrier. 1 (default): tile kt + 1's loads go to registers (the
// same 16-byte chunks, bias floats) right after tile kt is staged, so they
// are in flight while tile kt is computed; after the barrier that ends tile
// kt's use of shared memory they are stored there. Tile 0 is fetched before
// the Qf staging. Two workgroup barriers per key tile in both forms; no
// more shared memory (a second shared stage would not fit RA's 44 KiB at
// D = 64 in the 48 KiB budget).
layout(constant_id = 8) const uint PREFETCH = 1u;
// Workgroup layout (spec constant 9, from $RA_VK_GRID; attention.cpp
// dispatches to match): 0, a 2-D grid (x: query tile, y: b*h); 1, one row
// with the query tiles of a head consecutive; 2, one row with the heads of
// a query tile consecutive. Which workgroups run at once decides how many
// heads' K / V the L2 must hold; the three orders measure that.
layout(constant_id = 9) const uint GRID = 0u;
const uint NKC = (BC * CW + NT - 1u) / NT;  // Kf chunks per invocation and tile
const uint NVC = (BC * P8 + NT - 1u) / NT;  // V chunks
const uint NBC = (BC + NT - 1u) / NT;       // bias entries

#define LOAD_SK(m, off, st, cm) CM_LOAD4(m, sk, off, st, cm)
#define LOAD_SV(m, off, st) CM_LOAD4(m, sv, off, st, false)
#define LOAD_SS(m, off, st) CM_LOAD(m, ss, off, st, false)
#define STORE_SS(m, off, st) CM_STORE(m, ss, off, st)
#define sk_put8(off, w) CM_PUT16(sk, off, w)
#define sv_put8(off, w) CM_PUT16(sv, off, w)

// Chunk e (0 <= e < BC CW) of the Kf tile at key j0 (Kf = [K, Q]), and
// where it goes in sk; chunk e (< BC P8) of the V tile, and its place in sv.
// Kf's chunks run half by half (all of the tile's K, then for RA its Q), so
// the invocations of one subgroup read one buffer, consecutive rows, where
// row by row they would split between k and q (a divergent load each).
uvec4 kf_chunk(uint bh, uint j0, uint e) {
  const uint half_ = e / (BC * P8), rem = e % (BC * P8);
  return load8(half_ == 0u ? 1u : 0u, bh, j0 + rem / P8, rem % P8);
}
uint kf_slot(uint e) {
  const uint rem = e % (BC * P8);
  return (rem / P8) * QS + (e / (BC * P8)) * D16 + 8u * (rem % P8);
}
uvec4 v_chunk(uint bh, uint j0, uint e) { return load8(2u, bh, j0 + e / P8, e % P8); }
uint v_slot(uint e) { return (e / P8) * VS + 8u * (e % P8); }
// The bias of key j (0 past T and for SDPA).
// Staged as bias / scale: the logits stay unscaled until exp2 (one multiply
// by scale * log2(e) there serves both, as in FlashAttention).
float bias_at(uint bh, uint j, vec3 g) {
  return (RA != 0u && j < pc.T) ? g.z * dsc[bh * pc.T + j] / pc.scale : 0.0;
}

// PREFETCH: this invocation's chunks of the tile at key j0, into registers:
// Kf chunks PK(u), V chunks PV(u), bias entries PB(u). On the tensor cores
// these are named registers pk0..pk15 (not arrays: see CM_EACH_EL), and a
// tile that needs more per invocation runs single-stage (PF; the host's
// coopmat_prefetch_fits() says the same); emulated, arrays.
#ifdef RA_CM_EMULATE
const bool PF = PREFETCH != 0u;
#define PF_DECL uvec4 pk[NKC], pv[NVC]; float pb[NBC];
#define PF_EACH(M, a) CM_UNROLL for (uint u_ = 0u; u_ < max(NKC, max(NVC, NBC)); ++u_) { M(u_, a) }
#define PK(u) pk[u]
#define PV(u) pv[u]
#define PB(u) pb[u]
#else
const bool PF = PREFETCH != 0u && NKC <= 16u && NVC <= 16u && NBC <= 16u;
#define PF_DECL CM_DECL16(uvec4, pk) CM_DECL16(uvec4, pv) CM_DECL16(float, pb)
#define PF_EACH(M, a) CM_EACH16(M, a)
#define PK(u) pk##u
#define PV(u) pv##u
#define PB(u) pb##u
#endif
#define PF_FETCH(u, j0_)                                                     \
  if (CUT == 9u) {                                                           \
    PK(u) = PV(u) = uvec4(packFloat2x16(f16vec2(float(j0_ + tid + u) * 1e-3))); \
    PB(u) = 0.0;                                                             \
  } else {                                                                   \
    if (u < NKC && tid + u * NT < BC * CW) PK(u) = kf_chunk(bh, j0_, tid + u * NT); \
    if (u < NVC && tid + u * NT < BC * P8) PV(u) = v_chunk(bh, j0_, tid + u * NT);  \
    if (u < NBC && tid + u * NT < BC) PB(u) = bias_at(bh, j0_ + tid + u * NT, g);   \
  }
#define PF_STORE(u, _)                                                       \
  if (CUT == 8u) {                                                           \
    if (u < NKC && tid + u * NT < BC * CW) kx ^= PK(u).x ^ PK(u).y ^ PK(u).z ^ PK(u).w; \
    if (u < NVC && tid + u * NT < BC * P8) kx ^= PV(u).x ^ PV(u).y ^ PV(u).z ^ PV(u).w; \
    if (u < NBC && tid + u * NT < BC) kx ^= floatBitsToUint(PB(u));          \
  } else {                                                                   \
    if (u < NKC && tid + u * NT < BC * CW) sk_put8(kf_slot(tid + u * NT), PK(u)); \
    if (u < NVC && tid + u * NT < BC * P8) sv_put8(v_slot(tid + u * NT), PV(u));  \
    if (u < NBC && tid + u * NT < BC) sbias[tid + u * NT] = PB(u);           \
  }

// Chunk e (< rows CW) of the query rows from row0, folded [Q, K] (Qf, before
// its gates), and its store into sk scaled by the gates (qf_put).
uvec4 qf_chunk(uint bh, uint row0, uint e) {
  const uint r = e / CW, c8 = e % CW;
  const bool second = c8 >= P8;
  return load8(second ? 1u : 0u, bh, row0 + r, second ? c8 - P8 : c8);
}
void qf_put(uint e, uvec4 w, vec3 g) { sk_put8((e / CW) * QS + 8u * (e % CW), scale8(w, e % CW >= P8 ? g.y : g.x)); }
// The Qf staging's batched loads: a round of up to BC rows (`rows` in
// scope) is at most NKC chunks an invocation, held in named registers as
// the prefetch's (arrays when emulated); past 16 the loop above does it.
const bool QST_BATCH = NKC <= 16u;
#ifdef RA_CM_EMULATE
#define QST_DECL uvec4 qst[NKC];
#define QST_EACH(M, a) CM_UNROLL for (uint u_ = 0u; u_ < NKC; ++u_) { M(u_, a) }
#define QSTR(u) qst[u]
#else
#define QST_DECL CM_DECL16(uvec4, qst)
#define QST_EACH(M, a) CM_EACH16(M, a)
#define QSTR(u) qst##u
#endif
#define QST_FETCH(u, row0_) \
  if (u < NKC && tid + u * NT < rows * CW) QSTR(u) = qf_chunk(bh, row0_, tid + u * NT);
#define QST_STORE(u, _) \
  if (u < NKC && tid + u * NT < rows * CW) qf_put(tid + u * NT, QSTR(u), g);

// The 16-key blocks of a key tile, written out (BC <= 64: at most four);
// block CB's logits live in the named fragment S (sacc0..sacc3). Emulated,
// a loop over an array: the fragments are arrays in memory there anyway,
// and four copies of the blocks' code made lavapipe's compiles minutes
// longer.
#ifdef RA_CM_EMULATE
#define BLOCKS_DECL DECL_F_ARR(saccs, NCB);
#define EACH_BLOCK(M) CM_UNROLL for (uint cbi_ = 0u; cbi_ < NCB; ++cbi_) { M(cbi_, saccs[cbi_]) }
#else
#define BLOCKS_DECL \
  DECL_F(sacc0);    \
  DECL_F(sacc1);    \
  DECL_F(sacc2);    \
  DECL_F(sacc3);
#define EACH_BLOCK(M) M(0u, sacc0) M(1u, sacc1) M(2u, sacc2) M(3u, sacc3)
#endif

// The logits' products, all blocks of the tile: k-steps t0 .. t1 - 1,
// each step over every block (PRODUCT_STEP), so the NCB blocks'
// accumulator chains are independent work in one basic block that the
// compiler interleaves. Block after block, with the block's masking
// branches in between, each chain's HMMAs waited on one another (the
// SASS, perf v29). Blocks wholly past the diagonal are computed too and
// masked whole later: a block or two of waste on diagonal tiles only.
#define PRODUCT_STEP(CB, S)                                  \
  if (CB < NCB) {                                            \
    DECL_HB(kb); /* B(k, n) = Kf[j0 + 16 CB + n][16 t + k] */ \
    LOAD_SK(kb, (CB) * 16u * QS + 16u * t, QS, true);        \
    MMA(S, qa[t], kb);                                       \
  }
#define LOGITS_PRODUCTS(t0, t1) \
  CM_UNROLL for (uint t = t0; t < t1; ++t) { EACH_BLOCK(PRODUCT_STEP) }
#define ZERO_BLOCK(CB, S) \
  if (CB < NCB) { FILL_F(S, CUT == 3u ? pc.scale : 0.0); }

// Block CB after the products: the bias (RA, staged as bias / scale) and,
// on blocks that need it, the band and causal masks; on a band-edge
// (MIXED) tile first the reciprocal half as a product of its own (s2),
// which only the band's pairs take. Blocks wholly below the diagonal,
// inside T and off the band's edge need no mask: SDPA's then have no
// per-element work here at all. (Starting the product from a fragment of
// 16 staged bias rows instead, so the tensor cores add the bias, made RA's
// forward 16% slower on the H100: perf v27.)
#define LOGITS_BLOCK(CB, S)                                                   \
  if (CB < NCB) {                                                             \
    const uint cb_ = CB;                                                      \
    DECL_F(s2); /* reciprocal half of a band-edge (MIXED) tile */             \
    FILL_F(s2, 0.0);                                                          \
    if (KW > KD && kind == TILE_MIXED && CUT != 3u) {                         \
      CM_UNROLL for (uint t = KD; t < KW; ++t) {                              \
        DECL_HB(kb);                                                          \
        LOAD_SK(kb, cb_ * 16u * QS + 16u * t, QS, true);                      \
        MMA(s2, qa[t], kb);                                                   \
      }                                                                       \
    }                                                                         \
    const bool edge = kind == TILE_MIXED || j0 + 16u * cb_ + 16u > min(gi0 + 1u, T); \
    if (CUT != 5u && edge) {                                                  \
      CM_EACH_EL(MASK_EL, S)                                                  \
    } else if (CUT != 5u && RA != 0u) {                                       \
      vec4 bq_; /* the lane's columns' bias (CM_COL_VALUE) */                 \
      CM_EACH_EL(BIAS_EL, S)                                                  \
    }                                                                         \
    if (ROWREG == 0u && stats) STORE_SS(S, r0 * SS + cb_ * 16u, SS);          \
  }
#define MASK_EL(k, S)                                                         \
  if (k < NEL) {                                                              \
    const uint e_ = ERC(k), col_ = cb_ * 16u + (e_ & 15u);                    \
    const uint gi_ = gi0 + (e_ >> 4u), j_ = j0 + col_;                        \
    float x_ = S[k] + (RA != 0u ? sbias[col_] : 0.0);                         \
    if (kind == TILE_MIXED && in_band(gi_, j_)) x_ += s2[k];                  \
    S[k] = (j_ <= gi_ && j_ < T) ? x_ : masked;                               \
  }
#define BIAS_EL(k, S) \
  if (k < NEL) S[k] += CM_COL_VALUE(k, sbias[cb_ * 16u + (ERC(k) & 15u)], bq_, true);

// ROWREG: the block's share of the maxima of rows rowA / rowB.
#define ROWMAX_BLOCK(CB, S) \
  if (CB < NCB) { CM_EACH_EL(ROWMAX_EL, S) }
#define ROWMAX_EL(k, S)                                                       \
  if (k < NEL) {                                                              \
    if (in_row_b(k)) mxB = max(mxB, S[k]);                           \
    else mxA = max(mxA, S[k]);                                                \
  }
// O (and l where it is a fragment) times the row's rescale factor: ROWREG's
// alA / alB, or sm_al's.
#define RESCALE_EL(k, A)                                                      \
  {                                                                           \
    const float a_ = A;                                                       \
    CM_UNROLL for (uint d = 0u; d < KD; ++d) oacc[d][k] *= a_;               \
    if (ROWREG == 0u) lacc[k] *= a_;                                          \
  }
#define RESCALE_REG_EL(k, _) \
  if (k < NEL) RESCALE_EL(k, in_row_b(k) ? alB : alA)
#define RESCALE_SHARED_EL(k, _) \
  if (k < NEL) RESCALE_EL(k, sm_al[r0 + (ERC(k) >> 4u)])

// Block CB: P = exp2((x - m_new) sc2) in fp16; l += P 1, O += P V. Every
// block, masked whole ones too (P = 0 there): no branch between blocks.
#define PV_BLOCK(CB, S)                                                       \
  if (CB < NCB) {                                                 \
    const uint cb_ = CB;                                                      \
    if (CUT == 6u) {                                                          \
      CM_EACH_EL(EXP_RAW_EL, S)                                               \
    } else if (CUT != 1u && ROWREG != 0u) {                                   \
      CM_EACH_EL(EXP_REG_EL, S)                                               \
    } else if (CUT != 1u) {                                                   \
      CM_EACH_EL(EXP_SHARED_EL, S)                                            \
    }                                                                         \
    DECL_HA(p);                                                                \
    TO_H(p, S);                                                               \
    if (ROWREG != 0u) {                                                       \
      CM_EACH_EL(LSUM_EL, S)                                                  \
    } else {                                                                  \
      MMA(lacc, p, ones);                                                     \
    }                                                                         \
    if (CUT != 2u)                                                            \
      CM_UNROLL for (uint d = 0u; d < KD; ++d) {                              \
        DECL_HB(vb);                                                           \
        LOAD_SV(vb, cb_ * 16u * VS + 16u * d, VS);                            \
        if (CUT == 7u)                                                        \
          MMA(oacc[d], pc_const, vb);                                         \
        else                                                                  \
          MMA(oacc[d], p, vb);                                                \
      }                                                                       \
  }
// ROWREG: the lane's shares of its two rows' sums, from the fp32 P (the
// fp16 P that goes into O differs by its rounding, 2^-11 relative).
#define LSUM_EL(k, S)                                   \
  if (k < NEL) {                                        \
    if (in_row_b(k)) lsB += S[k];              \
    else lsA += S[k];                                   \
  }
#define EXP_RAW_EL(k, S) \
  if (k < NEL) S[k] = exp2(S[k] * sc2);
#define EXP_REG_EL(k, S) \
  if (k < NEL) S[k] = exp2(S[k] * sc2 - (in_row_b(k) ? mBs : mAs));
#define EXP_SHARED_EL(k, S) \
  if (k < NEL) S[k] = exp2((S[k] - sm_m[r0 + (ERC(k) >> 4u)]) * sc2);
// Epilogue: O / l per row.
#define DIV_EL(k, S) \
  if (k < NEL) S[k] /= sm_al[r0 + (ERC(k) >> 4u)];



// classify() of common.glsl for one subgroup's rows i0..i_last.
uint classify_rows(uint i0, uint i_last, uint j0) {
  if (RA == 0u) return TILE_PLAIN;
  if (BANDED == 0u || pc.window < 0) return TILE_FULL;  // a constant for ra_fused
  if (int(i_last) - int(j0) <= pc.window) return TILE_FULL;
  if (int(i0) - int(j0 + BC - 1u) > pc.window) return TILE_PLAIN;
  return TILE_MIXED;
}

void main() {
  const uint tid = gl_LocalInvocationID.x;
  const uint lane = gl_SubgroupInvocationID;
  const uint T = pc.T;
  // Heaviest tiles (most keys along the causal triangle) first.
  const uint n_bh = pc.B * pc.H;
  const uint wg = gl_WorkGroupID.x;
  const uint qt = pc.n_tiles - 1u - (GRID == 0u ? wg : (GRID == 1u ? wg % pc.n_tiles : wg / n_bh));
  const uint bh = GRID == 0u ? head_index() : (GRID == 1u ? wg / pc.n_tiles : wg % n_bh);
  if (head_past_end(bh)) return;
  const uint b = bh / pc.H, h = bh % pc.H;
  const uint i0 = qt * BR;
  const vec3 g = gates_of(b, h);
#ifdef RA_CM_EMULATE
  el_rt = EL - (pc.n_tiles == 0u ? 1u : 0u);  // n_tiles >= 1: EL, unknown to the compiler
#endif

  const uint r0 = gl_SubgroupID * 16u;  // this subgroup's rows in the tile
  const uint gi0 = i0 + r0;             // ... and in the sequence
  const uint gi_last = min(gi0 + 15u, T - 1u);
  const uint i_last = min(i0 + BR - 1u, T - 1u);

  // The element -> (row, column) map of the fp32 accumulators.
  for (uint e = lane; e < 256u; e += SG) ss[(r0 + e / 16u) * SS + e % 16u] = float(e);
  for (uint r = lane; r < 16u; r += SG) sm_m[r0 + r] = -1e30;  // finite: first rescale is exp(-huge) = 0
  subgroup_sync();
  DECL_F(idx);
  LOAD_SS(idx, r0 * SS, SS);
  // The map as integers, (row << 4) | column per element (ERC): every later
  // use needs them as such, and converting once saves a float-to-int
  // conversion per element and tile (the unit the exps also use).
  CM_ERC_DECL
  CM_EACH_EL(INIT_ERC_EL, _)
  const bool emap_fits = CM_LENGTH_OK(idx) && CM_EL_FITS && NCB <= 4u;  // EACH_BLOCK: 4 blocks

  // ROWREG: does this device's accumulator layout allow row statistics in
  // registers? Element i of this lane is in row rowA, or rowB where bit i
  // of selB is set (see ROWREG above for what must hold).
  uint rowA = 0u, rowB = 0u, selB = 0u;
  bool rowreg = false;
  if (ROWREG != 0u) CM_ROW_LAYOUT(rowA, rowB, selB, rowreg);
  float mA = -1e30, mB = -1e30;  // ROWREG: running maxima of rows rowA, rowB (as sm_m)

  // PREFETCH: tile 0's loads go out now, in flight during the Qf staging.
  PF_DECL
  if (PF) {
    PF_EACH(PF_FETCH, 0u)
  }

  // Qf rows into registers, staged through sk BC rows at a time (both
  // halves scaled by their gates and rounded to fp16 once). Each round's
  // loads all go out before the first shared store (QST_*; a loop of
  // load-store pairs waited out one global load per chunk, perf v30).
  DECL_HA_ARR(qa, KW);
  QST_DECL
  for (uint c0 = 0u; c0 < BR; c0 += BC) {
    const uint rows = min(BC, BR - c0);
    if (QST_BATCH) {
      QST_EACH(QST_FETCH, i0 + c0)
    }
    barrier();  // sk free (previous chunk's fragments loaded)
    if (QST_BATCH) {
      QST_EACH(QST_STORE, _)
    } else {
      for (uint e = tid; e < rows * CW; e += NT) qf_put(e, qf_chunk(bh, i0 + c0, e), g);
    }
    barrier();
    if (r0 >= c0 && r0 < c0 + rows)
      [[unroll]] for (uint t = 0u; t < KW; ++t) LOAD_SK(qa[t], (r0 - c0) * QS + 16u * t, QS, false);
  }

  DECL_F_ARR(oacc, KD);
  [[unroll]] for (uint d = 0u; d < KD; ++d) FILL_F(oacc[d], 0.0);
  // Row sums l: where ROWREG holds, the lane's shares of its two rows in two
  // registers (lsA, lsB; summed across the quad at the end); elsewhere a
  // fragment fed by P times a matrix of ones (every column of it a row sum).
  DECL_F(lacc);
  FILL_F(lacc, 0.0);
  float lsA = 0.0, lsB = 0.0;
  DECL_HB(ones);
  FILL_HB(ones, 1.0);
  float keep = 0.0;  // timing cuts only (CUT above): staged halves, summed
  uint kx = 0u;      // cut 8: the loaded chunks, xor-folded
  DECL_HA(pc_const);  // CUT 7: the constant P of O += P V
  FILL_HA(pc_const, float16_t(pc.scale));

  const uint n_kt = i_last / BC + 1u;  // key tiles up to the last row (causal)
  // Logits stay unscaled (bias staged as bias / scale) until exp2, which
  // takes them times sc2; the running maxima are in the same units.
  const float sc2 = pc.scale * 1.4426950408889634;
  for (uint kt = 0u; kt < n_kt; ++kt) {
    const uint j0 = kt * BC;
    barrier();  // every subgroup is done with the previous Kf / V (or Qf)
    if (!PF) {
      // Single-stage: load and store, then wait for all.
      for (uint e = tid; e < BC * CW; e += NT) sk_put8(kf_slot(e), kf_chunk(bh, j0, e));
      for (uint e = tid; e < BC * P8; e += NT) sv_put8(v_slot(e), v_chunk(bh, j0, e));
      for (uint r = tid; r < BC; r += NT) sbias[r] = bias_at(bh, j0 + r, g);
    } else {
      // Pipelined: this tile's chunks arrived during the previous tile.
      PF_EACH(PF_STORE, _)
    }
    barrier();
    // The next tile's loads, in flight while this one is computed; after
    // the last tile too (rows past it: zeros past T, real rows otherwise,
    // never used), so no branch here either (below).
    if (PF) {
      PF_EACH(PF_FETCH, j0 + BC)
    }

    // Every subgroup runs every key tile of the workgroup, also one wholly
    // after its rows (masked whole: P = 0, its rows' state unchanged) and
    // rows past T (never stored). A subgroup-uniform branch around the
    // tile's work made the compiler copy the loop-carried O and prefetch
    // registers at every tile's end, ~70 moves a tile (the SASS, perf v29);
    // the cost is at most one masked tile for half the subgroups of a
    // 128-row RA tile.
    if (CUT != 0u && CUT != 8u)
      keep += float(HALF4(sk, ((kt + lane) % BC) * QS + lane % W16)) +
              float(HALF4(sv, ((kt + lane) % BC) * VS + lane % D16));
    if (CUT != 4u && CUT < 8u) {
      const uint kind = classify_rows(gi0, gi_last, j0);
      // 16-key blocks with at least one key <= gi_last (the rest are masked
      // whole; the shared-memory row maxima read only these).
      const uint ncb = min(NCB, (gi_last - j0) / 16u + 1u);
      // CUT 1 feeds S itself to P V: masked logits 0 keep it finite.
      const float masked = CUT == 1u ? 0.0 : NEG_BIG;
      // CUTs 1 and 6 use no row statistics: no logit store, row max, rescale.
      const bool stats = CUT != 1u && CUT != 6u;

      // Logits of every block in registers: unscaled, biased, masked. RA's
      // reciprocal half goes into the same products on FULL tiles (chosen
      // once per tile: a choice per step made the KHR forward branchy,
      // perf v29) and block by block on band-edge (MIXED) ones.
      BLOCKS_DECL
      EACH_BLOCK(ZERO_BLOCK)
      if (CUT != 3u) {
        LOGITS_PRODUCTS(0u, KD)
        if (KW > KD && kind == TILE_FULL) {
          LOGITS_PRODUCTS(KD, KW)
        }
      }
      EACH_BLOCK(LOGITS_BLOCK)
      float alA = 1.0, alB = 1.0;  // ROWREG: this tile's rescale factors
      // (ROWREG compiled in, not the check's result: where the layout check
      // failed the outputs are NaN anyway.)
      if (stats && ROWREG != 0u) {
        // Row maxima in registers: lane-local, then across the quad.
        float mxA = NEG_BIG, mxB = NEG_BIG;
        EACH_BLOCK(ROWMAX_BLOCK)
        [[unroll]] for (uint x = 1u; x <= 2u; ++x) {
          mxA = max(mxA, subgroupShuffleXor(mxA, x));
          mxB = max(mxB, subgroupShuffleXor(mxB, x));
        }
        const float nA = max(mA, mxA), nB = max(mB, mxB);
        alA = exp2((mA - nA) * sc2);
        alB = exp2((mB - nB) * sc2);
        mA = nA;
        mB = nB;
      } else if (stats) {
        subgroup_sync();

        // Row maxima: two lanes per row (even / odd columns), combined by one
        // shuffle; all lanes busy on 32-wide subgroups.
        const uint half_rows = max(SG / 2u, 1u);
        for (uint rb = 0u; rb < 16u; rb += half_rows) {
          const uint rr = rb + (lane >> 1u);
          float mx = NEG_BIG;
          if (rr < 16u)
            for (uint c = lane & 1u; c < ncb * 16u; c += 2u) mx = max(mx, ss[(r0 + rr) * SS + c]);
          mx = max(mx, subgroupShuffleXor(mx, 1u));
          if (rr < 16u && (lane & 1u) == 0u) {
            const float m_old = sm_m[r0 + rr], m_new = max(m_old, mx);
            sm_al[r0 + rr] = exp2((m_old - m_new) * sc2);
            sm_m[r0 + rr] = m_new;
          }
        }
        subgroup_sync();
      }
      // Rescale O and l by exp(m_old - m_new), in registers (no-op rows: 1).
      if (stats && ROWREG != 0u) {
        CM_EACH_EL(RESCALE_REG_EL, _)
        lsA *= alA;
        lsB *= alB;
      } else if (stats) {
        CM_EACH_EL(RESCALE_SHARED_EL, _)
      }
      // P = exp(x - m_new) in fp16; l += P 1 and O += P V with the same P.
      const float mAs = mA * sc2, mBs = mB * sc2;
      EACH_BLOCK(PV_BLOCK)
    }
  }

  // Epilogue, per subgroup (its rows and its block of ss only).
  if (gi0 < T) {
    if (ROWREG != 0u) {
      // The row sums across the quad; they and the running maxima to where
      // the epilogue reads them.
      [[unroll]] for (uint x = 1u; x <= 2u; ++x) {
        lsA += subgroupShuffleXor(lsA, x);
        lsB += subgroupShuffleXor(lsB, x);
      }
      if ((lane & 3u) == 0u) {
        sm_m[r0 + rowA] = mA;
        sm_m[r0 + rowB] = mB;
        sm_al[r0 + rowA] = lsA;
        sm_al[r0 + rowB] = lsB;
      }
    } else {
      // Every column of lacc is the row sum: keep column 0 as l.
      STORE_SS(lacc, r0 * SS, SS);
    }
    subgroup_sync();
    for (uint r = lane; r < 16u; r += SG) {
      float l = ROWREG != 0u ? sm_al[r0 + r] : ss[(r0 + r) * SS];
      // Timing cuts: l >= 1 (finite O / l and lse), and it depends on keep.
      if (CUT != 0u) l = abs(l) + 1.0 + abs(keep) * 1e-20 + float(kx & 255u) * 1e-20;
      // NaN into O and lse where the written-out element work does not
      // match this device's fragments (emap_fits), or ROWREG's layout does
      // not hold (no shared-memory path compiled in to fall back on).
      if (!emap_fits || (ROWREG != 0u && !rowreg)) l = uintBitsToFloat(0x7fc00000u);
      sm_al[r0 + r] = l;
      if (gi0 + r < T) lse[bh * T + gi0 + r] = sm_m[r0 + r] * pc.scale + log(l);
    }
    subgroup_sync();
    [[unroll]] for (uint d = 0u; d < KD; ++d) {
      CM_EACH_EL(DIV_EL, oacc[d])
      STORE_SS(oacc[d], r0 * SS, SS);
      subgroup_sync();
      // 16 rows x 16 columns: as 8-half chunks where rows are whole chunks.
      if (VEC) {
        for (uint e = lane; e < 32u; e += SG) {
          const uint r = e / 2u, c = 16u * d + 8u * (e % 2u), i = gi0 + r;
          if (i >= T || c >= D) continue;
          const uint s0 = (r0 + r) * SS + 8u * (e % 2u);
          uvec4 w;
          [[unroll]] for (uint t = 0u; t < 4u; ++t)
            w[t] = packFloat2x16(f16vec2(ss[s0 + 2u * t], ss[s0 + 2u * t + 1u]));
          o4[((bh * T + i) * D + c) / 8u] = w;
        }
      } else {
        for (uint e = lane; e < 256u; e += SG) {
          const uint r = e / 16u, c = 16u * d + e % 16u, i = gi0 + r;
          if (i < T && c < D) o[(bh * T + i) * D + c] = float16_t(ss[(r0 + r) * SS + e % 16u]);
        }
      }
      subgroup_sync();  // the next block overwrites ss
    }
  }
}
