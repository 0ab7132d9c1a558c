// Fused (flash-style) causal attention for SDPA and RA, as Kokkos team kernels.
//
// One template serves both: SDPA is the case W = D with Qf = Q, Kf = K and no
// bias; RA is RA.md's folded form, W = 2D with
//     Qf_i = [w_std Q_i, w_rec K_i],   Kf_j = [K_j, Q_j],
//     L_ij = s Qf_i . Kf_j + w_disc d_j          (j <= i).
// With a reciprocity window only pairs with i - j <= window keep the second
// half of the product. Each (query tile, key tile) pair is classified once:
//     full  -- every pair inside the band: one W-wide product
//     plain -- no pair inside the band:   the first D columns only (SDPA cost)
//     mixed -- the band's edge crosses the tile: both halves, masked per element
// so work outside the band is skipped, not masked.
//
// Three kernels (deterministic: no atomics):
//   FusedForward  team per (b, h, query tile): online softmax over key tiles
//   FusedBwdKV    team per (b, h, key tile):   dV, dKf (-> dK, and dQ's Kf part),
//                                              column sums of dL (-> dd, dw_disc)
//   FusedBwdQ     team per (b, h, query tile): dQf (-> dQ, dK's Qf part, dw_std, dw_rec)
// Tile products use KokkosBatched::TeamVectorGemm on team scratch (portable,
// plain FMA loops); the tensor-core CUDA path is detail/tensor_core.hpp.
//
// Precision: the kernels are templates on the storage type; tiles in scratch
// and every sum are accum_t<Storage> (float for bf16): loads convert up,
// stores of [B,H,T,D] outputs convert down.
#pragma once

#include <KokkosBatched_Gemm_Decl.hpp>
#include <KokkosBatched_Gemm_TeamVector_Impl.hpp>
#include <Kokkos_Core.hpp>
#include <ra/kokkos/attention.hpp>

namespace ra::kk::detail {

template <class Exec>
using Member = typename Kokkos::TeamPolicy<Exec>::member_type;

// A tile in team scratch. Rows are padded by one element: a vector lane per
// row walking along the columns (TeamVectorGemm's access pattern) would
// otherwise hit the same shared-memory bank in every lane whenever the row
// length is a multiple of 32 words (W = 64, 128, ...).
template <class Scalar, class Exec>
using Scratch2 = Kokkos::View<Scalar**, Kokkos::LayoutStride, typename Exec::scratch_memory_space,
                              Kokkos::MemoryTraits<Kokkos::Unmanaged>>;
template <class Scalar, class Exec>
using Scratch2Dense =
    Kokkos::View<Scalar**, Kokkos::LayoutRight, typename Exec::scratch_memory_space,
                 Kokkos::MemoryTraits<Kokkos::Unmanaged>>;
constexpr int kTilePad = 1;

template <class Scalar, class Exec>
std::size_t tile_bytes(int rows, int cols) {
  return Scratch2Dense<Scalar, Exec>::shmem_size(rows, cols + kTilePad);
}

template <class Scalar, class Exec>
KOKKOS_INLINE_FUNCTION Scratch2<Scalar, Exec> tile(const typename Exec::scratch_memory_space& sp,
                                                   int rows, int cols) {
  Scratch2Dense<Scalar, Exec> full(sp, rows, cols + kTilePad);
  return Kokkos::subview(full, Kokkos::ALL, Kokkos::make_pair(0, cols));
}
template <class Scalar, class Exec>
using Scratch1 = Kokkos::View<Scalar*, typename Exec::scratch_memory_space,
                              Kokkos::MemoryTraits<Kokkos::Unmanaged>>;

enum class TileKind { plain, mixed, full };

// C (+)= alpha op(A) op(B) over the whole team; TA/TB are KokkosBatched::Trans tags.
template <class TA, class TB, class M, class Scalar, class A, class B, class C>
KOKKOS_INLINE_FUNCTION void tile_gemm(const M& team, Scalar alpha, const A& a, const B& b,
                                      Scalar beta, const C& c) {
  KokkosBatched::TeamVectorGemm<M, TA, TB, KokkosBatched::Algo::Gemm::Unblocked>::invoke(
      team, alpha, a, b, beta, c);
}
using NoT = KokkosBatched::Trans::NoTranspose;
using Tr = KokkosBatched::Trans::Transpose;

// Everything the three kernels share: problem geometry, gates, inputs, and the
// per-tile building blocks (load, logits, classification).
template <class Storage, class Exec>
struct FusedCommon {
  using Scalar = accum_t<Storage>;
  using T4c = Kokkos::View<const Storage****, Kokkos::LayoutRight, typename Exec::memory_space>;
  using T3c = Kokkos::View<const Scalar***, Kokkos::LayoutRight, typename Exec::memory_space>;
  using S2 = Scratch2<Scalar, Exec>;
  using S1 = Scratch1<Scalar, Exec>;

  T4c q, k, v;
  T3c gates, d;
  int B = 0, H = 0, T = 0, D = 0, W = 0;  // W: width of Qf/Kf (D for SDPA, 2D for RA)
  bool ra = false;
  int window = -1;  // < 0: reciprocity everywhere
  int gate_batch = 1;
  Scalar scale = 0;
  int br = 0, bc = 0, n_qtiles = 0, n_ktiles = 0;
  int scratch_level = 0;

  struct Gates {
    Scalar std, rec, disc;
  };
  KOKKOS_INLINE_FUNCTION Gates gates_of(int b, int h) const {
    if (!ra) return {Scalar(1), Scalar(0), Scalar(0)};
    const int gb = gate_batch == 1 ? 0 : b;
    return {gates(gb, h, 0), gates(gb, h, 1), gates(gb, h, 2)};
  }

  KOKKOS_INLINE_FUNCTION bool in_band(int i, int j) const { return window < 0 || i - j <= window; }

  // Rows i0..i0+br-1 against columns j0..j0+bc-1 (only the causal, in-range part matters).
  KOKKOS_INLINE_FUNCTION TileKind classify(int i0, int j0) const {
    if (!ra) return TileKind::plain;
    if (window < 0) return TileKind::full;
    const int i_last = (i0 + br - 1 < T - 1) ? i0 + br - 1 : T - 1;
    if (i_last - j0 <= window) return TileKind::full;         // farthest pair inside the band
    if (i0 - (j0 + bc - 1) > window) return TileKind::plain;  // nearest pair outside
    return TileKind::mixed;
  }

  // Qf rows of a query tile: [w_std Q_i, w_rec K_i]; zero past T.
  KOKKOS_INLINE_FUNCTION void load_qf(const Member<Exec>& team, const S2& qf, int b, int h, int i0,
                                      const Gates& g) const {
    Kokkos::parallel_for(Kokkos::TeamThreadRange(team, br), [&](int r) {
      const int i = i0 + r;
      Kokkos::parallel_for(Kokkos::ThreadVectorRange(team, D), [&](int c) {
        qf(r, c) = i < T ? g.std * Scalar(q(b, h, i, c)) : Scalar(0);
        if (ra) qf(r, D + c) = i < T ? g.rec * Scalar(k(b, h, i, c)) : Scalar(0);
      });
    });
  }

  // Kf rows [K_j, Q_j], V rows and the scaled bias w_disc d_j of a key tile; zero past T.
  KOKKOS_INLINE_FUNCTION void load_kv(const Member<Exec>& team, const S2& kf, const S2& vt,
                                      const S1& bias, int b, int h, int j0, const Gates& g) const {
    Kokkos::parallel_for(Kokkos::TeamThreadRange(team, bc), [&](int r) {
      const int j = j0 + r;
      Kokkos::parallel_for(Kokkos::ThreadVectorRange(team, D), [&](int c) {
        kf(r, c) = j < T ? Scalar(k(b, h, j, c)) : Scalar(0);
        if (ra) kf(r, D + c) = j < T ? Scalar(q(b, h, j, c)) : Scalar(0);
        vt(r, c) = j < T ? Scalar(v(b, h, j, c)) : Scalar(0);
      });
      Kokkos::single(Kokkos::PerThread(team),
                     [&]() { bias(r) = (ra && j < T) ? g.disc * d(b, h, j) : Scalar(0); });
    });
  }

  // sa <- s Qf Kf^T restricted as the tile kind says (sb is scratch for the
  // mixed case). The bias and the causal mask are applied by the caller.
  KOKKOS_INLINE_FUNCTION void logits(const Member<Exec>& team, TileKind kind, const S2& qf,
                                     const S2& kf, const S2& sa, const S2& sb, int i0,
                                     int j0) const {
    using Kokkos::make_pair;
    if (kind == TileKind::full) {
      tile_gemm<NoT, Tr>(team, scale, qf, kf, Scalar(0), sa);
    } else {
      const auto first = make_pair(0, D);
      tile_gemm<NoT, Tr>(team, scale, Kokkos::subview(qf, Kokkos::ALL, first),
                         Kokkos::subview(kf, Kokkos::ALL, first), Scalar(0), sa);
      if (kind == TileKind::mixed) {
        const auto second = make_pair(D, W);
        tile_gemm<NoT, Tr>(team, scale, Kokkos::subview(qf, Kokkos::ALL, second),
                           Kokkos::subview(kf, Kokkos::ALL, second), Scalar(0), sb);
        team.team_barrier();
        Kokkos::parallel_for(Kokkos::TeamThreadRange(team, br), [&](int r) {
          Kokkos::parallel_for(Kokkos::ThreadVectorRange(team, bc), [&](int c) {
            if (in_band(i0 + r, j0 + c)) sa(r, c) += sb(r, c);
          });
        });
      }
    }
    team.team_barrier();
  }

  // dst (+)= alpha * op(dl) x src where the reciprocal half uses dl_rec
  // (dl masked to the band) for mixed tiles and is skipped for plain ones.
  // TA is Tr for dKf += dL^T Qf, NoT for dQf += dL Kf.
  template <class TA>
  KOKKOS_INLINE_FUNCTION void grad_product(const Member<Exec>& team, TileKind kind, const S2& dl,
                                           const S2& dl_rec, const S2& src, const S2& dst) const {
    if (kind == TileKind::full) {
      tile_gemm<TA, NoT>(team, scale, dl, src, Scalar(1), dst);
      return;
    }
    const auto first = Kokkos::make_pair(0, D);
    tile_gemm<TA, NoT>(team, scale, dl, Kokkos::subview(src, Kokkos::ALL, first), Scalar(1),
                       Kokkos::subview(dst, Kokkos::ALL, first));
    if (kind == TileKind::mixed) {
      const auto second = Kokkos::make_pair(D, W);
      tile_gemm<TA, NoT>(team, scale, dl_rec, Kokkos::subview(src, Kokkos::ALL, second), Scalar(1),
                         Kokkos::subview(dst, Kokkos::ALL, second));
    }
  }

  KOKKOS_INLINE_FUNCTION void tile_coords(int league, int n_tiles, int& b, int& h, int& t) const {
    // Heaviest tiles (most work along the causal triangle) first.
    t = league % n_tiles;
    const int bh = league / n_tiles;
    b = bh / H;
    h = bh % H;
  }
};

// ---------------------------------------------------------------------------
template <class Storage, class Exec>
struct FusedForward : FusedCommon<Storage, Exec> {
  using Base = FusedCommon<Storage, Exec>;
  using typename Base::S1;
  using typename Base::S2;
  using typename Base::Scalar;
  Tensor4<Storage, Exec> o;
  Tensor3<Scalar, Exec> lse;

  static std::size_t scratch_bytes(int br, int bc, int D, int W, bool mixed) {
    return tile_bytes<Scalar, Exec>(br, W) + tile_bytes<Scalar, Exec>(bc, W) +
           tile_bytes<Scalar, Exec>(bc, D) + tile_bytes<Scalar, Exec>(br, bc) * (mixed ? 2 : 1) +
           tile_bytes<Scalar, Exec>(br, D) + S1::shmem_size(br) * 2 + S1::shmem_size(bc);
  }

  KOKKOS_INLINE_FUNCTION void operator()(const Member<Exec>& team) const {
    const int br = this->br, bc = this->bc, D = this->D, W = this->W, T = this->T;
    int b, h, qt;
    this->tile_coords(team.league_rank(), this->n_qtiles, b, h, qt);
    qt = this->n_qtiles - 1 - qt;
    const int i0 = qt * br;
    const auto g = this->gates_of(b, h);
    const bool need_sb = this->ra && this->window >= 0;

    auto& sp = team.team_scratch(this->scratch_level);
    S2 qf = tile<Scalar, Exec>(sp, br, W), kf = tile<Scalar, Exec>(sp, bc, W),
       vt = tile<Scalar, Exec>(sp, bc, D), sa = tile<Scalar, Exec>(sp, br, bc);
    S2 sb = need_sb ? tile<Scalar, Exec>(sp, br, bc) : sa;
    S2 acc = tile<Scalar, Exec>(sp, br, D);
    S1 m(sp, br), l(sp, br), bias(sp, bc);

    this->load_qf(team, qf, b, h, i0, g);
    Kokkos::parallel_for(Kokkos::TeamThreadRange(team, br), [&](int r) {
      Kokkos::parallel_for(Kokkos::ThreadVectorRange(team, D), [&](int c) { acc(r, c) = 0; });
      Kokkos::single(Kokkos::PerThread(team), [&]() {
        m(r) = -Kokkos::Experimental::infinity_v<Scalar>;
        l(r) = 0;
      });
    });

    const int i_last = (i0 + br - 1 < T - 1) ? i0 + br - 1 : T - 1;
    const int kt_last = i_last / bc;
    for (int kt = 0; kt <= kt_last; ++kt) {
      const int j0 = kt * bc;
      team.team_barrier();  // previous tile's kf/vt/sa fully consumed
      this->load_kv(team, kf, vt, bias, b, h, j0, g);
      team.team_barrier();
      this->logits(team, this->classify(i0, j0), qf, kf, sa, sb, i0, j0);

      // Online softmax: rescale the running sums to the new row max.
      Kokkos::parallel_for(Kokkos::TeamThreadRange(team, br), [&](int r) {
        const int i = i0 + r;
        const Scalar m_old = m(r);
        Scalar row_max = -Kokkos::Experimental::infinity_v<Scalar>;
        Kokkos::parallel_reduce(
            Kokkos::ThreadVectorRange(team, bc),
            [&](int c, Scalar& mx) {
              const int j = j0 + c;
              if (i < T && j <= i) {
                const Scalar x = sa(r, c) + bias(c);
                mx = x > mx ? x : mx;
              }
            },
            Kokkos::Max<Scalar>(row_max));
        const Scalar m_new = row_max > m_old ? row_max : m_old;
        Scalar row_sum = 0;
        Kokkos::parallel_reduce(
            Kokkos::ThreadVectorRange(team, bc),
            [&](int c, Scalar& s) {
              const int j = j0 + c;
              const Scalar p =
                  (i < T && j <= i) ? Kokkos::exp(sa(r, c) + bias(c) - m_new) : Scalar(0);
              sa(r, c) = p;
              s += p;
            },
            row_sum);
        const Scalar alpha = (i < T && m_old != -Kokkos::Experimental::infinity_v<Scalar>)
                                 ? Kokkos::exp(m_old - m_new)
                                 : Scalar(0);
        Kokkos::parallel_for(Kokkos::ThreadVectorRange(team, D),
                             [&](int c) { acc(r, c) *= alpha; });
        Kokkos::single(Kokkos::PerThread(team), [&]() {
          if (i < T) {
            m(r) = m_new;
            l(r) = l(r) * alpha + row_sum;
          }
        });
      });
      team.team_barrier();
      tile_gemm<NoT, NoT>(team, Scalar(1), sa, vt, Scalar(1), acc);
    }
    team.team_barrier();
    Kokkos::parallel_for(Kokkos::TeamThreadRange(team, br), [&](int r) {
      const int i = i0 + r;
      if (i >= T) return;
      const Scalar inv = Scalar(1) / l(r);
      Kokkos::parallel_for(Kokkos::ThreadVectorRange(team, D),
                           [&](int c) { o(b, h, i, c) = Storage(acc(r, c) * inv); });
      Kokkos::single(Kokkos::PerThread(team), [&]() { lse(b, h, i) = m(r) + Kokkos::log(l(r)); });
    });
  }
};

// Shared by both backward kernels: P = exp(L - lse), dP = dO V^T, and
// dL = P (dP - Delta) into sa; for mixed tiles sb <- dL masked to the band.
template <class Storage, class Exec>
struct FusedBackwardTile : FusedCommon<Storage, Exec> {
  using Base = FusedCommon<Storage, Exec>;
  using typename Base::S1;
  using typename Base::S2;
  using typename Base::Scalar;

  // On entry sa holds the scaled logits without bias (from logits()).
  // dv (optional): dV tile += P^T dO before P is overwritten.
  template <class DV>
  KOKKOS_INLINE_FUNCTION void dl_tile(const Member<Exec>& team, TileKind kind, const S2& sa,
                                      const S2& sb, const S1& bias, const S1& lse_t,
                                      const S1& delta_t, const S2& dot, const S2& vt, int i0,
                                      int j0, const DV& dv, bool with_dv) const {
    const int T = this->T;
    Kokkos::parallel_for(Kokkos::TeamThreadRange(team, this->br), [&](int r) {
      const int i = i0 + r;
      Kokkos::parallel_for(Kokkos::ThreadVectorRange(team, this->bc), [&](int c) {
        const int j = j0 + c;
        sa(r, c) = (i < T && j <= i) ? Kokkos::exp(sa(r, c) + bias(c) - lse_t(r)) : Scalar(0);
      });
    });
    team.team_barrier();
    if (with_dv) tile_gemm<Tr, NoT>(team, Scalar(1), sa, dot, Scalar(1), dv);
    tile_gemm<NoT, Tr>(team, Scalar(1), dot, vt, Scalar(0), sb);  // dP
    team.team_barrier();
    Kokkos::parallel_for(Kokkos::TeamThreadRange(team, this->br), [&](int r) {
      const int i = i0 + r;
      Kokkos::parallel_for(Kokkos::ThreadVectorRange(team, this->bc), [&](int c) {
        const Scalar dl = sa(r, c) * (sb(r, c) - delta_t(r));
        sa(r, c) = dl;
        if (kind == TileKind::mixed) sb(r, c) = this->in_band(i, j0 + c) ? dl : Scalar(0);
      });
    });
    team.team_barrier();
  }

  // Rows [lse_i, Delta_i] and dO of a query tile.
  KOKKOS_INLINE_FUNCTION void load_rows(const Member<Exec>& team, const Tensor3<Scalar, Exec>& lse,
                                        const Tensor3<Scalar, Exec>& delta,
                                        const Tensor4<Storage, Exec>& dout, const S2& dot,
                                        const S1& lse_t, const S1& delta_t, int b, int h,
                                        int i0) const {
    const int T = this->T;
    Kokkos::parallel_for(Kokkos::TeamThreadRange(team, this->br), [&](int r) {
      const int i = i0 + r;
      Kokkos::parallel_for(Kokkos::ThreadVectorRange(team, this->D),
                           [&](int c) { dot(r, c) = i < T ? Scalar(dout(b, h, i, c)) : Scalar(0); });
      Kokkos::single(Kokkos::PerThread(team), [&]() {
        lse_t(r) = i < T ? lse(b, h, i) : Scalar(0);
        delta_t(r) = i < T ? delta(b, h, i) : Scalar(0);
      });
    });
  }
};

// ---------------------------------------------------------------------------
template <class Storage, class Exec>
struct FusedBwdKV : FusedBackwardTile<Storage, Exec> {
  using Base = FusedBackwardTile<Storage, Exec>;
  using typename Base::S1;
  using typename Base::S2;
  using typename Base::Scalar;
  Tensor3<Scalar, Exec> lse, delta;
  Tensor4<Storage, Exec> dout, dq, dk, dv;
  Tensor3<Scalar, Exec> dd;
  Tensor4<Scalar, Exec> gate_partials;  // [B,H,n,3]; slot 2 written here

  static std::size_t scratch_bytes(int br, int bc, int D, int W) {
    return 2 * tile_bytes<Scalar, Exec>(bc, W) + 2 * tile_bytes<Scalar, Exec>(bc, D) +
           S1::shmem_size(bc) * 2 + tile_bytes<Scalar, Exec>(br, W) +
           tile_bytes<Scalar, Exec>(br, D) + S1::shmem_size(br) * 2 +
           tile_bytes<Scalar, Exec>(br, bc) * 2;
  }

  KOKKOS_INLINE_FUNCTION void operator()(const Member<Exec>& team) const {
    const int br = this->br, bc = this->bc, D = this->D, W = this->W, T = this->T;
    int b, h, kt;
    this->tile_coords(team.league_rank(), this->n_ktiles, b, h, kt);
    const int j0 = kt * bc;
    const auto g = this->gates_of(b, h);

    auto& sp = team.team_scratch(this->scratch_level);
    S2 kf = tile<Scalar, Exec>(sp, bc, W), dkf = tile<Scalar, Exec>(sp, bc, W),
       vt = tile<Scalar, Exec>(sp, bc, D), dvt = tile<Scalar, Exec>(sp, bc, D);
    S1 bias(sp, bc), colsum(sp, bc);
    S2 qf = tile<Scalar, Exec>(sp, br, W), dot = tile<Scalar, Exec>(sp, br, D);
    S1 lse_t(sp, br), delta_t(sp, br);
    S2 sa = tile<Scalar, Exec>(sp, br, bc), sb = tile<Scalar, Exec>(sp, br, bc);

    this->load_kv(team, kf, vt, bias, b, h, j0, g);
    Kokkos::parallel_for(Kokkos::TeamThreadRange(team, bc), [&](int r) {
      Kokkos::parallel_for(Kokkos::ThreadVectorRange(team, W), [&](int c) {
        dkf(r, c) = 0;
        if (c < D) dvt(r, c) = 0;
      });
      Kokkos::single(Kokkos::PerThread(team), [&]() { colsum(r) = 0; });
    });

    for (int qt = j0 / br; qt < this->n_qtiles; ++qt) {
      const int i0 = qt * br;
      team.team_barrier();
      this->load_qf(team, qf, b, h, i0, g);
      this->load_rows(team, lse, delta, dout, dot, lse_t, delta_t, b, h, i0);
      team.team_barrier();
      const TileKind kind = this->classify(i0, j0);
      this->logits(team, kind, qf, kf, sa, sb, i0, j0);
      this->dl_tile(team, kind, sa, sb, bias, lse_t, delta_t, dot, vt, i0, j0, dvt, true);
      this->template grad_product<Tr>(team, kind, sa, sb, qf, dkf);
      if (this->ra) {
        Kokkos::parallel_for(Kokkos::TeamThreadRange(team, bc), [&](int c) {
          Scalar s = 0;
          Kokkos::parallel_reduce(
              Kokkos::ThreadVectorRange(team, br), [&](int r, Scalar& acc) { acc += sa(r, c); }, s);
          Kokkos::single(Kokkos::PerThread(team), [&]() { colsum(c) += s; });
        });
      }
    }
    team.team_barrier();
    Kokkos::parallel_for(Kokkos::TeamThreadRange(team, bc), [&](int r) {
      const int j = j0 + r;
      if (j >= T) return;
      Kokkos::parallel_for(Kokkos::ThreadVectorRange(team, D), [&](int c) {
        dv(b, h, j, c) = Storage(dvt(r, c));
        dk(b, h, j, c) = Storage(dkf(r, c));
        if (this->ra)
          dq(b, h, j, c) = Storage(dkf(r, D + c));  // the Kf = [K, Q] half; FusedBwdQ adds the rest
      });
      if (this->ra)
        Kokkos::single(Kokkos::PerThread(team), [&]() { dd(b, h, j) = g.disc * colsum(r); });
    });
    if (this->ra) {
      Scalar disc = 0;
      Kokkos::parallel_reduce(
          Kokkos::TeamThreadRange(team, bc),
          [&](int r, Scalar& acc) {
            const int j = j0 + r;
            if (j < T) acc += this->d(b, h, j) * colsum(r);
          },
          disc);
      Kokkos::single(Kokkos::PerTeam(team), [&]() { gate_partials(b, h, kt, 2) = disc; });
    }
  }
};

// ---------------------------------------------------------------------------
template <class Storage, class Exec>
struct FusedBwdQ : FusedBackwardTile<Storage, Exec> {
  using Base = FusedBackwardTile<Storage, Exec>;
  using typename Base::S1;
  using typename Base::S2;
  using typename Base::Scalar;
  Tensor3<Scalar, Exec> lse, delta;
  Tensor4<Storage, Exec> dout, dq, dk;
  Tensor4<Scalar, Exec> gate_partials;  // slots 0, 1 written here

  // sum over the tile's rows i of X_i . dqf(r, off : off + D)  (gate gradients)
  template <class X>
  KOKKOS_INLINE_FUNCTION Scalar rows_dot(const Member<Exec>& team, const X& x, const S2& dqf, int b,
                                         int h, int i0, int off) const {
    Scalar total = 0;
    Kokkos::parallel_reduce(
        Kokkos::TeamThreadRange(team, this->br),
        [&](int r, Scalar& a) {
          const int i = i0 + r;
          if (i >= this->T) return;
          Scalar s = 0;
          Kokkos::parallel_reduce(
              Kokkos::ThreadVectorRange(team, this->D),
              [&](int c, Scalar& acc) { acc += Scalar(x(b, h, i, c)) * dqf(r, off + c); }, s);
          Kokkos::single(Kokkos::PerThread(team), [&]() { a += s; });
        },
        total);
    return total;
  }

  static std::size_t scratch_bytes(int br, int bc, int D, int W) {
    return 2 * tile_bytes<Scalar, Exec>(br, W) + tile_bytes<Scalar, Exec>(br, D) +
           S1::shmem_size(br) * 2 + tile_bytes<Scalar, Exec>(bc, W) +
           tile_bytes<Scalar, Exec>(bc, D) + S1::shmem_size(bc) +
           tile_bytes<Scalar, Exec>(br, bc) * 2;
  }

  KOKKOS_INLINE_FUNCTION void operator()(const Member<Exec>& team) const {
    const int br = this->br, bc = this->bc, D = this->D, W = this->W, T = this->T;
    int b, h, qt;
    this->tile_coords(team.league_rank(), this->n_qtiles, b, h, qt);
    qt = this->n_qtiles - 1 - qt;
    const int i0 = qt * br;
    const auto g = this->gates_of(b, h);

    auto& sp = team.team_scratch(this->scratch_level);
    S2 qf = tile<Scalar, Exec>(sp, br, W), dqf = tile<Scalar, Exec>(sp, br, W),
       dot = tile<Scalar, Exec>(sp, br, D);
    S1 lse_t(sp, br), delta_t(sp, br);
    S2 kf = tile<Scalar, Exec>(sp, bc, W), vt = tile<Scalar, Exec>(sp, bc, D);
    S1 bias(sp, bc);
    S2 sa = tile<Scalar, Exec>(sp, br, bc), sb = tile<Scalar, Exec>(sp, br, bc);

    this->load_qf(team, qf, b, h, i0, g);
    this->load_rows(team, lse, delta, dout, dot, lse_t, delta_t, b, h, i0);
    Kokkos::parallel_for(Kokkos::TeamThreadRange(team, br), [&](int r) {
      Kokkos::parallel_for(Kokkos::ThreadVectorRange(team, W), [&](int c) { dqf(r, c) = 0; });
    });

    const int i_last = (i0 + br - 1 < T - 1) ? i0 + br - 1 : T - 1;
    for (int kt = 0; kt <= i_last / bc; ++kt) {
      const int j0 = kt * bc;
      team.team_barrier();
      this->load_kv(team, kf, vt, bias, b, h, j0, g);
      team.team_barrier();
      const TileKind kind = this->classify(i0, j0);
      this->logits(team, kind, qf, kf, sa, sb, i0, j0);
      this->dl_tile(team, kind, sa, sb, bias, lse_t, delta_t, dot, vt, i0, j0, dqf, false);
      this->template grad_product<NoT>(team, kind, sa, sb, kf, dqf);
    }
    team.team_barrier();
    // Unfold: dQ_i += w_std dQf_i[0:D] (dQ already holds the Kf part for RA),
    //         dK_i += w_rec dQf_i[D:2D];  dw_std = sum_i Q_i . dQf_i[0:D],
    //         dw_rec = sum_i K_i . dQf_i[D:2D].
    Kokkos::parallel_for(Kokkos::TeamThreadRange(team, br), [&](int r) {
      const int i = i0 + r;
      if (i >= T) return;
      Kokkos::parallel_for(Kokkos::ThreadVectorRange(team, D), [&](int c) {
        // (bf16 storage: the key-owned kernel's part was rounded once already)
        if (this->ra) {
          dq(b, h, i, c) = Storage(Scalar(dq(b, h, i, c)) + g.std * dqf(r, c));
          dk(b, h, i, c) = Storage(Scalar(dk(b, h, i, c)) + g.rec * dqf(r, D + c));
        } else {
          dq(b, h, i, c) = Storage(dqf(r, c));
        }
      });
    });
    if (this->ra) {
      const Scalar ws = rows_dot(team, this->q, dqf, b, h, i0, 0);
      const Scalar wr = rows_dot(team, this->k, dqf, b, h, i0, D);
      Kokkos::single(Kokkos::PerTeam(team), [&]() {
        gate_partials(b, h, qt, 0) = ws;
        gate_partials(b, h, qt, 1) = wr;
      });
    }
  }
};

}  // namespace ra::kk::detail
