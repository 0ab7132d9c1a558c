// Shared by the cooperative-matrix kernels (fwd_cm.comp, bwd_cm.comp):
// extensions, the fragment macros (NV cooperative matrices; with RA_CM_KHR
// KHR ones; with RA_CM_EMULATE plain per-lane arrays whose products run
// through a per-subgroup shared scratch, so lavapipe can test everything but
// the matrix instructions), and the 16-byte global loads.
//
// Fragments are declared by role: DECL_HA an fp16 A operand (rows x k),
// DECL_HB an fp16 B operand (k x columns), DECL_F an fp32 accumulator. NV
// matrices have no role (one 16 x 16 fp16 type serves both), and NVIDIA's
// driver keeps them in the A operand's register layout: every fragment used
// as B is transposed by MOVM instructions before each product, 4 per
// fragment (the SASS, docs/vulkan.md "Reading the driver's code": fwd_cm's
// key loop issued two MOVM per HMMA). KHR matrices carry their use, so B
// fragments load straight into the B layout; turning the fp32 logits into
// the fp16 A operand P (TO_H) then needs a conversion between uses, which
// GL_NV_cooperative_matrix2 allows (cooperativeMatrixConversions).
//
// Workgroup: NSG subgroups of SG lanes; subgroup s owns 16 rows of the
// workgroup's own tile.
#extension GL_KHR_shader_subgroup_basic : require
#extension GL_KHR_shader_subgroup_shuffle : require
#extension GL_EXT_control_flow_attributes : require
#if defined(RA_CM_KHR)
#extension GL_KHR_cooperative_matrix : require
#extension GL_NV_cooperative_matrix2 : require
#extension GL_KHR_memory_scope_semantics : require
#elif !defined(RA_CM_EMULATE)
#extension GL_NV_cooperative_matrix : require
#extension GL_KHR_memory_scope_semantics : require
#endif
#define RA_FP16
#include "common.glsl"

// The same q, k, v buffers seen as 16-byte chunks (descriptor aliasing):
// one load instruction per 8 halves instead of 8.
layout(std430, binding = 0) restrict readonly buffer BufQ4 { uvec4 q4[]; };
layout(std430, binding = 1) restrict readonly buffer BufK4 { uvec4 k4[]; };
layout(std430, binding = 2) restrict readonly buffer BufV4 { uvec4 v4[]; };

// CM_OWN_ROWS (a macro the kernel defines before including this file): the
// spec constant holding the rows the workgroup owns, 16 per subgroup.
const uint NSG = CM_OWN_ROWS / 16u;
const uint SG = NT / NSG;
const uint D16 = (D + 15u) / 16u * 16u;     // D padded to whole 16-wide steps
const uint W16 = RA != 0u ? 2u * D16 : D16;  // folded width, each half padded
const uint KD = D16 / 16u;                   // 16-wide steps of one half
const uint KW = W16 / 16u;                   // ... of the whole folded row
const uint P8 = D16 / 8u;                    // 16-byte chunks of a padded half row
const uint CW = W16 / 8u;                    // ... of a padded folded row
const bool VEC = D % 8u == 0u;               // rows are whole 16-byte chunks

// A block of this subgroup's rows is only read by the same subgroup.
void subgroup_sync() {
  subgroupMemoryBarrierShared();
  subgroupBarrier();
}

// v summed over the subgroup by a butterfly of xor shuffles, the same bits
// every run and in every lane (each step adds the same two values, in
// either order). Uniform control flow.
float subgroup_sum_fixed(float v) {
  [[unroll]] for (uint x = 1u; x < SG; x <<= 1u) v += subgroupShuffleXor(v, x);
  return v;
}

// Sixteen named variables p0 .. p15 of type T: the prefetch registers of
// fwd_cm and bwd_cm (CM_EACH16 reaches them by name; an array indexed by an
// unrolled counter went to local memory on NVIDIA, v26).
#define CM_DECL16(T, p) \
  T p##0, p##1, p##2, p##3, p##4, p##5, p##6, p##7, p##8, p##9, p##10, p##11, p##12, p##13, p##14, p##15;
// p##t for a t the compiler knows once the loop around it is unrolled (a
// literal index into the named registers; indexing an array of fragments
// with anything but a loop counter put the whole array in local memory,
// v30).
#define CM_PICK16(p, t)                                                                              \
  ((t) == 0u ? p##0 : (t) == 1u ? p##1 : (t) == 2u ? p##2 : (t) == 3u ? p##3 : (t) == 4u ? p##4 :     \
   (t) == 5u ? p##5 : (t) == 6u ? p##6 : (t) == 7u ? p##7 : (t) == 8u ? p##8 : (t) == 9u ? p##9 :     \
   (t) == 10u ? p##10 : (t) == 11u ? p##11 : (t) == 12u ? p##12 : (t) == 13u ? p##13 :               \
   (t) == 14u ? p##14 : p##15)
// M(0, a) ... M(7, a) (M(15, a)), written out: see CM_EACH_EL below.
#define CM_EACH8(M, a) M(0, a) M(1, a) M(2, a) M(3, a) M(4, a) M(5, a) M(6, a) M(7, a)
#define CM_EACH16(M, a) CM_EACH8(M, a) M(8, a) M(9, a) M(10, a) M(11, a) M(12, a) M(13, a) M(14, a) M(15, a)

#if defined(RA_CM_KHR)
#define HMAT_A coopmat<float16_t, gl_ScopeSubgroup, 16, 16, gl_MatrixUseA>
#define HMAT_B coopmat<float16_t, gl_ScopeSubgroup, 16, 16, gl_MatrixUseB>
#define FMAT coopmat<float, gl_ScopeSubgroup, 16, 16, gl_MatrixUseAccumulator>
// Element (r, c) of a matrix loaded with cm = true sits at off + c * st + r
// (cm a literal: the layout operand must be a constant).
#define CM_LAYOUT(cm) ((cm) ? gl_CooperativeMatrixLayoutColumnMajor : gl_CooperativeMatrixLayoutRowMajor)
#define CM_LOAD(m, arr, off, st, cm) coopMatLoad(m, arr, off, st, CM_LAYOUT(cm))
#define CM_STORE(m, arr, off, st) coopMatStore(m, arr, off, st, gl_CooperativeMatrixLayoutRowMajor)
#define MMA(c, a, b) c = coopMatMulAdd(a, b, c)
#elif !defined(RA_CM_EMULATE)
#define HMAT_A fcoopmatNV<16, gl_ScopeSubgroup, 16, 16>
#define HMAT_B HMAT_A
#define FMAT fcoopmatNV<32, gl_ScopeSubgroup, 16, 16>
#define CM_LOAD(m, arr, off, st, cm) coopMatLoadNV(m, arr, off, st, cm)
#define CM_STORE(m, arr, off, st) coopMatStoreNV(m, arr, off, st, false)
#define MMA(c, a, b) c = coopMatMulAddNV(a, b, c)
#endif
#ifndef RA_CM_EMULATE
#define DECL_HA(n) HMAT_A n
#define DECL_HB(n) HMAT_B n
#define DECL_F(n) FMAT n
#define DECL_HA_ARR(n, len) HMAT_A n[len]
#define DECL_F_ARR(n, len) FMAT n[len]
#define FILL_F(m, x) m = FMAT(x)
#define FILL_HA(m, x) m = HMAT_A(x)
#define FILL_HB(m, x) m = HMAT_B(x)
// An fp32 accumulator as the fp16 A operand (P, dL): one whole-matrix
// conversion (NV: same fragment type; KHR: a change of use as well).
#define TO_H(dst, src) dst = HMAT_A(src)
// Elements of a 16 x 16 fragment per lane, as a constant of the pipeline
// (256 / SG: each element once across the subgroup, NVIDIA's layout), so
// the element loops unroll and fragments stay in registers. The driver's
// own count, m.length(), is an instruction its compiler does not fold before
// deciding on unrolling: loops bounded by it kept fwd_cm's fragments in local
// memory (v26: 256-384 bytes a lane). Kernels check that the two agree
// (CM_LENGTH_OK) and poison their outputs with NaN where they do not.
const int NEL = int(256u / SG);
#define CM_LENGTH_OK(m) ((m).length() == NEL)
// Element k of every fragment, written out rather than looped: NVIDIA's
// compiler ignores [[unroll]] on loops whose bodies are more than a few
// instructions, and a fragment (or array) indexed by a counter it did not
// unroll lives in local memory (v26: fwd_cm's logit fragments and prefetch
// registers, 256-384 bytes a lane by the driver's statistics). CM_EACH_EL(M,
// a) is M(0, a) ... M(7, a); each M guards k < NEL itself (a constant: the
// guard folds). More than 8 elements a lane (subgroups under 32) is refused:
// kernels poison their outputs unless CM_EL_FITS.
#define CM_EACH_EL(M, a) CM_EACH8(M, a)
const bool CM_EL_FITS = NEL <= 8;
// Loops over fragment arrays: unrolled, so the fragments stay registers.
#define CM_UNROLL [[unroll]]
#else
// Emulated fragments: EL elements per lane, element i of lane L at
// flat L + SG i (row flat / 16, column flat % 16). The runtime sizes the
// workgroup as NSG subgroups of the device's subgroup size, so SG is it.
const uint EL = 256u / SG;
shared float semu[NSG * 512u];  // per subgroup: A and B of one product
// The element loops run to el_rt (== EL), a bound the compiler cannot fold:
// unrolled, they turn every fragment into EL separate values, and llvmpipe's
// coroutine split (one suspend point per workgroup barrier) then spends
// minutes on the thousands of values live across the key loop's barriers;
// rolled, fragments stay arrays in memory. The kernel sets el_rt first thing.
uint el_rt;

#define DECL_HA(n) float n[EL]
#define DECL_HB(n) float n[EL]
#define DECL_F(n) float n[EL]
#define DECL_HA_ARR(n, len) float n[len][EL]
#define DECL_F_ARR(n, len) float n[len][EL]
#define FILL_F(m, x) for (uint i_ = 0u; i_ < el_rt; ++i_) m[i_] = (x)
#define FILL_HA(m, x) FILL_F(m, x)
#define FILL_HB(m, x) FILL_F(m, x)
#define TO_H(dst, src) for (uint i_ = 0u; i_ < el_rt; ++i_) dst[i_] = float(float16_t(src[i_]))
// Statement macros (not functions): GLSL cannot pass a shared array.
#define CM_LOAD(m, arr, off, st, cm)                                          \
  for (uint i_ = 0u; i_ < el_rt; ++i_) {                                      \
    const uint e_ = gl_SubgroupInvocationID + SG * i_, r_ = e_ / 16u, c_ = e_ % 16u; \
    m[i_] = float((cm) ? arr[(off) + c_ * (st) + r_] : arr[(off) + r_ * (st) + c_]); \
  }
#define CM_STORE(m, arr, off, st)                                     \
  for (uint i_ = 0u; i_ < el_rt; ++i_) {                              \
    const uint e_ = gl_SubgroupInvocationID + SG * i_;                \
    arr[(off) + (e_ / 16u) * (st) + e_ % 16u] = m[i_];                \
  }
#define MMA(c, a, b) emu_mma(c, a, b)
#define NEL int(el_rt)
#define CM_LENGTH_OK(m) true
// Emulated fragments are arrays in memory anyway: a plain loop.
#define CM_EACH_EL(M, a) CM_UNROLL for (int el_ = 0; el_ < NEL; ++el_) { M(el_, a) }
const bool CM_EL_FITS = true;
// Rolled: in emulation the fragment arrays live in memory anyway, and every
// unrolled copy of a product is more for llvmpipe to compile.
#define CM_UNROLL [[dont_unroll]]

// c += a b: the operands go through shared memory because every output
// element needs a row of a and a column of b, held by other lanes. The
// 16-long inner loop is unrolled: llvmpipe counts every loop iteration of an
// invocation against one limit of 65535 (gallivm's loop limiter) and
// silently leaves loops past it.
void emu_mma(inout float c[EL], float a[EL], float b[EL]) {
  const uint base = gl_SubgroupID * 512u;
  for (uint i = 0u; i < el_rt; ++i) {
    const uint e = gl_SubgroupInvocationID + SG * i;
    semu[base + e] = a[i];
    semu[base + 256u + e] = b[i];
  }
  subgroup_sync();
  for (uint i = 0u; i < el_rt; ++i) {
    const uint e = gl_SubgroupInvocationID + SG * i, m = e / 16u, n = e % 16u;
    float acc = c[i];
    [[unroll]] for (uint t = 0u; t < 16u; ++t)
      acc += semu[base + m * 16u + t] * semu[base + 256u + t * 16u + n];
    c[i] = acc;
  }
  subgroup_sync();  // the next product overwrites the scratch
}
#endif

// The element map (idx: element (r, c) holds 16 r + c) as integers, a byte
// per element, (row << 4) | column: elements 0-3 in ercA, 4-7 in ercB
// (emulated: idx itself, converted at each use; a second array live across
// the key loop's barriers made lavapipe's compile of the backward minutes
// longer). Converted once, so no float-to-int conversion per element and
// tile. CM_ERC_DECL declares, then CM_EACH_EL(INIT_ERC_EL, _) fills from
// idx; ERC(k) reads element k.
#ifdef RA_CM_EMULATE
#define CM_ERC_DECL
#define ERC(k) uint(idx[k])
#define SET_ERC(k, v)
#else
#define CM_ERC_DECL uint ercA = 0u, ercB = 0u;
#define ERC(k) bitfieldExtract((k) < 4 ? ercA : ercB, 8 * ((k) & 3), 8)
#define SET_ERC(k, v)                    \
  if ((k) < 4) ercA |= (v) << (8 * (k)); \
  else ercB |= (v) << (8 * ((k) - 4))
#endif
#define INIT_ERC_EL(k, _) \
  if (k < NEL) { SET_ERC(k, uint(idx[k])); }

// Whether the fp32 accumulators have NVIDIA's two-row layout (the kernels'
// ROWREG): every lane's 8 elements lie in two rows, rowA and rowB (bit i of
// selB set where element i is in rowB), the lanes L ^ 1, L ^ 2, L ^ 3 share
// both rows, and the four of them hold all 16 columns of each. Then a row's
// maximum is a lane-local max and two xor-shuffles, and per-row values can
// live in two registers a lane. Checked on the element map (ERC), every lane
// of the subgroup agreeing (shuffles only: uniform control flow needed);
// ok = false elsewhere (subgroups other than 32 wide, emulation). It also
// requires the split of a lane's elements between its rows to be CM_SELB
// (spec constant 12, from the host: the device's known split), so kernels
// pick an element's row when the pipeline is built (in_row_b(k)
// with k a constant), with no select per element (v28).
#define CM_ROW_LAYOUT(rowA, rowB, selB, ok_)                                           \
  if (SG == 32u && NEL == 8) {                                                         \
    rowA = ERC(0) >> 4u;                                                               \
    rowB = rowA;                                                                       \
    uint colA_ = 0u, colB_ = 0u;                                                       \
    bool fine_ = true;                                                                 \
    CM_UNROLL for (int i_ = 0; i_ < NEL; ++i_) {                                       \
      const uint e_ = ERC(i_), r_ = e_ >> 4u;                                          \
      if (r_ != rowA && rowB == rowA) rowB = r_;                                       \
      if (r_ == rowA) {                                                                \
        colA_ |= 1u << (e_ & 15u);                                                     \
      } else {                                                                         \
        fine_ = fine_ && r_ == rowB;                                                   \
        colB_ |= 1u << (e_ & 15u);                                                     \
        selB |= 1u << uint(i_);                                                        \
      }                                                                                \
    }                                                                                  \
    fine_ = fine_ && rowB != rowA && bitCount(colA_) == 4 && bitCount(colB_) == 4 && selB == CM_SELB; \
    if (CM_PAIRED)                                                                     \
      CM_UNROLL for (int i_ = 0; i_ < 4; ++i_) fine_ = fine_ && ((ERC(i_) ^ ERC(i_ + 4)) & 15u) == 0u; \
    [[unroll]] for (uint x_ = 1u; x_ <= 2u; ++x_) {                                    \
      fine_ = fine_ && subgroupShuffleXor(rowA, x_) == rowA && subgroupShuffleXor(rowB, x_) == rowB; \
      colA_ |= subgroupShuffleXor(colA_, x_);                                          \
      colB_ |= subgroupShuffleXor(colB_, x_);                                          \
    }                                                                                  \
    uint all_ = fine_ && colA_ == 0xFFFFu && colB_ == 0xFFFFu ? 1u : 0u;               \
    [[unroll]] for (uint x_ = 1u; x_ < 32u; x_ <<= 1u) all_ = min(all_, subgroupShuffleXor(all_, x_)); \
    ok_ = all_ != 0u;                                                                  \
  }
// ra_window (spec constant 13; attention.cpp sets 1 for it): the reciprocal
// half is confined to a band, so tiles and blocks decide at run time
// whether their reciprocal products run. 0 (sdpa_fused, ra_fused) compiles
// the choice out: in bwd_cm a branch between the two forms of a block's
// products made NVIDIA's compiler copy ~70 loop-carried accumulator
// registers at every block's end (the SASS, perf v30).
layout(constant_id = 13) const uint BANDED = 0u;

// Bit k set: element k of a lane's accumulator lies in its second row
// (attention.cpp's coopmat_row_split()).
layout(constant_id = 12) const uint CM_SELB = 0u;
// Element k (a literal) of this lane is in its second row (CM_ROW_LAYOUT's
// rowB, where the layout check passed): settled when the pipeline is built.
bool in_row_b(int k) { return ((CM_SELB >> uint(k)) & 1u) != 0u; }
// With NVIDIA's split (0xF0) element k + 4 lies in the column of element k,
// eight rows below (CM_ROW_LAYOUT checks it): a per-column value read for
// element k serves element k + 4 too (CM_COL_VALUE). The host sets CM_SELB
// to 0 where the kernel keeps no row values in registers (ROWREG = 0, the
// emulated kernels), so nothing is paired without the check.
const bool CM_PAIRED = CM_SELB == 0xF0u;
// The per-column value x for element e of a block, through a vec4 cache c
// the block declares: read for e < 4, reused for e + 4 where CM_PAIRED and
// `reuse` (a block whose elements 0-3 all read it; e is a literal).
#define CM_COL_VALUE(e, x, c, reuse) \
  ((CM_PAIRED && (reuse) && (e) >= 4) ? c[(e) & 3] : (c[(e) & 3] = (x)))

layout(std430, binding = 7) restrict readonly buffer BufDout4 { uvec4 dout4[]; };

// Eight consecutive halves of row i of q (x = 0), k (1), v (2) or dout (3),
// columns 8 c8 .. 8 c8 + 7, packed two per uint; zero past T and past D.
uvec4 load8(uint x, uint bh, uint i, uint c8) {
  if (i >= pc.T || 8u * c8 >= D) return uvec4(0u);
  const uint base = (bh * pc.T + i) * D;
  if (VEC) {
    const uint a = base / 8u + c8;
    return x == 0u ? q4[a] : (x == 1u ? k4[a] : (x == 2u ? v4[a] : dout4[a]));
  }
  float16_t h[8];
  [[unroll]] for (uint t = 0u; t < 8u; ++t) {
    const uint c = 8u * c8 + t;
    h[t] = c >= D ? float16_t(0.0)
                  : (x == 0u ? q[base + c]
                             : (x == 1u ? k[base + c] : (x == 2u ? v[base + c] : dout[base + c])));
  }
  return uvec4(packFloat2x16(f16vec2(h[0], h[1])), packFloat2x16(f16vec2(h[2], h[3])),
               packFloat2x16(f16vec2(h[4], h[5])), packFloat2x16(f16vec2(h[6], h[7])));
}

// w's halves times s, rounded to fp16 once (the folded Qf's gates).
uvec4 scale8(uvec4 w, float s) {
  uvec4 r;
  [[unroll]] for (uint t = 0u; t < 4u; ++t)
    r[t] = packFloat2x16(f16vec2(vec2(unpackFloat2x16(w[t])) * s));
  return r;
}

// Shared tiles held as 16-byte chunks (uvec4 arrays; fwd_cm's Kf and V):
// a staged chunk is one 16-byte shared store, where CM_PUT8 into a
// float16_t array issues eight 2-byte ones (v24/v25: the staging skeleton
// was most of fwd_cm's time). Offsets and strides stay in halves, multiples
// of 8; the fragment loads take them in 16-byte units.
#define CM_PUT16(arr, off, w) arr[(off) >> 3u] = (w)
// Half h of a uvec4 array (element-wise reads: timing cuts, emulation).
#define HALF4(arr, h) unpackFloat2x16(arr[(h) >> 3u][((h) >> 1u) & 3u])[(h) & 1u]
#ifndef RA_CM_EMULATE
#define CM_LOAD4(m, arr, off, st, cm) CM_LOAD(m, arr, (off) >> 3u, (st) >> 3u, cm)
#else
#define CM_LOAD4(m, arr, off, st, cm)                                                \
  for (uint i_ = 0u; i_ < el_rt; ++i_) {                                             \
    const uint e_ = gl_SubgroupInvocationID + SG * i_, r_ = e_ / 16u, c_ = e_ % 16u; \
    m[i_] = float((cm) ? HALF4(arr, (off) + c_ * (st) + r_) : HALF4(arr, (off) + r_ * (st) + c_)); \
  }
#endif

// Writes the 8 halves of w at arr[off ..] (a statement macro: any shared array).
// w is evaluated once (it is a global load).
#define CM_PUT8(arr, off, w)                                  \
  {                                                           \
    const uvec4 w_ = (w);                                     \
    [[unroll]] for (uint t_ = 0u; t_ < 4u; ++t_) {            \
      const f16vec2 h_ = unpackFloat2x16(w_[t_]);             \
      arr[(off) + 2u * t_] = h_.x;                            \
      arr[(off) + 2u * t_ + 1u] = h_.y;                       \
    }                                                         \
  }

// The 16x16 fp32 matrix whose element (r, c) is 16 r + c, through this
// subgroup's scratch rows (at off, stride st): all fragments of one type
// share the element -> (row, column) map, so reading idx[i] tells which
// (row, column) element i of any accumulator is.
#define CM_INDEX_MAP(idx, arr, off, st)                                          \
  for (uint e_ = gl_SubgroupInvocationID; e_ < 256u; e_ += SG)                   \
    arr[(off) + (e_ / 16u) * (st) + e_ % 16u] = float(e_);                       \
  subgroup_sync();                                                               \
  CM_LOAD(idx, arr, off, st, false)
