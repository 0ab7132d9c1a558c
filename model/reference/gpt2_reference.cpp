// Float64 reference GPT-2 (see reference.hpp): the definitions, written as
// directly as possible.
#include <ra/model/reference.hpp>
#include <ra/reference.hpp>

#include <cmath>
#include <stdexcept>
#include <string>

namespace ra::model::ref {

void encoder_forward(int N, int T, int C, const std::vector<int>& tokens, const Buf& wte,
                     const Buf& wpe, Buf& out) {
  out.assign(std::size_t(N) * C, 0.0);
  for (int n = 0; n < N; ++n)
    for (int c = 0; c < C; ++c)
      out[std::size_t(n) * C + c] = wte[std::size_t(tokens[n]) * C + c] + wpe[std::size_t(n % T) * C + c];
}

void encoder_backward(int N, int T, int C, const std::vector<int>& tokens, const Buf& dout,
                      Buf& dwte, Buf& dwpe) {
  for (int n = 0; n < N; ++n)
    for (int c = 0; c < C; ++c) {
      dwte[std::size_t(tokens[n]) * C + c] += dout[std::size_t(n) * C + c];
      dwpe[std::size_t(n % T) * C + c] += dout[std::size_t(n) * C + c];
    }
}

void layernorm_forward(int N, int C, const Buf& x, const Buf& w, const Buf& b, Buf& out, Buf& mean,
                       Buf& rstd) {
  out.assign(std::size_t(N) * C, 0.0), mean.assign(N, 0.0), rstd.assign(N, 0.0);
  for (int n = 0; n < N; ++n) {
    const double* xr = &x[std::size_t(n) * C];
    double mu = 0, var = 0;
    for (int c = 0; c < C; ++c) mu += xr[c];
    mu /= C;
    for (int c = 0; c < C; ++c) var += (xr[c] - mu) * (xr[c] - mu);
    const double rs = 1.0 / std::sqrt(var / C + 1e-5);
    for (int c = 0; c < C; ++c) out[std::size_t(n) * C + c] = (xr[c] - mu) * rs * w[c] + b[c];
    mean[n] = mu, rstd[n] = rs;
  }
}

void layernorm_backward(int N, int C, const Buf& dout, const Buf& x, const Buf& w, const Buf& mean,
                        const Buf& rstd, Buf& dx, Buf& dw, Buf& db) {
  for (int n = 0; n < N; ++n) {
    const std::size_t r = std::size_t(n) * C;
    double g_mean = 0, gx_mean = 0;
    for (int c = 0; c < C; ++c) {
      const double xhat = (x[r + c] - mean[n]) * rstd[n];
      g_mean += dout[r + c] * w[c] / C;
      gx_mean += dout[r + c] * w[c] * xhat / C;
    }
    for (int c = 0; c < C; ++c) {
      const double xhat = (x[r + c] - mean[n]) * rstd[n];
      dx[r + c] += rstd[n] * (dout[r + c] * w[c] - g_mean - xhat * gx_mean);
      dw[c] += dout[r + c] * xhat;
      db[c] += dout[r + c];
    }
  }
}

void linear_forward(int N, int K, int M, const Buf& x, const Buf& w, const Buf& b, Buf& y) {
  y.assign(std::size_t(N) * M, 0.0);
  for (int n = 0; n < N; ++n)
    for (int m = 0; m < M; ++m) {
      double acc = b.empty() ? 0.0 : b[m];
      for (int k = 0; k < K; ++k) acc += x[std::size_t(n) * K + k] * w[std::size_t(m) * K + k];
      y[std::size_t(n) * M + m] = acc;
    }
}

void linear_backward(int N, int K, int M, const Buf& dy, const Buf& x, const Buf& w, Buf& dx,
                     Buf& dw, Buf* db) {
  for (int n = 0; n < N; ++n)
    for (int m = 0; m < M; ++m) {
      const double g = dy[std::size_t(n) * M + m];
      for (int k = 0; k < K; ++k) {
        dx[std::size_t(n) * K + k] += g * w[std::size_t(m) * K + k];
        dw[std::size_t(m) * K + k] += g * x[std::size_t(n) * K + k];
      }
      if (db) (*db)[m] += g;
    }
}

namespace {
constexpr double kGeluScale = 0.7978845608028654;  // sqrt(2 / pi)
}

void gelu_forward(const Buf& x, Buf& y) {
  y.resize(x.size());
  for (std::size_t i = 0; i < x.size(); ++i)
    y[i] = 0.5 * x[i] * (1 + std::tanh(kGeluScale * (x[i] + 0.044715 * x[i] * x[i] * x[i])));
}

void gelu_backward(const Buf& x, const Buf& dy, Buf& dx) {
  for (std::size_t i = 0; i < x.size(); ++i) {
    const double v = x[i], th = std::tanh(kGeluScale * (v + 0.044715 * v * v * v));
    const double grad =
        0.5 * (1 + th) + 0.5 * v * (1 - th * th) * kGeluScale * (1 + 3 * 0.044715 * v * v);
    dx[i] += grad * dy[i];
  }
}

double crossentropy_forward(int N, int V, int Vp, const Buf& logits, const std::vector<int>& targets,
                            Buf& probs, Buf& losses) {
  probs.assign(std::size_t(N) * Vp, 0.0), losses.assign(N, 0.0);
  double total = 0;
  for (int n = 0; n < N; ++n) {
    const double* z = &logits[std::size_t(n) * Vp];
    double mx = z[0], sum = 0;
    for (int v = 1; v < V; ++v) mx = std::max(mx, z[v]);
    for (int v = 0; v < V; ++v) sum += std::exp(z[v] - mx);
    for (int v = 0; v < V; ++v) probs[std::size_t(n) * Vp + v] = std::exp(z[v] - mx) / sum;
    losses[n] = std::log(sum) + mx - z[targets[n]];
    total += losses[n];
  }
  return total / N;
}

void crossentropy_backward(int N, int V, int Vp, const Buf& probs, const std::vector<int>& targets,
                           double dloss, Buf& dlogits) {
  for (int n = 0; n < N; ++n)
    for (int v = 0; v < V; ++v)
      dlogits[std::size_t(n) * Vp + v] +=
          (probs[std::size_t(n) * Vp + v] - (v == targets[n] ? 1.0 : 0.0)) * dloss;
}

namespace {

// [B*T, width] rows <-> [B, H, T, D] heads for columns [col0, col0 + C).
void rows_to_heads(const Shape& s, const Buf& rows, int width, int col0, Buf& heads) {
  heads.assign(s.qkv_elems(), 0.0);
  for (int b = 0; b < s.B; ++b)
    for (int h = 0; h < s.H; ++h)
      for (int t = 0; t < s.T; ++t)
        for (int c = 0; c < s.D; ++c)
          heads[((std::size_t(b) * s.H + h) * s.T + t) * s.D + c] =
              rows[(std::size_t(b) * s.T + t) * width + col0 + h * s.D + c];
}

void heads_to_rows(const Shape& s, const Buf& heads, int width, int col0, Buf& rows) {
  for (int b = 0; b < s.B; ++b)
    for (int h = 0; h < s.H; ++h)
      for (int t = 0; t < s.T; ++t)
        for (int c = 0; c < s.D; ++c)
          rows[(std::size_t(b) * s.T + t) * width + col0 + h * s.D + c] +=
              heads[((std::size_t(b) * s.H + h) * s.T + t) * s.D + c];
}

struct LayerCache {
  Buf in, ln1, mean1, rstd1, qkv, q, k, v, gates, d, o, lse, atty, res2, ln2, mean2, rstd2, fch,
      fchg, res3;
};

}  // namespace

double gpt2_forward_backward(const GPTConfig& cfg, int B, int T, const Buf& params,
                             const std::vector<int>& inputs, const std::vector<int>& targets,
                             double rec_scale, Buf& grads) {
  const ParamLayout layout = param_layout(cfg);
  const auto layers = layer_attention(cfg);
  if (params.size() != layout.total || grads.size() != layout.total)
    throw std::invalid_argument("ref::gpt2_forward_backward: params/grads size != layout total");
  const int N = B * T, C = cfg.C, H = cfg.H, D = cfg.head_dim(), V = cfg.V, Vp = cfg.padded();
  const Shape s{B, H, T, D};
  auto P = [&](const std::string& name) {
    const auto& t = layout.at(name);
    return Buf(params.begin() + t.offset, params.begin() + t.offset + t.size);
  };
  auto add_grad = [&](const std::string& name, const Buf& g) {
    const auto& t = layout.at(name);
    for (std::size_t i = 0; i < t.size; ++i) grads[t.offset + i] += g[i];
  };
  auto zeros = [](std::size_t n) { return Buf(n, 0.0); };
  auto h = [](int l, const char* what) { return "h" + std::to_string(l) + "." + what; };
  const double disc_scale = cfg.attn.anneal == Anneal::rec_disc ? rec_scale : 1.0;

  // Forward.
  const Buf wte = P("wte"), wpe = P("wpe");
  Buf x;
  encoder_forward(N, T, C, inputs, wte, wpe, x);
  std::vector<LayerCache> cache(cfg.L);
  for (int l = 0; l < cfg.L; ++l) {
    auto& a = cache[l];
    a.in = x;
    layernorm_forward(N, C, a.in, P(h(l, "ln1.w")), P(h(l, "ln1.b")), a.ln1, a.mean1, a.rstd1);
    linear_forward(N, C, 3 * C, a.ln1, P(h(l, "qkv.w")), P(h(l, "qkv.b")), a.qkv);
    rows_to_heads(s, a.qkv, 3 * C, 0, a.q);
    rows_to_heads(s, a.qkv, 3 * C, C, a.k);
    rows_to_heads(s, a.qkv, 3 * C, 2 * C, a.v);
    if (layers[l].ra) {
      a.gates = P(h(l, "gates"));
      for (int hh = 0; hh < H; ++hh) a.gates[3 * hh + 1] *= rec_scale, a.gates[3 * hh + 2] *= disc_scale;
      if (cfg.attn.disc == DiscForm::table) {
        const Buf table = P(h(l, "disc_table"));  // [H, T_max], first T columns
        a.d.assign(s.row_elems(), 0.0);
        for (int b = 0; b < B; ++b)
          for (int hh = 0; hh < H; ++hh)
            for (int t = 0; t < T; ++t)
              a.d[(std::size_t(b) * H + hh) * T + t] = table[std::size_t(hh) * cfg.T_max + t];
      } else {
        ra::ref::disc_content_forward(s, a.k, P(h(l, "disc_u")), a.d);
      }
      ra::ref::RaOptions opt;
      opt.window = layers[l].window;
      ra::ref::ra_forward(s, opt, a.q, a.k, a.v, a.gates, a.d, a.o, a.lse);
    } else {
      ra::ref::sdpa_forward(s, a.q, a.k, a.v, a.o, a.lse);
    }
    a.atty = zeros(std::size_t(N) * C);
    heads_to_rows(s, a.o, C, 0, a.atty);
    Buf proj;
    linear_forward(N, C, C, a.atty, P(h(l, "attn_proj.w")), P(h(l, "attn_proj.b")), proj);
    a.res2 = a.in;
    for (std::size_t i = 0; i < proj.size(); ++i) a.res2[i] += proj[i];
    layernorm_forward(N, C, a.res2, P(h(l, "ln2.w")), P(h(l, "ln2.b")), a.ln2, a.mean2, a.rstd2);
    linear_forward(N, C, 4 * C, a.ln2, P(h(l, "fc.w")), P(h(l, "fc.b")), a.fch);
    gelu_forward(a.fch, a.fchg);
    linear_forward(N, 4 * C, C, a.fchg, P(h(l, "fc_proj.w")), P(h(l, "fc_proj.b")), proj);
    a.res3 = a.res2;
    for (std::size_t i = 0; i < proj.size(); ++i) a.res3[i] += proj[i];
    x = a.res3;
  }
  Buf lnf, meanf, rstdf, logits, probs, losses;
  layernorm_forward(N, C, x, P("lnf.w"), P("lnf.b"), lnf, meanf, rstdf);
  linear_forward(N, C, Vp, lnf, wte, Buf(), logits);
  const double loss = crossentropy_forward(N, V, Vp, logits, targets, probs, losses);

  // Backward.
  Buf dlogits = zeros(logits.size());
  crossentropy_backward(N, V, Vp, probs, targets, 1.0 / N, dlogits);
  Buf dwte = zeros(wte.size()), dlnf = zeros(lnf.size());
  linear_backward(N, C, Vp, dlogits, lnf, wte, dlnf, dwte, nullptr);
  Buf dx = zeros(x.size()), dw = zeros(C), db = zeros(C);
  layernorm_backward(N, C, dlnf, x, P("lnf.w"), meanf, rstdf, dx, dw, db);
  add_grad("lnf.w", dw), add_grad("lnf.b", db);
  for (int l = cfg.L - 1; l >= 0; --l) {
    const auto& a = cache[l];
    // res3 = res2 + fc_proj(gelu(fc(ln2(res2)))): dx flows through unchanged.
    Buf dfchg = zeros(a.fchg.size()), dWfp = zeros(std::size_t(C) * 4 * C), dbfp = zeros(C);
    linear_backward(N, 4 * C, C, dx, a.fchg, P(h(l, "fc_proj.w")), dfchg, dWfp, &dbfp);
    Buf dfch = zeros(a.fch.size());
    gelu_backward(a.fch, dfchg, dfch);
    Buf dln2 = zeros(a.ln2.size()), dWfc = zeros(std::size_t(4) * C * C), dbfc = zeros(4 * C);
    linear_backward(N, C, 4 * C, dfch, a.ln2, P(h(l, "fc.w")), dln2, dWfc, &dbfc);
    Buf dln2w = zeros(C), dln2b = zeros(C);
    layernorm_backward(N, C, dln2, a.res2, P(h(l, "ln2.w")), a.mean2, a.rstd2, dx, dln2w, dln2b);
    Buf datty = zeros(a.atty.size()), dWp = zeros(std::size_t(C) * C), dbp = zeros(C);
    linear_backward(N, C, C, dx, a.atty, P(h(l, "attn_proj.w")), datty, dWp, &dbp);
    Buf dout;
    rows_to_heads(s, datty, C, 0, dout);
    Buf dq, dk, dv;
    if (layers[l].ra) {
      ra::ref::RaOptions opt;
      opt.window = layers[l].window;
      Buf dd, dgates;
      ra::ref::ra_backward(s, opt, a.q, a.k, a.v, a.gates, a.d, dout, dq, dk, dv, dd, dgates);
      for (int hh = 0; hh < H; ++hh) dgates[3 * hh + 1] *= rec_scale, dgates[3 * hh + 2] *= disc_scale;
      add_grad(h(l, "gates"), dgates);
      if (cfg.attn.disc == DiscForm::table) {
        Buf dtable = zeros(std::size_t(H) * cfg.T_max);
        for (int b = 0; b < B; ++b)
          for (int hh = 0; hh < H; ++hh)
            for (int t = 0; t < T; ++t)
              dtable[std::size_t(hh) * cfg.T_max + t] += dd[(std::size_t(b) * H + hh) * T + t];
        add_grad(h(l, "disc_table"), dtable);
      } else {
        Buf du;
        ra::ref::disc_content_backward(s, a.k, P(h(l, "disc_u")), dd, dk, du);
        add_grad(h(l, "disc_u"), du);
      }
    } else {
      ra::ref::sdpa_backward(s, a.q, a.k, a.v, dout, dq, dk, dv);
    }
    Buf dqkv = zeros(a.qkv.size());
    heads_to_rows(s, dq, 3 * C, 0, dqkv);
    heads_to_rows(s, dk, 3 * C, C, dqkv);
    heads_to_rows(s, dv, 3 * C, 2 * C, dqkv);
    Buf dln1 = zeros(a.ln1.size()), dWqkv = zeros(std::size_t(3) * C * C), dbqkv = zeros(3 * C);
    linear_backward(N, C, 3 * C, dqkv, a.ln1, P(h(l, "qkv.w")), dln1, dWqkv, &dbqkv);
    Buf dln1w = zeros(C), dln1b = zeros(C);
    layernorm_backward(N, C, dln1, a.in, P(h(l, "ln1.w")), a.mean1, a.rstd1, dx, dln1w, dln1b);
    add_grad(h(l, "fc_proj.w"), dWfp), add_grad(h(l, "fc_proj.b"), dbfp);
    add_grad(h(l, "fc.w"), dWfc), add_grad(h(l, "fc.b"), dbfc);
    add_grad(h(l, "ln2.w"), dln2w), add_grad(h(l, "ln2.b"), dln2b);
    add_grad(h(l, "attn_proj.w"), dWp), add_grad(h(l, "attn_proj.b"), dbp);
    add_grad(h(l, "qkv.w"), dWqkv), add_grad(h(l, "qkv.b"), dbqkv);
    add_grad(h(l, "ln1.w"), dln1w), add_grad(h(l, "ln1.b"), dln1b);
  }
  Buf dwpe = zeros(wpe.size());
  encoder_backward(N, T, C, inputs, dx, dwte, dwpe);
  add_grad("wte", dwte), add_grad("wpe", dwpe);
  return loss;
}

}  // namespace ra::model::ref
