// Float64 reference for causal SDPA and Reciprocal Attention (math: RA.md).
//
// Deliberately naive: every (b, h) slice materialises its T x T logits and
// probabilities, and backward recomputes them from the inputs rather than
// trusting anything saved by forward. That keeps forward and backward
// independent, so a finite-difference test of one against the other means
// something. Speed is irrelevant here; clarity and float64 accuracy are not.
#include "ra/reference.hpp"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <stdexcept>
#include <string>

namespace ra::ref {
namespace {

struct Gate {
  double std = 1.0, rec = 0.0, disc = 0.0;
};

[[noreturn]] void fail(const char* fn, const std::string& what) {
  throw std::invalid_argument(std::string(fn) + ": " + what);
}

void check_shape(const char* fn, const Shape& s) {
  const char* names[] = {"B", "H", "T", "D"};
  const int values[] = {s.B, s.H, s.T, s.D};
  for (int n = 0; n < 4; ++n)
    if (values[n] < 1)
      fail(fn, std::string(names[n]) + " = " + std::to_string(values[n]) + ", expected >= 1");
}

void check_qkv(const char* fn, const char* name, const Shape& s, const std::vector<double>& x) {
  if (x.size() != s.qkv_elems())
    fail(fn, std::string(name) + " has " + std::to_string(x.size()) +
                 " elements, expected B*H*T*D = " + std::to_string(s.B) + "*" +
                 std::to_string(s.H) + "*" + std::to_string(s.T) + "*" + std::to_string(s.D) +
                 " = " + std::to_string(s.qkv_elems()));
}

void check_row(const char* fn, const char* name, const Shape& s, const std::vector<double>& x) {
  if (x.size() != s.row_elems())
    fail(fn, std::string(name) + " has " + std::to_string(x.size()) +
                 " elements, expected B*H*T = " + std::to_string(s.B) + "*" +
                 std::to_string(s.H) + "*" + std::to_string(s.T) + " = " +
                 std::to_string(s.row_elems()));
}

void check_ra(const char* fn, const Shape& s, const RaOptions& opt,
              const std::vector<double>& gates, const std::vector<double>& d) {
  if (opt.gate_batch != 1 && opt.gate_batch != s.B)
    fail(fn, "gate_batch = " + std::to_string(opt.gate_batch) + ", expected 1 or B = " +
                 std::to_string(s.B));
  const std::size_t ng = std::size_t(opt.gate_batch) * s.H * 3;
  if (gates.size() != ng)
    fail(fn, "gates has " + std::to_string(gates.size()) + " elements, expected Gb*H*3 = " +
                 std::to_string(opt.gate_batch) + "*" + std::to_string(s.H) + "*3 = " +
                 std::to_string(ng));
  check_row(fn, "d", s, d);
}

// Gb == 1 means one gate triple per head shared by the whole batch.
std::size_t gate_offset(const Shape& s, int gate_batch, int b, int h) {
  return (std::size_t(gate_batch == 1 ? 0 : b) * s.H + h) * 3;
}

double dot(const double* a, const double* b, int n) {
  double acc = 0.0;
  for (int k = 0; k < n; ++k) acc += a[k] * b[k];
  return acc;
}

// Per-(b, h) working set. S is kept on both triangles because RA's row i
// reads S_ji (upper triangle); SDPA only ever touches the lower one.
struct Slice {
  int T = 0, D = 0;
  bool ra = false;
  Gate g;
  int window = -1;
  const double *q = nullptr, *k = nullptr, *v = nullptr, *d = nullptr;
  std::vector<double> S, P;  // T x T, row-major; P is zero above the diagonal
  std::vector<double> lse;   // T

  // Reciprocal term applies to logit (i, j), j <= i, only within the window.
  bool rec_on(int i, int j) const { return window < 0 || i - j <= window; }

  void compute_probs() {
    const double scale = 1.0 / std::sqrt(double(D));
    S.assign(std::size_t(T) * T, 0.0);
    P.assign(std::size_t(T) * T, 0.0);
    lse.assign(T, 0.0);
    for (int i = 0; i < T; ++i)
      for (int j = 0; j < T; ++j)
        if (ra || j <= i) S[i * T + j] = scale * dot(q + i * D, k + j * D, D);

    std::vector<double> L(T);
    for (int i = 0; i < T; ++i) {
      double m = -INFINITY;
      for (int j = 0; j <= i; ++j) {
        double l = S[i * T + j];
        if (ra) {
          l = g.std * S[i * T + j] + g.disc * d[j];
          if (rec_on(i, j)) l += g.rec * S[j * T + i];
        }
        L[j] = l;
        m = std::max(m, l);
      }
      // Subtract the row max before exp so large logits cannot overflow;
      // the diagonal is always unmasked, so m is finite for finite inputs.
      double sum = 0.0;
      for (int j = 0; j <= i; ++j) {
        P[i * T + j] = std::exp(L[j] - m);
        sum += P[i * T + j];
      }
      for (int j = 0; j <= i; ++j) P[i * T + j] /= sum;
      lse[i] = m + std::log(sum);
    }
  }

  void output(double* o) const {
    for (int i = 0; i < T; ++i)
      for (int c = 0; c < D; ++c) {
        double acc = 0.0;
        for (int j = 0; j <= i; ++j) acc += P[i * T + j] * v[j * D + c];
        o[i * D + c] = acc;
      }
  }
};

struct BackwardOut {
  double *dq, *dk, *dv, *dd = nullptr, *dgate = nullptr;
};

// Standard softmax-attention backward on one slice (RA.md, "Backward").
// Gradients are accumulated (+=) into dd and dgate so that Gb == 1 sums over
// the batch; dq/dk/dv are written, each slice owning its rows.
void slice_backward(Slice& sl, const double* dout, BackwardOut out) {
  const int T = sl.T, D = sl.D;
  sl.compute_probs();
  std::vector<double> o(std::size_t(T) * D);
  sl.output(o.data());

  std::vector<double> dL(std::size_t(T) * T, 0.0);
  for (int i = 0; i < T; ++i) {
    const double delta = dot(dout + i * D, o.data() + i * D, D);
    for (int j = 0; j <= i; ++j) {
      const double dp = dot(dout + i * D, sl.v + j * D, D);
      dL[i * T + j] = sl.P[i * T + j] * (dp - delta);
    }
  }

  for (int j = 0; j < T; ++j)
    for (int c = 0; c < D; ++c) {
      double acc = 0.0;
      for (int i = j; i < T; ++i) acc += sl.P[i * T + j] * dout[i * D + c];
      out.dv[j * D + c] = acc;
    }

  // dS collects both triangles for RA: logit (i, j) depends on S_ij through
  // w_std and on S_ji through w_rec.
  std::vector<double> dS(std::size_t(T) * T, 0.0);
  double dw_std = 0.0, dw_rec = 0.0, dw_disc = 0.0;
  for (int i = 0; i < T; ++i)
    for (int j = 0; j <= i; ++j) {
      const double g = dL[i * T + j];
      if (!sl.ra) {
        dS[i * T + j] += g;
        continue;
      }
      dS[i * T + j] += sl.g.std * g;
      dw_std += g * sl.S[i * T + j];
      if (sl.rec_on(i, j)) {
        dS[j * T + i] += sl.g.rec * g;
        dw_rec += g * sl.S[j * T + i];
      }
      dw_disc += g * sl.d[j];
      out.dd[j] += sl.g.disc * g;
    }
  if (sl.ra) {
    out.dgate[0] += dw_std;
    out.dgate[1] += dw_rec;
    out.dgate[2] += dw_disc;
  }

  const double scale = 1.0 / std::sqrt(double(D));
  for (int a = 0; a < T; ++a)
    for (int c = 0; c < D; ++c) {
      double gq = 0.0, gk = 0.0;
      for (int b = 0; b < T; ++b) {
        gq += dS[a * T + b] * sl.k[b * D + c];
        gk += dS[b * T + a] * sl.q[b * D + c];
      }
      out.dq[a * D + c] = scale * gq;
      out.dk[a * D + c] = scale * gk;
    }
}

Slice make_slice(const Shape& s, int b, int h, const std::vector<double>& q,
                 const std::vector<double>& k, const std::vector<double>& v) {
  Slice sl;
  sl.T = s.T;
  sl.D = s.D;
  const std::size_t off = (std::size_t(b) * s.H + h) * s.T * s.D;
  sl.q = q.data() + off;
  sl.k = k.data() + off;
  sl.v = v.data() + off;
  return sl;
}

void make_ra(Slice& sl, const Shape& s, const RaOptions& opt, int b, int h,
             const std::vector<double>& gates, const std::vector<double>& d) {
  const std::size_t go = gate_offset(s, opt.gate_batch, b, h);
  sl.ra = true;
  sl.g = Gate{gates[go], gates[go + 1], gates[go + 2]};
  sl.window = opt.window;
  sl.d = d.data() + (std::size_t(b) * s.H + h) * s.T;
}

}  // namespace

// Outputs are built in locals and moved out at the end, so passing an input
// vector as an output (aliasing) cannot corrupt the computation.

void sdpa_forward(const Shape& s, const std::vector<double>& q, const std::vector<double>& k,
                  const std::vector<double>& v, std::vector<double>& o, std::vector<double>& lse) {
  const char* fn = "sdpa_forward";
  check_shape(fn, s);
  check_qkv(fn, "q", s, q);
  check_qkv(fn, "k", s, k);
  check_qkv(fn, "v", s, v);
  std::vector<double> ov(s.qkv_elems()), lv(s.row_elems());
  for (int b = 0; b < s.B; ++b)
    for (int h = 0; h < s.H; ++h) {
      Slice sl = make_slice(s, b, h, q, k, v);
      sl.compute_probs();
      const std::size_t row = (std::size_t(b) * s.H + h) * s.T;
      sl.output(ov.data() + row * s.D);
      std::copy(sl.lse.begin(), sl.lse.end(), lv.begin() + row);
    }
  o = std::move(ov);
  lse = std::move(lv);
}

void sdpa_backward(const Shape& s, const std::vector<double>& q, const std::vector<double>& k,
                   const std::vector<double>& v, const std::vector<double>& dout,
                   std::vector<double>& dq, std::vector<double>& dk, std::vector<double>& dv) {
  const char* fn = "sdpa_backward";
  check_shape(fn, s);
  check_qkv(fn, "q", s, q);
  check_qkv(fn, "k", s, k);
  check_qkv(fn, "v", s, v);
  check_qkv(fn, "dout", s, dout);
  std::vector<double> gq(s.qkv_elems()), gk(s.qkv_elems()), gv(s.qkv_elems());
  for (int b = 0; b < s.B; ++b)
    for (int h = 0; h < s.H; ++h) {
      Slice sl = make_slice(s, b, h, q, k, v);
      const std::size_t off = (std::size_t(b) * s.H + h) * s.T * s.D;
      slice_backward(sl, dout.data() + off, {gq.data() + off, gk.data() + off, gv.data() + off});
    }
  dq = std::move(gq);
  dk = std::move(gk);
  dv = std::move(gv);
}

void ra_forward(const Shape& s, const RaOptions& opt, const std::vector<double>& q,
                const std::vector<double>& k, const std::vector<double>& v,
                const std::vector<double>& gates, const std::vector<double>& d,
                std::vector<double>& o, std::vector<double>& lse) {
  const char* fn = "ra_forward";
  check_shape(fn, s);
  check_qkv(fn, "q", s, q);
  check_qkv(fn, "k", s, k);
  check_qkv(fn, "v", s, v);
  check_ra(fn, s, opt, gates, d);
  std::vector<double> ov(s.qkv_elems()), lv(s.row_elems());
  for (int b = 0; b < s.B; ++b)
    for (int h = 0; h < s.H; ++h) {
      Slice sl = make_slice(s, b, h, q, k, v);
      make_ra(sl, s, opt, b, h, gates, d);
      sl.compute_probs();
      const std::size_t row = (std::size_t(b) * s.H + h) * s.T;
      sl.output(ov.data() + row * s.D);
      std::copy(sl.lse.begin(), sl.lse.end(), lv.begin() + row);
    }
  o = std::move(ov);
  lse = std::move(lv);
}

void ra_backward(const Shape& s, const RaOptions& opt, const std::vector<double>& q,
                 const std::vector<double>& k, const std::vector<double>& v,
                 const std::vector<double>& gates, const std::vector<double>& d,
                 const std::vector<double>& dout, std::vector<double>& dq,
                 std::vector<double>& dk, std::vector<double>& dv, std::vector<double>& dd,
                 std::vector<double>& dgates) {
  const char* fn = "ra_backward";
  check_shape(fn, s);
  check_qkv(fn, "q", s, q);
  check_qkv(fn, "k", s, k);
  check_qkv(fn, "v", s, v);
  check_ra(fn, s, opt, gates, d);
  check_qkv(fn, "dout", s, dout);
  std::vector<double> gq(s.qkv_elems()), gk(s.qkv_elems()), gv(s.qkv_elems());
  std::vector<double> gd(s.row_elems(), 0.0), gg(gates.size(), 0.0);
  for (int b = 0; b < s.B; ++b)
    for (int h = 0; h < s.H; ++h) {
      Slice sl = make_slice(s, b, h, q, k, v);
      make_ra(sl, s, opt, b, h, gates, d);
      const std::size_t row = (std::size_t(b) * s.H + h) * s.T;
      const std::size_t off = row * s.D;
      slice_backward(sl, dout.data() + off,
                     {gq.data() + off, gk.data() + off, gv.data() + off, gd.data() + row,
                      gg.data() + gate_offset(s, opt.gate_batch, b, h)});
    }
  dq = std::move(gq);
  dk = std::move(gk);
  dv = std::move(gv);
  dd = std::move(gd);
  dgates = std::move(gg);
}

}  // namespace ra::ref

// ---- discoverability forms ------------------------------------------------
namespace ra::ref {
namespace {
void check_size(const char* fn, const char* name, const std::vector<double>& x, std::size_t n,
                const char* formula) {
  if (x.size() != n)
    fail(fn, std::string(name) + " has " + std::to_string(x.size()) + " elements, expected " +
                 formula + " = " + std::to_string(n));
}
double sigmoid(double x) { return 1.0 / (1.0 + std::exp(-x)); }
}  // namespace

void disc_table_forward(const Shape& s, const std::vector<double>& table, std::vector<double>& d) {
  const char* fn = "disc_table_forward";
  check_shape(fn, s);
  check_size(fn, "table", table, std::size_t(s.H) * s.T, "H*T");
  std::vector<double> out(s.row_elems());
  for (int b = 0; b < s.B; ++b)
    for (std::size_t i = 0; i < table.size(); ++i) out[b * table.size() + i] = table[i];
  d = std::move(out);
}

void disc_table_backward(const Shape& s, const std::vector<double>& dd,
                         std::vector<double>& dtable) {
  const char* fn = "disc_table_backward";
  check_shape(fn, s);
  check_row(fn, "dd", s, dd);
  const std::size_t n = std::size_t(s.H) * s.T;
  std::vector<double> out(n, 0.0);
  for (int b = 0; b < s.B; ++b)
    for (std::size_t i = 0; i < n; ++i) out[i] += dd[b * n + i];
  dtable = std::move(out);
}

void disc_content_forward(const Shape& s, const std::vector<double>& k,
                          const std::vector<double>& u, std::vector<double>& d) {
  const char* fn = "disc_content_forward";
  check_shape(fn, s);
  check_qkv(fn, "k", s, k);
  check_size(fn, "u", u, std::size_t(s.H) * s.D, "H*D");
  std::vector<double> out(s.row_elems());
  for (std::size_t r = 0; r < out.size(); ++r) {
    const int h = int((r / s.T) % s.H);
    double x = 0;
    for (int c = 0; c < s.D; ++c) x += k[r * s.D + c] * u[std::size_t(h) * s.D + c];
    out[r] = sigmoid(x);
  }
  d = std::move(out);
}

void disc_content_backward(const Shape& s, const std::vector<double>& k,
                           const std::vector<double>& u, const std::vector<double>& dd,
                           std::vector<double>& dk, std::vector<double>& du) {
  const char* fn = "disc_content_backward";
  check_shape(fn, s);
  check_qkv(fn, "k", s, k);
  check_qkv(fn, "dk", s, dk);
  check_size(fn, "u", u, std::size_t(s.H) * s.D, "H*D");
  check_row(fn, "dd", s, dd);
  std::vector<double> d;
  disc_content_forward(s, k, u, d);
  std::vector<double> dk_out = dk, du_out(u.size(), 0.0);
  for (std::size_t r = 0; r < d.size(); ++r) {
    const int h = int((r / s.T) % s.H);
    const double g = dd[r] * d[r] * (1.0 - d[r]);  // d sigmoid(x)/dx = d (1 - d)
    for (int c = 0; c < s.D; ++c) {
      dk_out[r * s.D + c] += g * u[std::size_t(h) * s.D + c];
      du_out[std::size_t(h) * s.D + c] += g * k[r * s.D + c];
    }
  }
  dk = std::move(dk_out);
  du = std::move(du_out);
}

}  // namespace ra::ref
